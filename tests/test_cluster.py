"""Cluster backups (issue 14): three nodes of one simulated cluster back up into one store.

Each node has its own data directories; the nodetool stand-in answers as that node
(NODETOOL_STANDIN_RING: the ring, NODETOOL_STANDIN_NODE: which node it is), as Cassandra's
nodetool info/status/describecluster print it. Real stores (local, and S3 on moto), real
creates, the real mount."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import (CASSBACKUP, cb, data_dir_args, make_sample, mounted, node_files_off, read, rewrite_manifest,
                      sample_dirs, snapshot_tables)

NODETOOL = os.path.join(os.path.dirname(__file__), 'standins', 'nodetool')

NODES = [
    {'host_id': '1a1a1a1a-0000-4000-8000-000000000001', 'address': '127.0.0.1', 'datacenter': 'dc1',
     'rack': 'r1', 'tokens': ['-9000000000000000000', '-1000']},
    {'host_id': '2b2b2b2b-0000-4000-8000-000000000002', 'address': '127.0.0.2', 'datacenter': 'dc1',
     'rack': 'r2', 'tokens': ['-500']},
    {'host_id': '3c3c3c3c-0000-4000-8000-000000000003', 'address': '127.0.0.3', 'datacenter': 'dc2',
     'rack': 'r1', 'tokens': ['7000']},
]
SCHEMA = '5a5a5a5a-1111-3222-9333-444444444444'


@pytest.fixture
def cluster(tmp_path):
    """(ring file, data directories of each node): three nodes, each with snapshot nightly-1."""
    ring = tmp_path / 'ring.json'
    ring.write_text(json.dumps({'cluster': 'Shop Cluster', 'schema_version': SCHEMA, 'nodes': NODES}))
    dirs = [sample_dirs(make_sample(str(tmp_path / f'node{i}'), '--data-kib', '16', '--data-dirs', '1',
                                    '--keyspaces', '1', '--tables', '2', '--sstables', '1', '--no-index',
                                    '--no-clutter', '--seed', str(70 + i)))
            for i in range(3)]
    return str(ring), dirs


def node_env(ring, i, env=None):
    return dict(env or os.environ, NODETOOL_STANDIN_RING=ring, NODETOOL_STANDIN_NODE=NODES[i]['address'])


def create_args(store, dirs, *extra):
    return ['create', '--store', store, *data_dir_args(dirs), '--snapshot', 'nightly-1', '--name', 'day1',
            '--nodetool', NODETOOL, *extra]


def create_on(store, cluster, i, env=None, check=True, extra=()):
    ring, dirs = cluster
    return cb(*create_args(store, dirs[i], *extra), env=node_env(ring, i, env), check=check)


def groups(store, env=None):
    return json.loads(cb('list', '--store', store, '--json', env=env).stdout)


def test_three_nodes_make_one_cluster_backup(store, cluster):
    for i in range(3):
        create_on(store, cluster, i)
    for i in range(3):  # each node's manifest under the name, by host id
        assert os.path.exists(os.path.join(store, 'backups', 'day1', NODES[i]['host_id'] + '.json'))
    [g] = groups(store)
    assert (g['name'], g['cluster'], g['nodes_done'], g['nodes_expected'], g['missing'], g['encrypted']) == \
        ('day1', 'Shop Cluster', 3, 3, [], False)
    assert sorted(n['host_id'] for n in g['nodes']) == [n['host_id'] for n in NODES]
    assert g['bytes'] == sum(n['bytes'] for n in g['nodes']) and g['first_created'] <= g['last_created']
    text = cb('list', '--store', store).stdout.splitlines()
    assert text[1].split()[0] == 'day1' and ' 3/3 ' in text[1] and text[1].endswith('complete')
    p = cb('status', '--store', store, 'day1')
    assert p.returncode == 0 and p.stdout.startswith('day1: 3 of 3 nodes committed')
    s = json.loads(cb('status', '--store', store, 'day1', '--json').stdout)
    assert s['complete'] and (s['nodes_done'], s['nodes_expected'], s['missing']) == (3, 3, [])


def test_two_of_three_status_names_the_missing_node(store, cluster):
    create_on(store, cluster, 0)
    create_on(store, cluster, 2)
    p = cb('status', '--store', store, 'day1', check=False)
    assert p.returncode == 1 and p.stdout.startswith('day1: 2 of 3 nodes committed')
    [missing] = [l for l in p.stdout.splitlines() if 'MISSING' in l]
    assert NODES[1]['address'] in missing and NODES[1]['host_id'] in missing
    s = json.loads(cb('status', '--store', store, 'day1', '--json', check=False).stdout)
    assert not s['complete'] and [m['host_id'] for m in s['missing']] == [NODES[1]['host_id']]
    assert s['missing'][0]['address'] == '127.0.0.2' and s['missing'][0]['datacenter'] == 'dc1'
    [g] = groups(store)
    assert (g['nodes_done'], g['nodes_expected']) == (2, 3)
    text = cb('list', '--store', store).stdout.splitlines()
    assert ' 2/3 ' in text[1] and text[1].endswith('PARTIAL')
    assert text[2] == f'  missing: 127.0.0.2 (host id {NODES[1]["host_id"]})'
    # the third commits later: complete
    create_on(store, cluster, 1)
    assert cb('status', '--store', store, 'day1').returncode == 0
    # no such backup: 3
    p = cb('status', '--store', store, 'day9', check=False)
    assert p.returncode == 3 and 'day9' in p.stderr and len(p.stderr.splitlines()) == 1


def packs_of(store):
    return {os.path.join(d, n) for d, _, names in os.walk(os.path.join(store, 'packs')) for n in names}


def test_status_says_a_node_backup_whose_pack_is_gone_is_incomplete(store, cluster):
    """status said 'complete': true, exit 0, for a cluster backup one of whose node backups had
    lost its pack (list said INCOMPLETE); the rollback playbook gates its TRUNCATE on status."""
    create_on(store, cluster, 0)
    before = packs_of(store)
    create_on(store, cluster, 1)
    node1 = packs_of(store) - before  # its data is its own: packs of its own
    create_on(store, cluster, 2)
    assert node1 and cb('status', '--store', store, 'day1').returncode == 0
    for f in node1:
        os.unlink(f)
    p = cb('status', '--store', store, 'day1', check=False)
    lines = p.stdout.splitlines()
    assert p.returncode == 1 and lines[0] == 'day1: 3 of 3 nodes committed'
    assert [l.split()[0] for l in lines[1:4]] == ['done', 'INCOMPLETE', 'done']
    assert NODES[1]['host_id'] in lines[2] and 'cassbackup check' in lines[-1]
    s = json.loads(cb('status', '--store', store, 'day1', '--json', check=False).stdout)
    assert not s['complete'] and s['nodes_incomplete'] == 1 and s['missing'] == []
    assert [n['host_id'] for n in s['nodes'] if not n['complete']] == [NODES[1]['host_id']]


def test_a_host_id_in_capitals_is_the_nodes_own(store, cluster, tmp_path):
    """host_id was taken as given: a node's own host id in capitals (from the config) made its
    backup a stranger to the ring, and status reported the node MISSING, exit 1; 'zz' was
    stored as a host id. A host id is now a UUID, kept as Cassandra spells it."""
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'host_id = {NODES[0]["host_id"].upper()}\n')
    ring, dirs = cluster
    cb('--config', conf, *create_args(store, dirs[0]), env=node_env(ring, 0))
    for i in (1, 2):
        create_on(store, cluster, i)
    assert os.path.exists(os.path.join(store, 'backups', 'day1', NODES[0]['host_id'] + '.json'))
    assert cb('status', '--store', store, 'day1').stdout.startswith('day1: 3 of 3 nodes committed')
    for bad in ('zz', '{' + NODES[0]['host_id'] + '}', NODES[0]['host_id'].replace('-', '')):
        p = cb(*create_args(store, dirs[0]), '--host-id', bad, env=node_env(ring, 0), check=False)
        assert p.returncode == 2 and 'a host id is a UUID' in p.stderr, p.stderr
    seg = tmp_path / 'CommitLog-7-1.log'
    seg.write_bytes(b'')
    p = cb('archive-commitlog', '--store', store, '--host-id', 'zz', str(seg), seg.name, check=False)
    assert p.returncode == 2 and 'a host id is a UUID' in p.stderr, p.stderr


def test_a_node_an_older_cassbackup_kept_in_capitals_is_one_node_of_the_cluster(store, cluster):
    """A cluster backup one of whose nodes an older cassbackup made with its host id in
    capitals (backups/day1/<ID>.json, its ring in capitals too), the others made now: status
    said 3 of 6 nodes, each of them both committed and MISSING, exit 1, and list said 3/6."""
    for i in range(3):
        create_on(store, cluster, i)
    h = NODES[1]['host_id']
    path = os.path.join(store, 'backups', 'day1', h + '.json')
    doc = json.load(open(path))
    doc['host_id'] = h.upper()
    for n in doc['ring']:
        n['host_id'] = n['host_id'].upper()
    os.unlink(path)
    rewrite_manifest(os.path.join(store, 'backups', 'day1', h.upper() + '.json'), doc)
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(os.path.join(store, 'catalog.db' + suffix)):
            os.unlink(os.path.join(store, 'catalog.db' + suffix))
    p = cb('status', '--store', store, 'day1')
    assert p.stdout.startswith('day1: 3 of 3 nodes committed') and 'MISSING' not in p.stdout, p.stdout
    [g] = groups(store)
    assert (g['nodes_done'], g['nodes_expected'], g['missing']) == (3, 3, []), g


def test_show_json_records_the_nodes_identity(store, cluster):
    ring, dirs = cluster
    env = dict(node_env(ring, 1), NODETOOL_STANDIN_RELEASE='5.0.2')
    cb(*create_args(store, dirs[1]), env=env)
    [b] = json.loads(cb('show', '--store', store, 'day1', '--json').stdout)
    n = NODES[1]
    assert (b['host_id'], b['address'], b['datacenter'], b['rack'], b['cluster']) == \
        (n['host_id'], n['address'], n['datacenter'], n['rack'], 'Shop Cluster')
    assert b['tokens'] == n['tokens'] and b['cassandra_version'] == '5.0.2'
    assert b['schema_version'] == SCHEMA and b['ref'] == f'day1/{n["host_id"]}'
    assert b['ring'] == [{k: x[k] for k in ('host_id', 'address', 'datacenter', 'rack')} for x in NODES]
    want = snapshot_tables(dirs[1], 'nightly-1')
    assert {(t['keyspace'], t['table']) for t in b['tables']} == set(want)
    for t in b['tables']:
        files = want[(t['keyspace'], t['table'])]
        assert t['files'] == len(files) and t['bytes'] == sum(os.path.getsize(p) for p in files.values())
    text = cb('show', '--store', store, 'day1').stdout
    assert f'host id          {n["host_id"]}' in text and 'rack             r2' in text


def test_same_node_same_name_refused_other_nodes_not(store, cluster):
    create_on(store, cluster, 0)
    p = create_on(store, cluster, 0, check=False)
    assert p.returncode == 1 and 'backup day1 of node ' + NODES[0]['host_id'] + ' already exists' in p.stderr
    assert create_on(store, cluster, 1).returncode == 0


def test_names_with_several_nodes_pick_or_take_all(store, cluster, tmp_path):
    for i in range(3):
        create_on(store, cluster, i)
    # restore (without nodetool telling which node this is) and export need one node
    for cmd in (['export', '--store', store, 'day1', '-o', str(tmp_path / 'x.tar')],
                ['restore', '--store', store, 'day1', '--data-dir', dirs_of(cluster)[0][0], '--dry-run']):
        p = cb(*cmd, check=False)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
        assert 'has 3 node backups' in p.stderr and all(n['host_id'] in p.stderr for n in NODES)
    # --node by address, host id prefix or whole host id
    cb('export', '--store', store, 'day1', '--node', '127.0.0.2', '-o', str(tmp_path / 'b.tar'))
    out = subprocess.run(['tar', '-tf', str(tmp_path / 'b.tar')], capture_output=True, text=True).stdout
    assert any(l.endswith('-Data.db') for l in out.splitlines())
    p = cb('export', '--store', store, 'day1', '--node', 'nope', '-o', str(tmp_path / 'c.tar'), check=False)
    assert p.returncode == 3 and 'none is of --node nope' in p.stderr
    # verify takes every node's backup of the name
    p = cb('verify', '--store', store, 'day1')
    assert p.stdout.splitlines()[-1].startswith('6 tables ok, 0 failed in 3 backups')
    p = cb('verify', '--store', store, 'day1', '--node', '3c3c')
    assert p.stdout.splitlines()[-1].startswith('2 tables ok, 0 failed in 1 backup')
    # forget --node removes that node's only; then the name is partial
    cb('forget', '--store', store, 'day1', '--node', NODES[2]['host_id'])
    [g] = groups(store)
    assert g['nodes_done'] == 2 and [m['address'] for m in g['missing']] == ['127.0.0.3']
    cb('forget', '--store', store, 'day1')
    assert groups(store) == []


def test_a_node_backup_that_cannot_be_read_fails_its_name(store, cluster, tmp_path):
    """One node's manifest of day1 damaged: verify day1 checked the others and exited 0, and
    --node of that node said "none is of --node", exit 3, as if it had never been made. Both
    now say which manifest cannot be read, exit 1; another node's, named, reads on."""
    for i in range(3):
        create_on(store, cluster, i)
    path = os.path.join(store, 'backups', 'day1', NODES[0]['host_id'] + '.json')
    doc = bytearray(read(path))
    doc[doc.index(b'"snapshot_tag"') + 20] ^= 1
    with open(path, 'wb') as f:
        f.write(doc)
    key = os.path.relpath(path, store)
    for args in (['verify', 'day1'], ['verify', 'day1', '--node', NODES[0]['host_id']],
                 ['export', 'day1', '--node', NODES[0]['address'], '-o', str(tmp_path / 'x.tar')]):
        p = cb(args[0], '--store', store, *args[1:], check=False)
        assert p.returncode == 1 and p.stderr.count('\n') == 1, (args, p.stderr)
        assert f'backup day1 of {store} cannot be read: {key}: ' in p.stderr, (args, p.stderr)
    assert not os.path.exists(tmp_path / 'x.tar')
    p = cb('verify', '--store', store, 'day1', '--node', NODES[1]['host_id'])
    assert p.stdout.splitlines()[-1].startswith('2 tables ok, 0 failed in 1 backup')


