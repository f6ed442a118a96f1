"""check, export and reindex on real stores: real packs, real damage, stock tar, a real mount."""
import hashlib
import json
import os
import pathlib
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile

import pytest

from conftest import (manifest_path, pid_space, CASSBACKUP, FIXTURE_TAG, REPO, backup_list, cb, data_dir_args, make_sample, mounted, packs, read,
                      read_only_bind, run, sample_dirs, snapshot_tables, wait_for)
from test_restore_load import rewrite_frame


def check(store, *args):
    p = cb('check', '--store', store, '--json', *args, check=False)
    assert p.returncode in (0, 1), p.stderr
    res = json.loads(p.stdout)
    assert (p.returncode == 1) == bool(res['problems'])
    return p.returncode, res


def blob_offsets(store, pack):
    """{(file name, offset)} of the blobs the catalog says pack holds."""
    con = sqlite3.connect(os.path.join(store, 'catalog.db'))
    rel = os.path.relpath(pack, store)
    rows = con.execute("SELECT f.name, l.offset FROM blob_locs l JOIN packs p ON p.id = l.pack_id"
                       " JOIN files f ON f.blob_id = l.blob_id WHERE p.path = ? AND f.size > 100"
                       " ORDER BY l.offset", (rel,)).fetchall()
    con.close()
    return rows


def flip_in_blob(pack, offset):
    """A flipped byte in the blob at offset, re-encoded as a valid zstd frame (see
    rewrite_frame): only reading the data and comparing SHA-256 can find it."""
    def flip(plain, at):
        b = bytearray(plain)
        b[at + 3] ^= 0x10
        return bytes(b)
    return rewrite_frame(pack, offset, flip)


@pytest.fixture
def real_backup(store, fixture_tree):
    cb('create', '--store', store, '--name', 'real', '--data-dir', fixture_tree, '--snapshot', FIXTURE_TAG)
    return store


@pytest.fixture
def two_days(store, tmp_path):
    """Two backups, the second sharing most files with the first: its blobs are in two packs."""
    src = make_sample(str(tmp_path / 'grow'), '--data-kib', '256', '--sstables', '4', '--keyspaces', '2',
                      '--tables', '2')
    dirs = sample_dirs(src)
    before = len(packs(store))
    cb('create', '--store', store, '--name', 'day1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    make_sample(src, '--data-kib', '256', '--keyspaces', '2', '--tables', '2', '--grow-percent', '30',
                '--tag', 'nightly-2', '--seed', '2')
    cb('create', '--store', store, '--name', 'day2', *data_dir_args(dirs), '--snapshot', 'nightly-2')
    assert len(packs(store)) == before + 2
    return store, dirs


def small_backups(store, tmp_path, n):
    """n backups of one small table, each of new bytes: n packs."""
    for i in range(n):
        d = tmp_path / f'dd{i}'
        snap = d / 'ks' / ('t-' + '0' * 32) / 'snapshots' / 'tag'
        snap.mkdir(parents=True)
        (snap / 'nb-1-big-Data.db').write_bytes(os.urandom(3000 + i) * 3)
        (snap / 'nb-1-big-TOC.txt').write_bytes(b'Data.db\nTOC.txt\n' + b'\n' * i)
        cb('create', '--store', store, '--name', f'b{i}', '--data-dir', str(d), '--snapshot', 'tag')
    assert len(packs(store)) == n


def named(problems, what):
    return [p for p in problems if what in p]


# --- check ------------------------------------------------------------------------------------

def test_check_clean_store(real_backup, two_days):
    store, _ = two_days
    rc, res = check(store)
    assert rc == 0 and res['problems'] == [] and res['info'] == []
    s = res['summary']
    assert (s['backups'], s['packs'], s['packs_read']) == (3, 3, 0)
    rc, res = check(store, '--read-data')
    assert rc == 0 and res['problems'] == []
    assert res['summary']['packs_read'] == 3
    assert res['summary']['bytes_read'] > res['summary']['bytes'] / 2
    text = cb('check', '--store', store, '--read-data').stdout.splitlines()
    assert text[-1].startswith('3 backups, 3 packs (') and text[-1].endswith(': no problems')


