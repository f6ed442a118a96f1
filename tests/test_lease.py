"""Store locks are leases (catalog/lock.h), with real processes on real stores.

A create, copy or prune whose lease lapsed (stopped with SIGSTOP past the stale period, as a
suspended VM would be) commits nothing: it stops before its manifest or its next delete with
one line, and exits non-zero. A lock is stale only by the store's clock (file times here), so
a prune on a host whose clock runs ahead (an LD_PRELOAD shim) leaves a live lock alone. A
create waits, bounded by --lock-wait, for a prune's exclusive lock, saying for whom. unlock and
check judge locks by the same rule.

Short lease periods come from the environment (for tests only): every process working on a
store then uses the same ones.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time

from conftest import (manifest_path, node_files_off, preload, BUILD, CASSBACKUP, cb, data_dir_args, make_sample, sample_dirs,
                      stop_while_writing)
from s3proxy import S3Proxy
from test_s3 import moto

# Renewed every second, stale after 15 s by the store's clock (lapsed, for its holder, after
# 15 s less a fifth): short enough for a test to wait out, long enough that a healthy holder
# whose renewals are held up by other work on a busy machine (this file runs beside others)
# does not lapse.
STALE_SECONDS = 15
LEASE = dict(os.environ, CASSBACKUP_LOCK_REFRESH_SECONDS='1',
             CASSBACKUP_LOCK_STALE_SECONDS=str(STALE_SECONDS))
LOCK_WAIT = '120'  # what a prune waits for a stopped holder's lock to go stale: a bound only
SHIM = os.path.join(BUILD, 'tests', 'libclockshift.so')


# a host whose clock runs 31 minutes ahead: for cassbackup, and for any other program
AHEAD = dict(os.environ, LD_PRELOAD=preload('clockshift'), CASSBACKUP_TEST_CLOCK_SHIFT=str(31 * 60))
AHEAD_PLAIN = dict(os.environ, LD_PRELOAD=SHIM, CASSBACKUP_TEST_CLOCK_SHIFT=str(31 * 60))


def pack_files(store):
    return sorted(os.path.relpath(os.path.join(r, n), store)
                  for r, _, ns in os.walk(os.path.join(store, 'packs')) for n in ns)


def backup_names(store):
    return [b['name'] for b in json.loads(cb('list', '--store', store, '--json').stdout)]


def day1_and_big_day2(tmp_path, store, big_kib=32768):
    """day1: one table, two small sstables, backed up and then forgotten, so its pack is one
    no backup uses. The snapshot nightly-2 holds day1's sstables and two big incompressible
    new ones: a create of it deduplicates against day1's pack and writes for a while.
    Returns the data dirs and day1's pack."""
    src = make_sample(str(tmp_path / 'src'), '--data-kib', '256', '--no-clutter', '--keyspaces',
                      '1', '--tables', '1', '--no-index')
    dirs = sample_dirs(src)
    cb('create', '--store', store, '--name', 'day1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    packs = pack_files(store)  # a local store's
    assert len(packs) == (0 if '://' in store else 1)
    p1 = packs[0] if packs else None
    make_sample(src, '--data-kib', str(big_kib), '--incompressible', '--no-clutter', '--keyspaces',
                '1', '--tables', '1', '--no-index', '--grow-percent', '100', '--tag', 'nightly-2',
                '--seed', '2')
    cb('forget', '--store', store, 'day1')
    return dirs, p1


def day1_forgotten_day2_sharing_a_big_file(tmp_path, store, kib=65536):
    """day1: one table with a big incompressible sstable (generation 2) and a small one
    (generation 1); day2: generation 2 and a new small one. day1 forgotten: its pack holds
    generation 1 unused and generation 2 used, so a prune with --max-unused 0 repacks it, copying
    64 MiB (kib) for a while. Returns the data dirs and day1's pack (None in object storage)."""
    src = make_sample(str(tmp_path / 'src'), '--data-kib', str(kib), '--incompressible',
                      '--no-clutter', '--keyspaces', '1', '--tables', '1', '--no-index')
    dirs = sample_dirs(src)
    cb('create', '--store', store, '--name', 'day1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    packs = pack_files(store)  # a local store's
    assert len(packs) == (0 if '://' in store else 1)
    p1 = packs[0] if packs else None
    make_sample(src, '--data-kib', '64', '--no-clutter', '--keyspaces', '1', '--tables', '1',
                '--no-index', '--grow-percent', '50', '--tag', 'nightly-2', '--seed', '2')
    for d in dirs:
        for root, _, names in os.walk(d):
            if root.endswith(os.path.join('snapshots', 'nightly-2')):
                for n in names:
                    if n.startswith('nb-1-'):
                        os.unlink(os.path.join(root, n))
                m = os.path.join(root, 'manifest.json')
                if os.path.exists(m):
                    doc = json.load(open(m))
                    doc['files'] = [f for f in doc['files'] if not f.startswith('nb-1-')]
                    os.unlink(m)
                    json.dump(doc, open(m, 'w'))
    cb('create', '--store', store, '--name', 'day2', *data_dir_args(dirs), '--snapshot', 'nightly-2')
    cb('forget', '--store', store, 'day1')
    return dirs, p1


def stopped_while_writing(argv, store, env):
    """argv stopped while it writes a pack (conftest.stop_while_writing), or a failure."""
    c = stop_while_writing(argv, store, env)
    assert c, f'{argv[1]} ended before it was stopped writing'
    return c


def resumed(c):
    c.send_signal(signal.SIGCONT)
    out, err = c.communicate(timeout=300)
    return c.returncode, out, err


def the_lapsed_line(err, store):
    lines = [ln for ln in err.splitlines() if 'lapsed' in ln]
    assert len(lines) == 1, err
    assert f'the lock of {store} lapsed (' in lines[0] and 'so nothing is committed' in lines[0], err
    return lines[0]


def test_create_paused_past_its_lease_commits_nothing(store, tmp_path):
    dirs, p1 = day1_and_big_day2(tmp_path, store)
    c = stopped_while_writing([CASSBACKUP, 'create', '--store', store, '--name', 'day2',
                               *data_dir_args(dirs), '--snapshot', 'nightly-2'], store, LEASE)
    try:
        # the prune waits while the create's lease is fresh, then (the store has not seen it
        # renewed for the stale period) takes the store and deletes day1's pack, which the
        # create counts on
        p = cb('prune', '--store', store, '--json', '--lock-wait', LOCK_WAIT, env=LEASE, check=False)
        assert p.returncode == 0, p.stderr
        assert f'is locked by create (pid {c.pid} on ' in p.stderr
        res = json.loads(p.stdout)
        assert [(a['pack'], a['action'], a['done']) for a in res['actions']] == [(p1, 'delete', True)]
        assert p1 not in pack_files(store)
    finally:
        rc, out, err = resumed(c)
    # continued, the create finds its lease lapsed and stops before its manifest
    assert rc == 1, err
    line = the_lapsed_line(err, store)
    assert 'not renewed for ' in line and 'the process was paused or the store was unreachable' in line
    assert not os.path.exists(manifest_path(store, 'day2'))
    assert backup_names(store) == []
    p = cb('check', '--store', store, '--read-data', '--json', check=False)
    assert p.returncode == 0, p.stdout
    # the pack it wrote is one no manifest names: the next prune removes it
    [orphan] = pack_files(store)
    res = json.loads(cb('prune', '--store', store, '--json').stdout)
    assert [a['pack'] for a in res['actions']] == [orphan] and pack_files(store) == []


def stopped_at_state_t(c):
    """Waits until process c is stopped (it stopped itself), or fails when it ended."""
    while c.poll() is None:
        with open(f'/proc/{c.pid}/stat') as f:
            if f.read().rsplit(')', 1)[1].split()[0] == 'T':
                return c
        time.sleep(0.01)
    out, err = c.communicate()
    raise AssertionError(f'it ended ({c.returncode}) before it stopped: {err}')


def day2_stopped_at_its_manifest(tmp_path, store, when):
    """day1_and_big_day2's create of day2 (short leases), stopped by the killat shim just
    before ('1') or after ('after') its manifest lands. Returns day1's pack and the process."""
    dirs, p1 = day1_and_big_day2(tmp_path, store, big_kib=64)
    env = dict(LEASE, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST=when)
    return p1, stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, *node_files_off(['create', '--store', store, '--name', 'day2',
                                      *data_dir_args(dirs), '--snapshot', 'nightly-2'])],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))