def test_restore_takes_this_nodes_backup_and_another_only_on_purpose(store, cluster):
    """On a node of the cluster, restore NAME restores that node's backup (its host id as
    nodetool info tells); another node's backup has other tokens and replicas: refused unless
    --from-node says so."""
    ring, dirs = cluster
    for i in range(3):
        create_on(store, cluster, i)
    live = dirs[1][0]  # node 2's own data directory: its tables are there
    base = ['restore', '--store', store, 'day1', '--data-dir', live, '--nodetool', NODETOOL, '--json']
    doc = json.loads(cb(*base, '--dry-run', env=node_env(ring, 1)).stdout)
    assert doc['tables'] and all(t['files_copied'] == 0 for t in doc['tables'])  # its own: all there
    p = cb(*base, '--dry-run', '--node', '127.0.0.1', env=node_env(ring, 1), check=False)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1
    assert 'another node' in p.stderr and f'--from-node {NODES[0]["host_id"]}' in p.stderr
    doc = json.loads(cb(*base, '--dry-run', '--from-node', '127.0.0.1', env=node_env(ring, 1)).stdout)
    assert sum(t['files_copied'] for t in doc['tables']) > 0  # node 1's sstables are not here
    p = cb(*base, '--node', '127.0.0.2', '--from-node', '127.0.0.1', env=node_env(ring, 1), check=False)
    assert p.returncode == 2 and 'give the node once' in p.stderr


