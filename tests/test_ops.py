"""Operations: the metrics file (node_exporter's textfile collector) after create, prune and
check, each checked by promtool; the hooks around create (order, environment, a failing
hook_pre); the routine 'cassbackup backup' a timer runs (snapshot, create, retention, prune),
with the nodetool stand-in."""
import glob
import json
import os
import re
import shutil
import signal
import stat
import sys
import time

import pytest

from conftest import (CASSBACKUP, backup_list, cb, data_dir_args, make_sample, packs, run, sample_dirs,
                      stop_while_writing)

HERE = os.path.dirname(os.path.abspath(__file__))
NODETOOL = os.path.join(HERE, 'standins', 'nodetool')
PROMTOOL = shutil.which('promtool')
SAMPLE_RE = re.compile(r'^([a-z_]+)\{(.*)\} (\S+)$')

HID = '5f1c0c8e-0000-4000-8000-0000000000a1'


def tiny(tmp_path, name='src', seed=7):
    return sample_dirs(make_sample(str(tmp_path / name), '--data-kib', '16', '--data-dirs', '1',
                                   '--keyspaces', '1', '--tables', '1', '--sstables', '1', '--no-index',
                                   '--no-clutter', '--seed', str(seed)))


def write_conf(tmp_path, **keys):
    path = tmp_path / 'cassbackup.conf'
    path.write_text(''.join(f'{k} = {v}\n' for k, v in keys.items()))
    return str(path)


