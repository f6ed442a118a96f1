"""cassbackup forget and unlock on real stores: by name, by policy per node, dry runs, usage
errors, and a mount that drops a forgotten backup from /backups while mounted. The policy's
calendar rules themselves are unit-tested (tests/unit/test_retention.c, 29 cases)."""
import json
import os
import socket
import time

import pytest

from conftest import manifest_path, pid_space, rewrite_manifest, backup_list, cb, data_dir_args, make_sample, mounted, read, sample_dirs

DAY = 86400 * 10**9


def tiny(tmp_path, name, seed):
    return make_sample(str(tmp_path / name), '--data-kib', '16', '--data-dirs', '1', '--keyspaces', '1',
                       '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter', '--seed', str(seed))


@pytest.fixture
def four(store, tmp_path):
    """Backups n1-a, n1-b, n2-a, n2-b: nodes n1 and n2, 'a' three days older than 'b'."""
    for i, name in enumerate(['n1-a', 'n1-b', 'n2-a', 'n2-b']):
        src = tiny(tmp_path, name, 40 + i)
        cb('create', '--store', store, '--name', name, *data_dir_args(sample_dirs(src)),
           '--snapshot', 'nightly-1', '--node', name[:2])
    now = time.time_ns()
    for name in ['n1-a', 'n2-a']:  # make the 'a' backups older, in their manifests
        path = manifest_path(store, name)
        with open(path) as f:
            doc = json.load(f)
        doc['created_ns'] = now - 3 * DAY
        rewrite_manifest(path, doc)
    # manifests are never rewritten in place: make the catalog (a cache) read them again
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(os.path.join(store, 'catalog.db' + suffix)):
            os.unlink(os.path.join(store, 'catalog.db' + suffix))
    return store


def names(store):
    return sorted(b['name'] for b in backup_list(store))


def test_forget_by_name(four):
    p = cb('forget', '--store', four, 'n1-a')
    assert p.stdout.split()[:2] == ['remove', 'n1-a']
    assert names(four) == ['n1-b', 'n2-a', 'n2-b']
    assert not os.path.exists(manifest_path(four, 'n1-a'))


def test_unknown_name_changes_nothing(four):
    before = names(four)
    p = cb('forget', '--store', four, 'n1-b', 'n1-x', check=False)
    assert p.returncode == 3 and 'n1-x' in p.stderr and 'closest' in p.stderr
    assert names(four) == before


def test_names_with_node_forget_only_that_nodes(four):
    """NAME --node N: only node N's backup NAME; one of another node is no such backup."""
    before = names(four)
    p = cb('forget', '--store', four, 'n1-a', '--node', 'n2', check=False)
    assert p.returncode == 3 and 'n1-a' in p.stderr and names(four) == before
    cb('forget', '--store', four, 'n1-a', '--node', 'n1')
    assert names(four) == [n for n in before if n != 'n1-a']


@pytest.mark.parametrize('args, why', [
    ([], 'give backup names or a --keep-* policy'),
    (['n1-a', '--keep-last', '1'], 'not both'),
    (['--keep-within', '3x'], 'keep-within'),
])
def test_usage_errors(four, args, why):
    p = cb('forget', '--store', four, *args, check=False)
    assert p.returncode == 2 and why in p.stderr, p.stderr
    assert len(names(four)) == 4


def test_policy_per_node_dry_run_then_real(four):
    p = cb('forget', '--store', four, '--keep-last', '1', '--dry-run')
    lines = p.stdout.splitlines()
    assert sum(l.startswith('would remove') for l in lines) == 2, lines
    assert len(names(four)) == 4  # a dry run changes nothing
    p = cb('forget', '--store', four, '--keep-last', '1', '--json')
    got = {d['name']: (d['action'], d['reasons']) for d in json.loads(p.stdout)}
    assert got == {'n1-a': ('remove', []), 'n1-b': ('keep', ['last']),
                   'n2-a': ('remove', []), 'n2-b': ('keep', ['last'])}
    assert names(four) == ['n1-b', 'n2-b']


def test_policy_for_one_node_and_within(four):
    cb('forget', '--store', four, '--keep-within', '1d', '--node', 'n2')
    assert names(four) == ['n1-a', 'n1-b', 'n2-b']  # n1 untouched; n2's 3-day-old one goes


