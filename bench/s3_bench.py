"""cassbackup against object storage; run through `bench/run.sh --s3`. Starts an S3 server on
loopback (moto_server, or s3rver from build-node/), and in one run measures:
  a. mount from S3 vs the same backup in a local store: cold sequential read, random 4 KiB reads
  b. the same Data.db as a plain object read through s3fs and rclone mount
  c. one table of a many-table backup: cp -a from the S3 mount vs download + untar of a tar.zst
  d. requests and bytes one restored table costs (through tests/s3proxy.py when it is there,
     else counted from moto_server's access log, requests only)
  e. create into S3 vs create into a local store
Every figure comes from this run on this machine; nothing is asserted. Needs root (page cache
drops, FUSE). moto_server (moto 5) copies a whole object to answer each ranged GET, so reads of
a large pack measure moto (2-3 GETs/s on a 450 MiB pack here): use --server s3rver, which
serves ranges from files, for read figures at --gib 1 and above."""
import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import MiB, REPO, SAMPLE, Mount, drop_caches, percentile, random_reads, read_file, sh, timed  # noqa: E402

sys.path.insert(1, os.path.join(REPO, 'tests'))
try:
    from s3proxy import S3Proxy  # noqa: E402
except ImportError:
    S3Proxy = None

S3RVER = os.path.join(REPO, 'build-node', 'node_modules', '.bin', 's3rver')
BUCKET = 'cbbench'


class Server:
    """An S3 server on a free loopback port, with its credentials; log: its output file."""

    def __init__(self, kind, workdir):
        self.kind = kind
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]
        self.log = os.path.join(workdir, f'{kind}.log')  # a file: a full pipe would stall it
        if kind == 'moto':
            exe = shutil.which('moto_server')
            if not exe:
                raise SystemExit('moto_server is not on PATH (pip install "moto[server]"; under sudo: '
                                 'sudo env PATH="$PATH" bench/run.sh --s3), or use --server s3rver')
            cmd = [exe, '-H', '127.0.0.1', '-p', str(self.port)]
            self.key = self.secret = 'test'
        else:
            if not os.access(S3RVER, os.X_OK):
                raise SystemExit(f'{S3RVER} is not installed (npm install --prefix build-node s3rver)')
            data = os.path.join(workdir, 's3rver-data')
            os.makedirs(data)
            cmd = [S3RVER, '-d', data, '-a', '127.0.0.1', '-p', str(self.port),
                   '--configure-bucket', BUCKET, '--silent']
            self.key = self.secret = 'S3RVER'
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, 'w'), stderr=subprocess.STDOUT)

    def wait_ready(self):
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f'{self.kind} exited at start: {open(self.log).read()}')
            with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', self.port), 0.2):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f'{self.kind} did not listen on port {self.port}')
            time.sleep(0.1)
        if self.kind == 'moto':
            urllib.request.urlopen(urllib.request.Request(self.url(), method='PUT')).read()

    def url(self, port=None):
        return f'http://127.0.0.1:{port or self.port}/{BUCKET}'

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cb_env(self, cache, port=None):
        """Environment for cassbackup and mount.cassbackup on this server (port: a proxy's)."""
        return dict(os.environ, AWS_ENDPOINT_URL=f'http://127.0.0.1:{port or self.port}',
                    AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret,
                    AWS_REGION='us-east-1', CASSBACKUP_CACHE_DIR=cache)

    def rclone_env(self, port=None):
        """rclone's remote "bench:" configured by environment, as an operator would."""
        e = dict(os.environ, RCLONE_CONFIG='/dev/null')
        e.pop('AWS_CA_BUNDLE', None)  # rclone's SDK fails on it with its own transport; plain http here
        for k, v in (('TYPE', 's3'), ('PROVIDER', 'Other'), ('ACCESS_KEY_ID', self.key),
                     ('SECRET_ACCESS_KEY', self.secret), ('REGION', 'us-east-1'),
                     ('ENDPOINT', f'http://127.0.0.1:{port or self.port}'), ('FORCE_PATH_STYLE', 'true'),
                     ('LIST_VERSION', '1')):  # s3rver's ListObjectsV2 is broken (s3rver#814)
            e[f'RCLONE_CONFIG_BENCH_{k}'] = v
        return e


