"""restore --whole-node: a node brought back, Cassandra stopped, onto empty data directories
(a replaced disk, new hardware), with every keyspace of its backup and the tokens it had."""
import json
import os
import shutil

import pytest

from conftest import REPO, cb, make_sample, sample_dirs

NODETOOL = os.path.join(REPO, 'tests', 'standins', 'nodetool')
TOKENS = ['-9223372036854775808', '-3074457345618258603', '3074457345618258602']
OWNER = 4321


def tree(root):
    """{relative path: bytes} of every file under root, and {relative dir: (uid, gid)}."""
    files, owners = {}, {}
    for d, dirs, names in os.walk(root):
        for n in dirs + names:
            p = os.path.join(d, n)
            st = os.lstat(p)
            owners[os.path.relpath(p, root)] = (st.st_uid, st.st_gid)
        for n in names:
            with open(os.path.join(d, n), 'rb') as f:
                files[os.path.relpath(os.path.join(d, n), root)] = f.read()
    return files, owners


def live_sstables(data):
    """What a whole-node restore must bring back: every table's snapshot files, under the
    table directory's own name, without the snapshot's manifest.json and schema.cql."""
    want = {}
    for ks in os.listdir(data):
        for t in os.listdir(os.path.join(data, ks)):
            snap = os.path.join(data, ks, t, 'snapshots', 'day1')
            for d, _, names in os.walk(snap):
                for n in names:
                    rel = os.path.relpath(os.path.join(d, n), snap)
                    if rel not in ('manifest.json', 'schema.cql'):
                        with open(os.path.join(d, n), 'rb') as f:
                            want[os.path.join(ks, t, rel)] = f.read()
    return want


def node_tree(base, *sample_args):
    """A node's data directory under base: a sample with snapshot day1, whose last keyspace is
    its system_schema."""
    out = make_sample(str(base / 'sample'), '--data-dirs', '1', '--keyspaces', '2', *sample_args,
                      '--tag', 'day1', '--no-clutter')
    data = sample_dirs(out)[0]
    os.rename(os.path.join(data, sorted(os.listdir(data))[-1]), os.path.join(data, 'system_schema'))
    return data


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    """A node's data directory with a system_schema keyspace, its snapshot day1, and a backup
    of it (--include-system, tokens recorded) in a store."""
    base = tmp_path_factory.mktemp('node')
    data = node_tree(base, '--tables', '2', '--sstables', '2', '--data-kib', '32')
    store = str(base / 'store')
    cb('init', '--store', store)
    tokens = base / 'tokens'
    tokens.write_text(' '.join(TOKENS))
    cb('create', '--store', store, '--data-dir', data, '--snapshot', 'day1', '--include-system',
       '--tokens', tokens, '--nodetool', '/nonexistent/nodetool')
    cb('create', '--store', store, '--data-dir', data, '--snapshot', 'day1', '--name', 'nosys',
       '--tokens', tokens, '--nodetool', '/nonexistent/nodetool')
    return {'store': store, 'data': data, 'want': live_sstables(data)}


def restore(node, target, *extra, check=True, env=None):
    e = dict(os.environ, NODETOOL_STANDIN_DOWN='1', **(env or {}))
    return cb('restore', '--store', node['store'], '--data-dir', target, '--whole-node',
              '--owner', f'{OWNER}:{OWNER}', '--nodetool', NODETOOL, *extra, check=check, env=e)


def test_whole_node_restore_brings_every_keyspace_back_with_its_tokens(node, tmp_path):
    target = tmp_path / 'data'
    target.mkdir()
    p = restore(node, target, 'day1')
    files, owners = tree(target)
    assert files == node['want']
    assert 'system_schema' in {k.split('/')[0] for k in files}
    assert set(owners.values()) == {(OWNER, OWNER)}
    assert f"num_tokens: 3\ninitial_token: {','.join(TOKENS)}\nauto_bootstrap: false\n" in p.stdout
    # run again (say, after it was interrupted): nothing copied twice, the same tree
    p = restore(node, target, 'day1')
    assert tree(target)[0] == node['want']
    assert 'already present' in p.stdout


