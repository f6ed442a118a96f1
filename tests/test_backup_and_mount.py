"""A backup of real and generated snapshots, read back through a real FUSE mount."""
import errno
import json
import mmap
import os
import random
import re
import stat
import shutil
import subprocess
import time

import pytest

from conftest import (manifest_path, CASSBACKUP, FIXTURE_TAG, backup_list, cb, data_dir_args, make_sample, mounted, packs, tmp_files,
                      read, run, sample_dirs, snapshot_tables)


def assert_tree_matches(m, name, data_dirs, tag, check_meta=True):
    """Every file of the snapshot is in the mount, byte-identical, same size/mode/mtime; and
    nothing else is."""
    want = snapshot_tables(data_dirs, tag)
    assert want
    for (ks, table), files in want.items():
        tdir = m.path(name, ks, table)
        got = set()
        for root, _, names in os.walk(tdir):
            got |= {os.path.relpath(os.path.join(root, n), tdir) for n in names}
        assert got == set(files), (ks, table)
        for rel, src in files.items():
            p = os.path.join(tdir, rel)
            assert read(p) == read(src), p
            if check_meta:
                a, b = os.stat(p), os.stat(src)
                assert (a.st_size, stat.S_IMODE(a.st_mode), a.st_mtime_ns) == \
                       (b.st_size, stat.S_IMODE(b.st_mode), b.st_mtime_ns), p
    ks_dirs = {ks for ks, _ in want}
    assert set(os.listdir(m.path(name))) == ks_dirs


def test_real_sstables_round_trip(store, fixture_tree, tmp_path):
    r = cb('create', '--store', store, '--name', 'real-1', '--data-dir', fixture_tree,
           '--snapshot', FIXTURE_TAG, '--node', 'node-a', '--cluster', 'prod', '--datacenter', 'dc1')
    assert 'backup real-1: 66 tables' in r.stdout
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert os.listdir(m.path()) == ['real-1']
        assert_tree_matches(m, 'real-1', [fixture_tree], FIXTURE_TAG)
        # schema.cql and manifest.json come along with every table
        t = m.path('real-1', 'legacy_tables', 'legacy_nb_clust')
        assert 'CREATE TABLE' in read(os.path.join(t, 'schema.cql')).decode()
        assert json.loads(read(os.path.join(t, 'manifest.json')))['files'] == ['nb-1-big-Data.db']