def metrics(path):
    """{(name, ((label, value), ...)): value} of the file, after promtool check metrics passes."""
    assert PROMTOOL, 'promtool not installed (Debian prometheus; tools/install-deps.sh installs it)'
    text = open(path).read()
    p = run(PROMTOOL, 'check', 'metrics', input=text, check=False)
    assert p.returncode == 0, f'promtool check metrics: {p.stdout}{p.stderr}\n{text}'
    res = {}
    for line in text.splitlines():
        if line.startswith('#'):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f'not a sample line: {line!r}'
        labels = tuple(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        res[(m.group(1), labels)] = float(m.group(3))
    return res


def of(ms, name, **labels):
    """The one sample of name whose labels include these."""
    found = [v for (n, ls), v in ms.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) == 1, f'{name} {labels}: {len(found)} samples in {sorted(ms)}'
    return found[0]


def has(ms, name, **labels):
    return any(n == name and set(labels.items()) <= set(ls) for (n, ls), _ in ms.items())


def create(conf, store, dirs, name, *extra, **kw):
    return cb('--config', conf, 'create', '--store', store, *data_dir_args(dirs), '--snapshot', 'nightly-1',
              '--name', name, '--node', 'n1', '--cluster', 'c1', '--datacenter', 'dc1', *extra, **kw)


NODE = dict(operation='create', cluster='c1', datacenter='dc1', node='n1')

# --- metrics ---------------------------------------------------------------------------------


def test_metrics_after_a_successful_create(store, tmp_path):
    dirs = tiny(tmp_path)
    mfile = str(tmp_path / 'textfile' / 'cassbackup.prom')
    os.mkdir(os.path.dirname(mfile))
    conf = write_conf(tmp_path, metrics_file=mfile)
    before = time.time()
    s = json.loads(create(conf, store, dirs, 'b1', '--json', '--host-id', HID).stdout)
    after = time.time()
    ms = metrics(mfile)
    node = dict(NODE, store=store, host_id=HID)
    assert before - 0.001 <= of(ms, 'cassbackup_last_success_timestamp_seconds', **node) <= after + 0.001
    assert of(ms, 'cassbackup_last_run_timestamp_seconds', **node) == \
        of(ms, 'cassbackup_last_success_timestamp_seconds', **node)
    assert of(ms, 'cassbackup_last_run_success', **node) == 1
    assert 0 <= of(ms, 'cassbackup_last_run_duration_seconds', **node) <= after - before + 0.001
    assert of(ms, 'cassbackup_runs_total', **node) == 1
    assert of(ms, 'cassbackup_failures_total', **node) == 0
    assert of(ms, 'cassbackup_last_files', **node) == s['files'] > 0
    assert of(ms, 'cassbackup_last_read_bytes', **node) == s['bytes'] > 0
    assert of(ms, 'cassbackup_last_written_bytes', **node) == s['stored_bytes'] > 0
    assert of(ms, 'cassbackup_last_deduplicated_bytes', **node) == s['bytes'] - s['new_bytes'] == 0
    # readable by node_exporter's user; the temporary file is gone
    assert stat.S_IMODE(os.stat(mfile).st_mode) == 0o644
    assert sorted(os.listdir(os.path.dirname(mfile))) == ['cassbackup.prom', 'cassbackup.prom.lock']
    # a second backup of the same files: all deduplicated, the counters add up
    s2 = json.loads(create(conf, store, dirs, 'b2', '--json', '--host-id', HID).stdout)
    ms = metrics(mfile)
    assert of(ms, 'cassbackup_last_deduplicated_bytes', **node) == s2['bytes']
    assert of(ms, 'cassbackup_runs_total', **node) == 2
    assert of(ms, 'cassbackup_files_total', **node) == s['files'] + s2['files']
    assert of(ms, 'cassbackup_read_bytes_total', **node) == s['bytes'] + s2['bytes']
    assert of(ms, 'cassbackup_deduplicated_bytes_total', **node) == s2['bytes']


def test_metrics_after_a_failed_create(store, tmp_path):
    """The failure counter goes up; the last success time and figures stay as they were."""
    dirs = tiny(tmp_path)
    mfile = str(tmp_path / 'cassbackup.prom')
    conf = write_conf(tmp_path, metrics_file=mfile)
    create(conf, store, dirs, 'b1')
    ok = metrics(mfile)
    node = dict(NODE, store=store)
    p = create(conf, store, dirs, 'b1', check=False)  # the name is taken
    assert p.returncode == 1 and 'already exists' in p.stderr
    ms = metrics(mfile)
    assert of(ms, 'cassbackup_failures_total', **node) == 1
    assert of(ms, 'cassbackup_runs_total', **node) == 2
    assert of(ms, 'cassbackup_last_run_success', **node) == 0
    for name in ('cassbackup_last_success_timestamp_seconds', 'cassbackup_last_files',
                 'cassbackup_last_read_bytes', 'cassbackup_files_total'):
        assert of(ms, name, **node) == of(ok, name, **node), name
    assert of(ms, 'cassbackup_last_run_timestamp_seconds', **node) >= \
        of(ms, 'cassbackup_last_success_timestamp_seconds', **node)
    # a snapshot that is not there: failed again, under the same labels
    p = cb('--config', conf, 'create', '--store', store, *data_dir_args(dirs), '--snapshot', 'nope',
           '--name', 'b2', '--node', 'n1', '--cluster', 'c1', '--datacenter', 'dc1', check=False)
    assert p.returncode != 0
    ms = metrics(mfile)
    assert of(ms, 'cassbackup_failures_total', **node) == 2
    assert of(ms, 'cassbackup_last_success_timestamp_seconds', **node) == \
        of(ok, 'cassbackup_last_success_timestamp_seconds', **node)


def test_metrics_of_prune_and_check_keep_those_of_create(store, tmp_path):
    dirs = tiny(tmp_path)
    other = tiny(tmp_path, 'other', seed=8)
    mfile = str(tmp_path / 'cassbackup.prom')
    conf = write_conf(tmp_path, metrics_file=mfile)
    create(conf, store, dirs, 'b1')
    create(conf, store, other, 'b2')
    after_create = {k: v for k, v in metrics(mfile).items()}
    cb('--config', conf, 'forget', '--store', store, 'b2')
    cb('--config', conf, 'prune', '--store', store, '--max-unused', '0')
    ms = metrics(mfile)
    # create's samples are all still there, unchanged
    assert {k: v for k, v in ms.items() if ('operation', 'create') in k[1]} == after_create
    p = dict(operation='prune', store=store)
    assert of(ms, 'cassbackup_last_run_success', **p) == 1
    assert of(ms, 'cassbackup_failures_total', **p) == 0
    assert of(ms, 'cassbackup_last_freed_bytes', **p) > 0
    assert of(ms, 'cassbackup_freed_bytes_total', **p) == of(ms, 'cassbackup_last_freed_bytes', **p)
    assert not has(ms, 'cassbackup_last_run_success', operation='prune', node='n1')
    # a dry run changes nothing, and is not counted
    cb('--config', conf, 'prune', '--store', store, '--dry-run')
    assert metrics(mfile) == ms

    cb('--config', conf, 'check', '--store', store, '--read-data')
    ms = metrics(mfile)
    c = dict(operation='check', store=store)
    assert of(ms, 'cassbackup_check_problems', **c) == 0
    assert of(ms, 'cassbackup_last_read_bytes', **c) > 0
    success = of(ms, 'cassbackup_last_success_timestamp_seconds', **c)
    for pack in glob.glob(os.path.join(store, 'packs', '*', '*')):
        os.unlink(pack)
    assert cb('--config', conf, 'check', '--store', store, check=False).returncode == 1
    ms = metrics(mfile)
    assert of(ms, 'cassbackup_check_problems', **c) >= 1
    assert of(ms, 'cassbackup_failures_total', **c) == 1
    assert of(ms, 'cassbackup_runs_total', **c) == 2
    assert of(ms, 'cassbackup_last_success_timestamp_seconds', **c) == success
    assert of(ms, 'cassbackup_runs_total', **p) == 1
    assert {k: v for k, v in ms.items() if ('operation', 'create') in k[1]} == after_create


def test_metrics_file_keeps_other_labels_and_escapes_them(store, tmp_path):
    """Two nodes' creates into one file (a store named with a quote and a backslash): each keeps
    its own samples; unknown metric names in the file are dropped, the rest kept."""
    dirs = tiny(tmp_path)
    mfile = str(tmp_path / 'cassbackup.prom')
    conf = write_conf(tmp_path, metrics_file=mfile)
    odd = str(tmp_path / 'st"o\\re')
    cb('init', '--store', odd)
    create(conf, store, dirs, 'b1')
    cb('--config', conf, 'create', '--store', odd, *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--name', 'b1', '--node', 'n2', '--cluster', 'c1')
    with open(mfile, 'a') as f:
        f.write('# HELP something_else x\n# TYPE something_else gauge\nsomething_else 1\n')
    create(conf, store, dirs, 'b3')
    ms = metrics(mfile)
    assert of(ms, 'cassbackup_runs_total', **dict(NODE, store=store)) == 2
    odd_escaped = odd.replace('\\', '\\\\').replace('"', '\\"')
    assert of(ms, 'cassbackup_runs_total', operation='create', node='n2', store=odd_escaped) == 1
    assert not any(n == 'something_else' for n, _ in ms)


def test_metrics_file_that_cannot_be_written_does_not_fail_the_backup(store, tmp_path):
    dirs = tiny(tmp_path)
    mfile = str(tmp_path / 'no-such-dir' / 'cassbackup.prom')
    conf = write_conf(tmp_path, metrics_file=mfile)
    p = create(conf, store, dirs, 'b1')
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'cassbackup: metrics file {mfile}: ') and \
        lines[0].endswith(', ignoring')
    assert [b['name'] for b in backup_list(store)] == ['b1']


# --- hooks -----------------------------------------------------------------------------------

HOOK = '''#!{python}
import json, os, sys
NAMES = {names!r}
backups = os.path.join(os.environ.get('CASSBACKUP_STORE', ''), 'backups')
with open({log!r}, 'a') as f:
    f.write(json.dumps({{'argv': sys.argv[1:],
                        'env': {{k: v for k, v in os.environ.items() if k in NAMES}},
                        'backups': sorted(os.listdir(backups)) if os.path.isdir(backups) else []}}) + '\\n')
print('hook output on stdout')
sys.stdout.flush()
if os.environ.get('HOOK_SIGNAL_' + sys.argv[1]):
    os.kill(os.getpid(), int(os.environ['HOOK_SIGNAL_' + sys.argv[1]]))
sys.exit(int(os.environ.get('HOOK_EXIT_' + sys.argv[1], '0')))
'''


ENV_NAMES = ['CASSBACKUP_HOOK', 'CASSBACKUP_OPERATION', 'CASSBACKUP_BACKUP', 'CASSBACKUP_SNAPSHOT',
             'CASSBACKUP_STORE', 'CASSBACKUP_CONFIG', 'CASSBACKUP_RESULT', 'CASSBACKUP_EXIT_STATUS',
             'CASSBACKUP_FAILED']


@pytest.fixture
def hooks(tmp_path):
    log = str(tmp_path / 'hooks.log')
    path = tmp_path / 'hook with space.py'
    path.write_text(HOOK.format(python=sys.executable, log=log, names=ENV_NAMES))
    path.chmod(0o755)
    keys = {'hook_pre': f'"{path}" pre \'two words\'', 'hook_post': f'"{path}" post',
            'hook_failure': f'"{path}" failure'}

    def calls():
        return [json.loads(l) for l in open(log)] if os.path.exists(log) else []
    return keys, calls


def test_hooks_run_in_order_with_the_environment(store, tmp_path, hooks):
    keys, calls = hooks
    dirs = tiny(tmp_path)
    conf = write_conf(tmp_path, **keys)
    p = create(conf, store, dirs, 'b1', '--json')
    assert json.loads(p.stdout)['name'] == 'b1'  # the hooks' stdout went to stderr
    assert p.stderr.count('hook output on stdout') == 2
    pre, post = calls()
    assert pre['argv'] == ['pre', 'two words'] and post['argv'] == ['post']
    assert pre['backups'] == [] and post['backups'] == ['b1']  # backups/b1/NODE.json
    base = {'CASSBACKUP_OPERATION': 'create', 'CASSBACKUP_BACKUP': 'b1', 'CASSBACKUP_SNAPSHOT': 'nightly-1',
            'CASSBACKUP_STORE': store, 'CASSBACKUP_CONFIG': conf}
    assert pre['env'] == dict(base, CASSBACKUP_HOOK='hook_pre')
    assert post['env'] == dict(base, CASSBACKUP_HOOK='hook_post', CASSBACKUP_RESULT='success')


def test_failing_pre_hook_stops_the_create(store, tmp_path, hooks):
    keys, calls = hooks
    dirs = tiny(tmp_path)
    mfile = str(tmp_path / 'cassbackup.prom')
    conf = write_conf(tmp_path, metrics_file=mfile, **keys)
    p = create(conf, store, dirs, 'b1', env=dict(os.environ, HOOK_EXIT_pre='3'), check=False)
    assert p.returncode == 1
    errors = [l for l in p.stderr.splitlines() if l.startswith('cassbackup:')]
    assert len(errors) == 1
    assert errors[0].startswith('cassbackup: hook_pre ') and 'pre \'two words\' failed: exit status 3; ' \
        'no backup was made' in errors[0]
    assert backup_list(store) == []
    assert glob.glob(os.path.join(store, 'packs', '*', '*')) == []
    pre, failure = calls()
    assert pre['argv'][0] == 'pre' and failure['argv'] == ['failure']
    assert failure['env']['CASSBACKUP_RESULT'] == 'failure'
    assert failure['env']['CASSBACKUP_FAILED'] == 'hook_pre'
    assert failure['env']['CASSBACKUP_EXIT_STATUS'] == '1'
    assert of(metrics(mfile), 'cassbackup_failures_total', **dict(NODE, store=store)) == 1


def test_failed_create_runs_the_failure_hook_not_the_post_hook(store, tmp_path, hooks):
    keys, calls = hooks
    dirs = tiny(tmp_path)
    conf = write_conf(tmp_path, **keys)
    p = cb('--config', conf, 'create', '--store', store, *data_dir_args(dirs), '--snapshot', 'nope',
           check=False)
    assert p.returncode == 1
    assert [c['argv'][0] for c in calls()] == ['pre', 'failure']
    assert calls()[1]['env']['CASSBACKUP_FAILED'] == 'create'


# A hook that exits 130 on its own says so: the status a shell gives its killed child is not a
# signal (it was reported as "killed by signal 2").
@pytest.mark.parametrize('how, said', [({'HOOK_EXIT_post': '4'}, 'exit status 4'),
                                       ({'HOOK_EXIT_post': '130'}, 'exit status 130'),
                                       ({'HOOK_SIGNAL_post': '9'}, 'killed by signal 9')])
def test_failing_post_hook_fails_the_command_after_the_backup(store, tmp_path, hooks, how, said):
    keys, calls = hooks
    dirs = tiny(tmp_path)
    mfile = str(tmp_path / 'cassbackup.prom')
    conf = write_conf(tmp_path, metrics_file=mfile, **keys)
    p = create(conf, store, dirs, 'b1', env=dict(os.environ, **how), check=False)
    assert p.returncode == 1
    assert re.search(rf"^cassbackup: hook_post .* post failed: {said}; the backup was made$",
                     p.stderr, re.M)
    assert [b['name'] for b in backup_list(store)] == ['b1']
    assert [c['argv'][0] for c in calls()] == ['pre', 'post', 'failure']
    assert calls()[2]['env']['CASSBACKUP_FAILED'] == 'hook_post'
    # the backup itself succeeded
    assert of(metrics(mfile), 'cassbackup_failures_total', **dict(NODE, store=store)) == 0


@pytest.mark.parametrize('value, said', [
    ("'/bin/true", "hook_pre = '/bin/true: unterminated single quote; no backup was made"),
    ('/no/such/hook now', 'hook_pre /no/such/hook: not found; no backup was made'),
    ('{tmp}/plain', 'hook_pre {tmp}/plain: not an executable file; no backup was made'),
])
def test_bad_pre_hook_is_one_line_and_no_backup(store, tmp_path, value, said):
    (tmp_path / 'plain').write_text('echo hi\n')
    value, said = value.format(tmp=tmp_path), said.format(tmp=tmp_path)
    dirs = tiny(tmp_path)
    conf = write_conf(tmp_path, hook_pre=value)
    p = create(conf, store, dirs, 'b1', check=False)
    assert p.returncode == 1
    assert p.stderr == f'cassbackup: {said}\n'
    assert backup_list(store) == []


# --- cassbackup backup -----------------------------------------------------------------------

def no_snapshots(dirs):
    for d in dirs:
        for root, subdirs, _ in os.walk(d):
            if 'snapshots' in subdirs:
                shutil.rmtree(os.path.join(root, 'snapshots'))
                subdirs.remove('snapshots')


def test_backup_takes_a_snapshot_creates_and_applies_the_retention(store, tmp_path):
    dirs = tiny(tmp_path)
    no_snapshots(dirs)
    # a node's schema: the routine backup keeps it, so restore --whole-node can use it
    shutil.copytree(os.path.join(dirs[0], 'shop'), os.path.join(dirs[0], 'system_schema'))
    nlog = str(tmp_path / 'nodetool.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs))
    mfile = str(tmp_path / 'cassbackup.prom')
    conf = write_conf(tmp_path, store=store, data_dir=dirs[0], nodetool=NODETOOL, metrics_file=mfile,
                      name='nightly-%Y%m%d', keep_last='1')
    # another node's backup in the same store: this node's retention leaves it alone
    create(conf, store, tiny(tmp_path, 'n2', seed=9), 'other', '--node', 'n2')
    day = time.strftime('%Y%m%d', time.gmtime())
    cb('--config', conf, 'backup', '--node', 'n1', env=env)
    calls = [json.loads(l) for l in open(nlog)]
    assert [c['cmd'] for c in calls if c['cmd'] in ('snapshot', 'clearsnapshot')] == ['snapshot', 'clearsnapshot']
    snap = [c for c in calls if c['cmd'] == 'snapshot'][0]
    name = snap['args'][1]
    assert name in (f'nightly-{day}', 'nightly-' + time.strftime('%Y%m%d', time.gmtime()))
    assert snap['args'][0] == '-t'
    assert sorted(b['name'] for b in backup_list(store)) == sorted(['other', name])
    cb('verify', '--store', store, name, '--keyspace', 'system_schema')  # there, and whole
    # the second run: keep_last = 1 forgets the first of n1, and prune runs
    cb('--config', conf, 'backup', '--node', 'n1', '--name', 'n1-second', env=env)
    assert sorted(b['name'] for b in backup_list(store)) == ['n1-second', 'other']
    ms = metrics(mfile)
    assert of(ms, 'cassbackup_runs_total', operation='create', node='n1') == 2
    assert of(ms, 'cassbackup_runs_total', operation='prune') == 2
    assert not glob.glob(os.path.join(dirs[0], '*', '*', 'snapshots', '*'))


def test_backup_leaves_the_prune_to_the_last_node_while_another_creates(store, tmp_path):
    """Nodes sharing a store run their jobs in one window: the job of a node that finished
    while another node's create ran waited 60 s for the store in its prune and exited 1, for a
    backup it had made. Its prune now runs --if-idle: it leaves the prune to the last node to
    finish, says so, exit 0; that one's prune frees what is due."""
    dirs = tiny(tmp_path)
    no_snapshots(dirs)
    env = dict(os.environ, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs))
    mfile = str(tmp_path / 'cassbackup.prom')
    conf = write_conf(tmp_path, store=store, data_dir=dirs[0], nodetool=NODETOOL, keep_last='1',
                      metrics_file=mfile)
    cb('--config', conf, 'backup', '--node', 'n1', '--name', 'n1-first', env=env)
    assert of(metrics(mfile), 'cassbackup_runs_total', operation='prune') == 1
    first = set(packs(store))
    big = sample_dirs(make_sample(str(tmp_path / 'n2'), '--data-kib', '32768', '--incompressible',
                                  '--no-clutter', '--keyspaces', '1', '--tables', '1', '--no-index'))
    other = stop_while_writing([CASSBACKUP, 'create', '--store', store, '--name', 'n2-day', '--node', 'n2',
                                *data_dir_args(big), '--snapshot', 'nightly-1'], store, None)
    assert other, 'the other node\'s create ended before it was stopped'
    try:  # the node's data has changed since: n1-first's pack holds what no backup will use
        dirs2 = tiny(tmp_path, 'src2', seed=8)
        no_snapshots(dirs2)
        env2 = dict(os.environ, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs2))
        conf2 = write_conf(tmp_path, store=store, data_dir=dirs2[0], nodetool=NODETOOL, keep_last='1',
                           metrics_file=mfile)
        p = cb('--config', conf2, 'backup', '--node', 'n1', '--name', 'n1-second', env=env2)
        assert f'not pruned (--if-idle): the store is in use by create (pid {other.pid} on ' in p.stdout
        # no prune ran: its last success stays that of the first job (CassbackupNoRecentPrune)
        assert of(metrics(mfile), 'cassbackup_runs_total', operation='prune') == 1
        assert first <= set(packs(store))  # n1-first's pack is due, and still there
    finally:
        other.send_signal(signal.SIGCONT)
        other.communicate(timeout=300)
    assert other.returncode == 0
    assert sorted(b['name'] for b in backup_list(store)) == ['n1-second', 'n2-day']
    # the last one to finish: the store is idle (--max-unused 0: what n1-first alone used goes)
    p = cb('prune', '--store', store, '--if-idle', '--max-unused', '0')
    assert 'not pruned' not in p.stdout and not first & set(packs(store)), p.stdout
    cb('check', '--store', store, '--read-data')