def test_forgotten_backup_leaves_the_mount(four, tmp_path):
    with mounted(four, str(tmp_path / 'mnt')) as m:
        assert 'n1-a' in os.listdir(m.path())
        kept = read(m.path('n1-b', 'shop', 'orders', 'nb-1-big-Data.db'))
        cb('forget', '--store', four, 'n1-a')
        deadline = time.monotonic() + 30  # the mount refreshes every few seconds
        while 'n1-a' in os.listdir(m.path()):
            assert time.monotonic() < deadline, 'forgotten backup still listed'
            time.sleep(0.5)
        assert read(m.path('n1-b', 'shop', 'orders', 'nb-1-big-Data.db')) == kept


def test_unlock_removes_stale_locks_only(four):
    locks = os.path.join(four, 'locks')
    os.makedirs(locks, exist_ok=True)
    host = socket.gethostname()
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    stale = {'host': host, 'command': 'prune', 'pid': dead, 'exclusive': True, 'time_ns': time.time_ns(),
             'pid_space': pid_space()}
    live = {'host': host, 'command': 'create', 'pid': os.getpid(), 'exclusive': False,
            'time_ns': time.time_ns(), 'pid_space': pid_space()}
    for name, doc in [('stale', stale), ('live', live)]:
        with open(os.path.join(locks, name + '.json'), 'w') as f:
            json.dump(doc, f)
    p = cb('unlock', '--store', four)
    assert 'removed 1 stale lock; 1 held' in p.stdout and 'shared lock of create' in p.stdout
    assert sorted(os.listdir(locks)) == ['live.json']
    # a live exclusive lock keeps forget (a shared locker) out, and says who holds it
    live['exclusive'] = True
    with open(os.path.join(locks, 'live.json'), 'w') as f:
        json.dump(live, f)
    p = cb('unlock', '--store', four, '--all')
    assert os.listdir(locks) == []


def test_policy_stops_on_a_manifest_it_cannot_read(four):
    """issue 13: a policy is applied only to a complete reading of backups/. A damaged manifest
    stops forget with one line naming it; nothing is forgotten (before: the backup was left out
    of the counting and forget went on, exit 0)."""
    damaged = manifest_path(four, 'n1-b')
    with open(damaged, 'w') as f:
        f.write('{"format": 2, "name": ')
    p = cb('forget', '--store', four, '--keep-last', '1', check=False)
    assert p.returncode == 1, (p.stdout, p.stderr)
    [line] = p.stderr.splitlines()
    assert line.startswith('cassbackup: cannot apply the policy: ') and 'n1-b' in line, line
    assert 'nothing forgotten' in line
    for name in ('n1-a', 'n2-a', 'n2-b'):
        assert os.path.exists(manifest_path(four, name))


def test_policy_keeps_each_scope_apart(store, tmp_path):
    """keep_daily kept a node's newest backup of the day: a backup of one keyspace made in the
    afternoon stood for the day, and the nightly backup of every table was forgotten. Backups
    of other tables (their scope) are kept by the policy apart, as restic keeps other paths."""
    src = make_sample(str(tmp_path / 'src'), '--data-kib', '16', '--data-dirs', '1',
                      '--keyspaces', '2', '--tables', '1', '--sstables', '1', '--no-index',
                      '--no-clutter', '--seed', '7')
    ks = sorted(d for d in os.listdir(sample_dirs(src)[0]) if not d.startswith('system'))
    common = ['--store', store, *data_dir_args(sample_dirs(src)), '--snapshot', 'nightly-1',
              '--node', 'n1']
    cb('create', '--name', 'night-1', *common)
    cb('create', '--name', 'one-1', '--keyspace', ks[0], *common)
    cb('create', '--name', 'night-2', *common)
    cb('create', '--name', 'one-2', '--keyspace', ks[0], *common)
    p = cb('forget', '--store', store, '--keep-last', '1', '--json')
    got = {d['name']: d['action'] for d in json.loads(p.stdout)}
    assert got == {'night-1': 'remove', 'one-1': 'remove', 'night-2': 'keep', 'one-2': 'keep'}
    assert names(store) == ['night-2', 'one-2']


