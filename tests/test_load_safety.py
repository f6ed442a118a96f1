"""cassbackup load: checks before any work, starting and stopping the mount helper, signals,
a closed stdout, credentials, and what the loaders it starts inherit (issue 6: defects 9, 12,
22; preflight; one way to find mount.cassbackup).

Every test that interrupts a load checks the same promise: afterwards no mount of ours is in
/proc/self/mountinfo, no mount.cassbackup or sstableloader we started is alive, and the status
file says what happened.
"""
import contextlib
import fcntl
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, CASSBACKUP, MOUNT, cb, data_dir_args, run, sample_dirs, snapshot_tables, wait_for
from test_restore_load import LOADER, log_lines, sha



def mounts_of(store):
    """Mount points of mounts of store (other tests may mount other stores meanwhile)."""
    res = []
    for line in open('/proc/self/mountinfo'):
        fields, source = line.split(' - ', 1)
        if source.split()[1] == store:
            res.append(fields.split()[4])
    return res


def alive(pid):
    """pid exists and is not a zombie (an orphan's zombie may wait for a PID 1 that never reaps)."""
    try:
        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def procs_with(arg):
    """Live pids whose command line has arg as one of its arguments."""
    res = []
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            argv = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\0')
        except OSError:
            continue
        if arg.encode() in argv and alive(int(p)):
            res.append(int(p))
    return res


def assert_nothing_left(store, mount_dir):
    assert not mounts_of(store), f'a mount is left: {mounts_of(store)}'
    assert not procs_with(mount_dir), f'processes left on {mount_dir}: {procs_with(mount_dir)}'
    assert not os.path.exists(mount_dir), f'mount point {mount_dir} is left'


@pytest.fixture
def backup(store, sample_tree, tmp_path):
    """Store with backup 'b' of the sample tree, and the stand-in's environment."""
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    expect = {f'{ks}.{t}': {rel: sha(p) for rel, p in files.items()}
              for (ks, t), files in snapshot_tables(dirs, 'nightly-1').items()}
    json.dump(expect, open(tmp_path / 'expect.json', 'w'))
    (tmp_path / 'state').mkdir()
    env = dict(os.environ, SSTABLELOADER_STANDIN_EXPECT=str(tmp_path / 'expect.json'),
               SSTABLELOADER_STANDIN_STATE=str(tmp_path / 'state'),
               SSTABLELOADER_STANDIN_LOG=str(tmp_path / 'loader.log'))
    return store, env, str(tmp_path / 'status.json'), expect


def load_args(store, status, *extra):
    return [CASSBACKUP, 'load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER,
            '--status-file', status, '--retry-delay', '0', *extra]


def one_error_line(p):
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f'expected one line on stderr, got: {p.stderr}'
    return lines[0]


# --- preflight: nothing is done when a program, host list, credential or backup is wrong -----

@pytest.mark.parametrize('hosts', ['h1,,h2', 'h1,', ',h1', 'h1, h2', ''])
def test_bad_host_list_refused_before_any_work(backup, hosts):
    store, env, status, _ = backup
    p = run(*load_args(store, status), '--hosts', hosts, env=env, check=False)
    assert p.returncode == 2 and f'--hosts {hosts}: expected HOST[,HOST...]' in one_error_line(p)
    assert not os.path.exists(status) and not log_lines(env['SSTABLELOADER_STANDIN_LOG']) and not mounts_of(store)


def test_loader_not_executable_or_missing_backup_refused_before_any_work(backup, tmp_path):
    store, env, status, _ = backup
    noexec = tmp_path / 'loader'
    noexec.write_text('#!/bin/sh\n')
    p = run(CASSBACKUP, 'load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', noexec,
            '--status-file', status, env=env, check=False)
    assert p.returncode == 2 and f'cannot run {noexec}: Permission denied' in one_error_line(p)
    p = run(CASSBACKUP, 'load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', 'no-such-loader',
            '--status-file', status, env=dict(env, PATH='/usr/bin:/bin'), check=False)
    assert p.returncode == 2 and 'cannot run no-such-loader: No such file' in one_error_line(p)
    p = run(CASSBACKUP, 'load', '--store', store, 'nope', '--hosts', 'h1', '--sstableloader', LOADER,
            '--status-file', status, env=env, check=False)
    # exit 3 for no such backup or store, as every subcommand (it was 1 before the CLI layer)
    assert p.returncode == 3 and 'backup nope: no such backup' in one_error_line(p)
    p = run(CASSBACKUP, 'load', '--store', tmp_path / 'nostore', 'b', '--hosts', 'h1', '--sstableloader',
            LOADER, '--status-file', status, env=env, check=False)
    assert p.returncode == 3 and 'No such file or directory' in one_error_line(p)
    assert not os.path.exists(status) and not mounts_of(store)


