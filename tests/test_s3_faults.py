"""cassbackup against S3 servers that misbehave: tests/s3proxy.py sits between cassbackup and
moto_server / s3rver (the servers and the `s3` fixture come from test_s3.py) and answers 503
SlowDown, resets or truncates bodies, stalls, or sends a wrong Content-Range.

Under each fault a command either completes (the client retries) or fails with one line that
names the operation, the key and the status (never the secret key) and leaves nothing visible;
reads give the right bytes or an error, never wrong bytes. A fault on every request must end
the command (bounded retries), not hang it.

Every fault and server pair takes minutes (retries back off up to 5 s; stalls last 2 s), so by
default each test runs on one server, the faults spread over both, and 3 kills: the sample
tests/run.sh runs twice in CI. S3_FAULTS=all runs every pair.

kill -9 during create into S3 (test_kill_during_create; KILLS=N in the environment for more
than the default 3): no partial backup is listed, prune aborts the leftover multipart uploads
where the server lists them (moto does; s3rver has no ListMultipartUploads: it answers 404
NoSuchKey or similar, and its leftover parts are invisible to any client) and deletes the
unreferenced packs; check --read-data is clean and create runs again.
"""
import io
import json
import os
import random
import re
import signal
import subprocess
import tarfile
import time

import pytest

import awssig

from conftest import (BUILD, cb, data_dir_args, make_sample, mounted, read, sample_dirs, snapshot_tables,
                      wait_for)
from s3proxy import S3Proxy
from test_s3 import s3  # noqa: F401  (the fixture: an empty store on moto or s3rver)

CASSBACKUP = os.path.join(BUILD, 'tools', 'cassbackup')
FAULTS = ['slowdown', 'reset', 'truncate', 'stall', 'bad_range']


def upstream_port(env):
    return int(env['AWS_ENDPOINT_URL'].rsplit(':', 1)[1])


def via(env, px):
    """env with requests going through the proxy px."""
    return dict(env, AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}')


def server_of(request):
    return request.node.callspec.params['s3']


FULL = os.environ.get('S3_FAULTS') == 'all'


def sampled_out(request):
    """Why this test's server is not in the default sample (None when it runs): a fault runs on
    the server its place in FAULTS gives, a test without a fault on moto."""
    params = request.node.callspec.params
    fault = params.get('fault')
    server = 'moto' if fault is None else ('moto', 's3rver')[FAULTS.index(fault) % 2]
    if FULL or params['s3'] == server:
        return None
    return f'sampled out: runs on {server}; S3_FAULTS=all runs every fault on every server'


# Retries back off 0.2 s at most here, not 5 s: these tests exhaust retries again and again,
# and how long the client sleeps between attempts is no part of what they check.
FAST_RETRY = {'CASSBACKUP_RETRY_MAX_MS': '200'}


@pytest.fixture
def store_s3(s3, request):  # noqa: F811
    """(location, env) like s3 (moto's secret key is an IAM user's: random, recognisable in
    output; s3rver checks its own), retrying fast."""
    why = sampled_out(request)
    if why:
        pytest.skip(why)
    loc, env = s3
    return loc, dict(env, **FAST_RETRY)


def names(loc, env):
    return [b['name'] for b in json.loads(cb('list', '--store', loc, '--json', env=env).stdout)]


def raw_keys(env, bucket='cbtest', prefix='stores/prod/'):
    """Object keys as the server lists them (ListObjects v1 straight to the server)."""
    url = f"{env['AWS_ENDPOINT_URL']}/{bucket}?prefix={prefix}"
    body = awssig.env_get(env, url[len(env['AWS_ENDPOINT_URL']):])
    return re.findall(r'<Key>([^<]*)</Key>', body)


def sample(tmp_path, kib=4096, seed=1):
    src = make_sample(str(tmp_path / f'src{seed}'), '--data-kib', str(kib), '--data-dirs', '1',
                      '--keyspaces', '1', '--tables', '2', '--sstables', '1', '--seed', str(seed))
    return sample_dirs(src)


def create(loc, env, dirs, name='n1', check=True, timeout=600, extra=()):
    return cb('create', '--store', loc, '--name', name, *data_dir_args(dirs), '--snapshot',
              'nightly-1', *extra, env=env, check=check, timeout=timeout)


