"""cassbackup create: a backup is complete or refused (issue 9).

- With no --data-dir and no data_dir in the configuration, the data directories come from
  data_file_directories in cassandra.yaml (block and flow lists, comments, quotes).
- Every table is checked against its snapshot's manifest.json: a Data.db it lists that no data
  directory given holds (a forgotten JBOD disk) refuses the backup, one line per table.
- The node's Cassandra version and tokens are recorded (nodetool version / info -T, or
  --cassandra-version / --tokens), and unknown without failing when nodetool cannot run; the
  data directory's mode and owner are recorded for the mount.
"""
import json
import os
import shutil
import subprocess

import pytest

from conftest import (manifest_path, FIXTURES, backup_list, cb, data_dir_args, make_sample, packs, run,
                      sample_dirs, tmp_files)

HERE = os.path.dirname(os.path.abspath(__file__))
NODETOOL = os.path.join(HERE, 'standins', 'nodetool')
TABLE_ID = '0123456789abcdef0123456789abcdef'


def lines_of(p):
    return [l for l in p.stderr.splitlines() if l.strip()]


def one_error_line(p, code, *words):
    assert p.returncode == code, (p.returncode, p.stderr)
    lines = lines_of(p)
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def store_state(store):
    return backup_list(store), packs(store), tmp_files(store)


def backup_manifest(store, name):
    """The backup's own description: its manifest, backups/NAME/NODE.json (store format 2)."""
    with open(manifest_path(store, name)) as f:
        return json.load(f)


def empty_config(tmp_path):
    """A configuration file with nothing in it: no data_dir from /etc/cassbackup.conf."""
    conf = tmp_path / 'empty.conf'
    conf.write_text('# nothing\n')
    return str(conf)


def cassandra_conf(tmp_path, yaml_text):
    d = tmp_path / 'etc-cassandra'
    d.mkdir(exist_ok=True)
    (d / 'cassandra.yaml').write_text(yaml_text)
    return str(d)


# --- data directories from cassandra.yaml --------------------------------------------------

YAMLS = {
    'block': "cluster_name: 'Test Cluster'\n# data_file_directories:\n#     - /var/lib/cassandra/data\n"
             "data_file_directories:\n    - \"{0}\"   # the first disk\n\n    # the second disk:\n"
             "    - {1}\ncommitlog_directory: /var/lib/cassandra/commitlog\n",
    'block-unindented': "data_file_directories:\n- '{0}'\n- {1} # comment\nhints_directory: /x\n",
    'flow': "cluster_name: \"Test Cluster\"\ndata_file_directories: [\"{0}\", '{1}']  # both\n",
    'flow-multiline': "data_file_directories: [\n    {0},   # first\n    {1}\n]\nnum_tokens: 16\n",
}


