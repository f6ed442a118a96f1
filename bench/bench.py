"""cassbackup benchmarks; run through bench/run.sh. Every figure is measured in this run, and
each comparison runs the real programs on the same data on this machine."""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, 'tools', 'sample_data.py')
MiB = 1 << 20


def sh(*args, **kw):
    """Runs a command; one line with its stderr if it fails."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if p.returncode:
        raise SystemExit(f'{" ".join(str(a) for a in args)}: exit {p.returncode}: {p.stderr.strip()}')
    return p


def drop_caches():
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write('3\n')


def timed(fn, cold=True):
    if cold:
        drop_caches()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def read_file(path, bs=MiB):
    fd = os.open(path, os.O_RDONLY)
    n = 0
    try:
        while True:
            b = os.read(fd, bs)
            if not b:
                return n
            n += len(b)
    finally:
        os.close(fd)


class Mount:
    def __init__(self, build, store, mnt, *opts, env=None):
        self.start([os.path.join(build, 'fs', 'mount.cassbackup'), store, mnt, '-f', *opts], mnt, env)

    def start(self, cmd, mnt, env=None, **popen):
        """Runs the FUSE daemon cmd in the foreground; returns once mnt is mounted."""
        os.makedirs(mnt, exist_ok=True)
        self.mnt = mnt
        self.proc = subprocess.Popen(cmd, env=env, **popen)
        while not os.path.ismount(mnt):
            if self.proc.poll() is not None:
                raise SystemExit(f'{os.path.basename(cmd[0])} failed')
            time.sleep(0.005)

    def peak_rss_kib(self):
        with open(f'/proc/{self.proc.pid}/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
        return 0

    def close(self):
        subprocess.run(['fusermount3', '-u', self.mnt], check=True)
        self.proc.wait()


def percentile(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def random_reads(path, size, n, seed=3):
    """Latencies (s) of n 4 KiB O_DIRECT reads at random aligned offsets."""
    import mmap
    rng = random.Random(seed)
    buf = mmap.mmap(-1, 4096)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    lat = []
    try:
        for _ in range(n):
            off = rng.randrange(size // 4096) * 4096
            t = time.perf_counter()
            os.preadv(fd, [buf], off)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', required=True)
    ap.add_argument('--dir', default=os.environ.get('BENCH_DIR', '/var/tmp/cassbackup-bench'))
    ap.add_argument('--gib', type=float, default=float(os.environ.get('BENCH_GIB', '2')))
    ap.add_argument('--backups', type=int, default=int(os.environ.get('BENCH_BACKUPS', '10000')))
    ap.add_argument('--random-reads', type=int, default=2000)
    ap.add_argument('--am-mib', type=int, default=256, help='prefix archivemount reads')
    ap.add_argument('--am-cap', type=int, default=300, help='seconds archivemount may take')
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    cb = os.path.join(build, 'tools', 'cassbackup')
    W = a.dir
    subprocess.run(['fusermount3', '-u', os.path.join(W, 'mnt')], capture_output=True)
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(W)
    res = {}
    rows = []

    def report(name, ours, theirs, unit, target=None, higher_is_better=True, note=''):
        ratio = ours / theirs if theirs else float('inf')
        ok = '' if target is None else ('PASS' if (ratio >= target if higher_is_better else ratio <= target) else 'MISS')
        tgt = '' if target is None else (f'>= {target}' if higher_is_better else f'<= {target}')
        rows.append((name, ours, theirs, unit, ratio, tgt, ok, note))
        print(f'{name:58s} ours {ours:10.3f} {unit:5s} other {theirs:10.3f}  ratio {ratio:7.2f} {tgt:7s} {ok} {note}',
              flush=True)

    data_kib = int(a.gib * 1024 * 1024)
    print(f'== data: {a.gib} GiB Data.db (compressible and incompressible), 100 tables x 20 sstables x 512 KiB', flush=True)
    for kind, extra in (('comp', []), ('incomp', ['--incompressible'])):
        sh(sys.executable, SAMPLE, '--out', f'{W}/{kind}', '--data-dirs', '1', '--keyspaces', '1',
           '--tables', '1', '--sstables', '1', '--data-kib', data_kib, '--no-index', '--no-clutter', *extra)
    sh(sys.executable, SAMPLE, '--out', f'{W}/many', '--data-dirs', '1', '--keyspaces', '1',
       '--tables', '100', '--sstables', '20', '--data-kib', '512', '--no-clutter')

    def snap_data(kind):
        d = f'{W}/{kind}/data1/shop'
        [t] = [x for x in os.listdir(d) if x.startswith('orders-')]
        return f'{d}/{t}/snapshots/nightly-1/nb-1-big-Data.db', t

    # -- create throughput vs tar + zstd -T0
    print('== create', flush=True)
    stores = {}
    for kind in ('comp', 'incomp', 'many'):
        store = f'{W}/store-{kind}'
        sh(cb, 'init', '--store', store)
        stores[kind] = store
        dd = f'{W}/{kind}/data1'
        snap_paths = sorted(os.path.relpath(os.path.join(dd, 'shop', t, 'snapshots', 'nightly-1'), dd)
                            for t in os.listdir(os.path.join(dd, 'shop')))
        def ours(i):
            shutil.rmtree(store)
            sh(cb, 'init', '--store', store)
            return timed(lambda: sh(cb, 'create', '--store', store, '--name', 'day1', '--data-dir', dd,
                                    '--snapshot', 'nightly-1'))

        def tar(i):  # made durable like a backup: create fsyncs its pack before it returns
            out = f'{W}/{kind}.tar.zst'
            return timed(lambda: (sh('tar', '-I', 'zstd -3 -T0', '-cf', out, '-C', dd, *snap_paths),
                                  sh('sync', '-f', out)))

        t_ours = statistics.median(ours(i) for i in range(3))
        t_tar = statistics.median(tar(i) for i in range(3))
        info = json.loads(sh(cb, 'list', '--store', store, '--json').stdout)[0]
        gib = info['bytes'] / (1 << 30)
        report(f'create {kind} ({gib:.2f} GiB) vs tar -I "zstd -3 -T0" + fsync',
               info['bytes'] / MiB / t_ours, info['bytes'] / MiB / t_tar, 'MiB/s', 1.0,
               note=f'stored {info["stored_bytes"] / MiB:.0f} MiB vs tar.zst {os.path.getsize(f"{W}/{kind}.tar.zst") / MiB:.0f} MiB')

    # -- cold sequential read through the mount vs zstd -dc vs the plain file
    print('== sequential read (cold: page cache dropped, fresh mount)', flush=True)
    rss = []
    for kind in ('comp', 'incomp'):
        data, _ = snap_data(kind)
        size = os.path.getsize(data)
        sh('zstd', '-3', '-T0', '-q', '-f', data, '-o', f'{W}/{kind}.Data.db.zst')
        def via_mount():
            drop_caches()
            m = Mount(build, stores[kind], f'{W}/mnt')  # fresh: nothing cached anywhere
            p = os.path.join(m.mnt, 'backups', 'day1', 'shop', 'orders', 'nb-1-big-Data.db')
            t = timed(lambda: read_file(p))
            rss.append(m.peak_rss_kib())
            m.close()
            return t

        t_mount = statistics.median(via_mount() for _ in range(3))
        t_zstd = statistics.median(timed(lambda: subprocess.run(
            f'zstd -dc {W}/{kind}.Data.db.zst > /dev/null', shell=True, check=True)) for _ in range(3))
        t_plain = statistics.median(timed(lambda: read_file(data)) for _ in range(3))
        report(f'cold sequential read {kind}: mount vs zstd -dc', size / MiB / t_mount, size / MiB / t_zstd,
               'MiB/s', 0.9 if kind == 'comp' else None)
        report(f'cold sequential read {kind}: mount vs plain file', size / MiB / t_mount, size / MiB / t_plain,
               'MiB/s', 0.8 if kind == 'incomp' else None)

    # -- random 4 KiB reads, with the default 128 KiB frames and with --frame-kib 1024
    print('== random 4 KiB reads (O_DIRECT, so every read reaches the file system)', flush=True)
    for kind in ('comp', 'incomp'):
        data, _ = snap_data(kind)
        size = os.path.getsize(data)
        drop_caches()
        lat_p = random_reads(data, size, a.random_reads)
        big = f'{W}/store-{kind}-1m'
        sh(cb, 'init', '--store', big)
        sh(cb, 'create', '--store', big, '--name', 'day1', '--data-dir', f'{W}/{kind}/data1',
           '--snapshot', 'nightly-1', '--frame-kib', '1024')
        for label, store in (('128 KiB frames (default)', stores[kind]), ('1 MiB frames', big)):
            drop_caches()
            m = Mount(build, store, f'{W}/mnt')
            lat_m = random_reads(os.path.join(m.mnt, 'backups', 'day1', 'shop', 'orders', 'nb-1-big-Data.db'),
                                 size, a.random_reads)
            rss.append(m.peak_rss_kib())
            m.close()
            stored = json.loads(sh(cb, 'list', '--store', store, '--json').stdout)[0]['stored_bytes']
            report(f'random 4K {kind} p50, {label}, mount vs plain file', percentile(lat_m, 50) * 1e3,
                   percentile(lat_p, 50) * 1e3, 'ms', None, False)
            report(f'random 4K {kind} p99, {label}, mount vs plain file', percentile(lat_m, 99) * 1e3,
                   percentile(lat_p, 99) * 1e3, 'ms', 8, False, note=f'pack {stored / MiB:.0f} MiB')

    # -- archivemount on a single tar.zst of the same snapshot. archivemount cannot seek in a
    # zstd stream, so it decodes from the start again and again; it reads a bounded prefix of the
    # file, under a time cap, and a capped run is reported as a lower bound.
    print('== archivemount (one tar.zst) vs mount.cassbackup: mount + cold read of the first '
          f'{a.am_mib} MiB of Data.db', flush=True)
    data, tdir = snap_data('comp')
    am = f'{W}/am'
    os.makedirs(am, exist_ok=True)

    def read_prefix(path):
        with open(path, 'rb') as f:
            left = a.am_mib * MiB
            while left > 0:
                b = f.read(min(MiB, left))
                if not b:
                    break
                left -= len(b)

    script = (f'archivemount -o ro {W}/comp.tar.zst {am} && '
              f'head -c {a.am_mib * MiB} {am}/shop/{tdir}/snapshots/nightly-1/nb-1-big-Data.db > /dev/null')
    drop_caches()
    t = time.perf_counter()
    capped = subprocess.run(['timeout', str(a.am_cap), 'sh', '-c', script]).returncode == 124
    t_am = time.perf_counter() - t
    # timeout kills only the shell: stop archivemount and its reader too, or they would keep
    # a core busy through the measurements that follow
    subprocess.run(['pkill', '-f', f'archivemount -o ro {W}/comp.tar.zst'], capture_output=True)
    subprocess.run(['pkill', '-f', f'head -c {a.am_mib * MiB} {am}/'], capture_output=True)
    subprocess.run(['fusermount3', '-u', '-z', am], capture_output=True)

    def with_ours():
        m = Mount(build, stores['comp'], f'{W}/mnt')
        read_prefix(os.path.join(m.mnt, 'backups', 'day1', 'shop', 'orders', 'nb-1-big-Data.db'))
        m.close()

    t_ours = timed(with_ours)
    report('mount + cold read, speed-up over archivemount', t_am / t_ours, 1.0, 'x', None,
           note=f'archivemount {">" if capped else ""}{t_am:.2f} s, ours {t_ours:.3f} s')

    # -- one table out of 100
    print('== restore one table out of 100', flush=True)
    many = f'{W}/many/data1/shop'
    [t42] = [x for x in os.listdir(many) if x.startswith('table42-')]
    dst = f'{W}/restore'

    def tar_one():
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(dst)
        sh('tar', '--zstd', '-xf', f'{W}/many.tar.zst', '-C', dst, f'shop/{t42}/snapshots/nightly-1')

    m = Mount(build, stores['many'], f'{W}/mnt')

    def ours_one():
        shutil.rmtree(dst, ignore_errors=True)
        sh('cp', '-a', os.path.join(m.mnt, 'backups', 'day1', 'shop', 'table42'), dst)

    t_ours = timed(ours_one)
    m.close()
    t_tar = timed(tar_one)
    report('restore 1 of 100 tables (cp -a from mount) speed-up over tar -xf', t_tar / t_ours, 1.0, 'x', 20,
           note=f'tar {t_tar:.2f} s, ours {t_ours:.3f} s')

    # -- second day: 5% new sstables
    print('== second-day backup (5% new sstables)', flush=True)
    sh(sys.executable, SAMPLE, '--out', f'{W}/many', '--data-dirs', '1', '--keyspaces', '1',
       '--tables', '100', '--data-kib', '512', '--no-clutter', '--grow-percent', '5',
       '--tag', 'nightly-2', '--seed', '9')
    day1 = json.loads(sh(cb, 'list', '--store', stores['many'], '--json').stdout)[0]
    t_day2 = timed(lambda: sh(cb, 'create', '--store', stores['many'], '--name', 'day2',
                              '--data-dir', f'{W}/many/data1', '--snapshot', 'nightly-2'))
    sh(cb, 'init', '--store', f'{W}/store-fresh')  # day 1 again, timed the same way
    t_day1_again = timed(lambda: sh(cb, 'create', '--store', f'{W}/store-fresh', '--name', 'x',
                                    '--data-dir', f'{W}/many/data1', '--snapshot', 'nightly-1'))
    day2 = json.loads(sh(cb, 'list', '--store', stores['many'], '--json').stdout)[1]
    report('second-day backup: stored bytes, day 2 / day 1', day2['stored_bytes'] / MiB,
           day1['stored_bytes'] / MiB, 'MiB', None, False,
           note=f'logical {day2["bytes"] / MiB:.0f} MiB, new {day2["new_bytes"] / MiB:.0f} MiB')
    report('second-day backup: time, day 2 / day 1', t_day2, t_day1_again, 's', None, False)

    # -- many backups: mount + ls /backups
    print(f'== mount + ls /backups: 10 vs {a.backups} backups', flush=True)
    sh(sys.executable, SAMPLE, '--out', f'{W}/tiny', '--data-dirs', '1', '--keyspaces', '1',
       '--tables', '1', '--sstables', '1', '--data-kib', '4', '--no-index', '--no-clutter')
    for n in (10, a.backups):
        store = f'{W}/store-{n}'
        sh(cb, 'init', '--store', store)
        names = '\n'.join(f'b{i:05d}' for i in range(n)) + '\n'
        subprocess.run(f'xargs -P 4 -I NAME {cb} create --store {store} --name NAME --data-dir {W}/tiny/data1 '
                       f'--snapshot nightly-1 --threads 1 > /dev/null', shell=True, check=True, input=names,
                       text=True)
    mount_bin = os.path.join(build, 'fs', 'mount.cassbackup')
    times = {}
    for n in (10, a.backups):
        samples = []
        for _ in range(7):
            drop_caches()
            t = time.perf_counter()
            sh(mount_bin, f'{W}/store-{n}', f'{W}/mnt')  # daemonizes once mounted
            out = sh('ls', f'{W}/mnt/backups').stdout
            samples.append(time.perf_counter() - t)
            sh('fusermount3', '-u', f'{W}/mnt')
            assert out.count('\n') == n
        times[n] = statistics.median(samples)
    report(f'mount + ls /backups, {a.backups} backups / 10 backups', times[a.backups] * 1e3, times[10] * 1e3,
           'ms', 1.5, False)

    print(f'== peak RSS of mount.cassbackup over the read runs: {max(rss) / 1024:.1f} MiB '
          f'(target <= 64 MiB: {"PASS" if max(rss) <= 64 * 1024 else "MISS"})', flush=True)
    with open(os.path.join(W, 'results.json'), 'w') as f:
        json.dump({'rows': rows, 'peak_rss_kib': max(rss)}, f, indent=1)


if __name__ == '__main__':
    main()