def assert_one_clean_line(p, env, op_words):
    """A failed command: non-zero exit, its error in one line naming the operation, a key and
    an HTTP status or connection failure, and never the secret key."""
    assert p.returncode != 0, p.stdout
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    line = lines[0]
    assert any(w in line for w in op_words), line
    assert re.search(r'(GET|PUT|POST|HEAD|DELETE) stores/prod/\S+', line), line
    assert re.search(r'HTTP \d{3}|reset|closed|Failure when receiving|transfer closed|'
                     r'Recv failure|partial file|Content-Range', line, re.I), line
    assert env['AWS_SECRET_ACCESS_KEY'] not in p.stderr + p.stdout


def faulted(px, fault):
    """True when px applied at least one fault of this kind (seen in its log)."""
    if fault == 'slowdown':
        return any(st == 503 for _, _, st, _ in px.log)
    return px.requests > 0


# --- create ----------------------------------------------------------------------------------

@pytest.mark.parametrize('fault', FAULTS)
def test_create_retries_through_every_other_fault(store_s3, tmp_path, fault):
    """Every second matching request fails: create completes and the backup verifies."""
    loc, env = store_s3
    dirs = sample(tmp_path)
    with S3Proxy(upstream_port(env), fault, every=2) as px:
        create(loc, via(env, px), dirs)
        assert names(loc, via(env, px)) == ['n1']
        assert faulted(px, fault)
    cb('verify', '--store', loc, 'n1', env=env)
    cb('check', '--store', loc, '--read-data', env=env)


@pytest.mark.parametrize('fault,pack_size', [('slowdown', None), ('reset', None), ('truncate', None),
                                             ('reset', '1M')])
def test_create_fails_cleanly_when_every_put_fails(store_s3, tmp_path, fault, pack_size):
    """Every PUT fails: create gives up after its retries with one line and no backup. With
    packs of 1 MiB, each pack is committed behind (on a thread of its own while the next is
    written): the first one's failure still ends create in one line naming its PUT."""
    loc, env = store_s3
    dirs = sample(tmp_path)
    extra = ('--pack-size', pack_size) if pack_size else ()
    with S3Proxy(upstream_port(env), fault, every=1, match='PUT ') as px:
        p = create(loc, via(env, px), dirs, check=False, extra=extra)
    assert_one_clean_line(p, env, ['PUT'])
    assert names(loc, env) == []
    assert not [k for k in raw_keys(env) if '/backups/' in k]
    cb('check', '--store', loc, env=env)
    create(loc, env, dirs)  # and the store takes the backup once the server behaves
    cb('verify', '--store', loc, 'n1', env=env)


def test_create_refused_a_multipart_upload_says_what_s3_said(store_s3, tmp_path):
    """A refused CreateMultipartUpload said "cannot write pack ...: Permission denied", no
    request, no HTTP status, no S3 code: the same words as a part's or a PUT's refusal now."""
    loc, env = store_s3
    src = make_sample(str(tmp_path / 'big'), '--data-kib', '32768', '--incompressible', '--data-dirs', '1',
                      '--keyspaces', '1', '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter')
    with S3Proxy(upstream_port(env), 'forbidden', every=1, match='uploads=') as px:
        p = create(loc, via(env, px), sample_dirs(src), check=False, extra=('--pack-size', '64M'))
    assert_one_clean_line(p, env, ['POST'])
    assert 'AccessDenied' in p.stderr and 'HTTP 403' in p.stderr, p.stderr
    assert names(loc, env) == []


def test_parts_in_flight_over_all_uploads_stay_within_s3_parallel(s3, tmp_path, request):  # noqa: F811
    """create commits a pack (its last parts) while it writes the next one, whose parts may go
    out meanwhile: over both uploads, no more parts are in flight than s3_parallel says
    (every part held by the proxy; Data.db files larger than the pack size, so consecutive
    packs are multipart uploads). On s3rver: moto refuses parts under 5 MiB."""
    if server_of(request) != 's3rver':
        pytest.skip('s3rver only: moto refuses parts under 5 MiB (EntityTooSmall)')
    loc, env = s3
    env = dict(env, **FAST_RETRY)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '3072', '--data-dirs', '1', '--keyspaces', '1',
                      '--no-index', '--tables', '1', '--sstables', '4', '--incompressible', '--seed', '7')
    conf = tmp_path / 'cassbackup.conf'
    conf.write_text('s3_parallel = 2\n')
    env = dict(env, CASSBACKUP_S3_PART_SIZE='1M', CASSBACKUP_S3_MIN_PART_SIZE='1M')
    with S3Proxy(upstream_port(env), 'stall', every=1, match='partNumber=') as px:
        create(loc, via(env, px), sample_dirs(src), extra=('--pack-size', '2M', '--config', str(conf)))
    assert 1 <= px.parts_most <= 2, px.parts_most
    cb('verify', '--store', loc, 'n1', env=env)


