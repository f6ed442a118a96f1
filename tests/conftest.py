"""Shared fixtures for the integration tests: real stores, real FUSE mounts, real SSTables.

The build directory comes from $CASSBACKUP_BUILD (meson test sets it), else ../build.
The real Cassandra SSTables come from ../shared/fixtures/cassandra-sstables
($CASSBACKUP_FIXTURES overrides); they are read from there, never copied into the repository.
"""
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUILD = os.environ.get('CASSBACKUP_BUILD', os.path.join(REPO, 'build'))
CASSBACKUP = os.path.join(BUILD, 'tools', 'cassbackup')
MOUNT = os.path.join(BUILD, 'fs', 'mount.cassbackup')
SAMPLE = os.path.join(REPO, 'tools', 'sample_data.py')
FIXTURES = os.environ.get('CASSBACKUP_FIXTURES',
                          os.path.join(REPO, '..', 'shared', 'fixtures', 'cassandra-sstables'))
FIXTURE_TAG = '1728658114123'


def build_option(name):
    """The value of meson option name in the build, or None."""
    try:
        with open(os.path.join(BUILD, 'meson-info', 'intro-buildoptions.json')) as f:
            return next((o['value'] for o in json.load(f) if o['name'] == name), None)
    except OSError:
        return None


# -Dtest_hooks=true (tests/run.sh): the build honours CASSBACKUP_TEST_* variables
TEST_HOOKS = build_option('test_hooks') is True


def run(*args, check=True, **kw):
    """Runs a command, returning CompletedProcess with text output."""
    args = [str(a) for a in args]
    if args[:1] in ([CASSBACKUP], ['setpriv']) and CASSBACKUP in args:  # or as another user
        i = args.index(CASSBACKUP) + 1
        args = args[:i] + node_files_off(args[i:])
    if 'input' not in kw:  # never a terminal: run by hand from one, an encrypted store would ask
        kw.setdefault('stdin', subprocess.DEVNULL)
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f'{args} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}')
    return p


def node_files_off(args):
    """A create that does not ask for the node's own files (test_schema.py does) keeps none:
    what this machine's /etc/cassandra and cqlsh are must not change what a test sees."""
    args = [str(a) for a in args]
    rest = args[2:] if args[:1] == ['--config'] else args
    if rest[:1] != ['create']:
        return args
    more = [] if {'--cqlsh', '--no-schema'} & set(args) else ['--no-schema']
    more += [] if {'--cassandra-conf', '--no-conf'} & set(args) else ['--no-conf']
    return args + more


