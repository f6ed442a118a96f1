"""cassbackup at the size of a real Cassandra node; run through bench/scale.sh.

    sudo bench/scale.sh                         (32 GiB node; tens of minutes)
    sudo bench/scale.sh --gib 1                 (a few minutes)
    sudo bench/scale.sh --build OLD-BUILD --no-s3 --json before.json    (an older build)

Generates a node of --gib GiB under --dir (default /var/tmp/cassbackup-scale): one data
directory, 4 keyspaces, 21 tables from 10 MiB to 9.3 GiB at 32 GiB (a geometric spread, sizes
scaled with --gib), each table a bulk sstable and 4 of 1/32 its size, 8 components each; the
biggest table's bulk Data.db is 1/4 of the node (8 GiB). 70% of the bytes are random, 30% row-like
text (64 KiB pieces cut at random offsets from a random pool and a text pool, so no two files are
equal). `snapshots/nightly-1/` holds hard links, manifest.json and schema.cql as
`nodetool snapshot` makes them. Then, each measured in this run on this machine:
  1. create vs `tar -I 'zstd -T0' -cf` + sync of the archive, both cold (goal: time <= 0.8 x tar)
  2. create into an s3rver store with a part size so small that one pack holding the whole node
     would need more than 10,000 parts (CASSBACKUP_S3_PART_SIZE, and CASSBACKUP_S3_MIN_PART_SIZE
     under 5 MiB; parts counted from s3rver's log): whether it succeeds, parts and objects; then
     a create with the default part sizes, as an operator runs it, vs one PUT (curl) of as many
     bytes as its packs (goal: PUT time / create >= 0.7)
  3. create into a local store: peak RSS (goal <= 256 MiB), packs made and their sizes
  4. cold sequential read (dd bs=1M) of the 8 GiB Data.db through mount.cassbackup vs the plain
     file (goal: <= 1.3 x), then the rest of that table: the mount's peak RSS (goal <= 64 MiB)
  5. day 2: 10% of the sstables replaced by new generations (as compaction does), snapshot
     nightly-2, create; then forget day 1 + prune: bytes rewritten / bytes freed (goal <= 0.25)
Peak RSS: VmHWM from /proc/PID/status, of create read every 10 ms while it runs, of the mount
after the table is read. `--pack-size` is passed to create (and prune) only where their
--help lists it, and the output says which. What a step no longer needs is deleted (the tar
after timing it, the S3 store before the PUT, the node before prune); the free space the
largest step needs is checked first. Nothing here asserts: it prints figures, ratios and goals.
Needs root (page cache drops, FUSE), curl, zstd, and s3rver in build-node/ (bench/scale.sh
installs it) unless --no-s3."""
import argparse
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import MiB, REPO, Mount, drop_caches, read_file, sh  # noqa: E402
from s3_bench import BUCKET, S3RVER, Server, mounted, uptime  # noqa: E402

sys.path.insert(1, os.path.join(REPO, 'tools'))
import sample_data  # noqa: E402

GiB = 1 << 30
KEYSPACES = ('shop', 'users', 'events', 'metrics')
FLUSHES = 4             # sstables of a table besides its bulk one, each 1/32 of the bulk's size
SMALLEST = 10 * MiB     # the smallest table at 32 GiB
SEG = 64 << 10          # content is written in segments of this size...
PATTERN = 'RRTRRTRRTR'  # ...7 in 10 random, 3 row-like text: 70% of the bytes incompressible
PACKED = 0.90           # store bytes / node bytes, for the free-space estimate (measured: 0.88)
MAX_PARTS = 10000       # S3's limit on the parts of one multipart upload
TAG1, TAG2 = 'nightly-1', 'nightly-2'


# --- the node -------------------------------------------------------------------------------

class Filler:
    """Writes file contents fast: SEG pieces cut at random offsets from a 256 MiB pool of random
    bytes and a 16 MiB pool of row-like text (tools/sample_data.py's), 7 random to 3 text. A
    64 KiB piece repeats within zstd's 2 MiB window too rarely to matter, and each file starts
    with bytes of its own, so no two files are equal (create would store one of them)."""

    def __init__(self, seed):
        rng = random.Random(seed)
        self.rnd = memoryview(b''.join(rng.randbytes(MiB) for _ in range(256)))
        self.txt = memoryview(sample_data.compressible_block(rng, 16 * MiB))

    def write(self, path, size, rng):
        """Writes size bytes to path; returns their CRC32."""
        head = rng.randbytes(min(64, size))
        crc = zlib.crc32(head)
        segs, left, i = [head], size - len(head), 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while segs or left:
                while left and len(segs) < 16:
                    pool = self.rnd if PATTERN[i % len(PATTERN)] == 'R' else self.txt
                    n = min(SEG, left)
                    off = rng.randrange(len(pool) - n + 1)
                    segs.append(pool[off:off + n])
                    crc = zlib.crc32(segs[-1], crc)
                    left -= n
                    i += 1
                writev_all(fd, segs)
                segs = []
        finally:
            os.close(fd)
        return crc


