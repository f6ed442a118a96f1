"""What a backup keeps of the node besides its sstables (issues 14 and 15): the keyspace DDL
(cqlsh DESCRIBE SCHEMA) as schema.cql and Cassandra's configuration directory as
cassandra-conf/, beside the keyspaces in the mount, private, deduplicated, kept by prune and
copy, and written back by restore --conf."""
import json
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import (CASSBACKUP, REPO, cb, data_dir_args, make_sample, manifest_path, mounted, read, rewrite_manifest,
                      sample_dirs)

CQLSH = os.path.join(REPO, 'tests', 'standins', 'cqlsh')
SCHEMA = {'keyspaces': {'shop': {
    'replication': {'class': 'org.apache.cassandra.locator.SimpleStrategy', 'replication_factor': '1'},
    'durable_writes': True,
    'types': ['CREATE TYPE shop.address (\n    street text,\n    city text\n);'],
    'tables': ["CREATE TABLE shop.orders (\n    id int PRIMARY KEY,\n    ship_to frozen<address>\n)"
               " WITH comment = 'a; tricky\n comment';"]}}}
YAML = b"cluster_name: 'Test Cluster'\nserver_encryption_options:\n  keystore_password: s3cret\n"


def as_nobody(*cmd):
    return subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', *cmd],
                          capture_output=True, text=True)


@pytest.fixture
def node(tmp_path):
    """A node: a data directory with one snapshot (readable by all, as a mount's backup
    directory then is), a configuration directory, and the schema cqlsh describes."""
    src = make_sample(str(tmp_path / 's'), '--data-kib', '64', '--data-dirs', '1', '--keyspaces', '1',
                      '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter')
    [d] = sample_dirs(src)
    os.chmod(d, 0o755)
    conf = tmp_path / 'conf'
    os.makedirs(conf / 'triggers')
    (conf / 'cassandra.yaml').write_bytes(YAML)
    (conf / 'cassandra-rackdc.properties').write_bytes(b'dc=dc1\nrack=rack1\n')
    (conf / 'jvm11-server.options').write_bytes(b'-Xss256k\n')
    for f in os.listdir(conf):
        if f != 'triggers':
            os.chmod(conf / f, 0o644)
            os.chown(conf / f, 4242, 4343)
    schema = tmp_path / 'schema.json'
    schema.write_text(json.dumps(SCHEMA))
    env = dict(os.environ, CQLSH_STANDIN_SCHEMA=str(schema))
    return {'dirs': [d], 'conf': str(conf), 'env': env, 'tmp': tmp_path}


def create(store, node, name, *more, check=True, env=None):
    return cb('create', '--store', store, '--name', name, *data_dir_args(node['dirs']),
              '--snapshot', 'nightly-1', '--cassandra-conf', node['conf'], '--cqlsh', CQLSH, *more,
              env=env or node['env'], check=check)


