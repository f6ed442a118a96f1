"""Commitlog segments: archive-commitlog (Cassandra's archive_command), point-in-time restore
(restore --point-in-time, --point-in-time-done) and their retention in prune.

Segments are made with Cassandra's header layout (CommitLogDescriptor.writeHeader: int32
version, int64 id, uint16 parameters length, the parameters, CRC32 of the version, the id's low
and high ints, the length and the parameters; big-endian). Times in the store (a backup's
created_ns and its files' mtimes in the manifest, a segment's archived_ms in its metadata frame)
are set by rewriting the objects, as test_forget does with manifests, so that the windows are
known to the millisecond."""
import calendar
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
import zlib

import pytest

from conftest import (rewrite_manifest, CASSBACKUP, backup_list, cb, data_dir_args, make_sample, manifest_path, mounted,
                      preload, sample_dirs, uploading)
from s3proxy import S3Proxy
from segment_sim import segment, write_segment
from test_s3 import s3  # noqa: F401  (the fixture: an empty store on moto or s3rver)
from test_s3_faults import raw_keys, upstream_port, via

HOUR = 3600 * 1000
DAY = 24 * HOUR
# 2026:12:01 00:00:00 GMT
T0 = calendar.timegm((2026, 12, 1, 0, 0, 0)) * 1000
META_MAGIC = 0x184D2A53
SUM_MAGIC = 0x184D2A54  # the frame of the metadata's SHA-256 (format 2)


def archive(store, path, node='n1', check=True, env=None):
    """As Cassandra runs archive_command: split on spaces, %path and %name substituted."""
    cmd = f'{CASSBACKUP} archive-commitlog --store {store} --node {node} %path %name'
    argv = cmd.replace('%name', os.path.basename(path)).replace('%path', path).split(' ')
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def stored(store, node=None):
    """{node: sorted segment names} under STORE/commitlogs."""
    top = os.path.join(store, 'commitlogs')
    if not os.path.isdir(top):
        return {}
    return {n: sorted(f[:-4] for f in os.listdir(os.path.join(top, n)))
            for n in sorted(os.listdir(top)) if node in (None, n)}


def object_path(store, node, name):
    return os.path.join(store, 'commitlogs', node, name + '.zst')


def read_meta(path):
    """(metadata, the segment's zstd frame) of a stored segment object; its metadata checksum
    frame (format 2) checked."""
    with open(path, 'rb') as f:
        data = f.read()
    magic, n = struct.unpack('<II', data[:8])
    assert magic == META_MAGIC
    js, rest = data[8:8 + n], data[8 + n:]
    meta = json.loads(js)
    if meta['format'] >= 2:
        assert rest[:8] == struct.pack('<II', SUM_MAGIC, 32) and rest[8:40] == hashlib.sha256(js).digest()
        rest = rest[40:]
    return meta, rest


def meta_frames(meta):
    """The metadata frame of meta and, from format 2, the frame of its SHA-256, as archive-commitlog
    writes them."""
    js = json.dumps(meta, sort_keys=True, separators=(',', ':')).encode()
    out = struct.pack('<II', META_MAGIC, len(js)) + js
    if meta['format'] >= 2:
        out += struct.pack('<II', SUM_MAGIC, 32) + hashlib.sha256(js).digest()
    return out


def set_archived(store, node, name, archived_ms, created_ms=0, mtime_ms=None):
    """Rewrites a stored segment's archive time and its file's birth time (its metadata frame;
    0: the file system kept none), and its last write's when given."""
    path = object_path(store, node, name)
    meta, rest = read_meta(path)
    meta['archived_ms'] = archived_ms
    meta['created_ms'] = created_ms
    if mtime_ms is not None:
        meta['mtime_ms'] = mtime_ms
    with open(path, 'wb') as f:
        f.write(meta_frames(meta) + rest)


def set_backup_time(store, name, snapshot_ms):
    """The backup's files were last written at snapshot_ms; the backup was made a minute later,
    before the segments its tests archive since (at made-up times) were there: the id create
    saw then (commitlog_seen_id) is dropped, so its window goes by their times, as a backup
    made before it was recorded does."""
    path = manifest_path(store, name)
    with open(path) as f:
        doc = json.load(f)
    doc['created_ns'] = (snapshot_ms + 60000) * 10**6
    doc.pop('commitlog_seen_id', None)

    def walk(o):
        if isinstance(o, dict):
            if 'sha256' in o and 'mtime_ns' in o:
                o['mtime_ns'] = snapshot_ms * 10**6
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(doc)
    rewrite_manifest(path, doc)
    drop_catalog(store)


def drop_catalog(store):
    """Manifests are never rewritten in place: make the catalog (a cache) read them again."""
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(os.path.join(store, 'catalog.db' + suffix)):
            os.unlink(os.path.join(store, 'catalog.db' + suffix))


def zstd_d(path):
    return subprocess.run(['zstd', '-dc', path], capture_output=True, check=True).stdout


def read(path):
    with open(path, 'rb') as f:
        return f.read()


# --- archive-commitlog -------------------------------------------------------------------------

def test_archive_stores_segment_once_and_zstd_gives_its_bytes(store, tmp_path):
    seg = write_segment(str(tmp_path / 'commitlog'), T0)
    p = archive(store, seg)
    assert 'stored commitlog segment CommitLog-7-%d.log of node n1' % T0 in p.stdout
    obj = object_path(store, 'n1', os.path.basename(seg))
    assert zstd_d(obj) == read(seg)  # plain zstd skips the metadata frame
    assert os.path.getsize(obj) < os.path.getsize(seg) // 10
    meta, _ = read_meta(obj)
    assert meta['node'] == 'n1' and meta['id'] == T0 and meta['version'] == 7
    assert meta['size'] == os.path.getsize(seg)
    # again (Cassandra retries after a failure it saw): the same bytes are fine, nothing rewritten
    mtime = os.stat(obj).st_mtime_ns
    p = archive(store, seg)
    assert 'already stored' in p.stdout and os.stat(obj).st_mtime_ns == mtime
    # other bytes under the same name: refused with one line, the stored object kept
    with open(seg, 'r+b') as f:
        f.seek(100000)
        f.write(b'other')
    p = archive(store, seg, check=False)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1
    assert 'other bytes under this name' in p.stderr and 'not replaced' in p.stderr
    assert os.stat(obj).st_mtime_ns == mtime and zstd_d(obj) != read(seg)


def test_archive_again_over_a_damaged_copy_is_refused(store, tmp_path):
    """Cassandra archives a segment again after a restart; the store's copy was damaged (one bit
    of its data frame): archive-commitlog said "already stored", exit 0, so Cassandra deleted its
    one good copy, and a point-in-time restore could not have it. The copy is read whole now:
    exit 1, one line naming it, nothing replaced."""
    seg = write_segment(str(tmp_path / 'commitlog'), T0)
    archive(store, seg)
    obj = object_path(store, 'n1', os.path.basename(seg))
    _, rest = read_meta(obj)
    with open(obj, 'r+b') as f:
        f.seek(os.path.getsize(obj) - len(rest) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x04]))
    damaged = read(obj)
    p = archive(store, seg, check=False)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, (p.stdout, p.stderr)
    assert 'damaged copy of this segment' in p.stderr and 'not replaced' in p.stderr, p.stderr
    assert read(obj) == damaged
    os.unlink(obj)  # what the message says to do
    archive(store, seg)
    assert zstd_d(obj) == read(seg)


def test_archive_refuses_what_is_not_a_segment(store, tmp_path):
    d = str(tmp_path / 'commitlog')
    seg = write_segment(d, T0)
    # a header whose CRC does not match
    data = bytearray(read(seg))
    data[20] ^= 0xff
    bad = os.path.join(d, 'CommitLog-7-%d.log' % (T0 + 1))
    with open(bad, 'wb') as f:
        f.write(data[:4] + struct.pack('>q', T0 + 1) + data[12:])
    p = archive(store, bad, check=False)
    assert p.returncode == 1 and 'header CRC' in p.stderr and len(p.stderr.splitlines()) == 1
    # a name whose id is not the header's
    other = os.path.join(d, 'CommitLog-7-%d.log' % (T0 + 2))
    shutil.copy(seg, other)
    p = archive(store, other, check=False)
    assert p.returncode == 1 and 'its name version 7, id %d' % (T0 + 2) in p.stderr
    # a segment of Cassandra 2.2 (version 5)
    old = os.path.join(d, 'CommitLog-5-%d.log' % T0)
    with open(old, 'wb') as f:
        f.write(segment(5, T0, bytes(4096)))
    p = archive(store, old, check=False)
    assert p.returncode == 1 and 'older than Cassandra 3.0' in p.stderr
    # not a segment's name; %name %path swapped; a missing file
    junk = os.path.join(d, 'notes.txt')
    shutil.copy(seg, junk)
    assert 'not a commitlog segment' in archive(store, junk, check=False).stderr
    p = cb('archive-commitlog', '--store', store, os.path.basename(seg), seg, check=False)
    assert p.returncode == 2 and 'give %path %name, in that order' in p.stderr
    p = cb('archive-commitlog', '--store', store, seg + '.gone', os.path.basename(seg) + '.gone', check=False)
    assert p.returncode == 1 and 'No such file' in p.stderr
    # other names of the same segment (were each stored: a replay read it several times)
    for name in ('CommitLog-0-%d.log' % T0, 'CommitLog-%d.log' % T0, 'CommitLog-7-000%d.log' % T0,
                 'CommitLog-00007-%d.log' % T0):
        other = os.path.join(d, name)
        shutil.copy(seg, other)
        p = archive(store, other, check=False)
        assert p.returncode == 1 and f'not the name Cassandra gives this segment (CommitLog-7-{T0}.log' \
            in p.stderr, (name, p.stderr)
    # a FIFO under a segment's name: refused at once (it was waited on for a writer, for good,
    # and Cassandra's one archiver thread with it; timeout: a bound for that, not a timing)
    fifo = os.path.join(str(tmp_path), 'CommitLog-7-%d.log' % (T0 + 3))
    os.mkfifo(fifo)
    p = cb('archive-commitlog', '--store', store, '--node', 'n1', fifo, os.path.basename(fifo),
           check=False, timeout=60)
    assert p.returncode == 1 and 'not a regular file' in p.stderr
    assert stored(store) == {}