def test_check_a_store_on_a_read_only_mount(two_days, tmp_path):
    """check wrote a probe lock to read the store's clock: on a read-only mount of a store
    (a replica, a snapshot of its disk) it failed with "Read-only file system", exit 1."""
    store, _ = two_days
    with read_only_bind(store, str(tmp_path / 'ro')) as ro:
        env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        p = cb('check', '--store', ro, '--read-data', env=env)
        assert p.stdout.splitlines()[-1].endswith(': no problems'), p.stdout + p.stderr


def test_check_damaged_manifest(real_backup, two_days):
    store, _ = two_days
    path = manifest_path(store, 'day1')
    doc = read(path)
    open(path, 'wb').write(doc[:len(doc) // 2])
    p = cb('check', '--store', store, check=False)
    assert p.returncode == 1
    bad = [l for l in p.stdout.splitlines() if l.startswith('PROBLEM ')]
    key = os.path.relpath(path, store)  # backups/day1/NODE.json
    assert len(bad) == 1 and bad[0].startswith(f'PROBLEM {key}: '), p.stdout
    assert p.stdout.splitlines()[-1].endswith(': 1 problem')
    # the other backups are still checked
    rc, res = check(store)
    assert res['summary']['backups'] == 2


def test_a_bit_flipped_in_a_manifest_is_a_problem_and_restores_nothing(two_days, tmp_path):
    """One bit of a plain store's manifest flipped in a file's name: check said "no problems"
    and restore wrote the sstable's Data.db under another name, exit 0. The manifest's own
    SHA-256 refuses it: check names it, list warns of it, verify and export say that backup
    cannot be read (they said "no such backup", exit 3), verify --all fails, the rest reads
    on."""
    store, _ = two_days
    path = manifest_path(store, 'day1')
    doc = bytearray(read(path))
    at = doc.index(b'-Data.db')
    doc[at + 1] ^= 0x01  # 'D' -> 'E'
    with open(path, 'wb') as f:
        f.write(doc)
    for suffix in ('', '-wal', '-shm'):  # the catalog, a cache, reads the manifests again
        if os.path.exists(os.path.join(store, 'catalog.db' + suffix)):
            os.unlink(os.path.join(store, 'catalog.db' + suffix))
    p = cb('check', '--store', store, check=False)
    key = os.path.relpath(path, store)
    bad = [l for l in p.stdout.splitlines() if l.startswith('PROBLEM ')]
    assert p.returncode == 1 and len(bad) == 1 and bad[0].startswith(f'PROBLEM {key}: ') \
        and 'damaged' in bad[0], p.stdout
    p = cb('list', '--store', store, '--json')
    assert [b['name'] for b in json.loads(p.stdout)] == ['day2']
    assert 'warning: 1 manifest(s) of store' in p.stderr and 'day1' in p.stderr, p.stderr
    for cmd in (['verify'], ['export', '--output', str(tmp_path / 'day1.tar')]):
        p = cb(cmd[0], '--store', store, 'day1', *cmd[1:], check=False)
        assert p.returncode == 1 and p.stderr.count('\n') == 1, (cmd, p)
        assert p.stderr.startswith(f'cassbackup: backup day1 of {store} cannot be read: {key}: '), p.stderr
    assert not os.path.exists(tmp_path / 'day1.tar')
    cb('verify', '--store', store, 'day2')
    p = cb('verify', '--store', store, '--all', check=False)
    assert p.returncode == 1 and 'cannot verify 1 backup(s) of' in p.stderr and key in p.stderr
    assert 'day2' in p.stdout  # the other still verified


def test_check_missing_pack(store, two_days):
    store, _ = two_days
    first = min(packs(store), key=os.path.getmtime)
    key = os.path.relpath(first, store)
    os.unlink(first)
    rc, res = check(store)
    assert rc == 1
    # every file of day1 lost its bytes, and so did day2's files it shared with day1
    lost1 = named(res['problems'], 'backup day1/')
    lost2 = named(res['problems'], 'backup day2/')
    assert all("are in no intact pack's index" in p for p in lost1 + lost2)
    assert len(lost1) == sum(len(f) for f in snapshot_tables(two_days[1], 'nightly-1').values())
    assert 0 < len(lost2) < sum(len(f) for f in snapshot_tables(two_days[1], 'nightly-2').values())
    assert any(i.startswith(key + ': catalog.db knew this pack') for i in res['info']), res['info']


def test_check_flipped_byte_in_blob_only_with_read_data(real_backup):
    store = real_backup
    [pack] = packs(store)
    name, off = blob_offsets(store, pack)[5]
    table_changed = flip_in_blob(pack, off)
    run('zstd', '-t', '-q', pack)  # a valid zstd stream: only SHA-256 can tell
    key = os.path.relpath(pack, store)
    rc, res = check(store)
    if table_changed:  # a pack of another size than the catalog indexed: said
        assert rc == 1 and len(res['problems']) == 1, res
        assert res['problems'][0].startswith(f'catalog.db: pack {key}: ')
        assert 'when it was indexed: damaged or replaced since' in res['problems'][0]
    else:  # the frame re-encoded to its old length (its tar header's times vary by run)
        assert rc == 0, res
    # a careful forger leaves a catalog that agrees: rebuild it from the damaged store
    cb('reindex', '--store', store)
    rc, res = check(store)
    assert rc == 0, res
    rc, res = check(store, '--read-data')
    assert rc == 1
    blob = named(res['problems'], f'{key}: blob ')
    assert len(blob) == 1 and f'at offset {off}): SHA-256 differs' in blob[0]
    files = named(res['problems'], 'backup real/')
    assert files and all(p.endswith(f'{name}: its bytes are damaged in {key}') for p in files)
    assert len(res['problems']) == 1 + len(files)


def test_check_flipped_bits_in_seek_table_name_the_pack(real_backup):
    store = real_backup
    [pack] = packs(store)
    key = os.path.relpath(pack, store)
    orig = read(pack)
    from conftest import seek_entry_size
    n = int.from_bytes(orig[-9:-5], 'little')
    tsize = 8 + seek_entry_size(orig) * n + 9
    start = len(orig) - tsize
    nbits = tsize * 8
    for bit in range(0, nbits, max(1, nbits // 40)):
        data = bytearray(orig)
        data[start + bit // 8] ^= 1 << (bit % 8)
        open(pack, 'wb').write(data)
        rc, res = check(store)
        assert rc == 1, bit
        assert any(p.startswith(key + ': ') for p in res['problems']), (bit, res['problems'])
    open(pack, 'wb').write(orig)
    assert check(store, '--read-data')[0] == 0


def test_check_subsets_cover_every_pack_once(store, tmp_path):
    small_backups(store, tmp_path, 8)
    keys = {os.path.relpath(p, store) for p in packs(store)}
    for p in packs(store):  # damage every pack where only reading the data can see it
        flip_in_blob(p, blob_offsets(store, p)[0][1])
    cb('reindex', '--store', store)
    assert check(store)[0] == 0

    def damaged(*args):
        rc, res = check(store, *args)
        found = {p.split(': ')[0] for p in named(res['problems'], ': blob ')}
        assert len(found) == res['summary']['packs_read']
        return found

    assert damaged('--read-data') == keys
    for m in (2, 3):
        parts = [damaged('--read-data-subset', f'{n}/{m}') for n in range(1, m + 1)]
        assert set().union(*parts) == keys
        assert sum(len(p) for p in parts) == len(keys)
    assert damaged('--read-data-subset', '1/2') == damaged('--read-data-subset', '1/2')
    assert damaged('--read-data-subset', '100%') == keys
    half = damaged('--read-data-subset', '50%')
    assert half <= keys and len(half) == len(keys) // 2


def test_check_share_reads_other_packs_each_run(store, tmp_path):
    """--read-data-subset P% read the packs with the lowest ids every time: a weekly 10% check
    never read the other 90%, and passed on a store whose damage lay there; on a store of fewer
    than 10 packs, 10% read none and said 'no problems'. Each run now draws its share anew, at
    least one pack."""
    small_backups(store, tmp_path, 4)
    keys = {os.path.relpath(p, store) for p in packs(store)}
    assert len(keys) == 4
    for p in packs(store):
        flip_in_blob(p, blob_offsets(store, p)[0][1])
    cb('reindex', '--store', store)
    seen = set()
    for _ in range(80):  # one of 4 each run: all 4 seen within 80 runs but for 1 in 10^8
        rc, res = check(store, '--read-data-subset', '10%')
        found = {p.split(': ')[0] for p in named(res['problems'], ': blob ')}
        assert rc == 1 and len(found) == 1 and res['summary']['packs_read'] == 1, res
        seen |= found
        if seen == keys:
            break
    assert seen == keys


def test_check_reports_stale_locks_and_unused_bytes(store, tmp_path):
    small_backups(store, tmp_path, 2)
    os.makedirs(os.path.join(store, 'locks'), exist_ok=True)
    dead = subprocess.Popen(['true'])
    dead.wait()
    lock = {'host': socket.gethostname(), 'pid_space': pid_space(), 'command': 'prune', 'pid': dead.pid,
            'exclusive': True, 'time_ns': 0}
    lock['time_ns'] = int(os.stat(store).st_mtime * 1e9)
    open(os.path.join(store, 'locks', 'dead.json'), 'w').write(json.dumps(lock))
    os.unlink(manifest_path(store, 'b0'))  # forgotten: its pack is unused
    rc, res = check(store)
    assert rc == 0, res['problems']
    assert any(i.startswith('locks/dead.json: stale exclusive lock of prune (pid ') for i in res['info'])
    assert res['summary']['stale_locks'] == 1
    assert res['summary']['unused_bytes'] >= 9000 and res['summary']['unused_blobs'] == 2
    assert any('no backup uses any of its 2 blob(s)' in i for i in res['info'])
    text = cb('check', '--store', store).stdout
    assert 'info    unused: ' in text and "'cassbackup prune' removes them" in text


def test_check_usage_errors(store):
    for args in (['--read-data', '--read-data-subset', '1/2'], ['--read-data-subset', '0/2'],
                 ['--read-data-subset', '3/2'], ['--read-data-subset', '0%'],
                 ['--read-data-subset', '101%'], ['--read-data-subset', 'x'],
                 ['--read-data-subset', '1/0']):
        p = cb('check', '--store', store, *args, check=False)
        assert p.returncode == 2, args
        assert len(p.stderr.splitlines()) == 1, p.stderr
    p = cb('check', '--store', store + '-nope', check=False)
    assert p.returncode == 3 and len(p.stderr.splitlines()) == 1


# --- export -----------------------------------------------------------------------------------

def extracted_tables(root):
    """{(ks, table): {relpath: abs path}} of an extracted export, and the table directory names."""
    res, dirs = {}, set()
    for ks in os.listdir(root):
        for tdir in os.listdir(os.path.join(root, ks)):
            dirs.add((ks, tdir))
            table = tdir.rsplit('-', 1)[0] if len(tdir.rsplit('-', 1)[-1]) == 32 else tdir
            t = os.path.join(root, ks, tdir)
            files = res.setdefault((ks, table), {})
            for r, _, names in os.walk(t):
                for n in names:
                    files[os.path.relpath(os.path.join(r, n), t)] = os.path.join(r, n)
    return res, dirs


def assert_same_tables(got, want):
    assert set(got) == set(want)
    for k, files in want.items():
        assert set(got[k]) == set(files), k
        for rel, src in files.items():
            a, b = os.stat(got[k][rel]), os.stat(src)
            assert read(got[k][rel]) == read(src), rel
            assert (a.st_size, stat.S_IMODE(a.st_mode), a.st_mtime_ns) == \
                   (b.st_size, stat.S_IMODE(b.st_mode), b.st_mtime_ns), rel


def snapshot_table_dirs(data_dirs, tag):
    return {(ks, t) for dd in data_dirs for ks in os.listdir(dd) for t in os.listdir(os.path.join(dd, ks))
            if os.path.isdir(os.path.join(dd, ks, t, 'snapshots', tag))}


def test_export_spread_over_packs_restores_with_stock_tar(two_days, tmp_path):
    store, dirs = two_days
    con = sqlite3.connect(os.path.join(store, 'catalog.db'))
    [(npacks,)] = con.execute("SELECT COUNT(DISTINCT b.pack_id) FROM files f JOIN blobs b ON b.id = f.blob_id"
                              " JOIN backups k ON k.id = f.backup_id WHERE k.name = 'day2'").fetchall()
    con.close()
    assert npacks == 2
    want = snapshot_tables(dirs, 'nightly-2')
    # to standard output, through a pipe, as plain tar
    out = tmp_path / 'plain'
    out.mkdir()
    exp = subprocess.Popen([CASSBACKUP, 'export', '--store', store, 'day2'],
                           stdout=subprocess.PIPE)
    run('tar', '-x', '-C', out, '-f', '-', stdin=exp.stdout)
    assert exp.wait() == 0
    got, tdirs = extracted_tables(str(out))
    assert_same_tables(got, want)
    assert tdirs == snapshot_table_dirs(dirs, 'nightly-2')
    # to a file, zstd-compressed
    f = tmp_path / 'day2.tar.zst'
    p = cb('export', '--store', store, 'day2', '--zstd', '-o', f)
    assert p.stdout == '' and p.stderr.startswith('exported backup day2 to ')
    assert not [n for n in os.listdir(tmp_path) if n.startswith('day2.tar.zst.tmp')]
    assert read(f)[:4] == b'\x28\xb5\x2f\xfd'
    out2 = tmp_path / 'zstd'
    out2.mkdir()
    run('tar', '--zstd', '-x', '-C', out2, '-f', f)
    assert_same_tables(extracted_tables(str(out2))[0], want)
    # the other backup, too
    out3 = tmp_path / 'day1'
    out3.mkdir()
    cb('export', '--store', store, 'day1', '-o', tmp_path / 'day1.tar')
    run('tar', '-x', '-C', out3, '-f', tmp_path / 'day1.tar')
    assert_same_tables(extracted_tables(str(out3))[0], snapshot_tables(dirs, 'nightly-1'))


def test_export_table_and_keyspace_narrow(two_days, tmp_path):
    store, dirs = two_days
    want = snapshot_tables(dirs, 'nightly-2')
    (ks, table) = sorted(want)[0]
    cb('export', '--store', store, 'day2', '--table', f'{ks}.{table}', '-o', tmp_path / 't.tar')
    out = tmp_path / 't'
    out.mkdir()
    run('tar', '-x', '-C', out, '-f', tmp_path / 't.tar')
    assert_same_tables(extracted_tables(str(out))[0], {(ks, table): want[(ks, table)]})
    cb('export', '--store', store, 'day2', '--keyspace', ks, '-o', tmp_path / 'k.tar')
    out = tmp_path / 'k'
    out.mkdir()
    run('tar', '-x', '-C', out, '-f', tmp_path / 'k.tar')
    assert_same_tables(extracted_tables(str(out))[0], {k: v for k, v in want.items() if k[0] == ks})


def test_export_names_are_bytes_in_any_locale(store, tmp_path):
    d = tmp_path / 'dd'
    snap = d / 'ks' / ('t-' + 'a' * 32) / 'snapshots' / 'tag'
    snap.mkdir(parents=True)
    names = [b'caf\xe9.txt', 'café-ü.txt'.encode(), b'nb-1-big-Data.db']
    for i, n in enumerate(names):
        open(os.path.join(bytes(snap), n), 'wb').write(bytes([i]) * 5000)
    cb('create', '--store', store, '--name', 'bytes', '--data-dir', d, '--snapshot', 'tag')
    env = dict(os.environ, LC_ALL='C', LANG='C')
    cb('export', '--store', store, 'bytes', '-o', tmp_path / 'b.tar', env=env)
    out = tmp_path / 'x'
    out.mkdir()
    run('tar', '-x', '-C', out, '-f', tmp_path / 'b.tar', env=env)
    tdir = os.path.join(bytes(out), b'ks', b't-' + b'a' * 32)
    assert sorted(os.listdir(tdir)) == sorted(names)
    for i, n in enumerate(names):
        assert read(os.path.join(tdir, n)) == bytes([i]) * 5000


def test_export_bad_name_or_missing_backup(two_days, tmp_path):
    store, _ = two_days
    for name in ('nope', '../day1', 'day1/x', 'day'):
        p = cb('export', '--store', store, name, '-o', tmp_path / 'o.tar', check=False)
        assert p.returncode == 3, name
        assert len(p.stderr.splitlines()) == 1 and 'no such backup' in p.stderr, p.stderr
        assert not os.path.exists(tmp_path / 'o.tar') and not os.path.exists(tmp_path / 'o.tar.tmp')
    p = cb('export', '--store', store, 'day', '-o', tmp_path / 'o.tar', check=False)
    assert 'closest: day1, day2' in p.stderr
    p = cb('export', '--store', store, 'day2', '--table', 'no.such', '-o', tmp_path / 'o.tar', check=False)
    assert p.returncode == 1 and p.stderr.strip().endswith('table no.such: not in backup day2')
    assert not os.path.exists(tmp_path / 'o.tar')


def test_export_missing_or_damaged_pack_leaves_no_file(real_backup, tmp_path):
    store = real_backup
    [pack] = packs(store)
    name, off = blob_offsets(store, pack)[3]
    flip_in_blob(pack, off)
    cb('reindex', '--store', store)
    out = tmp_path / 'out'
    out.mkdir()
    f = out / 'o.tar'
    p = cb('export', '--store', store, 'real', '-o', f, check=False)
    assert p.returncode == 1
    assert len(p.stderr.splitlines()) == 1 and 'differ from the SHA-256 recorded' in p.stderr
    assert name in p.stderr
    assert os.listdir(out) == []  # neither the file nor a temporary one
    os.unlink(pack)
    p = cb('export', '--store', store, 'real', '-o', f, check=False)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1
    assert 'its bytes are in no pack of the store' in p.stderr
    assert os.listdir(out) == []


def test_export_writes_into_a_device_or_fifo_and_never_replaces_it(real_backup, fixture_tree, tmp_path):
    """-o FILE wrote FILE.tmp and renamed it over FILE whatever FILE was: -o /dev/null as root
    made the machine's /dev/null a regular file, and a FIFO's reader got nothing. A device
    or a FIFO is now written as it is, as tar -f writes it."""
    store = real_backup
    tmp_path = tmp_path / 'exports'
    tmp_path.mkdir()
    null = tmp_path / 'null'
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    p = cb('export', '--store', store, 'real', '-o', null)
    assert 'exported backup real to ' in p.stderr
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.listdir(tmp_path) == ['null']
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    out = tmp_path / 'out'
    out.mkdir()
    exp = subprocess.Popen([CASSBACKUP, 'export', '--store', store, 'real', '-o', fifo],
                           stderr=subprocess.PIPE, text=True)
    run('tar', '-x', '-C', out, '-f', fifo)  # the whole tar, through the FIFO
    assert exp.wait(timeout=120) == 0, exp.stderr.read()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and sorted(os.listdir(tmp_path)) == ['fifo', 'null', 'out']
    assert_same_tables(extracted_tables(str(out))[0], snapshot_tables([fixture_tree], FIXTURE_TAG))
    p = cb('export', '--store', store, 'real', '-o', tmp_path, check=False)
    assert p.returncode == 1 and p.stderr.count('\n') == 1 and 'it is a directory' in p.stderr


def test_export_writes_through_a_symlink_and_keeps_it(real_backup, fixture_tree, tmp_path):
    """-o /dev/stdout with standard output a file (/dev/stdout is a symlink to /proc/self/fd/1,
    a file then): export renamed its temporary file over the symlink, left the file empty,
    exit 0. It now writes the file the symlink names, and the symlink stays."""
    store = real_backup
    d = tmp_path / 'exports'
    d.mkdir()
    os.symlink('/proc/self/fd/1', d / 'stdout')  # as /dev/stdout, without touching /dev
    with open(d / 'out.tar', 'w') as out:
        p = subprocess.run([CASSBACKUP, 'export', '--store', store, 'real', '-o', str(d / 'stdout')],
                           stdout=out, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr
    assert os.path.islink(d / 'stdout') and sorted(os.listdir(d)) == ['out.tar', 'stdout']
    x = tmp_path / 'x'
    x.mkdir()
    run('tar', '-x', '-C', x, '-f', d / 'out.tar')
    assert_same_tables(extracted_tables(str(x))[0], snapshot_tables([fixture_tree], FIXTURE_TAG))
    os.symlink('nothing-there.tar', d / 'dangling')
    p = cb('export', '--store', store, 'real', '-o', d / 'dangling', check=False)
    assert p.returncode == 1 and p.stderr.count('\n') == 1 and 'it is a symlink to nothing' in p.stderr
    # a loop: its reason stood where the target's name goes ("a symlink to Too many levels...")
    os.symlink('loop-b', d / 'loop-a')
    os.symlink('loop-a', d / 'loop-b')
    p = cb('export', '--store', store, 'real', '-o', d / 'loop-a', check=False)
    assert p.returncode == 1 and p.stderr == (f'cassbackup: cannot write {d}/loop-a: a symlink that cannot be '
                                              'followed: Too many levels of symbolic links\n')
    assert sorted(os.listdir(d)) == ['dangling', 'loop-a', 'loop-b', 'out.tar', 'stdout']


def test_export_over_a_file_keeps_its_mode_and_owner(real_backup, tmp_path):
    """An export over an existing FILE replaced it with a new 0600 file of root's: a tar the
    operator had made 0640 for a group, or given to the cassandra user, was no longer theirs
    to read. The replacement now has the old file's mode and owner; a new FILE is 0600."""
    new = tmp_path / 'new.tar'
    cb('export', '--store', real_backup, 'real', '-o', new)
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o600
    old = tmp_path / 'old.tar'
    old.write_bytes(b'yesterday')
    os.chown(old, 4321, 4322)
    os.chmod(old, 0o2640)
    cb('export', '--store', real_backup, 'real', '-o', old)
    st = os.stat(old)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o2640, 4321, 4322)
    assert old.read_bytes() == new.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ['new.tar', 'old.tar', 'store']


def test_export_over_a_file_it_cannot_give_away_keeps_the_owners_bits_only(tmp_path, binaries, request):
    """An exporter who is not root, over root:4322 0640 in a directory of its own: the group
    read bit went to the exporter's own group (the whole backup readable by it). The file is
    now the exporter's with the owner's part of the mode only."""
    uid, gid = 65534, 65534
    top = pathlib.Path(tempfile.mkdtemp(prefix='cb-export-owner-'))  # one user 65534 reaches
    request.addfinalizer(lambda: shutil.rmtree(top, ignore_errors=True))
    os.chmod(top, 0o755)
    top = top / 'u'
    top.mkdir()
    os.chown(top, uid, gid)

    def as_user(*args):
        p = subprocess.run(['setpriv', f'--reuid={uid}', f'--regid={gid}', '--clear-groups', *map(str, args)],
                           capture_output=True, text=True, env=dict(os.environ, HOME=str(top)))
        assert p.returncode == 0, (args, p.stderr)
    store, src = top / 'store', top / 'src'
    as_user(CASSBACKUP, 'init', '--store', store)
    as_user(sys.executable, os.path.join(REPO, 'tools', 'sample_data.py'), '--out', src, '--data-dirs', '1',
            '--keyspaces', '1', '--tables', '1', '--data-kib', '4', '--no-clutter')
    as_user(CASSBACKUP, 'create', '--store', store, '--name', 'b1', '--data-dir', src / 'data1',
            '--snapshot', 'nightly-1', '--no-schema', '--no-conf')
    tar = top / 'b1.tar'
    tar.write_text('yesterday')
    os.chown(tar, 0, 4322)
    os.chmod(tar, 0o2640)
    as_user(CASSBACKUP, 'export', '--store', store, 'b1', '-o', tar)
    st = os.stat(tar)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o600)


def test_export_leaves_another_programs_temporary_file_alone(real_backup, tmp_path):
    """Every export wrote FILE.tmp (O_TRUNC) and a failed one unlinked it: two exports to one
    FILE, or a file of the user's named FILE.tmp, were clobbered. A temporary file is now
    the export's own (mkostemp)."""
    store = real_backup
    tmp_path = tmp_path / 'exports'
    tmp_path.mkdir()
    f = tmp_path / 'o.tar'
    mine = tmp_path / 'o.tar.tmp'
    mine.write_bytes(b'the user\'s own')
    cb('export', '--store', store, 'real', '-o', f)
    assert mine.read_bytes() == b'the user\'s own'
    cb('reindex', '--store', store)
    [pack] = packs(store)
    os.unlink(pack)
    p = cb('export', '--store', store, 'real', '-o', f, check=False)
    assert p.returncode == 1
    assert mine.read_bytes() == b'the user\'s own' and sorted(os.listdir(tmp_path)) == ['o.tar', 'o.tar.tmp']


def test_export_refuses_a_terminal(real_backup):
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(CASSBACKUP, ['cassbackup', 'export', '--store', real_backup, 'real'])
    out = b''
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    assert b'refusing to write a tar to a terminal' in out


# --- reindex ----------------------------------------------------------------------------------

def mount_tree(store, mnt):
    """{path: (mode, size, mtime_ns, sha256)} of everything the mount shows under /backups."""
    res = {}
    with mounted(store, mnt) as m:
        root = m.path()
        for r, ds, fs in os.walk(root):
            for n in ds + fs:
                p = os.path.join(r, n)
                st = os.lstat(p)
                h = hashlib.sha256(read(p)).hexdigest() if n in fs else None
                res[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, h)
    return res


def test_reindex_gives_the_same_listing_and_tree(real_backup, two_days, tmp_path):
    store, _ = two_days
    before = sorted(backup_list(store), key=lambda b: b['name'])
    tree = mount_tree(store, str(tmp_path / 'mnt1'))
    assert len(before) == 3 and tree
    p = cb('reindex', '--store', store)
    assert p.stdout.splitlines() == [f'reindexed {store}: 3 backups, 3 packs']
    assert sorted(backup_list(store), key=lambda b: b['name']) == before
    assert mount_tree(store, str(tmp_path / 'mnt2')) == tree
    # and from nothing at all: the catalog deleted by hand
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(os.path.join(store, 'catalog.db' + suffix)):
            os.unlink(os.path.join(store, 'catalog.db' + suffix))
    cb('reindex', '--store', store)
    assert sorted(backup_list(store), key=lambda b: b['name']) == before
    assert check(store, '--read-data')[0] == 0


def test_reindex_names_what_it_cannot_take_in(two_days):
    store, _ = two_days
    path = manifest_path(store, 'day1')
    open(path, 'wb').write(b'{"not": "a manifest"}')
    [pack] = [p for p in packs(store) if p != min(packs(store), key=os.path.getmtime)]
    data = bytearray(read(pack))
    data[-20] ^= 0x01  # in the seek table
    open(pack, 'wb').write(data)
    p = cb('reindex', '--store', store, check=False)
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert lines[0] == f'reindexed {store}: 1 backup, 1 pack'
    assert any(l.startswith(f'not indexed: {os.path.relpath(path, store)}: ') for l in lines)
    assert any(l.startswith(f'not indexed: {os.path.relpath(pack, store)}: damaged trailer or seek table')
               for l in lines)
    assert [b['name'] for b in backup_list(store)] == ['day2']


def test_a_backup_made_while_reindex_runs_is_no_failure(two_days, tmp_path):
    """reindex lists the store again after its rebuild, to name what it could not take in; a
    create that committed in between (both take shared locks) was "not indexed: it reads now
    (changed while indexed?)", naming nothing, exit 1. Held at that moment: its stdout, a pipe
    filled up, blocks its first line until the create has committed."""
    import fcntl
    store, dirs = two_days
    rd, wr = os.pipe()
    os.set_blocking(wr, False)
    filled = 0
    try:
        while True:
            filled += os.write(wr, b'x' * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(wr, True)
    p = subprocess.Popen([CASSBACKUP, 'reindex', '--store', store], stdout=wr, stderr=subprocess.PIPE,
                         text=True)
    os.close(wr)
    try:
        def blocked():
            with open(f'/proc/{p.pid}/wchan') as f:
                return f.read().endswith('pipe_write') or p.poll() is not None
        wait_for(blocked, 'reindex to write its first line')
        assert p.poll() is None, p.stderr.read()
        cb('create', '--store', store, '--name', 'day3', *data_dir_args(dirs), '--snapshot', 'nightly-2')
    finally:
        fcntl.fcntl(rd, fcntl.F_SETFL, 0)
        with os.fdopen(rd, 'rb') as f:
            out = f.read()[filled:].decode()
        err = p.stderr.read()
        p.wait()
    assert p.returncode == 0, out + err
    lines = out.splitlines()
    assert lines[0] == f'reindexed {store}: 2 backups, 2 packs', lines
    assert [l for l in lines[1:] if 'not indexed' in l] == [], lines
    assert any(l.startswith('note: backups/day3') and 'written while the catalog was rebuilt' in l
               for l in lines), lines
    assert sorted(b['name'] for b in backup_list(store)) == ['day1', 'day2', 'day3']


def test_empty_store(store):
    rc, res = check(store, '--read-data')
    assert rc == 0 and res['summary']['packs'] == 0 and res['summary']['backups'] == 0
    assert cb('reindex', '--store', store).stdout == f'reindexed {store}: 0 backups, 0 packs\n'
    p = cb('export', '--store', store, 'x', check=False)
    assert p.returncode == 3 and len(p.stderr.splitlines()) == 1