def stop_server(proc, grace=10):
    """Stops a server a test started: SIGTERM, and SIGKILL when it is still there after grace
    seconds. moto_server's SIGTERM handler raises SystemExit, which Python drops when it lands
    inside a weakref callback: the server then runs on, and a plain wait() hung a whole test
    file until the suite's timeout (seen once on a busy machine)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cb(*args, check=True, **kw):
    return run(CASSBACKUP, *args, check=check, **kw)


def preload(shim):
    """LD_PRELOAD for a test shim built in tests/ (lib<shim>.so) loaded into cassbackup: after
    the AddressSanitizer runtime where cassbackup links one (a sanitizer build: ASan refuses to
    run unless its runtime comes first). The path is given whether it is built or not: a test
    that needs the shim checks that it is there."""
    path = os.path.join(BUILD, 'tests', f'lib{shim}.so')
    ldd = subprocess.run(['ldd', CASSBACKUP], capture_output=True, text=True).stdout
    return ':'.join(re.findall(r'=>\s*(\S*libasan\.so\S*)', ldd)[:1] + [path])


def make_sample(out, *args):
    """tools/sample_data.py --out out args. A tree of up to CACHED_SAMPLE_MIB is copied from a
    cache of the trees the script made with the same arguments (its output is a function of
    them), as `cp -r` with its hard links kept and every time now: a Python run costs 0.2-2
    CPU-s, a copy a fraction, and the suite asks for hundreds. A bigger tree, or one grown in
    place (out not empty), runs the script itself."""
    out = str(out)
    grown = os.path.isdir(out) and os.listdir(out)
    if grown or sample_mib(args) > CACHED_SAMPLE_MIB:
        run(sys.executable, SAMPLE, '--out', out, *args)
        return out
    os.makedirs(out, exist_ok=True)
    run('cp', '-r', '--preserve=links', os.path.join(cached_sample(*args), '.'), out)
    return out


CACHED_SAMPLE_MIB = 64


def sample_mib(args):
    """The size of the Data.db files sample_data.py makes with args, in MiB (its defaults)."""
    sizes = {'--data-kib': 512, '--keyspaces': 2, '--tables': 3, '--sstables': 2}
    args = [str(a) for a in args]
    for name, value in zip(args, args[1:]):
        if name in sizes:
            sizes[name] = int(value)
    return math.prod(sizes.values()) / 1024


def cached_sample(*args):
    """The cached tree for args under REPO/build-sample-cache, made the first time and shared
    by every build's suite (the trees do not depend on the build). The key hashes the script
    with its arguments; a tree is made aside and renamed in whole, so a test file running
    beside this one, in this build's suite or another's, sees it complete or not at all."""
    with open(SAMPLE, 'rb') as f:
        h = hashlib.sha256(f.read())
    h.update('\0'.join(str(a) for a in args).encode())
    root = os.path.join(REPO, 'build-sample-cache')
    tree = os.path.join(root, h.hexdigest()[:32])
    if not os.path.isdir(tree):
        os.makedirs(root, exist_ok=True)
        aside = tempfile.mkdtemp(dir=root, prefix='.making-')
        run(sys.executable, SAMPLE, '--out', aside, *args)
        try:
            os.rename(aside, tree)
        except OSError:  # another file made it first: theirs is the same tree
            shutil.rmtree(aside)
    return tree


def sample_dirs(out):
    return sorted(os.path.join(out, d) for d in os.listdir(out) if d.startswith('data'))


def data_dir_args(dirs):
    a = []
    for d in dirs:
        a += ['--data-dir', d]
    return a


def snapshot_tables(data_dirs, tag):
    """{(ks, table): {relpath: abs path}} of what a backup of tag must hold, merged over dirs,
    with the exclusion rules applied (txn logs, tmp- files)."""
    res = {}
    for dd in data_dirs:
        for ks in sorted(os.listdir(dd)):
            for tdir in sorted(os.listdir(os.path.join(dd, ks))):
                sdir = os.path.join(dd, ks, tdir, 'snapshots', tag)
                if not os.path.isdir(sdir):
                    continue
                table = tdir.rsplit('-', 1)[0] if len(tdir.rsplit('-', 1)[-1]) == 32 else tdir
                files = res.setdefault((ks, table), {})
                for root, _, names in os.walk(sdir):
                    for n in names:
                        if n.startswith('tmp-') or n.startswith('tmplink-') or ('_txn_' in n and n.endswith('.log')):
                            continue
                        p = os.path.join(root, n)
                        files[os.path.relpath(p, sdir)] = p
    return res


def read(path):
    with open(path, 'rb') as f:
        return f.read()


class Mount:
    """A running mount.cassbackup -f; stderr is collected to check for unexpected errors."""

    def __init__(self, store, mnt, opts=(), env=None):
        self.store, self.mnt = store, mnt
        os.makedirs(mnt, exist_ok=True)
        self.errfile = open(os.path.join(os.path.dirname(mnt), os.path.basename(mnt) + '.log'), 'w+')
        self.proc = subprocess.Popen([MOUNT, store, mnt, '-f', *opts], stdout=self.errfile,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while not os.path.ismount(mnt):
            if self.proc.poll() is not None:
                raise AssertionError(f'mount.cassbackup exited {self.proc.returncode}: {self.log()}')
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError('mount.cassbackup did not mount within 120 s')
            time.sleep(0.02)

    def log(self):
        self.errfile.flush()
        self.errfile.seek(0)
        return self.errfile.read()

    def path(self, *parts):
        return os.path.join(self.mnt, 'backups', *parts)

    def kill(self):
        subprocess.run(['fusermount3', '-z', '-u', self.mnt], capture_output=True)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def holders(self):
        """Processes with a file, directory or working directory under the mount: what makes
        an unmount busy."""
        inside = os.path.realpath(self.mnt) + os.sep
        found = []
        for pid in filter(str.isdigit, os.listdir('/proc')):
            try:
                links = [os.path.join('/proc', pid, 'cwd')] + [
                    os.path.join('/proc', pid, 'fd', fd) for fd in os.listdir(f'/proc/{pid}/fd')]
                if any(os.readlink(ln).startswith(inside) for ln in links):
                    with open(f'/proc/{pid}/cmdline', 'rb') as f:
                        argv = f.read().replace(b'\0', b' ').decode(errors='replace')
                    found.append(f'{pid} {argv}')
            except OSError:
                continue  # gone, or not ours to read
        return found

    def umount(self, expect_errors=()):
        # Busy while a process that had files open under the mount is still exiting (the
        # kernel drops its references after the parent saw it end): waited for, bounded; a
        # holder that stays is named in the failure.
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run(['fusermount3', '-u', self.mnt], capture_output=True, text=True)
            if r.returncode == 0:
                break
            if 'busy' not in r.stderr or time.monotonic() > deadline:
                held = self.holders()
                self.kill()
                raise AssertionError(f'fusermount3 -u failed: {r.stderr} (held by: {held or "no process"})')
            time.sleep(0.1)
        rc = self.proc.wait(120)
        log = self.log()
        self.errfile.close()
        assert rc == 0, f'mount.cassbackup exited {rc}: {log}'
        for line in log.splitlines():
            assert any(e in line for e in expect_errors), f'unexpected daemon output: {line}'
        return log


@contextlib.contextmanager
def mounted(store, mnt, opts=(), expect_errors=(), env=None):
    m = Mount(store, mnt, opts, env)
    try:
        yield m
    except BaseException:
        m.kill()
        raise
    m.umount(expect_errors)


@pytest.fixture(scope='session')
def binaries():
    for b in (CASSBACKUP, MOUNT):
        assert os.access(b, os.X_OK), f'{b} is not built (set CASSBACKUP_BUILD)'
    return CASSBACKUP, MOUNT


@pytest.fixture(scope='session')
def fixture_tree(tmp_path_factory, binaries):
    """A data directory laid out by shared/fixtures' make_tree.sh from real SSTables."""
    mk = os.path.join(FIXTURES, 'make_tree.sh')
    assert os.path.exists(mk), f'real SSTable fixtures not found at {FIXTURES}'
    out = str(tmp_path_factory.mktemp('fixture') / 'data')
    run('bash', mk, env=dict(os.environ, OUT=out, PATH='/usr/bin:/bin:' + os.environ.get('PATH', '')))
    return out


