"""cassbackup copy: backups between stores (local and S3, either way), deduplicated at the
target; and --limit-upload / --limit-download. S3 servers come from test_s3's fixtures."""
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest

import awssig

from conftest import (manifest_path, CASSBACKUP, cb, preload, data_dir_args, make_sample, mounted, packs, read,
                      read_only_bind, sample_dirs, snapshot_tables, tmpfs, upload_size)
from test_s3 import moto, s3  # noqa: F401  (fixtures)


def contents(tables):
    """{(sha256, size)} of the files of snapshot_tables()."""
    res = set()
    for files in tables.values():
        for path in files.values():
            data = read(path)
            res.add((hashlib.sha256(data).hexdigest(), len(data)))
    return res


def names(store, env=None):
    return sorted(b['name'] for b in json.loads(cb('list', '--store', store, '--json', env=env).stdout))


def copy_json(*args, env=None):
    return json.loads(cb('copy', '--json', *args, env=env).stdout)


def assert_mount_matches(store, tmp_path, name, tables, env=None):
    with mounted(store, str(tmp_path / f'mnt-{name}'), env=env) as m:
        for (ks, table), files in tables.items():
            for rel, path in files.items():
                assert read(m.path(name, ks, table, rel)) == read(path), (name, ks, table, rel)