class FuseMount(Mount):
    """Any FUSE daemon run in the foreground, with bench.Mount's close()."""

    def __init__(self, cmd, mnt, env=None, log=None):
        out = open(log, 'a') if log else None
        self.start(cmd, mnt, env, stdout=out, stderr=subprocess.STDOUT if out else None)


@contextlib.contextmanager
def mounted(make):
    """make() -> a started Mount; unmounted and its daemon gone when the block ends, however."""
    m = make()
    try:
        yield m
    finally:
        if m.proc.poll() is None:
            if subprocess.run(['fusermount3', '-u', m.mnt], capture_output=True).returncode:
                subprocess.run(['fusermount3', '-u', '-z', m.mnt], capture_output=True)
            try:
                m.proc.wait(30)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()


class Report:
    def __init__(self):
        self.rows = []

    def ratio(self, name, ours, other, unit, goal=None, higher_is_better=True, note=''):
        """One comparison; ratio = ours / other, goal checked in the better direction."""
        r = ours / other if other else float('inf')
        verdict = ''
        if goal is not None:
            verdict = 'PASS' if (r >= goal if higher_is_better else r <= goal) else 'MISS'
            verdict = f'{">=" if higher_is_better else "<="} {goal} {verdict}'
        self.rows.append(dict(name=name, ours=ours, other=other, unit=unit, ratio=r, goal=verdict, note=note))
        print(f'{name:62s} {ours:10.3f} vs {other:10.3f} {unit:6s} ratio {r:8.2f}  {verdict} {note}', flush=True)

    def figure(self, name, value, unit, note=''):
        self.rows.append(dict(name=name, value=value, unit=unit, note=note))
        print(f'{name:62s} {value:10.3f} {unit:6s} {note}', flush=True)


def uptime():
    return sh('uptime').stdout.strip()


def make_data(W, a):
    extra = ['--incompressible'] if a.incompressible else []
    sh(sys.executable, SAMPLE, '--out', f'{W}/big', '--data-dirs', '1', '--keyspaces', '1', '--tables', '1',
       '--sstables', '1', '--data-kib', int(a.gib * 1024 * 1024), '--no-index', '--no-clutter', *extra)
    sh(sys.executable, SAMPLE, '--out', f'{W}/many', '--data-dirs', '1', '--keyspaces', '1',
       '--tables', a.tables, '--sstables', a.sstables, '--data-kib', a.sstable_kib, '--no-clutter', *extra)


def snapshot_dirs(data_dir):
    """Relative paths of the nightly-1 snapshot of every table under data_dir/shop."""
    return sorted(os.path.join('shop', t, 'snapshots', 'nightly-1') for t in os.listdir(f'{data_dir}/shop'))


def create(cb, store, name, data_dir, env=None):
    """Times one create into a fresh store; returns (seconds, logical bytes)."""
    sh(cb, 'init', '--store', store, env=env)
    t = timed(lambda: sh(cb, 'create', '--store', store, '--name', name, '--data-dir', data_dir,
                         '--snapshot', 'nightly-1', env=env))
    [info] = json.loads(sh(cb, 'list', '--store', store, '--json', env=env).stdout)
    return t, info


def bench_create(R, cb, W, srv):
    """e. Fills the stores the other parts read: a local one and one in the bucket."""
    print(f'== e. create into S3 ({srv.kind}) vs into a local store (fresh stores, fsync included locally)',
          flush=True)
    out = {}
    for name in ('big', 'many'):
        local, s3 = f'{W}/store-local-{name}', f's3://{BUCKET}/store-{name}'
        t_loc, info = create(cb, local, name, f'{W}/{name}/data1')
        t_s3, info_s3 = create(cb, s3, name, f'{W}/{name}/data1', env=srv.cb_env(f'{W}/cache-create'))
        if info_s3['bytes'] != info['bytes']:
            raise SystemExit(f'create {name}: {info_s3["bytes"]} bytes backed up into S3, {info["bytes"]} locally')
        R.ratio(f'create {name} ({info["bytes"] / MiB:.0f} MiB): S3 vs local', info['bytes'] / MiB / t_s3,
                info['bytes'] / MiB / t_loc, 'MiB/s', note=f'stored {info_s3["stored_bytes"] / MiB:.0f} MiB')
        out[name] = dict(local=local, s3=s3)
    return out


