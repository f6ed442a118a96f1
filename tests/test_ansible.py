"""contrib/ansible's playbooks, run for real: ansible-playbook reaches three "nodes" over ssh
(an OpenSSH server on 127.0.0.2-4, tests/sshd.py), each with its own data directory, Cassandra
configuration and cassbackup.conf, a nodetool stand-in answering as that node
(tests/standins/nodetool) and a Cassandra service stand-in (tests/standins/cassandra-service).
Cassandra itself cannot run here; everything else is the real program."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import CASSBACKUP, REPO, backup_list, cb, make_sample, run
from sshd import Sshd

PLAYBOOKS = os.path.join(REPO, 'contrib', 'ansible')
STANDINS = os.path.join(REPO, 'tests', 'standins')
ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4']
HOST_IDS = ['1d194555-f6eb-41d0-c000-000000000001', '2d194555-f6eb-41d0-c000-000000000002',
            '3d194555-f6eb-41d0-c000-000000000003']
TOKENS = [['-9000000000000000000', '-3000000000000000000'],
          ['-6000000000000000000', '0'],
          ['3000000000000000000', '6000000000000000000']]

# tests/run.sh installs ansible-core and openssh-server; under CI a missing one fails the tests
pytestmark = pytest.mark.skipif(not os.environ.get('CI') and (not shutil.which('ansible-playbook') or
                                                             not os.path.exists('/usr/sbin/sshd')),
                                reason='ansible-core and openssh-server are installed by tests/run.sh')


@pytest.fixture(scope='module')
def sshd(tmp_path_factory):
    s = Sshd(tmp_path_factory.mktemp('sshd'), ['127.0.0.1'] + ADDRESSES).start()
    # one ssh connection to each node for the whole file (ControlMaster), not one per task:
    # key exchanges were most of the file's CPU. A short directory of its own: a socket's path
    # has at most 107 bytes, and no other file's masters are ever reused
    s.control_dir = tempfile.mkdtemp(prefix='cbssh-', dir='/tmp')
    try:
        yield s
    finally:
        for sock in os.listdir(s.control_dir):  # the masters end with the file
            subprocess.run(['ssh', '-o', f'ControlPath={os.path.join(s.control_dir, sock)}', '-O', 'exit',
                            'unused'], capture_output=True, timeout=30)
        s.stop()
        shutil.rmtree(s.control_dir, ignore_errors=True)


class Cluster:
    """Three nodes of cluster 'Test Cluster' in dc1 on this machine, backing up into one store."""

    def __init__(self, base, sshd, store):
        self.base = str(base)
        self.sshd = sshd
        self.store = store
        self.nodes = []
        ring = os.path.join(self.base, 'ring.json')
        with open(ring, 'w') as f:
            json.dump({'cluster': 'Test Cluster', 'schema_version': '836f4520-071b-3909-91d9-876181702696',
                       'nodes': [{'address': a, 'host_id': h, 'datacenter': 'dc1', 'rack': 'rack1',
                                  'tokens': t, 'state': 'UN'}
                                 for a, h, t in zip(ADDRESSES, HOST_IDS, TOKENS)]}, f)
        for i, addr in enumerate(ADDRESSES):
            self.nodes.append(self._node(i, addr, ring))
        self.inventory = os.path.join(self.base, 'inventory.json')
        self.write_inventory()

    def _node(self, i, addr, ring):
        d = os.path.join(self.base, f'node{i + 1}')
        make_sample(d, '--data-dirs', '1', '--keyspaces', '2', '--tables', '2', '--sstables', '2',
                    '--data-kib', '64', '--seed', str(100 + i), '--no-clutter')
        data = os.path.join(d, 'data1')
        # a node's schema lives in system_schema: whole-node restores need it in the backup
        os.rename(os.path.join(data, sorted(os.listdir(data))[-1]), os.path.join(data, 'system_schema'))
        conf = os.path.join(d, 'conf')
        os.makedirs(conf)
        with open(os.path.join(conf, 'cassandra.yaml'), 'w') as f:
            f.write("cluster_name: 'Test Cluster'\n"
                    f"data_file_directories:\n    - {data}\n")
        with open(os.path.join(conf, 'cassandra-rackdc.properties'), 'w') as f:
            f.write('dc=dc1\nrack=rack1\n')
        cfg = os.path.join(d, 'cassbackup.conf')
        with open(cfg, 'w') as f:
            f.write(f'store = {self.store}\ndata_dir = {data}\ncassandra_conf = {conf}\n'
                    f'nodetool = {STANDINS}/nodetool\n')
        open(os.path.join(d, 'running'), 'w').close()  # Cassandra runs (tests/standins/cassandra-service)
        env = {'NODETOOL_STANDIN_DATA_DIRS': data,
               'NODETOOL_STANDIN_RING': ring,
               'NODETOOL_STANDIN_NODE': addr,
               'NODETOOL_STANDIN_LOG': os.path.join(d, 'nodetool.log'),
               'CASSANDRA_STANDIN_DIR': d,
               'CQLSH_STANDIN_DATA_DIRS': ':'.join(os.path.join(self.base, f'node{k + 1}', 'data1')
                                                   for k in range(len(ADDRESSES))),
               'CQLSH_STANDIN_LOG': os.path.join(self.base, 'cqlsh.log'),
               'CASSBACKUP_MOUNT_HELPER': os.environ['CASSBACKUP_MOUNT_HELPER'],
               'PATH': os.path.dirname(CASSBACKUP) + ':' + STANDINS + ':/usr/sbin:/usr/bin:/sbin:/bin'}
        return {'name': f'node{i + 1}', 'dir': d, 'data': data, 'conf': conf, 'config': cfg,
                'env': env,
                'vars': {'ansible_host': addr, 'ansible_port': self.sshd.port, 'ansible_user': 'root',
                         'ansible_ssh_private_key_file': self.sshd.client_key,
                         'ansible_python_interpreter': '/usr/bin/python3',
                         'cassbackup_bin': CASSBACKUP, 'cassbackup_config': cfg,
                         'nodetool': f'{STANDINS}/nodetool',
                         'cqlsh_command': [f'{STANDINS}/cqlsh', addr],
                         'cassbackup_restore_args': ['--owner', '0:0'],  # no cassandra user here
                         'cassandra_stop_command': [f'{STANDINS}/cassandra-service', 'stop'],
                         'cassandra_start_command': [f'{STANDINS}/cassandra-service', 'start'],
                         'cassbackup_environment': env}}

    def write_inventory(self):
        with open(self.inventory, 'w') as f:
            json.dump({'cassandra': {'hosts': {n['name']: n['vars'] for n in self.nodes}}}, f)

    def playbook(self, name, *extra, check=True):
        env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING='False',
                   ANSIBLE_SSH_ARGS=f'-o ControlMaster=auto -o ControlPersist=120 '
                                    f'-o ControlPath={self.sshd.control_dir}/%C -o UserKnownHostsFile=/dev/null',
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.base, 'ansible-local'),
                   ANSIBLE_REMOTE_TEMP=os.path.join(self.base, 'ansible-remote'),
                   ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='False',
                   # one ssh per task instead of four (mkdir, put, run, rm): the file's time
                   # is mostly ansible's per-task round trips
                   ANSIBLE_PIPELINING='True')
        return run('ansible-playbook', '-i', self.inventory, os.path.join(PLAYBOOKS, name), *extra,
                   check=check, env=env)

    def snapshots_left(self):
        left = []
        for n in self.nodes:
            for root, dirs, _ in os.walk(n['data']):
                if os.path.basename(root) == 'snapshots':
                    left += [os.path.join(root, t) for t in dirs if t.startswith('day')]
        return left


@pytest.fixture
def cluster(tmp_path, sshd, store):
    return Cluster(tmp_path, sshd, store)


def node_backups(store, name):
    return [b for b in backup_list(store) if b['name'] == name]


def test_backup_playbook_backs_up_every_node_into_one_cluster_backup(cluster):
    p = cluster.playbook('backup.yml', '-e', 'cassbackup_name=day1')
    assert 'failed=0' in p.stdout, p.stdout
    st = cb('status', '--store', cluster.store, 'day1')
    assert st.returncode == 0
    assert cluster.snapshots_left() == []
    got = node_backups(cluster.store, 'day1')
    assert sorted(b['host_id'] for b in got) == HOST_IDS


def test_backup_playbook_fails_naming_a_node_whose_snapshot_failed(cluster):
    cluster.nodes[1]['vars']['cassbackup_environment']['NODETOOL_STANDIN_FAIL'] = 'snapshot'
    cluster.write_inventory()
    p = cluster.playbook('backup.yml', '-e', 'cassbackup_name=day1', check=False)
    assert p.returncode != 0, p.stdout
    assert 'node2' in p.stdout
    assert cluster.snapshots_left() == []
    st = cb('status', '--store', cluster.store, 'day1', check=False)
    assert st.returncode == 1
    assert ADDRESSES[1] in st.stdout + st.stderr and HOST_IDS[1] in st.stdout + st.stderr
    assert sorted(b['host_id'] for b in node_backups(cluster.store, 'day1')) == [HOST_IDS[0], HOST_IDS[2]]


def starts(node):
    with open(os.path.join(node['dir'], 'starts.log')) as f:
        return [json.loads(line) for line in f]


def test_restore_playbook_replaces_a_node_from_its_backup(cluster):
    cluster.playbook('backup.yml', '-e', 'cassbackup_name=day1')
    node = cluster.nodes[1]
    want = {}
    for root, _, names in os.walk(node['data']):
        if '/snapshots' in root:
            continue
        for n in names:
            with open(os.path.join(root, n), 'rb') as f:
                want[os.path.relpath(os.path.join(root, n), node['data'])] = f.read()
    # the node's disk is replaced: an empty data directory, Cassandra down
    shutil.rmtree(node['data'])
    os.mkdir(node['data'])
    os.unlink(os.path.join(node['dir'], 'running'))
    p = cluster.playbook('restore.yml', '-e', 'cassbackup_name=day1', '--limit', 'node2')
    assert 'failed=0' in p.stdout, p.stdout
    got = {}
    for root, _, names in os.walk(node['data']):
        for n in names:
            with open(os.path.join(root, n), 'rb') as f:
                got[os.path.relpath(os.path.join(root, n), node['data'])] = f.read()
    assert got == want
    started = starts(node)
    assert started[-1]['initial_token'] == ','.join(TOKENS[1])
    assert started[-1]['auto_bootstrap'] == 'false'
    assert 'system_schema' in started[-1]['keyspaces']
    assert os.path.exists(os.path.join(node['dir'], 'running'))
    assert not os.path.exists(os.path.join(cluster.nodes[0]['dir'], 'starts.log'))  # left alone


def test_restore_playbook_maps_old_nodes_onto_new_ones_and_starts_seeds_first(cluster):
    cluster.playbook('backup.yml', '-e', 'cassbackup_name=day1')
    for n in cluster.nodes:  # new hardware: empty disks, nothing running
        shutil.rmtree(n['data'])
        os.mkdir(n['data'])
        os.unlink(os.path.join(n['dir'], 'running'))
    mapping = os.path.join(cluster.base, 'mapping.csv')
    with open(mapping, 'w') as f:  # Medusa's host list: is_seed,target,source
        f.write('is_seed,target,source\n'
                f'False,node1,{HOST_IDS[2]}\nTrue, node2 , {ADDRESSES[0]}\nFalse,node3,{HOST_IDS[1][:13]}\n')
    p = cluster.playbook('restore.yml', '-e', 'cassbackup_name=day1', '-e', f'cassbackup_host_map={mapping}')
    assert 'failed=0' in p.stdout, p.stdout
    assert starts(cluster.nodes[0])[-1]['initial_token'] == ','.join(TOKENS[2])
    assert starts(cluster.nodes[1])[-1]['initial_token'] == ','.join(TOKENS[0])
    assert starts(cluster.nodes[2])[-1]['initial_token'] == ','.join(TOKENS[1])
    # the seed (node2) started before the others
    order = p.stdout.index('Start the seeds'), p.stdout.index('Start the other nodes')
    seed_start = p.stdout.index('changed: [node2]', order[0])
    assert seed_start < order[1]


def test_restore_playbook_refuses_one_source_for_two_targets(cluster):
    """A mapping whose node2 row named node1's backup again (by its address; node1's row by a
    prefix of its host id): both came up with node1's identity and tokens, node2's backup was
    restored nowhere, and the play succeeded. Refused now, before any node is stopped."""
    for n in cluster.nodes:  # day1 of every node, as backup.yml makes it (without its ssh runs)
        cb('--config', n['config'], 'create', '--take-snapshot', '--snapshot', 'day1', '--name', 'day1',
           '--include-system', env=dict(os.environ, **n['env']))
    mapping = os.path.join(cluster.base, 'mapping.csv')
    with open(mapping, 'w') as f:
        f.write(f'True,node1,{HOST_IDS[0][:8]}\nFalse,node2,{ADDRESSES[0]}\nFalse,node3,{HOST_IDS[2]}\n')
    p = cluster.playbook('restore.yml', '-e', 'cassbackup_name=day1', '-e', f'cassbackup_host_map={mapping}',
                         check=False)
    assert p.returncode != 0
    assert 'is the source of node1 and node2' in p.stdout and 'nothing was stopped' in p.stdout
    assert 'Stop Cassandra' not in p.stdout
    # one node replaced (--limit): the rows of the others count too (only play hosts did)
    p = cluster.playbook('restore.yml', '-e', 'cassbackup_name=day1', '-e', f'cassbackup_host_map={mapping}',
                         '--limit', 'node2', check=False)
    assert p.returncode != 0
    assert 'is the source of node1 and node2' in p.stdout and 'Stop Cassandra' not in p.stdout, p.stdout
    for n in cluster.nodes:  # every node still running, none restored
        assert os.path.exists(os.path.join(n['dir'], 'running'))


def test_restore_playbook_stops_everything_when_a_node_cannot_be_restored(cluster):
    cluster.playbook('backup.yml', '-e', 'cassbackup_name=day1')
    for n in cluster.nodes:
        shutil.rmtree(n['data'])
        os.mkdir(n['data'])
    os.makedirs(os.path.join(cluster.nodes[2]['data'], 'stray_keyspace'))  # not empty: refused
    p = cluster.playbook('restore.yml', '-e', 'cassbackup_name=day1', check=False)
    assert p.returncode != 0
    assert 'stray_keyspace' in p.stdout
    for n in cluster.nodes:  # no node started on a cluster half restored
        assert not os.path.exists(os.path.join(n['dir'], 'running'))


def table_sstables(node, ks, table):
    """{bytes of each sstable component file} in the live directory of ks.table on node."""
    [tdir] = [os.path.join(node['data'], ks, t) for t in os.listdir(os.path.join(node['data'], ks))
              if t.split('-')[0] == table]
    res = []
    for n in sorted(os.listdir(tdir)):
        if os.path.isfile(os.path.join(tdir, n)) and not n.endswith('-Statistics.db'):
            with open(os.path.join(tdir, n), 'rb') as f:
                res.append((n.split('-', 2)[2], f.read()))  # without the generation
    return tdir, sorted(res)


def truncates(cluster):
    """The statements cqlsh ran on the cluster, but the DESCRIBE SCHEMA of each backup."""
    path = os.path.join(cluster.base, 'cqlsh.log')
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [e for e in (json.loads(line)['execute'] for line in f) if e != 'DESCRIBE SCHEMA']


def test_rollback_table_playbook_brings_a_table_back_on_every_node(cluster):
    cluster.playbook('backup.yml', '-e', 'cassbackup_name=day1')
    before = [table_sstables(n, 'shop', 'orders')[1] for n in cluster.nodes]
    for n in cluster.nodes:  # writes after the backup: a new sstable on every node
        tdir, _ = table_sstables(n, 'shop', 'orders')
        for name in os.listdir(tdir):
            if name.startswith('nb-1-'):
                with open(os.path.join(tdir, name), 'rb') as f, \
                        open(os.path.join(tdir, name.replace('nb-1-', 'nb-50-')), 'wb') as out:
                    out.write(f.read() + b'new')
    p = cluster.playbook('rollback-table.yml', '-e', 'cassbackup_name=day1', '-e', 'cassbackup_table=shop.orders',
                         check=False)
    assert p.returncode != 0 and 'cassbackup_confirm=yes' in p.stdout
    assert truncates(cluster) == []  # nothing truncated
    p = cluster.playbook('rollback-table.yml', '-e', 'cassbackup_name=day1', '-e', 'cassbackup_table=shop.orders',
                         '-e', 'cassbackup_confirm=yes')
    assert 'failed=0' in p.stdout, p.stdout
    assert truncates(cluster) == ['TRUNCATE shop.orders']  # once
    for n, want in zip(cluster.nodes, before):
        tdir, got = table_sstables(n, 'shop', 'orders')
        assert got == want, n['name']
        assert any(t.startswith('truncated-') for t in os.listdir(os.path.join(tdir, 'snapshots')))


def test_a_cluster_backup_loads_onto_a_cluster_of_two_new_nodes(cluster, tmp_path):
    """After backup.yml, the cluster backup streams onto two new nodes (another topology) with
    load: every node's sstables once, each from its own node's directory of the mount."""
    import socket
    from test_restore_load import LOADER, log_lines, sha
    cluster.playbook('backup.yml', '-e', 'cassbackup_name=day1')
    host = socket.gethostname()
    expect = {}
    for n, hid in zip(cluster.nodes, HOST_IDS):
        for ks in os.listdir(n['data']):
            for t in os.listdir(os.path.join(n['data'], ks)):
                tdir = os.path.join(n['data'], ks, t)
                expect[f'{host}-{hid[:8]}/{ks}.{t.split("-")[0]}'] = {
                    f: sha(os.path.join(tdir, f)) for f in os.listdir(tdir) if os.path.isfile(os.path.join(tdir, f))}
    (tmp_path / 'expect.json').write_text(json.dumps(expect))
    (tmp_path / 'st').mkdir()
    env = dict(os.environ, SSTABLELOADER_STANDIN_EXPECT=str(tmp_path / 'expect.json'),
               SSTABLELOADER_STANDIN_STATE=str(tmp_path / 'st'), SSTABLELOADER_STANDIN_LOG=str(tmp_path / 'l.log'))
    p = cb('load', '--store', cluster.store, 'day1', '--hosts', '127.0.0.5,127.0.0.6', '--sstableloader', LOADER,
           '--state-dir', str(tmp_path / 'state'), '--keyspace', 'shop', env=env)
    assert p.stdout.startswith('load day1: 3 node backups')
    calls = log_lines(env['SSTABLELOADER_STANDIN_LOG'])
    assert sorted(f'{os.path.basename(os.path.dirname(os.path.dirname(c["dir"])))}/{c["keyspace"]}.{c["table"]}'
                  for c in calls) == sorted(k for k in expect if '/shop.' in k)
    assert {c['hosts'] for c in calls} == {'127.0.0.5,127.0.0.6'}