def test_backup_stops_after_a_failed_create(store, tmp_path):
    dirs = tiny(tmp_path)
    no_snapshots(dirs)
    env = dict(os.environ, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs), NODETOOL_STANDIN_FAIL='snapshot')
    conf = write_conf(tmp_path, store=store, data_dir=dirs[0], nodetool=NODETOOL, keep_last='1')
    p = cb('--config', conf, 'backup', '--node', 'n1', env=env, check=False)
    assert p.returncode == 1 and 'could not be taken' in p.stderr
    assert 'forget' not in p.stdout and backup_list(store) == []


@pytest.mark.parametrize('key, value, said', [
    ('keep_daily', 'abc', 'keep_daily = abc: not a whole number; nothing was done'),
    ('keep_within', '3x', 'keep_within = 3x: not a duration (numbers with units y, m (months), w, d, h, min, s, '
     'e.g. 7d, 1y2m, 12h30min); nothing was done'),
])
def test_backup_refuses_a_bad_retention_before_the_snapshot(store, tmp_path, key, value, said):
    nlog = str(tmp_path / 'nodetool.log')
    conf = write_conf(tmp_path, store=store, data_dir=str(tmp_path), nodetool=NODETOOL, **{key: value})
    p = cb('--config', conf, 'backup', env=dict(os.environ, NODETOOL_STANDIN_LOG=nlog), check=False)
    assert p.returncode == 2
    assert p.stderr == f'cassbackup: {said}\n'
    assert not os.path.exists(nlog) and backup_list(store) == []
    line = cb('--config', conf, 'validate-config', check=False).stdout.splitlines()[3]
    assert line.startswith(f'PROBLEM  line 4   {key} = {value}: not a ')