def test_a_host_id_an_older_cassbackup_kept_in_capitals_is_the_same_node(store, tmp_path):
    """A backup an older cassbackup kept under a host id in capitals (given so with --host-id),
    and one of the same host made now (lower case): forget --node refused every spelling as
    naming two nodes, exit 2, and --keep-last took them for two nodes, so the older ones never
    expired."""
    hid = '5f1c0c8e-0000-4000-8000-0000000000ab'
    now = time.time_ns()
    for i, name in enumerate(['b1', 'b2', 'b3']):
        cb('create', '--store', store, '--name', name, *data_dir_args(sample_dirs(tiny(tmp_path, name, 60 + i))),
           '--snapshot', 'nightly-1', '--node', 'n1', '--host-id', hid)
        path = manifest_path(store, name)
        doc = json.load(open(path))
        doc['created_ns'] = now - (3 - i) * DAY
        if name != 'b3':  # as an older cassbackup kept them
            doc['host_id'] = hid.upper()
            os.unlink(path)
            path = os.path.join(os.path.dirname(path), hid.upper() + '.json')
        rewrite_manifest(path, doc)
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(os.path.join(store, 'catalog.db' + suffix)):
            os.unlink(os.path.join(store, 'catalog.db' + suffix))
    cb('forget', '--store', store, '--node', hid, 'b1')
    assert names(store) == ['b2', 'b3']
    cb('forget', '--store', store, '--keep-last', '1')
    assert names(store) == ['b3']


def test_a_backup_made_without_nodetool_ages_out_with_its_nodes_backups(store, tmp_path):
    """A node's first backup made without nodetool is keyed by its node name, the later ones by
    its host id: the policy took them for two nodes and kept the first for ever as the other
    node's last backup. It joins the host id its node name's other backups all have; a node
    name seen with two host ids (a host replaced under its name) keeps it apart."""
    hid, other = '5f1c0c8e-0000-4000-8000-0000000000ab', '6e2d1d9f-0000-4000-8000-0000000000cd'
    now = time.time_ns()

    def make(name, i, *host):
        cb('create', '--store', store, '--name', name, *data_dir_args(sample_dirs(tiny(tmp_path, name, 80 + i))),
           '--snapshot', 'nightly-1', '--node', 'n1', *host)
        path = manifest_path(store, name)
        doc = json.load(open(path))
        doc['created_ns'] = now - (9 - i) * DAY
        rewrite_manifest(path, doc)

    make('b1', 1)
    make('b2', 2, '--host-id', hid)
    make('b3', 3, '--host-id', hid)
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(os.path.join(store, 'catalog.db' + suffix)):
            os.unlink(os.path.join(store, 'catalog.db' + suffix))
    # --node HOSTID, as the backup job forgets: the joined one is of that node too (it was
    # left out of the choice, and kept for ever)
    assert 'would remove b1' in cb('forget', '--store', store, '--node', hid, '--keep-last', '2', '--dry-run').stdout
    cb('forget', '--store', store, '--keep-last', '2')
    assert names(store) == ['b2', 'b3']
    make('b4', 4)
    make('b5', 5, '--host-id', other)  # n1 is now another host: b4 is no longer sure to be hid's
    cb('forget', '--store', store, '--keep-last', '1')
    assert names(store) == ['b3', 'b4', 'b5']


def test_a_name_an_older_cassbackup_kept_under_a_host_id_in_capitals_is_taken(store, tmp_path):
    """create compared node keys exactly: a backup name an older cassbackup kept under the host
    id in capitals was free for the same node in lower case, so a second backup of the node
    under the name was published, after which restore refused every --node. Such a pair (made
    by older cassbackups) is restored by its ref."""
    hid = '5f1c0c8e-0000-4000-8000-0000000000ab'
    args = ['create', '--store', store, '--name', 'b1', *data_dir_args(sample_dirs(tiny(tmp_path, 'b1', 90))),
            '--snapshot', 'nightly-1', '--node', 'n1', '--host-id', hid]
    cb(*args)
    path = manifest_path(store, 'b1')
    doc = json.load(open(path))
    doc['host_id'] = hid.upper()
    os.unlink(path)
    capitals = os.path.join(os.path.dirname(path), hid.upper() + '.json')
    rewrite_manifest(capitals, doc)
    p = cb(*args, check=False)
    assert p.returncode == 1 and 'backup b1 of node ' + hid + ' already exists' in p.stderr, p.stderr
    assert os.listdir(os.path.dirname(path)) == [hid.upper() + '.json']
    doc['host_id'] = hid  # and both, as two older cassbackups could leave them
    rewrite_manifest(path, doc)
    out = tmp_path / 'b1.tar'
    p = cb('export', '--store', store, 'b1', '--node', hid, '--output', out, check=False)
    assert p.returncode == 2 and 'two spellings of its host id' in p.stderr and 'by its ref' in p.stderr, p.stderr
    assert not out.exists()
    cb('export', '--store', store, 'b1/' + hid.upper(), '--output', out)
    assert out.stat().st_size > 0