def test_backup_keeps_ddl_and_conf_shown_private_in_the_mount(store, node):
    p = create(store, node, 'b')
    # only the subdirectory is said: it is left out
    assert p.stderr.strip().splitlines() == [
        f"cassbackup: warning: {node['conf']}/triggers/: not kept (only the regular files of "
        f"{node['conf']} are)"], p.stderr
    want_ddl = subprocess.run([CQLSH, '-e', 'DESCRIBE SCHEMA'], capture_output=True, check=True,
                              env=node['env']).stdout
    assert want_ddl.startswith(b"CREATE KEYSPACE shop WITH replication = {'class': "
                               b"'org.apache.cassandra.locator.SimpleStrategy', 'replication_factor': '1'}"
                               b"  AND durable_writes = true;\n")
    show = cb('show', '--store', store, 'b').stdout
    assert 'schema.cql (cqlsh DESCRIBE SCHEMA)' in show and 'cassandra-conf/: 3 files' in show
    top = tempfile.mkdtemp(prefix='cb-nodemeta-')  # pytest's own tmp dirs are root's only
    os.chmod(top, 0o755)
    try:
        with mounted(store, os.path.join(top, 'mnt')) as m:
            assert sorted(os.listdir(m.path('b'))) == ['cassandra-conf', 'schema.cql', 'shop']
            assert read(m.path('b', 'schema.cql')) == want_ddl
            conf = m.path('b', 'cassandra-conf')
            assert sorted(os.listdir(conf)) == ['cassandra-rackdc.properties', 'cassandra.yaml',
                                                'jvm11-server.options']
            for f in os.listdir(conf):
                assert read(os.path.join(conf, f)) == read(os.path.join(node['conf'], f))
                st = os.stat(os.path.join(conf, f))
                assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0), f
            st = os.stat(conf)
            assert stat.S_ISDIR(st.st_mode) and (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, 0)
            st = os.stat(m.path('b', 'schema.cql'))
            assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 0)
            # another user sees the backup (its data directory was 0755), never the secrets
            assert as_nobody('ls', m.path('b')).returncode == 0
            for secret in (os.path.join(conf, 'cassandra.yaml'), m.path('b', 'schema.cql')):
                p = as_nobody('cat', secret)
                assert p.returncode != 0 and 'Permission denied' in p.stderr, p
            assert as_nobody('ls', conf).returncode != 0
            p = subprocess.run(['getfattr', '-n', 'user.cassbackup.sha256', '--only-values',
                                os.path.join(conf, 'cassandra.yaml')], capture_output=True, text=True)
            assert p.stdout == __import__('hashlib').sha256(YAML).hexdigest()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_cqlsh_down_or_conf_missing_warns_and_the_backup_is_made(store, node):
    env = dict(node['env'], CQLSH_STANDIN_DOWN='1')
    shutil.rmtree(node['conf'])
    p = create(store, node, 'b', env=env)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 2, p.stderr
    assert lines[0].startswith('cassbackup: warning: the keyspace DDL is not kept in this backup: ')
    assert 'Connection error' in lines[0] and '(--no-schema: do not try)' in lines[0]
    assert lines[1] == (f"cassbackup: warning: Cassandra's configuration is not kept in this backup: "
                        f"{node['conf']}: No such file or directory (--cassandra-conf DIR, or --no-conf)")
    assert p.stdout.startswith('backup b: 1 tables')
    show = cb('show', '--store', store, 'b').stdout
    assert 'none: this backup has no keyspace DDL' in show and 'configuration    none kept' in show
    assert 'node_files' not in json.loads(read(manifest_path(store, 'b')))
    p = create(store, node, 'c', '--cqlsh', str(node['tmp'] / 'no-cqlsh'), '--no-conf')
    assert p.stderr.count('\n') == 1 and 'no-cqlsh could not be run: No such file or directory (' in p.stderr, \
        p.stderr


def test_no_schema_no_conf_is_quiet_and_keeps_nothing(store, node):
    p = create(store, node, 'b', '--no-schema', '--no-conf', '--cqlsh', '/nonexistent')
    assert p.stderr == ''
    assert 'node_files' not in json.loads(read(manifest_path(store, 'b')))