def writev_all(fd, segs):
    done = os.writev(fd, segs)
    total = sum(len(s) for s in segs)
    if done < total:  # a short write: the rest in one buffer
        buf = b''.join(segs)[done:]
        while buf:
            buf = buf[os.write(fd, buf):]


def component_sizes(data):
    """The other binary components of an sstable whose Data.db has data bytes."""
    return {'Index.db': data // 32, 'Filter.db': data // 256, 'Summary.db': max(64, data // 2048),
            'Statistics.db': 4096 + data // 65536, 'CompressionInfo.db': max(48, data // 8192)}


def table_data_sizes(bulk):
    return [bulk] + [bulk // 32] * FLUSHES


def table_bytes(bulk):
    return sum(d + sum(component_sizes(d).values()) for d in table_data_sizes(bulk))


def plan_tables(total):
    """[(keyspace, table, [Data.db sizes])] filling total bytes: table00's bulk Data.db is
    total/4; the other tables fall geometrically from it to SMALLEST (scaled with total), their
    count chosen so the smallest comes closest to that."""
    first = table_bytes(total // 4)
    rest = total - first
    want = SMALLEST * total / (32 * GiB)
    best = None
    for n in range(2, 200):
        lo, hi = 0.0, 1.0  # r such that first * (r + r^2 + ... + r^n) = rest
        for _ in range(100):
            r = (lo + hi) / 2
            if first * sum(r ** k for k in range(1, n + 1)) < rest:
                lo = r
            else:
                hi = r
        err = abs(math.log(first * r ** n / want))
        if best is None or err < best[0]:
            best = (err, n, r)
    _, n, r = best
    per_byte = table_bytes(GiB) / GiB
    bulks = [total // 4] + [int(first * r ** k / per_byte) for k in range(1, n + 1)]
    return [(KEYSPACES[i % len(KEYSPACES)], f'table{i:02d}', table_data_sizes(b)) for i, b in enumerate(bulks)]


def write_sstable(tdir, gen, data, filler, rng):
    """The 8 components of sstable gen, its Data.db of data bytes; Digest.crc32 holds the real
    CRC32 of the Data.db."""
    crc = filler.write(os.path.join(tdir, f'nb-{gen}-big-Data.db'), data, rng)
    for comp, size in component_sizes(data).items():
        filler.write(os.path.join(tdir, f'nb-{gen}-big-{comp}'), size, rng)
    for comp, text in (('Digest.crc32', str(crc)), ('TOC.txt', '\n'.join(sample_data.COMPONENTS) + '\n')):
        with open(os.path.join(tdir, f'nb-{gen}-big-{comp}'), 'w') as f:
            f.write(text)


def take_snapshot(tdir, ks, table, tag):
    """What `nodetool snapshot -t tag` leaves in one table directory."""
    sdir, data = sample_data.snapshot(tdir, tag, None)
    with open(os.path.join(sdir, 'manifest.json'), 'w') as f:
        json.dump({'files': sorted(data), 'created_at': '2026-11-20T01:00:00.000Z', 'expires_at': None}, f)
    with open(os.path.join(sdir, 'schema.cql'), 'w') as f:
        f.write(sample_data.schema(ks, table, sample_data.table_id(ks, table)))


class Node:
    """The generated node: data_dir/<ks>/<table>-<id>/, sstables[(tdir, gen, data bytes)]."""

    def __init__(self, root, total, seed):
        self.data_dir = os.path.join(root, 'data1')
        self.plan = plan_tables(total)
        self.rng = random.Random(seed)
        self.filler = Filler(seed)
        self.sstables = []
        self.tdirs = {}

    def tdir(self, ks, table):
        return os.path.join(self.data_dir, ks, f'{table}-{sample_data.table_id(ks, table)}')

    def make(self):
        """Day 1: every table's sstables, then snapshot TAG1."""
        for ks, table, sizes in self.plan:
            d = self.tdir(ks, table)
            os.makedirs(d)
            self.tdirs[d] = (ks, table)
            for gen, size in enumerate(sizes, 1):
                write_sstable(d, gen, size, self.filler, self.rng)
                self.sstables.append((d, gen, size))
        for d, (ks, table) in self.tdirs.items():
            take_snapshot(d, ks, table, TAG1)

    def day2(self, share=0.10):
        """Replaces share of the sstables with new generations of the same size, as compaction
        would, and snapshots TAG2. They are drawn at random weighted by size, each taken while
        the bytes stay under share of the node, so about share of the bytes change too (drawn
        evenly, nearly all would be small ones). Returns (sstables replaced, their bytes)."""
        total = sum(snapshot_bytes(d, TAG1) for d in self.tdirs)
        sizes = [sstable_bytes(d, gen) for d, gen, _ in self.sstables]
        order = sorted(range(len(sizes)), key=lambda i: math.log(1 - self.rng.random()) / sizes[i], reverse=True)
        want, picked, picked_bytes = max(1, int(len(sizes) * share + 0.5)), [], 0
        for i in order:
            if len(picked) < want and picked_bytes + sizes[i] <= share * total:
                picked.append(i)
                picked_bytes += sizes[i]
        for i in picked:
            d, gen, size = self.sstables[i]
            for name in os.listdir(d):
                if name.startswith(f'nb-{gen}-big-'):
                    os.unlink(os.path.join(d, name))  # the live file; TAG1 keeps its hard link
            new = 1 + max(g for dd, g, _ in self.sstables if dd == d)
            write_sstable(d, new, size, self.filler, self.rng)
            self.sstables[i] = (d, new, size)
        for d, (ks, table) in self.tdirs.items():
            take_snapshot(d, ks, table, TAG2)
        return len(picked), picked_bytes

    def snapshot_dirs(self, tag):
        return sorted(os.path.relpath(os.path.join(d, 'snapshots', tag), self.data_dir) for d in self.tdirs)

    def snapshot_files(self, tag):
        return [os.path.join(self.data_dir, s, n) for s in self.snapshot_dirs(tag)
                for n in sorted(os.listdir(os.path.join(self.data_dir, s)))]

    def biggest(self):
        """(keyspace, table, path of its bulk Data.db in the TAG1 snapshot)."""
        ks, table, _ = self.plan[0]
        return ks, table, os.path.join(self.tdir(ks, table), 'snapshots', TAG1, 'nb-1-big-Data.db')


def sstable_bytes(d, gen):
    return sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d) if n.startswith(f'nb-{gen}-big-'))


def snapshot_bytes(tdir, tag):
    s = os.path.join(tdir, 'snapshots', tag)
    return sum(os.path.getsize(os.path.join(s, n)) for n in os.listdir(s))


# --- running and reporting ------------------------------------------------------------------

def vm_hwm_kib(pid):
    """VmHWM of pid (its peak RSS so far), or None once it has exited."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_peak(cmd, env=None):
    """Runs cmd to its end, reading its VmHWM every 10 ms. Returns (seconds, peak RSS KiB,
    exit status, stdout, stderr). (wait4's ru_maxrss would not do: a child vforked from this
    Python carries the Python's own peak across exec.)"""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env=env)
        peak = 0
        try:
            while p.poll() is None:
                peak = max(peak, vm_hwm_kib(p.pid) or 0)
                time.sleep(0.01)
        except BaseException:
            p.kill()
            p.wait()
            raise
        secs = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        return secs, peak, p.returncode, out.read().decode(), err.read().decode()


def parse_size(s):
    m = re.fullmatch(r'(\d+)([KMG]?)', s.strip().upper())
    if not m:
        raise argparse.ArgumentTypeError(f'{s!r}: a size such as 512M')
    return int(m.group(1)) << {'': 0, 'K': 10, 'M': 20, 'G': 30}[m.group(2)]


def fmt_bytes(n):
    return f'{n / GiB:.2f} GiB' if n >= GiB else f'{n / MiB:.1f} MiB'


def lists_option(cb, cmd, opt):
    """Whether `cassbackup cmd --help` lists opt."""
    p = subprocess.run([cb, cmd, '--help'], capture_output=True, text=True)
    return re.search(rf'(^|\s){re.escape(opt)}\b', p.stdout + p.stderr) is not None


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Table:
    """The rows of the final table: measurement, cassbackup, other, ratio, goal."""

    def __init__(self):
        self.rows = []

    def add(self, name, ours, other='', ratio=None, goal=None, value=None, note='', raw=None):
        """goal: (op, limit) checked against ratio, or against value when there is no ratio;
        raw: the numbers behind the row, for --json."""
        verdict = ''
        if goal is not None:
            op, lim = goal
            x = ratio if ratio is not None else value
            ok = x is not None and (x <= lim if op == '<=' else x >= lim)
            verdict = f'{op} {lim:g} {"PASS" if ok else "MISS"}'
        r = dict(measurement=name, cassbackup=ours, other=other,
                 ratio=None if ratio is None else round(ratio, 4), goal=verdict, note=note)
        if value is not None:
            r['value'] = value
        if raw:
            r['raw'] = raw
        self.rows.append(r)
        rs = '' if ratio is None else f'ratio {ratio:.3f}'
        print(f'  -> {name}: {ours}{" vs " + other if other else ""}  {rs}  {verdict}'
              f'{"  (" + note + ")" if note else ""}', flush=True)

    def print(self):
        cols = ('measurement', 'cassbackup', 'other', 'ratio', 'goal')
        cells = [[r[c] if c != 'ratio' else ('' if r[c] is None else f'{r[c]:.3f}') for c in cols]
                 for r in self.rows]
        w = [max(len(c), *(len(str(x[i])) for x in cells)) for i, c in enumerate(cols)]
        print('\n' + ' | '.join(c.ljust(w[i]) for i, c in enumerate(cols)))
        print('-+-'.join('-' * n for n in w))
        for x in cells:
            print(' | '.join(str(v).ljust(w[i]) for i, v in enumerate(x)))
        for r in self.rows:
            if r['note']:
                print(f'  {r["measurement"]}: {r["note"]}')


# --- the steps -------------------------------------------------------------------------------

def disk_needed(n, s3, one_pack, pack_size):
    """(bytes, step) of the step needing the most disk at once, estimated: the node is n bytes,
    a store or tar of it PACKED * n; day 2 adds 10% to both; prune runs without the node and
    may rewrite up to a whole store; s3rver holds a multipart upload's parts and the object it
    assembles from them at once, so one pack of everything costs it twice."""
    p = PACKED * n
    steps = {'tar': n + p, 'day 2': 1.1 * (n + p), 'prune': 1.1 * p + p}
    if s3:
        steps['create into S3'] = n + (2 * p if one_pack else p + 2 * pack_size)
    step = max(steps, key=steps.get)
    return int(steps[step] * 1.03 + 2 * GiB), step


def bench_tar(node, W):
    """1b. tar -I 'zstd -T0' of the snapshot + sync of the archive, cold. Returns (seconds, bytes)."""
    out = f'{W}/node.tar.zst'
    drop_caches()
    t = time.perf_counter()
    sh('tar', '-I', 'zstd -T0', '-cf', out, '-C', node.data_dir, *node.snapshot_dirs(TAG1))
    sh('sync', out)
    secs = time.perf_counter() - t
    size = os.path.getsize(out)
    os.unlink(out)
    print(f'tar -I "zstd -T0" -cf + sync: {secs:.1f} s, {fmt_bytes(size)} (deleted)', flush=True)
    return secs, size


def create_cmd(cb, store, name, node, tag, pack_size):
    cmd = [cb, 'create', '--store', store, '--name', name, '--data-dir', node.data_dir, '--snapshot', tag, '--json']
    return cmd + (['--pack-size', pack_size] if pack_size else [])


def create(cb, store, name, node, tag, pack_size, env=None, must=True):
    """One cold create. Returns (seconds, peak RSS KiB, exit status, summary dict or None, stderr)."""
    drop_caches()
    secs, rss, rc, out, err = run_peak(create_cmd(cb, store, name, node, tag, pack_size), env)
    if rc and must:
        raise SystemExit(f'create {name} into {store}: exit {rc}: {err.strip()}')
    summary = json.loads(out) if rc == 0 else None
    return secs, rss, rc, summary, err


def size_spread(sizes):
    if not sizes:
        return 'none'
    return (f'min {fmt_bytes(min(sizes))}, median {fmt_bytes(statistics.median(sizes))}, '
            f'max {fmt_bytes(max(sizes))}')


def pack_sizes(store):
    return [os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(store, 'packs')) for f in fs]


class LoggingS3rver(Server):
    """s3_bench's Server for s3rver, logging each request (not --silent), so the parts of
    multipart uploads can be counted from its log."""

    def __init__(self, workdir):
        self.kind = 's3rver'
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]
        self.key = self.secret = 'S3RVER'
        self.log = os.path.join(workdir, 's3rver.log')
        self.data = os.path.join(workdir, 's3rver-data')
        os.makedirs(self.data)
        cmd = [S3RVER, '-d', self.data, '-a', '127.0.0.1', '-p', str(self.port), '--configure-bucket', BUCKET]
        with open(self.log, 'w') as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def parts(self, start=0):
        """{upload id: parts stored} and objects stored, from the log after byte offset start."""
        with open(self.log, 'rb') as f:
            f.seek(start)
            text = f.read()
        ups = {}
        for m in re.finditer(rb'Stored part (\d+) of (\S+) in bucket', text):
            ups[m.group(2)] = ups.get(m.group(2), 0) + 1
        return ups, len(re.findall(rb'Stored object "', text))

    def objects(self, prefix):
        """{key: bytes} of the objects under prefix, from s3rver's directory."""
        root = os.path.join(self.data, BUCKET)
        res = {}
        for r, _, fs in os.walk(os.path.join(root, prefix)):
            for f in fs:
                if f.endswith('._S3rver_object'):
                    res[os.path.relpath(os.path.join(r, f[:-len('._S3rver_object')]), root)] = \
                        os.path.getsize(os.path.join(r, f))
        return res


def part_size_for(pack_bytes):
    """The part size at which one pack of pack_bytes needs more than MAX_PARTS parts: whole MiB,
    at least 1 MiB."""
    return max(MiB, pack_bytes // (MAX_PARTS + 1) // MiB * MiB)


def plain_put(srv, files, nbytes, key):
    """One PUT with curl of nbytes read cold from files (cat | head -c, sent with a
    Content-Length). Returns seconds."""
    with tempfile.NamedTemporaryFile('w', delete=False) as lst:
        lst.write('\0'.join(files))
    url = f'{srv.url()}/{key}'
    curl = ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_upload}', '--aws-sigv4',
            'aws:amz:us-east-1:s3', '--user', f'{srv.key}:{srv.secret}',
            '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD', '-H', f'Content-Length: {nbytes}',
            '-H', 'Transfer-Encoding:', '-T', '-', url]
    cmd = f'xargs -0 -a {shlex.quote(lst.name)} cat | head -c {nbytes} | {shlex.join(curl)}'
    try:
        drop_caches()
        t = time.perf_counter()
        p = subprocess.run(['bash', '-c', cmd], capture_output=True, text=True)
        secs = time.perf_counter() - t
    finally:
        os.unlink(lst.name)
    if p.stdout.strip() != f'200 {nbytes}':
        raise SystemExit(f'PUT of {nbytes} bytes to {url}: {p.stdout.strip()} {p.stderr.strip()}')
    return secs