@pytest.fixture(scope='session')
def sample_tree(tmp_path_factory, binaries):
    """Our own generated data: 2 data dirs, index subdir, clutter to exclude."""
    out = str(tmp_path_factory.mktemp('sample'))
    make_sample(out, '--data-kib', '2500')
    return out


@pytest.fixture
def store(tmp_path, binaries):
    s = str(tmp_path / 'store')
    cb('init', '--store', s)
    return s


def backup_list(store):
    """Every node backup of the store (list --json gives cluster backups, each with its
    node backups), oldest cluster backup first."""
    return [n for g in json.loads(cb('list', '--store', store, '--json').stdout) for n in g['nodes']]


def pid_space():
    """Where this process's pids mean something, as a lock document records it (catalog/lock.c
    lock_pid_space): the kernel's boot id and this pid namespace. A lock planted by a test as
    this host's needs it to be judged by its pid."""
    with open('/proc/sys/kernel/random/boot_id') as f:
        boot = f.read().strip()
    st = os.stat('/proc/self/ns/pid')
    return f'{boot}/{st.st_dev:x}:{st.st_ino:x}'


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of size ('3m') mounted at path (made) for the block: a disk that fills up."""
    path.mkdir()
    run('mount', '-t', 'tmpfs', '-o', f'size={size}', 'cbtest', path)
    try:
        yield path
    finally:
        run('umount', '-l', path, check=False)


@contextlib.contextmanager
def read_only_bind(src, at):
    """src bind-mounted read-only at at (made) for the block: a store on a read-only mount."""
    os.mkdir(at)
    run('mount', '--bind', src, at)
    try:
        run('mount', '-o', 'remount,bind,ro', at)
        yield str(at)
    finally:
        run('umount', at, check=False)


def wait_for(cond, what, proc=None):
    """Waits until cond() is true. Fails if proc exits first; the long guard only stops a hung
    test, it measures nothing."""
    deadline = time.monotonic() + 120
    while not cond():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f'exited {proc.returncode} before {what}\nstdout: {out}\nstderr: {err}')
        assert time.monotonic() < deadline, f'no {what} after 120 s'
        time.sleep(0.02)


def rewrite_manifest(path, doc):
    """Writes manifest doc, edited by a test, over path: without the "manifest_sha256" member,
    which no longer matches its bytes (refused as damaged), so as a manifest from before it
    was written (read as written). cassbackup itself never rewrites a manifest."""
    doc = {k: v for k, v in doc.items() if k != 'manifest_sha256'}
    with open(path, 'w') as f:
        json.dump(doc, f)


def manifest_path(store, name):
    """The manifest of the one node backup NAME of a local store: backups/NAME/NODE.json, or
    backups/NAME.json (the older layout, and where a missing one would be)."""
    old = os.path.join(store, 'backups', name + '.json')
    d = os.path.join(store, 'backups', name)
    nested = sorted(os.path.join(d, f) for f in os.listdir(d)) if os.path.isdir(d) else []
    if os.path.exists(old) or not nested:
        return old
    assert len(nested) == 1, f'backup {name} has {len(nested)} node backups: {nested}'
    return nested[0]


def packs(store):
    res = []
    for root, _, names in os.walk(os.path.join(store, 'packs')):
        res += [os.path.join(root, n) for n in names]
    return sorted(res)


def tmp_files(store):
    return sorted(os.listdir(os.path.join(store, 'tmp')))


# cassbackup starts mount.cassbackup from its installed path (SBINDIR) unless
# CASSBACKUP_MOUNT_HELPER names another: every test uses the build tree's.
os.environ['CASSBACKUP_MOUNT_HELPER'] = MOUNT


def upload_size(pid, store):
    """Bytes written so far to the store upload (a pack) process pid holds open, or 0. Uploads
    are O_TMPFILE files in STORE/tmp: invisible there, seen through the writer's descriptors."""
    tmp = os.path.realpath(os.path.join(store, 'tmp')) + '/'
    try:
        fds = os.listdir(f'/proc/{pid}/fd')
    except OSError:
        return 0
    best = 0
    for fd in fds:
        try:
            if os.readlink(f'/proc/{pid}/fd/{fd}').startswith(tmp):
                best = max(best, os.stat(f'/proc/{pid}/fd/{fd}').st_size)
        except OSError:
            pass
    return best