def test_archive_waits_for_no_other_command(store, tmp_path):
    """archive-commitlog opened the catalog, which it never reads, and so waited on another
    command's write transaction on it (a list reconciling a stale catalog holds one while it
    reads manifests from the store) and failed after SQLite's 30 s: Cassandra kept the segment
    unarchived. It opens no catalog now. The list is stopped inside that transaction."""
    from test_lease import stopped_at_state_t
    src = tiny(tmp_path, 'b1', 1)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1')
    drop_catalog(store)  # the next command reconciles, in a write transaction
    [manifest] = os.listdir(os.path.join(store, 'backups', 'b1'))
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_OPEN=manifest)
    lister = stopped_at_state_t(subprocess.Popen([CASSBACKUP, 'list', '--store', store], env=env,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    try:
        seg = write_segment(str(tmp_path / 'cl'), T0)
        p = archive(store, seg, check=False)
    finally:
        os.kill(lister.pid, signal.SIGCONT)
        lister.communicate(timeout=120)
    assert p.returncode == 0, p.stderr
    assert stored(store) == {'n1': [os.path.basename(seg)]}


def test_archive_killed_mid_upload_leaves_nothing_listed(store, tmp_path):
    """kill -9 while the segment's object is being written: nothing under its key, or (when
    the kill came late) the whole object; then Cassandra's retry stores it."""
    seg = write_segment(str(tmp_path / 'commitlog'), T0, size=32 << 20)
    with open(seg, 'r+b') as f:  # incompressible, so the write takes a while
        f.seek(4096)
        f.write(os.urandom(31 << 20))
    argv = [CASSBACKUP, 'archive-commitlog', '--store', store, '--node', 'n1', seg, os.path.basename(seg)]
    killed = 0
    for _ in range(5):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and not uploading(proc.pid, store):
            pass
        proc.kill()
        proc.wait()
        obj = object_path(store, 'n1', os.path.basename(seg))
        if os.path.exists(obj):  # it finished first: then whole
            assert zstd_d(obj) == read(seg)
            os.unlink(obj)
        else:
            killed += 1
            assert stored(store).get('n1', []) == []
    assert killed > 0
    archive(store, seg)
    assert zstd_d(object_path(store, 'n1', os.path.basename(seg))) == read(seg)


def test_node_from_configuration(store, tmp_path):
    """node = in the configuration names the node for create and archive-commitlog alike."""
    conf = tmp_path / 'cassbackup.conf'
    conf.write_text(f'store = {store}\nnode = cass-7\nhost_id = 5f1c0c8e-0000-4000-8000-000000000007\n')
    seg = write_segment(str(tmp_path / 'commitlog'), T0)
    cb('--config', str(conf), 'archive-commitlog', seg, os.path.basename(seg))
    assert stored(store) == {'cass-7': [os.path.basename(seg)]}
    meta, _ = read_meta(object_path(store, 'cass-7', os.path.basename(seg)))
    assert meta['host_id'] == '5f1c0c8e-0000-4000-8000-000000000007'
    src = tiny(tmp_path, 'b', 3)
    cb('--config', str(conf), 'create', '--name', 'b', *data_dir_args(sample_dirs(src)), '--snapshot', 'nightly-1')
    [b] = backup_list(store)
    assert b['node'] == 'cass-7'
    # a node name that cannot be a directory: validate-config says so, archive-commitlog refuses
    conf.write_text(f'store = {store}\nnode = a/b\n')
    p = cb('--config', str(conf), 'validate-config', check=False)
    assert p.returncode == 1 and "node = a/b: a node is 1 to 64 bytes of printable ASCII, no blank or '/'" in p.stdout
    p = cb('--config', str(conf), 'archive-commitlog', seg, os.path.basename(seg), check=False)
    assert p.returncode == 2 and "node name 'a/b'" in p.stderr and len(p.stderr.splitlines()) == 1


# --- the mount ---------------------------------------------------------------------------------

def cl(m, *parts):
    return os.path.join(m.mnt, 'commitlogs', *parts)


def test_mount_shows_segments_plain(store, tmp_path):
    d = str(tmp_path / 'commitlog')
    segs = [write_segment(d, T0 + i, seed=i) for i in range(3)]
    for s in segs[:2]:
        archive(store, s, node='n1')
    archive(store, segs[2], node='n2')
    mnt = str(tmp_path / 'mnt')
    os.makedirs(mnt)
    with mounted(store, mnt) as m:
        assert sorted(os.listdir(m.mnt)) == ['backups', 'clusters', 'commitlogs']
        assert sorted(os.listdir(cl(m))) == ['n1', 'n2']
        assert sorted(os.listdir(cl(m, 'n1'))) == sorted(os.path.basename(s) for s in segs[:2])
        for node, s in (('n1', segs[0]), ('n1', segs[1]), ('n2', segs[2])):
            p = cl(m, node, os.path.basename(s))
            assert os.path.getsize(p) == os.path.getsize(s)
            assert read(p) == read(s)
            with open(p, 'rb') as f:  # a read at an offset
                f.seek(65536 + 7)
                assert f.read(1000) == read(s)[65536 + 7:65536 + 1007]
        assert not os.path.exists(cl(m, 'n3'))
        # what the store keeps with a segment, as extended attributes
        p = cl(m, 'n2', os.path.basename(segs[2]))
        assert os.getxattr(p, 'user.cassbackup.sha256').decode() == hashlib.sha256(read(segs[2])).hexdigest()
        assert os.getxattr(p, 'user.cassbackup.node') == b'n2'
        assert os.getxattr(p, 'user.cassbackup.commitlog_id') == str(T0 + 2).encode()
        assert sorted(os.listxattr(p)) == ['user.cassbackup.archived', 'user.cassbackup.commitlog_id',
                                           'user.cassbackup.commitlog_version', 'user.cassbackup.node',
                                           'user.cassbackup.sha256']
        assert os.listxattr(cl(m, 'n2')) == []
        # readers at once, each opening, reading at offsets and closing (a read's reply and
        # the file's release race in the daemon; AddressSanitizer builds check it)
        want = read(segs[0])
        errors = []

        def reader(seed):
            try:
                for k in range(20):
                    with open(cl(m, 'n1', os.path.basename(segs[0])), 'rb', buffering=0) as f:
                        off = (seed * 7919 + k * 104729) % len(want)
                        f.seek(off)
                        assert f.read(70000) == want[off:off + 70000]
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        # a segment archived while mounted shows up
        s4 = write_segment(d, T0 + 10, seed=4)
        archive(store, s4, node='n1')
        assert os.path.basename(s4) in os.listdir(cl(m, 'n1'))
        assert read(cl(m, 'n1', os.path.basename(s4))) == read(s4)


def test_mount_shows_a_segment_pruned_and_archived_again_as_it_is_now(store, tmp_path):
    """A segment pruned while mounted and then archived again under its name, with other
    bytes: the mount kept the first one's metadata and inode (the kernel its name for a day),
    listed it with the old time and gave EIO for every read until remounted. It is another
    file now, read as the store holds it. (The wait is for the mount's listing to catch up,
    bounded; nothing is timed.)"""
    src = tiny(tmp_path, 'b1', 1)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1')
    set_backup_time(store, 'b1', T0)
    first = write_segment(str(tmp_path / 'a'), T0 - 3 * HOUR, seed=1)
    archive(store, first)
    set_archived(store, 'n1', os.path.basename(first), T0 - 2 * HOUR)  # before b1: prune takes it
    name = os.path.basename(first)
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert read(cl(m, 'n1', name)) == read(first)
        cb('prune', '--store', store)
        assert stored(store) == {'n1': []}
        deadline = time.monotonic() + 60
        while name in os.listdir(cl(m, 'n1')):
            assert time.monotonic() < deadline, 'the mount still lists the pruned segment'
            time.sleep(0.1)
        again = write_segment(str(tmp_path / 'b'), T0 - 3 * HOUR, seed=2)
        archive(store, again)
        assert read(again) != read(first)
        deadline = time.monotonic() + 60
        while True:
            try:
                if name in os.listdir(cl(m, 'n1')) and read(cl(m, 'n1', name)) == read(again):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, 'the mount never read the segment archived again'
            time.sleep(0.2)


# --- point-in-time restore ---------------------------------------------------------------------

def tiny(tmp_path, name, seed):
    return make_sample(str(tmp_path / name), '--data-kib', '16', '--data-dirs', '1', '--keyspaces', '1',
                       '--tables', '2', '--sstables', '1', '--no-index', '--no-clutter', '--seed', str(seed))


def java_properties(text):
    """java.util.Properties.load: comments (# !), key ends at an unescaped = : or blank, blanks
    around the separator dropped, backslash escapes, lines continued with a backslash."""
    lines, cur = [], ''
    for raw in text.split('\n'):
        line = raw.lstrip(' \t\f') if not cur else raw.lstrip(' \t\f')
        if not cur and (not line or line[0] in '#!'):
            continue
        tail = len(line) - len(line.rstrip('\\'))
        if tail % 2 == 1:
            cur += line[:-1]
            continue
        lines.append(cur + line)
        cur = ''
    props = {}
    for line in lines:
        i, key = 0, ''
        while i < len(line) and line[i] not in '=: \t\f':
            if line[i] == '\\':
                i += 1
            key += line[i]
            i += 1
        while i < len(line) and line[i] in ' \t\f':
            i += 1
        if i < len(line) and line[i] in '=:':
            i += 1
        while i < len(line) and line[i] in ' \t\f':
            i += 1
        val, esc = '', False
        for c in line[i:]:
            if esc:
                val += {'t': '\t', 'n': '\n', 'r': '\r', 'f': '\f'}.get(c, c)
                esc = False
            elif c == '\\':
                esc = True
            else:
                val += c
        props[key] = val
    return props


def descriptor(path):
    """CommitLogDescriptor.readHeader: (version, id), the CRC checked."""
    with open(path, 'rb') as f:
        head = f.read(65536 + 18)
    version, seg_id, plen = struct.unpack('>iqH', head[:14])
    params = head[14:14 + plen]
    (crc,) = struct.unpack('>I', head[14 + plen:18 + plen])
    assert head[:14 + plen] + struct.pack('>I', crc) == segment(version, seg_id, params=params)[:18 + plen]
    return version, seg_id


def cassandra_restores(props, commitlog_dir):
    """What CommitLogArchiver.maybeRestoreArchive does: every file of each restore directory
    (its descriptor from its header, which must match its name), restore_command with %from
    and %to substituted, split on spaces, run without a shell; a segment already in the
    commitlog directory is skipped. Returns restore_point_in_time
    as ms (SimpleDateFormat("yyyy:MM:dd HH:mm:ss"), GMT; parse() reads a prefix)."""
    for d in props['restore_directories'].split(','):
        for name in sorted(os.listdir(d)):
            version, seg_id = descriptor(os.path.join(d, name))
            assert name == f'CommitLog-{version}-{seg_id}.log'  # the name's descriptor is the header's
            to = os.path.join(commitlog_dir, name)
            if os.path.exists(to):
                continue
            cmd = props['restore_command'].replace('%from', os.path.join(d, name)).replace('%to', to)
            subprocess.run(cmd.split(' '), check=True)
    t = time.strptime(props['restore_point_in_time'][:19], '%Y:%m:%d %H:%M:%S')
    assert props.get('precision', 'MICROSECONDS') in ('MILLISECONDS', 'MICROSECONDS')
    return calendar.timegm(t) * 1000


@pytest.fixture
def history(store, tmp_path):
    """Node n1: backups b1 (snapshot at T0) and b2 (T0 + 1 day); segments s1..s5 around them;
    node n2: one segment and no backup."""
    for name, seed in (('b1', 1), ('b2', 2)):
        src = tiny(tmp_path, name, seed)
        cb('create', '--store', store, '--name', name, *data_dir_args(sample_dirs(src)),
           '--snapshot', 'nightly-1', '--node', 'n1')
    set_backup_time(store, 'b1', T0)
    set_backup_time(store, 'b2', T0 + DAY)
    d = str(tmp_path / 'commitlog')
    segs = {}
    for key, seg_id, archived in (('s1', T0 - 2 * HOUR, T0 - HOUR),
                                  ('s2', T0 - HOUR, T0 + HOUR // 2),
                                  ('s3', T0 + HOUR, T0 + 2 * HOUR),
                                  ('s4', T0 + 3 * HOUR, T0 + DAY + 2 * HOUR),
                                  ('s5', T0 + DAY + 3 * HOUR, T0 + DAY + 4 * HOUR)):
        segs[key] = write_segment(d, seg_id, seed=len(segs))
        archive(store, segs[key])
        set_archived(store, 'n1', os.path.basename(segs[key]), archived)
    segs['n2'] = write_segment(str(tmp_path / 'n2'), T0 + 5, seed=9)
    archive(store, segs['n2'], node='n2')
    set_archived(store, 'n2', os.path.basename(segs['n2']), T0 - 5 * DAY)
    return store, segs


def live_dir(tmp_path, store, backup):
    """A node's data directory with the backup's tables created (other table ids)."""
    live = tmp_path / 'node' / 'data'
    tables = json.loads(cb('list', '--store', store, '--json').stdout)
    assert tables
    doc = json.load(open(manifest_path(store, backup)))
    for ks in doc['keyspaces']:
        for t in ks['tables']:
            os.makedirs(live / ks['name'] / (t['name'] + '-' + 'e' * 32), exist_ok=True)
    return str(live)


def node_with_settings(tmp_path, store, backup, before):
    """live_dir for backup, and a Cassandra conf directory whose commitlog_archiving.properties
    holds before. Returns (live, conf)."""
    live = live_dir(tmp_path, store, backup)
    conf = tmp_path / 'conf'
    conf.mkdir()
    (conf / 'commitlog_archiving.properties').write_text(before)
    return live, conf


def gmt(ms):
    return time.strftime('%Y:%m:%d %H:%M:%S', time.gmtime(ms // 1000))


def test_point_in_time_restore_writes_what_cassandra_replays(history, tmp_path):
    store, segs = history
    before = '# the node\'s own settings\narchive_command=/usr/bin/cassbackup archive-commitlog --store S %path %name\n'
    live, conf = node_with_settings(tmp_path, store, 'b1', before)
    at = T0 + HOUR + HOUR // 2
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(at),
           '--cassandra-conf', str(conf), '--node', 'n1')
    assert 'backup b1 of node n1' in r.stdout and '2 commitlog segments' in r.stdout
    assert 'restored b1' in r.stdout and 'CASSANDRA-19448' not in r.stdout  # whole seconds
    assert 'is in the store yet' not in r.stdout  # segments archived after the time are there
    assert '--point-in-time-done --cassandra-conf ' + str(conf) in r.stdout
    # Cassandra loads the tables at the start that replays: no nodetool import to run (it said so)
    assert 'nodetool' not in r.stdout, r.stdout
    props = java_properties((conf / 'commitlog_archiving.properties').read_text())
    assert props['archive_command'] == '/usr/bin/cassbackup archive-commitlog --store S %path %name'
    assert (conf / 'commitlog_archiving.properties.before-point-in-time').read_text() == before
    segdir = tmp_path / 'node' / 'commitlog_restore'  # the default: beside the data directory
    assert props['restore_directories'] == str(segdir)
    # twice: nothing copied again, the file from before still kept
    mtimes = {n: os.stat(segdir / n).st_mtime_ns for n in os.listdir(segdir)}
    r = cb('restore', '--store', store, '--data-dir', live + '/', '--point-in-time', gmt(at),
           '--cassandra-conf', str(conf), '--node', 'n1')
    assert 'restored b1: 2 tables, 0 files' in r.stdout
    assert {n: os.stat(segdir / n).st_mtime_ns for n in os.listdir(segdir)} == mtimes
    assert java_properties((conf / 'commitlog_archiving.properties').read_text()) == props
    assert (conf / 'commitlog_archiving.properties.before-point-in-time').read_text() == before
    commitlog = tmp_path / 'node' / 'commitlog'
    commitlog.mkdir()
    assert cassandra_restores(props, str(commitlog)) == at
    # s2 reaches over b1's snapshot, s3 is inside the window; s1 ended before it, s4 began after
    assert sorted(os.listdir(commitlog)) == sorted(os.path.basename(segs[k]) for k in ('s2', 's3'))
    for k in ('s2', 's3'):
        assert read(os.path.join(commitlog, os.path.basename(segs[k]))) == read(segs[k])
    # the sstables are back
    assert any(f.endswith('Data.db') for _, _, fs in os.walk(live) for f in fs)
    # done: the file from before is back; a second done has nothing to do
    r = cb('restore', '--point-in-time-done', '--cassandra-conf', str(conf))
    assert (conf / 'commitlog_archiving.properties').read_text() == before
    assert f'removed 2 commitlog segments from {segdir}, and the directory' in r.stdout
    assert not segdir.exists()
    assert not (conf / 'commitlog_archiving.properties.before-point-in-time').exists()
    p = cb('restore', '--point-in-time-done', '--cassandra-conf', str(conf), check=False)
    assert p.returncode == 1 and 'not written by cassbackup' in p.stderr


def test_point_in_time_after_the_newest_archive_says_what_it_cannot_replay(history, tmp_path):
    """A restore to a time after the newest archived segment of the node took what there was,
    exit 0, without a word that the writes since (in the segment Cassandra was writing then)
    are not in the store. It says so now, in one note line, and still restores."""
    store, segs = history
    newest = max(read_meta(object_path(store, 'n1', os.path.basename(p)))[0]['archived_ms']
                 for k, p in segs.items() if k != 'n2')
    live, conf = node_with_settings(tmp_path, store, 'b2', '')
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(newest + 6 * HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', '--dry-run')
    [note] = [ln for ln in r.stdout.splitlines() if 'is in the store yet' in ln]
    assert note.startswith(f'note: no commitlog segment of node n1 archived after {gmt(newest + 6 * HOUR)}')
    assert f'writes made from {gmt(newest)}' in note, note


def test_point_in_time_with_a_damaged_segment_writes_nothing_in_the_node(history, tmp_path):
    """A segment the restore needs was damaged in the store: the restore wrote the backup's
    sstables into the node's tables, then failed on the segment, leaving the node half
    restored. The segments are fetched and checked first now: nothing lands in the tables,
    the settings stay the node's own."""
    store, segs = history
    before = '# the node\'s own settings\n'
    live, conf = node_with_settings(tmp_path, store, 'b1', before)
    path = object_path(store, 'n1', os.path.basename(segs['s3']))
    data = bytearray(read(path))
    data[-20] ^= 0x40
    with open(path, 'wb') as f:
        f.write(bytes(data))
    files = lambda: sorted(os.path.join(r, n) for r, _, ns in os.walk(live) for n in ns)  # noqa: E731
    assert files() == []
    p = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + HOUR + HOUR // 2),
           '--cassandra-conf', str(conf), '--node', 'n1', check=False)
    assert p.returncode == 1 and 'the backup was not restored' in p.stderr, (p.stdout, p.stderr)
    assert files() == [], files()
    assert (conf / 'commitlog_archiving.properties').read_text() == before
    assert sorted(os.listdir(conf)) == ['commitlog_archiving.properties']


def test_point_in_time_whose_backup_cannot_be_restored_takes_its_segments_back(history, tmp_path):
    """The segments are fetched before the backup is restored; when the backup then could not
    be restored (a table directory of the node is a file), the segments stayed in the
    segments directory, with no settings naming them, and a restore to another time was
    refused ("holds ..., which is not one of the segments to replay"). They are taken back."""
    store, segs = history
    live, conf = node_with_settings(tmp_path, store, 'b1', '')
    segdir = tmp_path / 'segs'
    ks = sorted(os.listdir(live))[0]
    table = os.path.join(live, ks, sorted(os.listdir(os.path.join(live, ks)))[0])
    os.rmdir(table)
    with open(table, 'w') as f:
        f.write('not a directory')
    # a file under a chosen segment's name with other bytes (the operator's): refused, kept
    # (it was overwritten, then removed as if this run had written it)
    segdir.mkdir()
    (segdir / os.path.basename(segs['s2'])).write_bytes(b'the operator\'s copy')
    p = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + HOUR + HOUR // 2),
           '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(segdir), check=False)
    assert p.returncode == 2 and 'but not the bytes the store holds under that name' in p.stderr, p.stderr
    assert (segdir / os.path.basename(segs['s2'])).read_bytes() == b'the operator\'s copy'
    shutil.rmtree(segdir)
    p = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + HOUR + HOUR // 2),
           '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(segdir), check=False)
    assert p.returncode != 0 and 'no commitlog replay was set up' in p.stderr, (p.stdout, p.stderr)
    assert 'removed the 2 commitlog segments this restore had copied' in p.stdout, p.stdout
    assert not segdir.exists()
    assert (conf / 'commitlog_archiving.properties').read_text() == ''
    os.unlink(table)
    os.makedirs(table)
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + DAY + HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(segdir))
    assert 'restored b' in r.stdout, r.stdout


def test_two_point_in_time_restores_never_share_a_segments_directory(history, tmp_path):
    """Two restores into one --segments-dir: one whose backup could not be restored took back
    the segments it had copied, while the other, which found them there, had written settings
    that name them: Cassandra would have replayed nothing. A restore holds the directory to its
    end now; the other is refused (exit 1) before it writes anything."""
    from conftest import preload
    from test_lease import stopped_at_state_t
    store, segs = history
    segdir = tmp_path / 'segs'
    live_a, conf_a = node_with_settings(tmp_path / 'a', store, 'b1', '')
    ks = sorted(os.listdir(live_a))[0]
    table = os.path.join(live_a, ks, sorted(os.listdir(os.path.join(live_a, ks)))[0])
    os.rmdir(table)
    with open(table, 'w') as f:
        f.write('not a directory')
    at = gmt(T0 + HOUR + HOUR // 2)
    a = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, 'restore', '--store', store, '--data-dir', live_a, '--point-in-time', at,
         '--cassandra-conf', str(conf_a), '--node', 'n1', '--segments-dir', str(segdir)], text=True,
        env=dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_UNLINK='CommitLog-*'),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        live_b, conf_b = node_with_settings(tmp_path / 'b', store, 'b1', '')
        p = cb('restore', '--store', store, '--data-dir', live_b, '--point-in-time', at,
               '--cassandra-conf', str(conf_b), '--node', 'n1', '--segments-dir', str(segdir), check=False)
        assert p.returncode == 1 and 'is in use by another point-in-time restore' in p.stderr, (p.stdout, p.stderr)
        assert len(p.stderr.splitlines()) == 1, p.stderr
        assert (conf_b / 'commitlog_archiving.properties').read_text() == ''
        assert not any(f.endswith('Data.db') for _, _, fs in os.walk(live_b) for f in fs)
    finally:
        a.send_signal(signal.SIGCONT)
        out, err = a.communicate(timeout=120)
    assert a.returncode == 1 and 'removed the 2 commitlog segments' in out, (out, err)
    cb('restore', '--store', store, '--data-dir', live_b, '--point-in-time', at,
       '--cassandra-conf', str(conf_b), '--node', 'n1', '--segments-dir', str(segdir))
    assert sorted(os.listdir(segdir)) == sorted(os.path.basename(segs[k]) for k in ('s2', 's3'))


def test_a_segments_directory_is_one_restores_from_its_look_to_its_end(history, tmp_path):
    """--point-in-time-done removed the segments of a restore that was using their directory
    (its settings, written next, named a directory that was gone: exit 0, nothing replayed);
    and a restore that looked at the directory before another's lock put a segment there it
    did not choose, which Cassandra would replay. The directory is looked at again under the
    lock, and --point-in-time-done takes the lock too."""
    from conftest import preload
    from test_lease import stopped_at_state_t
    store, segs = history
    segdir = tmp_path / 'segs'
    live0, conf0 = node_with_settings(tmp_path / 'p0', store, 'b1', '')
    at = gmt(T0 + HOUR + HOUR // 2)
    cb('restore', '--store', store, '--data-dir', live0, '--point-in-time', at, '--cassandra-conf',
       str(conf0), '--node', 'n1', '--segments-dir', str(segdir))

    def restore(tag, when, stop):
        live, conf = node_with_settings(tmp_path / tag, store, 'b1', '')
        return stopped_at_state_t(subprocess.Popen(
            [CASSBACKUP, 'restore', '--store', store, '--data-dir', live, '--point-in-time', when,
             '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(segdir)], text=True,
            env=dict(os.environ, LD_PRELOAD=preload('killat'), **stop),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    a = restore('a', at, {'CASSBACKUP_TEST_STOP_AT_RENAME': '*-Data.db'})
    try:
        p = cb('restore', '--point-in-time-done', '--cassandra-conf', str(conf0), check=False)
        assert p.returncode == 1 and 'is in use by a point-in-time restore' in p.stderr, p.stderr
        assert sorted(os.listdir(segdir)) == sorted(os.path.basename(segs[k]) for k in ('s2', 's3'))
    finally:
        a.send_signal(signal.SIGCONT)
        out, err = a.communicate(timeout=120)
    assert a.returncode == 0, (out, err)
    cb('restore', '--point-in-time-done', '--cassandra-conf', str(conf0))
    assert not segdir.exists()
    # b looks at the empty directory, then waits for its lock while c fills it for a later time
    b = restore('b', at, {'CASSBACKUP_TEST_STOP_AT_FLOCK': '1'})
    try:
        live_c, conf_c = node_with_settings(tmp_path / 'c', store, 'b2', '')
        cb('restore', '--store', store, '--data-dir', live_c, '--point-in-time', gmt(T0 + DAY + 5 * HOUR),
           '--cassandra-conf', str(conf_c), '--node', 'n1', '--segments-dir', str(segdir))
    finally:
        b.send_signal(signal.SIGCONT)
        out, err = b.communicate(timeout=120)
    assert b.returncode == 2 and 'which is not one of the segments to replay' in err, (out, err)
    assert (tmp_path / 'b' / 'conf' / 'commitlog_archiving.properties').read_text() == ''


def test_the_window_of_a_snapshot_without_manifest_files_starts_at_its_newest_file(store, tmp_path):
    """Cassandra before 2.2 writes no manifest.json into a snapshot, and a table nobody writes
    has its last flush months back: taken for that table's snapshot, it held every segment
    since then in the window, and prune never deleted one again. Without manifest.json the
    window starts at the backup's newest file, less the flush slack, as before."""
    src = tiny(tmp_path, 'b1', 1)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1')
    set_backup_time(store, 'b1', T0)
    path = manifest_path(store, 'b1')
    doc = json.load(open(path))
    [idle, busy] = doc['keyspaces'][0]['tables'][:2]
    for t in (idle, busy):
        t['files'] = [f for f in t['files'] if not (f['name'] == 'manifest.json' and not f.get('dir'))]
    for f in idle['files']:
        f['mtime_ns'] = (T0 - 60 * DAY) * 10**6
    rewrite_manifest(path, doc)
    drop_catalog(store)
    old = write_segment(str(tmp_path / 'cl'), T0 - 31 * DAY, seed=1)
    archive(store, old)
    set_archived(store, 'n1', os.path.basename(old), T0 - 30 * DAY)
    cb('prune', '--store', store)
    assert stored(store) == {'n1': []}


def test_point_in_time_removes_what_a_killed_run_left(history, tmp_path):
    """A point-in-time restore killed while it copied a segment left its partial temporary
    file in the segments directory; the next run, to another time, kept it there, and
    Cassandra's restore copies every file of restore_directories: the partial segment too.
    The next run removes it."""
    store, segs = history
    live, conf = node_with_settings(tmp_path, store, 'b1', '')
    segdir = tmp_path / 'node' / 'commitlog_restore'
    segdir.mkdir()
    left = segdir / ('.cassbackup-tmp-' + os.path.basename(segs['s4']))
    left.write_bytes(read(segs['s4'])[:1000])
    cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + HOUR + HOUR // 2),
       '--cassandra-conf', str(conf), '--node', 'n1')
    assert sorted(os.listdir(segdir)) == sorted(os.path.basename(segs[k]) for k in ('s2', 's3'))


def test_point_in_time_after_second_backup_and_for_one_table(history, tmp_path):
    store, segs = history
    live = live_dir(tmp_path, store, 'b2')
    conf = tmp_path / 'conf'
    conf.mkdir()
    doc = json.load(open(manifest_path(store, 'b2')))
    ks = doc['keyspaces'][0]['name']
    table = doc['keyspaces'][0]['tables'][0]['name']
    at = T0 + DAY + 3 * HOUR + HOUR // 2
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(at) + '.250',
           '--cassandra-conf', str(conf), '--node', 'n1', '--table', f'{ks}.{table}',
           '--segments-dir', str(tmp_path / 'segs'))
    assert 'backup b2 of node n1' in r.stdout
    # Cassandra before CASSANDRA-19448 reads the time to the second: the operator is told
    assert f'a release without it replays up to {gmt(at)}.000\n' in r.stdout
    assert f'-Dcassandra.replayList={ks}.{table}\n' in r.stdout
    props = java_properties((conf / 'commitlog_archiving.properties').read_text())
    assert props['restore_directories'] == str(tmp_path / 'segs')
    assert props['restore_point_in_time'] == gmt(at) + '.250'
    assert 'archive_command' not in props
    assert sorted(os.listdir(tmp_path / 'segs')) == sorted(os.path.basename(segs[k]) for k in ('s4', 's5'))
    # no file before: done removes ours; the segments go, a file of someone else's stays
    (tmp_path / 'segs' / 'notes.txt').write_text('mine')
    r = cb('restore', '--point-in-time-done', '--cassandra-conf', str(conf))
    assert not (conf / 'commitlog_archiving.properties').exists()
    assert 'removed 2 commitlog segments from ' + str(tmp_path / 'segs') + '\n' in r.stdout
    assert os.listdir(tmp_path / 'segs') == ['notes.txt']


def test_point_in_time_bad_input(history, tmp_path):
    store, segs = history
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()
    base = ['restore', '--store', store, '--data-dir', live, '--cassandra-conf', str(conf), '--node', 'n1']
    # signs and blanks in a field passed sscanf and went into restore_point_in_time as given
    for bad in ('2026-12-01 10:00:00', '2026:13:01 10:00:00', '2026:02:30 10:00:00', '2026:12:01 10:00',
                '2026:12:01 10:00:+5', '2026:+1:01 10:00:00', '2026:12:01 10:00:05.-12',
                '2026:12:01 10:00: 5', '2026:12:01 10:00:05.1', ' 2026:12:01 10:00:05'):
        p = cb(*base, '--point-in-time', bad, check=False)
        assert p.returncode == 2 and ('yyyy:MM:dd HH:mm:ss' in p.stderr or 'no such day' in p.stderr), p.stderr
    p = cb(*base, '--point-in-time', gmt(T0 - DAY), check=False)  # before any backup
    assert p.returncode == 3 and 'no complete backup made at or before' in p.stderr
    p = cb(*base, '--point-in-time', gmt(T0 + HOUR), 'b2', check=False)  # b2 is later
    assert p.returncode == 2 and 'was made after' in p.stderr
    # a segments directory holding something else: Cassandra would replay it too
    segdir = tmp_path / 'segs'
    segdir.mkdir()
    (segdir / 'CommitLog-7-1.log').write_bytes(b'x')
    p = cb(*base, '--point-in-time', gmt(T0 + 2 * HOUR), '--segments-dir', str(segdir), check=False)
    assert p.returncode == 2 and 'not one of the segments to replay' in p.stderr
    p = cb(*base, '--point-in-time', gmt(T0 + 2 * HOUR), '--segments-dir', '/tmp/a b', check=False)
    assert p.returncode == 2 and 'without spaces' in p.stderr
    # a dry run says what it would do
    r = cb(*base, '--point-in-time', gmt(T0 + HOUR + HOUR // 2), '--dry-run', '--segments-dir',
           str(tmp_path / 'dry'))
    assert 'backup b1 of node n1' in r.stdout and 'dry run: nothing was written' in r.stdout
    assert r.stdout.count('would copy commitlog segment') == 2 and not os.path.exists(tmp_path / 'dry')
    # nothing was written anywhere
    assert os.listdir(conf) == [] and not any(fs for _, _, fs in os.walk(live))
    p = cb('restore', '--point-in-time-done', '--cassandra-conf', str(conf), check=False)
    assert p.returncode == 1 and 'no point-in-time settings' in p.stderr
    # the node's own directories: its commitlog (the default beside the data directory, or
    # cassandra.yaml's), a data directory or below one: Cassandra would replay its live
    # segments and done removed them
    yaml = conf / 'cassandra.yaml'
    yaml.write_text(f'commitlog_directory: {tmp_path}/cl\nhints_directory: {tmp_path}/hints\n')
    for d in (tmp_path / 'cl', tmp_path / 'hints', live, os.path.join(live, 'ks')):
        p = cb(*base, '--point-in-time', gmt(T0 + 2 * HOUR), '--segments-dir', str(d), check=False)
        assert p.returncode == 2 and "is or holds the node's own" in p.stderr, (d, p.stderr)
    yaml.write_text("cluster_name: x\nhints_directory: ''\n")  # '': not set, refuses nothing
    p = cb(*base, '--point-in-time', gmt(T0 + 2 * HOUR), '--segments-dir',
           str(tmp_path / 'node' / 'commitlog'), check=False)
    assert p.returncode == 2 and "is or holds the node's own" in p.stderr, p.stderr
    # beside the data directory, spelled through it: not inside it
    r = cb(*base, '--point-in-time', gmt(T0 + 2 * HOUR), '--dry-run', '--segments-dir',
           os.path.join(live, '..', 'segs-beside'))
    assert 'dry run: nothing was written' in r.stdout
    yaml.unlink()
    assert os.listdir(conf) == []


def test_point_in_time_done_keeps_segments_written_after_it(history, tmp_path):
    """done removed every segment-named file of the segments directory: one Cassandra wrote
    there after the restore (its commitlog_directory pointed there) went too."""
    store, segs = history
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()
    segdir = tmp_path / 'segs'
    cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + HOUR + HOUR // 2),
       '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(segdir))
    placed = sorted(os.listdir(segdir))
    assert len(placed) == 2
    later = segdir / f'CommitLog-7-{T0 + 3 * DAY}.log'
    later.write_bytes(b'written by the node after the restore')
    t = os.stat(conf / 'commitlog_archiving.properties').st_mtime + 5
    os.utime(later, (t, t))
    r = cb('restore', '--point-in-time-done', '--cassandra-conf', str(conf), check=False)
    assert r.returncode == 0, r.stderr
    assert f'removed 2 commitlog segments from {segdir}\n' in r.stdout
    assert 'left 1 segment file' in r.stderr
    assert os.listdir(segdir) == [later.name]


def test_point_in_time_after_a_kill_between_keeping_and_writing_the_settings(history, tmp_path):
    """Killed after the node's settings file was kept (a second name) and before ours was
    written: the next run failed "File exists" for good, and done refused the file."""
    store, segs = history
    before = 'archive_command=/bin/true %path %name\n'
    live, conf = node_with_settings(tmp_path, store, 'b1', before)
    os.link(conf / 'commitlog_archiving.properties', conf / 'commitlog_archiving.properties.before-point-in-time')
    cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 2 * HOUR),
       '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(tmp_path / 'segs'))
    props = java_properties((conf / 'commitlog_archiving.properties').read_text())
    assert props['restore_directories'] == str(tmp_path / 'segs')
    cb('restore', '--point-in-time-done', '--cassandra-conf', str(conf))
    assert (conf / 'commitlog_archiving.properties').read_text() == before
    assert os.listdir(conf) == ['commitlog_archiving.properties']


def test_point_in_time_by_host_id_finds_the_node_segments(store, tmp_path):
    """--node given as the host id found the backup but listed commitlogs/<host id>/, where
    nothing is (segments are kept under the node's name): 0 segments, exit 0."""
    hid = '5f1c0c8e-0000-4000-8000-000000000009'
    src = tiny(tmp_path, 'b1', 1)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1', '--host-id', hid)
    set_backup_time(store, 'b1', T0)
    seg = write_segment(str(tmp_path / 'cl'), T0 + HOUR // 2, seed=3)
    archive(store, seg)
    set_archived(store, 'n1', os.path.basename(seg), T0 + HOUR)
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 2 * HOUR),
           '--cassandra-conf', str(conf), '--node', hid, '--segments-dir', str(tmp_path / 'segs'))
    assert 'then 1 commitlog segment' in r.stdout, r.stdout
    assert os.listdir(tmp_path / 'segs') == [os.path.basename(seg)]


def test_point_in_time_by_an_old_host_id_keeps_to_that_node(store, tmp_path):
    """A replaced node keeps its name under a new host id: --node OLD-HOST-ID must pick the old
    node's backup, not the newer one of the same name (the search matched by name once it had
    found one)."""
    old, new = '5f1c0c8e-0000-4000-8000-00000000000a', '5f1c0c8e-0000-4000-8000-00000000000b'
    for name, hid, seed, when in (('b-old', old, 1, T0), ('b-new', new, 2, T0 + HOUR)):
        src = tiny(tmp_path, name, seed)
        cb('create', '--store', store, '--name', name, *data_dir_args(sample_dirs(src)), '--snapshot',
           'nightly-1', '--node', 'n1', '--host-id', hid)
        set_backup_time(store, name, when)
    live = live_dir(tmp_path, store, 'b-old')
    conf = tmp_path / 'conf'
    conf.mkdir()
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 2 * HOUR),
           '--cassandra-conf', str(conf), '--node', old, '--segments-dir', str(tmp_path / 'segs'),
           '--dry-run')
    assert 'backup b-old of node n1' in r.stdout, r.stdout
    # the segments too: both nodes archived under the name n1; only the old node's are its own
    # (all of commitlogs/n1/ were taken, the other node's mutations with them)
    cl = str(tmp_path / 'cl')
    for hid, seg_id, seed in ((old, T0 + HOUR // 2, 3), (new, T0 + HOUR // 2 + 1, 4)):
        seg = write_segment(cl, seg_id, seed=seed)
        p = subprocess.run([CASSBACKUP, 'archive-commitlog', '--store', store, '--node', 'n1', '--host-id',
                            hid, seg, os.path.basename(seg)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        set_archived(store, 'n1', os.path.basename(seg), T0 + HOUR)
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 2 * HOUR),
           '--cassandra-conf', str(conf), '--node', old, '--segments-dir', str(tmp_path / 'segs'))
    assert 'then 1 commitlog segment' in r.stdout, r.stdout
    assert os.listdir(tmp_path / 'segs') == ['CommitLog-7-%d.log' % (T0 + HOUR // 2)]
    # the other node's is left out, and said (a stale host_id in a configuration looks alike)
    assert f'note: 1 commitlog segment under node n1 in the window left out: it records another host id than the backup\'s {old}' in r.stdout, r.stdout


def archive_as(store, seg, node, host_id, archived_ms):
    """seg archived under node, recording host_id (None: none, as without --host-id and nodetool)."""
    hid = ['--host-id', host_id] if host_id else []
    p = subprocess.run([CASSBACKUP, 'archive-commitlog', '--store', store, '--node', node, *hid,
                        seg, os.path.basename(seg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    set_archived(store, node, os.path.basename(seg), archived_ms)


def test_point_in_time_takes_the_host_ids_segments_under_another_node_name(store, tmp_path):
    """Segments archived under another node name (archive_command without --node gives the
    host's FQDN; a host renamed) were never looked at: 0 segments, exit 0, the replay lost
    their writes. Those that record the backup's host id are taken, and said."""
    hid = '5f1c0c8e-0000-4000-8000-00000000000c'
    src = tiny(tmp_path, 'b1', 1)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1', '--host-id', hid)
    set_backup_time(store, 'b1', T0)
    cl = str(tmp_path / 'cl')
    mine = write_segment(cl, T0 + HOUR // 2, seed=3)
    archive_as(store, mine, 'n1.example.com', hid, T0 + HOUR)
    theirs = write_segment(str(tmp_path / 'cl2'), T0 + HOUR // 2 + 7, seed=4)  # another node's
    archive_as(store, theirs, 'n2.example.com', '5f1c0c8e-0000-4000-8000-00000000000d', T0 + HOUR)
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 2 * HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(tmp_path / 'segs'))
    assert 'then 1 commitlog segment' in r.stdout, r.stdout
    assert f'note: 1 of the commitlog segments to replay was archived under another node name with host id {hid}' in r.stdout
    assert os.listdir(tmp_path / 'segs') == [os.path.basename(mine)]
    assert read(tmp_path / 'segs' / os.path.basename(mine)) == read(mine)
    # copy takes them along, under the name they were archived under
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    cb('copy', '--from', store, '--to', dst, 'b1')
    assert stored(dst) == {'n1.example.com': [os.path.basename(mine)]}
    # under a name other hosts archived under too, the host's own among theirs (the first and
    # last of the directory are another's): found, read from every segment's metadata
    other = '5f1c0c8e-0000-4000-8000-00000000000e'
    # (the host's own the next after its first: a run's segments, none missing between)
    shared = [write_segment(str(tmp_path / f'cl-s{i}'), T0 + HOUR // 2 + i, seed=20 + i) for i in (-1, 1, 2)]
    for seg, h in zip(shared, (other, hid, other)):
        archive_as(store, seg, 'shared', h, T0 + HOUR)
    # and one whose metadata does not read: whose it is, is not known, and said
    bad = write_segment(str(tmp_path / 'cl-bad'), T0 + HOUR // 2 + 20, seed=30)
    archive_as(store, bad, 'n4', other, T0 + HOUR)
    with open(object_path(store, 'n4', os.path.basename(bad)), 'r+b') as f:
        f.seek(10)
        f.write(b'#')
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 2 * HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(tmp_path / 'segs2'), '--dry-run')
    assert 'then 2 commitlog segments' in r.stdout, r.stdout
    assert f'would copy commitlog segment {os.path.basename(shared[1])}' in r.stdout
    assert 'note: 1 commitlog segment under other node names cannot be read' in r.stdout, r.stdout
    # a node replaced under its name: a backup of each host id, each one's segments elsewhere
    hid2 = '5f1c0c8e-0000-4000-8000-00000000000f'
    src2 = tiny(tmp_path, 'b2', 2)
    cb('create', '--store', store, '--name', 'b2', *data_dir_args(sample_dirs(src2)), '--snapshot',
       'nightly-1', '--node', 'n1', '--host-id', hid2)
    set_backup_time(store, 'b2', T0 + HOUR)
    new = write_segment(str(tmp_path / 'cl-new'), T0 + 2 * HOUR, seed=40)
    archive_as(store, new, 'n1-new.example.com', hid2, T0 + 3 * HOUR)
    dst2 = str(tmp_path / 'dst2')
    cb('init', '--store', dst2)
    r = cb('copy', '--from', store, '--to', dst2, 'b1', 'b2')
    assert 'commitlog segments of node n1 (host id ' + hid2 + '): sent 1 ' in r.stdout, r.stdout
    assert os.path.basename(new) in stored(dst2).get('n1-new.example.com', []), (r.stdout, r.stderr)
    assert os.path.basename(mine) in stored(dst2).get('n1.example.com', [])


def test_prune_keeps_what_a_renamed_hosts_older_backup_replays(store, tmp_path):
    """A host backed up as node 'old', then renamed 'new': its segments go to commitlogs/new/.
    A point-in-time restore of old's backup takes them (its host id), but prune judged
    commitlogs/new/ by new's backups alone and deleted those archived before new's first
    backup, exit 0; the restore then had less to replay, without a word."""
    hid = '5f1c0c8e-0000-4000-8000-000000000010'
    for name, node, when, seed in (('bo', 'old', T0, 1), ('bn', 'new', T0 + 2 * DAY, 2)):
        src = tiny(tmp_path, name, seed)
        cb('create', '--store', store, '--name', name, *data_dir_args(sample_dirs(src)), '--snapshot',
           'nightly-1', '--node', node, '--host-id', hid)
        set_backup_time(store, name, when)
    seg = write_segment(str(tmp_path / 'cl'), T0 + DAY, seed=3)
    archive_as(store, seg, 'new', hid, T0 + DAY + HOUR)
    cb('prune', '--store', store)
    assert stored(store) == {'new': [os.path.basename(seg)]}
    live = live_dir(tmp_path, store, 'bo')
    conf = tmp_path / 'conf'
    conf.mkdir()
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + DAY + 2 * HOUR),
           '--cassandra-conf', str(conf), '--node', 'old', '--dry-run')
    assert f'would copy commitlog segment {os.path.basename(seg)}' in r.stdout, r.stdout


def prune_keeps_what_restore_replays(store, tmp_path, a_as, b_as):
    """Backup b1 of n1 (host H) at T0; segment A made at T0+1h, archived in the window as
    a_as (node, host id); B made after it, archived as b_as by a clock stepped back 2 hours
    (before the snapshot). Point-in-time restore takes both (B's id is above A's); prune must
    delete neither. Returns the segments' names."""
    hid = '5f1c0c8e-0000-4000-8000-000000000010'
    src = tiny(tmp_path, 'b1', 1)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1', '--host-id', hid)
    set_backup_time(store, 'b1', T0)
    a = write_segment(str(tmp_path / 'cla'), T0 + HOUR, seed=3)
    archive_as(store, a, a_as[0], a_as[1] and hid, T0 + 2 * HOUR)
    b = write_segment(str(tmp_path / 'clb'), T0 + 3 * HOUR, seed=4)
    archive_as(store, b, b_as[0], b_as[1] and hid, T0 - 2 * HOUR)
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()

    def replayed():
        r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 5 * HOUR),
               '--cassandra-conf', str(conf), '--node', 'n1', '--dry-run')
        return sorted(ln.split()[4] for ln in r.stdout.splitlines()
                      if ln.startswith('would copy commitlog segment '))

    want = sorted(os.path.basename(x) for x in (a, b))
    assert replayed() == want
    r = cb('prune', '--store', store)
    assert 'commitlog segment' not in r.stdout, r.stdout
    assert replayed() == want
    return [os.path.basename(x) for x in (a, b)]


def test_prune_judges_a_renamed_hosts_segments_with_its_others(store, tmp_path):
    """B archived under the host's other name: prune worked out the least id in the window
    from B's node name alone, found none there, and deleted B, exit 0."""
    a, b = prune_keeps_what_restore_replays(store, tmp_path, ('n1', True), ('n1.example.com', True))
    assert stored(store) == {'n1': [a], 'n1.example.com': [b]}


def test_prune_judges_a_segment_of_no_host_id_with_its_nodes_hosts(store, tmp_path):
    """B under n1 recording no host id (archived without --host-id or nodetool), A under the
    host's other name: prune bounded B's ids by n1's segments and B's empty host id alone, and
    deleted it."""
    a, b = prune_keeps_what_restore_replays(store, tmp_path, ('n1.example.com', True), ('n1', False))
    assert stored(store) == {'n1': [b], 'n1.example.com': [a]}


def test_prune_judges_a_renamed_hosts_segment_by_its_nodes_segments_of_no_host_id(store, tmp_path):
    """A under n1 recording no host id, B under the host's other name: restore bounds B's ids
    by A's (n1's segments); prune looked only at the host's segments, and deleted B."""
    a, b = prune_keeps_what_restore_replays(store, tmp_path, ('n1', False), ('n1.example.com', True))
    assert stored(store) == {'n1': [a], 'n1.example.com': [b]}


def test_prune_keeps_what_an_incremental_of_a_renamed_host_replays(store, tmp_path):
    """A host backed up in full as 'old', renamed 'new', then an incremental as 'new' on that
    full backup. A segment under 'new' that records no host id, archived between the two: the
    incremental's point-in-time restore replays it, as its window starts at its full backup.
    prune started it at the incremental's own time, and deleted it, exit 0."""
    import test_incremental as ti
    hid = '5f1c0c8e-0000-4000-8000-000000000077'
    node = ti.Node(tmp_path / 'node')

    def create(name, *args):
        return cb('create', '--store', store, '--data-dir', node.data, '--node', name, '--host-id', hid,
                  '--cassandra-conf', str(node.conf), *args)

    create('old', '--snapshot', ti.FIXTURE_TAG, '--name', 'full')
    for t in ti.TABLES:
        node.flush(t)
    set_backup_time(store, 'full', T0)
    create('new', '--incremental', '--name', 'inc1')
    set_backup_time(store, 'inc1', T0 + DAY)
    seg = write_segment(str(tmp_path / 'cl'), T0 + 3 * HOUR, seed=5)
    archive_as(store, seg, 'new', None, T0 + 4 * HOUR)
    live = tmp_path / 'live'
    for t in ti.TABLES:
        os.makedirs(live / ti.KS / (t + '-' + 'e' * 32))
    conf = tmp_path / 'conf'
    conf.mkdir()

    def replayed():
        r = cb('restore', '--store', store, '--data-dir', str(live), '--point-in-time',
               gmt(T0 + DAY + 3 * HOUR), '--cassandra-conf', str(conf), '--node', hid, '--dry-run')
        return [ln.split()[4] for ln in r.stdout.splitlines() if ln.startswith('would copy commitlog segment ')]

    assert replayed() == [os.path.basename(seg)]
    r = cb('prune', '--store', store)
    assert 'commitlog segment' not in r.stdout, r.stdout
    assert replayed() == [os.path.basename(seg)]


def test_a_host_id_nodetool_prints_in_capitals_keeps_the_nodes_segments(store, tmp_path):
    """A host id nodetool printed in capitals was kept as printed, while archive-commitlog
    --host-id keeps it in lower case: point-in-time restore then left the node's own segment
    out as another host's, exit 0. Host ids are kept in lower case, and a store that has both
    spellings (made before) matches them."""
    from test_cluster import NODETOOL, SCHEMA
    hid = '5F1C0A5E-7D1B-4A3E-9C55-0000000000AB'
    ring = tmp_path / 'ring.json'
    ring.write_text(json.dumps({'cluster': 'C1', 'schema_version': SCHEMA, 'nodes': [
        {'host_id': hid, 'address': '127.0.0.1', 'datacenter': 'dc1', 'rack': 'r1', 'tokens': ['0']}]}))
    src = tiny(tmp_path, 'b1', 1)
    env = dict(os.environ, NODETOOL_STANDIN_RING=str(ring), NODETOOL_STANDIN_NODE='127.0.0.1')
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1', '--nodetool', NODETOOL, env=env)
    assert os.listdir(os.path.join(store, 'backups', 'b1')) == [hid.lower() + '.json']
    set_backup_time(store, 'b1', T0)
    seg = write_segment(str(tmp_path / 'cl'), T0 + HOUR, seed=3)
    archive_as(store, seg, 'n1', hid, T0 + 2 * HOUR)
    # a segment of a store made before: its host id as nodetool printed it
    old = write_segment(str(tmp_path / 'cl2'), T0 + 2 * HOUR, seed=4)
    archive_as(store, old, 'n1', hid.lower(), T0 + 3 * HOUR)
    meta = os.path.join(store, 'commitlogs', 'n1', os.path.basename(old) + '.zst')
    m, rest = read_meta(meta)
    assert m['host_id'] == hid.lower()
    m['host_id'] = hid
    with open(meta, 'wb') as f:
        f.write(meta_frames(m) + rest)
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 5 * HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', '--dry-run')
    assert f'would copy commitlog segment {os.path.basename(seg)}' in r.stdout, r.stdout
    assert f'would copy commitlog segment {os.path.basename(old)}' in r.stdout, r.stdout
    assert 'another host id' not in r.stdout
    # and restore knows the backup as this node's, nodetool's capitals or not
    r = cb('restore', '--store', store, 'b1', '--data-dir', live, '--nodetool', NODETOOL, '--dry-run', env=env)
    assert 'another node' not in r.stderr, r.stderr
    r = cb('restore', '--store', store, 'b1', '--data-dir', live, '--node', hid[:8], '--dry-run')
    assert 'another node' not in r.stderr, r.stderr
    # a backup an older cassbackup kept under the id in capitals (given so with --host-id):
    # --point-in-time --node finds it by the id in either case
    path = os.path.join(store, 'backups', 'b1', hid.lower() + '.json')
    doc = json.load(open(path))
    doc['host_id'] = hid
    os.unlink(path)
    rewrite_manifest(os.path.join(store, 'backups', 'b1', hid + '.json'), doc)
    drop_catalog(store)
    for spelling in (hid.lower(), hid):
        r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 5 * HOUR),
               '--cassandra-conf', str(conf), '--node', spelling, '--dry-run')
        assert 'backup b1 of node n1' in r.stdout, r.stdout


def test_a_clock_stepped_back_or_an_id_ahead_loses_no_segment(history, tmp_path):
    """Segments were judged by their archive time (the node's clock): s8, made and archived after
    s7, archived by a clock stepped back 2 hours (an NTP correction), seemed archived before b2's
    snapshot, so prune deleted it and a point-in-time restore left it out, exit 0. And s9, whose
    id is ahead of real time (a node that started with its clock ahead keeps its ids ahead),
    archived in the window, was left out as made after the point in time. Ids only grow on a
    node: a segment made after one the window holds is in the window too."""
    store, segs = history
    d = str(tmp_path / 'commitlog')
    s7 = write_segment(d, T0 + DAY + 5 * HOUR, seed=7)
    archive(store, s7)
    set_archived(store, 'n1', os.path.basename(s7), T0 + DAY + 6 * HOUR)
    s8 = write_segment(d, T0 + DAY + 7 * HOUR, seed=8)
    archive(store, s8)
    set_archived(store, 'n1', os.path.basename(s8), T0 + DAY - 3 * HOUR)  # the clock set back
    cb('forget', '--store', store, 'b1')
    cb('prune', '--store', store)
    assert os.path.basename(s8) in stored(store)['n1'], stored(store)
    live = live_dir(tmp_path, store, 'b2')
    conf = tmp_path / 'conf'
    conf.mkdir()
    at = T0 + DAY + 8 * HOUR
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(at), '--cassandra-conf',
           str(conf), '--node', 'n1', '--segments-dir', str(tmp_path / 'segs'))
    assert 'backup b2 of node n1' in r.stdout, r.stdout
    assert os.path.basename(s8) in os.listdir(tmp_path / 'segs')
    # an id two days ahead, archived within the window
    s9 = write_segment(d, T0 + 3 * DAY, seed=9)
    archive(store, s9)
    set_archived(store, 'n1', os.path.basename(s9), at - HOUR // 2)
    # the segment written at the point, its id ahead and archived after it: the first archived
    # after the point (ids ahead say nothing of when it was written); the next one is not
    s10 = write_segment(d, T0 + 4 * DAY, seed=10)
    s11 = write_segment(d, T0 + 4 * DAY + 1, seed=11)
    for seg, archived in ((s10, at + HOUR), (s11, at + 2 * HOUR)):
        archive(store, seg)
        set_archived(store, 'n1', os.path.basename(seg), archived)
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(at), '--cassandra-conf',
           str(conf), '--node', 'n1', '--segments-dir', str(tmp_path / 'segs9'), '--dry-run')
    assert f'would copy commitlog segment {os.path.basename(s9)}' in r.stdout, r.stdout
    assert f'would copy commitlog segment {os.path.basename(s10)}' in r.stdout, r.stdout
    assert os.path.basename(s11) not in r.stdout



def test_a_clock_stepped_back_after_the_snapshot_loses_no_segment(store, tmp_path):
    """The segment written while b1's snapshot was taken was archived by a clock an hour behind
    (an NTP step right after the snapshot): its archive time said 40 minutes before the
    snapshot, and the id of the next one (the first archived since, by its time) could not
    take it in. A point-in-time restore left it out and prune deleted it, exit 0. create now
    --take-snapshot records the greatest segment id the store held before the snapshot: every
    later one is in its window, whatever the clock said (the real clock moves here: the
    clockshift shim)."""
    def shifted(seconds):
        return dict(os.environ, LD_PRELOAD=preload('clockshift'), CASSBACKUP_TEST_CLOCK_SHIFT=str(seconds))
    d = str(tmp_path / 'commitlog')
    base = int(time.time() * 1000) - 10 * DAY  # the node's idBase: when it started
    s1 = write_segment(d, base + 1, seed=1)
    archive(store, s1, env=shifted(-2 * 3600))  # two hours before the snapshot
    dirs = sample_dirs(tiny(tmp_path, 'b1', 1))
    nodetool = os.path.join(os.path.dirname(__file__), 'standins', 'nodetool')
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(dirs), '--snapshot', 'cb-1', '--node', 'n1',
       '--take-snapshot', '--nodetool', nodetool, env=dict(os.environ, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs)))
    assert json.load(open(manifest_path(store, 'b1')))['commitlog_seen_id'] == base + 1
    s2 = write_segment(d, base + 2, seed=2)
    archive(store, s2, env=shifted(-40 * 60))   # the one written during the snapshot
    s3 = write_segment(d, base + 3, seed=3)
    archive(store, s3)
    want = sorted(os.path.basename(p) for p in (s2, s3))
    got = pitr_segments(store, tmp_path, 'b1', int(time.time() * 1000) + 2 * HOUR, 'pitr')
    assert sorted(got) == want
    p = cb('prune', '--store', store)
    assert stored(store)['n1'] == want  # s1 went into b1's sstables: no backup needs it
    # no pack was due: it said 'nothing to prune', not what it deleted
    assert 'no pack to prune' in p.stdout and 'deleted 1 commitlog segment no kept backup needs' in p.stdout
    # of a snapshot taken before create ran, segments archived in between may have lower ids
    # than the store holds when it runs: nothing is recorded, the window goes by times
    cb('create', '--store', store, '--name', 'b2', *data_dir_args(dirs), '--snapshot', 'nightly-1', '--node', 'n1')
    assert 'commitlog_seen_id' not in json.load(open(manifest_path(store, 'b2')))


def test_point_in_time_with_whole_node(store, tmp_path):
    """A node lost whole: --whole-node brings every keyspace back onto an empty data directory,
    then the segments since the backup are set up to replay."""
    out = make_sample(str(tmp_path / 'sample'), '--data-dirs', '1', '--keyspaces', '2', '--tables', '1',
                      '--sstables', '1', '--data-kib', '16', '--tag', 'day1', '--no-clutter')
    data = sample_dirs(out)[0]
    os.rename(os.path.join(data, sorted(os.listdir(data))[-1]), os.path.join(data, 'system_schema'))
    tokens = tmp_path / 'tokens'
    tokens.write_text('-9223372036854775808 0')
    cb('create', '--store', store, '--data-dir', data, '--snapshot', 'day1', '--include-system',
       '--node', 'n1', '--tokens', tokens, '--nodetool', '/nonexistent/nodetool')
    set_backup_time(store, 'day1', T0)
    d = str(tmp_path / 'commitlog')
    before = write_segment(d, T0 - HOUR, seed=1)
    after = write_segment(d, T0 + 2 * HOUR, seed=2)
    for seg, archived in ((before, T0 + HOUR), (after, T0 + 3 * HOUR)):
        archive(store, seg)
        set_archived(store, 'n1', os.path.basename(seg), archived)
    target = tmp_path / 'new' / 'data'
    target.mkdir(parents=True)
    conf = tmp_path / 'conf'
    conf.mkdir()
    env = dict(os.environ, NODETOOL_STANDIN_DOWN='1')
    r = cb('restore', '--store', store, '--data-dir', target, '--whole-node', '--owner', '4321:4321',
           '--nodetool', os.path.join(os.path.dirname(__file__), 'standins', 'nodetool'),
           '--point-in-time', gmt(T0 + HOUR // 2), '--cassandra-conf', conf, '--node', 'n1', env=env)
    assert 'backup day1 of node n1' in r.stdout and 'auto_bootstrap: false' in r.stdout
    assert 'system_schema' in os.listdir(target)
    props = java_properties((conf / 'commitlog_archiving.properties').read_text())
    assert props['restore_directories'] == str(tmp_path / 'new' / 'commitlog_restore')
    commitlog = tmp_path / 'new' / 'commitlog'
    commitlog.mkdir()
    cassandra_restores(props, str(commitlog))
    assert os.listdir(commitlog) == [os.path.basename(before)]
    assert read(commitlog / os.path.basename(before)) == read(before)


def test_point_in_time_keeps_segments_born_after_it(history, tmp_path):
    """A segment's file may be born after its first mutation (copied into the commitlog
    directory, a disk moved; Cassandra archives what it finds there at startup): its birth
    time is kept, but a segment is left out only by its id."""
    store, segs = history
    # archive-commitlog keeps the birth time where the file system has one
    seg = write_segment(str(tmp_path / 'n3'), T0, seed=3)
    st = os.stat(seg)
    archive(store, seg, node='n3')
    meta, _ = read_meta(object_path(store, 'n3', os.path.basename(seg)))
    assert meta['mtime_ms'] == st.st_mtime_ns // 10**6
    btime = subprocess.run(['stat', '-c', '%W', seg], capture_output=True, text=True).stdout.strip()
    if btime not in ('0', '-', '?', ''):
        assert meta['created_ms'] // 1000 == int(btime)
    # s6: an old id (the node started 10 days before), its file born at T0 + 3 h
    s6 = write_segment(str(tmp_path / 'commitlog'), T0 - 10 * DAY, seed=6)
    archive(store, s6)
    set_archived(store, 'n1', os.path.basename(s6), T0 + 4 * HOUR, created_ms=T0 + 3 * HOUR)
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()
    cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + HOUR + HOUR // 2),
       '--cassandra-conf', conf, '--node', 'n1', '--segments-dir', tmp_path / 'segs')
    names = {k: os.path.basename(v) for k, v in dict(segs, s6=s6).items()}
    # s6, archived in the window, has the oldest id: by ids every later segment was made after
    # it, so s1 is taken too (in vain: its writes are in b1's sstables; a replay skips nothing
    # it needs), as a segment archived by a clock set back would be
    assert sorted(os.listdir(tmp_path / 'segs')) == sorted(names[k] for k in ('s1', 's2', 's3', 's6'))


# --- retention -----------------------------------------------------------------------------------

def test_prune_keeps_the_segments_kept_backups_need(history, tmp_path):
    store, segs = history
    names = {k: os.path.basename(v) for k, v in segs.items()}
    r = cb('prune', '--store', store)
    # s1 ended before the oldest backup of n1; n2 has no backup: its segment stays
    assert stored(store) == {'n1': sorted(names[k] for k in ('s2', 's3', 's4', 's5')), 'n2': [names['n2']]}
    assert '1 commitlog segment' in r.stdout
    cb('forget', '--store', store, 'b1')
    p = cb('prune', '--store', store, '--dry-run')
    assert stored(store)['n1'] == sorted(names[k] for k in ('s2', 's3', 's4', 's5'))
    assert '2 commitlog segments' in p.stdout
    # an object whose metadata cannot be read is left alone, and counted
    garbage = object_path(store, 'n1', 'CommitLog-7-%d.log' % (T0 - 9 * HOUR))
    with open(garbage, 'wb') as f:
        f.write(b'not a segment')
    summary = json.loads(cb('prune', '--store', store, '--dry-run', '--json').stdout)
    assert summary['commitlog_segments'] == {'before': 5, 'due': 2, 'deleted': 0, 'unreadable': 1}
    cb('prune', '--store', store)
    # b2's window starts at its snapshot (T0 + 1 day): s4 reaches over it, s5 is after it
    assert stored(store) == {'n1': sorted([names['s4'], names['s5'], os.path.basename(garbage)[:-4]]),
                             'n2': [names['n2']]}
    # check names it (it passed), and a point-in-time restore will not go on without every
    # segment of the node
    p = cb('check', '--store', store, check=False)
    assert p.returncode == 1 and f'PROBLEM {os.path.relpath(garbage, store)}: not a stored commitlog segment' \
        in p.stdout, p.stdout
    live = live_dir(tmp_path, store, 'b2')
    conf = tmp_path / 'conf'
    conf.mkdir()
    p = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + DAY + 5 * HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', check=False)
    assert p.returncode == 1 and 'not a stored commitlog segment' in p.stderr, p.stderr
    assert os.listdir(conf) == []


def test_prune_keeps_the_segments_of_an_older_snapshot_backed_up_later(history, tmp_path):
    """b1's snapshot (T0) was backed up after b2's (T0 + 1 day), as a failed upload re-run the
    next day: prune took the backup made first, b2, as the node's oldest, and deleted the
    segments b1's point-in-time restore replays from its snapshot on, exit 0. The window
    starts at the earliest snapshot of the node's backups."""
    store, segs = history
    names = {k: os.path.basename(v) for k, v in segs.items()}
    path = manifest_path(store, 'b1')
    with open(path) as f:
        doc = json.load(f)
    doc['created_ns'] = (T0 + 2 * DAY) * 10**6  # made after b2; its files still of T0
    rewrite_manifest(path, doc)
    drop_catalog(store)
    r = cb('prune', '--store', store)
    assert stored(store) == {'n1': sorted(names[k] for k in ('s2', 's3', 's4', 's5')), 'n2': [names['n2']]}
    assert '1 commitlog segment' in r.stdout


def test_the_window_starts_at_the_first_tables_snapshot(store, tmp_path):
    """nodetool snapshot flushes one table after another: the first table's snapshot at T0 - 30
    min, the other's at T0, and a segment archived at T0 - 20 min holds writes to the first
    made after its flush. The window began at the backup's newest file (T0): prune deleted that
    segment although the node's only backup needs it, and a point-in-time restore left it out,
    both exit 0. It begins at the first table's snapshot, less the time a flush takes."""
    src = tiny(tmp_path, 'b1', 1)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1')
    set_backup_time(store, 'b1', T0)
    path = manifest_path(store, 'b1')
    doc = json.load(open(path))
    for f in doc['keyspaces'][0]['tables'][0]['files']:  # its snapshot's manifest.json too
        f['mtime_ns'] = (T0 - 30 * 60 * 1000) * 10**6
    rewrite_manifest(path, doc)
    drop_catalog(store)
    seg = write_segment(str(tmp_path / 'cl'), T0 - 2 * HOUR, seed=1)
    archive(store, seg)
    set_archived(store, 'n1', os.path.basename(seg), T0 - 20 * 60 * 1000)
    early = write_segment(str(tmp_path / 'cl'), T0 - 3 * HOUR, seed=2)  # before any flush: not
    archive(store, early)
    set_archived(store, 'n1', os.path.basename(early), T0 - 2 * HOUR)
    cb('prune', '--store', store)
    assert stored(store) == {'n1': [os.path.basename(seg)]}
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', '--dry-run')
    assert 'then 1 commitlog segment' in r.stdout, r.stdout


# --- copy: the segments go with the backups ---------------------------------------------------


def pitr_segments(store, tmp_path, backup, at, tag, extra=(), env=None, tables_of=None):
    """The names and bytes of the segments a point-in-time restore at `at` from store picks
    (a dry run would only name them: this one copies them). The live tables are made from
    the backup's manifest in tables_of (default: store; an encrypted one's is sealed)."""
    live = live_dir(tmp_path / tag, tables_of or store, backup)
    conf = tmp_path / tag / 'conf'
    conf.mkdir(parents=True)
    segdir = tmp_path / tag / 'segs'
    cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(at), '--cassandra-conf',
       str(conf), '--node', 'n1', '--segments-dir', str(segdir), *extra, env=env)
    return {n: read(segdir / n) for n in sorted(os.listdir(segdir))}


def object_mtimes(store):
    top = os.path.join(store, 'commitlogs')
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, fs in os.walk(top) for f in fs}


def test_copy_takes_the_segments_a_point_in_time_restore_needs(history, tmp_path):
    """copy sent the backups only: a point-in-time restore from the copied store replayed no
    segment and gave the tables as of the snapshot, exit 0."""
    store, segs = history
    name = {k: os.path.basename(v) for k, v in segs.items()}
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    r = cb('copy', '--from', store, '--to', dst, 'b2')
    # b2's window starts at its snapshot (T0 + 1 day) less the slack: s4 reaches over it, s5 after
    assert f'commitlog segments of node n1: sent 2 ' in r.stdout, r.stdout
    assert stored(dst) == {'n1': sorted([name['s4'], name['s5']])}
    at = T0 + DAY + 3 * HOUR + HOUR // 2
    want = pitr_segments(store, tmp_path, 'b2', at, 'src')
    assert want == {name[k]: read(segs[k]) for k in ('s4', 's5')}
    assert pitr_segments(dst, tmp_path, 'b2', at, 'dst') == want
    # each object is the source's, byte for byte (its metadata too)
    for k in ('s4', 's5'):
        assert read(object_path(dst, 'n1', name[k])) == read(object_path(store, 'n1', name[k]))
    # again: nothing sent, nothing rewritten
    before = object_mtimes(dst)
    r = cb('copy', '--from', store, '--to', dst, 'b2', '--json')
    doc = json.loads(r.stdout)
    assert [(c['node'], c['result'], c['segments_sent'], c['segments_present']) for c in doc['commitlogs']] == \
        [('n1', 'copied', 0, 2)]
    assert object_mtimes(dst) == before
    # an older backup: the segments from its window on, up to the newest (the target may lack
    # the next backup; s1 ended before b1's snapshot)
    r = cb('copy', '--from', store, '--to', dst, 'b1')
    assert 'commitlog segments of node n1: sent 2 ' in r.stdout and '2 (' in r.stdout, r.stdout
    assert stored(dst) == {'n1': sorted(name[k] for k in ('s2', 's3', 's4', 's5'))}
    at = T0 + HOUR + HOUR // 2
    assert pitr_segments(dst, tmp_path, 'b1', at, 'dst1') == pitr_segments(store, tmp_path, 'b1', at, 'src1')
    # --all: every segment of the store, of nodes without a backup too
    every = str(tmp_path / 'every')
    cb('init', '--store', every)
    cb('copy', '--from', store, '--to', every, '--all')
    assert stored(every) == stored(store)


def test_copy_without_segments_and_dry_run(history, tmp_path):
    store, segs = history
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    r = cb('copy', '--from', store, '--to', dst, 'b2', '--dry-run')
    assert 'commitlog segments of node n1: would send 2 ' in r.stdout, r.stdout
    assert stored(dst) == {}
    r = cb('copy', '--from', store, '--to', dst, 'b2', '--no-commitlogs')
    assert 'commitlog' not in r.stdout and stored(dst) == {}
    doc = json.loads(cb('copy', '--from', store, '--to', dst, '--all', '--no-commitlogs', '--json').stdout)
    assert doc['commitlogs'] == [] and stored(dst) == {}


def test_copy_never_replaces_a_segment_and_checks_each_one(history, tmp_path):
    """A target that holds other bytes under a segment's name keeps them (exit 1, one line
    naming it); a source segment whose bytes do not match its SHA-256 is not sent. Either
    fails that segment alone: the first failure stopped the others, which were not sent."""
    store, segs = history
    name = os.path.basename(segs['s4'])
    after = os.path.basename(segs['s5'])  # b2's other segment, after s4
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    other = write_segment(str(tmp_path / 'other'), T0 + 3 * HOUR, seed=42)  # s4's id, other bytes
    assert os.path.basename(other) == name and read(other) != read(segs['s4'])
    archive(dst, other)
    theirs = read(object_path(dst, 'n1', name))
    p = cb('copy', '--from', store, '--to', dst, 'b2', check=False)
    assert p.returncode == 1, p.stderr
    line = [x for x in p.stderr.splitlines() if 'commitlog' in x]
    assert len(line) == 1 and f'n1/{name}' in line[0] and 'other bytes' in line[0], p.stderr
    assert read(object_path(dst, 'n1', name)) == theirs
    assert read(object_path(dst, 'n1', after)) == read(object_path(store, 'n1', after))
    # the backup itself was copied (its own commit), and says so
    assert 'b2/n1: copied to' in p.stdout
    # a damaged source segment: its compressed body no longer gives its SHA-256
    dst2 = str(tmp_path / 'dst2')
    cb('init', '--store', dst2)
    path = object_path(store, 'n1', name)
    data = bytearray(read(path))
    data[-20] ^= 0x40
    with open(path, 'wb') as f:
        f.write(bytes(data))
    p = cb('copy', '--from', store, '--to', dst2, 'b2', check=False)
    assert p.returncode == 1 and f'n1/{name}: damaged' in p.stderr, p.stderr
    assert stored(dst2) == {'n1': [after]}


def test_check_reads_the_segments(history, tmp_path):
    """check did not look at commitlog segments: one whose bytes no longer gave its SHA-256, or
    whose metadata did not read, passed, and a point-in-time restore failed on the day it was
    needed. Their metadata is read by every check, their bytes by --read-data (and a subset)."""
    store, segs = history
    out = cb('check', '--store', store, '--read-data').stdout
    assert out.rstrip().endswith('6 commitlog segments checked; data of 2 packs and 6 segments read (' +
                                 out.rsplit('read (', 1)[1].split(')')[0] + '): no problems'), out
    s4, s5 = (os.path.basename(segs[k]) for k in ('s4', 's5'))
    path = object_path(store, 'n1', s4)
    data = bytearray(read(path))
    data[-20] ^= 0x40
    with open(path, 'wb') as f:
        f.write(bytes(data))
    cb('check', '--store', store)  # the metadata still reads
    p = cb('check', '--store', store, '--read-data', '--json', check=False)
    j = json.loads(p.stdout)
    assert p.returncode == 1 and len(j['problems']) == 1, j
    assert j['problems'][0].startswith(f'commitlogs/n1/{s4}.zst: ') and 'point-in-time' in j['problems'][0]
    assert j['summary']['commitlog_segments'] == 6 and j['summary']['commitlog_segments_read'] == 6
    # a subset reads some of them; every part of 1/3..3/3 reads each once
    read_in = [json.loads(cb('check', '--store', store, '--read-data-subset', f'{n}/3', '--json',
                             check=False).stdout)['summary']['commitlog_segments_read'] for n in (1, 2, 3)]
    assert sum(read_in) == 6, read_in
    # metadata that does not read: every check says so
    with open(object_path(store, 'n1', s5), 'wb') as f:
        f.write(b'not a segment object')
    p = cb('check', '--store', store, check=False)
    assert p.returncode == 1 and f'PROBLEM commitlogs/n1/{s5}.zst: ' in p.stdout, p.stdout


def test_damaged_segment_metadata_is_seen_and_the_segment_kept(history, tmp_path):
    """One bit flipped in a segment's metadata (a digit of its archive time) passed check
    --read-data, whose SHA-256 covers the segment's bytes only; a point-in-time restore then
    left the segment out and prune deleted it, each exit 0. The metadata's own SHA-256 follows
    it now (format 2): check names the damage, prune leaves the object alone and counts it.
    An object of format 1 (no checksum frame, as written before) reads as it did."""
    store, segs = history
    s2 = os.path.basename(segs['s2'])
    path = object_path(store, 'n1', s2)
    meta, rest = read_meta(path)
    assert meta['format'] == 2
    data = bytearray(read(path))
    at = data.index(b'"archived_ms":') + len('"archived_ms":') + 1
    data[at] ^= 0x01  # still a digit: the JSON reads, the time is another
    with open(path, 'wb') as f:
        f.write(bytes(data))
    p = cb('check', '--store', store, check=False)
    assert p.returncode == 1, p.stdout
    assert f'PROBLEM commitlogs/n1/{s2}.zst: damaged: its metadata does not match the checksum' in p.stdout, p.stdout
    summary = json.loads(cb('prune', '--store', store, '--dry-run', '--json').stdout)
    assert summary['commitlog_segments']['unreadable'] == 1, summary
    cb('prune', '--store', store)
    assert s2 in stored(store)['n1']
    # format 1: the same metadata without its checksum frame
    meta['format'] = 1
    with open(path, 'wb') as f:
        f.write(meta_frames(meta) + rest)
    cb('check', '--store', store, '--read-data')


def test_copy_of_an_incremental_takes_the_segments_since_its_full_backup(store, tmp_path):
    """An incremental's window starts at its full backup's. With the full backup in the older
    layout (backups/NAME.json, a store upgraded in place) and the incremental in the node
    layout, the full backup was not found: copy sent the segments from the incremental's own
    start, exit 0, and a point-in-time restore from the target missed those in between."""
    import test_incremental as ti
    node = ti.Node(tmp_path / 'node')
    node.full(store, 'full')
    for t in ti.TABLES:
        node.flush(t)
    set_backup_time(store, 'full', T0)
    path = manifest_path(store, 'full')  # the older layout
    os.rename(path, os.path.join(store, 'backups', 'full.json'))
    os.rmdir(os.path.dirname(path))
    drop_catalog(store)
    node.incremental(store, 'inc1')
    set_backup_time(store, 'inc1', T0 + DAY)
    d, segs = str(tmp_path / 'cl'), {}
    for key, seg_id, archived in (('between', T0 + 3 * HOUR, T0 + 10 * HOUR),
                                  ('after', T0 + 11 * HOUR, T0 + DAY + 2 * HOUR)):
        segs[key] = write_segment(d, seg_id, seed=len(segs))
        archive(store, segs[key])
        set_archived(store, 'n1', os.path.basename(segs[key]), archived)
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    r = cb('copy', '--from', store, '--to', dst, 'inc1')
    assert 'commitlog segments of node n1: sent 2 ' in r.stdout, r.stdout
    assert stored(dst) == {'n1': sorted(os.path.basename(p) for p in segs.values())}
    # the source's own point-in-time restore finds that full backup too
    live = tmp_path / 'live'
    for t in ti.TABLES:
        os.makedirs(live / ti.KS / (t + '-' + 'e' * 32))
    conf = tmp_path / 'conf'
    conf.mkdir()
    r = cb('restore', '--store', store, '--data-dir', str(live), '--point-in-time', gmt(T0 + DAY + 3 * HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', '--dry-run')
    assert 'backup inc1 of node n1' in r.stdout and 'then 2 commitlog segments' in r.stdout, r.stdout


def test_copy_into_an_encrypted_store_takes_the_segments(history, tmp_path):
    """Segments pass through the target's envelope: a point-in-time restore from the encrypted
    copy replays the same bytes."""
    store, segs = history
    key = str(tmp_path / 'k')
    dst = str(tmp_path / 'enc')
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', dst, '--encrypt', '--key-file', key, env=env)
    cb('copy', '--from', store, '--to', dst, '--to-key-file', key, 'b2', env=env)
    raw = read(object_path(dst, 'n1', os.path.basename(segs['s5'])))
    assert read(segs['s5'])[:64] not in raw
    at = T0 + DAY + 3 * HOUR + HOUR // 2
    assert pitr_segments(dst, tmp_path, 'b2', at, 'enc', extra=('--key-file', key), env=env,
                         tables_of=store) == \
        {os.path.basename(segs[k]): read(segs[k]) for k in ('s4', 's5')}


# --- object storage: atomic under faults -------------------------------------------------------



def s3_segment(loc, env, tmp_path, name, node='n1'):
    """The stored segment's plain bytes, read through a mount of the store (checked there
    against the SHA-256 its metadata names)."""
    mnt = str(tmp_path / f'mnt-{time.monotonic_ns()}')
    with mounted(loc, mnt, env=env) as m:
        return read(os.path.join(m.mnt, 'commitlogs', node, name))


def commitlog_keys(env):
    return [k for k in raw_keys(env) if '/commitlogs/' in k]


def test_s3_failed_upload_exits_nonzero_and_lists_nothing(s3, tmp_path):  # noqa: F811
    loc, env = s3
    seg = write_segment(str(tmp_path / 'commitlog'), T0, size=8 << 20)
    name = os.path.basename(seg)
    with S3Proxy(upstream_port(env), 'slowdown', every=1, match='PUT ') as px:
        p = archive(loc, seg, check=False, env=via(env, px))
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert 'cannot store commitlog segment ' + name in p.stderr and 'PUT' in p.stderr
    assert commitlog_keys(env) == []
    # the server cuts its answers to PUTs: the segment is stored whole or not at all
    with S3Proxy(upstream_port(env), 'reset', every=1, match='PUT ') as px:
        p = archive(loc, seg, check=False, env=via(env, px))
    if commitlog_keys(env):
        assert s3_segment(loc, env, tmp_path, name) == read(seg)
    else:
        assert p.returncode == 1
    # Cassandra tries again: stored (or already stored), the bytes whole
    p = archive(loc, seg, env=env)
    assert s3_segment(loc, env, tmp_path, name) == read(seg)
    assert commitlog_keys(env) == [f'stores/prod/commitlogs/n1/{name}.zst']


def test_s3_killed_mid_upload_leaves_nothing_or_all(s3, tmp_path):  # noqa: F811
    """kill -9 while the segment's PUT is in flight (the proxy holds it): the key has the whole
    segment or nothing; then the retry stores it."""
    loc, env = s3
    seg = write_segment(str(tmp_path / 'commitlog'), T0, size=8 << 20)
    name = os.path.basename(seg)
    with S3Proxy(upstream_port(env), 'stall', every=1, match='PUT ') as px:
        argv = [CASSBACKUP, 'archive-commitlog', '--store', loc, '--node', 'n1', seg, name]
        proc = subprocess.Popen(argv, env=via(env, px), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and px._seen == 0:  # the PUT reached the proxy
            time.sleep(0.005)
        proc.kill()
        proc.wait()
        if commitlog_keys(env):
            assert s3_segment(loc, env, tmp_path, name) == read(seg)
    archive(loc, seg, env=env)
    assert s3_segment(loc, env, tmp_path, name) == read(seg)
    assert commitlog_keys(env) == [f'stores/prod/commitlogs/n1/{name}.zst']


def one_run(store, tmp_path, archived, created_ms=0):
    """Backup b1 (snapshot at T0) and segments of one run of node n1 that started at T0 + 1 h:
    ids T0 + 1 h, + 1, + 2..., each archived at the time given, last written then."""
    src = tiny(tmp_path, 'b1', 1)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1')
    set_backup_time(store, 'b1', T0)
    names = []
    for i, at in enumerate(archived):
        seg = write_segment(str(tmp_path / 'cl'), T0 + HOUR + i, seed=i)
        archive(store, seg)
        set_archived(store, 'n1', os.path.basename(seg), at, created_ms=created_ms if i == 0 else 0,
                     mtime_ms=at)
        names.append(os.path.basename(seg))
    return names


def test_point_in_time_refuses_a_segment_missing_within_a_run(store, tmp_path):
    """A segment whose archive_command failed (Cassandra tries again only at its next start),
    or deleted, between two of one run: the restore copied the others, wrote the settings,
    exit 0, and Cassandra would replay the later segment over the hole. It is refused now, in
    one line naming it, with nothing written; a point before the hole needs none of it."""
    names = one_run(store, tmp_path, [T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR])
    os.unlink(object_path(store, 'n1', names[1]))
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()
    segs = tmp_path / 'segs'
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 5 * HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(segs), check=False)
    assert r.returncode == 1 and r.stderr.count('\n') == 1, r.stderr
    assert (f'commitlog segment {T0 + HOUR + 1} is missing from the store for node n1, between {names[0]} '
            f'and {names[2]} of one run of the node') in r.stderr, r.stderr
    assert 'nothing was written' in r.stderr
    assert os.listdir(conf) == [] and not os.path.exists(segs)
    assert all(os.listdir(os.path.join(live, ks, t)) == [] for ks in os.listdir(live)
               for t in os.listdir(os.path.join(live, ks)))
    # up to the last write of the one before the hole: the missing one's writes come after
    got = pitr_segments(store, tmp_path, 'b1', T0 + 2 * HOUR, 'before')
    assert names[0] in got
    # ids no segment was given (a restart with the clock stepped back skips one): on purpose
    got = pitr_segments(store, tmp_path, 'b1', T0 + 5 * HOUR, 'past', extra=('--ignore-segment-gaps',))
    assert sorted(got) == [names[0], names[2]]


def test_point_in_time_refuses_a_segment_missing_early_in_a_run(store, tmp_path):
    """The same hole a minute into a run, each segment's birth time kept: it was taken for a
    restart (a run's first segment made when its id says, give or take ten minutes) and
    replayed over. What tells a run's segments is their ids being before the last write of the
    one before."""
    start = T0 + HOUR
    names = []
    src = tiny(tmp_path, 'b1', 1)
    cb('create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--node', 'n1')
    set_backup_time(store, 'b1', T0)
    for i in range(4):  # a segment a minute
        seg = write_segment(str(tmp_path / 'cl'), start + i, seed=i)
        archive(store, seg)
        made = start + i * 60_000
        set_archived(store, 'n1', os.path.basename(seg), made + 5 * 60_000, created_ms=made,
                     mtime_ms=made + 60_000)
        names.append(os.path.basename(seg))
    os.unlink(object_path(store, 'n1', names[1]))
    live = live_dir(tmp_path, store, 'b1')
    conf = tmp_path / 'conf'
    conf.mkdir()
    r = cb('restore', '--store', store, '--data-dir', live, '--point-in-time', gmt(T0 + 5 * HOUR),
           '--cassandra-conf', str(conf), '--node', 'n1', '--segments-dir', str(tmp_path / 'segs'),
           check=False)
    assert r.returncode == 1 and f'commitlog segment {start + 1} is missing from the store' in r.stderr, r.stderr


def test_a_run_started_after_the_snapshot_is_replayed_whatever_its_archive_time(store, tmp_path):
    """The first segment of a run that started after the snapshot (its id is its start) was
    archived by a clock stepped back before the snapshot: the window, which went by archive
    times and by the least id archived since, left it out, and prune deleted it, exit 0. A
    segment made after the snapshot's start is in its window."""
    names = one_run(store, tmp_path, [T0 - 2 * HOUR, T0 + 3 * HOUR])
    got = pitr_segments(store, tmp_path, 'b1', T0 + 4 * HOUR, 'pitr')
    assert sorted(got) == sorted(names)
    cb('prune', '--store', store)
    assert stored(store)['n1'] == sorted(names)