def test_a_lease_that_lapses_while_the_manifest_is_written_withdraws_it(store, tmp_path):
    """The lease was checked before the manifest's write and never after: a create paused
    between the two (here stopped just before its manifest lands: the shim), or whose write
    took minutes, committed a backup whose packs a prune had deleted meanwhile, and exited 0.
    Now the lease is checked again once the manifest is written; lapsed, the manifest is
    withdrawn and nothing is committed."""
    p1, c = day2_stopped_at_its_manifest(tmp_path, store, '1')
    try:
        # the manifest is not there yet: the prune (once the create's lock is stale) deletes
        # day1's pack, which the create counts on (and the create's own, named by nothing)
        assert not os.path.exists(manifest_path(store, 'day2'))
        p = cb('prune', '--store', store, '--json', '--lock-wait', LOCK_WAIT, env=LEASE, check=False)
        assert p.returncode == 0, p.stderr
        assert (p1, True) in [(a['pack'], a['done']) for a in json.loads(p.stdout)['actions']], p.stdout
        assert p1 not in pack_files(store)
    finally:
        rc, out, err = resumed(c)
    assert rc == 1, (out, err)
    line = the_lapsed_line(err, store)
    assert 'written meanwhile, was withdrawn' in line, line
    assert not os.path.exists(manifest_path(store, 'day2'))
    assert backup_names(store) == []
    p = cb('check', '--store', store, '--json', check=False)
    assert p.returncode == 0, p.stdout


def test_a_withdrawal_leaves_a_manifest_that_is_no_longer_ours(store, tmp_path):
    """Paused just after its manifest landed, past its lease: meanwhile that backup was
    forgotten and another made under its name (here: the file replaced). The withdrawal
    deleted whatever was there; it deletes only its own manifest."""
    _, c = day2_stopped_at_its_manifest(tmp_path, store, 'after')
    try:
        man = manifest_path(store, 'day2')
        assert os.path.exists(man)
        while json.loads(cb('check', '--store', store, '--json', env=LEASE,
                            check=False).stdout)['summary']['stale_locks'] == 0:
            time.sleep(0.2)  # the stopped create's lock: stale by the store's clock, in 15 s
        theirs = open(man).read().replace('"day2"', '"day2"', 1) + ' '
        os.chmod(man, 0o600)
        with open(man, 'w') as f:
            f.write(theirs)
    finally:
        rc, out, err = resumed(c)
    assert rc == 1, (out, err)
    assert 'is gone or was replaced since' in err, err
    assert open(man).read() == theirs