def test_load_streams_every_nodes_backup_to_a_cluster_of_another_shape(store, cluster, tmp_path):
    """Three nodes' backups onto a cluster of two: each node's sstables streamed once, each from
    its own node's directory in the mount, with a record per node; a re-run loads nothing."""
    import socket
    from test_restore_load import LOADER, log_lines, sha
    ring, dirs = cluster
    for i in range(3):
        create_on(store, cluster, i)
    host = socket.gethostname()  # the simulated nodes share it: node directories end in host ids
    expect = {f'{host}-{n["host_id"][:8]}/{ks}.{t}': {rel: sha(p) for rel, p in files.items()}
              for i, n in enumerate(NODES) for (ks, t), files in snapshot_tables(dirs[i], 'nightly-1').items()}
    (tmp_path / 'expect.json').write_text(json.dumps(expect))
    (tmp_path / 'st').mkdir()
    env = dict(os.environ, SSTABLELOADER_STANDIN_EXPECT=str(tmp_path / 'expect.json'),
               SSTABLELOADER_STANDIN_STATE=str(tmp_path / 'st'), SSTABLELOADER_STANDIN_LOG=str(tmp_path / 'l.log'))
    args = ['load', '--store', store, 'day1', '--hosts', '10.9.0.1,10.9.0.2', '--sstableloader', LOADER,
            '--state-dir', str(tmp_path / 'state')]
    p = cb(*args, env=env)
    calls = log_lines(env['SSTABLELOADER_STANDIN_LOG'])
    got = sorted(f'{os.path.basename(os.path.dirname(os.path.dirname(c["dir"])))}/{c["keyspace"]}.{c["table"]}'
                 for c in calls)
    assert got == sorted(expect)  # every node's every table, once
    assert p.stdout.count(' loaded, 0 already loaded before (skipped), 0 failed') == 3
    assert len(os.listdir(tmp_path / 'state')) == 6  # a record and a log directory per node
    p = cb(*args, '--json', env=env)
    docs = json.loads(p.stdout)
    assert len(docs) == 3 and {d['node'] for d in docs} == {host}
    assert sorted(d['host_id'] for d in docs) == sorted(n['host_id'] for n in NODES)
    assert all(t['status'] == 'ok' and t['loaded_before'] for d in docs for t in d['tables'])
    assert len(log_lines(env['SSTABLELOADER_STANDIN_LOG'])) == len(calls)  # nothing streamed again
    # one node's backup alone, by --node
    p = cb(*args, '--node', '127.0.0.3', '--force', env=env)
    assert ' of node 127.0.0.3 into ' in p.stdout
    assert len(log_lines(env['SSTABLELOADER_STANDIN_LOG'])) == len(calls) + 2
    p = cb(*args, '--status-file', str(tmp_path / 's.json'), env=env, check=False)
    assert p.returncode == 2 and '--status-file names one' in p.stderr


