"""The daemonized mount, as fstab and mount(8) run it: mount.cassbackup without -f forks and
opens the store in the child, whose word the parent waits for (fs/main.c: SQLite's locks and
threads do not survive the fork). Every other test mounts in the foreground; this one serves
from the daemon while creates, a forget and a prune and a second daemonized mount of the same
store run at once; and a daemon that fails, or is told to stop, before the mount answers.
"""
import json
import os
import subprocess
import time

from conftest import (MOUNT, CASSBACKUP, cb, data_dir_args, make_sample, read, sample_dirs,
                      snapshot_tables, wait_for)


def small_sample(tmp_path, name, seed):
    return make_sample(str(tmp_path / name), '--data-kib', '256', '--data-dirs', '1', '--keyspaces',
                       '1', '--tables', '2', '--sstables', '2', '--no-index', '--no-clutter',
                       '--seed', str(seed))


def daemon_pids(store, mnt):
    """Live (not zombie) mount.cassbackup processes serving STORE on MNT."""
    res = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                argv = f.read().split(b'\0')
            with open(f'/proc/{pid}/stat') as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile
        if argv[:3] == [MOUNT.encode(), store.encode(), mnt.encode()] and state != 'Z':
            res.append(int(pid))
    return res


def daemon_mount(store, mnt):
    """mount.cassbackup STORE MNT without -f: returns once mounted (the parent exits after the
    fork); the pid of the daemon left serving."""
    os.makedirs(mnt)
    p = subprocess.run([MOUNT, store, mnt], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == '' and p.stderr == '', p
    assert os.path.ismount(mnt)
    [pid] = daemon_pids(store, mnt)
    return pid


def umount(store, mnt, pid):
    p = subprocess.run(['fusermount3', '-u', mnt], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    wait_for(lambda: not daemon_pids(store, mnt), f'daemon {pid} exiting after unmount')
    assert not os.path.ismount(mnt)


def check_backup(mnt, name, want):
    """Every file of backup NAME, read through MNT, equals its snapshot's bytes."""
    n = 0
    for (ks, table), files in want.items():
        for rel, src in files.items():
            assert read(os.path.join(mnt, 'backups', name, ks, table, rel)) == read(src), (mnt, name, rel)
            n += 1
    assert n > 0


def test_daemonized_mounts_serve_through_concurrent_creates_and_a_prune(store, tmp_path):
    samples = {name: small_sample(tmp_path, name, seed)
               for name, seed in (('a', 31), ('old', 32), ('c1', 33), ('c2', 34), ('c3', 35))}
    want = {name: snapshot_tables(sample_dirs(s), 'nightly-1') for name, s in samples.items()}
    for name in ('a', 'old'):
        cb('create', '--store', store, '--name', name, *data_dir_args(sample_dirs(samples[name])),
           '--snapshot', 'nightly-1')
    cb('forget', '--store', store, 'old')
    m1, m2 = str(tmp_path / 'm1'), str(tmp_path / 'm2')
    pids = {}
    try:
        pids[m1] = daemon_mount(store, m1)
        # all at once: three creates, a prune of what 'old' alone held, a second daemon, and
        # reads through the first
        creates = [subprocess.Popen([CASSBACKUP, 'create', '--store', store, '--name', name,
                                     *data_dir_args(sample_dirs(samples[name])), '--snapshot',
                                     'nightly-1', '--lock-wait', '600'],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for name in ('c1', 'c2', 'c3')]
        prune = subprocess.Popen([CASSBACKUP, 'prune', '--store', store, '--lock-wait', '600', '--json',
                                  '--max-unused', '0'],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pids[m2] = daemon_mount(store, m2)
        check_backup(m1, 'a', want['a'])
        for c in creates:
            out, err = c.communicate()
            assert c.returncode == 0, err
        out, err = prune.communicate()
        assert prune.returncode == 0, err
        assert json.loads(out)['packs']['deleted'] >= 1  # old's own packs went under the mounts
        names = {'a', 'c1', 'c2', 'c3'}
        for m in (m1, m2):
            wait_for(lambda: set(os.listdir(os.path.join(m, 'backups'))) == names,
                     f'{m} listing {sorted(names)}')
            for name in sorted(names):
                check_backup(m, name, want[name])
        assert sorted(b['name'] for b in json.loads(cb('list', '--store', store, '--json').stdout)) \
            == sorted(names)
        for m in (m1, m2):
            umount(store, m, pids.pop(m))
    finally:
        for m in list(pids):
            subprocess.run(['fusermount3', '-z', '-u', m], capture_output=True)
    assert not daemon_pids(store, m1) and not daemon_pids(store, m2)


def test_a_daemonized_mount_that_fails_after_the_fork_exits_1_saying_why(store, tmp_path):
    """fuse_daemonize's parent exits 0 as soon as it forked: a mount whose kernel INIT then
    failed (here an -o max_read that libfuse refuses at INIT) left nothing mounted, printed
    nothing and exited 0, which mount(8), fstab and systemd take for mounted. The parent now
    waits for the daemon's word: exit 1, with libfuse's reason and ours on stderr."""
    mnt = str(tmp_path / 'mnt')
    os.makedirs(mnt)
    p = subprocess.run([MOUNT, store, mnt, '-o', 'max_read=131072'], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1, p
    assert 'maximum read size' in p.stderr and f'the mount on {mnt} does not answer' in p.stderr, p.stderr
    wait_for(lambda: not daemon_pids(store, mnt), 'the failed daemon exiting')
    assert not os.path.ismount(mnt) and os.listdir(mnt) == []
    # the same mount without the bad option: exit 0 once it answers, and silent
    pid = daemon_mount(store, str(tmp_path / 'mnt2'))
    try:
        assert sorted(os.listdir(tmp_path / 'mnt2')) == ['backups', 'clusters', 'commitlogs']
    finally:
        umount(store, str(tmp_path / 'mnt2'), pid)


def mounted_in_proc(mnt):
    """Is something mounted on mnt, by /proc/mounts (a stat of a hung FUSE mount would hang)?"""
    with open('/proc/mounts') as f:
        return any(line.split()[1] == mnt for line in f)


def stopped(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'T'
    except OSError:
        return False


def test_a_mount_told_to_stop_while_it_waits_stops_its_daemon(store, tmp_path):
    """While the parent waited for the daemon's word, SIGTERM, SIGINT and SIGHUP only marked
    libfuse's session ended: a caller's timeout or Ctrl-C (which reaches the parent alone: the
    daemon has a session of its own) could not end a mount whose store did not answer, and once
    it did the parent exited 0, mounted. Now the parent tells the daemon to stop and exits 1;
    the daemon unmounts and ends. The daemon stops itself right after the fork here (the killat
    shim's CASSBACKUP_TEST_STOP_AT_SETSID), so the signal lands while the parent waits."""
    import signal
    from conftest import preload
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        mnt = str(tmp_path / f'mnt-{sig.name}')
        os.makedirs(mnt)
        env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_SETSID='1')
        with open(tmp_path / 'err', 'w+') as err:
            p = subprocess.Popen([MOUNT, store, mnt], env=env, stdout=subprocess.DEVNULL, stderr=err)
            wait_for(lambda: any(stopped(d) for d in daemon_pids(store, mnt) if d != p.pid),
                     'the daemon stopping itself after the fork')
            [daemon] = [d for d in daemon_pids(store, mnt) if d != p.pid]
            p.send_signal(sig)
            assert p.wait(timeout=60) == 1
            err.seek(0)
            assert 'interrupted before the mount answered' in err.read()
        # the daemon mounts only once its store is open: a daemon stuck before (a store that
        # does not answer) leaves no mount behind, whose every access would hang
        assert not mounted_in_proc(mnt)
        os.kill(daemon, signal.SIGCONT)
        wait_for(lambda: not daemon_pids(store, mnt), f'daemon {daemon} ending after {sig.name}')
        assert not os.path.ismount(mnt)


def test_a_program_the_daemon_started_does_not_hold_the_mount_command(tmp_path):
    """The daemon's stderr was a pipe to the waiting mount command, and an S3 credential_process
    helper the daemon ran inherited it: a helper that leaves an agent behind (caching helpers
    do) kept the command from returning after the mount answered, as long as the agent lived.
    The daemon's stderr is /dev/null; its lines go through a pipe its programs do not get."""
    import json
    import signal
    from test_s3 import moto, s3_env
    with moto(tmp_path) as (port, key, secret):
        env = s3_env(port, key, secret, str(tmp_path / 'cache'))
        loc = 's3://cbtest/stores/agent'
        cb('init', '--store', loc, env=env)
        helper, agent = tmp_path / 'cred.sh', tmp_path / 'agent.pid'
        helper.write_text('#!/bin/sh\n# a credential helper leaving an agent behind, its stderr kept\n'
                          f'sleep 600 >/dev/null </dev/null &\necho $! > {agent}\n'
                          f"echo '{json.dumps({'Version': 1, 'AccessKeyId': key, 'SecretAccessKey': secret})}'\n")
        helper.chmod(0o755)
        (tmp_path / 'config').write_text(f'[default]\ncredential_process = {helper}\n')
        e = {k: v for k, v in env.items() if k not in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_PROFILE')}
        e.update(AWS_CONFIG_FILE=str(tmp_path / 'config'), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / 'none'),
                 HOME=str(tmp_path))
        mnt = str(tmp_path / 'mnt')
        os.makedirs(mnt)
        try:
            # to files: the helper the command itself runs (its check of the store, before the
            # fork) hands the agent the command's stderr, as any program would
            with open(tmp_path / 'out', 'w') as out, open(tmp_path / 'err', 'w') as err:
                p = subprocess.Popen([MOUNT, loc, mnt], env=e, stdout=out, stderr=err)
                assert p.wait(timeout=120) == 0, (tmp_path / 'err').read_text()
            assert (tmp_path / 'err').read_text() == ''
            assert sorted(os.listdir(mnt)) == ['backups', 'clusters', 'commitlogs']
        finally:
            subprocess.run(['fusermount3', '-u', mnt], capture_output=True)
            for line in (agent.read_text().split() if agent.exists() else []):
                try:
                    os.kill(int(line), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_mounts_of_a_host_share_the_configurations_cache_dir(store, tmp_path):
    """cache_dir in cassbackup.conf (read by every mount, as fstab runs them) made each mount's
    disk cache that directory, which one mount locks: a second mount on the host, of the same
    store or another, failed with "in use by another mount". It goes on without a disk cache
    (one is only a cache), saying so once; -o cache_dir given and taken still fails."""
    conf = tmp_path / 'cassbackup.conf'
    conf.write_text(f"cache_dir = {tmp_path / 'cache'}\n")
    other = str(tmp_path / 'other')
    cb('init', '--store', other)
    want = {}
    for s, seed in ((store, 41), (other, 42)):
        src = small_sample(tmp_path, f'src{seed}', seed)
        cb('create', '--store', s, '--name', 'b', *data_dir_args(sample_dirs(src)), '--snapshot', 'nightly-1')
        want[s] = snapshot_tables(sample_dirs(src), 'nightly-1')
    mounts = []
    try:
        for i, s in enumerate((store, store, other)):
            mnt = str(tmp_path / f'm{i}')
            os.makedirs(mnt)
            p = subprocess.run([MOUNT, s, mnt, '-o', f'config={conf}'], capture_output=True, text=True,
                               timeout=60)
            assert p.returncode == 0 and p.stdout == '', p
            mounts.append((s, mnt, daemon_pids(s, mnt)[0]))
            said = 'is in use by another mount; this mount keeps no disk cache'
            assert (said in p.stderr) == (i > 0) and len(p.stderr.splitlines()) == (i > 0), p.stderr
        for s, mnt, _ in mounts:
            check_backup(mnt, 'b', want[s])
        os.makedirs(tmp_path / 'm3')
        p = subprocess.run([MOUNT, other, str(tmp_path / 'm3'), '-o', f"cache_dir={tmp_path / 'cache'}"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and 'in use by another mount' in p.stderr, p
    finally:
        for s, mnt, pid in mounts:
            umount(s, mnt, pid)
