"""Bad input: a clear one-line error, a non-zero exit, and nothing changed."""
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import (CASSBACKUP, MOUNT, backup_list, cb, data_dir_args, make_sample, mounted,
                      packs, read, run, sample_dirs, snapshot_tables, tmp_files, tmpfs, upload_size,
                      wait_for)


def one_error_line(p, *words):
    """The command failed with exactly one line on stderr that says what and why."""
    assert p.returncode != 0
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def store_state(store):
    """What a failed command must leave untouched: catalog rows and pack files."""
    return backup_list(store), packs(store), tmp_files(store)


@pytest.fixture
def base(store, sample_tree):
    """A store already holding one good backup."""
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'good', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    return store, dirs


def assert_good_backup_intact(store, dirs, tmp_path):
    with mounted(store, str(tmp_path / 'check')) as m:
        for (ks, table), files in snapshot_tables(dirs, 'nightly-1').items():
            for rel, src in files.items():
                assert read(m.path('good', ks, table, rel)) == read(src)


def test_store_missing(tmp_path, sample_tree):
    p = cb('create', '--store', tmp_path / 'nope', '--data-dir', sample_dirs(sample_tree)[0],
           '--snapshot', 'nightly-1', check=False)
    one_error_line(p, 'cannot open store', 'nope', 'No such file or directory')
    assert not (tmp_path / 'nope').exists()
    one_error_line(cb('list', '--store', tmp_path / 'nope', check=False), 'No such file')


def test_not_a_store(tmp_path, sample_tree):
    d = tmp_path / 'plain'
    d.mkdir()
    (d / 'keep.txt').write_text('x')
    p = cb('create', '--store', d, '--data-dir', sample_dirs(sample_tree)[0], '--snapshot',
           'nightly-1', check=False)
    one_error_line(p, 'cannot open store', 'not a cassbackup store')
    assert sorted(os.listdir(d)) == ['keep.txt']
    (d / 'catalog.db').write_bytes(b'this is not sqlite' * 100)
    one_error_line(cb('list', '--store', d, check=False), 'not a cassbackup store')
    one_error_line(cb('init', '--store', d, check=False), 'not empty')
    m = subprocess.run([MOUNT, d, tmp_path], capture_output=True, text=True)
    one_error_line(m, 'not a cassbackup store')


def test_snapshot_tag_not_found_lists_existing(base):
    store, dirs = base
    before = store_state(store)
    p = cb('create', '--store', store, '--name', 'x', *data_dir_args(dirs), '--snapshot', 'nope',
           check=False)
    line = one_error_line(p, 'snapshot nope', 'not found')
    assert 'nightly-1' in line and 'older-tag' in line
    assert store_state(store) == before


def test_backup_name_taken(base):
    store, dirs = base
    before = store_state(store)
    p = cb('create', '--store', store, '--name', 'good', *data_dir_args(dirs), '--snapshot',
           'nightly-1', check=False)
    one_error_line(p, 'backup good of node', 'already exists')
    assert store_state(store) == before


def test_empty_selection(base, tmp_path):
    store, dirs = base
    before = store_state(store)
    one_error_line(cb('create', '--store', store, '--name', 'x', *data_dir_args(dirs),
                      '--snapshot', 'nightly-1', '--keyspace', 'nosuchks', check=False),
                   'keyspace nosuchks', 'not found')
    one_error_line(cb('create', '--store', store, '--name', 'x', *data_dir_args(dirs),
                      '--snapshot', 'nightly-1', '--table', 'shop.nosuch', check=False),
                   'table shop.nosuch', 'not found')
    empty = tmp_path / 'empty'
    empty.mkdir()
    one_error_line(cb('create', '--store', store, '--name', 'x', '--data-dir', empty,
                      '--snapshot', 'nightly-1', check=False), 'snapshot nightly-1', 'not found')
    one_error_line(cb('create', '--store', store, '--name', 'x', '--data-dir', tmp_path / 'gone',
                      '--snapshot', 'nightly-1', check=False), 'data directory', 'No such file')
    one_error_line(cb('create', '--store', store, '--name', '../evil', *data_dir_args(dirs),
                      '--snapshot', 'nightly-1', check=False), 'backup name')
    assert store_state(store) == before