def seq_and_random(R, label, make, path, size, a, base=None):
    """Cold sequential MiB/s (median of a.repeat fresh mounts) and random 4 KiB latencies of one
    mount kind; with base (an earlier result), reported as a ratio to it."""
    times = []
    for _ in range(a.repeat):
        drop_caches()
        with mounted(make) as m:
            p = os.path.join(m.mnt, path)
            got = []
            times.append(timed(lambda: got.append(read_file(p))))
            if got != [size]:
                raise SystemExit(f'{label}: read {got[0]} bytes of {p}, not {size}')
    with mounted(make) as m:
        drop_caches()
        lat = random_reads(os.path.join(m.mnt, path), size, a.random_reads)
    res = dict(seq=size / MiB / statistics.median(times), p50=percentile(lat, 50) * 1e3,
               p99=percentile(lat, 99) * 1e3)
    if base is None:
        R.figure(f'{label}: cold sequential read', res['seq'], 'MiB/s', note=f'median of {a.repeat}')
        R.figure(f'{label}: random 4K p50', res['p50'], 'ms')
        R.figure(f'{label}: random 4K p99', res['p99'], 'ms')
    else:
        other, goal, bl = base
        R.ratio(f'cold sequential read: {bl} vs {label}', other['seq'], res['seq'], 'MiB/s', goal)
        R.ratio(f'random 4K p50: {bl} vs {label}', other['p50'], res['p50'], 'ms', higher_is_better=False)
        R.ratio(f'random 4K p99: {bl} vs {label}', other['p99'], res['p99'], 'ms', higher_is_better=False)
    return res


