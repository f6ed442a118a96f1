#!/usr/bin/python3
"""kill -9 at random points of create, forget and prune, on one store, and check after each kill.

    kill_soak.py [--kills 100] [--seed 1] [--build DIR] [--workdir DIR] [--keep]

One store holds a few backups of a changing node (tools/sample_data.py: each day flushes add an
sstable per table, and compaction drops older ones from the snapshot). The loop picks, at
random, one of: create a backup of a new day, forget a backup (`cassbackup forget NAME`, or,
in a build without it, the removal of backups/NAME.json that it does), prune (--max-unused 0, 5
or 50), and kills the command with SIGKILL after a random delay (up to the longest run of it
seen). After each kill:
  - `cassbackup list --json` lists only whole backups: each is one the loop committed (or the
    killed create, if its manifest was written) and is complete;
  - every listed backup reads byte-identical to its snapshot through a real mount;
  - `cassbackup check --read-data` is clean, where the build has `check`;
  - re-running the interrupted command completes (a create or forget whose manifest change
    made it has nothing left to do), and after a prune re-run a dry run finds nothing left.
Exit 0 when every check passed, 1 with the first failure.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SAMPLE = os.path.join(REPO, 'tools', 'sample_data.py')
KEEP_GENERATIONS = 4  # sstables per table a snapshot keeps: compaction removed the older ones
MAX_BACKUPS = 4


class Failure(Exception):
    pass


def sha(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for b in iter(lambda: f.read(1 << 20), b''):
            h.update(b)
    return h.hexdigest()


class Soak:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.cb = os.path.join(a.build, 'tools', 'cassbackup')
        self.mount_bin = os.path.join(a.build, 'fs', 'mount.cassbackup')
        self.work = a.workdir
        self.src = os.path.join(self.work, 'src')
        self.store = os.path.join(self.work, 'store')
        self.mnt = os.path.join(self.work, 'mnt')
        self.day = 0
        self.expected = {}  # backup name -> {ks/table/rel: sha256}, for committed backups
        self.durations = {'create': 0.05, 'prune': 0.05, 'forget': 0.05}
        self.kills = {'create': 0, 'prune': 0, 'forget': 0}
        self.has_check = None
        self.has_forget = None
        self.left = {'create': 0, 'prune': 0, 'forget': 0}  # kills that left work for the re-run to finish

    # --- commands -------------------------------------------------------------------------
    def run(self, *args, check=True):
        p = subprocess.run([self.cb, *args], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise Failure(f'cassbackup {" ".join(args)} exited {p.returncode}: {p.stderr.strip()}')
        return p

    def data_dirs(self):
        return sorted(os.path.join(self.src, d) for d in os.listdir(self.src) if d.startswith('data'))

    def create_args(self, name, tag):
        args = ['create', '--store', self.store, '--name', name, '--snapshot', tag]
        for d in self.data_dirs():
            args += ['--data-dir', d]
        return args

    # --- data -----------------------------------------------------------------------------
    def new_day(self):
        """A new snapshot tag: one new sstable per table, and only the newest generations."""
        self.day += 1
        tag = f'day-{self.day}'
        args = [sys.executable, SAMPLE, '--out', self.src, '--data-kib', '768', '--keyspaces', '1',
                '--tables', '2', '--no-clutter', '--no-index', '--seed', str(1000 + self.day),
                '--tag', tag]
        if self.day > 1:
            args += ['--grow-percent', '1']
        subprocess.run(args, check=True, capture_output=True)
        sdirs = {}  # (ks, table) -> its snapshot directories
        for dd in self.data_dirs():
            for ks in os.listdir(dd):
                for tdir in os.listdir(os.path.join(dd, ks)):
                    sdir = os.path.join(dd, ks, tdir, 'snapshots', tag)
                    if os.path.isdir(sdir):
                        sdirs.setdefault((ks, tdir.rsplit('-', 1)[0]), []).append(sdir)
        expected = {}
        for (ks, table), dirs in sdirs.items():
            self.compact(dirs)
            for sdir in dirs:
                for n in os.listdir(sdir):
                    expected[f'{ks}/{table}/{n}'] = sha(os.path.join(sdir, n))
        return tag, expected

    def compact(self, sdirs):
        """Drops the older generations from a table's snapshot, as compaction would have
        replaced them, and makes its manifest.json list what is left."""
        last = self.day_generations()
        data = []
        for sdir in sdirs:
            for n in sorted(os.listdir(sdir)):
                if not n.startswith('nb-'):
                    continue
                if int(n.split('-')[1]) <= last - KEEP_GENERATIONS:
                    os.unlink(os.path.join(sdir, n))
                elif n.endswith('-Data.db'):
                    data.append(n)
        for sdir in sdirs:
            m = os.path.join(sdir, 'manifest.json')
            if os.path.exists(m):
                with open(m) as f:
                    doc = json.load(f)
                doc['files'] = sorted(data)
                os.unlink(m)  # a file of this snapshot only: write a new one
                with open(m, 'w') as f:
                    json.dump(doc, f)

    def day_generations(self):
        return 2 + (self.day - 1)  # sample_data: 2 sstables on day 1, one more each day

    # --- operations -----------------------------------------------------------------------
    def killed_run(self, what, args):
        """Runs args, SIGKILLs it after a random delay; True when the kill hit it."""
        delay = self.rng.uniform(0, self.durations[what] * 1.1)
        p = subprocess.Popen([self.cb, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            p.wait(delay)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            self.kills[what] += 1
            return True
        if p.returncode != 0:
            raise Failure(f'{what} exited {p.returncode}: {p.stderr.read().decode().strip()}')
        self.durations[what] = max(self.durations[what], delay)
        return False

    def timed(self, what, args):
        t = time.monotonic()
        self.run(*args)
        # the longest run seen: a kill then falls anywhere in a run with work to do
        self.durations[what] = max(self.durations[what], time.monotonic() - t)

    def op_create(self):
        tag, expected = self.new_day()
        name = f'b{self.day}'
        self.packs_before = self.pack_files()
        killed = self.killed_run('create', self.create_args(name, tag))
        if not killed:
            self.expected[name] = expected
            return None
        self.pending = (name, expected)
        return 'create'

    def op_forget(self):
        """`cassbackup forget NAME` (killed at random too) where the build has it; else what it
        does to the store, the manifest's removal."""
        names = sorted(self.expected, key=lambda n: int(n[1:]))
        if len(names) < 3:
            return None
        name = self.rng.choice(names[:-1])  # never the newest: a store keeps a few backups
        self.pending = (name, self.expected.pop(name))
        if self.has_forget is None:
            self.has_forget = self.run('forget', '--help', check=False).returncode == 0
        if not self.has_forget:
            shutil.rmtree(os.path.join(self.store, 'backups', name))
            return None
        return 'forget' if self.killed_run('forget', ['forget', '--store', self.store, name]) else None

    def op_prune(self):
        self.max_unused = self.rng.choice(['0', '5', '50'])
        if self.killed_run('prune', ['prune', '--store', self.store, '--max-unused', self.max_unused]):
            return 'prune'
        return None

    # --- checks ---------------------------------------------------------------------------
    def check_list(self, maybe=None):
        """Only whole backups are listed; returns their names."""
        listed = json.loads(self.run('list', '--store', self.store, '--json').stdout)
        names = set()
        for b in listed:
            if b['name'] not in self.expected and b['name'] != maybe:
                raise Failure(f'list shows backup {b["name"]}, which was never committed')
            if not b['complete']:
                raise Failure(f'list shows backup {b["name"]} incomplete')
            names.add(b['name'])
        lost = set(self.expected) - names
        if lost:
            raise Failure(f'committed backups missing from list: {sorted(lost)}')
        return names

    def check_mount(self, expected):
        os.makedirs(self.mnt, exist_ok=True)
        log = open(os.path.join(self.work, 'mount.log'), 'w+')
        proc = subprocess.Popen([self.mount_bin, self.store, self.mnt, '-f'], stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while not os.path.ismount(self.mnt):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise Failure(f'mount.cassbackup did not mount: {open(log.name).read()}')
                time.sleep(0.02)
            for name, files in expected.items():
                root = os.path.join(self.mnt, 'backups', name)
                seen = set()
                for dirpath, _, fnames in os.walk(root):
                    for n in fnames:
                        rel = os.path.relpath(os.path.join(dirpath, n), root)
                        seen.add(rel)
                for rel, digest in files.items():
                    got = sha(os.path.join(root, rel))
                    if got != digest:
                        raise Failure(f'{name}/{rel}: wrong bytes through the mount')
                if seen != set(files):
                    raise Failure(f'{name}: the mount shows {sorted(seen ^ set(files))[:5]} wrongly')
        finally:
            subprocess.run(['fusermount3', '-u', self.mnt], capture_output=True)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                subprocess.run(['fusermount3', '-z', '-u', self.mnt], capture_output=True)
                proc.kill()
                proc.wait()
            log.close()

    def check_store(self):
        if self.has_check is None:
            self.has_check = self.run('check', '--help', check=False).returncode == 0
        if self.has_check:
            p = self.run('check', '--store', self.store, '--read-data', check=False)
            if p.returncode != 0:
                raise Failure(f'check --read-data: {p.stdout.strip()} {p.stderr.strip()}')
        else:
            names = sorted(self.expected)
            if names:
                self.run('verify', '--store', self.store, *names)

    def rerun(self, what):
        if what == 'create':
            name, expected = self.pending
            listed = self.check_list(maybe=name)
            if name in listed:  # killed after its manifest was written: committed
                self.expected[name] = expected
            else:
                self.timed('create', self.create_args(name, f'day-{self.day}'))
                self.expected[name] = expected
        elif what == 'forget':  # gone, or still there and forgotten now
            name = self.pending[0]
            if name in self.check_list(maybe=name):
                self.timed('forget', ['forget', '--store', self.store, name])
        elif what == 'prune':
            self.timed('prune', ['prune', '--store', self.store, '--max-unused', self.max_unused])
            dry = json.loads(self.run('prune', '--store', self.store, '--max-unused',
                                      self.max_unused, '--dry-run', '--json').stdout)
            if dry['packs']['deleted'] or dry['packs']['repacked']:
                raise Failure(f'prune re-run left work: {dry["actions"]}')

    def pack_files(self):
        return {os.path.join(r, n) for r, _, ns in os.walk(os.path.join(self.store, 'packs')) for n in ns}

    def left_work(self, what):
        """Counts a kill that left work for prune: a create killed between its pack and its
        manifest, a prune killed before it was done."""
        if what == 'create':
            self.left[what] += bool(self.pack_files() - self.packs_before)
            return
        dry = json.loads(self.run('prune', '--store', self.store, '--max-unused', self.max_unused,
                                  '--dry-run', '--json').stdout)
        if dry['packs']['deleted'] or dry['packs']['repacked']:
            self.left[what] += 1

    def after_kill(self, what):
        maybe = self.pending[0] if what in ('create', 'forget') else None
        listed = self.check_list(maybe)
        if what == 'prune' or (what == 'create' and maybe not in listed):
            self.left_work(what)
        exp = dict(self.expected)
        if maybe in listed:
            exp[maybe] = self.pending[1]
        self.check_mount(exp)
        self.rerun(what)
        self.check_list()
        self.check_store()

    # --- loop -----------------------------------------------------------------------------
    def setup(self):
        os.makedirs(self.src, exist_ok=True)
        self.run('init', '--store', self.store)
        for _ in range(2):
            tag, expected = self.new_day()
            name = f'b{self.day}'
            self.timed('create', self.create_args(name, tag))
            self.expected[name] = expected
        self.timed('prune', ['prune', '--store', self.store, '--max-unused', '0'])

    def step(self):
        if len(self.expected) > MAX_BACKUPS:
            op = self.op_forget
        else:
            op = self.rng.choice([self.op_create, self.op_create, self.op_forget, self.op_prune,
                                  self.op_prune, self.op_prune])
        what = op()
        if what:
            self.after_kill(what)
        return what

    def main(self):
        self.setup()
        t = time.monotonic()
        done = 0
        while done < self.a.kills:
            if self.step():
                done += 1
        self.check_mount(self.expected)
        print(f'{done} kills ({self.kills["create"]} create, {self.kills["forget"]} forget, '
              f'{self.kills["prune"]} prune; left '
              f'work for prune: {self.left["create"]} creates, {self.left["prune"]} prunes), '
              f'{self.day} days, {len(self.expected)} backups left, every check passed in '
              f'{time.monotonic() - t:.0f} s')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--kills', type=int, default=100)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--build', default=os.environ.get('CASSBACKUP_BUILD', os.path.join(REPO, 'build')))
    ap.add_argument('--workdir', help='where the store and data go (default: a new temporary directory)')
    ap.add_argument('--keep', action='store_true', help='keep the work directory')
    a = ap.parse_args(argv)
    made = a.workdir is None
    if made:
        a.workdir = tempfile.mkdtemp(prefix='kill-soak-')
    s = Soak(a)
    try:
        s.main()
    except Failure as e:
        print(f'kill_soak: FAILED after {sum(s.kills.values())} kills (seed {a.seed}, day {s.day}, '
              f'work directory {a.workdir}): {e}', file=sys.stderr)
        return 1
    if made and not a.keep:
        shutil.rmtree(a.workdir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