# --- defect 9 and "one way to find mount.cassbackup" ----------------------------------------

def test_mount_helper_from_environment_else_installed_path(backup, tmp_path):
    store, env, status, expect = backup
    # CASSBACKUP_MOUNT_HELPER is the helper started (the suite points it at the build tree)
    calls = tmp_path / 'helper-calls'
    wrapper = tmp_path / 'mount-wrapper'
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {MOUNT} "$@"\n')
    wrapper.chmod(0o755)
    r = run(*load_args(store, status, '--table', 'shop.orders'), env=dict(env, CASSBACKUP_MOUNT_HELPER=str(wrapper)))
    assert '1 loaded' in r.stdout
    [line] = calls.read_text().splitlines()
    assert line.startswith(f'{store} /tmp/cassbackup-load-') and line.endswith(' -f')
    # without it, the installed path from the build configuration: never ../fs beside us
    sbindir = [l.split('"')[1] for l in open(os.path.join(BUILD, 'config.h')) if 'define SBINDIR' in l][0]
    installed = os.path.join(sbindir, 'mount.cassbackup')
    if os.path.exists(installed):
        pytest.skip(f'{installed} is installed here')
    env2 = {k: v for k, v in env.items() if k != 'CASSBACKUP_MOUNT_HELPER'}
    p = run(*load_args(store, status), env=env2, check=False)
    assert p.returncode == 2
    assert f'cannot run the mount helper {installed}: No such file or directory' in one_error_line(p)


@pytest.mark.parametrize('kind', ['missing', 'not executable', 'a directory'])
def test_mount_helper_that_cannot_run_fails_at_once(backup, tmp_path, kind):
    store, env, status, _ = backup
    helper = tmp_path / 'mount.cassbackup'
    if kind == 'not executable':
        helper.write_text('#!/bin/sh\n')
    elif kind == 'a directory':
        helper.mkdir()
    p = run(*load_args(store, status), env=dict(env, CASSBACKUP_MOUNT_HELPER=str(helper)), check=False)
    reason = 'No such file or directory' if kind == 'missing' else 'Permission denied'
    assert p.returncode == 2
    assert f'cannot run the mount helper {helper}: {reason}' in one_error_line(p)
    assert 'timed out' not in p.stderr and not os.path.exists(status) and not mounts_of(store)


def test_mount_helper_fork_failure_is_reported_not_waited_for(sample_tree):
    """fork() failing for the helper gave a negative pid that went to waitpid: 15 s, then
    'timed out'. Here the load runs as nobody with RLIMIT_NPROC 1, so that fork fails."""
    root = tempfile.mkdtemp(prefix='cb-nproc-')
    try:
        os.chmod(root, 0o755)
        store = os.path.join(root, 'store')
        cb('init', '--store', store)
        cb('create', '--store', store, '--name', 'b', *data_dir_args(sample_dirs(sample_tree)),
           '--snapshot', 'nightly-1')
        for d, _, names in os.walk(root):
            for n in [d] + [os.path.join(d, x) for x in names]:
                os.chown(n, 65534, 65534)
        status = os.path.join(root, 'status.json')
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get('ASAN_OPTIONS', '') + ':detect_leaks=0')
        p = subprocess.run(load_args(store, status), env=env, capture_output=True, text=True,
                           user=65534, group=65534, extra_groups=[],
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NPROC, (1, 1)))
        assert p.returncode == 1, p.stderr
        assert 'timed out' not in p.stderr
        assert f'cannot mount store {store}: cannot start {MOUNT}: Resource temporarily unavailable' \
            in one_error_line(p)
        assert not mounts_of(store) and not [n for n in os.listdir('/tmp') if n.startswith('cassbackup-load-')
                                             and os.stat(f'/tmp/{n}').st_uid == 65534]
    finally:
        shutil.rmtree(root)


# --- defect 12: a closed stdout, INT, TERM, and our own death ---------------------------------

