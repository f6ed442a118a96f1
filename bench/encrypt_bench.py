#!/usr/bin/python3
"""Encrypted vs plain store (issue 16): the same snapshot backed up into a plain and an
encrypted local store, then read back through the mount, each measured in this run on this
machine; prints each figure and the ratio encrypted / plain (times: lower is better; goal
within 10%, ratio <= 1.10). Nothing asserts.

    sudo /usr/bin/python3 bench/encrypt_bench.py --build build-release [--mib 512] [--runs 3]

1. create: a node of 2 keyspaces x 2 tables x 2 sstables, half compressible and half
   incompressible Data.db (tools/sample_data.py), median of --runs, each into a new store.
2. cold sequential read of every file through the mount (page cache dropped), median of --runs.
3. random 4 KiB reads through a fresh mount of the largest Data.db (cold), p50 and p99 of 2,000;
   then 1,000 reads each in a frame not read before (every one a frame cache miss), p50 and p99,
   median of --runs.
Needs root (FUSE, dropping the page cache). Writes under --dir."""
import argparse
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import MiB, Mount, drop_caches, percentile, random_reads as direct_reads, read_file, sh  # noqa: E402

REPO = os.path.dirname(HERE)


def make_data(W, mib):
    per = max(1, mib * 1024 // 16)  # 2 ks x 2 tables x 2 sstables x 2 kinds
    for kind in ('comp', 'incomp'):
        sh(sys.executable, os.path.join(REPO, 'tools', 'sample_data.py'), '--out', f'{W}/{kind}',
           '--data-dirs', '1', '--keyspaces', '2', '--tables', '2', '--sstables', '2',
           '--data-kib', str(per), '--no-clutter', '--no-index',
           *(['--incompressible'] if kind == 'incomp' else []))
    return [f'{W}/comp/data1', f'{W}/incomp/data1']


def new_store(cb, W, kind):
    s = f'{W}/store-{kind}'
    shutil.rmtree(s, ignore_errors=True)
    key = f'{W}/bench.key'
    args = ['--encrypt', '--key-file', key] if kind == 'encrypted' else []
    sh(cb, 'init', '--store', s, *args)
    return s, (['--key-file', key] if kind == 'encrypted' else []), \
        (['-o', f'key_file={key}'] if kind == 'encrypted' else [])


def create(cb, W, kind, dirs):
    """Seconds to back up both trees (two backups: their tables share names), cold."""
    s, kargs, _ = new_store(cb, W, kind)
    drop_caches()
    t = time.perf_counter()
    for i, d in enumerate(dirs):
        sh(cb, 'create', '--store', s, '--name', f'b{i}', '--data-dir', d, '--snapshot', 'nightly-1', *kargs)
    return time.perf_counter() - t


def files_of(root):
    res = []
    for r, _, names in os.walk(root):
        res += [os.path.join(r, n) for n in names]
    return sorted(res)


def mount_opts(W, kind):
    key = f'{W}/bench.key'
    return ['-o', f'key_file={key}'] if kind == 'encrypted' else []


def seq_read(build, W, kind):
    m = Mount(build, f'{W}/store-{kind}', f'{W}/mnt', *mount_opts(W, kind))
    try:
        files = files_of(os.path.join(m.mnt, 'backups'))
        drop_caches()
        t = time.perf_counter()
        n = sum(read_file(f) for f in files)
        return n, time.perf_counter() - t
    finally:
        m.close()


def random_reads(build, W, kind, count=2000):
    """p50 and p99 (s) of count 4 KiB O_DIRECT reads at random offsets of the largest Data.db,
    through a fresh mount, cold."""
    m = Mount(build, f'{W}/store-{kind}', f'{W}/mnt', *mount_opts(W, kind))
    try:
        files = [f for f in files_of(os.path.join(m.mnt, 'backups')) if f.endswith('Data.db')]
        big = max(files, key=os.path.getsize)
        drop_caches()
        lat = direct_reads(big, os.path.getsize(big), count)
        return percentile(lat, 50), percentile(lat, 99)
    finally:
        m.close()


def cold_frame_reads(build, W, kind, count=1000, frame=128 * 1024, seed=5):
    """p50 and p99 (s) of count 4 KiB O_DIRECT reads, each in a 128 KiB stretch of a Data.db
    that no read before touched (random stretches of every Data.db, in random order): each a
    frame cache miss, so it decodes (and, encrypted, opens) a frame. random_reads mixes such
    misses with hits on frames read before, about half and half: its p50 lies at their edge."""
    import mmap
    import random
    m = Mount(build, f'{W}/store-{kind}', f'{W}/mnt', *mount_opts(W, kind))
    try:
        files = [f for f in files_of(os.path.join(m.mnt, 'backups')) if f.endswith('Data.db')]
        spots = [(f, k * frame) for f in files for k in range(os.path.getsize(f) // frame)]
        rng = random.Random(seed)
        rng.shuffle(spots)
        drop_caches()
        buf = mmap.mmap(-1, 4096)
        fds = {f: os.open(f, os.O_RDONLY | os.O_DIRECT) for f in files}
        lat = []
        try:
            for f, off in spots[:count]:
                at = off + rng.randrange(frame // 4096) * 4096
                t = time.perf_counter()
                os.preadv(fds[f], [buf], at)
                lat.append(time.perf_counter() - t)
        finally:
            for fd in fds.values():
                os.close(fd)
        return percentile(lat, 50), percentile(lat, 99)
    finally:
        m.close()


def row(what, plain, enc, unit, fmt='{:.3f}'):
    ratio = enc / plain if plain else float('nan')
    mark = 'ok' if ratio <= 1.10 else 'OVER 10%'
    print(f'{what:<44} plain {fmt.format(plain):>10} {unit:<5} encrypted {fmt.format(enc):>10} {unit:<5} '
          f'ratio {ratio:5.2f}  {mark}', flush=True)
    return ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--build', default=os.path.join(REPO, 'build-release'))
    ap.add_argument('--dir', default='/var/tmp/cassbackup-encrypt-bench')
    ap.add_argument('--mib', type=int, default=512, help='snapshot size (MiB)')
    ap.add_argument('--runs', type=int, default=3)
    a = ap.parse_args()
    cb = os.path.join(a.build, 'tools', 'cassbackup')
    W = a.dir
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(W)
    os.environ['CASSBACKUP_CACHE_DIR'] = f'{W}/cache'
    dirs = make_data(W, a.mib)
    print(f'snapshot: {a.mib} MiB, half compressible; {a.runs} runs each, medians; build {a.build}')
    kinds = ('plain', 'encrypted')
    t = {k: [] for k in kinds}
    for _ in range(a.runs):  # interleaved, so a load change hits both
        for k in kinds:
            t[k].append(create(cb, W, k, dirs))
    row('create (s)', statistics.median(t['plain']), statistics.median(t['encrypted']), 's')
    sizes = {k: sum(os.path.getsize(f) for f in files_of(f'{W}/store-{k}/packs')) for k in kinds}
    print(f'{"store size (MiB)":<44} plain {sizes["plain"] / MiB:>10.1f} MiB   encrypted '
          f'{sizes["encrypted"] / MiB:>10.1f} MiB   ratio {sizes["encrypted"] / sizes["plain"]:5.3f}')
    r = {k: [] for k in kinds}
    for _ in range(a.runs):
        for k in kinds:
            n, secs = seq_read(a.build, W, k)
            r[k].append(n / MiB / secs)
    # throughput: higher is better, so the ratio compared is plain / encrypted
    p, e = statistics.median(r['plain']), statistics.median(r['encrypted'])
    print(f'{"cold sequential read, mount (MiB/s)":<44} plain {p:>10.0f} MiB/s encrypted {e:>10.0f} MiB/s '
          f'ratio {p / e:5.2f}  {"ok" if p / e <= 1.10 else "OVER 10%"}  (time encrypted / plain)')
    lat = {k: random_reads(a.build, W, k) for k in kinds}
    row('random 4 KiB read p50, cold mount (ms)', lat['plain'][0] * 1e3, lat['encrypted'][0] * 1e3, 'ms')
    row('random 4 KiB read p99, cold mount (ms)', lat['plain'][1] * 1e3, lat['encrypted'][1] * 1e3, 'ms')
    cold = {k: [] for k in kinds}
    for _ in range(a.runs):  # interleaved, as above
        for k in kinds:
            cold[k].append(cold_frame_reads(a.build, W, k))
    for i, q in ((0, 'p50'), (1, 'p99')):
        row(f'4 KiB read of an unread frame {q} (ms)', statistics.median(x[i] for x in cold['plain']) * 1e3,
            statistics.median(x[i] for x in cold['encrypted']) * 1e3, 'ms')
    shutil.rmtree(W, ignore_errors=True)


if __name__ == '__main__':
    main()