def test_create_paused_past_its_lease_in_object_storage_says_so(tmp_path, monkeypatch):
    """In object storage the prune that took the store aborts the paused create's multipart
    upload, and the create, continued, failed on its next part with the server's answer to a
    part of an aborted upload (moto: HTTP 500), not a word of its lease. Held by a proxy at its
    second part, then stopped past the stale period."""
    with moto(tmp_path) as (port, key, secret):
        for k, v in dict(LEASE, AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', AWS_ACCESS_KEY_ID=key,
                         AWS_SECRET_ACCESS_KEY=secret, AWS_REGION='us-east-1',
                         CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache')).items():
            monkeypatch.setenv(k, v)
        store = 's3://cbtest/stores/lease'
        cb('init', '--store', store)
        dirs, _ = day1_and_big_day2(tmp_path, store, big_kib=24576)
        with S3Proxy(port, 'hold', match='partNumber=2&') as px:
            c = subprocess.Popen([CASSBACKUP, *node_files_off(['create', '--store', store, '--name', 'day2',
                                                                *data_dir_args(dirs), '--snapshot', 'nightly-2',
                                                                '--pack-size', '64M'])],
                                 env=dict(os.environ, AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}',
                                          CASSBACKUP_S3_PART_SIZE='5M'),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            try:
                while not px.holding.wait(0.1):
                    assert c.poll() is None, c.communicate()
                c.send_signal(signal.SIGSTOP)
                p = cb('prune', '--store', store, '--json', '--lock-wait', LOCK_WAIT, check=False)
                assert p.returncode == 0, p.stderr
                assert json.loads(p.stdout)['upload_leftovers_removed'] >= 1, p.stdout  # the create's upload
            finally:
                px.release()
                rc, out, err = resumed(c)
    assert rc == 1, (out, err)
    line = the_lapsed_line(err, 's3://cbtest/stores/lease')
    assert 'then: cannot write pack' in line, line


def test_a_manifest_put_that_got_no_answer_keeps_prune_out_until_its_lock_lapses(tmp_path):
    """Host B's create of a backup that shares every blob with host A's got no answer to its
    manifest PUTs (held on the way: a gateway, a partition), gave up and released its lock, exit
    1; A forgot its own backup and pruned the pack; then the held PUT landed, and the store
    listed a backup of B naming a deleted pack. B's lock now stays until it lapses by the
    store's clock, so A's prune waits, and B's late manifest finds its pack there."""
    with moto(tmp_path) as (port, key, secret):
        base = dict(LEASE, AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', AWS_ACCESS_KEY_ID=key,
                    AWS_SECRET_ACCESS_KEY=secret, AWS_REGION='us-east-1', CASSBACKUP_RETRY_MAX_MS='200')
        a = dict(base, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache-a'))
        store = 's3://cbtest/stores/pending'
        cb('init', '--store', store, env=a)
        src = make_sample(str(tmp_path / 'src'), '--data-kib', '256', '--no-clutter', '--keyspaces', '1',
                          '--tables', '1', '--no-index')
        args = [*data_dir_args(sample_dirs(src)), '--snapshot', 'nightly-1']
        cb('create', '--store', store, '--name', 'A', *args, env=a)
        with S3Proxy(port, 'hold', match='PUT /cbtest/stores/pending/backups/B/') as px:
            b = dict(base, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache-b'), CASSBACKUP_TEST_STALL_SECONDS='1',
                     AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}')
            p = cb('create', '--store', store, '--name', 'B', *args, env=b, check=False)
            assert p.returncode == 1 and 'the lock is left in place until it lapses' in p.stderr, p.stderr
            assert px.holding.is_set()
            held = cb('unlock', '--store', store, env=a).stdout
            assert 'shared lock of create' in held and 'a write of its failed without an answer' in held, held
            cb('forget', '--store', store, 'A', env=a)
            p = cb('prune', '--store', store, '--lock-wait', '0', env=a, check=False)
            assert p.returncode != 0 and 'a write of its failed without an answer' in p.stderr, p.stderr
            px.release()
            deadline = time.monotonic() + 60
            while 'B' not in [x['name'] for x in json.loads(cb('list', '--store', store, '--json', env=a).stdout)]:
                assert time.monotonic() < deadline, 'the held manifest PUT never landed'
                time.sleep(0.2)
        cb('verify', '--store', store, 'B', env=a)
        # once the lock lapsed by the store's clock, prune goes on, and keeps what B names
        p = cb('prune', '--store', store, '--lock-wait', LOCK_WAIT, env=a)
        cb('verify', '--store', store, 'B', env=a)
        cb('check', '--store', store, '--read-data', env=a)


def s3_keys(port, key, secret, prefix):
    """The keys of bucket cbtest under prefix, as the server lists them (signed)."""
    import awssig
    body = awssig.request('GET', f'http://127.0.0.1:{port}/cbtest?list-type=2&prefix={prefix}', key,
                          secret).read().decode()
    return re.findall(r'<Key>([^<]+)</Key>', body)


def test_a_renewal_in_flight_does_not_bring_back_a_lock_unlock_removed(tmp_path):
    """Object storage: a create's lease renewal (a HEAD, then the PUT) was on its way while
    'unlock --all' removed its lock and a prune deleted its packs; the PUT brought the lock back
    unseen, and the create committed a backup whose packs were gone, exit 0. The PUT now goes
    with If-Match on the ETag the HEAD gave: the lock stays gone, and the create commits
    nothing."""
    with moto(tmp_path) as (port, key, secret):
        base = dict(os.environ, AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', AWS_ACCESS_KEY_ID=key,
                    AWS_SECRET_ACCESS_KEY=secret, AWS_REGION='us-east-1',
                    CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'), CASSBACKUP_LOCK_REFRESH_SECONDS='1',
                    CASSBACKUP_LOCK_STALE_SECONDS='120')
        store = 's3://cbtest/stores/renewal'
        cb('init', '--store', store, env=base)
        src = make_sample(str(tmp_path / 'src'), '--data-kib', '2500', '--incompressible', '--no-clutter',
                          '--keyspaces', '1', '--tables', '4', '--no-index')
        with S3Proxy(port) as px:
            c = subprocess.Popen(
                [CASSBACKUP, *node_files_off(['create', '--store', store, '--name', 'b1',
                                              *data_dir_args(sample_dirs(src)), '--snapshot', 'nightly-1',
                                              '--threads', '1', '--pack-size', '2M', '--limit-upload', '2M'])],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=dict(base, AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}'))
            try:
                # once a pack is committed, hold the create's next PUT of its lock: a renewal
                while c.poll() is None and not [k for k in s3_keys(port, key, secret, 'stores/renewal/packs/')]:
                    time.sleep(0.1)
                px.set_fault('hold', match='PUT /cbtest/stores/renewal/locks/')
                while c.poll() is None and not px.holding.wait(0.1):
                    pass
                assert c.poll() is None, 'the create ended before a renewal of its lock'
                assert 'removed live shared lock of create' in cb('unlock', '--store', store, '--all', env=base).stdout
                assert 'delete packs/' in cb('prune', '--store', store, env=base).stdout
                px.set_fault(None)
                px.release()
                out, err = c.communicate(timeout=300)
            finally:
                if c.poll() is None:
                    c.kill()
                    c.communicate()
        assert c.returncode == 1 and 'was removed by another process' in err, err
        assert s3_keys(port, key, secret, 'stores/renewal/locks/') == []
        assert json.loads(cb('list', '--store', store, '--json', env=base).stdout) == []
        cb('check', '--store', store, '--read-data', env=base)


def test_prune_with_its_clock_ahead_leaves_a_live_lock_alone(store, tmp_path):
    assert os.path.exists(SHIM), f'{SHIM} is not built'
    shifted = int(subprocess.run(['date', '+%s'], env=AHEAD_PLAIN, capture_output=True, text=True,
                                 check=True).stdout)
    assert shifted >= time.time() + 30 * 60  # the shim works
    dirs, p1 = day1_and_big_day2(tmp_path, store)
    # a create with the default lease (30 minutes), stopped for a moment: its lease is fresh
    c = stopped_while_writing([CASSBACKUP, 'create', '--store', store, '--name', 'day2',
                               *data_dir_args(dirs), '--snapshot', 'nightly-2'], store, None)
    try:
        # its lock document says it was renewed 31 minutes ago by this prune's clock; the
        # store saw it written a moment ago
        p = cb('prune', '--store', store, '--lock-wait', '1', env=AHEAD, check=False)
        assert p.returncode == 1, p.stdout + p.stderr
        assert f'is locked by create (pid {c.pid} on ' in p.stderr.splitlines()[-1]
        assert p1 in pack_files(store)
        # nor does unlock or check, with the same clock, take it for stale
        u = cb('unlock', '--store', store, env=AHEAD)
        assert 'removed 0 stale locks; 1 held' in u.stdout and 'shared lock of create' in u.stdout
    finally:
        rc, out, err = resumed(c)
    assert rc == 0, err
    assert backup_names(store) == ['day2']
    cb('check', '--store', store, '--read-data')
    cb('verify', '--store', store, 'day2')
    # the prune then runs, its clock still ahead, and keeps the pack day2 uses
    res = json.loads(cb('prune', '--store', store, '--json', env=AHEAD).stdout)
    assert res['actions'] == [] and p1 in pack_files(store)


def test_copy_paused_past_its_lease_commits_nothing(tmp_path, binaries):
    src, dst = str(tmp_path / 'src-store'), str(tmp_path / 'dst-store')
    cb('init', '--store', src)
    cb('init', '--store', dst)
    data = make_sample(str(tmp_path / 'data'), '--data-kib', '32768', '--incompressible',
                       '--no-clutter', '--keyspaces', '1', '--tables', '1', '--no-index')
    cb('create', '--store', src, '--name', 'big', *data_dir_args(sample_dirs(data)),
       '--snapshot', 'nightly-1')
    # something for the prune to delete at the target, so that it waits for the store (with
    # nothing due it tries the exclusive lock once, for its leftovers' sweep, and goes)
    small = make_sample(str(tmp_path / 'small'), '--data-kib', '16', '--no-clutter', '--keyspaces', '1',
                        '--tables', '1', '--no-index', '--seed', '5')
    cb('create', '--store', dst, '--name', 'gone', *data_dir_args(sample_dirs(small)), '--snapshot', 'nightly-1')
    cb('forget', '--store', dst, 'gone')
    c = stopped_while_writing([CASSBACKUP, 'copy', '--from', src, '--to', dst, 'big'], dst, LEASE)
    try:
        p = cb('prune', '--store', dst, '--lock-wait', LOCK_WAIT, env=LEASE, check=False)
        assert p.returncode == 0, p.stderr
        assert f'is locked by copy (pid {c.pid} on ' in p.stderr
    finally:
        rc, out, err = resumed(c)
    assert rc == 1, err
    the_lapsed_line(err, dst)
    assert not os.path.exists(manifest_path(dst, 'big'))
    assert backup_names(dst) == []
    cb('check', '--store', dst, '--read-data')


def test_prune_paused_past_its_lease_deletes_nothing_more(store, tmp_path):
    """A prune stopped while it repacks; meanwhile unlock takes its lock for stale (by the
    store's clock) and removes it. Continued, the prune stops before it deletes the pack it
    copied from."""
    dirs, p1 = day1_forgotten_day2_sharing_a_big_file(tmp_path, store)
    before = pack_files(store)
    p = stopped_while_writing([CASSBACKUP, 'prune', '--store', store, '--max-unused', '0'], store, LEASE)
    try:
        deadline = time.monotonic() + int(LOCK_WAIT)
        while True:  # the store has not seen the prune's lock renewed for the stale period
            u = cb('unlock', '--store', store, env=LEASE)
            if 'removed 1 stale lock' in u.stdout:
                break
            assert 'held   shared lock of prune' in u.stdout  # it repacks beside creates
            assert time.monotonic() < deadline, 'the stopped prune\'s lock never went stale'
            time.sleep(0.5)
    finally:
        rc, out, err = resumed(p)
    assert rc == 1, err
    the_lapsed_line(err, store)
    assert p1 in pack_files(store) and set(before) <= set(pack_files(store))
    cb('check', '--store', store, '--read-data')
    cb('verify', '--store', store, 'day2')
    res = json.loads(cb('prune', '--store', store, '--json', '--max-unused', '0').stdout)
    assert p1 not in pack_files(store) and any(a['pack'] == p1 and a['done'] for a in res['actions'])
    cb('verify', '--store', store, 'day2')


def test_a_create_runs_while_prune_repacks(store, tmp_path):
    """issue 13: prune holds the exclusive lock only to delete. Stopped while it copies blobs
    into a new pack, it holds a shared lock: a create with --lock-wait 0 goes through (before,
    it failed: the store was locked by prune, exclusive), and so does a restore's read; a
    second prune backs off, naming the first. Continued, the prune deletes day1's pack under
    the exclusive lock, and every backup, the new one too, reads back whole."""
    dirs, p1 = day1_forgotten_day2_sharing_a_big_file(tmp_path, store)
    other = make_sample(str(tmp_path / 'other'), '--data-kib', '256', '--no-clutter', '--keyspaces',
                        '1', '--tables', '1', '--no-index', '--seed', '9')
    p = stopped_while_writing([CASSBACKUP, 'prune', '--store', store, '--json', '--max-unused', '0'],
                              store, None)
    try:
        c = cb('create', '--store', store, '--name', 'day3', '--node', 'other',
               *data_dir_args(sample_dirs(other)), '--snapshot', 'nightly-1', '--lock-wait', '0',
               check=False)
        assert c.returncode == 0, c.stderr
        second = cb('prune', '--store', store, '--lock-wait', '0', check=False)
        assert second.returncode == 1
        assert f'is locked by prune (pid {p.pid} on ' in second.stderr and 'shared' in second.stderr
    finally:
        rc, out, err = resumed(p)
    assert rc == 0, err
    res = json.loads(out)
    [a] = res['actions']
    assert (a['pack'], a['action']) == (p1, 'repack')
    # day3 may have deduplicated a small file (a TOC.txt) against a blob of day1's pack that
    # the plan took for unused: then the pack stays, judged again under the exclusive lock
    assert a['done'] != a['in_use_again'] and (p1 in pack_files(store)) == a['in_use_again']
    assert sorted(backup_names(store)) == ['day2', 'day3']
    cb('verify', '--store', store, '--all')
    cb('check', '--store', store, '--read-data')
    cb('prune', '--store', store, '--max-unused', '0')
    assert p1 not in pack_files(store)
    cb('verify', '--store', store, '--all')


def test_a_backup_made_during_prune_keeps_a_pack_planned_to_go(store, tmp_path):
    """A prune plans day1's pack as unused (day1 forgotten), then repacks another pack for a
    while; meanwhile a create backs up day1's snapshot again, deduplicating against that pack.
    Judged again under the exclusive lock, the pack stays: the new backup reads from it."""
    dirs, p1 = day1_forgotten_day2_sharing_a_big_file(tmp_path, store)
    small = make_sample(str(tmp_path / 'small'), '--data-kib', '256', '--no-clutter', '--keyspaces',
                        '1', '--tables', '1', '--no-index', '--seed', '5')
    before = set(pack_files(store))
    cb('create', '--store', store, '--name', 'small', '--node', 'small',
       *data_dir_args(sample_dirs(small)), '--snapshot', 'nightly-1')
    [ps] = sorted(set(pack_files(store)) - before)
    cb('forget', '--store', store, 'small')  # its pack: due to be deleted
    p = stopped_while_writing([CASSBACKUP, 'prune', '--store', store, '--json', '--max-unused', '0'],
                              store, None)
    try:
        again = cb('create', '--store', store, '--name', 'small-again', '--node', 'small',
                   *data_dir_args(sample_dirs(small)), '--snapshot', 'nightly-1', '--json',
                   '--lock-wait', '0')
        assert json.loads(again.stdout)['new_bytes'] == 0  # all of it deduplicated
    finally:
        rc, out, err = resumed(p)
    assert rc == 0, err
    res = json.loads(out)
    acts = {a['pack']: (a['action'], a['done'], a['in_use_again']) for a in res['actions']}
    assert acts[ps] == ('delete', False, True), acts
    assert ps in pack_files(store)
    cb('verify', '--store', store, '--all')
    cb('check', '--store', store, '--read-data')
    p = cb('prune', '--store', store, '--max-unused', '0')
    assert ps in pack_files(store)  # small-again uses all of it
    assert p1 not in pack_files(store)
    cb('verify', '--store', store, '--all')


def write_lock(store, name, doc, ago=None):
    locks = os.path.join(store, 'locks')
    os.makedirs(locks, exist_ok=True)
    path = os.path.join(locks, name + '.json')
    with open(path, 'w') as f:
        json.dump(doc, f)
    if ago is not None:
        t = time.time() - ago
        os.utime(path, (t, t))
    return path


def test_create_waits_for_a_prune_saying_for_whom(store, tmp_path):
    src = make_sample(str(tmp_path / 'src'), '--data-kib', '64', '--no-clutter', '--keyspaces', '1',
                      '--tables', '1', '--no-index')
    host = socket.gethostname()
    # a live prune's exclusive lock (this process stands for the prune)
    lock = write_lock(store, 'prune', {'host': host, 'command': 'prune', 'pid': os.getpid(),
                                       'exclusive': True, 'time_ns': time.time_ns(), 'renewals': 3})
    argv = ['create', '--store', store, '--name', 'n1', *data_dir_args(sample_dirs(src)),
            '--snapshot', 'nightly-1']
    t0 = time.monotonic()
    p = cb(*argv, '--lock-wait', '2', check=False)
    assert p.returncode == 1 and time.monotonic() - t0 >= 2
    first, last = p.stderr.splitlines()
    assert first == (f'cassbackup: store {store} is locked by prune (pid {os.getpid()} on {host}, exclusive); '
                     'waiting up to 2 s for it to go')
    assert f'store {store} is locked by prune (pid {os.getpid()} on {host})' in last
    assert backup_names(store) == []
    # by default it waits (10 minutes at most), and goes on once the prune is done
    c = subprocess.Popen([CASSBACKUP, *node_files_off(argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = c.stderr.readline()
        assert 'is locked by prune (pid' in line and 'waiting up to 600 s for it to go' in line
        os.unlink(lock)
        out, err = c.communicate(timeout=60)
    finally:
        if c.poll() is None:
            c.kill()
            c.wait()
    assert c.returncode == 0, err
    assert backup_names(store) == ['n1']
    assert '--lock-wait SECONDS' in cb('help', 'create').stdout


def test_a_prune_with_nothing_to_delete_does_not_wait_for_a_create(store, tmp_path):
    """The backup job's prune after a forget that kept every backup waited its 60 s for the
    exclusive lock that another node's running create held, and failed: the job exited 1 for a
    backup it had made. With nothing due it tries the lock once, for its sweep of upload
    leftovers only, and says it left that for the next prune; with something due it waits."""
    big = make_sample(str(tmp_path / 'big'), '--data-kib', '32768', '--incompressible', '--no-clutter',
                      '--keyspaces', '1', '--tables', '1', '--no-index')
    c = stopped_while_writing([CASSBACKUP, 'create', '--store', store, '--name', 'other-node',
                               *data_dir_args(sample_dirs(big)), '--snapshot', 'nightly-1'], store, None)
    try:
        p = cb('prune', '--store', store, check=False)  # the default wait: 60 s
        assert p.returncode == 0, p.stdout + p.stderr
        assert f'upload leftovers not looked for: the store is in use by create (pid {c.pid} on ' in p.stdout
        # a backup made and forgotten beside it: its pack is due, and the prune waits
        small = make_sample(str(tmp_path / 'small'), '--data-kib', '16', '--no-clutter', '--keyspaces', '1',
                            '--tables', '1', '--no-index', '--seed', '5')
        cb('create', '--store', store, '--name', 'gone', *data_dir_args(sample_dirs(small)), '--snapshot',
           'nightly-1')
        gone = pack_files(store)
        cb('forget', '--store', store, 'gone')
        p = cb('prune', '--store', store, '--lock-wait', '1', check=False)
        assert p.returncode == 1 and f'is locked by create (pid {c.pid} on ' in p.stderr
        assert pack_files(store) == gone
    finally:
        rc, out, err = resumed(c)
    assert rc == 0, err
    assert backup_names(store) == ['other-node']
    cb('check', '--store', store, '--read-data')


def test_a_prune_if_idle_skips_wherever_the_store_is_in_use(store, tmp_path):
    """prune --if-idle (the backup job's) still failed in two ways, exit 1: another prune held
    the store (the jobs of two nodes finishing together), or a create started after its first
    look and held the store when it came to delete (it waited 60 s). Each is a skip now, exit
    0; what it did stays, and the next prune deletes what is due."""
    dirs, p1 = day1_forgotten_day2_sharing_a_big_file(tmp_path, store, kib=16384)
    small = make_sample(str(tmp_path / 'small'), '--data-kib', '16', '--no-clutter', '--keyspaces', '1',
                        '--tables', '1', '--no-index', '--seed', '5')
    first = stopped_while_writing([CASSBACKUP, 'prune', '--store', store, '--max-unused', '0', '--if-idle'],
                                  store, None)
    c = None
    try:  # the first, repacking: another node's job prunes meanwhile
        p = cb('prune', '--store', store, '--if-idle')
        assert f'not pruned (--if-idle): the store is in use by prune (pid {first.pid} on ' in p.stdout, p
        # its JSON: what it did not look at is unknown (it said 0 packs and 0 bytes before)
        j = json.loads(cb('prune', '--store', store, '--if-idle', '--json').stdout)
        assert j['not_pruned_store_in_use_by'].startswith(f'prune (pid {first.pid} on ')
        assert j['packs'] == dict(before=None, deleted=0, repacked=0, written=0, after=None, unreadable=None,
                                  in_use_again=0)
        assert j['bytes']['before'] is None and j['bytes']['kept'] is None and j['bytes']['freed'] == 0
        assert j['commitlog_segments'] == dict(before=None, due=None, deleted=0, unreadable=None)
        # a create starts now and holds the store when the first comes to delete
        c = stopped_at_state_t(subprocess.Popen(
            [CASSBACKUP, *node_files_off(['create', '--store', store, '--name', 'other',
                                          *data_dir_args(sample_dirs(small)), '--snapshot', 'nightly-1'])],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST='1')))
        rc, out, err = resumed(first)
        first = None
        assert rc == 0, err
        assert 'stopped (--if-idle) after deleting 0 packs and writing 1: the store is in use by create (pid ' \
            in out and 'nothing to prune' not in out, out
        assert p1 in pack_files(store)  # repacked, and left for a prune when the store is idle
    finally:
        for proc in (first, c):
            if proc:
                rc, out, err = resumed(proc)
    assert rc == 0, err
    assert sorted(backup_names(store)) == ['day2', 'other']
    cb('prune', '--store', store, '--if-idle')  # idle now: it deletes what was repacked
    assert p1 not in pack_files(store)
    cb('check', '--store', store, '--read-data')


def test_two_prunes_if_idle_that_start_together_leave_one_to_prune(store, tmp_path):
    """The jobs of two nodes that finish together: each prune wrote its lock, saw the other's
    and stopped, so neither pruned. The one whose lock key sorts first now lets go and tries
    again, while the other backs off at once; a prune that stays in the way still ends it. The
    other prune is a planted lock document of a live process (this one)."""
    small = make_sample(str(tmp_path / 'small'), '--data-kib', '16', '--no-clutter', '--keyspaces', '1',
                        '--tables', '1', '--no-index')
    host = socket.gethostname()
    doc = {'host': host, 'command': 'prune', 'pid': os.getpid(), 'exclusive': False, 'time_ns': time.time_ns(),
           'renewals': 0}
    said = f'not pruned (--if-idle): the store is in use by prune (pid {os.getpid()} on {host}, shared)'

    def made_and_forgotten(name):
        cb('create', '--store', store, '--name', name, *data_dir_args(sample_dirs(small)), '--snapshot',
           'nightly-1')
        cb('forget', '--store', store, name)
        return pack_files(store)
    due = made_and_forgotten('gone1')
    # the other's key sorts first: this one backs off at once
    other = write_lock(store, '0' * 32, doc)
    p = cb('prune', '--store', store, '--if-idle')
    assert said in p.stdout and pack_files(store) == due
    os.unlink(other)
    # the other's key sorts last: this one lets go of its lock (stopped there), the other backs
    # off meanwhile, and this one prunes on its next try
    other = write_lock(store, 'f' * 32, doc)
    c = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, 'prune', '--store', store, '--if-idle'], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_UNLINK='*.json')))
    try:
        assert len(os.listdir(os.path.join(store, 'locks'))) == 2
        os.unlink(other)
    finally:
        rc, out, err = resumed(c)
    assert rc == 0 and 'deleted 1 pack' in out and 'not pruned' not in out, out + err
    assert pack_files(store) == []
    # a prune that stays in the way ends it after its tries (and two never both go on)
    due = made_and_forgotten('gone2')
    other = write_lock(store, 'f' * 32, doc)
    p = cb('prune', '--store', store, '--if-idle')
    assert said in p.stdout and pack_files(store) == due
    assert os.listdir(os.path.join(store, 'locks')) == [os.path.basename(other)]


def test_a_create_whose_lock_was_removed_while_paused_commits_nothing(store, tmp_path):
    """A create paused (a suspended VM) just before its manifest, for less than a renewal
    period, while 'unlock --all' removed its lock and a prune deleted its pack: it committed,
    exit 0, a backup whose bytes were gone. The check before and after the manifest now looks
    that the lock object is still there."""
    src = make_sample(str(tmp_path / 'src'), '--data-kib', '64', '--no-clutter', '--keyspaces', '1',
                      '--tables', '1', '--no-index')
    c = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, *node_files_off(['create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(src)),
                                      '--snapshot', 'nightly-1'])],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST='1')))
    try:
        u = cb('unlock', '--store', store, '--all').stdout  # it said "removed 1 stale lock"
        assert f'removed live shared lock of create (pid {c.pid} on ' in u
        assert u.endswith('removed 0 stale locks and 1 live one; 0 held\n'), u
        assert 'delete packs/' in cb('prune', '--store', store).stdout
    finally:
        rc, out, err = resumed(c)
    assert rc == 1 and "was removed by another process: 'unlock --all', or one that took it for stale" in err, err
    assert 'so nothing is committed' in err
    assert backup_names(store) == []
    cb('check', '--store', store)