def test_closed_stdout_does_not_kill_load_before_cleanup(backup):
    """`cassbackup load ... | head -1`: SIGPIPE used to kill it before it unmounted."""
    store, env, status, expect = backup
    proc = subprocess.Popen(load_args(store, status, '--json'), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # nobody reads: the report's write gets EPIPE (or SIGPIPE)
    err = proc.stderr.read()
    rc = proc.wait()
    assert rc == 1, f'exit {rc}: {err}'
    assert 'cannot write the report to standard output: Broken pipe' in err
    st = json.load(open(status))
    assert len(st['tables']) == len(expect) and all(t['status'] == 'ok' for t in st['tables'])
    calls = log_lines(env['SSTABLELOADER_STANDIN_LOG'])
    assert_nothing_left(store, calls[0]['dir'].split('/backups/')[0])


def start_hanging_load(backup, hang='shop.orders', **popen):
    """A load whose sstableloader for `hang` runs until a signal ends it; returns the process,
    the loader's pid, our mount point and the mount helper's pid, once that loader runs."""
    store, env, status, _ = backup
    env = dict(env, SSTABLELOADER_STANDIN_HANG=hang)
    proc = subprocess.Popen(load_args(store, status), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)
    marker = os.path.join(env['SSTABLELOADER_STANDIN_STATE'], f'hang.{hang}')
    wait_for(lambda: os.path.exists(marker), 'the loader to start', proc)
    loader = int(open(marker).read())
    mount_dir = log_lines(env['SSTABLELOADER_STANDIN_LOG'])[-1]['dir'].split('/backups/')[0]
    assert mounts_of(store) == [mount_dir]
    [helper] = procs_with(mount_dir)
    assert helper != proc.pid and alive(loader)
    return proc, loader, mount_dir, helper


@contextlib.contextmanager
def hanging_load(backup, **popen):
    """start_hanging_load; on leaving, whatever the load left is taken down (so a test checks
    what is left inside the with block)."""
    h = start_hanging_load(backup, **popen)
    try:
        yield h
    finally:
        proc, loader, mount_dir, helper = h
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in (loader, helper):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(['fusermount3', '-u', '-z', mount_dir], capture_output=True)


@pytest.mark.parametrize('how', ['SIGTERM to cassbackup', 'SIGINT to the process group'])
def test_signal_reports_interrupted_and_cleans_up(backup, how):
    store, env, status, expect = backup
    group = how.endswith('group')
    sig = signal.SIGINT if group else signal.SIGTERM
    with hanging_load(backup, start_new_session=group) as (proc, loader, mount_dir, helper):
        if group:
            os.killpg(proc.pid, sig)  # what Ctrl-C in a terminal does
        else:
            proc.send_signal(sig)
        out, err = proc.communicate()
        # checked before hanging_load cleans up after a failure
        assert not alive(loader) and not alive(helper)
        assert_nothing_left(store, mount_dir)
    assert proc.returncode == 128 + sig, f'exit {proc.returncode}\n{out}\n{err}'
    assert 'FAILED' not in out and 'FAILED' not in err
    assert f'interrupted by signal {int(sig)} (SIG{sig.name[3:]})' in err
    assert 'load b into h1: interrupted: ' in out and '1 interrupted' in out
    st = {f"{t['keyspace']}.{t['table']}": t for t in json.load(open(status))['tables']}
    assert st['shop.orders']['status'] == 'interrupted' and st['shop.orders']['last_error'] == 'interrupted'
    assert all(t['status'] in ('ok', 'pending', 'interrupted') for t in st.values())
    # a re-run loads what is not loaded yet, and only that
    open(env['SSTABLELOADER_STANDIN_LOG'], 'w').close()
    r = run(*load_args(store, status), env=env)
    done_before = sum(t['status'] == 'ok' for t in st.values())
    assert f'{len(expect) - done_before} loaded, {done_before} already loaded before (skipped), 0 failed' in r.stdout
    assert 'shop.orders' in [f"{c['keyspace']}.{c['table']}" for c in log_lines(env['SSTABLELOADER_STANDIN_LOG'])]


def test_sigkill_still_takes_the_mount_and_loader_down(backup):
    """Nothing can run in a process killed by SIGKILL: the helper and the loaders get SIGTERM
    from the kernel (parent-death signal), and libfuse unmounts as the helper exits."""
    store = backup[0]
    with hanging_load(backup) as (proc, loader, mount_dir, helper):
        proc.kill()
        proc.communicate()
        wait_for(lambda: not alive(helper) and not alive(loader) and not mounts_of(store),
                 'the helper and loader to end and the mount to go')
        assert not procs_with(mount_dir)
    os.rmdir(mount_dir)  # the one thing left: an empty directory in /tmp


def test_what_a_killed_load_left_in_tmpdir_goes_with_the_next_load(backup, tmp_path):
    """A load killed by SIGKILL left its mount point and its --target-keyspace staging tree
    (a directory of links per table) in /tmp, one pair per kill, for ever. Each is locked by
    its run now; the next load removes those no run holds, and only those."""
    store, env, status, expect = backup
    tmpdir = tmp_path / 'tmpdir'
    tmpdir.mkdir()
    env = dict(env, TMPDIR=str(tmpdir), SSTABLELOADER_STANDIN_SOURCE_KEYSPACE='shop',
               SSTABLELOADER_STANDIN_HANG='copy.orders')
    args = load_args(store, status, '--keyspace', 'shop', '--target-keyspace', 'copy')
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        marker = os.path.join(env['SSTABLELOADER_STANDIN_STATE'], 'hang.copy.orders')
        wait_for(lambda: os.path.exists(marker), 'the loader to start', proc)
        loader = int(open(marker).read())
        left = sorted(os.listdir(tmpdir))
    finally:  # SIGKILL: what the test is about, and what a failure above must end with too
        proc.kill()
        proc.communicate()
    assert sorted(n.rsplit('-', 1)[0] for n in left) == ['cassbackup-load', 'cassbackup-load-stage'], left
    wait_for(lambda: not alive(loader) and not mounts_of(store), 'the loader to end and the mount to go')
    assert sorted(os.listdir(tmpdir)) == left
    assert any(files for _, _, files in os.walk(tmpdir))  # the staging tree's links
    # another user's directory, and one a live run holds, under the same names: both stay; and
    # a dead run's with a directory of this file system bind-mounted in it: that one's files stay
    others = tmpdir / 'cassbackup-load-stage-other'
    held = tmpdir / 'cassbackup-load-stage-held'
    bound = tmpdir / 'cassbackup-load-stage-bound'
    precious = tmp_path / 'precious'
    for d in (others, held, bound / 'sub', precious):
        d.mkdir(mode=0o700, parents=True)
        (d / 'keep').write_text('x')
    os.chmod(bound, 0o700)  # as a run makes it
    os.chown(others, 12345, 12345)
    subprocess.run(['mount', '--bind', str(precious), str(bound / 'sub')], check=True)
    for n in os.listdir(tmpdir):  # past the minute a run may take to lock what it made
        os.utime(tmpdir / n, (time.time() - 120, time.time() - 120))
    holder = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        open(env['SSTABLELOADER_STANDIN_LOG'], 'w').close()
        env.pop('SSTABLELOADER_STANDIN_HANG')
        run(*args, env=env)
        assert sorted(os.listdir(tmpdir)) == sorted([others.name, held.name, bound.name])
        assert (others / 'keep').exists() and (held / 'keep').exists()
        assert os.listdir(precious) == ['keep'] and os.listdir(bound) == ['sub'], (os.listdir(precious), os.listdir(bound))
    finally:
        os.close(holder)
        subprocess.run(['umount', str(bound / 'sub')], check=True)


# --- defect 9 (password), defect 22 (descriptors) ---------------------------------------------

def test_credentials_both_or_neither_and_password_never_shown(backup, tmp_path):
    store, env, status, expect = backup
    pw = tmp_path / 'pw'
    pw.write_text('s3cret-pw\n')
    pw.chmod(0o600)
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'sstableloader_user = loaduser\nsstableloader_password_file = {pw}\n')
    r = run(CASSBACKUP, '--config', conf, *load_args(store, status)[1:], '--table', 'shop.orders',
            env=dict(env, SSTABLELOADER_STANDIN_AUTH='loaduser:s3cret-pw'))
    assert '1 loaded' in r.stdout
    log = open(json.load(open(status))['tables'][0]['log']).read()
    assert " -u loaduser -pw '********' " in log
    for f in [status, *[os.path.join(status + '.d', n) for n in os.listdir(status + '.d')]]:
        assert 's3cret' not in open(f).read(), f
    assert 's3cret' not in r.stdout + r.stderr
    # one without the other, or a password file that cannot be read: refused before any work
    os.unlink(status)
    for text, says in [('sstableloader_user = loaduser\n', 'sstableloader_user is set but '
                        'sstableloader_password_file is not'),
                       (f'sstableloader_password_file = {pw}\n', 'sstableloader_password_file is set but '
                        'sstableloader_user is not'),
                       (f'sstableloader_user = u\nsstableloader_password_file = {tmp_path}/none\n',
                        f'sstableloader_password_file {tmp_path}/none: No such file or directory')]:
        conf.write_text(text)
        p = run(CASSBACKUP, '--config', conf, *load_args(store, status)[1:], env=env, check=False)
        assert p.returncode == 2 and says in one_error_line(p)
        assert not os.path.exists(status)