@pytest.mark.parametrize('template, said', [
    ('x' * 300, 'name = ' + 'x' * 300 + ': makes no name (empty, or over 255 bytes); nothing was done'),
    ('a b', "name = a b: gives 'a b': use letters, digits and . _ : @ + - (not first), at most 200; "
            "nothing was done"),
    # an unknown conversion is named as written, not as glibc expands it (40 spaces and a 1)
    ('n-%41', "name = n-%41: '%41' is no strftime conversion (write %% for a %); nothing was done"),
    ('n-%Y%', "name = n-%Y%: '%' is no strftime conversion (write %% for a %); nothing was done"),
])
def test_backup_name_template_that_makes_no_name(store, tmp_path, template, said):
    nlog = str(tmp_path / 'nodetool.log')
    conf = write_conf(tmp_path, store=store, data_dir=str(tmp_path), nodetool=NODETOOL, name=template)
    p = cb('--config', conf, 'backup', env=dict(os.environ, NODETOOL_STANDIN_LOG=nlog), check=False)
    assert p.returncode == 2
    assert p.stderr == f'cassbackup: {said}\n'
    assert not os.path.exists(nlog) and backup_list(store) == []


# --- alert rules -----------------------------------------------------------------------------

RULES = os.path.join(os.path.dirname(HERE), 'contrib', 'prometheus', 'cassbackup.rules.yml')