# --- reads -----------------------------------------------------------------------------------

def export_members(loc, env, tmp_path, check=True):
    out = str(tmp_path / f'export-{time.monotonic_ns()}.tar')
    p = cb('export', '--store', loc, '--output', out, 'n1', env=env, check=check)
    if p.returncode != 0:
        return p, None
    with tarfile.open(out) as t:
        return p, {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def expected_files(dirs):
    return {(ks, table, rel): read(path)
            for (ks, table), files in snapshot_tables(dirs, 'nightly-1').items()
            for rel, path in files.items()}


def assert_export_matches(members, dirs):
    want = expected_files(dirs)
    got = {}
    for name, data in members.items():
        for (ks, table, rel) in want:
            if re.search(rf'(^|/){ks}/{table}(-[0-9a-f]+)?/{re.escape(rel)}$', name):
                got[(ks, table, rel)] = data
    assert got.keys() == want.keys(), sorted(members)
    for k in want:
        assert got[k] == want[k], k


@pytest.mark.parametrize('fault', FAULTS)
def test_reads_right_bytes_or_error(store_s3, tmp_path, fault):
    """verify, export (the restore read path) and the mount read the right bytes while every
    second GET is faulted; with every GET faulted they fail cleanly or (stall) succeed."""
    loc, env = store_s3
    dirs = sample(tmp_path)
    create(loc, env, dirs)
    with S3Proxy(upstream_port(env), fault, every=2, match='GET ') as px:
        penv = via(env, px)
        cb('verify', '--store', loc, 'n1', env=penv)
        _, members = export_members(loc, penv, tmp_path)
        assert_export_matches(members, dirs)
        with mounted(loc, str(tmp_path / 'mnt'), env=penv) as m:
            for (ks, table, rel), data in expected_files(dirs).items():
                assert read(m.path('n1', ks, table, rel)) == data
        if fault == 'stall':
            return  # a stall on every request only slows things down
        px.set_fault(fault, every=1, match='GET ')
        p, members = export_members(loc, penv, tmp_path, check=False)
        assert members is None, 'export succeeded with every GET failing'
        # one line naming the pack or the object that failed; a pack that cannot be fetched is
        # not called corrupt (packread.c said 'pack data is corrupt' for any -EIO)
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, p.stderr
        assert 'corrupt' not in lines[0], p.stderr
        assert re.search(r'packs/\w\w/\w+\.tar\.zst|GET stores/prod/\S+: ', lines[0]), p.stderr
        assert env['AWS_SECRET_ACCESS_KEY'] not in p.stderr + p.stdout
        v = cb('verify', '--store', loc, 'n1', env=penv, check=False)
        assert v.returncode != 0
        assert env['AWS_SECRET_ACCESS_KEY'] not in v.stderr + v.stdout


def test_mount_reads_eio_never_wrong_bytes(store_s3, tmp_path):
    """A mount whose ranged GETs all get a wrong Content-Range: EIO, never other bytes."""
    loc, env = store_s3
    dirs = sample(tmp_path)
    create(loc, env, dirs)
    with S3Proxy(upstream_port(env)) as px:
        with mounted(loc, str(tmp_path / 'mnt'), env=via(env, px),
                     expect_errors=('cannot read backups/n1/',)) as m:
            px.set_fault('bad_range', every=1)
            files = sorted(expected_files(dirs).items(), key=lambda kv: -len(kv[1]))
            for (ks, table, rel), data in files[:4]:  # the biggest: each failure costs retries
                try:
                    got = read(m.path('n1', ks, table, rel))
                except OSError as e:
                    assert e.errno == 5, e
                else:
                    assert got == data
            px.set_fault(None)
            # a fetch that failed is said as such, not taken for corrupt data
            assert 'cannot read the pack from the store' in m.log() and 'corrupt' not in m.log(), m.log()


@pytest.mark.parametrize('how', ['dribble', 'dribble_inflated'])
def test_a_dribbling_answer_is_given_up_on_not_waited_for(store_s3, tmp_path, how):
    """A server that sends a pack's frames at 160 bytes a second (above curl's floor of one
    byte a second) held export, restore and the mount's readers for hours: only a transfer
    that stopped was given up on. A request now moves 16 KiB a second on average after its
    first 30 s, or is retried (raised and shortened here, so that it fails in a second),
    whatever length the answer claims: the read fails in one line, and reads again once the
    server answers at its speed. The same for a manifest read anew."""
    loc, env = store_s3
    dirs = sample(tmp_path, kib=1024)
    create(loc, env, dirs)
    slow = {'CASSBACKUP_TEST_STALL_SECONDS': '1', 'CASSBACKUP_TEST_MIN_BYTES_PER_SECOND': str(1 << 16)}
    with S3Proxy(upstream_port(env), how, every=1, match='GET /cbtest/stores/prod/packs/') as px:
        penv = via(env, px)
        out = str(tmp_path / 'n1.tar')
        # a hang guard, not a measure: a dribbled 1 MiB sample takes about two hours to arrive
        p = cb('export', '--store', loc, '--output', out, 'n1', env=dict(penv, **slow), check=False,
               timeout=300)
        assert p.returncode == 1, p.stdout + p.stderr
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and 'too slow' in lines[0], p.stderr
        assert not os.path.exists(out)
        assert any(st == 206 for _, t, st, _ in px.log if '/packs/' in t)
        px.set_fault(None)
        _, members = export_members(loc, penv, tmp_path)
        assert_export_matches(members, dirs)
        px.set_fault(how, every=1, match='GET /cbtest/stores/prod/backups/')
        fresh = dict(penv, CASSBACKUP_CACHE_DIR=str(tmp_path / 'fresh-cache'), **slow)
        p = cb('list', '--store', loc, env=fresh, check=False, timeout=300)
        assert 'too slow' in p.stderr, p.stdout + p.stderr


def test_a_mount_read_the_store_failed_fails_once_not_twice(store_s3, tmp_path):
    """A read through the mount whose frames the server dribbles failed after every attempt at
    them twice over: the kernel reads the page again as soon as its read-ahead of it failed,
    and the mount fetched the frames again through all of the store's retries (a dribbling
    server held one read about 6 minutes before EIO). A fetch that just failed is now the
    answer to that second read: one round of attempts, and once the server answers again a
    moment later the same bytes read whole. The mount's line says why the store failed."""
    loc, env = store_s3
    dirs = sample(tmp_path, kib=1024)
    create(loc, env, dirs)
    slow = {'CASSBACKUP_TEST_STALL_SECONDS': '1', 'CASSBACKUP_TEST_MIN_BYTES_PER_SECOND': str(1 << 16)}
    (ks, table, rel), data = max(expected_files(dirs).items(), key=lambda kv: len(kv[1]))
    with S3Proxy(upstream_port(env)) as px:
        with mounted(loc, str(tmp_path / 'mnt'), env=dict(via(env, px), **slow),
                     expect_errors=('too slow', 'cannot read the pack')) as m:
            fd = os.open(m.path('n1', ks, table, rel), os.O_RDONLY)
            try:
                px.set_fault('dribble', every=1, match='GET /cbtest/stores/prod/packs/')
                before = len(px.received)
                with pytest.raises(OSError) as e:
                    os.pread(fd, 4096, 0)
                assert e.value.errno == 5
                px.set_fault(None)
                ranges = [h.get('range') for _, t, h in px.received[before:] if '/packs/' in t]
                # one read's attempts: the first and CB_RETRIES_DEFAULT (5) more, of one range
                assert len(set(ranges)) == 1 and 1 <= len(ranges) <= 6, ranges
                # the line says what the store did, not only that the pack could not be read
                assert re.search(r'cannot read the pack from the store \(GET stores/prod/packs/'
                                 r'\S+: too slow', m.log()), m.log()
                wait_for(lambda: readable(fd, len(data)) == data, 'the file read again')
            finally:
                os.close(fd)


def test_a_pack_the_store_cannot_open_is_not_called_corrupt(store_s3, tmp_path):
    """S3 answering 503 to a pack's HEAD (after the retries) made verify call every file's
    pack "corrupt (checksum mismatch, or fails authentication)": opening a pack kept the
    store's -EIO as the pack's own. It is the store failing, said with S3's words."""
    loc, env = store_s3
    dirs = sample(tmp_path, kib=64)
    create(loc, env, dirs)
    with S3Proxy(upstream_port(env)) as px:
        penv = dict(via(env, px), CASSBACKUP_CACHE_DIR=str(tmp_path / 'other-host'))
        cb('list', '--store', loc, env=penv)  # this host's catalog knows the pack
        px.set_fault('slowdown', every=1, match='HEAD /cbtest/stores/prod/packs/')
        p = cb('verify', '--store', loc, 'n1', env=penv, check=False)
        out = p.stdout + p.stderr
        assert p.returncode == 1 and 'corrupt' not in out, out
        assert 'cannot read the pack from the store (HEAD stores/prod/packs/' in out, out
        # a host whose catalog could not read the pack at all: not "STORE/: pack file is missing"
        p = cb('verify', '--store', loc, 'n1', env=dict(penv, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cold')),
               check=False)
        out = p.stdout + p.stderr
        assert p.returncode == 1 and 'pack file is missing' not in out, out
        assert 'its bytes are in no pack the catalog knows: 1 pack of the store could not be read' in out, out
    cb('verify', '--store', loc, 'n1', env=env)


def readable(fd, size):
    """The first size bytes at fd, or None while reading them fails."""
    try:
        return os.pread(fd, size, 0)
    except OSError:
        return None


def test_a_complete_multipart_upload_s3_takes_a_while_over_is_waited_for(store_s3, tmp_path):
    """S3 answers a CompleteMultipartUpload of a big object after as long as it takes, sending a
    space now and then: the floor of 16 KiB/s once cut it short (its body of a few hundred bytes
    took seconds), and every retry with it, so a create of a big pack failed."""
    loc, env = store_s3
    dirs = sample(tmp_path, kib=12288)
    slow = dict(env, CASSBACKUP_TEST_STALL_SECONDS='1', CASSBACKUP_TEST_MIN_BYTES_PER_SECOND=str(1 << 16),
                CASSBACKUP_S3_PART_SIZE='5M')
    with S3Proxy(upstream_port(env), 'keepalive', every=1, match='POST /cbtest/stores/prod/packs/') as px:
        create(loc, via(slow, px), dirs)
        assert sum(1 for m, t, _, _ in px.log if m == 'POST' and 'uploadId=' in t) >= 1, px.log
    _, members = export_members(loc, env, tmp_path)
    assert_export_matches(members, dirs)


# --- kill -9 during create -------------------------------------------------------------------

def count_requests_of_create(loc, env, dirs, tmp_path):
    """How many requests a whole create makes (into a throwaway store next to loc)."""
    other = loc + '-count'
    cb('init', '--store', other, env=env)
    with S3Proxy(upstream_port(env)) as px:
        create(other, via(env, px), dirs, name='count')
        return px.requests


def test_kill_during_create(store_s3, tmp_path, request):
    """kill -9 at random points of a create whose pack is a multipart upload of 3+ parts."""
    loc, env = store_s3
    dirs = sample(tmp_path, kib=20480)  # 40 MiB of incompressible-enough data: several parts
    total = count_requests_of_create(loc, env, dirs, tmp_path)
    rng = random.Random(int(os.environ.get('SEED', '8')))
    kills = int(os.environ.get('KILLS', '3'))
    with S3Proxy(upstream_port(env)) as px:
        penv = via(env, px)
        for i in range(kills):
            at = px.requests + rng.randint(1, max(1, total - 1))
            proc = subprocess.Popen([CASSBACKUP, 'create', '--store', loc, '--name', f'k{i}',
                                     *data_dir_args(dirs), '--snapshot', 'nightly-1'],
                                    env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            while proc.poll() is None and px.requests < at:
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            listed = names(loc, env)
            assert all(n == f'k{j}' for j, n in enumerate(listed)) or set(listed) <= {f'k{j}' for j in range(i + 1)}
            for n in listed:  # a create that finished before the kill is whole
                cb('verify', '--store', loc, n, env=env)
    p = cb('prune', '--store', loc, '--json', env=env)
    summary = json.loads(p.stdout)
    if server_of(request) == 'moto':
        uploads = awssig.env_get(env, '/cbtest?uploads')
        assert '<Upload>' not in uploads, uploads
    cb('check', '--store', loc, '--read-data', env=env)
    # only packs some listed backup uses are left
    live = set(names(loc, env))
    create(loc, env, dirs, name='after')
    cb('verify', '--store', loc, 'after', env=env)
    assert set(names(loc, env)) == live | {'after'}
    assert summary is not None


def test_copy_waiting_on_a_prune_reads_the_packs_after_it(store_s3, tmp_path, request):
    """Host B's copy opens the target while host A's prune holds the lock and is about to
    delete a pack B would deduplicate against; B waits for the lock, then must see that the
    pack went (it used to commit a backup naming blobs of the deleted pack). create refuses a
    locked store at once, and takes the same care after its lock."""
    if server_of(request) != 'moto':
        pytest.skip('moto only: the raw listing below needs a server that does not check signatures')
    loc, env_a = store_s3
    env_b = dict(env_a, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache-b'))
    dirs = sample(tmp_path, kib=1024)
    create(loc, env_a, dirs, name='old')
    local = str(tmp_path / 'local')
    cb('init', '--store', local)
    create(local, os.environ, dirs, name='new')
    cb('list', '--store', loc, env=env_b)  # B's catalog cache knows old's pack
    cb('forget', '--store', loc, 'old', env=env_a)
    with S3Proxy(upstream_port(env_a), 'stall', every=1, match='POST ') as px:  # deletes wait 2 s
        prune = subprocess.Popen([CASSBACKUP, 'prune', '--store', loc], env=via(env_a, px),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not [k for k in raw_keys(env_a) if '/locks/' in k]:
            assert prune.poll() is None and time.monotonic() < deadline, prune.communicate()
            time.sleep(0.02)
        b = cb('copy', '--from', local, '--to', loc, 'new', env=env_b, check=False)
        assert prune.wait(timeout=120) == 0, prune.communicate()
    assert b.returncode == 0, b.stderr
    cb('check', '--store', loc, '--read-data', env=env_a)
    cb('verify', '--store', loc, 'new', env=env_a)


def test_copy_refused_a_write_with_a_404_fails_not_missing(store_s3, tmp_path):
    """A 404 NoSuchKey answering copy's pack or manifest write ended it with exit 3, "no such
    store or backup", as if the backup were not in the source: a failure of the write, exit
    1, its line naming the request."""
    loc, env = store_s3
    local = str(tmp_path / 'local')
    cb('init', '--store', local)
    src = make_sample(str(tmp_path / 'big'), '--data-kib', '12288', '--incompressible', '--data-dirs', '1',
                      '--keyspaces', '1', '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter')
    create(local, os.environ, sample_dirs(src), name='b')
    parts = dict(env, CASSBACKUP_S3_PART_SIZE='5M')  # the pack goes up in parts
    with S3Proxy(upstream_port(env), 'notfound', every=1, match='uploads') as px:
        p = cb('copy', '--from', local, '--to', loc, 'b', env=via(parts, px), check=False)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert 'NoSuchKey' in p.stderr and 'no such backup' not in p.stderr, p.stderr
    assert names(loc, env) == []


# --- prune plans only from a complete reading of backups/ -------------------------------------

def test_an_empty_answer_to_a_listing_is_no_empty_store(s3, tmp_path, request):  # noqa: F811
    """A gateway that answers every listing of backups/ with an empty 200: a v1 listing read it
    as "no objects", so prune deleted every pack as used by no backup, exit 0, reindex found
    0 backups and list printed nothing, exit 0. An answer without a ListBucketResult is now
    an error: each stops, naming the listing, and nothing is deleted."""
    if server_of(request) != 'moto' and not FULL:
        pytest.skip('sampled out: runs on moto; S3_FAULTS=all runs every server')
    loc, env = s3[0], dict(s3[1], **FAST_RETRY)
    create(loc, env, sample(tmp_path, seed=1), name='keep')
    before = sorted(k for k in raw_keys(env) if '/packs/' in k)
    env = dict(env, CASSBACKUP_CACHE_DIR=str(tmp_path / 'other-cache'))
    with S3Proxy(upstream_port(env), 'empty', 1, match='prefix=stores%2Fprod%2Fbackups%2F') as px:
        for args in (['prune', '--max-unused', '0'], ['reindex'], ['list']):
            p = cb(*args, '--store', loc, env=via(env, px), check=False)
            assert p.returncode == 1, (args, p.stdout, p.stderr)
            lines = [line for line in p.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and 'no ListBucketResult' in lines[0], (args, p.stderr)
    assert sorted(k for k in raw_keys(env) if '/packs/' in k) == before
    cb('verify', '--store', loc, 'keep', env=env)


@pytest.mark.parametrize('fault', ['notfound', 'forbidden', 'empty', 'reset'])
def test_prune_stops_on_a_manifest_it_cannot_read(s3, tmp_path, request, fault):  # noqa: F811
    """One failed GET of a live backup's manifest while prune reads the store (a 404, a 403, an
    empty 200 once; resets past the retries): prune stops with one line naming it, and deletes
    nothing. Before, in 3 of 3 stores it went on without that backup and deleted its data."""
    if server_of(request) != 'moto' and not FULL:
        pytest.skip('sampled out: runs on moto; S3_FAULTS=all runs every server')
    loc, env = s3[0], dict(s3[1], **FAST_RETRY)
    keep, gone = sample(tmp_path, seed=1), sample(tmp_path, seed=2)
    create(loc, env, keep, name='keep')
    create(loc, env, gone, name='gone')
    cb('forget', '--store', loc, 'gone', env=env)
    before = sorted(k for k in raw_keys(env) if '/packs/' in k)
    env = dict(env, CASSBACKUP_CACHE_DIR=str(tmp_path / 'prune-cache'))  # prune reads every manifest
    every = 1 if fault == 'reset' else 1000  # past the retries, or once
    # the manifest of node backup keep: backups/keep/NODE.json
    with S3Proxy(upstream_port(env), fault, every, match='GET /cbtest/stores/prod/backups/keep/') as px:
        p = cb('prune', '--store', loc, '--max-unused', '0', env=via(env, px), check=False)
        assert any('/backups/keep/' in t and t.endswith('.json') for _, t, _, _ in px.log)
    assert p.returncode != 0, p.stdout
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and 'backups/keep/' in lines[0], p.stderr
    assert sorted(k for k in raw_keys(env) if '/packs/' in k) == before
    cb('check', '--store', loc, '--read-data', env=env)
    cb('verify', '--store', loc, 'keep', env=env)
    done = cb('prune', '--store', loc, '--max-unused', '0', env=env)  # without the fault: it prunes
    assert len([k for k in raw_keys(env) if '/packs/' in k]) < len(before), done.stdout
    cb('verify', '--store', loc, 'keep', env=env)


@pytest.mark.parametrize('fault', ['empty', 'notfound'])
def test_prune_never_takes_a_live_lock_it_could_not_read_for_gone(s3, tmp_path, request, fault):  # noqa: F811
    """A create has uploaded its pack and is about to write its manifest, its lock live. Prune
    read that lock once as an empty 200 (a cache's, a gateway's) and took it for garbage, or
    as a 404 and took it for released: it took the store and deleted the create's pack, which
    then committed, exit 0, a backup with no data. A lock the listing showed and a read does
    not give stops prune now, one line naming it."""
    if server_of(request) != 'moto' and not FULL:
        pytest.skip('sampled out: runs on moto; S3_FAULTS=all runs every server')
    loc, env = s3[0], dict(s3[1], **FAST_RETRY)
    create(loc, env, sample(tmp_path, seed=1), name='keep')
    with S3Proxy(upstream_port(env)) as held, S3Proxy(upstream_port(env)) as faulty:
        held.set_fault('hold', 1, 'PUT /cbtest/stores/prod/backups/')
        c = subprocess.Popen(
            [CASSBACKUP, 'create', '--store', loc, '--name', 'new', *data_dir_args(sample(tmp_path, seed=5)),
             '--snapshot', 'nightly-1'], env=dict(via(env, held), CASSBACKUP_CACHE_DIR=str(tmp_path / 'c')),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert held.holding.wait(120), 'the create never reached its manifest'
            packs = sorted(k for k in raw_keys(env) if '/packs/' in k)
            faulty.set_fault(fault, 1000, 'GET /cbtest/stores/prod/locks/')
            p = cb('prune', '--store', loc, '--max-unused', '0', '--lock-wait', '2', check=False,
                   env=dict(via(env, faulty), CASSBACKUP_CACHE_DIR=str(tmp_path / 'p')))
        finally:
            held.release()
            out, err = c.communicate(timeout=300)
    assert p.returncode == 1, p.stdout
    [line] = p.stderr.splitlines()
    assert 'locks/' in line and ('read as none' in line or 'not found when read' in line), line
    assert sorted(k for k in raw_keys(env) if '/packs/' in k) == packs
    assert c.returncode == 0, err
    cb('verify', '--store', loc, 'new', env=env)


def test_a_prune_delete_without_an_answer_keeps_the_lock(s3, tmp_path, request):  # noqa: F811
    """A DeleteObjects that timed out may still land. Prune released its lock at once; a create
    on another node then found the pack it was about to delete still listed, named it, and
    committed; the delete landed: a backup with no data. The lock stays now until it lapses,
    so the create waits (and gives up at --lock-wait), as after a manifest write with no
    answer."""
    if server_of(request) != 'moto' and not FULL:
        pytest.skip('sampled out: runs on moto; S3_FAULTS=all runs every server')
    loc, env = s3[0], dict(s3[1], **FAST_RETRY)
    gone = sample(tmp_path, seed=2)
    create(loc, env, sample(tmp_path, seed=1), name='keep')
    create(loc, env, gone, name='gone')
    cb('forget', '--store', loc, 'gone', env=env)
    with S3Proxy(upstream_port(env), 'reset', 1, match='?delete') as px:
        p = cb('prune', '--store', loc, '--max-unused', '0', env=via(env, px), check=False)
    assert p.returncode == 1 and 'the lock is left in place until it lapses' in p.stderr, p.stderr
    again = create(loc, env, gone, name='again', check=False, extra=('--lock-wait', '1'))
    assert again.returncode != 0 and 'locked by prune' in again.stderr, again.stderr
    assert 'again' not in names(loc, env)


def test_a_delete_request_answered_404_names_its_object(s3, tmp_path, request):  # noqa: F811
    """A DeleteObjects answered 404 as a whole (a gateway's) was taken as a 404 for every key:
    each counted as deleted and prune said only "No such file or directory"."""
    if server_of(request) != 'moto' and not FULL:
        pytest.skip('sampled out: runs on moto; S3_FAULTS=all runs every server')
    loc, env = s3[0], dict(s3[1], **FAST_RETRY)
    create(loc, env, sample(tmp_path, seed=1), name='keep')
    create(loc, env, sample(tmp_path, seed=2), name='gone')
    cb('forget', '--store', loc, 'gone', env=env)
    with S3Proxy(upstream_port(env), 'notfound', 1, match='?delete') as px:
        p = cb('prune', '--store', loc, '--max-unused', '0', env=via(env, px), check=False)
    assert p.returncode == 1
    [line] = p.stderr.splitlines()
    assert 'cannot delete s3://cbtest/stores/prod/packs/' in line and 'HTTP 404' in line, line


@pytest.mark.parametrize('what,fault', [('backups/', 'notfound'), ('backups/', 'empty'), ('packs/', 'notfound')])
def test_reindex_never_commits_a_catalog_without_what_it_could_not_read(s3, tmp_path, request, fault, what):  # noqa: F811
    """One failed GET of a manifest (404, empty 200) while reindex rebuilt the catalog left the
    live backup out of it, exit 0 ("written while the catalog was rebuilt"), and a running
    mount then lost it; one of a pack's index left every file of the backup unreadable. A
    rebuild now reads such an object once more; one that still does not read fails it, the
    catalog as it was, in one line naming it."""
    if server_of(request) != 'moto' and not FULL:
        pytest.skip('sampled out: runs on moto; S3_FAULTS=all runs every server')
    loc, env = s3[0], dict(s3[1], **FAST_RETRY, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    create(loc, env, sample(tmp_path, kib=64, seed=2), name='b1')
    before = names(loc, env)
    for every, ok in ((1000, True), (1, False)):  # the first request failing, then every one
        with S3Proxy(upstream_port(env), fault, every=every, match=f'GET /cbtest/stores/prod/{what}') as px:
            p = cb('reindex', '--store', loc, env=via(env, px), check=False)
        if ok:
            assert p.returncode == 0 and p.stdout.startswith(f'reindexed {loc}: 1 backup, 1 pack\n'), p.stdout + p.stderr
            assert 'written while the catalog was rebuilt' not in p.stdout
        else:
            assert p.returncode == 1 and p.stderr.count('\n') == 1, p.stderr
            assert f'stores/prod/{what}' in p.stderr or f'{what}' in p.stderr, p.stderr
            assert 'the catalog was left as it was' in p.stderr, p.stderr
        assert names(loc, env) == before
        assert cb('check', '--store', loc, env=env).stdout.rstrip().endswith('no problems')