def test_loader_inherits_only_stdin_stdout_stderr(backup, tmp_path):
    store, env, status, _ = backup
    # the stand-in's check is real: it refuses a descriptor it should not have
    with open(tmp_path / 'extra', 'w') as extra:
        p = subprocess.run([LOADER, '-d', 'h1', str(tmp_path)], pass_fds=[extra.fileno()],
                           capture_output=True, text=True, env=env)
    assert p.returncode == 1 and 'started with descriptors other than 0, 1, 2 open' in p.stdout
    # what load starts passes it (the /dev/null of its stdin used to leak as a 4th descriptor)
    r = run(*load_args(store, status, '--table', 'shop.orders'), env=env)
    assert '1 loaded' in r.stdout, r.stdout + r.stderr


# --- issue 9: one record per (backup identity, target hosts) in the state directory -----------

def state_args(store, state, hosts, *extra):
    return [CASSBACKUP, 'load', '--store', store, 'b', '--hosts', hosts, '--sstableloader', LOADER,
            '--state-dir', state, '--retry-delay', '0', *extra]


def records(state):
    return sorted(n for n in os.listdir(state) if n.endswith('.json'))


def test_state_dir_records_per_backup_and_hosts_nothing_in_cwd(backup, tmp_path):
    store, env, _, expect = backup
    cwd, state = tmp_path / 'cwd', str(tmp_path / 'var' / 'lib' / 'load')
    cwd.mkdir()
    r = run(*state_args(store, state, 'h1,h2'), env=env, cwd=cwd)
    assert f'{len(expect)} loaded, 0 already loaded before (skipped), 0 failed' in r.stdout
    assert os.listdir(cwd) == []  # the record used to go to ./cassbackup-load-b.json
    [rec] = records(state)
    assert rec.startswith('b.') and len(rec) == len('b.') + 16 + len('.json')
    assert f'status in {state}/{rec}' in r.stdout
    assert sorted(os.listdir(state)) == sorted([rec, rec[:-5] + '.d'])
    for d in (state, os.path.join(state, rec[:-5] + '.d')):
        assert os.stat(d).st_mode & 0o777 == 0o700, d
    assert os.stat(os.path.join(state, rec)).st_mode & 0o777 == 0o600
    st = json.load(open(os.path.join(state, rec)))
    assert st['backup'] == 'b' and st['hosts'] == 'h1,h2' and len(st['backup_id']) == 32
    assert all(t['status'] == 'ok' and t['log'].startswith(f'{state}/{rec[:-5]}.d/') for t in st['tables'])
    # the same hosts, in another order or repeated: the same target, nothing to do again
    open(env['SSTABLELOADER_STANDIN_LOG'], 'w').close()
    r = run(*state_args(store, state, 'h2,h1,h2'), env=env, cwd=cwd)
    assert f'0 loaded, {len(expect)} already loaded before (skipped), 0 failed' in r.stdout
    assert log_lines(env['SSTABLELOADER_STANDIN_LOG']) == [] and records(state) == [rec]
    # the record still says how and when each table was loaded, so a third run skips them too
    again = json.load(open(os.path.join(state, rec)))
    assert again['tables'] == [dict(t, loaded_before=True) for t in st['tables']]
    r = run(*state_args(store, state, 'h1,h2'), env=env, cwd=cwd)
    assert f'0 loaded, {len(expect)} already loaded before (skipped), 0 failed' in r.stdout
    assert log_lines(env['SSTABLELOADER_STANDIN_LOG']) == []
    # another cluster: a record of its own, and every table loaded there too
    r = run(*state_args(store, state, 'other1', '--table', 'shop.orders'), env=env, cwd=cwd)
    assert '1 loaded, 0 already loaded before (skipped)' in r.stdout
    assert len(records(state)) == 2 and rec in records(state) and os.listdir(cwd) == []
    assert json.load(open(os.path.join(state, rec))) == again  # the first record is untouched