RULE_TESTS = '''
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # n1 backed up at 1h and 25h; n2 at 1h only, then failed from 24h on; check found
      # problems from 30h on
      - series: 'cassbackup_last_success_timestamp_seconds{{operation="create",store="/s",cluster="c1",datacenter="d",node="n1"}}'
        values: '3600x1440 90000x1500'
      - series: 'cassbackup_last_success_timestamp_seconds{{operation="create",store="/s",cluster="c1",datacenter="d",node="n2"}}'
        values: '3600x2940'
      - series: 'cassbackup_last_run_success{{operation="create",store="/s",cluster="c1",datacenter="d",node="n2"}}'
        values: '1x1440 0x1500'
      - series: 'cassbackup_check_problems{{operation="check",store="/s"}}'
        values: '0x1800 2x1140'
      # n2's hourly incrementals succeed throughout (no stand-in for a full backup), then one
      # fails from 30h on
      - series: 'cassbackup_last_success_timestamp_seconds{{operation="incremental",store="/s",cluster="c1",datacenter="d",node="n2"}}'
        values: '0+60x2940'
      - series: 'cassbackup_last_run_success{{operation="incremental",store="/s",cluster="c1",datacenter="d",node="n2"}}'
        values: '1x1800 0x1140'
      # a prune at 1h, then none (every job found another node's create running)
      - series: 'cassbackup_last_success_timestamp_seconds{{operation="prune",store="/s"}}'
        values: '3600x12000'
    alert_rule_test:
      - eval_time: 160h
        alertname: CassbackupNoRecentPrune
        exp_alerts: []
      - eval_time: 170h
        alertname: CassbackupNoRecentPrune
        exp_alerts:
          - exp_labels: {{severity: warning, operation: prune, store: /s}}
            exp_annotations:
              summary: No cassbackup prune of /s for 7 days
              description: >-
                The backup jobs prune only when no other command holds the store (prune --if-idle),
                and each found another node's create running. Run 'cassbackup prune --store
                /s' when no backup runs.
      - eval_time: 20h
        alertname: CassbackupNoRecentBackup
        exp_alerts: []
      - eval_time: 28h
        alertname: CassbackupNoRecentBackup
        exp_alerts:
          - exp_labels: {{severity: critical, operation: create, store: /s, cluster: c1, datacenter: d, node: n2}}
            exp_annotations:
              summary: No successful cassbackup backup of n2 for 26 hours
              description: >-
                Node n2 (cluster c1, datacenter d) last made a backup into /s 1d 3h 0m 0s ago.
                See 'journalctl -u cassbackup-backup.service'.
      - eval_time: 28h
        alertname: CassbackupClusterBackupIncomplete
        exp_alerts:
          - exp_labels: {{severity: warning, operation: create, store: /s, cluster: c1, datacenter: d, node: n2}}
            exp_annotations:
              summary: "Cluster c1: the latest backup lacks n2"
              description: n2's last backup is 1d 0h 0m 0s older than the newest backup of cluster c1.
      - eval_time: 23h
        alertname: CassbackupClusterBackupIncomplete
        exp_alerts: []
      - eval_time: 28h
        alertname: CassbackupBackupFailed
        exp_alerts:
          - exp_labels: {{severity: warning, operation: create, store: /s, cluster: c1, datacenter: d, node: n2}}
            exp_annotations:
              summary: The last cassbackup backup of n2 failed
              description: "n2: the last create into /s failed; it is retried at the next run of cassbackup-backup.timer."
      - eval_time: 29h
        alertname: CassbackupIncrementalFailed
        exp_alerts: []
      - eval_time: 31h
        alertname: CassbackupIncrementalFailed
        exp_alerts:
          - exp_labels: {{severity: warning, operation: incremental, store: /s, cluster: c1, datacenter: d, node: n2}}
            exp_annotations:
              summary: The last cassbackup incremental backup of n2 failed
              description: "n2: the last incremental into /s failed; its backups/ links stay for the next run of cassbackup-incremental.timer."
      - eval_time: 29h
        alertname: CassbackupCheckFoundProblems
        exp_alerts: []
      - eval_time: 32h
        alertname: CassbackupCheckFoundProblems
        exp_alerts:
          - exp_labels: {{severity: critical, operation: check, store: /s}}
            exp_annotations:
              summary: cassbackup check found 2 problems in /s
              description: Run 'cassbackup check --store /s' for the list.
'''