def dirs_of(cluster):
    return cluster[1]


def concurrent_creates(store, cluster, env=None):
    ring, dirs = cluster
    procs = [subprocess.Popen([CASSBACKUP, *node_files_off(create_args(store, dirs[i]))], env=node_env(ring, i, env),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    for p in procs:
        out, err = p.communicate()
        assert p.returncode == 0, err
        assert err == ''


def test_concurrent_creates_of_one_name(store, cluster):
    concurrent_creates(store, cluster)
    [g] = groups(store)
    assert (g['nodes_done'], g['nodes_expected'], g['complete']) == (3, 3, True)
    assert cb('status', '--store', store, 'day1').returncode == 0
    assert cb('check', '--store', store, '--read-data').returncode == 0


def test_concurrent_creates_of_one_name_on_s3(tmp_path, cluster, binaries):
    from test_s3 import moto, s3_env
    with moto(tmp_path) as (port, key, secret):
        env = s3_env(port, key, secret, tmp_path / 'cache')
        loc = 's3://cbtest/stores/prod'
        cb('init', '--store', loc, env=env)
        concurrent_creates(loc, cluster, env)
        [g] = groups(loc, env)
        assert (g['nodes_done'], g['nodes_expected'], g['complete']) == (3, 3, True)
        assert cb('status', '--store', loc, 'day1', env=env).returncode == 0
        # another machine, with no catalog yet, tells the same from the store alone
        env2 = dict(env, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache2'))
        assert groups(loc, env2) == groups(loc, env)


def test_old_layout_store_still_read(store, cluster, tmp_path):
    """A store written before cluster backups keeps backups/NAME.json: listed, reindexed,
    verified, mounted and forgotten as before; a node backup of the same name by another node
    joins it as one cluster backup."""
    ring, dirs = cluster
    cb('create', '--store', store, *data_dir_args(dirs[0]), '--snapshot', 'nightly-1', '--name', 'old',
       '--nodetool', str(tmp_path / 'no-nodetool'), '--node', 'n0')
    nested = os.path.join(store, 'backups', 'old', 'n0.json')
    os.rename(nested, os.path.join(store, 'backups', 'old.json'))
    os.rmdir(os.path.join(store, 'backups', 'old'))
    p = cb('reindex', '--store', store)
    assert p.stdout.startswith(f'reindexed {store}: 1 backup')
    [g] = groups(store)
    assert g['name'] == 'old' and g['nodes'][0]['ref'] == 'old' and g['nodes_expected'] is None
    assert cb('verify', '--store', store, 'old').returncode == 0
    want = snapshot_tables(dirs[0], 'nightly-1')
    (ks, t), files = sorted(want.items())[0]
    name = sorted(files)[0]
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert read(m.path('old', ks, t, name)) == read(files[name])
    # the same node again under the name: refused, as before
    p = cb('create', '--store', store, *data_dir_args(dirs[0]), '--snapshot', 'nightly-1', '--name', 'old',
           '--nodetool', str(tmp_path / 'no-nodetool'), '--node', 'n0', check=False)
    assert p.returncode == 1 and 'already exists' in p.stderr
    cb('forget', '--store', store, 'old')
    assert groups(store) == [] and not os.path.exists(os.path.join(store, 'backups', 'old.json'))


def xattrs(path):
    return {k: os.getxattr(path, k).decode() for k in os.listxattr(path)}


def test_mount_names_a_node_apart_from_one_whose_own_name_it_would_take(store, cluster, tmp_path):
    """Node A is called 'cass-2b2b2b2b'; B and C are both 'cass', B's host id beginning 2b2b2b2b.
    The mount named B's directory 'cass-2b2b2b2b', A's own name: backups/day1 failed to list
    (EIO, 'a damaged catalog: reindex', which changed nothing), and A's backup was out of
    reach there. B's name now takes more of its host id."""
    for i, name in enumerate(('cass-2b2b2b2b', 'cass', 'cass')):
        create_on(store, cluster, i, extra=('--node', name))
    with mounted(store, str(tmp_path / 'mnt')) as m:
        day1 = os.path.join(m.mnt, 'backups', 'day1')
        names = sorted(os.listdir(day1))
        assert names == ['cass-2b2b2b2b', 'cass-2b2b2b2b-0', 'cass-3c3c3c3c']
        ids = [xattrs(os.path.join(day1, n))['user.cassbackup.host_id'] for n in names]
        assert ids == [NODES[0]['host_id'], NODES[1]['host_id'], NODES[2]['host_id']]


def test_mount_names_a_node_without_a_host_id_beside_one_of_its_name(store, cluster, tmp_path):
    """Two node backups 'cass', one without a host id (its key is its name, shorter than the 8
    characters of key a name takes): the first version of the fix above showed it nowhere."""
    _, dirs = cluster
    common = ['--snapshot', 'nightly-1', '--name', 'day1', '--cluster', 'c1', '--datacenter', 'dc1',
              '--nodetool', '/bin/false', '--node', 'cass']
    cb('create', '--store', store, *data_dir_args(dirs[0]), *common, '--host-id', NODES[1]['host_id'])
    cb('create', '--store', store, *data_dir_args(dirs[1]), *common)
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert sorted(os.listdir(os.path.join(m.mnt, 'backups', 'day1'))) == ['cass-2b2b2b2b', 'cass-cass']
        assert sorted(os.listdir(os.path.join(m.mnt, 'clusters', 'c1', 'day1', 'dc1'))) == \
            ['cass-2b2b2b2b', 'cass-cass']


def test_mount_shows_nodes_and_the_cluster_view(store, cluster, tmp_path):
    """/backups/<name>/ of node backups that recorded a ring of several nodes: one directory per
    node (node name, with the host id's first 8 characters when node names collide, as here:
    every simulated node runs on this machine). /clusters/<cluster>/<name>/<dc>/<node>/ shows the
    same bytes. The backup's directory carries what was recorded of the node as xattrs."""
    ring, dirs = cluster
    host = os.uname().nodename
    with mounted(store, str(tmp_path / 'mnt')) as m:
        create_on(store, cluster, 0)
        # the first node backup of a name whose ring has three nodes: already a directory of
        # node backups, so its shape does not change when the others come
        assert os.listdir(m.path('day1')) == [host]
        want = snapshot_tables(dirs[0], 'nightly-1')
        (ks, t), files = sorted(want.items())[0]
        f = sorted(files)[0]
        assert read(m.path('day1', host, ks, t, f)) == read(files[f])
        x = xattrs(m.path('day1', host))
        n = NODES[0]
        assert (x['user.cassbackup.host_id'], x['user.cassbackup.cluster'], x['user.cassbackup.datacenter'],
                x['user.cassbackup.rack']) == (n['host_id'], 'Shop Cluster', 'dc1', 'r1')
        assert x['user.cassbackup.tokens'] == ' '.join(n['tokens'])
        assert x['user.cassbackup.release_version'] == '4.1.3' and x['user.cassbackup.schema_version'] == SCHEMA
        # two more nodes commit while mounted: one directory per node, told apart by host id
        # (all three simulated nodes have this machine's name)
        create_on(store, cluster, 1)
        create_on(store, cluster, 2)
        entries = sorted(os.listdir(m.path('day1')))
        assert entries == sorted(f'{host}-{x["host_id"][:8]}' for x in NODES), entries
        for i, x in enumerate(NODES):
            d = m.path('day1', f'{host}-{x["host_id"][:8]}')
            assert xattrs(d)['user.cassbackup.host_id'] == x['host_id']
            want = snapshot_tables(dirs[i], 'nightly-1')
            for (ks, t), files in want.items():
                for name, src in files.items():
                    assert read(os.path.join(d, ks, t, name)) == read(src)
        # the cluster view: same bytes, by datacenter
        root = os.path.join(m.mnt, 'clusters')
        assert os.listdir(root) == ['Shop Cluster']
        assert os.listdir(os.path.join(root, 'Shop Cluster')) == ['day1']
        assert sorted(os.listdir(os.path.join(root, 'Shop Cluster', 'day1'))) == ['dc1', 'dc2']
        dc1 = os.path.join(root, 'Shop Cluster', 'day1', 'dc1')
        assert sorted(os.listdir(dc1)) == sorted(f'{host}-{x["host_id"][:8]}' for x in NODES[:2])
        [only] = os.listdir(os.path.join(root, 'Shop Cluster', 'day1', 'dc2'))
        assert only == host  # alone in its datacenter: no collision to tell apart
        d = os.path.join(root, 'Shop Cluster', 'day1', 'dc2', only)
        assert xattrs(d)['user.cassbackup.host_id'] == NODES[2]['host_id']
        want = snapshot_tables(dirs[2], 'nightly-1')
        for (ks, t), files in want.items():
            for name, src in files.items():
                p = os.path.join(d, ks, t, name)
                assert read(p) == read(src)
                twin = m.path('day1', f'{host}-{NODES[2]["host_id"][:8]}', ks, t, name)
                assert os.stat(p).st_ino != os.stat(twin).st_ino  # a view of its own


def test_node_directories_of_host_ids_alike_in_their_first_8_characters(store, tmp_path):
    """Nodes that share a node name were told apart by the first 8 characters of their host
    ids only: ids alike in their first 8 characters gave two directories of one name, and the mount answered EIO for the whole backup,
    calling the catalog damaged. As many characters as tell them apart are taken."""
    ids = ['1a1a1a1a-0000-4000-8000-000000000000', '1a1a1a1a-0000-4000-8000-000000000001',
           '1a1a1a1a-0000-4000-8000-000000000010']
    srcs = {}
    for i, hid in enumerate(ids):
        src = str(tmp_path / f'src{i}')
        make_sample(src, '--data-kib', '16', '--data-dirs', '1', '--keyspaces', '1', '--tables', '1',
                    '--sstables', '1', '--no-index', '--no-clutter', '--seed', str(70 + i))
        srcs[hid] = src
        cb('create', '--store', store, '--name', 'day1', *data_dir_args(sample_dirs(src)), '--snapshot',
           'nightly-1', '--nodetool', '/bin/false', '--node', 'dbhost', '--host-id', hid, '--no-schema',
           '--no-conf')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        want = {d: xattrs(m.path('day1', d))['user.cassbackup.host_id'] for d in os.listdir(m.path('day1'))}
        assert sorted(want.values()) == ids
        for d, hid in want.items():
            assert d.startswith('dbhost-1a1a1a1a-') and hid.startswith(d[len('dbhost-'):])
            for (ks, t), files in snapshot_tables(sample_dirs(srcs[hid]), 'nightly-1').items():
                for name, src in files.items():
                    assert read(m.path('day1', d, ks, t, name)) == read(src)


def test_cluster_view_shows_clusters_and_datacenters_of_any_name(store, cluster, tmp_path):
    """Cassandra takes any cluster_name and datacenter: a cluster 'prod/eu' or a datacenter
    '..' cannot be a directory name, and their node backups were left out of /clusters
    without a word. They show escaped: '/' as %2F, '%' as %25, '.' and '..' as %2E."""
    ring, dirs = cluster
    nodes = [dict(NODES[0]), dict(NODES[2], datacenter='..')]
    with open(ring, 'w') as f:
        json.dump({'cluster': 'prod/eu 100%', 'schema_version': SCHEMA, 'nodes': nodes}, f)
    for i in (0, 2):
        create_on(store, cluster, i)
    with mounted(store, str(tmp_path / 'mnt')) as m:
        root = os.path.join(m.mnt, 'clusters')
        assert os.listdir(root) == ['prod%2Feu 100%25']
        day = os.path.join(root, 'prod%2Feu 100%25', 'day1')
        assert sorted(os.listdir(day)) == ['%2E%2E', 'dc1']
        [node] = os.listdir(os.path.join(day, '%2E%2E'))
        d = os.path.join(day, '%2E%2E', node)
        assert xattrs(d)['user.cassbackup.host_id'] == NODES[2]['host_id']
        for (ks, t), files in snapshot_tables(dirs[2], 'nightly-1').items():
            for name, src in files.items():
                assert read(os.path.join(d, ks, t, name)) == read(src)


@pytest.mark.parametrize('names', [('unknown-cluster', ''), ('/' * 120, 'Shop'), ('x' * 240 + '%' * 10, 'x' * 240 + '%' * 9 + '/'),
                                   ('%' * 60 + 'a' * 19 + 'é' * 40, '%' * 66 + 'é' * 40)],
                         ids=['unknown', 'long', 'long-alike', 'cut-between-characters'])
def test_cluster_view_names_never_meet_nor_overflow(store, cluster, tmp_path, names):
    """A cluster named 'unknown-cluster' and one with no name recorded shared one directory of
    /clusters (listed twice, one node backup unreachable); a cluster name whose escaped form
    passed 255 bytes (120 '/' become 360) was left out, without a word. Each shows, apart."""
    _, dirs = cluster
    want = {}
    for i, name in enumerate(names):
        ring = tmp_path / f'ring{i}.json'
        ring.write_text(json.dumps({'cluster': name, 'schema_version': SCHEMA, 'nodes': NODES}))
        cb(*create_args(store, dirs[i]), env=node_env(str(ring), i))
        want[NODES[i]['host_id']] = dirs[i]
    with mounted(store, str(tmp_path / 'mnt')) as m:
        root = os.path.join(m.mnt, 'clusters')
        clusters = os.listdir(root)
        # names of valid UTF-8 (surrogateescape gives an invalid one's bytes as surrogates,
        # which encode() refuses), not cut inside an escape
        assert len(clusters) == 2 and all(len(c.encode()) <= 255 for c in clusters), clusters
        assert all(not re.search(r'%(?![0-9A-F]{2}|~)', c) for c in clusters), clusters
        seen = {}
        for c in clusters:
            [dc] = os.listdir(os.path.join(root, c, 'day1'))
            [node] = os.listdir(os.path.join(root, c, 'day1', dc))
            d = os.path.join(root, c, 'day1', dc, node)
            seen[xattrs(d)['user.cassbackup.host_id']] = d
        assert sorted(seen) == sorted(want)
        for hid, d in seen.items():
            for (ks, t), files in snapshot_tables(want[hid], 'nightly-1').items():
                for name, src in files.items():
                    assert read(os.path.join(d, ks, t, name)) == read(src)


def test_cluster_view_of_a_planted_name_stays_in_bounds(store, cluster, tmp_path):
    """The catalog is a cache that can be damaged or planted: a cluster name of 300 bytes that
    continue a UTF-8 character and begin none made the view's cut walk back past the start of
    its buffer (a read before it; AddressSanitizer stops the mount there). The cut backs off
    at most the 3 bytes a character can continue by."""
    import sqlite3
    create_on(store, cluster, 0)
    db = sqlite3.connect(os.path.join(store, 'catalog.db'))
    db.execute('UPDATE backups SET cluster = ?', (b'\x80' * 300,))
    db.commit()
    db.close()
    with mounted(store, str(tmp_path / 'mnt')) as m:
        [name] = os.listdir(os.path.join(m.mnt, 'clusters'))
        assert len(os.fsencode(name)) <= 255 and '%~' in name, name


def at_clock(when, env=None):
    """An environment whose processes see the wall clock at `when` (UTC, ISO 8601): the
    clockshift shim moves their clock by the difference, computed now."""
    import calendar
    import time
    from conftest import BUILD, preload
    assert os.path.exists(os.path.join(BUILD, 'tests', 'libclockshift.so')), 'the clockshift shim is not built'
    target = calendar.timegm(time.strptime(when, '%Y-%m-%dT%H:%M:%SZ'))
    e = dict(env or os.environ, LD_PRELOAD=preload('clockshift'), CASSBACKUP_TEST_CLOCK_SHIFT=str(target - int(time.time())))
    if 'libasan' in e['LD_PRELOAD']:  # a sanitizer build: the nodetool stand-in (python) gets the
        # runtime preloaded too, and its leaks at exit would fail it (no host id: one node key)
        e['ASAN_OPTIONS'] = ':'.join(filter(None, [e.get('ASAN_OPTIONS', ''), 'detect_leaks=0']))
    return e


def test_name_template_in_time_slots(store, cluster, tmp_path):
    """name = nightly-%Y%m%d-%H with name_period = 6h: nodes whose timers fire in one 6-hour
    slot (UTC) make one cluster backup; the next slot makes the next."""
    ring, dirs = cluster
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'store = {store}\nname = nightly-%Y%m%d-%H\nname_period = 6h\n')
    def create(i, when):
        args = ['--config', conf, 'create', *data_dir_args(dirs[i]), '--snapshot', 'nightly-1',
                '--nodetool', NODETOOL, '--json']
        return json.loads(cb(*args, env=at_clock(when, node_env(ring, i))).stdout)['name']
    assert create(0, '2026-03-14T05:17:00Z') == 'nightly-20260314-00'
    assert create(1, '2026-03-14T00:03:00Z') == 'nightly-20260314-00'
    assert create(2, '2026-03-14T06:01:00Z') == 'nightly-20260314-06'
    by_name = {g['name']: g['nodes_done'] for g in groups(store)}
    assert by_name == {'nightly-20260314-00': 2, 'nightly-20260314-06': 1}
    # --name-period on the line wins; without a period the time is taken as it is
    p = cb('--config', conf, 'create', *data_dir_args(dirs[0]), '--snapshot', 'nightly-1', '--nodetool',
           NODETOOL, '--name-period', '1d', '--json', env=at_clock('2026-03-15T23:59:00Z', node_env(ring, 0)))
    assert json.loads(p.stdout)['name'] == 'nightly-20260315-00'
    # a period of months is refused, naming it; a template that makes no name too
    p = cb('--config', conf, 'create', *data_dir_args(dirs[0]), '--snapshot', 'nightly-1',
           '--name-period', '1m', check=False)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and '--name-period' in p.stderr
    p = cb('--config', conf, 'create', *data_dir_args(dirs[0]), '--snapshot', 'nightly-1',
           '--name', 'x %Y/%m', check=False)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and 'backup name' in p.stderr


def test_forget_takes_node_as_every_command_does(store, cluster):
    """forget --node PREFIX removed the backups of every node whose host id starts with it,
    exit 0, where export and restore refuse a prefix that names more than one node; and
    forget did not take a node's address, as every other command does."""
    ring, dirs = cluster
    nodes = [dict(n) for n in NODES]
    nodes[0]['host_id'], nodes[1]['host_id'] = ('5f1c0a5e-0000-4000-8000-000000000001',
                                                '5f1c9999-0000-4000-8000-000000000002')
    with open(ring, 'w') as f:
        json.dump({'cluster': 'Shop Cluster', 'schema_version': SCHEMA, 'nodes': nodes}, f)
    for i in range(3):
        create_on(store, cluster, i)
    p = cb('export', '--store', store, 'day1', '--node', '5f1c', '-o', os.devnull, check=False)
    assert p.returncode == 2 and 'names more than one of them' in p.stderr, p
    p = cb('list', '--store', store, '--node', '5f1c', check=False)  # it showed both, exit 0
    assert p.returncode == 2 and p.stdout == '' and p.stderr.count('\n') == 1, p
    assert '--node 5f1c names more than one node (host ids 5f1c0a5e-' in p.stderr, p
    for args in (['day1'], ['--keep-last', '1']):
        p = cb('forget', '--store', store, '--node', '5f1c', *args, check=False)
        assert p.returncode == 2 and p.stderr.count('\n') == 1, p
        assert ('--node 5f1c names more than one node (host ids 5f1c0a5e-0000-4000-8000-000000000001 and '
                '5f1c9999-0000-4000-8000-000000000002): give the whole host id; nothing forgotten') in p.stderr, p
        assert len(groups(store)[0]['nodes']) == 3
    out = cb('forget', '--store', store, '--node', '127.0.0.2', 'day1').stdout
    assert 'day1' in out
    left = sorted(n['host_id'] for n in groups(store)[0]['nodes'])
    assert left == sorted([nodes[0]['host_id'], nodes[2]['host_id']])
    assert len(json.loads(cb('list', '--store', store, '--node', '5f1c', '--json').stdout)) == 1
    cb('forget', '--store', store, '--node', '5f1c', 'day1')  # one node has it now: unambiguous
    assert [n['host_id'] for n in groups(store)[0]['nodes']] == [nodes[2]['host_id']]


def test_list_of_one_node_counts_the_nodes_of_its_cluster_backups(store, cluster):
    """list --node filtered node backups before grouping them: a cluster backup two of three
    nodes had committed was shown as 1/3 PARTIAL, naming the other committed node missing."""
    create_on(store, cluster, 0)
    create_on(store, cluster, 1)
    [g] = json.loads(cb('list', '--store', store, '--node', NODES[0]['address'], '--json').stdout)
    assert (g['nodes_done'], g['nodes_expected']) == (2, 3), g
    assert [m['host_id'] for m in g['missing']] == [NODES[2]['host_id']]
    assert [n['host_id'] for n in g['nodes']] == [NODES[0]['host_id']]  # only this node's backups
    text = cb('list', '--store', store, '--node', NODES[0]['address']).stdout.splitlines()
    assert ' 2/3 ' in text[1] and 'PARTIAL' in text[1], text
    assert text[2].strip().startswith('missing: 127.0.0.3'), text
    assert len(text) == 3, text
    assert json.loads(cb('list', '--store', store, '--node', NODES[2]['address'], '--json').stdout) == []


def test_status_counts_a_node_once_whatever_cluster_name_it_gave(store, cluster):
    """A node whose create gave another --cluster made status count the ring twice: '3 of 6
    nodes committed', the same host id both done and MISSING."""
    create_on(store, cluster, 0)
    create_on(store, cluster, 1)
    ring, dirs = cluster
    cb(*create_args(store, dirs[2], '--cluster', 'prodX'), env=node_env(ring, 2))
    p = cb('status', '--store', store, 'day1')
    assert p.stdout.startswith('day1: 3 of 3 nodes committed'), p.stdout
    assert 'MISSING' not in p.stdout and p.stdout.count('done') == 3, p.stdout


def test_the_backup_job_of_a_node_replaced_under_its_name_applies_its_retention(store, tmp_path):
    """A node replaced keeps its name (cassbackup.conf's node, its host name) and gets a new
    host id. The routine job then ran `forget --node NAME`, which names both the old and the
    new host's backups and is refused: exit 2 every night, and no retention ever again. The
    job forgets by the host id the backup it just made records."""
    src = make_sample(str(tmp_path / 'node'), '--data-kib', '16', '--data-dirs', '1', '--keyspaces', '1',
                      '--tables', '2', '--sstables', '1', '--no-index', '--no-clutter', '--seed', '77')
    dirs = sample_dirs(src)
    for d in dirs:  # the job takes its own snapshot (nodetool snapshot, the stand-in's)
        for root, subdirs, _ in os.walk(d):
            if 'snapshots' in subdirs:
                shutil.rmtree(os.path.join(root, 'snapshots'))
                subdirs.remove('snapshots')
    conf = tmp_path / 'cassbackup.conf'
    conf.write_text(f'store = {store}\ndata_dir = {dirs[0]}\nnodetool = {NODETOOL}\nkeep_last = 1\nnode = cass1\n')
    old, new = dict(NODES[0]), dict(NODES[0], host_id='9f9f9f9f-0000-4000-8000-0000000000ff')
    for name, n in (('day1', old), ('day2', new), ('day3', new)):
        ring = tmp_path / f'ring-{name}.json'
        ring.write_text(json.dumps({'cluster': 'Shop Cluster', 'schema_version': SCHEMA, 'nodes': [n]}))
        env = dict(os.environ, NODETOOL_STANDIN_RING=str(ring), NODETOOL_STANDIN_NODE=n['address'],
                   NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs))
        cb('--config', str(conf), 'backup', '--name', name, env=env)
    kept = sorted((b['name'], n['host_id']) for b in groups(store) for n in b['nodes'])
    assert kept == [('day1', old['host_id']), ('day3', new['host_id'])], kept


def test_status_says_node_backups_of_other_tables(store, cluster):
    """One node's backup of the name was made with --table of one table only: status said "2
    of 2 nodes committed", exit 0, and the rollback playbook, which asks status, would truncate
    the other table across the cluster with one node's rows in no backup. Node backups of other
    tables than the first node's are named (TABLES), exit 1."""
    create_on(store, cluster, 0)
    create_on(store, cluster, 1, extra=('--table', 'shop.table1'))
    create_on(store, cluster, 2)
    p = cb('status', '--store', store, 'day1', check=False)
    assert p.returncode == 1, p.stdout
    lines = p.stdout.splitlines()
    assert lines[0] == 'day1: 3 of 3 nodes committed'
    [tables] = [l for l in lines if l.split()[0] == 'TABLES']
    assert NODES[1]['host_id'] in tables or '127.0.0.2' in tables, lines
    assert '1 node backup is of other tables than' in p.stdout
    st = json.loads(cb('status', '--store', store, 'day1', '--json', check=False).stdout)
    assert st['complete'] is False and st['nodes_of_other_tables'] == 1