def test_backup_identity_is_more_than_its_name(backup, sample_tree, tmp_path):
    """Another store's backup called 'b' is another backup: loading it into the same hosts is
    not 'already loaded' because a record for a backup of that name exists."""
    store, env, _, expect = backup
    state = str(tmp_path / 'state-dir')
    run(*state_args(store, state, 'h1', '--table', 'shop.orders'), env=env)
    [first] = records(state)
    other = str(tmp_path / 'other-store')
    cb('init', '--store', other)
    cb('create', '--store', other, '--name', 'b', *data_dir_args(sample_dirs(sample_tree)),
       '--snapshot', 'nightly-1')
    open(env['SSTABLELOADER_STANDIN_LOG'], 'w').close()
    r = run(*state_args(other, state, 'h1', '--table', 'shop.orders'), env=env)
    assert '1 loaded, 0 already loaded before (skipped)' in r.stdout
    assert len(log_lines(env['SSTABLELOADER_STANDIN_LOG'])) == 1
    recs = [json.load(open(os.path.join(state, n))) for n in records(state)]
    assert len(recs) == 2 and {x['backup'] for x in recs} == {'b'} and recs[0]['backup_id'] != recs[1]['backup_id']
    # --status-file naming the first backup's record: the other 'b' is not skipped either
    r = run(*state_args(other, state, 'h1', '--table', 'shop.orders', '--status-file',
                        os.path.join(state, first)), env=env)
    assert '1 loaded, 0 already loaded before (skipped)' in r.stdout
    assert len(log_lines(env['SSTABLELOADER_STANDIN_LOG'])) == 2