def test_alert_rules_pass_promtool_and_fire_as_meant(tmp_path):
    assert PROMTOOL, 'promtool not installed (Debian prometheus; tools/install-deps.sh installs it)'
    p = run(PROMTOOL, 'check', 'rules', RULES, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    t = tmp_path / 'rules_test.yml'
    t.write_text(RULE_TESTS.format(rules=RULES))
    p = run(PROMTOOL, 'test', 'rules', t, check=False)
    assert p.returncode == 0, p.stdout + p.stderr


# --- validate-config and concurrent runs -----------------------------------------------------

def test_validate_config_checks_hooks_and_the_metrics_file(tmp_path):
    (tmp_path / 'textfile').mkdir()
    conf = write_conf(tmp_path, metrics_file=tmp_path / 'textfile' / 'cassbackup.prom',
                      hook_pre='/bin/true "one arg"', hook_post='"/bin/true', hook_failure='no-such-hook-here')
    p = cb('--config', conf, 'validate-config', check=False)
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert lines[0] == f'ok       line 1   metrics_file = {tmp_path}/textfile/cassbackup.prom: writable directory'
    assert lines[1] == 'ok       line 2   hook_pre = /bin/true "one arg": runs /bin/true with 1 argument'
    assert lines[2] == 'PROBLEM  line 3   hook_post = "/bin/true: unterminated double quote'
    assert lines[3] == ('PROBLEM  line 4   hook_failure = no-such-hook-here: no-such-hook-here: no executable '
                        'program by that name on PATH')
    conf = write_conf(tmp_path, metrics_file=tmp_path / 'none' / 'cassbackup.prom')
    line = cb('--config', conf, 'validate-config', check=False).stdout.splitlines()[0]
    assert line == f'PROBLEM  line 1   metrics_file = {tmp_path}/none/cassbackup.prom: {tmp_path}/none: ' \
        'No such file or directory'


def test_runs_finishing_together_all_count(store, tmp_path):
    """Each run reads, merges and replaces the file under its lock: none is lost."""
    import subprocess
    from conftest import CASSBACKUP
    dirs = tiny(tmp_path)
    mfile = str(tmp_path / 'cassbackup.prom')
    conf = write_conf(tmp_path, metrics_file=mfile)
    create(conf, store, dirs, 'b1')
    procs = [subprocess.Popen([CASSBACKUP, '--config', conf, 'check', '--store', store],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(8)]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    ms = metrics(mfile)
    assert of(ms, 'cassbackup_runs_total', operation='check', store=store) == 8
    assert of(ms, 'cassbackup_runs_total', **dict(NODE, store=store)) == 1