@pytest.mark.parametrize('style', sorted(YAMLS))
def test_data_dirs_from_cassandra_yaml(store, sample_tree, tmp_path, style):
    dirs = sample_dirs(sample_tree)
    conf = cassandra_conf(tmp_path, YAMLS[style].format(*dirs))
    p = cb('--config', empty_config(tmp_path), 'create', '--store', store, '--name', 'y',
           '--snapshot', 'nightly-1', '--cassandra-conf', conf)
    assert p.stderr == ''
    cb('create', '--store', store, '--name', 'explicit', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    y, explicit = backup_list(store)
    assert (y['tables'], y['files'], y['bytes']) == (explicit['tables'], explicit['files'], explicit['bytes'])
    if 'cluster_name' in YAMLS[style]:
        assert y['cluster'] == 'Test Cluster'


def test_config_data_dir_and_flags_come_before_cassandra_yaml(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    conf = cassandra_conf(tmp_path, 'data_file_directories:\n    - /nonexistent/data\n')
    cfg = tmp_path / 'cb.conf'
    cfg.write_text(''.join(f'data_dir = {d}\n' for d in dirs) + f'cassandra_conf = {conf}\n')
    cb('--config', cfg, 'create', '--store', store, '--name', 'fromconf', '--snapshot', 'nightly-1')
    cb('--config', empty_config(tmp_path), 'create', '--store', store, '--name', 'fromflags',
       '--cassandra-conf', conf, *data_dir_args(dirs), '--snapshot', 'nightly-1')
    assert [b['name'] for b in backup_list(store)] == ['fromconf', 'fromflags']


@pytest.mark.parametrize('yaml_text,words', [
    (None, ['no data directory known', 'cassandra.yaml', 'No such file', '--data-dir']),
    ('cluster_name: x\n# data_file_directories:\n#     - /var/lib/cassandra/data\n',
     ['no data directory known', 'sets no data_file_directories', '$CASSANDRA_HOME/data/data', '--data-dir']),
    ('data_file_directories:\nnum_tokens: 16\n', ['no data directory known', '--data-dir']),
    ('data_file_directories: /var/lib/cassandra/data\n', ['cassandra.yaml, line 1', 'expected a list']),
    ('x: 1\ndata_file_directories: [/a, "/b\n', ['cassandra.yaml, line 2', 'unterminated quote']),
    ('data_file_directories: [/a, /b\nnum_tokens: 16\n', ['cassandra.yaml', "no closing ']'"]),
    ('data_file_directories:\n    -\n', ['cassandra.yaml, line 2', 'an empty item']),
])
def test_no_data_dir_known_says_how_to_give_one(store, tmp_path, yaml_text, words):
    conf = str(tmp_path / 'no-such-conf') if yaml_text is None else cassandra_conf(tmp_path, yaml_text)
    before = store_state(store)
    p = cb('--config', empty_config(tmp_path), 'create', '--store', store, '--snapshot', 'nightly-1',
           '--cassandra-conf', conf, check=False)
    one_error_line(p, 2, *words)
    assert store_state(store) == before


# --- every table against its manifest.json -------------------------------------------------

def listed_not_in(dirs, given, tag='nightly-1'):
    """{'ks.table': [Data.db names its manifest lists that no directory in `given` holds]}."""
    res = {}
    for d in dirs:
        for ks in os.listdir(d):
            for t in os.listdir(os.path.join(d, ks)):
                man = os.path.join(d, ks, t, 'snapshots', tag, 'manifest.json')
                if not os.path.exists(man):
                    continue
                missing = [f for f in json.load(open(man))['files']
                           if not any(os.path.exists(os.path.join(g, ks, t, 'snapshots', tag, f)) for g in given)]
                if missing:
                    res[f'{ks}.{t.rsplit("-", 1)[0]}'] = missing
    return res


def test_forgotten_jbod_disk_refuses_the_backup(store, sample_tree):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'whole', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    before = store_state(store)
    p = cb('create', '--store', store, '--name', 'half', '--data-dir', dirs[0], '--snapshot',
           'nightly-1', check=False)
    assert p.returncode == 1, p.stderr
    expect = listed_not_in(dirs, [dirs[0]])
    assert expect  # the sample spreads every table over both disks
    lines = lines_of(p)
    assert len(lines) == len(expect), p.stderr
    for line, (table, missing) in zip(lines, sorted(expect.items())):
        assert f'table {table}:' in line and 'manifest.json' in line and 'refused' in line, line
        assert f'(searched: {dirs[0]})' in line and dirs[1] not in line, line
        for f in missing:
            assert f in line, (f, line)
    assert p.stdout == '' and store_state(store) == before


def make_table(root, ks, table, tag, files):
    snap = os.path.join(root, ks, f'{table}-{TABLE_ID}', 'snapshots', tag)
    for rel, data in files.items():
        p = os.path.join(snap, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'w') as f:
            f.write(data)
    return snap


def test_index_sstables_and_tables_without_manifest(store, tmp_path):
    d = str(tmp_path / 'data')
    snap = make_table(d, 'shop', 'orders', 't1', {
        'nb-1-big-Data.db': 'a', 'nb-1-big-TOC.txt': 'Data.db\n', '.orders_idx/nb-1-big-Data.db': 'i',
        # as Cassandra 4.0 writes it: json-simple escapes '/'
        'manifest.json': json.dumps({'files': ['nb-1-big-Data.db', '.orders_idx/nb-1-big-Data.db']},
                                    separators=(',', ':')).replace('/', '\\/') + '\n',
    })
    make_table(d, 'old', 'legacy', 't1', {'lb-1-big-Data.db': 'no manifest: older Cassandra'})
    p = cb('create', '--store', store, '--name', 'ok', '--data-dir', d, '--snapshot', 't1')
    assert p.stderr == ''
    [b] = backup_list(store)
    assert b['tables'] == 2
    # the index sstable gone: refused, naming it as the manifest does
    os.unlink(os.path.join(snap, '.orders_idx', 'nb-1-big-Data.db'))
    p = cb('create', '--store', store, '--name', 'no', '--data-dir', d, '--snapshot', 't1', check=False)
    one_error_line(p, 1, 'table shop.orders:', '.orders_idx/nb-1-big-Data.db', f'(searched: {d})')
    # a manifest.json without a files list cannot vouch for anything: refused
    with open(os.path.join(snap, 'manifest.json'), 'w') as f:
        f.write('{"created_at": "2026-11-21T00:00:00.000Z"}')
    p = cb('create', '--store', store, '--name', 'no', '--data-dir', d, '--snapshot', 't1', check=False)
    one_error_line(p, 1, 'table shop.orders:', 'no "files" list')
    assert [b['name'] for b in backup_list(store)] == ['ok']


@pytest.mark.parametrize('style', ['4.0', '4.1', '5.0'])
def test_real_manifests_of_each_version(store, tmp_path, style):
    """The manifest.json styles of Cassandra 4.0 (json-simple, escaped '/'), 4.1 and 5.0
    (Jackson compact and pretty), over the real SSTables."""
    out = str(tmp_path / 'data')
    run('bash', os.path.join(FIXTURES, 'make_tree.sh'),
        env=dict(os.environ, OUT=out, MANIFEST_STYLE=style, SNAPSHOT_TAG='t'))
    p = cb('create', '--store', store, '--name', 'whole', '--data-dir', out, '--snapshot', 't')
    assert p.stderr == ''
    # one sstable lost from the snapshot of one table: refused, naming it
    tdir = os.path.join(out, 'legacy_tables')
    t = sorted(x for x in os.listdir(tdir) if x.startswith('legacy_nb_simple-'))[0]
    snap = os.path.join(tdir, t, 'snapshots', 't')
    [data] = [f for f in os.listdir(snap) if f.endswith('-Data.db')]
    os.unlink(os.path.join(snap, data))
    p = cb('create', '--store', store, '--name', 'broken', '--data-dir', out, '--snapshot', 't', check=False)
    one_error_line(p, 1, 'table legacy_tables.legacy_nb_simple:', data, f'(searched: {out})')
    assert [b['name'] for b in backup_list(store)] == ['whole']


# --- the node: Cassandra version, tokens, data directory attributes ------------------------

def nodetool_log(path):
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


@pytest.fixture
def small(tmp_path):
    return sample_dirs(make_sample(str(tmp_path / 's'), '--data-kib', '16', '--data-dirs', '1',
                                   '--keyspaces', '1', '--tables', '1'))


def test_version_and_tokens_from_nodetool(store, small, tmp_path):
    pw = tmp_path / 'jmx.pw'
    pw.write_text('secret\n')
    os.chmod(pw, 0o600)
    cfg = tmp_path / 'cb.conf'
    cfg.write_text(f'nodetool = {NODETOOL}\nnodetool_user = cassandra\nnodetool_password_file = {pw}\n')
    nlog = str(tmp_path / 'n.log')
    tokens = ['-9223372036854775808', '-3074457345618258603', '3074457345618258602']
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_RELEASE='5.0.2',
               NODETOOL_STANDIN_TOKENS=','.join(tokens))
    p = cb('--config', cfg, 'create', '--store', store, '--name', 'b', *data_dir_args(small),
           '--snapshot', 'nightly-1', '--json', env=env)
    assert p.stderr == ''
    summary = json.loads(p.stdout)
    assert summary['cassandra_version'] == '5.0.2' and summary['tokens'] == tokens
    meta = backup_manifest(store, 'b')
    assert meta['cassandra_version'] == '5.0.2' and meta['tokens'] == tokens
    calls = nodetool_log(nlog)
    assert [(c['cmd'], c['args']) for c in calls] == [('version', []), ('info', ['-T']), ('status', []),
                                                      ('describecluster', [])]
    assert all(c['opts'] == {'-u': 'cassandra', '-pwf': str(pw)} for c in calls)  # credentials always
    # the node's identity and the ring as nodetool told them (the stand-in's one-node cluster)
    hid = '5f1c0a5e-7d1b-4a3e-9c55-000000000001'
    assert (meta['host_id'], meta['datacenter'], meta['rack'], meta['cluster']) == \
        (hid, 'datacenter1', 'rack1', 'Test Cluster')
    assert meta['schema_version'] == '836f4520-071b-3909-91d9-876181702696'
    assert meta['ring'] == [{'host_id': hid, 'address': '127.0.0.1', 'datacenter': 'datacenter1', 'rack': 'rack1'}]
    assert os.path.exists(os.path.join(store, 'backups', 'b', hid + '.json'))


def test_flags_override_nodetool(store, small, tmp_path):
    nlog = str(tmp_path / 'n.log')
    tf = tmp_path / 'tokens'
    tf.write_text('# from nodetool ring, saved earlier\n-100, 0\n100\n')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog)
    p = cb('create', '--store', store, '--name', 'b', *data_dir_args(small), '--snapshot', 'nightly-1',
           '--nodetool', NODETOOL, '--cassandra-version', '4.0.11', '--tokens', tf, '--json',
           '--host-id', 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', '--rack', 'r9', '--datacenter', 'dc9',
           '--cluster', 'C9', env=env)
    assert json.loads(p.stdout)['cassandra_version'] == '4.0.11'
    meta = backup_manifest(store, 'b')
    assert meta['cassandra_version'] == '4.0.11' and meta['tokens'] == ['-100', '0', '100']
    assert (meta['host_id'], meta['rack'], meta['datacenter'], meta['cluster']) == \
        ('aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', 'r9', 'dc9', 'C9')
    assert os.path.exists(os.path.join(store, 'backups', 'b', 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.json'))
    # the version is not asked; the rest is (the ring has no flag), the flags win
    assert [c['cmd'] for c in nodetool_log(nlog)] == ['info', 'status', 'describecluster']


@pytest.mark.parametrize('content,words', [(None, ['--tokens', 'No such file']),
                                           ('# none\n\n', ['--tokens', 'no tokens']),
                                           ('1 2\x013\n', ['--tokens', 'token 2 is not one'])])
def test_bad_tokens_file_refused_first(store, small, tmp_path, content, words):
    tf = tmp_path / 'tokens'
    if content is not None:
        tf.write_text(content)
    before = store_state(store)
    p = cb('create', '--store', store, '--name', 'b', *data_dir_args(small), '--snapshot', 'nightly-1',
           '--tokens', tf, check=False)
    one_error_line(p, 2, *words)
    assert store_state(store) == before


def test_no_nodetool_records_unknown_without_failing(store, small, tmp_path):
    """A nodetool that is not there (a typo in --nodetool) was silent, exit 0: the backup then
    had no host id, tokens or ring, and a later one with nodetool counted as another node's.
    It is said in one line, as cassbackup(8) says."""
    p = cb('create', '--store', store, '--name', 'b', *data_dir_args(small), '--snapshot', 'nightly-1',
           '--nodetool', str(tmp_path / 'no-nodetool'), '--json')
    one_error_line(p, 0, f'nodetool {tmp_path}/no-nodetool: not found', 'host id', 'tokens',
                   'recorded as unknown', '--nodetool PATH')
    summary = json.loads(p.stdout)
    assert summary['cassandra_version'] is None and summary['tokens'] == []
    meta = backup_manifest(store, 'b')
    assert meta['cassandra_version'] == '' and meta['tokens'] == []


def test_failing_nodetool_is_reported_not_fatal(store, small, tmp_path):
    env = dict(os.environ, NODETOOL_STANDIN_FAIL='version')
    p = cb('create', '--store', store, '--name', 'b', *data_dir_args(small), '--snapshot', 'nightly-1',
           '--nodetool', NODETOOL, '--json', env=env)
    line = one_error_line(p, 0, 'nodetool version failed', 'exit status 1', 'failing on purpose',
                          'Cassandra version is recorded as unknown')
    summary = json.loads(p.stdout)
    assert summary['cassandra_version'] is None and len(summary['tokens']) == 16
    # a node that has not joined the ring has no tokens to record
    env = dict(os.environ, NODETOOL_STANDIN_TOKENS='none')
    p = cb('create', '--store', store, '--name', 'c', *data_dir_args(small), '--snapshot', 'nightly-1',
           '--nodetool', NODETOOL, '--json', env=env)
    assert p.stderr == '' and json.loads(p.stdout)['tokens'] == []
    assert json.loads(p.stdout)['cassandra_version'] == '4.1.3'


def test_data_directory_mode_and_owner_recorded(store, small):
    [d] = small
    os.chown(d, 4242, 4343)
    os.chmod(d, 0o750)
    cb('create', '--store', store, '--name', 'b', '--data-dir', d, '--snapshot', 'nightly-1')
    root = backup_manifest(store, 'b')['root']
    assert (root['mode'], root['uid'], root['gid']) == (0o750, 4242, 4343)


# --- the CLI convention ----------------------------------------------------------------------

def test_exit_codes(store, small, tmp_path):
    args = [*data_dir_args(small), '--snapshot', 'nightly-1']
    one_error_line(cb('create', '--store', tmp_path / 'nope', *args, check=False), 3, 'cannot open store')
    one_error_line(cb('create', '--store', store, '--level', '20', *args, check=False), 2, '--level 20')
    one_error_line(cb('create', '--store', store, '--table', 'shop', *args, check=False), 2,
                   '--table shop', 'KEYSPACE.TABLE')
    one_error_line(cb('create', '--store', store, '--data-dir', small[0], check=False), 2,
                   'missing --snapshot')
    one_error_line(cb('create', '--store', store, '--snaphot', 'x', *args, check=False), 2,
                   'unknown option --snaphot', '--snapshot')
    one_error_line(cb('create', '--store', store, *args, 'extra', check=False), 2, 'too many operands')
    assert cb('create', '--help').stdout.startswith('usage: cassbackup create')
    assert backup_list(store) == []


def test_take_snapshot_of_keyspaces_and_tables(store, tmp_path):
    """--keyspace with --table: the snapshot covers the keyspaces named (nodetool takes either
    keyspaces or -kt tables), and the backup only what was selected."""
    src = make_sample(str(tmp_path / 's'), '--data-kib', '16', '--no-clutter')
    dirs = sample_dirs(src)
    for d in dirs:
        for root, subdirs, _ in os.walk(d):
            if 'snapshots' in subdirs:
                shutil.rmtree(os.path.join(root, 'snapshots'))
                subdirs.remove('snapshots')
    nlog = str(tmp_path / 'n.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs))
    cb('create', '--store', store, '--name', 'mix', *data_dir_args(dirs), '--snapshot', 'cb-1',
       '--take-snapshot', '--nodetool', NODETOOL, '--keyspace', 'shop', '--table', 'shop1.orders', env=env)
    calls = [c for c in nodetool_log(nlog) if c['cmd'] not in ('version', 'info', 'status', 'describecluster')]
    assert calls[0]['cmd'] == 'snapshot' and calls[0]['args'] == ['-t', 'cb-1', 'shop', 'shop1']
    assert calls[-1]['cmd'] == 'clearsnapshot'
    [b] = backup_list(store)
    assert b['tables'] == 4  # shop's three and shop1.orders
