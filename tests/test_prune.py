"""cassbackup prune: what it frees, what it keeps, and that a kill -9 at any point loses nothing.

Real stores, real packs, a real mount; removing backups/NAME.json is what forget does.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import (manifest_path, CASSBACKUP, HERE, cb, preload, data_dir_args, make_sample, mounted, read,
                      sample_dirs, snapshot_tables, stop_while_writing)


def prune(store, *args, check=True):
    p = cb('prune', '--store', store, '--json', *args, check=check)
    return json.loads(p.stdout) if p.stdout else None, p


def pack_files(store):
    return sorted(os.path.relpath(os.path.join(r, n), store)
                  for r, _, ns in os.walk(os.path.join(store, 'packs')) for n in ns)


def pack_index(store, pack):
    doc = subprocess.run(['tar', '--zstd', '-xOf', os.path.join(store, pack), '.cassbackup/index.json'],
                         capture_output=True, check=True).stdout
    return {b['sha256']: b['size'] for b in json.loads(doc)['blobs']}


def manifest_blobs(store, name):
    m = json.loads(read(manifest_path(store, name)))
    return {f['sha256']: f['size'] for k in m['keyspaces'] for t in k['tables'] for f in t['files']}


def forget(store, name):
    """What `cassbackup forget` does to the store: the manifest goes, the packs stay."""
    os.unlink(manifest_path(store, name))


def create(store, name, dirs, tag):
    cb('create', '--store', store, '--name', name, *data_dir_args(dirs), '--snapshot', tag)


def compact(dirs, tag, drop):
    """Removes sstable generations `drop` from snapshot tag (compaction replaced them), and
    from manifest.json."""
    for d in dirs:
        for ks in os.listdir(d):
            for tdir in os.listdir(os.path.join(d, ks)):
                sdir = os.path.join(d, ks, tdir, 'snapshots', tag)
                for n in os.listdir(sdir) if os.path.isdir(sdir) else ():
                    if n.startswith('nb-') and int(n.split('-')[1]) in drop:
                        os.unlink(os.path.join(sdir, n))
                m = os.path.join(sdir, 'manifest.json')
                if os.path.exists(m):
                    doc = json.loads(read(m))
                    doc['files'] = [f for f in doc['files'] if int(f.split('-')[1]) not in drop]
                    os.unlink(m)
                    with open(m, 'w') as f:
                        json.dump(doc, f)


def two_days(tmp_path, store):
    """day1: 2 sstables per table; day2: one more, and compaction dropped generation 1.
    Returns the data dirs and the pack of each day."""
    src = make_sample(str(tmp_path / 'src'), '--data-kib', '512', '--no-clutter', '--keyspaces', '1',
                      '--tables', '2', '--no-index')
    dirs = sample_dirs(src)
    create(store, 'day1', dirs, 'nightly-1')
    [p1] = pack_files(store)
    make_sample(src, '--data-kib', '512', '--no-clutter', '--keyspaces', '1', '--tables', '2',
                '--no-index', '--grow-percent', '1', '--tag', 'nightly-2', '--seed', '2')
    compact(dirs, 'nightly-2', {1})
    create(store, 'day2', dirs, 'nightly-2')
    [p2] = sorted(set(pack_files(store)) - {p1})
    return dirs, p1, p2


def check_through_mount(store, tmp_path, expected):
    """expected: {backup: (data dirs, tag)}; every file of each backup reads as in its snapshot,
    and nothing else is there."""
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert sorted(os.listdir(m.path())) == sorted(expected)
        for name, (dirs, tag) in expected.items():
            for (ks, table), files in snapshot_tables(dirs, tag).items():
                tdir = m.path(name, ks, table)
                shown = {os.path.relpath(os.path.join(r, n), tdir) for r, _, ns in os.walk(tdir) for n in ns}
                assert shown == set(files)
                for rel, src in files.items():
                    assert read(os.path.join(tdir, rel)) == read(src), f'{name}/{ks}/{table}/{rel}'


def two_days_and_another_node(tmp_path, store):
    """two_days, and a backup of another node, whose pack (p3) holds nothing the others use:
    (dirs, p1, p2, p3)."""
    dirs, p1, p2 = two_days(tmp_path, store)
    other = make_sample(str(tmp_path / 'other'), '--data-kib', '300', '--no-clutter', '--keyspaces', '1',
                        '--tables', '1', '--seed', '7')
    create(store, 'other-node', sample_dirs(other), 'nightly-1')
    [p3] = sorted(set(pack_files(store)) - {p1, p2})
    return dirs, p1, p2, p3


def test_removed_backup_frees_exactly_its_own_pack(store, tmp_path):
    dirs, p1, p2, p3 = two_days_and_another_node(tmp_path, store)
    size3 = os.path.getsize(os.path.join(store, p3))
    before = {p: os.stat(os.path.join(store, p)) for p in (p1, p2)}
    forget(store, 'other-node')
    res, _ = prune(store)
    assert res['packs'] == {'before': 3, 'deleted': 1, 'repacked': 0, 'written': 0, 'after': 2,
                            'unreadable': 0, 'in_use_again': 0}
    assert res['bytes']['freed'] == size3 and res['bytes']['rewritten'] == 0
    assert [(a['pack'], a['action'], a['done']) for a in res['actions']] == [(p3, 'delete', True)]
    assert pack_files(store) == sorted([p1, p2])
    for p in (p1, p2):  # untouched
        st = os.stat(os.path.join(store, p))
        assert (st.st_ino, st.st_size, st.st_mtime_ns) == (before[p].st_ino, before[p].st_size,
                                                           before[p].st_mtime_ns)
    assert res['bytes']['kept'] == sum(os.path.getsize(os.path.join(store, p)) for p in (p1, p2))
    # a second run finds nothing to do
    again, _ = prune(store)
    assert again['packs']['deleted'] == again['packs']['repacked'] == 0 and again['actions'] == []
    check_through_mount(store, tmp_path, {'day1': (dirs, 'nightly-1'), 'day2': (dirs, 'nightly-2')})


def test_packs_deleted_count_when_the_catalog_cannot_be_told(store, tmp_path):
    """prune deleted a pack, then could not drop it from the catalog (its disk full): it
    exited 1 saying so, but its summary said 0 packs deleted and 0 B freed."""
    dirs, p1, p2, p3 = two_days_and_another_node(tmp_path, store)
    size3 = os.path.getsize(os.path.join(store, p3))
    forget(store, 'other-node')
    p = cb('prune', '--store', store, '--json', check=False,
           env=dict(os.environ, CASSBACKUP_TEST_PRUNE_CATALOG_FULL='1'))
    assert p.returncode == 1 and 'cannot drop them from the catalog' in p.stderr, p.stderr
    res = json.loads(p.stdout)
    assert res['packs']['deleted'] == 1 and res['bytes']['freed'] == size3, res
    assert pack_files(store) == sorted([p1, p2])
    again, _ = prune(store)  # the next open drops it
    assert again['packs']['deleted'] == 0 and again['actions'] == []
    check_through_mount(store, tmp_path, {'day1': (dirs, 'nightly-1'), 'day2': (dirs, 'nightly-2')})


def test_forgotten_day_repacks_the_shared_pack_to_what_survivors_use(store, tmp_path):
    dirs, p1, p2 = two_days(tmp_path, store)
    in_p1 = pack_index(store, p1)
    used = manifest_blobs(store, 'day2')
    forget(store, 'day1')
    res, _ = prune(store)
    # p1 still holds generation 2 (day2 uses it) and generation 1 (nobody does): repacked
    assert [(a['pack'], a['action']) for a in res['actions']] == [(p1, 'repack')]
    live = {h: s for h, s in in_p1.items() if h in used}
    assert res['bytes']['rewritten'] == sum(live.values())
    assert res['packs']['repacked'] == 1 and res['packs']['written'] == 1
    [new] = sorted(set(pack_files(store)) - {p2})
    assert new != p1 and pack_index(store, new) == live
    assert res['bytes']['freed'] == res['bytes']['before'] - res['bytes']['kept']
    assert res['bytes']['kept'] == sum(os.path.getsize(os.path.join(store, p)) for p in pack_files(store))
    cb('verify', '--store', store, 'day2')
    check_through_mount(store, tmp_path, {'day2': (dirs, 'nightly-2')})


def test_max_unused_is_a_share_of_the_store_as_in_restic(store, tmp_path):
    """--max-unused bounds the unused bytes of the whole store, not of each pack: a small pack
    mostly unused in a big store stays at the default 5% (it used to be rewritten whole for
    each few percent a pack lost), and goes once the threshold asks for it."""
    big = make_sample(str(tmp_path / 'big'), '--data-kib', '4096', '--incompressible', '--no-clutter',
                      '--keyspaces', '1', '--tables', '2', '--seed', '7')
    dirs, p1, p2 = two_days(tmp_path, store)
    create(store, 'big', sample_dirs(big), 'nightly-1')
    forget(store, 'day1')
    res, _ = prune(store, '--dry-run')
    tolerated = res['bytes']['before']
    assert res['actions'] == [] and res['packs']['repacked'] == 0, res
    res, _ = prune(store)
    assert res['actions'] == [] and res['bytes']['kept'] == tolerated
    assert p1 in pack_files(store)
    res, _ = prune(store, '--max-unused', '1')
    assert [(a['pack'], a['action']) for a in res['actions']] == [(p1, 'repack')], res
    assert p1 not in pack_files(store)
    cb('verify', '--store', store, '--all')


def test_repack_everything_keeps_backups_byte_identical(store, tmp_path):
    dirs, p1, p2 = two_days(tmp_path, store)
    forget(store, 'day1')
    listed = json.loads(cb('list', '--store', store, '--json').stdout)
    res, _ = prune(store, '--max-unused', '0')
    assert res['packs']['repacked'] == 1
    assert json.loads(cb('list', '--store', store, '--json').stdout) == listed
    cb('verify', '--store', store, 'day2')
    check_through_mount(store, tmp_path, {'day2': (dirs, 'nightly-2')})
    # tar -x of the new pack alone gives a data-dir layout of what it holds
    [new] = sorted(set(pack_files(store)) - {p2})
    out = tmp_path / 'x'
    out.mkdir()
    subprocess.run(['tar', '--zstd', '-xf', os.path.join(store, new), '-C', str(out)], check=True)
    seen = 0
    for (ks, table), files in snapshot_tables(dirs, 'nightly-2').items():
        [tdir] = [d for d in os.listdir(out / ks) if d.rsplit('-', 1)[0] == table]
        for rel, src in files.items():
            if os.path.exists(out / ks / tdir / rel):
                assert read(out / ks / tdir / rel) == read(src)
                seen += 1
    assert seen > 0


def test_leftovers_of_a_killed_create_are_removed(store, tmp_path):
    src = make_sample(str(tmp_path / 'src'), '--data-kib', '256', '--no-clutter', '--keyspaces', '1',
                      '--tables', '1')
    create(store, 'kept', sample_dirs(src), 'nightly-1')
    kept_packs = pack_files(store)
    # a create that uploaded its pack and died before its manifest: the pack is in packs/ and
    # no manifest names it (made in another store, then put in place as its upload would be)
    scratch = str(tmp_path / 'scratch')
    cb('init', '--store', scratch)
    other = make_sample(str(tmp_path / 'other'), '--data-kib', '256', '--no-clutter', '--keyspaces', '1',
                        '--tables', '1', '--seed', '5')
    create(scratch, 'lost', sample_dirs(other), 'nightly-1')
    [orphan] = pack_files(scratch)
    os.makedirs(os.path.dirname(os.path.join(store, orphan)), exist_ok=True)
    shutil.copy(os.path.join(scratch, orphan), os.path.join(store, orphan))
    # and an upload it left in tmp/ (a named file nobody holds, as without O_TMPFILE)
    os.makedirs(os.path.join(store, 'tmp'), exist_ok=True)
    with open(os.path.join(store, 'tmp', 'upload-dead'), 'wb') as f:
        f.write(b'x' * 4096)
    res, _ = prune(store)
    assert [(a['pack'], a['action']) for a in res['actions']] == [(orphan, 'delete')]
    assert res['upload_leftovers_removed'] == 1
    assert pack_files(store) == kept_packs and os.listdir(os.path.join(store, 'tmp')) == []
    cb('verify', '--store', store, 'kept')


def tree_state(store):
    """Every object of the store but the catalog (a cache) and locks: path, size, mtime, bytes."""
    res = {}
    for r, _, ns in os.walk(store):
        for n in ns:
            p = os.path.join(r, n)
            rel = os.path.relpath(p, store)
            if rel.startswith('catalog.db') or rel.startswith('locks/'):
                continue
            st = os.stat(p)
            res[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha256(read(p)).hexdigest())
    return res


def test_dry_run_changes_nothing(store, tmp_path):
    dirs, p1, p2 = two_days(tmp_path, store)
    other = make_sample(str(tmp_path / 'other'), '--data-kib', '200', '--no-clutter', '--keyspaces', '1',
                        '--tables', '1', '--seed', '9')
    create(store, 'other', sample_dirs(other), 'nightly-1')
    forget(store, 'other')
    forget(store, 'day1')
    before = tree_state(store)
    res, _ = prune(store, '--dry-run')
    assert res['dry_run'] and res['packs']['deleted'] == 1 and res['packs']['repacked'] == 1
    assert sorted(a['action'] for a in res['actions']) == ['delete', 'repack']
    assert not any(a['done'] for a in res['actions'])
    assert res['bytes']['freed'] > 0 and res['bytes']['written'] == 0
    text = cb('prune', '--store', store, '--dry-run').stdout
    assert 'would delete' in text and 'would repack' in text
    assert tree_state(store) == before
    assert os.listdir(os.path.join(store, 'locks')) == []
    # the real run then does what the dry run said
    done, _ = prune(store)
    assert done['packs']['deleted'] == 1 and done['packs']['repacked'] == 1
    assert sorted(a['pack'] for a in done['actions']) == sorted(a['pack'] for a in res['actions'])


def test_unreadable_manifest_stops_prune(store, tmp_path):
    dirs, p1, p2 = two_days(tmp_path, store)
    with open(manifest_path(store, 'day1'), 'r+b') as f:
        f.truncate(100)  # a damaged manifest: its backup's blobs must not look unused
    before = pack_files(store)
    res, p = prune(store, check=False)
    assert p.returncode == 1 and res is None
    [line] = p.stderr.splitlines()
    assert 'backups/day1/' in line and 'fix or remove it first' in line
    assert pack_files(store) == before


@pytest.mark.parametrize('damaged', ['directory', 'manifest'])
def test_a_backup_that_cannot_be_listed_stops_every_command(store, tmp_path, damaged):
    """A backups/ entry that gives EIO at every try (a failing disk) is no missing backup:
    prune, check, list, reindex and forget stop with one line naming it, and no pack goes.
    The listing used to skip it: prune deleted the packs only day2 uses, exit 0, as check,
    verify --all and reindex said all was well."""
    dirs, p1, p2 = two_days(tmp_path, store)
    name = 'day2' if damaged == 'directory' else os.path.basename(manifest_path(store, 'day2'))
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_EIO_NAME=name)
    before = pack_files(store)
    for args in (['prune', '--max-unused', '0'], ['check'], ['verify', '--all'], ['list'], ['reindex'],
                 ['forget', '--keep-last', '1', '--dry-run']):
        p = cb(args[0], '--store', store, *args[1:], env=env, check=False)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert re.search(r'cannot list backups/day[12]\S*: Input/output error', p.stderr), (args, p.stderr)
    assert pack_files(store) == before
    cb('check', '--store', store)
    check_through_mount(store, tmp_path, {'day1': (dirs, 'nightly-1'), 'day2': (dirs, 'nightly-2')})


def stopped_while_uploading(store, dirs):
    """A create of backup 'new' stopped (SIGSTOP) while it writes its pack, and so holds its
    shared lock (taken before the pack starts, released after it ends)."""
    for attempt in range(5):
        c = stop_while_writing([CASSBACKUP, 'create', '--store', store, '--name', 'new',
                                *data_dir_args(dirs), '--snapshot', 'nightly-1'], store)
        if c:
            return c
        if os.path.exists(manifest_path(store, 'new')):
            forget(store, 'new')
    raise AssertionError('could not catch a create uploading')


def test_prune_waits_for_and_names_a_create(store, tmp_path):
    src = make_sample(str(tmp_path / 'src'), '--data-kib', '8192', '--incompressible', '--no-clutter',
                      '--keyspaces', '1', '--tables', '2')
    base = make_sample(str(tmp_path / 'base'), '--data-kib', '64', '--no-clutter', '--keyspaces', '1',
                       '--tables', '1', '--seed', '3')
    create(store, 'old', sample_dirs(base), 'nightly-1')
    [old_pack] = pack_files(store)
    forget(store, 'old')
    # a create in the middle of its upload, holding its shared lock
    c = stopped_while_uploading(store, sample_dirs(src))
    try:
        _, p = prune(store, '--lock-wait', '0', check=False)
        assert p.returncode == 1
        [line] = p.stderr.splitlines()
        assert f'locked by create (pid {c.pid} on' in line and 'shared' in line
        # one that waits: it says so, and goes on once the create is done
        w = subprocess.Popen([CASSBACKUP, 'prune', '--store', store, '--lock-wait', '600', '--json',
                              '--max-unused', '0'],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = w.stderr.readline()
        assert f'locked by create (pid {c.pid} on' in first and 'waiting up to 600 s' in first
        c.send_signal(signal.SIGCONT)
        assert c.wait() == 0, c.stderr.read()
        out, err = w.communicate()
        assert w.returncode == 0, err
    finally:
        c.send_signal(signal.SIGCONT)
        c.wait()
    res = json.loads(out)
    # the prune planned beside the create (a shared lock each) and found old's pack unused;
    # the create, committed before the prune's delete phase, deduplicated against it (the new
    # backup shares its TOC.txt): judged again under the exclusive lock, it stays
    [a] = res['actions']
    assert (a['pack'], a['action'], a['done'], a['in_use_again']) == (old_pack, 'delete', False, True)
    assert res['packs']['in_use_again'] == 1
    assert old_pack in pack_files(store)
    [b] = json.loads(cb('list', '--store', store, '--json').stdout)
    assert b['name'] == 'new' and b['complete']
    cb('verify', '--store', store, 'new')
    # the next prune sees it used and repacks it, no unused byte being tolerated
    res, _ = prune(store, '--max-unused', '0')
    assert [(a['pack'], a['action'], a['done']) for a in res['actions']] == [(old_pack, 'repack', True)]
    assert old_pack not in pack_files(store)
    cb('verify', '--store', store, 'new')


def test_bad_input(store, tmp_path):
    for bad in ('101', 'abc', '-1', '5%%', ''):
        p = cb('prune', '--store', store, '--max-unused', bad, check=False)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and '--max-unused' in p.stderr, bad
    p = cb('prune', '--store', str(tmp_path / 'nothing'), check=False)
    assert p.returncode == 3 and len(p.stderr.splitlines()) == 1 and 'nothing' in p.stderr
    os.mkdir(tmp_path / 'empty')
    p = cb('prune', '--store', str(tmp_path / 'empty'), check=False)
    assert p.returncode == 3 and 'not a cassbackup store' in p.stderr
    assert cb('prune', '--store', store, '--max-unused', '7%').returncode == 0


def test_kill_soak_20(tmp_path, binaries):
    """kill -9 at random points of create, forget and prune: see kill_soak.py."""
    p = subprocess.run([sys.executable, os.path.join(HERE, 'kill_soak.py'), '--kills', '20',
                        '--workdir', str(tmp_path / 'soak')],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    assert '20 kills' in p.stdout


def test_reads_through_the_mount_while_prune_repacks(store, tmp_path):
    """A file of a surviving backup read in a loop (O_DIRECT: every read reaches the daemon)
    while prune repacks its pack and deletes the old one: no error, no wrong byte."""
    import mmap
    import threading
    dirs, p1, p2 = two_days(tmp_path, store)
    forget(store, 'day1')
    files = snapshot_tables(dirs, 'nightly-2')[('shop', 'orders')]
    rel = 'nb-2-big-Data.db'  # day2 reads it from p1, which the prune repacks
    want = read(files[rel])
    with mounted(store, str(tmp_path / 'mnt')) as m:
        path = m.path('day2', 'shop', 'orders', rel)
        stop, reads, errors = threading.Event(), [0], []

        def reader():
            buf = mmap.mmap(-1, len(want) + 4096 - len(want) % 4096)
            while not stop.is_set() or reads[0] == 0:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
                    try:
                        n = os.preadv(fd, [buf], 0)
                    finally:
                        os.close(fd)
                    if buf[:n] != want:
                        errors.append('wrong bytes')
                except OSError as e:
                    errors.append(str(e))
                reads[0] += 1

        t = threading.Thread(target=reader)
        t.start()
        try:
            res, _ = prune(store, '--max-unused', '0')
            after = reads[0]
            while reads[0] < after + 3:  # and some reads after the old pack went
                time.sleep(0.01)
        finally:
            stop.set()
            t.join()
    assert [(a['pack'], a['action'], a['done']) for a in res['actions']] == [(p1, 'repack', True)]
    assert not os.path.exists(os.path.join(store, p1))
    assert errors == [] and reads[0] > 3