def bench_s3(T, cb, W, node, tar_bytes, pack_size):
    """2. Create into s3rver with tiny parts, vs one PUT of as many bytes as its packs."""
    part = part_size_for(tar_bytes)
    env_parts = {'CASSBACKUP_S3_PART_SIZE': f'{part // MiB}M'}
    if part < 5 * MiB:
        env_parts['CASSBACKUP_S3_MIN_PART_SIZE'] = f'{part // MiB}M'
    need = -(-tar_bytes // part)
    print(f'== 2. create into s3rver, {" ".join(f"{k}={v}" for k, v in env_parts.items())}: one pack of the whole '
          f'node (~ the tar.zst, {fmt_bytes(tar_bytes)}) would need {need} parts '
          f'({"more" if need > MAX_PARTS else "not more"} than {MAX_PARTS}'
          f'{"" if need > MAX_PARTS else "; parts are at least 1 MiB, so it takes a node of ~10 GiB"})', flush=True)
    srv = LoggingS3rver(W)
    try:
        srv.wait_ready()
        env = dict(srv.cb_env(f'{W}/cache-s3'), **env_parts)
        store = f's3://{BUCKET}/scale'
        sh(cb, 'init', '--store', store, env=env)
        mark = os.path.getsize(srv.log)
        secs, rss, rc, summary, err = create(cb, store, 'day1', node, TAG1, pack_size, env=env, must=False)
        time.sleep(0.5)  # s3rver's last log lines
        ups, stored = srv.parts(mark)
        objs = srv.objects('scale')
        packs = {k: v for k, v in objs.items() if k.startswith('scale/packs/')}
        pbytes = sum(packs.values())
        state = 'succeeded' if rc == 0 else f'FAILED (exit {rc}: {err.strip().splitlines()[-1] if err.strip() else ""})'
        print(f'create into S3 {state} in {secs:.1f} s, peak RSS {rss / 1024:.1f} MiB', flush=True)
        most = max(ups.values()) if ups else 0
        biggest = ''
        if packs and most:
            big = max(packs.values())
            biggest = f' for a pack of {fmt_bytes(big)}: parts of {big / most / MiB:.1f}' + \
                (f'-{big / (most - 1) / MiB:.1f} MiB' if most > 1 else '+ MiB')
        T.add(f'create into S3 (part size {part // MiB} MiB): result, parts, objects',
              state.split(' ')[0].lower(), note=f'{sum(ups.values())} parts in {len(ups)} multipart upload{"s" if len(ups) != 1 else ""} '
              f'(most in one: {most}{biggest}); {stored} objects stored, {len(objs)} in the store, {len(packs)} of '
              f'them packs ({size_spread(list(packs.values()))}); peak RSS {rss / 1024:.1f} MiB',
              raw=dict(exit=rc, part_size=part, parts=sum(ups.values()), uploads=len(ups), most_parts=most,
                       objects=len(objs), packs=len(packs), pack_bytes=pbytes, peak_rss_kib=rss))
        shutil.rmtree(os.path.join(srv.data, BUCKET, 'scale'))  # room for the next
        # the time, as an operator runs it: default part sizes, into a store of its own
        env_d = srv.cb_env(f'{W}/cache-s3-default')
        store_d = f's3://{BUCKET}/scale-default'
        sh(cb, 'init', '--store', store_d, env=env_d)
        secs_d, _, rc_d, summary_d, _ = create(cb, store_d, 'day1', node, TAG1, pack_size, env=env_d,
                                               must=False)
        pbytes_d = sum(v for k, v in srv.objects('scale-default').items()
                       if k.startswith('scale-default/packs/'))
        print(f'create into S3 with default part sizes: {secs_d:.1f} s (exit {rc_d})', flush=True)
        shutil.rmtree(os.path.join(srv.data, BUCKET, 'scale-default'))  # room for the PUT
        src = 'its packs' if pbytes_d else 'the tar.zst (the create stored no pack)'
        nbytes = pbytes_d or tar_bytes
        t_put = plain_put(srv, node.snapshot_files(TAG1), nbytes, 'plain-upload')
        shutil.rmtree(os.path.join(srv.data, BUCKET), ignore_errors=True)
        print(f'one PUT of {fmt_bytes(nbytes)} (as many bytes as {src}): {t_put:.1f} s', flush=True)
        T.add('create into S3 (default parts) vs one PUT (curl) of as many bytes as its packs: time',
              f'{secs_d:.1f} s' + ('' if rc_d == 0 else ' (failed)'), f'{t_put:.1f} s', t_put / secs_d,
              ('>=', 0.7),
              note=f'ratio = PUT time / create time; PUT of {fmt_bytes(nbytes)} read cold from the node\'s '
              f'files by cat | head -c, create {fmt_bytes(summary_d["bytes"]) if summary_d else "?"} of node '
              f'into {fmt_bytes(pbytes_d)} of packs; with {part // MiB} MiB parts it took {secs:.1f} s',
              raw=dict(create_s=secs_d, tiny_parts_create_s=secs, put_s=t_put, put_bytes=nbytes))
    finally:
        srv.stop()
        shutil.rmtree(srv.data, ignore_errors=True)


def bench_local(T, cb, W, node, tar_secs, pack_size):
    """1a. and 3. Create into a local store: time vs tar, peak RSS, packs."""
    store = f'{W}/store'
    sh(cb, 'init', '--store', store)
    secs, rss, _, s, _ = create(cb, store, 'day1', node, TAG1, pack_size)
    sizes = pack_sizes(store)
    print(f'create: {secs:.1f} s, {fmt_bytes(s["bytes"])} in {s["files"]} files -> {fmt_bytes(s["stored_bytes"])}, '
          f'{len(sizes)} pack{"s" if len(sizes) != 1 else ""}, peak RSS {rss / 1024:.1f} MiB', flush=True)
    T.add('create vs tar -I "zstd -T0" -cf + sync: time', f'{secs:.1f} s', f'{tar_secs:.1f} s', secs / tar_secs,
          ('<=', 0.8), note=f'{fmt_bytes(s["bytes"])}, {s["files"]} files; stored {fmt_bytes(s["stored_bytes"])}',
          raw=dict(create_s=secs, tar_s=tar_secs, bytes=s['bytes'], files=s['files'], stored_bytes=s['stored_bytes']))
    T.add('create: peak RSS', f'{rss / 1024:.1f} MiB', goal=('<=', 256), value=rss / 1024)
    T.add('create: packs made', str(len(sizes)), note=size_spread(sizes), raw=dict(sizes=sorted(sizes)))
    return store


def dd_read(path, size):
    """Cold dd of path to /dev/null. Returns seconds."""
    drop_caches()
    t = time.perf_counter()
    p = sh('dd', f'if={path}', 'of=/dev/null', 'bs=1M')
    secs = time.perf_counter() - t
    if not p.stderr.split('\n')[-2].startswith(f'{size} bytes'):
        raise SystemExit(f'dd {path}: {p.stderr.strip()}')
    return secs


def bench_reads(T, build, W, node, store):
    """4. Cold sequential read through a fresh mount vs the plain file; the mount's peak RSS
    after reading the whole table."""
    ks, table, plain = node.biggest()
    size = os.path.getsize(plain)
    rel = os.path.join('backups', 'day1', ks, table)
    with mounted(lambda: Mount(build, store, f'{W}/mnt')) as m:
        t_mount = dd_read(os.path.join(m.mnt, rel, os.path.basename(plain)), size)
        rest = 0
        for r, _, fs in os.walk(os.path.join(m.mnt, rel)):
            for f in sorted(fs):
                if f != os.path.basename(plain):
                    rest += read_file(os.path.join(r, f))
        rss = m.peak_rss_kib()
    t_plain = dd_read(plain, size)
    print(f'cold dd of {fmt_bytes(size)} Data.db: mount {t_mount:.1f} s, plain file {t_plain:.1f} s; the rest of '
          f'{ks}.{table} ({fmt_bytes(rest)}) read too; mount peak RSS {rss / 1024:.1f} MiB', flush=True)
    T.add(f'cold sequential read of a {fmt_bytes(size)} Data.db: mount vs plain file (time)', f'{t_mount:.1f} s',
          f'{t_plain:.1f} s', t_mount / t_plain, ('<=', 1.3),
          note=f'{size / MiB / t_mount:.0f} vs {size / MiB / t_plain:.0f} MiB/s, dd bs=1M',
          raw=dict(mount_s=t_mount, plain_s=t_plain, bytes=size))
    T.add(f'mount: peak RSS after reading one table ({fmt_bytes(size + rest)})', f'{rss / 1024:.1f} MiB',
          goal=('<=', 64), value=rss / 1024)


def bench_day2(T, cb, node, store, pack_size, prune_pack_size):
    """5. Day 2, then forget day 1 + prune."""
    n, nbytes = node.day2()
    print(f'day 2: {n} of {len(node.sstables)} sstables replaced ({fmt_bytes(nbytes)}), snapshot {TAG2}', flush=True)
    secs, _, _, s, _ = create(cb, store, 'day2', node, TAG2, pack_size)
    print(f'create day2: {secs:.1f} s, {fmt_bytes(s["new_bytes"])} new -> {fmt_bytes(s["stored_bytes"])} stored, '
          f'{len(pack_sizes(store))} packs in the store', flush=True)
    T.add(f'day 2 ({n} of {len(node.sstables)} sstables replaced): create time, bytes stored', f'{secs:.1f} s',
          note=f'{fmt_bytes(s["new_bytes"])} new, {fmt_bytes(s["stored_bytes"])} stored',
          raw=dict(create_s=secs, replaced=n, replaced_bytes=nbytes, new_bytes=s['new_bytes'],
                   stored_bytes=s['stored_bytes']))
    shutil.rmtree(os.path.dirname(node.data_dir))  # prune needs the store only: room for its rewrite
    print('node deleted (prune needs only the store)', flush=True)
    sh(cb, 'forget', '--store', store, 'day1')
    cmd = [cb, 'prune', '--store', store, '--json'] + (['--pack-size', prune_pack_size] if prune_pack_size else [])
    t = time.perf_counter()
    p = json.loads(sh(*cmd).stdout)
    secs = time.perf_counter() - t
    b, pk = p['bytes'], p['packs']
    print(f'forget day1 + prune: {secs:.1f} s; packs {pk["before"]} -> {pk["after"]} (deleted {pk["deleted"]}, '
          f'repacked {pk["repacked"]} into {pk["written"]}); rewrote {fmt_bytes(b["rewritten"])}, '
          f'freed {fmt_bytes(b["freed"])}, kept {fmt_bytes(b["kept"])}', flush=True)
    ratio = b['rewritten'] / b['freed'] if b['freed'] else float('inf')
    T.add('forget day 1 + prune: bytes rewritten / bytes freed', fmt_bytes(b['rewritten']), fmt_bytes(b['freed']),
          ratio, ('<=', 0.25), note=f'prune --json bytes.rewritten (blob bytes copied) / bytes.freed; the new '
          f'packs took {fmt_bytes(b["written"])} (written / freed '
          f'{b["written"] / b["freed"] if b["freed"] else float("inf"):.3f}); {secs:.1f} s; packs {pk["before"]} -> '
          f'{pk["after"]}, {fmt_bytes(b["kept"])} kept', raw=dict(seconds=secs, bytes=b, packs=pk))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', required=True, help='a build directory (tools/cassbackup, fs/mount.cassbackup)')
    ap.add_argument('--dir', default='/var/tmp/cassbackup-scale', help='where the node and stores go')
    ap.add_argument('--gib', type=float, default=32, help='size of the node (GiB)')
    ap.add_argument('--pack-size', type=parse_size,
                    help='passed to create when it takes --pack-size (default 512M scaled by --gib/32, at least 16M)')
    ap.add_argument('--no-s3', action='store_true', help='skip create into s3rver and the PUT')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--keep', action='store_true', help='keep the store in --dir at the end (the node goes before prune)')
    ap.add_argument('--json', metavar='FILE', help='write the final table there as JSON')
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    cb = os.path.join(build, 'tools', 'cassbackup')
    total = int(a.gib * GiB)
    pack_size = a.pack_size or max(16 * MiB, int(512 * MiB * a.gib / 32) // MiB * MiB)
    W = a.dir
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through the finally blocks: unmount, stop s3rver
    if os.geteuid() != 0:
        raise SystemExit('scale_bench.py: needs root (drops the page cache, mounts FUSE)')
    if not a.no_s3 and not os.access(S3RVER, os.X_OK):
        raise SystemExit(f'scale_bench.py: {S3RVER} is not installed (bench/scale.sh installs it), or --no-s3')
    subprocess.run(['fusermount3', '-u', '-z', f'{W}/mnt'], capture_output=True)
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(W)

    ps = f'{pack_size // MiB}M'
    create_ps = ps if lists_option(cb, 'create', '--pack-size') else None
    prune_ps = ps if lists_option(cb, 'prune', '--pack-size') else None
    need, step = disk_needed(total, not a.no_s3, create_ps is None, pack_size)
    free = free_bytes(W)
    if need > free:
        raise SystemExit(f'scale_bench.py: a {a.gib:g} GiB node needs ~{need / GiB:.0f} GiB free in {W} at once '
                         f'(at {step}), {free / GiB:.0f} GiB are: use a smaller --gib'
                         f'{" or --no-s3" if step == "create into S3" else ""}')
    T = Table()
    print(f'== {build}: create --pack-size {"passed: " + create_ps if create_ps else "not passed (create --help does not list it)"}'
          f'; prune --pack-size {"passed: " + prune_ps if prune_ps else "not passed"}; disk: ~{need / GiB:.0f} GiB '
          f'needed at most (at {step}), {free / GiB:.0f} GiB free; load: {uptime()}', flush=True)
    node = Node(os.path.join(W, 'node'), total, a.seed)
    try:
        print(f'== 0. node: {len(node.plan)} tables in {len(KEYSPACES)} keyspaces, tables of '
              f'{fmt_bytes(table_bytes(node.plan[-1][2][0]))} to {fmt_bytes(table_bytes(node.plan[0][2][0]))}, '
              f'{1 + FLUSHES} sstables each; 70% of the bytes random', flush=True)
        t = time.perf_counter()
        node.make()
        t = time.perf_counter() - t
        made = sum(os.path.getsize(f) for f in node.snapshot_files(TAG1))
        print(f'{fmt_bytes(made)} in {len(node.sstables)} sstables ({len(node.snapshot_files(TAG1))} files in '
              f'snapshot {TAG1}) written in {t:.0f} s ({made / MiB / t:.0f} MiB/s)', flush=True)
        print('== 1. tar -I "zstd -T0" of the snapshot (the time create is compared with)', flush=True)
        tar_secs, tar_bytes = bench_tar(node, W)
        if a.no_s3:
            T.add('create into S3', 'skipped (--no-s3)')
        else:
            bench_s3(T, cb, W, node, tar_bytes, create_ps)
        print('== 3. create into a local store', flush=True)
        store = bench_local(T, cb, W, node, tar_secs, create_ps)
        print('== 4. cold sequential read of the biggest Data.db, the rest of its table, the mount\'s RSS', flush=True)
        bench_reads(T, build, W, node, store)
        print('== 5. day 2, then forget day 1 + prune', flush=True)
        bench_day2(T, cb, node, store, create_ps, prune_ps)
    finally:
        subprocess.run(['fusermount3', '-u', '-z', f'{W}/mnt'], capture_output=True)
        if not a.keep:
            for d in ('node', 'store', 's3rver-data', 'cache-s3'):
                shutil.rmtree(os.path.join(W, d), ignore_errors=True)
    print(f'== load at the end: {uptime()}', flush=True)
    T.print()
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'build': build, 'gib': a.gib, 'node_bytes': made, 'pack_size': create_ps,
                       'prune_pack_size': prune_ps, 'rows': T.rows}, f, indent=1)


if __name__ == '__main__':
    main()