def a_prune_waiting_behind_a_stopped_create(store, tmp_path):
    """A forgotten backup's pack due to go; a create (of other bytes) stopped just before its
    manifest, holding the store; and a prune that planned and now waits for the exclusive lock.
    Returns (create, prune, the packs due before the create)."""
    small = make_sample(str(tmp_path / 'small'), '--data-kib', '16', '--no-clutter', '--keyspaces', '1',
                        '--tables', '1', '--no-index')
    other = make_sample(str(tmp_path / 'other'), '--data-kib', '16', '--no-clutter', '--keyspaces', '1',
                        '--tables', '1', '--no-index', '--seed', '7')
    cb('create', '--store', store, '--name', 'gone', *data_dir_args(sample_dirs(small)), '--snapshot', 'nightly-1')
    cb('forget', '--store', store, 'gone')
    due = pack_files(store)
    c = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, *node_files_off(['create', '--store', store, '--name', 'other', '--node', 'n2',
                                      *data_dir_args(sample_dirs(other)), '--snapshot', 'nightly-1'])],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST='1')))
    try:
        a = subprocess.Popen([CASSBACKUP, 'prune', '--store', store, '--lock-wait', '300'], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except BaseException:
        resumed(c)
        raise
    line = a.stderr.readline()  # planned; now waiting for the create's lock to go
    assert 'is locked by create (pid' in line and 'waiting up to 300 s' in line, line
    return c, a, due


def test_a_prune_waiting_for_the_exclusive_lock_keeps_another_prune_out(store, tmp_path):
    """A prune gave up its shared lock while it waited for the exclusive one (a create held the
    store): a second prune that started then saw no other prune, planned and repacked beside
    it. The first now keeps its shared lock until it has the exclusive one."""
    c, a, _ = a_prune_waiting_behind_a_stopped_create(store, tmp_path)
    try:
        p = cb('prune', '--store', store, '--lock-wait', '300', check=False)
        assert p.returncode == 1 and f'is locked by prune (pid {a.pid} on ' in p.stderr, p.stdout + p.stderr
    finally:
        rc, out, err = resumed(c)
        assert rc == 0, err
        out, err = a.communicate(timeout=300)
    assert a.returncode == 0, out + err  # what it deletes depends on what the create shares
    assert backup_names(store) == ['other']
    cb('check', '--store', store, '--read-data')


def test_a_prune_whose_lock_was_removed_while_it_waited_deletes_nothing(store, tmp_path):
    """A prune waiting for the exclusive lock (a create held the store) keeps its shared lock;
    'unlock --all' removed it, and the prune, once the create was gone, took the exclusive lock
    and deleted, exit 0: for that while another prune could have planned beside it. It now looks
    at the lock it held before it goes on, and stops."""
    c, a, due = a_prune_waiting_behind_a_stopped_create(store, tmp_path)
    try:
        u = cb('unlock', '--store', store, '--all').stdout
        assert f'removed live shared lock of prune (pid {a.pid} on ' in u, u
    finally:
        rc, out, err = resumed(c)  # its own lock was removed too: it commits nothing
        assert rc == 1 and 'was removed by another process' in err, err
        out, err = a.communicate(timeout=300)
    assert a.returncode == 1 and 'was removed by another process' in err and 'deleted' not in out, out + err
    assert set(due) <= set(pack_files(store))  # nothing deleted (the create's pack stays too)
    cb('check', '--store', store)


def test_a_prune_if_idle_that_fails_is_a_failure_in_its_metrics(store, tmp_path):
    """A prune --if-idle whose repack failed (a damaged pack) and then met a create's lock was
    taken for one that stopped for another: exit 1, but no run in the metrics file, so the
    failed-prune alert could not fire for the backup job's prune."""
    dirs, p1 = day1_forgotten_day2_sharing_a_big_file(tmp_path, store, kib=16384)
    with open(os.path.join(store, p1), 'r+b') as f:  # a byte of a frame near its end
        f.seek(os.path.getsize(os.path.join(store, p1)) * 3 // 4)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    mfile = tmp_path / 'cassbackup.prom'
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'metrics_file = {mfile}\n')
    small = make_sample(str(tmp_path / 'small'), '--data-kib', '16', '--no-clutter', '--keyspaces', '1',
                        '--tables', '1', '--no-index', '--seed', '5')
    pr = stopped_while_writing([CASSBACKUP, '--config', str(conf), 'prune', '--store', store, '--max-unused', '0',
                                '--if-idle'], store, None)
    c = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, *node_files_off(['create', '--store', store, '--name', 'other',
                                      *data_dir_args(sample_dirs(small)), '--snapshot', 'nightly-1'])],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST='1')))
    try:
        rc, out, err = resumed(pr)
        assert rc == 1 and 'stopped (--if-idle)' not in out, out + err
        text = mfile.read_text()
        assert 'cassbackup_failures_total{operation="prune"' in text, text
        assert re.search(r'cassbackup_last_run_success\{operation="prune"[^}]*\} 0', text), text
    finally:
        resumed(c)