@pytest.mark.parametrize('opt', ['-p', '-psecret', '--password=x', '--password'])
def test_a_password_for_cqlsh_is_refused(store, node, opt):
    p = create(store, node, 'b', '--cqlsh-option', opt, check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1 and 'cqlshrc' in p.stderr, p.stderr
    assert not os.path.isdir(os.path.join(store, 'backups')) or not os.listdir(os.path.join(store, 'backups'))


def test_cqlsh_gets_host_and_options(store, node):
    log = node['tmp'] / 'cqlsh.log'
    env = dict(node['env'], CQLSH_STANDIN_LOG=str(log))
    create(store, node, 'b', '--cqlsh-host', '10.0.0.7', '--cqlsh-option', '--ssl', env=env)
    [call] = [json.loads(x) for x in log.read_text().splitlines()]
    assert call['host'] == '10.0.0.7' and call['execute'] == 'DESCRIBE SCHEMA'


def test_same_ddl_and_conf_are_stored_once(store, node):
    create(store, node, 'b1')
    p = create(store, node, 'b2', '--json')
    assert json.loads(p.stdout)['new_bytes'] == 0  # sstables, schema.cql, conf: all there


def test_restore_conf_writes_the_files_back_and_refuses_to_overwrite(store, node):
    create(store, node, 'b')
    out = node['tmp'] / 'etc'
    os.makedirs(out)
    # regression: a file named like the old temporary name of one being restored was removed
    theirs = out / '.cassandra.yaml.cassbackup-tmp'
    theirs.write_bytes(b'the operator\'s')
    p = cb('restore', '--store', store, 'b', '--conf', out)
    assert read(theirs) == b'the operator\'s'
    theirs.unlink()
    assert sorted(os.listdir(out)) == ['cassandra-rackdc.properties', 'cassandra.yaml', 'jvm11-server.options']
    for f in os.listdir(out):
        a, b = os.stat(out / f), os.stat(os.path.join(node['conf'], f))
        assert read(out / f) == read(os.path.join(node['conf'], f))
        assert (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) == (b.st_mode, b.st_uid, b.st_gid, b.st_mtime_ns)
        assert f'restored {out}/{f}' in p.stdout
    (out / 'cassandra.yaml').write_bytes(b'edited\n')
    os.unlink(out / 'jvm11-server.options')
    p = cb('restore', '--store', store, 'b', '--conf', out, check=False)
    assert p.returncode == 1 and p.stderr.count('\n') == 1 and '--force' in p.stderr, p.stderr
    assert read(out / 'cassandra.yaml') == b'edited\n' and not os.path.exists(out / 'jvm11-server.options')
    cb('restore', '--store', store, 'b', '--conf', out, '--force')
    assert read(out / 'cassandra.yaml') == YAML and os.path.exists(out / 'jvm11-server.options')
    assert sorted(os.listdir(out)) == ['cassandra-rackdc.properties', 'cassandra.yaml', 'jvm11-server.options']
    for bad, code, what in ((['--conf', node['tmp'] / 'no' / 'where', 'b'], 2, 'No such file or directory'),
                            (['--conf', out, 'nob'], 3, 'no such backup')):
        p = cb('restore', '--store', store, *bad, check=False)
        assert p.returncode == code and p.stderr.count('\n') == 1 and what in p.stderr, p.stderr
    create(store, node, 'none', '--no-conf')
    p = cb('restore', '--store', store, 'none', '--conf', node['tmp'] / 'lost', check=False)
    assert p.returncode == 1 and 'kept no configuration files' in p.stderr
    assert not os.path.exists(node['tmp'] / 'lost')


def test_restore_conf_makes_a_lost_configuration_directory(store, node):
    """README's runbook restores "a lost /etc/cassandra" with --conf: the directory itself
    being gone, the restore refused with "No such file or directory". It is made now (0755,
    whatever the umask), and said."""
    create(store, node, 'b')
    lost = node['tmp'] / 'lost-etc'
    p = subprocess.run(['sh', '-c', 'umask 077; exec "$@"', 'sh', CASSBACKUP, 'restore', '--store', store, 'b',
                        '--conf', lost], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f'made {lost}\n') and stat.S_IMODE(os.stat(lost).st_mode) == 0o755
    assert sorted(os.listdir(lost)) == ['cassandra-rackdc.properties', 'cassandra.yaml', 'jvm11-server.options']
    assert read(lost / 'cassandra.yaml') == YAML
    # a link into the lost disk said "File exists"; two at once made it and failed on it
    dangling = node['tmp'] / 'etc-link'
    os.symlink(node['tmp'] / 'lost-disk' / 'cassandra', dangling)
    p = cb('restore', '--store', store, 'b', '--conf', dangling, check=False)
    assert p.returncode == 2 and p.stderr == f'cassbackup: --conf {dangling}: a symlink to nothing (make the directory it names)\n', p.stderr


def test_prune_copy_and_check_keep_the_node_files(store, node, tmp_path):
    """b1's pack holds the conf blobs that b2 shares; b1 forgotten, prune repacks what b2 still
    uses (the node files among it), and b2 still reads right; copy takes them along."""
    create(store, node, 'b1')
    other = make_sample(str(tmp_path / 's2'), '--data-kib', '64', '--data-dirs', '1', '--keyspaces', '1',
                        '--tables', '1', '--sstables', '2', '--no-index', '--no-clutter', '--seed', '7')
    node2 = dict(node, dirs=sample_dirs(other))
    create(store, node2, 'b2')
    cb('forget', '--store', store, 'b1')
    cb('prune', '--store', store, '--max-unused', '0')
    cb('check', '--store', store, '--read-data-subset', '100%')
    copy = str(tmp_path / 'copy')
    cb('init', '--store', copy)
    cb('copy', '--from', store, '--to', copy, 'b2')
    cb('check', '--store', copy, '--read-data-subset', '100%')
    for s in (store, copy):
        cb('reindex', '--store', s)
        with mounted(s, str(tmp_path / ('mnt-' + os.path.basename(s)))) as m:
            assert read(m.path('b2', 'cassandra-conf', 'cassandra.yaml')) == YAML
            assert read(m.path('b2', 'schema.cql')).startswith(b'CREATE KEYSPACE shop')


# --- restore --create-schema -------------------------------------------------------------------

NODETOOL = os.path.join(REPO, 'tests', 'standins', 'nodetool')
SYSTEM_TABLE = os.path.join('system', 'local-7ad54392bcdd35a684174e047860b377')


def target(node, schema):
    """A running node to restore into: its data directory (system tables only, as a node
    whose schema lacks the keyspace has), and the schema its cqlsh answers with."""
    live = node['tmp'] / 'live'
    os.makedirs(live / SYSTEM_TABLE)
    state = node['tmp'] / 'target-schema.json'
    state.write_text(json.dumps(schema))
    env = dict(os.environ, CQLSH_STANDIN_SCHEMA=str(state), CQLSH_STANDIN_DATA_DIRS=str(live))
    return live, state, env


def restore(store, live, env, *more, check=True):
    return cb('restore', '--store', store, 'b', '--data-dir', live, '--nodetool', NODETOOL,
              '--cqlsh', CQLSH, *more, env=env, check=check)


def snapshot_files(node):
    [tdir] = [os.path.join(node['dirs'][0], 'shop', t) for t in os.listdir(os.path.join(node['dirs'][0], 'shop'))]
    snap = os.path.join(tdir, 'snapshots', 'nightly-1')
    return {f: read(os.path.join(snap, f)) for f in os.listdir(snap)
            if f not in ('manifest.json', 'schema.cql')}


def table_dir(live):
    [t] = os.listdir(live / 'shop')
    return live / 'shop' / t


def test_restore_create_schema_makes_the_keyspace_then_restores(store, node):
    create(store, node, 'b')
    live, state, env = target(node, {'keyspaces': {}})
    p = restore(store, live, env, '--create-schema')
    assert p.stdout.splitlines()[:3] == ['created keyspace shop', 'created type shop.address',
                                         'created table shop.orders'], p.stdout
    assert p.stderr == ''
    made = json.loads(state.read_text())['keyspaces']['shop']
    assert made['replication'] == SCHEMA['keyspaces']['shop']['replication']
    assert made['tables'] == SCHEMA['keyspaces']['shop']['tables']  # the comment's ';' kept
    want = snapshot_files(node)
    assert {f: read(table_dir(live) / f) for f in os.listdir(table_dir(live))} == want
    # again: everything is there, nothing is created, the restore finds its files present
    p = restore(store, live, env, '--create-schema')
    assert 'no schema created' in p.stdout and 'created' not in p.stdout.replace('no schema created', '')


def test_an_existing_keyspace_is_left_as_it_is(store, node):
    create(store, node, 'b')
    ks = {'replication': {'class': 'org.apache.cassandra.locator.NetworkTopologyStrategy', 'dc1': '3'},
          'durable_writes': False, 'types': [SCHEMA['keyspaces']['shop']['types'][0]], 'tables': []}
    live, state, env = target(node, {'keyspaces': {'shop': ks}})
    os.makedirs(live / 'shop')
    p = restore(store, live, env, '--create-schema', '--dry-run')
    assert p.stdout.splitlines()[0] == 'would create table shop.orders', p.stdout
    assert json.loads(state.read_text())['keyspaces']['shop'] == ks  # a dry run runs nothing
    p = restore(store, live, env, '--create-schema')
    assert p.stdout.splitlines()[0] == 'created table shop.orders', p.stdout
    after = json.loads(state.read_text())['keyspaces']['shop']
    assert (after['replication'], after['durable_writes'], after['types']) == \
        (ks['replication'], ks['durable_writes'], ks['types'])
    assert os.listdir(table_dir(live))


def test_without_kept_ddl_tables_come_from_their_schema_cql(store, node):
    create(store, node, 'b', '--no-schema')
    live, state, env = target(node, {'keyspaces': {}})
    p = restore(store, live, env, '--create-schema', check=False)
    assert p.returncode == 1 and p.stderr.count('\n') == 1, p.stderr
    assert 'keyspace shop: not on the target' in p.stderr and 'made without cqlsh' in p.stderr
    assert json.loads(state.read_text()) == {'keyspaces': {}} and not os.path.exists(live / 'shop')
    ks = {'replication': {'class': 'SimpleStrategy', 'replication_factor': '1'}, 'tables': []}
    state.write_text(json.dumps({'keyspaces': {'shop': ks}}))
    p = restore(store, live, env, '--create-schema')
    assert p.stdout.splitlines()[0] == 'created table shop.orders'
    assert 'no keyspace DDL' in p.stderr and p.stderr.count('\n') == 1
    [cql] = json.loads(state.read_text())['keyspaces']['shop']['tables']
    assert cql.startswith('CREATE TABLE shop.orders (') and 'WITH ID = ' in cql
    assert os.listdir(table_dir(live))


def test_create_schema_when_the_target_does_not_answer(store, node):
    create(store, node, 'b')
    live, state, env = target(node, {'keyspaces': {}})
    p = restore(store, live, dict(env, CQLSH_STANDIN_DOWN='1'), '--create-schema', check=False)
    assert p.returncode == 1 and p.stderr.count('\n') == 1, p.stderr
    assert "cannot read the target's schema" in p.stderr and 'Connection error' in p.stderr
    assert not os.path.exists(live / 'shop')


@pytest.mark.parametrize('bad, what', [
    (['--create-schema', '--whole-node'], '--create-schema is for restoring tables'),
    (['--create-schema', '--cqlsh-option', '--password=x'], 'cqlshrc'),
])
def test_create_schema_bad_input(store, node, bad, what):
    create(store, node, 'b')
    live, state, env = target(node, {'keyspaces': {}})
    p = restore(store, live, env, *bad, check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1 and what in p.stderr, p.stderr
    assert json.loads(state.read_text()) == {'keyspaces': {}}


def test_load_create_schema_on_the_first_host(store, node):
    create(store, node, 'b')
    state = node['tmp'] / 'cluster-schema.json'
    state.write_text(json.dumps({'keyspaces': {}}))
    log = node['tmp'] / 'cqlsh.log'
    env = dict(os.environ, CQLSH_STANDIN_SCHEMA=str(state), CQLSH_STANDIN_LOG=str(log))
    p = cb('load', '--store', store, 'b', '--hosts', '10.1.0.1,10.1.0.2', '--create-schema', '--cqlsh', CQLSH,
           '--sstableloader', os.path.join(REPO, 'tests', 'standins', 'sstableloader'),
           '--state-dir', node['tmp'] / 'load-state', env=env)
    assert p.stdout.splitlines()[:3] == ['created keyspace shop', 'created type shop.address',
                                         'created table shop.orders'], p.stdout
    assert 'shop' in json.loads(state.read_text())['keyspaces']
    assert {json.loads(x)['host'] for x in log.read_text().splitlines()} == {'10.1.0.1'}
    p = cb('load', '--store', store, 'b', '--hosts', 'h', '--create-schema', '--target-keyspace', 'x',
           check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1 and '--target-keyspace' in p.stderr


def test_each_node_of_a_cluster_backup_keeps_its_own(store, node, tmp_path):
    """Two nodes of a three-node ring back up one name: each node's directory, in backups/ and
    in the cluster view, holds its own schema.cql and cassandra-conf/ beside its keyspaces."""
    from test_cluster import NODES, NODETOOL, SCHEMA as SCHEMA_VERSION
    ring = tmp_path / 'ring.json'
    ring.write_text(json.dumps({'cluster': 'Shop Cluster', 'schema_version': SCHEMA_VERSION, 'nodes': NODES}))
    for i in range(2):
        conf = tmp_path / f'conf{i}'
        os.makedirs(conf)
        (conf / 'cassandra-rackdc.properties').write_bytes(f'dc=dc1\nrack=r{i + 1}\n'.encode())
        env = dict(node['env'], NODETOOL_STANDIN_RING=str(ring), NODETOOL_STANDIN_NODE=NODES[i]['address'])
        cb('create', '--store', store, '--name', 'day1', *data_dir_args(node['dirs']), '--snapshot', 'nightly-1',
           '--nodetool', NODETOOL, '--cassandra-conf', conf, '--cqlsh', CQLSH, env=env)
    with mounted(store, str(tmp_path / 'mnt')) as m:
        entries = sorted(os.listdir(m.path('day1')))
        assert len(entries) == 2
        for i, e in enumerate(entries):
            assert sorted(os.listdir(m.path('day1', e))) == ['cassandra-conf', 'schema.cql', 'shop']
            rack = read(m.path('day1', e, 'cassandra-conf', 'cassandra-rackdc.properties'))
            assert rack in (b'dc=dc1\nrack=r1\n', b'dc=dc1\nrack=r2\n')
        racks = set()
        view = os.path.join(m.mnt, 'clusters', 'Shop Cluster', 'day1', 'dc1')
        for e in os.listdir(view):
            assert read(os.path.join(view, e, 'schema.cql')).startswith(b'CREATE KEYSPACE shop')
            racks.add(read(os.path.join(view, e, 'cassandra-conf', 'cassandra-rackdc.properties')))
        assert racks == {b'dc=dc1\nrack=r1\n', b'dc=dc1\nrack=r2\n'}


def test_validate_config_checks_cqlsh_and_refuses_a_password(store, tmp_path):
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'store = {store}\ncqlsh = {CQLSH}\ncqlsh_host = 10.0.0.5\n'
                    f'cqlsh_option = --cqlshrc={tmp_path}/cqlshrc\ncqlsh_option = --password=secret\n')
    p = cb('--config', conf, 'validate-config', check=False)
    lines = p.stdout.splitlines()
    problems = [l for l in lines if l.startswith('PROBLEM')]
    assert p.returncode == 1 and len(problems) == 1 and 'cqlshrc' in problems[0], p.stdout
    assert f'runs {CQLSH}' in [l for l in lines if ' cqlsh = ' in l][0]


def test_node_files_in_an_s3_store(node, tmp_path, binaries):
    """The same on S3 (moto, every request's signature checked): kept, mounted, written back."""
    from test_s3 import moto
    with moto(tmp_path) as (port, key, secret):
        env = dict(node['env'], AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', AWS_ACCESS_KEY_ID=key,
                   AWS_SECRET_ACCESS_KEY=secret, AWS_REGION='us-east-1',
                   CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        loc = 's3://cbtest/stores/nodemeta'
        cb('init', '--store', loc, env=env)
        create(loc, node, 'b', env=env)
        out = tmp_path / 'etc'
        os.makedirs(out)
        cb('restore', '--store', loc, 'b', '--conf', out, env=env)
        assert read(out / 'cassandra.yaml') == YAML
        with mounted(loc, str(tmp_path / 'mnt'), env=env) as m:
            assert read(m.path('b', 'cassandra-conf', 'cassandra.yaml')) == YAML
            assert read(m.path('b', 'schema.cql')).startswith(b'CREATE KEYSPACE shop')


def test_verify_reads_the_node_files_back(store, node):
    create(store, node, 'b')
    p = cb('verify', '--store', store, 'b')
    assert 'ok      b schema.cql and cassandra-conf/: 4 files' in p.stdout, p.stdout
    assert p.stdout.splitlines()[-1].startswith('1 table ok, 0 failed')
    assert 'schema.cql' not in cb('verify', '--store', store, 'b', '--table', 'shop.orders').stdout
    # the manifest says other bytes than the store holds for cassandra.yaml: verify holds them
    # against the manifest and fails
    path = manifest_path(store, 'b')
    m = json.loads(read(path))
    [f] = [f for f in m['node_files'] if f['name'] == 'cassandra.yaml']
    f['sha256'] = ('0' if f['sha256'][0] != '0' else '1') + f['sha256'][1:]
    os.chmod(path, 0o600)
    rewrite_manifest(path, m)
    p = cb('verify', '--store', store, 'b', check=False)
    assert p.returncode == 1 and 'FAILED  b schema.cql and cassandra-conf/' in p.stdout, p.stdout