def test_state_dir_from_configuration_and_unusable_state_dir(backup, tmp_path):
    store, env, _, _ = backup
    state = tmp_path / 'conf-state'
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'store = {store}\nhosts = h1\nsstableloader = {LOADER}\nload_state_dir = {state}\n')
    r = run(CASSBACKUP, '--config', conf, 'load', 'b', '--table', 'shop.orders', env=env, cwd=tmp_path)
    assert '1 loaded' in r.stdout and len(records(state)) == 1
    assert f'(default /var/lib/cassbackup/load)' in cb('load', '--help').stdout
    # a state directory that cannot be made: refused before the mount and any loader
    afile = tmp_path / 'afile'
    afile.write_text('')
    open(env['SSTABLELOADER_STANDIN_LOG'], 'w').close()
    p = run(*state_args(store, str(afile / 'state'), 'h1'), env=env, check=False)
    assert p.returncode == 2
    assert f'cannot make state directory {afile}/state: Not a directory' in one_error_line(p)
    assert log_lines(env['SSTABLELOADER_STANDIN_LOG']) == [] and not mounts_of(store)


def test_mount_helper_from_configuration_environment_first(backup, tmp_path):
    store, env, status, _ = backup
    calls = tmp_path / 'helper-calls'
    wrapper = tmp_path / 'mount-wrapper'
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {MOUNT} "$@"\n')
    wrapper.chmod(0o755)
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'mount_helper = {wrapper}\n')
    env_no = {k: v for k, v in env.items() if k != 'CASSBACKUP_MOUNT_HELPER'}
    r = run(CASSBACKUP, '--config', conf, *load_args(store, status, '--table', 'shop.orders')[1:], env=env_no)
    assert '1 loaded' in r.stdout and len(calls.read_text().splitlines()) == 1
    # CASSBACKUP_MOUNT_HELPER, when set, wins over the configuration
    conf.write_text(f'mount_helper = {tmp_path}/no-such-helper\n')
    r = run(CASSBACKUP, '--config', conf, *load_args(store, status, '--table', 'shop.orders', '--force')[1:],
            env=dict(env, CASSBACKUP_MOUNT_HELPER=str(wrapper)))
    assert '1 loaded' in r.stdout and len(calls.read_text().splitlines()) == 2
    p = run(CASSBACKUP, '--config', conf, *load_args(store, status)[1:], env=env_no, check=False)
    assert p.returncode == 2
    assert f'cannot run the mount helper {tmp_path}/no-such-helper: No such file or directory' in one_error_line(p)