def test_unlock_and_check_judge_locks_by_the_store_clock(store):
    host = socket.gethostname()
    now = time.time_ns()
    # written a moment ago by a holder whose clock runs 31 minutes behind ours: live
    write_lock(store, 'behind', {'host': 'elsewhere', 'command': 'create', 'pid': 1,
                                 'exclusive': False, 'time_ns': now - 31 * 60 * 10**9})
    # its holder's clock says now, but the store has not seen it renewed for 31 minutes: stale
    write_lock(store, 'old', {'host': 'elsewhere', 'command': 'prune', 'pid': 1, 'exclusive': True,
                              'time_ns': now, 'renewals': 12}, ago=31 * 60)
    # 29 minutes: live
    write_lock(store, 'recent', {'host': host, 'command': 'create', 'pid': os.getpid(),
                                 'exclusive': False, 'time_ns': now}, ago=29 * 60)
    p = cb('check', '--store', store, '--json', check=False)
    assert p.returncode == 0, p.stderr  # (its shared lock: no live exclusive one is there)
    res = json.loads(p.stdout)
    assert res['summary']['stale_locks'] == 1, res['info']
    [info] = [i for i in res['info'] if i.startswith('locks/')]
    assert info.startswith('locks/old.json: stale exclusive lock of prune (pid 1 on elsewhere')
    assert "s ago by the store's clock" in info
    u = cb('unlock', '--store', store)
    assert 'removed 1 stale lock; 2 held' in u.stdout
    assert sorted(os.listdir(os.path.join(store, 'locks'))) == ['behind.json', 'recent.json']
    # a prune keeps out, whatever its clock says, and names a holder (with nothing to delete,
    # it only leaves its sweep of upload leftovers for the next prune)
    p = cb('prune', '--store', store, '--lock-wait', '0', env=AHEAD, check=False)
    assert p.returncode == 0 and 'upload leftovers not looked for: the store is in use by create (pid ' in p.stdout
    u = cb('unlock', '--store', store, env=AHEAD)
    assert 'removed 0 stale locks; 2 held' in u.stdout


