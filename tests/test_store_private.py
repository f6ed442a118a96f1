"""A store is private, and the mount keeps the protection of the data it shows (issue 9)."""
import os
import shutil
import stat
import subprocess
import tempfile

from conftest import CASSBACKUP, cb, data_dir_args, make_sample, mounted, sample_dirs


def as_nobody(*cmd):
    return subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', *cmd],
                          capture_output=True, text=True)


def test_store_is_private_whatever_the_umask(tmp_path):
    store = str(tmp_path / 'store')
    src = make_sample(str(tmp_path / 's'), '--data-kib', '64', '--data-dirs', '1', '--keyspaces', '1',
                      '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter')
    for args in (['init', '--store', store],
                 ['create', '--store', store, '--name', 'b', *data_dir_args(sample_dirs(src)),
                  '--snapshot', 'nightly-1']):
        subprocess.run([CASSBACKUP, *args], check=True, capture_output=True, preexec_fn=lambda: os.umask(0))
    modes = {}
    for root, dirs, files in os.walk(store):
        for d in dirs:
            modes[os.path.join(root, d)] = stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode)
        for f in files:
            modes[os.path.join(root, f)] = stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode)
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    wrong = {p: oct(m) for p, m in modes.items()
             if m != (0o700 if os.path.isdir(p) else 0o600)}
    assert not wrong, wrong


def test_backup_directory_keeps_the_data_directory_protection(store, tmp_path):
    src = make_sample(str(tmp_path / 's'), '--data-kib', '64', '--data-dirs', '1', '--keyspaces', '1',
                      '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter')
    [d] = sample_dirs(src)
    os.chmod(d, 0o700)       # as /var/lib/cassandra/data is: the cassandra user's only
    os.chown(d, 4242, 4343)
    cb('create', '--store', store, '--name', 'b', '--data-dir', d, '--snapshot', 'nightly-1')
    top = tempfile.mkdtemp(prefix='cb-protect-')  # pytest's own tmp dirs are root's only
    os.chmod(top, 0o755)
    try:
        check_protection(store, os.path.join(top, 'mnt'))
    finally:
        shutil.rmtree(top, ignore_errors=True)


def check_protection(store, mnt):
    with mounted(store, mnt) as m:
        for path in (m.mnt, m.path(), m.path('b')):  # the root, /backups, the backup
            st = os.stat(path)
            assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 4242, 4343), path
        p = as_nobody('ls', m.path())                           # not even the names
        assert p.returncode != 0 and 'Permission denied' in p.stderr
        assert as_nobody('cat', m.path('b', 'shop', 'orders', 'nb-1-big-Data.db')).returncode != 0


def test_read_only_store_is_listed_verified_mounted_and_restored(store, tmp_path):
    """A read-only store (a snapshot, a read-only bind mount, a disaster-recovery copy without
    the catalog's -wal/-shm files) works for everything that only reads: its catalog is rebuilt
    in the cache directory when the store's own cannot be written."""
    src = make_sample(str(tmp_path / 's'), '--data-kib', '64', '--data-dirs', '1', '--keyspaces', '1',
                      '--tables', '1', '--sstables', '2', '--no-index', '--no-clutter')
    dirs = sample_dirs(src)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    want = cb('list', '--store', store, '--json').stdout
    copy = str(tmp_path / 'dr-copy')
    shutil.copytree(store, copy)
    for suffix in ('-wal', '-shm'):
        if os.path.exists(os.path.join(copy, 'catalog.db' + suffix)):
            os.unlink(os.path.join(copy, 'catalog.db' + suffix))
    ro = str(tmp_path / 'ro')
    os.makedirs(ro)
    subprocess.run(['mount', '--bind', copy, ro], check=True)
    try:
        subprocess.run(['mount', '-o', 'remount,ro,bind', ro], check=True)
        env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        assert cb('list', '--store', ro, '--json', env=env).stdout == want
        cb('verify', '--store', ro, 'b', env=env)
        live = tmp_path / 'live' / 'shop'
        os.makedirs(live / 'orders-0123456789abcdef0123456789abcdef')
        cb('restore', '--store', ro, 'b', '--data-dir', tmp_path / 'live', env=env)
        assert os.listdir(live / 'orders-0123456789abcdef0123456789abcdef')
        with mounted(ro, str(tmp_path / 'mnt'), env=env) as m:
            assert os.listdir(m.path('b', 'shop', 'orders'))
        p = cb('create', '--store', ro, '--name', 'x', *data_dir_args(dirs), '--snapshot', 'nightly-1',
               env=env, check=False)
        assert p.returncode != 0 and 'Read-only file system' in p.stderr, p.stderr
    finally:
        subprocess.run(['umount', ro], check=True)