def test_whole_node_restore_sets_the_tokens_in_cassandra_yaml(node, tmp_path):
    target = tmp_path / 'data'
    target.mkdir()
    conf = tmp_path / 'conf'
    conf.mkdir()
    yaml = conf / 'cassandra.yaml'
    before = ("cluster_name: 'Test Cluster'\n# initial_token:\nnum_tokens: 16\n"
              "initial_token: 42\nseed_provider:\n  - class_name: x\n")
    yaml.write_text(before)
    os.chmod(yaml, 0o640)
    restore(node, target, 'day1', '--set-tokens', '--cassandra-conf', conf)
    # num_tokens, the number of the node's tokens: Cassandra refuses to start with 16 and 3
    # initial tokens ("The number of initial tokens ... is different from num_tokens value")
    assert yaml.read_text() == ("cluster_name: 'Test Cluster'\n# initial_token:\nnum_tokens: 3\n"
                                f"initial_token: {','.join(TOKENS)}\nseed_provider:\n  - class_name: x\n"
                                "auto_bootstrap: false\n")
    assert os.stat(yaml).st_mode & 0o777 == 0o640
    assert (conf / 'cassandra.yaml.before-cassbackup').read_text() == before
    restore(node, target, 'day1', '--set-tokens', '--cassandra-conf', conf)  # a second run
    assert (conf / 'cassandra.yaml.before-cassbackup').read_text() == before
    assert yaml.read_text().count('initial_token: -') == 1


def test_whole_node_restore_refuses_a_data_directory_with_other_data(node, tmp_path):
    target = tmp_path / 'data'
    (target / 'other_ks' / 'users-0123456789abcdef0123456789abcdef').mkdir(parents=True)
    p = restore(node, target, 'day1', check=False)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1
    assert 'other_ks' in p.stderr and 'empty data directories' in p.stderr
    assert sorted(os.listdir(target)) == ['other_ks']