@pytest.fixture(scope='module')
def source(tmp_path_factory, binaries):
    """A local store with backups 'old' (snapshot older-tag) and 'n1' (nightly-1, which holds
    every sstable of older-tag and more), and what each must contain."""
    root = tmp_path_factory.mktemp('copysrc')
    dirs = sample_dirs(make_sample(str(root / 'data'), '--data-kib', '512', '--data-dirs', '1'))
    store = str(root / 'store')
    cb('init', '--store', store)
    cb('create', '--store', store, '--name', 'old', *data_dir_args(dirs), '--snapshot', 'older-tag')
    cb('create', '--store', store, '--name', 'n1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    return store, {'old': snapshot_tables(dirs, 'older-tag'), 'n1': snapshot_tables(dirs, 'nightly-1')}


def check_dedup_counts(first, second, tables):
    """first: copy of 'old'; second: copy of 'n1' afterwards. The second sends exactly the
    contents old does not have."""
    old, n1 = contents(tables['old']), contents(tables['n1'])
    [a] = first['backups']
    assert a['result'] == 'copied' and a['blobs_sent'] == len(old) and a['blobs_present'] == 0
    assert a['bytes_sent'] == sum(s for _, s in old)
    [b] = second['backups']
    assert b['result'] == 'copied'
    assert b['blobs_sent'] == len(n1 - old) and b['bytes_sent'] == sum(s for _, s in n1 - old)
    assert b['blobs_present'] == len(n1 & old) and b['blobs_present'] > b['blobs_sent']


def test_copy_local_to_local(source, tmp_path):
    src, tables = source
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    plan = copy_json('--from', src, '--to', dst, '--dry-run', 'old')
    assert plan['backups'][0]['result'] == 'planned' and names(dst) == [] and packs(dst) == []
    first = copy_json('--from', src, '--to', dst, 'old')
    second = copy_json('--from', src, '--to', dst, 'n1')
    check_dedup_counts(first, second, tables)
    assert plan['backups'][0]['blobs_sent'] == first['backups'][0]['blobs_sent']
    assert len(packs(dst)) == 2  # one new pack per backup
    assert names(dst) == ['n1', 'old']
    cb('verify', '--store', dst, '--all')
    cb('check', '--store', dst, '--read-data')
    for name in ('old', 'n1'):
        assert read(manifest_path(dst, name)) == read(manifest_path(src, name))
    assert_mount_matches(dst, tmp_path, 'n1', tables['n1'])


def test_copy_onto_a_full_disk_names_the_target(tmp_path):
    """The target's disk filled up partway through a pack: the error named the source pack
    ('cannot copy it from SRC/packs/...: No space left on device'), which was only read."""
    dirs = sample_dirs(make_sample(str(tmp_path / 'data'), '--data-kib', '16', '--data-dirs', '1',
                                   '--keyspaces', '1', '--tables', '2', '--sstables', '1', '--no-index',
                                   '--no-clutter'))
    store = str(tmp_path / 'src')
    cb('init', '--store', store)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    with tmpfs(tmp_path / 'full', '40k') as full:
        dst = str(full / 'dst')
        cb('init', '--store', dst)
        p = cb('copy', '--from', store, '--to', dst, 'b1', '--no-commitlogs', check=False)
        [line] = [l for l in p.stderr.splitlines() if 'No space left on device' in l and 'cannot copy backup' in l]
        assert p.returncode == 1 and f'new pack of {dst}: No space left' in line, p.stderr
        assert 'cannot copy it from' not in line
        assert not os.path.isdir(os.path.join(dst, 'backups')) or not os.listdir(os.path.join(dst, 'backups'))


def test_copy_same_name(source, tmp_path):
    """The same backup again: nothing to do, exit 0. Another backup of that name: refused
    with one line, exit 1, nothing changed."""
    src, _ = source
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    cb('copy', '--from', src, '--to', dst, 'n1')
    before = packs(dst)
    p = cb('copy', '--from', src, '--to', dst, 'n1')
    assert 'already in' in p.stdout and p.stderr == ''
    assert copy_json('--from', src, '--to', dst, 'n1')['backups'][0]['result'] == 'present'
    assert packs(dst) == before
    # a different backup named n1 in another store
    other = str(tmp_path / 'other')
    cb('init', '--store', other)
    dirs = sample_dirs(make_sample(str(tmp_path / 'data2'), '--data-kib', '16', '--data-dirs', '1', '--seed', '7'))
    cb('create', '--store', other, '--name', 'n1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    p = cb('copy', '--from', other, '--to', dst, 'n1', check=False)
    assert p.returncode == 1, p
    assert len(p.stderr.splitlines()) == 1 and 'different backup' in p.stderr, p.stderr
    assert packs(dst) == before
    assert read(manifest_path(dst, 'n1')) == read(manifest_path(src, 'n1'))


def manifests(store):
    """Every manifest file of a local store, relative to backups/."""
    top = os.path.join(store, 'backups')
    return sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs)


def test_copy_of_an_older_layout_backup_the_target_has_writes_no_second_one(source, tmp_path):
    """The same backup in the older layout (backups/NAME.json) and in the node layout
    (backups/NAME/NODE.json): copying one after the other wrote both into the target, exit 0,
    and every reader of the target then refused the second ("node ... has another backup n1")
    and verify --all failed. A copy writes the node layout, and finds the backup under either."""
    src, _ = source
    node_file = manifest_path(src, 'n1')
    node = os.path.basename(node_file)[:-5]
    leg = str(tmp_path / 'leg')
    cb('init', '--store', leg)
    cb('copy', '--from', src, '--to', leg, 'n1')
    os.rename(manifest_path(leg, 'n1'), os.path.join(leg, 'backups', 'n1.json'))
    os.rmdir(os.path.join(leg, 'backups', 'n1'))
    for sidecar in ('', '-wal', '-shm'):  # the catalog is a cache: read the store again
        if os.path.exists(os.path.join(leg, 'catalog.db' + sidecar)):
            os.unlink(os.path.join(leg, 'catalog.db' + sidecar))
    for first, second in ((src, leg), (leg, src)):
        dst = str(tmp_path / f'dst-{len(os.listdir(tmp_path))}')
        cb('init', '--store', dst)
        cb('copy', '--from', first, '--to', dst, 'n1')
        p = cb('copy', '--from', second, '--to', dst, 'n1')
        assert 'already in' in p.stdout, p.stdout
        assert manifests(dst) == [f'n1/{node}.json']
        assert read(os.path.join(dst, 'backups', 'n1', node + '.json')) == read(node_file)
        cb('verify', '--store', dst, '--all')
    # a target that keeps it in the older layout: found there too; another backup of the name
    # and node is refused, nothing written
    p = cb('copy', '--from', src, '--to', leg, 'n1')
    assert 'already in' in p.stdout and manifests(leg) == ['n1.json']
    other = str(tmp_path / 'other')
    cb('init', '--store', other)
    dirs = sample_dirs(make_sample(str(tmp_path / 'data2'), '--data-kib', '16', '--data-dirs', '1', '--seed', '7'))
    cb('create', '--store', other, '--name', 'n1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    p = cb('copy', '--from', other, '--to', leg, 'n1', check=False)
    assert p.returncode == 1 and 'different backup' in p.stderr, p.stderr
    assert manifests(leg) == ['n1.json']


def test_two_copies_of_one_backup_at_once_both_succeed(source, tmp_path):
    """Two copies of the same backup to one target at once: the one whose manifest came
    second exited 1 ("another process wrote a backup of that name"), though the target holds
    that very backup. It is the same backup: "already in", exit 0."""
    src, _ = source
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST='1')
    a = subprocess.Popen([CASSBACKUP, 'copy', '--from', src, '--to', dst, 'n1'], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while a.poll() is None:  # stopped just before its manifest lands
            with open(f'/proc/{a.pid}/stat') as f:
                if f.read().rsplit(')', 1)[1].split()[0] == 'T':
                    break
            assert time.monotonic() < deadline, 'the first copy never reached its manifest'
            time.sleep(0.01)
        assert a.poll() is None, a.communicate()
        b = cb('copy', '--from', src, '--to', dst, 'n1')
        assert 'copied to' in b.stdout
    finally:
        os.kill(a.pid, signal.SIGCONT)
        out, err = a.communicate(timeout=120)
    assert a.returncode == 0, err
    assert 'already in' in out and err == '', (out, err)
    assert read(manifest_path(dst, 'n1')) == read(manifest_path(src, 'n1'))
    cb('verify', '--store', dst, '--all')


def test_copy_usage(source, tmp_path):
    src, _ = source
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    for args, what in ((['--from', src, '--to', dst], 'missing NAME'),
                       (['--from', src, '--to', dst, '--all', 'n1'], 'not both'),
                       (['--from', src, 'n1'], '--to')):
        p = cb('copy', *args, check=False)
        assert p.returncode == 2 and what in p.stderr and len(p.stderr.splitlines()) == 1, p
    p = cb('copy', '--from', src, '--to', dst, 'nope', check=False)
    assert p.returncode == 3 and 'no such backup' in p.stderr
    p = cb('copy', '--from', src, '--to', str(tmp_path / 'absent'), 'n1', check=False)
    assert p.returncode == 3 and len(p.stderr.splitlines()) == 1
    # --all copies every backup; a second --all has nothing to do
    assert [b['result'] for b in copy_json('--from', src, '--to', dst, '--all')['backups']] == ['copied', 'copied']
    assert [b['result'] for b in copy_json('--from', src, '--to', dst, '--all')['backups']] == ['present', 'present']


def damaged_copy_of(src, tmp_path):
    """A copy of the source store directory, to damage."""
    d = str(tmp_path / 'damaged')
    subprocess.run(['cp', '-a', src, d], check=True)
    return d


def assert_nothing_at(dst):
    assert names(dst) == [] and packs(dst) == []
    assert not os.path.exists(os.path.join(dst, 'backups')) or os.listdir(os.path.join(dst, 'backups')) == []


def test_copy_all_stops_when_the_source_cannot_be_listed(source, tmp_path):
    """copy --all from a store whose backups/ cannot be read (EIO from readdir, at every try)
    stops with one line naming it and copies nothing. A readdir that failed used to end the
    listing there: copy --all copied none or some of the backups, exit 0."""
    src, _ = source
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_EIO_READDIR='backups')
    p = cb('copy', '--from', src, '--to', dst, '--all', env=env, check=False)
    assert p.returncode == 1, (p.stdout, p.stderr)
    [line] = p.stderr.splitlines()
    assert 'cannot list backups/: Input/output error' in line, line
    assert_nothing_at(dst)
    copy_json('--from', src, '--to', dst, '--all')
    assert names(dst) == ['n1', 'old']


def test_copy_refuses_a_damaged_source_pack(source, tmp_path):
    """A pack whose frames are damaged: one line naming the file and the pack; nothing at the
    target."""
    src = damaged_copy_of(source[0], tmp_path)
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    for pack in packs(src):
        size = os.path.getsize(pack)
        with open(pack, 'r+b') as f:  # the middle of the pack: compressed data frames
            for off in range(size // 4, size // 2, 4096):
                f.seek(off)
                f.write(b'\xff' * 64)
    p = cb('copy', '--from', src, '--to', dst, 'n1', check=False)
    assert p.returncode == 1, p
    [line] = p.stderr.splitlines()
    assert 'n1' in line and re.search(r'file \S+/\S+', line), line
    assert any(os.path.relpath(k, src) in line for k in packs(src)), line
    assert_nothing_at(dst)


def test_copy_checks_every_blob_against_its_sha256(source, tmp_path):
    """A source whose catalog points a blob at other bytes (of the same length): the SHA-256
    check refuses them; nothing at the target."""
    src = damaged_copy_of(source[0], tmp_path)
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    with sqlite3.connect(os.path.join(src, 'catalog.db')) as db:
        big = db.execute('SELECT id, offset FROM blobs WHERE size > 65536 ORDER BY offset LIMIT 1').fetchone()
        db.execute('UPDATE blobs SET offset = offset + 512 WHERE id = ?', (big[0],))
    p = cb('copy', '--from', src, '--to', dst, 'n1', check=False)
    assert p.returncode == 1, p
    [line] = p.stderr.splitlines()
    assert 'do not match its SHA-256' in line and '/packs/' in line, line
    assert_nothing_at(dst)


def test_copy_from_a_read_only_store(source, tmp_path):
    with read_only_bind(source[0], str(tmp_path / 'ro')) as ro:
        dst = str(tmp_path / 'dst')
        cb('init', '--store', dst)
        cb('copy', '--from', ro, '--to', dst, 'n1', env=dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache')))
        cb('verify', '--store', dst, 'n1')


def wait_then_kill(proc, ready, what):
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None, f'copy ended before {what}: {proc.communicate()}'
        assert time.monotonic() < deadline, f'no {what} within 120 s'
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope='module')
def big_source(tmp_path_factory, binaries):
    """A local store with one backup of ~64 MiB that does not compress."""
    root = tmp_path_factory.mktemp('bigsrc')
    dirs = sample_dirs(make_sample(str(root / 'data'), '--data-kib', '32768', '--data-dirs', '1',
                                   '--keyspaces', '1', '--tables', '1', '--sstables', '2',
                                   '--incompressible', '--no-clutter'))
    store = str(root / 'store')
    cb('init', '--store', store)
    cb('create', '--store', store, '--name', 'big', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    return store, snapshot_tables(dirs, 'nightly-1')


def test_copy_killed_leaves_nothing_local(big_source, tmp_path):
    src, tables = big_source
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    proc = subprocess.Popen([CASSBACKUP, 'copy', '--from', src, '--to', dst, 'big'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_then_kill(proc, lambda: upload_size(proc.pid, dst) > 0, 'an upload')
    assert_nothing_at(dst)
    cb('prune', '--store', dst)
    cb('check', '--store', dst)
    cb('copy', '--from', src, '--to', dst, 'big')  # and a copy after it works
    cb('verify', '--store', dst, 'big')


def s3_uploads(env):
    """Multipart uploads in progress in the test bucket."""
    return re.findall(r'<UploadId>([^<]+)</UploadId>', awssig.env_get(env, '/cbtest?uploads'))


@pytest.mark.parametrize('s3', ['moto'], indirect=True)
def test_copy_killed_leaves_nothing_s3(s3, big_source, tmp_path):
    loc, env = s3
    src, _ = big_source
    proc = subprocess.Popen([CASSBACKUP, 'copy', '--from', src, '--to', loc, 'big'], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_then_kill(proc, lambda: s3_uploads(env), 'a multipart upload')
    assert names(loc, env) == []
    cb('prune', '--store', loc, env=env)
    assert s3_uploads(env) == []
    cb('check', '--store', loc, env=env)


def test_copy_local_s3_and_back(s3, source, tmp_path):
    """local -> S3 (dedup at the target), S3 -> S3, S3 -> local: each copy lists, verifies and
    mounts byte-identically."""
    loc, env = s3
    src, tables = source
    first = copy_json('--from', src, '--to', loc, 'old', env=env)
    second = copy_json('--from', src, '--to', loc, 'n1', env=env)
    check_dedup_counts(first, second, tables)
    assert names(loc, env) == ['n1', 'old']
    cb('verify', '--store', loc, '--all', env=env)
    assert_mount_matches(loc, tmp_path, 'n1', tables['n1'], env=env)
    other = loc + '-copy'
    cb('init', '--store', other, env=env)
    cb('copy', '--from', loc, '--to', other, '--all', env=env)
    back = str(tmp_path / 'back')
    cb('init', '--store', back)
    third = copy_json('--from', other, '--to', back, 'old', 'n1', env=env)
    assert [b['result'] for b in third['backups']] == ['copied', 'copied']
    assert names(back) == ['n1', 'old']
    cb('verify', '--store', back, '--all')
    assert_mount_matches(back, tmp_path, 'old', tables['old'])
    for name in ('old', 'n1'):
        assert read(manifest_path(back, name)) == read(manifest_path(src, name))


# --- --limit-upload / --limit-download ------------------------------------------------------

LIMITED = ['create', 'copy', 'restore', 'verify', 'check', 'export', 'load', 'prune']


@pytest.mark.parametrize('cmd', LIMITED)
def test_limit_options_are_offered(cmd):
    text = cb(cmd, '--help').stdout
    assert '--limit-upload RATE' in text and '--limit-download RATE' in text


def test_limit_options_parse_and_reach_the_s3_client(source, tmp_path):
    src, _ = source
    env = dict(os.environ, CASSBACKUP_DEBUG='1')
    p = cb('verify', '--store', src, 'old', '--limit-download', '50M', '--limit-upload=2K', env=env)
    assert 'transfer limits: upload 2048 B/s, download 52428800 B/s' in p.stderr
    conf = tmp_path / 'c.conf'
    conf.write_text('limit_upload = 1G\nlimit_download = 0\n')
    p = cb('--config', str(conf), 'check', '--store', src, env=env)
    assert 'upload 1073741824 B/s, download 0 B/s' in p.stderr
    p = cb('--config', str(conf), 'check', '--store', src, '--limit-upload', '0', env=env)
    assert 'upload 0 B/s' in p.stderr  # the command line overrides the configuration
    for bad, why in (('5X', "unknown unit 'X'"), ('fast', 'not a size'), ('5MB', 'ambiguous'),
                     ('-1', 'not a size')):
        p = cb('create', '--store', src, '--limit-upload', bad, check=False)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p
        assert f'--limit-upload {bad}' in p.stderr and why in p.stderr, p.stderr
    conf.write_text('limit_download = lots\n')
    p = cb('--config', str(conf), 'verify', '--store', src, '--all', check=False)
    assert p.returncode == 2 and 'line 1: limit_download' in p.stderr and len(p.stderr.splitlines()) == 1
    p = cb('list', '--store', src, '--limit-upload', '1M', check=False)
    assert p.returncode == 2 and 'unknown option --limit-upload' in p.stderr


def test_limited_copy_to_s3(s3, source, tmp_path):
    """With the limits given, a copy to S3 still lands whole (their effect on throughput is
    measured by hand, not here: no timing in tests)."""
    loc, env = s3
    src, tables = source
    p = cb('copy', '--from', src, '--to', loc, 'n1', '--limit-upload', '64M', '--limit-download', '64M',
           env=dict(env, CASSBACKUP_DEBUG='1'))
    assert 'upload 67108864 B/s, download 67108864 B/s' in p.stderr
    cb('verify', '--store', loc, 'n1', '--limit-download', '64M', env=env)


def test_a_damaged_pack_of_the_target_is_never_built_on(tmp_path):
    """The target's pack of b1, truncated after it was catalogued: a copy of b2 (the same
    bytes) took them for "already there" (sent 0 blobs), committed b2, exit 0, and nothing
    could read b2. A pack whose size is not the one indexed is not taken for the one indexed:
    the copy sends the bytes again, and b2 reads whole. So does a create into that store."""
    src_tree = make_sample(str(tmp_path / 'data'), '--data-dirs', '1', '--keyspaces', '1', '--tables', '1',
                           '--sstables', '1', '--data-kib', '64', '--incompressible', '--no-clutter')
    dirs = sample_dirs(src_tree)
    src, dst = str(tmp_path / 'src'), str(tmp_path / 'dst')
    for s in (src, dst):
        cb('init', '--store', s)
    for name in ('b1', 'b2'):
        cb('create', '--store', src, '--name', name, *data_dir_args(dirs), '--snapshot', 'nightly-1')
    cb('copy', '--from', src, '--to', dst, 'b1')
    [pack] = packs(dst)
    os.truncate(pack, 1000)
    cb('copy', '--from', src, '--to', dst, 'b2')
    cb('verify', '--store', dst, 'b2')
    cb('export', '--store', dst, 'b2', '-o', str(tmp_path / 'b2.tar'))
    cb('create', '--store', dst, '--name', 'b3', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    cb('verify', '--store', dst, 'b3')


def test_export_to_a_file_whose_name_is_name_max_long(source, tmp_path):
    """export -o made its temporary file as FILE.tmp.XXXXXX: a FILE of 250 bytes, which tar
    writes, failed with "File name too long". The temporary file has a name of its own."""
    src = source[0]
    out = tmp_path / ('x' * 250)
    cb('export', '--store', src, names(src)[0], '-o', str(out))
    assert out.stat().st_size > 0 and os.listdir(tmp_path) == [out.name]