def test_generated_multi_dir_index_and_exclusions(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'gen-1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert_tree_matches(m, 'gen-1', dirs, 'nightly-1')
        orders = m.path('gen-1', 'shop', 'orders')
        names = os.listdir(orders)
        # sstables from both data dirs are merged into one table directory
        assert {'nb-1-big-Data.db', 'nb-2-big-Data.db'} <= set(names)
        assert os.path.isdir(os.path.join(orders, '.orders_by_customer_idx'))
        # never: live-only sstables, other tags, txn logs, tmp files
        assert not [n for n in names if n.startswith('nb-900') or '_txn_' in n or n.startswith('tmp-')]
        assert 'snapshots' not in names


def test_cp_and_rsync_reproduce_the_tree(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    want = snapshot_tables(dirs, 'nightly-1')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        src = m.path('b', 'shop', 'orders')
        run('rsync', '-a', src + '/', str(tmp_path / 'rsync') + '/')
        run('cp', '-a', src, str(tmp_path / 'cp'))
        run('cp', '-a', m.path('b'), str(tmp_path / 'whole'))
    for out in ('rsync', 'cp'):
        got = {}
        for root, _, names in os.walk(tmp_path / out):
            for n in names:
                got[os.path.relpath(os.path.join(root, n), tmp_path / out)] = os.path.join(root, n)
        assert set(got) == set(want[('shop', 'orders')])
        for rel, p in got.items():
            s = want[('shop', 'orders')][rel]
            assert read(p) == read(s)
            assert os.stat(p).st_mtime_ns == os.stat(s).st_mtime_ns
            assert stat.S_IMODE(os.stat(p).st_mode) == stat.S_IMODE(os.stat(s).st_mode)
    n = sum(len(f) for _, _, f in os.walk(tmp_path / 'whole'))
    assert n == sum(len(v) for v in want.values())


def test_packs_are_standard_tar_zst(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    [pack] = packs(store)
    run('zstd', '-t', '-q', pack)
    listing = run('tar', '--zstd', '-tf', pack).stdout.split()
    assert listing[-1] == '.cassbackup/index.json'  # the pack's blobs, last
    out = tmp_path / 'x'
    out.mkdir()
    run('tar', '--zstd', '-xf', pack, '-C', out)
    # a data-dir layout: <ks>/<table>-<id>/<file>, identical to the snapshot
    for (ks, table), files in snapshot_tables(dirs, 'nightly-1').items():
        [tdir] = [d for d in os.listdir(out / ks) if d.rsplit('-', 1)[0] == table]
        for rel, src in files.items():
            assert read(out / ks / tdir / rel) == read(src)
    index = json.loads(read(out / '.cassbackup' / 'index.json'))
    assert index['format'] == 2 and index['blobs']
    # the backup itself: backups/b/NODE.json, the store's record of it
    manifest = json.loads(read(manifest_path(store, 'b')))
    assert manifest['name'] == 'b' and manifest['format'] == 2
    nfiles = sum(len(t['files']) for k in manifest['keyspaces'] for t in k['tables'])
    assert nfiles == sum(len(v) for v in snapshot_tables(dirs, 'nightly-1').values())
    # one tar member of a single table, as an operator without cassbackup would do it
    [member] = [n for n in listing if re.fullmatch(r'shop/orders-[0-9a-f]{32}/nb-1-big-Data\.db', n)]
    one = tmp_path / 'one'
    one.mkdir()
    run('tar', '--zstd', '-xf', pack, '-C', one, member)
    assert read(one / member) == read(snapshot_tables(dirs, 'nightly-1')[('shop', 'orders')]['nb-1-big-Data.db'])


def test_second_backup_of_unchanged_snapshot_stores_almost_nothing(store, sample_tree):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'day1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    r = json.loads(cb('create', '--store', store, '--name', 'day2', *data_dir_args(dirs),
                      '--snapshot', 'nightly-1', '--json').stdout)
    [b1, b2] = backup_list(store)
    assert b2['name'] == 'day2' and r['new_bytes'] == 0
    assert b2['bytes'] == b1['bytes'] > 5 << 20
    # only the manifest is written: well under 2% of the first pack
    assert b2['stored_bytes'] < b1['stored_bytes'] * 0.02
    assert b1['unique_bytes'] == 0 and b2['unique_bytes'] == 0


def test_grown_snapshot_stores_only_new_sstables(store, tmp_path):
    src = make_sample(str(tmp_path / 'grow'), '--data-kib', '1024', '--sstables', '10', '--no-clutter',
                      '--keyspaces', '1', '--tables', '2')
    dirs = sample_dirs(src)
    a = json.loads(cb('create', '--store', store, '--name', 'day1', *data_dir_args(dirs),
                      '--snapshot', 'nightly-1', '--json').stdout)
    make_sample(src, '--data-kib', '1024', '--no-clutter', '--keyspaces', '1', '--tables', '2',
                '--grow-percent', '10', '--tag', 'nightly-2', '--seed', '2')
    b = json.loads(cb('create', '--store', store, '--name', 'day2', *data_dir_args(dirs),
                      '--snapshot', 'nightly-2', '--json').stdout)
    # 1 new sstable per table: 2 x (1 MiB Data.db + small components)
    assert 2 << 20 <= b['new_bytes'] < a['new_bytes'] * 0.15
    [l1, l2] = backup_list(store)
    assert l2['unique_bytes'] == b['new_bytes']
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert_tree_matches(m, 'day2', dirs, 'nightly-2')
        assert_tree_matches(m, 'day1', dirs, 'nightly-1')


def test_reads_straddling_frames(store, tmp_path):
    src = make_sample(str(tmp_path / 'big'), '--data-kib', str(5 * 1024 + 123), '--keyspaces', '1',
                      '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter',
                      '--data-dirs', '1')
    dirs = sample_dirs(src)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    orig = read(snapshot_tables(dirs, 'nightly-1')[('shop', 'orders')]['nb-1-big-Data.db'])
    size = len(orig)
    rng = random.Random(7)
    offsets = []
    for k in range(1, 6):  # frame boundaries are at multiples of 1 MiB of the file
        b = k << 20
        offsets += [(b - 1, 2), (b - 4096, 8192), (b - 100, 1 << 20), (b, 1)]
    offsets += [(rng.randrange(size), rng.randrange(1, 3 << 20)) for _ in range(50)]
    offsets += [(size - 10, 100), (size, 10), (0, size)]
    with mounted(store, str(tmp_path / 'mnt'), opts=('-o', 'cache_size=4')) as m:
        p = m.path('b', 'shop', 'orders', 'nb-1-big-Data.db')
        fd = os.open(p, os.O_RDONLY)
        try:
            for off, n in offsets:
                assert os.pread(fd, n, off) == orig[off:off + n], (off, n)
        finally:
            os.close(fd)
        # O_DIRECT bypasses the page cache: every one of these reaches the daemon
        fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
        try:
            for off, n in [(0, 4096), ((1 << 20) - 4096, 8192), ((3 << 20) - 4096, 1 << 20)]:
                buf = mmap.mmap(-1, n)  # page-aligned, as O_DIRECT wants
                got = os.preadv(fd, [buf], off)
                assert got == n and buf[:got] == orig[off:off + got], (off, n)
        finally:
            os.close(fd)


def test_writes_are_refused_with_erofs(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        t = m.path('b', 'shop', 'orders')
        f = os.path.join(t, 'nb-1-big-Data.db')
        attempts = [
            lambda: open(f, 'r+b'),
            lambda: open(os.path.join(t, 'new.db'), 'wb'),
            lambda: os.mkdir(os.path.join(t, 'd')),
            lambda: os.rename(f, f + '.x'),
            lambda: os.unlink(f),
            lambda: os.chmod(f, 0o600),
            lambda: os.chown(f, 1, 1),
            lambda: os.truncate(f, 0),
            lambda: os.utime(f, (0, 0)),
            lambda: os.symlink('x', os.path.join(t, 'l')),
            lambda: os.link(f, os.path.join(t, 'h')),
            lambda: os.rmdir(os.path.join(t, '.orders_by_customer_idx')),
            lambda: os.setxattr(f, 'user.x', b'1'),
            lambda: os.removexattr(f, 'user.cassbackup.sha256'),
            lambda: os.mkdir(m.path('new-backup')),
        ]
        for i, a in enumerate(attempts):
            with pytest.raises(OSError) as e:
                a()
            assert e.value.errno == errno.EROFS, i


def test_xattrs_and_stable_inodes(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--node', 'cass-7', '--cluster', 'prod', '--datacenter', 'eu-west')
    src = snapshot_tables(dirs, 'nightly-1')[('shop', 'orders')]['nb-1-big-Data.db']
    with mounted(store, str(tmp_path / 'mnt')) as m:
        f = m.path('b', 'shop', 'orders', 'nb-1-big-Data.db')
        assert os.getxattr(f, 'user.cassbackup.sha256').decode() == \
            run('sha256sum', src).stdout.split()[0]
        t = m.path('b', 'shop', 'orders')
        tid = os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(src)))).rsplit('-', 1)[1]
        assert os.getxattr(t, 'user.cassbackup.table_id').decode() == tid
        b = m.path('b')
        assert os.getxattr(b, 'user.cassbackup.node') == b'cass-7'
        assert os.getxattr(b, 'user.cassbackup.cluster') == b'prod'
        assert os.getxattr(b, 'user.cassbackup.datacenter') == b'eu-west'
        assert os.getxattr(b, 'user.cassbackup.created').decode().endswith('Z')
        assert 'user.cassbackup.node' in os.listxattr(b)
        with pytest.raises(OSError) as e:
            os.getxattr(f, 'user.nope')
        assert e.value.errno == errno.ENODATA
        inodes = {p: os.stat(p).st_ino for p in (f, t, b)}
    with mounted(store, str(tmp_path / 'mnt')) as m:
        for p, ino in inodes.items():
            assert os.stat(p).st_ino == ino