def test_unreadable_file(binaries):
    """As an unprivileged user (root reads everything), with one file mode 000."""
    top = tempfile.mkdtemp(prefix='cb-unreadable-')  # pytest's tmp dirs are private to root
    try:
        os.chmod(top, 0o755)
        store = os.path.join(top, 'store')
        cb('init', '--store', store)
        src = make_sample(os.path.join(top, 's'), '--data-kib', '64', '--data-dirs', '1')
        [d] = sample_dirs(src)
        run('chown', '-R', 'nobody', store)
        run('chmod', '-R', 'a+rX', src)
        as_nobody = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', CASSBACKUP]
        run(*as_nobody, 'create', '--store', store, '--name', 'ok', '--data-dir', d,
            '--snapshot', 'nightly-1', '--table', 'shop.orders')
        bad = snapshot_tables([d], 'nightly-1')[('shop', 'table1')]['nb-1-big-Index.db']
        os.chmod(bad, 0)
        before = store_state(store)
        p = run(*as_nobody, 'create', '--store', store, '--name', 'x', '--data-dir', d,
                '--snapshot', 'nightly-1', check=False)
        one_error_line(p, 'cannot read', bad, 'Permission denied')
        assert store_state(store) == before
    finally:
        shutil.rmtree(top)


def test_file_vanishing_during_create(store, tmp_path):
    """A file deleted after the scan and before it is read: the backup fails, cleanly."""
    src = make_sample(str(tmp_path / 's'), '--data-kib', '262144', '--incompressible', '--data-dirs', '1',
                      '--keyspaces', '2', '--tables', '1', '--sstables', '1', '--no-index',
                      '--no-clutter')
    [d] = sample_dirs(src)
    victim = snapshot_tables([d], 'nightly-1')[('shop1', 'orders')]['nb-1-big-Data.db']
    proc = subprocess.Popen([CASSBACKUP, 'create', '--store', store, '--name', 'x', '--data-dir', d,
                             '--snapshot', 'nightly-1', '--threads', '1', '--no-schema', '--no-conf'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Files go in keyspace order: once the pack grows, the scan is over and shop/ is being read.
    deadline = time.monotonic() + 30
    while not upload_size(proc.pid, store):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGSTOP)
    os.unlink(victim)
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    one_error_line(p, 'cannot read', victim, 'No such file')
    # Packs are committed one by one (at most pack_size each): a pack of the table read before
    # may be in the store, named by no manifest, until the next prune. Never a backup, nor a
    # file in tmp/. (Another create could have deduplicated against that pack meanwhile: only
    # prune, alone on the store, may delete it.)
    assert backup_list(store) == [] and tmp_files(store) == []
    cb('prune', '--store', store)
    assert packs(store) == []


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_during_create(base, tmp_path, sig):
    store, dirs = base
    src = make_sample(str(tmp_path / 's'), '--data-kib', '307200', '--incompressible', '--data-dirs', '1',
                      '--keyspaces', '1', '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter')
    before = store_state(store)
    proc = subprocess.Popen([CASSBACKUP, 'create', '--store', store, '--name', 'x', '--data-dir',
                             sample_dirs(src)[0], '--snapshot', 'nightly-1', '--no-schema', '--no-conf'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not upload_size(proc.pid, store):
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                   'interrupted', 'no backup was made')
    assert store_state(store) == before
    assert_good_backup_intact(store, dirs, tmp_path)


def test_signal_after_a_pack_was_committed_says_what_stays(base, tmp_path):
    """An interrupted create said "nothing changed" though the packs it had finished stay
    (until prune removes them): now it says so, and prune does."""
    store, dirs = base
    src = make_sample(str(tmp_path / 's'), '--data-kib', '65536', '--incompressible', '--data-dirs', '1',
                      '--keyspaces', '1', '--tables', '2', '--sstables', '4', '--no-index', '--no-clutter')
    before = packs(store)
    proc = subprocess.Popen([CASSBACKUP, 'create', '--store', store, '--name', 'x', '--data-dir',
                             sample_dirs(src)[0], '--snapshot', 'nightly-1', '--no-schema', '--no-conf',
                             '--pack-size', '1M', '--limit-upload', '8M'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while len(packs(store)) == len(before):  # a pack of its own committed
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                   'interrupted', "no backup was made (packs it finished stay in the store, unused, "
                   "until 'cassbackup prune')")
    assert 'x' not in [b['name'] for b in backup_list(store)]
    cb('prune', '--store', store)
    assert packs(store) == before
    assert_good_backup_intact(store, dirs, tmp_path)


def test_kill_9_during_create(base, tmp_path):
    store, dirs = base
    src = make_sample(str(tmp_path / 's'), '--data-kib', '307200', '--incompressible', '--data-dirs', '1',
                      '--keyspaces', '1', '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter')
    before_list, before_packs, _ = store_state(store)
    proc = subprocess.Popen([CASSBACKUP, 'create', '--store', store, '--name', 'x', '--data-dir',
                             sample_dirs(src)[0], '--snapshot', 'nightly-1'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not upload_size(proc.pid, store):
        assert proc.poll() is None
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    # A pack goes from an unnamed file straight to its name in packs/: killed before that, the
    # kernel freed it; killed after it (a loaded machine lets the create run on), a whole pack
    # that no manifest names is there, which the next prune removes. The lease is rewritten in
    # place (linked into tmp/ as a named upload, then renamed over locks/...): killed between
    # the two, that upload stays in tmp/, unlocked, for the next create to reclaim (below). No
    # other file is ever left in tmp/, no backup appears, and the other backups stay whole.
    for name in tmp_files(store):
        assert name.endswith('.upload') and b'"host"' in read(os.path.join(store, 'tmp', name)), name
    assert backup_list(store) == before_list
    left = sorted(set(packs(store)) - set(before_packs))
    assert set(before_packs) <= set(packs(store)) and len(left) <= 1
    assert_good_backup_intact(store, dirs, tmp_path)
    cb('prune', '--store', store)
    assert packs(store) == before_packs
    p = cb('create', '--store', store, '--name', 'next', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    assert tmp_files(store) == []
    assert [b['name'] for b in backup_list(store)] == ['good', 'next']


def test_init_on_a_nearly_full_disk_leaves_a_whole_catalog_or_says_the_disk_is_full(tmp_path):
    """With room for a new catalog and its WAL but not for the checkpoint closing makes, the
    file was linked into place without its tables: init said 'cannot open catalog: Structure
    needs cleaning' (240 to 320 KiB tmpfs here). Every size: a store that lists, or a full disk
    said so."""
    for kib in range(200, 420, 20):
        with tmpfs(tmp_path / f'fs{kib}', f'{kib}k') as fs:
            store = str(fs / 'store')
            p = cb('init', '--store', store, check=False)
            assert 'Structure needs cleaning' not in p.stderr, (kib, p.stderr)
            if p.returncode == 0:
                assert cb('list', '--store', store, '--json').stdout.strip() == '[]', kib
            else:
                assert 'No space left on device' in p.stderr, (kib, p.stderr)


def test_disk_full_while_writing_pack(tmp_path, sample_tree):
    """A real full file system: a 3 MiB tmpfs holding the store."""
    with tmpfs(tmp_path / 'small', '3m') as fs:
        store = str(fs / 'store')
        cb('init', '--store', store)
        small = make_sample(str(tmp_path / 'small-data'), '--data-kib', '64', '--data-dirs', '1',
                            '--keyspaces', '1', '--tables', '1')
        cb('create', '--store', store, '--name', 'fits', *data_dir_args(sample_dirs(small)),
           '--snapshot', 'nightly-1')
        big = make_sample(str(tmp_path / 'big-data'), '--data-kib', '8192', '--incompressible',
                          '--data-dirs', '1', '--keyspaces', '1', '--tables', '1')
        before = store_state(store)
        p = cb('create', '--store', store, '--name', 'toobig', *data_dir_args(sample_dirs(big)),
               '--snapshot', 'nightly-1', check=False)
        one_error_line(p, 'cannot write pack', 'No space left on device')
        assert store_state(store) == before
        with mounted(store, str(tmp_path / 'mnt')) as m:
            for rel, src in snapshot_tables(sample_dirs(small), 'nightly-1')[('shop', 'orders')].items():
                assert read(m.path('fits', 'shop', 'orders', rel)) == read(src)


def fill_up(fs, leave=0):
    """Takes every free byte of file system fs but leave (another program's files), in
    fs/filler."""
    st = os.statvfs(fs)
    with open(fs / 'filler', 'ab') as f:
        f.write(b'\0' * (st.f_bavail * st.f_frsize - leave))
    if not leave:
        with pytest.raises(OSError) as e:
            (fs / 'one-more').write_bytes(b'x' * 8192)
        assert e.value.errno == errno.ENOSPC


def pack_bytes(store):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(os.path.join(store, 'packs'))
               for f in names)


def test_a_store_whose_disk_filled_up_is_read_forgotten_and_pruned(tmp_path):
    """A local store whose file system filled up (another program's files, a backup too big):
    every command stopped at "cannot open catalog ...: No space left on device", forget and
    prune too, which would free the space. The catalog, a cache, is kept in a temporary
    directory for the run, and a lock takes back the space the store reserved (reserve)."""
    with tmpfs(tmp_path / 'disk', '72m') as fs:
        store = str(fs / 'store')
        cb('init', '--store', store)
        assert os.path.getsize(os.path.join(store, 'reserve')) == 1 << 20
        days = {}
        for i, name in enumerate(('old', 'new')):
            src = make_sample(str(tmp_path / name), '--data-kib', '1024', '--incompressible', '--data-dirs', '1',
                              '--keyspaces', '1', '--tables', '1', '--seed', str(40 + i))
            days[name] = sample_dirs(src)
            cb('create', '--store', store, '--name', name, *data_dir_args(days[name]), '--snapshot', 'nightly-1')
        for n in os.listdir(store):  # no catalog: one is begun, and cannot be finished
            if n.startswith('catalog.db'):
                os.unlink(os.path.join(store, n))
        fill_up(fs, leave=160 << 10)
        # what runs killed before their end left in TMPDIR: removed, unless a run still holds it
        tmpdir = tmp_path / 'tmpdir'
        env = dict(os.environ, TMPDIR=str(tmpdir))
        left, held = tmpdir / 'cassbackup-catalog-killed', tmpdir / 'cassbackup-catalog-running'
        for d in (left, held):
            d.mkdir(parents=True, mode=0o700)
            (d / 'catalog.db').write_bytes(b'x' * 4096)
            os.utime(d, (time.time() - 120, time.time() - 120))  # past the grace of a minute
        holder = os.open(held, os.O_RDONLY | os.O_DIRECTORY)  # a run using it locks it
        fcntl.flock(holder, fcntl.LOCK_EX)
        note = 'No space left on device; this run keeps a temporary one'
        p = cb('list', '--store', store, env=env)
        assert note in p.stderr and str(tmpdir) in p.stderr, p.stderr
        assert 'new' in p.stdout and 'old' in p.stdout, p.stdout
        assert os.listdir(tmpdir) == [held.name]
        assert not [n for n in os.listdir(store) if n.startswith('catalog.db.new')]  # nothing half-made left
        os.close(holder)
        fill_up(fs)
        p = cb('forget', '--store', store, 'old', env=env)
        assert note in p.stderr and not os.path.exists(os.path.join(store, 'reserve')), p.stderr
        before = pack_bytes(store)
        p = cb('prune', '--store', store, env=env)
        assert pack_bytes(store) < before - (1 << 20), p.stdout + p.stderr  # old's own megabyte
        fill_up(fs)  # what prune freed taken by the other program
        with mounted(store, str(tmp_path / 'mnt'), env=env,
                     expect_errors=('this mount keeps a temporary one', 'the catalog was made anew')) as m:
            files = snapshot_tables(days['new'], 'nightly-1')[('shop', 'orders')]
            for rel, src in files.items():
                assert read(m.path('new', 'shop', 'orders', rel)) == read(src)
            # its temporary catalog removed under it (a cleaner of /tmp): made again, never
            # "No such file" for what the store holds
            [mine] = [n for n in os.listdir(tmpdir) if n != held.name]
            shutil.rmtree(tmpdir / mine)
            # listings ask for refreshes, which look at the catalog's path
            wait_for(lambda: os.listdir(m.path('new')) and os.path.exists(tmpdir / mine / 'catalog.db'),
                     'the catalog made again')
            with open('/proc/sys/vm/drop_caches', 'w') as f:
                f.write('2')  # the kernel forgets its dentries: lookups reach the mount again
            for rel, src in files.items():
                assert read(m.path('new', 'shop', 'orders', rel)) == read(src)
        assert os.listdir(tmpdir) == []  # each run removed its own; the held one, let go, swept
        os.unlink(fs / 'filler')  # room again: the next writer makes the reserve again
        other = fs / 'not-the-stores'
        other.write_bytes(b'x')
        os.link(other, os.path.join(store, 'reserve'))  # planted: never grown
        cb('forget', '--store', store, '--keep-last', '1')
        assert other.read_bytes() == b'x'
        os.unlink(os.path.join(store, 'reserve'))
        cb('forget', '--store', store, '--keep-last', '1')
        assert os.path.getsize(os.path.join(store, 'reserve')) == 1 << 20


def test_export_to_a_full_disk_says_so(base, tmp_path):
    """export -o onto a full file system said libarchive's "Write error", not why."""
    store, _ = base
    with tmpfs(tmp_path / 'small', '64k') as fs:
        p = cb('export', '--store', store, 'good', '-o', fs / 'good.tar', check=False)
        one_error_line(p, 'cannot write', 'No space left on device')
        assert os.listdir(fs) == []


def test_mountpoint_missing_or_busy(base, tmp_path):
    store, _ = base
    p = subprocess.run([MOUNT, store, tmp_path / 'nope', '-f'], capture_output=True, text=True)
    one_error_line(p, 'mountpoint', 'No such file or directory')
    f = tmp_path / 'file'
    f.write_text('x')
    one_error_line(subprocess.run([MOUNT, store, f], capture_output=True, text=True), 'not a directory')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        p = subprocess.run([MOUNT, store, m.mnt, '-f'], capture_output=True, text=True, timeout=120)
        one_error_line(p, 'busy')
        assert os.listdir(m.path()) == ['good']  # the first mount still serves


def frame_bounds(pack):
    """(compressed offset, size) of each frame, from the seek table at the pack's end."""
    from conftest import seek_entry_size
    data = read(pack)
    n, es = int.from_bytes(data[-9:-5], 'little'), seek_entry_size(data)
    table = data[-(9 + es * n):-9]
    off, res = 0, []
    for i in range(n):
        c = int.from_bytes(table[es * i:es * i + 4], 'little')
        res.append((off, c))
        off += c
    return res


def test_corrupt_or_missing_pack_gives_eio_and_spares_the_rest(store, tmp_path):
    a = make_sample(str(tmp_path / 'a'), '--data-kib', '4096', '--data-dirs', '1', '--keyspaces', '1',
                    '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter', '--seed', '11')
    b = make_sample(str(tmp_path / 'b'), '--data-kib', '64', '--data-dirs', '1', '--keyspaces', '1',
                    '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter', '--seed', '12')
    cb('create', '--store', store, '--name', 'a', *data_dir_args(sample_dirs(a)), '--snapshot', 'nightly-1')
    [pack_a] = packs(store)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(sample_dirs(b)), '--snapshot', 'nightly-1')
    files_a = snapshot_tables(sample_dirs(a), 'nightly-1')[('shop', 'orders')]
    files_b = snapshot_tables(sample_dirs(b), 'nightly-1')[('shop', 'orders')]

    # Flip one byte in the middle of the largest frame: part of a's Data.db.
    off, size = max(frame_bounds(pack_a), key=lambda f: f[1])
    with open(pack_a, 'r+b') as f:
        f.seek(off + size // 2)
        byte = f.read(1)
        f.seek(off + size // 2)
        f.write(bytes([byte[0] ^ 0x40]))
    with mounted(store, str(tmp_path / 'mnt'), expect_errors=('pack data is corrupt',)) as m:
        with pytest.raises(OSError) as e:
            read(m.path('a', 'shop', 'orders', 'nb-1-big-Data.db'))
        assert e.value.errno == errno.EIO
        for rel, src in files_a.items():   # other files of the same pack
            if rel != 'nb-1-big-Data.db':
                assert read(m.path('a', 'shop', 'orders', rel)) == read(src)
        for rel, src in files_b.items():
            assert read(m.path('b', 'shop', 'orders', rel)) == read(src)
        assert 'nb-1-big-Data.db' in m.log() and 'corrupt' in m.log()

    os.rename(pack_a, pack_a + '.away')
    in_a = {read(p) for p in files_a.values()}  # b shares these bytes with a (deduplicated)
    with mounted(store, str(tmp_path / 'mnt2'), expect_errors=('pack file is missing',)) as m:
        for rel in files_a:
            with pytest.raises(OSError) as e:
                read(m.path('a', 'shop', 'orders', rel))
            assert e.value.errno == errno.EIO
        own = [(rel, src) for rel, src in files_b.items() if read(src) not in in_a]
        assert len(own) > len(files_b) // 2
        for rel, src in own:
            assert read(m.path('b', 'shop', 'orders', rel)) == read(src)
        assert os.listdir(m.path('a', 'shop', 'orders'))  # the tree is still listed