def test_a_prune_in_another_pid_namespace_leaves_a_live_create_alone(store, tmp_path):
    """A lock was judged dead when its host name was this host's and kill(pid, 0) found no
    such process. A prune in a container sharing the host's name but with a pid namespace of
    its own (or on another machine of the same name) found none, took the store, and deleted
    a running create's pack, exit 0; the create then committed a backup without its data,
    exit 0. A lock now says where its pid means something (boot and pid namespace)."""
    # the default lease (30 minutes): a stop of any length on a busy machine stays within it
    dirs, p1 = day1_and_big_day2(tmp_path, store, big_kib=64)
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST='1')
    c = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, *node_files_off(['create', '--store', store, '--name', 'day2',
                                      *data_dir_args(dirs), '--snapshot', 'nightly-2'])],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    try:
        # the create's lock is live: the prune, in a pid namespace of its own, waits for it
        # and gives up (--lock-wait 1)
        p = subprocess.run(['unshare', '--pid', '--fork', '--mount-proc', CASSBACKUP, 'prune', '--store',
                            store, '--lock-wait', '1'], capture_output=True, text=True, timeout=120)
        assert p.returncode == 1 and 'is locked by create (pid' in p.stderr, p
        assert p1 in pack_files(store)
    finally:
        rc, out, err = resumed(c)
    assert rc == 0, err
    out = cb('check', '--store', store, '--read-data').stdout
    assert out.rstrip().endswith('no problems'), out