def test_backup_made_while_mounted_appears(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'first', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert os.listdir(m.path()) == ['first']
        assert not os.path.exists(m.path('second'))  # a negative lookup, before it exists
        cb('create', '--store', store, '--name', 'second', *data_dir_args(dirs), '--snapshot', 'nightly-1')
        deadline = time.monotonic() + 120
        while 'second' not in os.listdir(m.path()):
            assert time.monotonic() < deadline, 'new backup did not appear within 120 s'
            time.sleep(0.1)
        assert os.path.isdir(m.path('second', 'shop', 'orders'))
        assert_tree_matches(m, 'second', dirs, 'nightly-1', check_meta=False)


def test_selection_filters_and_system_keyspaces(store, tmp_path):
    src = make_sample(str(tmp_path / 's'), '--data-kib', '16', '--data-dirs', '1')
    [d] = sample_dirs(src)
    # a system keyspace with the same snapshot
    os.makedirs(os.path.join(d, 'system_schema'))
    os.rename(os.path.join(d, 'shop1'), os.path.join(d, 'system_schema', 'x'))
    sys_dir = os.path.join(d, 'system_schema')
    for t in os.listdir(os.path.join(sys_dir, 'x')):
        os.rename(os.path.join(sys_dir, 'x', t), os.path.join(sys_dir, t))
    os.rmdir(os.path.join(sys_dir, 'x'))

    def tables(name):
        with mounted(store, str(tmp_path / ('m' + name))) as m:
            return sorted(f'{ks}.{t}' for ks in os.listdir(m.path(name)) for t in os.listdir(m.path(name, ks)))

    cb('create', '--store', store, '--name', 'all', '--data-dir', d, '--snapshot', 'nightly-1')
    assert tables('all') == ['shop.orders', 'shop.table1', 'shop.table2']
    cb('create', '--store', store, '--name', 'sys', '--data-dir', d, '--snapshot', 'nightly-1',
       '--include-system')
    assert 'system_schema.orders' in tables('sys')
    cb('create', '--store', store, '--name', 'one', '--data-dir', d, '--snapshot', 'nightly-1',
       '--table', 'shop.table1', '--table', 'shop.orders')
    assert tables('one') == ['shop.orders', 'shop.table1']
    cb('create', '--store', store, '--name', 'ks', '--data-dir', d, '--snapshot', 'nightly-1',
       '--keyspace', 'shop')
    assert tables('ks') == ['shop.orders', 'shop.table1', 'shop.table2']


def test_list_reports_every_backup(store, sample_tree):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'a', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--node', 'n1')
    [b] = backup_list(store)
    want = snapshot_tables(dirs, 'nightly-1')
    assert b['name'] == 'a' and b['node'] == 'n1' and b['tables'] == len(want)
    assert b['files'] == sum(len(v) for v in want.values())
    assert b['bytes'] == sum(os.path.getsize(p) for v in want.values() for p in v.values())
    # identical components (TOC.txt files) are stored once; alone, a backup holds all it uses
    assert 0 < b['unique_bytes'] == b['new_bytes'] < b['bytes']
    text = cb('list', '--store', store).stdout.splitlines()
    assert text[0].split()[:3] == ['NAME', 'NODE', 'CREATED'] and text[1].split()[0] == 'a'


def test_progress_line_only_on_a_terminal(store, sample_tree):
    import pty
    dirs = sample_dirs(sample_tree)
    master, slave = pty.openpty()
    p = subprocess.run([CASSBACKUP, 'create', '--store', store, '--name', 'tty', *data_dir_args(dirs), '--snapshot', 'nightly-1'],
        stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out = b''
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert p.returncode == 0
    assert b'\rbacking up:' in out.replace(b'\x1b[K', b'') and b'files' in out
    # not a terminal: quiet but for the one summary line on stdout
    r = cb('create', '--store', store, '--name', 'pipe', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    assert r.stderr == '' and len(r.stdout.splitlines()) == 1 and r.stdout.startswith('backup pipe:')


def test_mount_raises_readahead(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        os.listdir(m.path())  # the first request after INIT raises it
        dev = os.stat(m.mnt).st_dev
        bdi = f'/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb'
        if not os.access(bdi, os.W_OK):
            pytest.skip(f'{bdi} is not writable here')
        deadline = time.monotonic() + 120
        while int(open(bdi).read()) != 4096:
            assert time.monotonic() < deadline, open(bdi).read()
            time.sleep(0.05)


def test_concurrent_creates_all_land(store, tmp_path):
    """Several creates at once into one store: none may reclaim another's pack in progress.
    Six nodes with the same data (one create of a node runs at a time: a flock of its data
    directory), ten backups each."""
    src = make_sample(str(tmp_path / 'tiny'), '--data-kib', '4', '--data-dirs', '1', '--keyspaces', '1',
                      '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter')
    nodes = []
    for k in range(6):
        nodes.append(str(tmp_path / f'node{k}'))
        shutil.copytree(sample_dirs(src)[0], nodes[-1], symlinks=True)
    runs = [subprocess.Popen(
        ['sh', '-c', f'for n in {" ".join(f"b{i:03d}" for i in range(k, 60, 6))}; do '
         f'{CASSBACKUP} create --store {store} --name $n --data-dir {d} --snapshot nightly-1 '
         '--threads 1 --no-schema --no-conf || exit 1; done'],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k, d in enumerate(nodes)]
    for p in runs:
        err = p.communicate()[1]
        assert p.returncode == 0 and err == '', err
    listed = backup_list(store)
    # Identical data: only creates that found the store without it wrote a pack; the others
    # wrote a manifest alone. Every backup is complete either way.
    assert len(listed) == 60 and all(b['complete'] for b in listed) and tmp_files(store) == []
    assert 1 <= len(packs(store)) <= 60