def test_whole_node_restore_refuses_a_node_that_ran_there(node, tmp_path):
    """A new machine where Cassandra started once (a package starts it on install): its own
    sstables sit in the system tables' directories, whose ids are the same on every node. The
    restore took them for its own directories and placed the backup's beside them, renamed:
    the node came back with the newer node's host id and tokens, exit 0. Refused now, in one
    line, nothing written; what an interrupted run of the backup placed is no obstacle."""
    target = tmp_path / 'data'
    target.mkdir()
    restore(node, target, 'day1')  # a first run, then a node of its own in one table
    [sys_table] = sorted(os.listdir(target / 'system_schema'))[:1]
    tdir = target / 'system_schema' / sys_table
    for comp in ('Data.db', 'TOC.txt'):
        (tdir / f'nb-9-big-{comp}').write_bytes(b'a fresh node of its own\n')
    before = tree(target)[0]
    p = restore(node, target, 'day1', check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and 'nb-9-big-' in p.stderr, p.stderr
    assert 'not this backup' in p.stderr and 'nothing was restored' in p.stderr, p.stderr
    assert tree(target)[0] == before
    # the same name as a backup's sstable, other bytes: the same refusal
    for n in list(os.listdir(tdir)):
        if n.startswith('nb-9-'):
            os.unlink(tdir / n)
    data = sorted(n for n in os.listdir(tdir) if n.endswith('-Data.db'))[0]
    (tdir / data).write_bytes(b'another node wrote this\n')
    p = restore(node, target, 'day1', check=False)
    assert p.returncode == 2 and data[:-len('Data.db')] + '*' in p.stderr, p.stderr
    assert 'not this backup' in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    # two data directories: the node's own sstables in the table's directory of the second,
    # the first (the backup's target) empty: Cassandra reads both, so the same refusal
    first, second = tmp_path / 'd1', tmp_path / 'd2'
    table = sorted(k for k in node['want'] if not k.startswith('system_schema/'))[0].split('/')[:2]
    (first / table[0] / table[1]).mkdir(parents=True)
    (second / table[0] / table[1]).mkdir(parents=True)
    (second / table[0] / table[1] / 'nb-9-big-Data.db').write_bytes(b'a node of its own\n')
    p = restore(node, first, 'day1', '--data-dir', second, check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f'{second}/{table[0]}/{table[1]} holds nb-9-big-Data.db' in p.stderr, p.stderr
    assert os.listdir(first / table[0] / table[1]) == []


def test_whole_node_restore_refuses_a_catalog_whose_table_id_is_not_the_manifests(node, tmp_path):
    """The table directories a whole-node restore makes are named by the catalog's table ids,
    which nothing checked against the manifest: a damaged or planted catalog put every table
    where Cassandra never reads it, exit 0."""
    import sqlite3
    store = str(tmp_path / 'store')
    shutil.copytree(node['store'], store)
    cb('list', '--store', store)  # the copy's catalog takes in its manifests' new versions
    with sqlite3.connect(os.path.join(store, 'catalog.db')) as c:
        c.execute("UPDATE tables SET table_id = 'deadbeefdeadbeefdeadbeefdeadbeef'")
    target = tmp_path / 'data'
    target.mkdir()
    p = restore(dict(node, store=store), target, 'day1', check=False)
    assert p.returncode != 0 and 'reindex' in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert os.listdir(target) == []


def test_whole_node_restore_without_node_refuses_a_backup_of_a_larger_ring(tmp_path):
    """A cluster backup of three nodes of which only one had committed: --whole-node without
    --node took that node's backup, its identity and tokens, onto whichever node ran it
    (exit 0); with two committed it refused. The ring recorded decides now."""
    nodes = [{'host_id': f'{c * 8}-0000-4000-8000-00000000000{k}', 'address': f'127.0.0.{k}',
              'datacenter': 'dc1', 'rack': 'r1', 'tokens': [str(-9000 + 4000 * k)]}
             for k, c in ((1, '1'), (2, '2'), (3, '3'))]
    ring = tmp_path / 'ring.json'
    ring.write_text(json.dumps({'cluster': 'C', 'schema_version': '5a5a5a5a-1111-3222-9333-444444444444',
                                'nodes': nodes}))
    data = node_tree(tmp_path, '--tables', '1', '--sstables', '1', '--data-kib', '16')
    store = str(tmp_path / 'store')
    cb('init', '--store', store)
    cb('create', '--store', store, '--data-dir', data, '--snapshot', 'day1', '--include-system',
       '--nodetool', NODETOOL, '--no-schema',
       env=dict(os.environ, NODETOOL_STANDIN_RING=str(ring), NODETOOL_STANDIN_NODE='127.0.0.1'))
    node = {'store': store}
    target = tmp_path / 'data'
    target.mkdir()
    p = restore(node, target, 'day1', check=False)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1
    assert 'cluster of 3 nodes' in p.stderr and '--node' in p.stderr and nodes[0]['host_id'] in p.stderr
    assert os.listdir(target) == []
    p = restore(node, target, 'day1', '--node', '127.0.0.1')  # named: that node's, on purpose
    assert 'initial_token: -5000' in p.stdout and os.listdir(target)


def test_whole_node_restore_refuses_while_cassandra_answers(node, tmp_path):
    target = tmp_path / 'data'
    target.mkdir()
    e = dict(os.environ, NODETOOL_STANDIN_DATA_DIRS=str(target))
    p = cb('restore', '--store', node['store'], '--data-dir', target, '--whole-node',
           '--owner', str(OWNER), '--nodetool', NODETOOL, 'day1', check=False, env=e)
    assert p.returncode == 2  # nothing done, as for a data directory not empty (it was 1)
    assert 'Cassandra is running on this node' in p.stderr and 'ReleaseVersion' in p.stderr
    assert os.listdir(target) == []


def test_whole_node_restore_refuses_a_backup_without_the_schema(node, tmp_path):
    target = tmp_path / 'data'
    target.mkdir()
    p = restore(node, target, 'nosys', check=False)
    # exit 2 as cassbackup(8) says, as for the node's other refusals (it was 1)
    assert p.returncode == 2 and p.stderr.count('\n') == 1, p.stderr
    assert 'system_schema' in p.stderr and '--include-system' in p.stderr
    assert os.listdir(target) == []


def test_whole_node_restore_onto_a_missing_data_directory_says_to_make_it(node, tmp_path):
    """A data directory not made yet (new hardware) was told to be moved aside."""
    p = restore(node, tmp_path / 'data', 'day1', check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1, p.stderr
    assert 'No such file or directory; make it, empty and owned by the user Cassandra runs as' in p.stderr
    assert 'move it aside' not in p.stderr and os.listdir(tmp_path) == []


def test_whole_node_restore_takes_no_table_selection(node, tmp_path):
    p = restore(node, tmp_path, 'day1', '--keyspace', 'system_schema', check=False)
    assert p.returncode == 2 and '--whole-node' in p.stderr


@pytest.mark.skipif(shutil.which('getent') and os.system('getent passwd cassandra >/dev/null') == 0,
                    reason='this machine has a cassandra user')
def test_whole_node_restore_without_a_cassandra_user_asks_for_an_owner(node, tmp_path):
    p = cb('restore', '--store', node['store'], '--data-dir', tmp_path, '--whole-node', 'day1',
           check=False)
    assert p.returncode == 2
    assert 'no user cassandra' in p.stderr and '--owner' in p.stderr


def test_whole_node_restore_dry_run_writes_nothing(node, tmp_path):
    target = tmp_path / 'data'
    target.mkdir()
    p = restore(node, target, 'day1', '--dry-run', '--json')
    assert os.listdir(target) == []
    doc = json.loads(p.stdout)
    assert doc['mode'] == 'whole-node' and doc['dry_run'] is True
    targets = {(t['keyspace'], t['table']): t['target'] for t in doc['tables']}
    want_dirs = {os.path.join(target, k.split('/')[0], k.split('/')[1]) for k in node['want']}
    assert set(targets.values()) == want_dirs
    assert 'system_schema' in {ks for ks, _ in targets}
    assert all(t['nodetool'] is None for t in doc['tables'])
    assert sum(t['files_copied'] for t in doc['tables']) == len(node['want'])