def bench_reads(R, build, W, srv, stores, a):
    """a. and b."""
    rel = 'backups/big/shop/orders/nb-1-big-Data.db'
    src = os.path.join(W, 'big', 'data1', snapshot_dirs(f'{W}/big/data1')[0], 'nb-1-big-Data.db')
    size = os.path.getsize(src)
    mnt = f'{W}/mnt'
    s3env = srv.cb_env(f'{W}/cache-read')
    print(f'== a. {size / MiB:.0f} MiB Data.db: mount from S3 vs mount of a local store (cold: fresh mount, '
          f'page cache dropped; {a.random_reads} O_DIRECT 4 KiB reads)', flush=True)
    s3 = seq_and_random(R, 'mount.cassbackup S3', lambda: Mount(build, stores['big']['s3'], mnt, env=s3env),
                        rel, size, a)
    seq_and_random(R, 'mount.cassbackup local', lambda: Mount(build, stores['big']['local'], mnt), rel, size, a,
                   base=(s3, 0.5, 'S3'))

    print('== b. the same Data.db as a plain object, through s3fs and rclone mount', flush=True)
    sh('rclone', 'copyto', src, f'bench:{BUCKET}/Data.db', env=srv.rclone_env())
    pw = f'{W}/s3fs.passwd'
    with open(os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as f:
        f.write(f'{srv.key}:{srv.secret}\n')
    s3fs = ['s3fs', BUCKET, mnt, '-f', '-o', f'url=http://127.0.0.1:{srv.port},use_path_request_style,'
            f'passwd_file={pw},endpoint=us-east-1,ro']
    rclone = ['rclone', 'mount', f'bench:{BUCKET}', mnt, '--read-only']
    for label, cmd, env in (('s3fs', s3fs, None), ('rclone mount', rclone, srv.rclone_env())):
        seq_and_random(R, label, lambda: FuseMount(cmd, mnt, env, log=f'{W}/{label.split()[0]}.log'),
                       'Data.db', size, a, base=(s3, None, 'cassbackup S3'))


def du_bytes(path):
    return int(sh('du', '-sb', '--apparent-size', path).stdout.split()[0])


def bench_restore(R, build, W, srv, stores, table):
    """c. One table from the S3 mount (fresh catalog cache: a new node) vs rclone copy of the
    whole backup as one tar.zst + tar -x of that table."""
    dd = f'{W}/many/data1'
    snaps = snapshot_dirs(dd)
    [snap] = [s for s in snaps if s.split('/')[1].startswith(table + '-')]
    tarzst = f'{W}/many.tar.zst'
    sh('tar', '-I', 'zstd -3 -T0', '-cf', tarzst, '-C', dd, *snaps)
    sh('rclone', 'copyto', tarzst, f'bench:{BUCKET}/many.tar.zst', env=srv.rclone_env())
    print(f'== c. restore 1 table of {len(snaps)}: cp -a from the S3 mount (mount start with an empty catalog '
          f'cache included) vs rclone copy of the backup as one tar.zst ({os.path.getsize(tarzst) / MiB:.0f} MiB) '
          '+ tar -x of that table', flush=True)
    dst = f'{W}/restore'

    def ours():
        shutil.rmtree(dst, ignore_errors=True)
        shutil.rmtree(f'{W}/cache-restore', ignore_errors=True)
        os.makedirs(dst)
        t0 = time.perf_counter()
        with mounted(lambda: Mount(build, stores['many']['s3'], f'{W}/mnt',
                                   env=srv.cb_env(f'{W}/cache-restore'))) as m:
            t1 = time.perf_counter()
            sh('cp', '-a', os.path.join(m.mnt, 'backups', 'many', 'shop', table), dst)
            t2 = time.perf_counter()
        return t2 - t0, t2 - t1

    def theirs():
        shutil.rmtree(dst, ignore_errors=True)
        shutil.rmtree(f'{W}/dl', ignore_errors=True)
        os.makedirs(dst)
        t0 = time.perf_counter()
        sh('rclone', 'copy', f'bench:{BUCKET}/many.tar.zst', f'{W}/dl', env=srv.rclone_env())
        t1 = time.perf_counter()
        sh('tar', '--zstd', '-xf', f'{W}/dl/many.tar.zst', '-C', dst, snap)
        return time.perf_counter() - t0, t1 - t0

    drop_caches()
    total_ours, cp_only = ours()
    sh('diff', '-r', os.path.join(dd, snap), os.path.join(dst, table))  # the right bytes came back
    table_bytes = du_bytes(os.path.join(dst, table))
    drop_caches()
    total_theirs, download = theirs()
    sh('diff', '-r', os.path.join(dd, snap), os.path.join(dst, snap))
    R.ratio('restore 1 table: speed-up of mount + cp -a over download + untar', total_theirs / total_ours, 1.0, 'x',
            50, note=f'ours {total_ours:.2f} s (cp -a {cp_only:.2f} s), download {download:.2f} s + untar '
                     f'{total_theirs - download:.2f} s; table {table_bytes / MiB:.1f} MiB')
    return table_bytes, os.path.getsize(tarzst)


def moto_requests(log, start):
    """Requests moto_server logged after byte offset start (one werkzeug access line each)."""
    with open(log, 'rb') as f:
        f.seek(start)
        return len(re.findall(rb'"(?:GET|HEAD|PUT|POST|DELETE) /', f.read()))


def bench_traffic(R, build, W, srv, stores, table, table_bytes, tar_bytes):
    """d. Requests and bytes one restored table costs, mount start and cp -a apart."""
    src = 'backups/many/shop/' + table
    dst = f'{W}/restore-d'

    def restore(env):
        shutil.rmtree(dst, ignore_errors=True)
        shutil.rmtree(f'{W}/cache-d', ignore_errors=True)
        os.makedirs(dst)
        with mounted(lambda: Mount(build, stores['many']['s3'], f'{W}/mnt', env=env)) as m:
            yield 'mounted'
            sh('cp', '-a', os.path.join(m.mnt, src), dst)
            yield 'copied'

    if S3Proxy is not None:
        print('== d. S3 traffic of one restored table, counted by tests/s3proxy.py', flush=True)
        with S3Proxy(srv.port) as px:
            count = (lambda: (px.requests if isinstance(px.requests, int) else len(px.requests),
                              px.bytes_to_client))
            marks = [count()]
            for _ in restore(srv.cb_env(f'{W}/cache-d', px.port)):
                marks.append(count())
            sh('rclone', 'copy', f'bench:{BUCKET}/many.tar.zst', f'{W}/dl-d', env=srv.rclone_env(px.port))
            marks.append(count())
        (r0, b0), (r1, b1), (r2, b2), (r3, b3) = marks
        R.figure('mount start (empty catalog cache): requests / MiB', r1 - r0, 'req', note=f'{(b1 - b0) / MiB:.2f} MiB')
        R.figure('cp -a of the table: requests / MiB', r2 - r1, 'req', note=f'{(b2 - b1) / MiB:.2f} MiB')
        R.ratio('bytes fetched per restored table: ours (start + cp) vs rclone copy of the tar.zst',
                (b2 - b0) / MiB, (b3 - b2) / MiB, 'MiB', None, False,
                note=f'{r3 - r2} requests for rclone; table {table_bytes / MiB:.1f} MiB, tar.zst {tar_bytes / MiB:.0f} MiB')
    elif srv.kind == 'moto':
        print('== d. S3 requests of one restored table, counted from moto_server\'s access log '
              '(tests/s3proxy.py not there: no byte counts)', flush=True)
        marks = [os.path.getsize(srv.log)]
        for _ in restore(srv.cb_env(f'{W}/cache-d')):
            time.sleep(0.5)  # let the server flush its log lines
            marks.append(os.path.getsize(srv.log))
        R.figure('mount start (empty catalog cache): requests', moto_requests(srv.log, marks[0]) -
                 moto_requests(srv.log, marks[1]), 'req')
        R.figure('cp -a of the table: requests', moto_requests(srv.log, marks[1]) -
                 moto_requests(srv.log, marks[2]), 'req', note=f'table {table_bytes / MiB:.1f} MiB')
    else:
        print('== d. skipped: tests/s3proxy.py is not there and s3rver --silent logs no requests', flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', required=True)
    ap.add_argument('--dir', default=os.environ.get('BENCH_DIR', '/var/tmp/cassbackup-bench-s3'))
    ap.add_argument('--server', choices=('moto', 's3rver'), default='moto')
    ap.add_argument('--gib', type=float, default=1.0, help='size of the big Data.db')
    ap.add_argument('--incompressible', action='store_true', help='random data instead of compressible')
    ap.add_argument('--tables', type=int, default=100, help='tables of the many-table backup')
    ap.add_argument('--sstables', type=int, default=20, help='sstables per table there')
    ap.add_argument('--sstable-kib', type=int, default=512, help='size of each of their Data.db')
    ap.add_argument('--random-reads', type=int, default=300)
    ap.add_argument('--repeat', type=int, default=3, help='cold sequential reads per mount kind (median)')
    ap.add_argument('--no-reads', action='store_true', help='skip a. and b. (the big Data.db reads)')
    a = ap.parse_args()
    if a.tables < 2:
        ap.error('--tables: at least 2 (one of them is restored)')
    build = os.path.abspath(a.build)
    cb = os.path.join(build, 'tools', 'cassbackup')
    W = a.dir
    for mp in ('mnt',):
        subprocess.run(['fusermount3', '-u', '-z', os.path.join(W, mp)], capture_output=True)
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(W)
    R = Report()
    print(f'== {a.server}; big Data.db {a.gib} GiB, {a.tables} tables x {a.sstables} sstables x '
          f'{a.sstable_kib} KiB ({"in" if a.incompressible else ""}compressible); load: {uptime()}', flush=True)
    if a.server == 'moto' and a.gib > 0.25 and not a.no_reads:
        print('== note: moto copies the whole pack for each ranged GET; the reads will take long and '
              'measure moto (--server s3rver for read figures)', flush=True)
    make_data(W, a)
    srv = Server(a.server, W)
    try:
        srv.wait_ready()
        stores = bench_create(R, cb, W, srv)
        if not a.no_reads:
            bench_reads(R, build, W, srv, stores, a)
        table = f'table{min(42, a.tables - 1)}'
        table_bytes, tar_bytes = bench_restore(R, build, W, srv, stores, table)
        bench_traffic(R, build, W, srv, stores, table, table_bytes, tar_bytes)
    finally:
        subprocess.run(['fusermount3', '-u', '-z', f'{W}/mnt'], capture_output=True)
        srv.stop()
    print(f'== load at the end: {uptime()}', flush=True)
    with open(os.path.join(W, 'results.json'), 'w') as f:
        json.dump({'args': vars(a), 'rows': R.rows}, f, indent=1)


if __name__ == '__main__':
    main()