def test_selection_naming_no_table_loads_nothing(backup):
    store, env, status, _ = backup
    p = run(*load_args(store, status, '--table', 'shop.orders', '--keyspace', 'nosuch'), env=env, check=False)
    assert p.returncode == 1
    assert 'nothing to load: keyspace nosuch is not in backup b' in one_error_line(p)
    assert not os.path.exists(status) and not log_lines(env['SSTABLELOADER_STANDIN_LOG'])
    p = run(*load_args(store, status, '--table', 'nodot'), env=env, check=False)
    assert p.returncode == 2 and '--table nodot: expected KEYSPACE.TABLE' in one_error_line(p)


def test_sstableloader_options_pass_through_with_passwords_hidden(backup, tmp_path):
    """-f cassandra.yaml, ports and TLS reach sstableloader as it names them; the options load
    sets itself are refused, and so is a name sstableloader does not know, before any work."""
    store, env, status, _ = backup
    yaml = tmp_path / 'cassandra.yaml'
    yaml.write_text('stream_throughput_outbound: 24MiB/s\n')
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'sstableloader_option = conf-path={yaml}\nsstableloader_option = ssp=7001\n')
    run(CASSBACKUP, '--config', conf, *load_args(store, status)[1:], '--table', 'shop.orders', env=env)
    calls = log_lines(env['SSTABLELOADER_STANDIN_LOG'])
    assert calls[-1]['options'] == {'conf-path': str(yaml), 'ssl-storage-port': '7001'}
    # options on the line replace the configuration's, as for every list option
    r = run(CASSBACKUP, '--config', conf, *load_args(store, status)[1:], '--table', 'shop.orders',
            '--force', '--loader-option', 'truststore=/etc/ts.jks',
            '--loader-option', '--truststore-password=tr-s3cret', '--loader-option', 'no-progress', env=env)
    assert '1 loaded' in r.stdout
    calls = log_lines(env['SSTABLELOADER_STANDIN_LOG'])
    assert calls[-1]['options'] == {'truststore': '/etc/ts.jks', 'truststore-password': 'tr-s3cret',
                                    'no-progress': True}
    log = open(json.load(open(status))['tables'][0]['log']).read()
    assert "--truststore-password '********'" in log and '--truststore /etc/ts.jks' in log
    for f in [status, *[os.path.join(status + '.d', n) for n in os.listdir(status + '.d')]]:
        assert 'tr-s3cret' not in open(f).read(), f
    os.unlink(status)
    for spec, says in [('nodes=h9', 'load sets this option itself'), ('-pw=x', 'load sets this option itself'),
                       ('conf-pth=/x', 'not an option of sstableloader'),
                       ('port', 'takes a value'), ('verbose=1', 'takes no value')]:
        p = run(*load_args(store, status), '--loader-option', spec, env=env, check=False)
        assert p.returncode == 2 and f'--loader-option {spec}: ' in one_error_line(p) and says in p.stderr
        assert not os.path.exists(status) and not mounts_of(store)


def test_a_table_the_loader_skipped_is_failed_and_loaded_by_the_next_run(backup, tmp_path):
    """sstableloader exits 0 when it streamed nothing of a table the target cluster lacks
    ("Skipping file ...: table ks.t doesn't exist"): load said "loaded", recorded it ok, and a
    run after the table was created skipped it as loaded before, so its data never arrived.
    Such a table is failed now, with the loader's line, and the next run loads it."""
    store, env, status, expect = backup
    tables = sorted(expect)
    lacking = tables[0]
    env = dict(env, SSTABLELOADER_STANDIN_TARGET_TABLES=','.join(tables[1:]))
    r = run(*load_args(store, status), env=env, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f'{len(tables) - 1} loaded, 0 already loaded before (skipped), 1 failed' in r.stdout, r.stdout
    assert re.search(rf"cassbackup: {lacking}: sstableloader skipped [0-9]+ sstables? of it and exited 0: "
                     "Skipping file ", r.stderr), r.stderr
    assert f"table {lacking} doesn't exist" in r.stderr
    st = {f"{t['keyspace']}.{t['table']}": t['status'] for t in json.load(open(status))['tables']}
    assert st[lacking] == 'failed' and all(st[t] == 'ok' for t in tables[1:])
    del env['SSTABLELOADER_STANDIN_TARGET_TABLES']  # the table made on the target
    r = run(*load_args(store, status), env=env)
    assert f'1 loaded, {len(tables) - 1} already loaded before (skipped), 0 failed' in r.stdout, r.stdout