def stop_while_writing(argv, store, env=None):
    """Starts argv and stops it (SIGSTOP) while it writes a pack into store: after it took its
    lock, before it commits. Returns the stopped process, or None when it ended first (then
    its output is read). The lock object is written through tmp/ too: wait for pack-sized
    data."""
    c = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while c.poll() is None and upload_size(c.pid, store) < 1 << 20:
        time.sleep(0.001)
    c.send_signal(signal.SIGSTOP)
    if c.poll() is None and upload_size(c.pid, store) >= 1 << 20:
        return c
    c.send_signal(signal.SIGCONT)
    c.communicate()
    return None


def uploading(pid, store):
    """True when process pid holds an upload open in STORE/tmp (see upload_size)."""
    tmp = os.path.realpath(os.path.join(store, 'tmp')) + '/'
    try:
        return any(os.readlink(f'/proc/{pid}/fd/{fd}').startswith(tmp)
                   for fd in os.listdir(f'/proc/{pid}/fd'))
    except OSError:
        return False


def seek_entry_size(pack_bytes):
    """Bytes of one seek table entry of a pack (seekable.h): 12 with per-frame checksums
    (descriptor 0x80, every pack written now), 8 without (packs written before)."""
    return 12 if pack_bytes[-5] & 0x80 else 8
