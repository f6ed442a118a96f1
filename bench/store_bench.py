#!/usr/bin/python3
"""Store format 2 benchmarks (issue 7): what a store costs over time and what a mount costs in
memory. Every figure is measured in this run, on this machine; nothing here asserts.

    sudo /usr/bin/python3 bench/store_bench.py --build build-release              (full size)
    sudo /usr/bin/python3 bench/store_bench.py --build build --days 5 --files 20000 --gib 0.05

1. 30 simulated days of a changing node (tests/node_sim.py: each day compaction replaces ~20%
   of every table's sstables, a flush adds one), backed up daily into two stores: one with a
   daily `forget --keep-daily 7 --keep-weekly 4` then `prune`, one never pruned. Store bytes
   per day for both; at the end vs a fresh store of only the kept backups, and vs the sum of
   the snapshots (a tar per day). Each prune's time and bytes rewritten (repacked).
2. mount.cassbackup's RSS after reading a --gib GiB file end to end.
3. A backup of --files tiny files (tables of 1000 files each), its creation timed; the mount's
   RSS after walking all of them (find, then a stat of every file), and `find` over the mount
   vs `find` over the same tree on local disk (files/s).
Needs root (FUSE, dropping the page cache). Writes under --dir, and keeps the tree of part 3
there for the next run (--dir/tree-N; rm -rf it when done)."""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests'))
sys.path.insert(0, HERE)
from bench import MiB, Mount, drop_caches, read_file, sh  # noqa: E402
from mount_rss import status  # noqa: E402
import node_sim  # noqa: E402

RSS_GOAL_MIB = 32


def cbj(cb, *args):
    return json.loads(sh(cb, *args, '--json').stdout)


# --- 1. thirty days ------------------------------------------------------------------------

def thirty_days(cb, W, a):
    """Returns the figures of the 30-day run; prints a row per day."""
    data, pruned, kept_all = f'{W}/node', f'{W}/store-pruned', f'{W}/store-all'
    for s in (pruned, kept_all):
        sh(cb, 'init', '--store', s)
    rng = random.Random(7)
    tables = node_sim.tables(a.tables)
    start = time.time_ns() - a.days * node_sim.DAY
    snaps, prunes = [], []
    print(f'== {a.days} days, {a.tables} tables, day-0 sstables of {a.sstable_kib} KiB: '
          'store bytes with daily forget --keep-daily 7 --keep-weekly 4 + prune, and without', flush=True)
    print(f'{"day":>4} {"snapshot MiB":>12} {"tar/day sum MiB":>15} {"no prune MiB":>12} '
          f'{"pruned MiB":>10} {"kept":>4} {"prune s":>7} {"repacked MiB":>12} {"freed MiB":>9}')
    for d in range(a.days):
        node_sim.a_day(data, d, rng, tables, a.sstable_kib)
        snaps.append(node_sim.snapshot_bytes(data, d, tables))
        for s in (pruned, kept_all):
            sh(cb, 'create', '--store', s, '--name', f'day{d}', '--data-dir', data, '--snapshot', f'day{d}',
               '--node', 'n1')
            node_sim.date_backup(s, f'day{d}', start + d * node_sim.DAY)
            sh(cb, 'reindex', '--store', s)
        sh(cb, 'forget', '--store', pruned, '--keep-daily', '7', '--keep-weekly', '4')
        t = time.perf_counter()
        pr = cbj(cb, 'prune', '--store', pruned)
        prunes.append((time.perf_counter() - t, pr['bytes']['rewritten'], pr['bytes']['freed']))
        kept = [b['name'] for b in cbj(cb, 'list', '--store', pruned)]
        print(f'{d:4d} {snaps[-1] / MiB:12.1f} {sum(snaps) / MiB:15.1f} '
              f'{node_sim.store_bytes(kept_all) / MiB:12.1f} {node_sim.store_bytes(pruned) / MiB:10.1f} '
              f'{len(kept):4d} {prunes[-1][0]:7.2f} {prunes[-1][1] / MiB:12.1f} {prunes[-1][2] / MiB:9.1f}',
              flush=True)

    fresh = f'{W}/store-fresh'
    sh(cb, 'init', '--store', fresh)
    for name in sorted(kept, key=lambda n: int(n[3:])):
        sh(cb, 'create', '--store', fresh, '--name', name, '--data-dir', data, '--snapshot', name,
           '--node', 'n1')
    res = {
        'pruned': node_sim.store_bytes(pruned), 'unpruned': node_sim.store_bytes(kept_all),
        'fresh_kept': node_sim.store_bytes(fresh), 'tar_all': sum(snaps),
        'tar_kept': sum(snaps[int(n[3:])] for n in kept), 'kept': len(kept),
        'prune_s': [p[0] for p in prunes], 'rewritten': [p[1] for p in prunes],
    }
    shutil.rmtree(data)
    for s in (pruned, kept_all, fresh):
        shutil.rmtree(s)
    return res


def report_days(r):
    M = MiB
    print(f'-- after {len(r["prune_s"])} days, {r["kept"]} backups kept:')
    print(f'   store with forget+prune   {r["pruned"] / M:9.1f} MiB')
    print(f'   fresh store of the kept   {r["fresh_kept"] / M:9.1f} MiB   ratio pruned/fresh '
          f'{r["pruned"] / r["fresh_kept"]:.3f} (issue 7: within 10%)')
    print(f'   store never pruned        {r["unpruned"] / M:9.1f} MiB   ratio pruned/never '
          f'{r["pruned"] / r["unpruned"]:.3f}')
    print(f'   tar per day, all days     {r["tar_all"] / M:9.1f} MiB   ratio never-pruned/tar '
          f'{r["unpruned"] / r["tar_all"]:.3f}')
    print(f'   tar per day, kept days    {r["tar_kept"] / M:9.1f} MiB   ratio pruned/tar '
          f'{r["pruned"] / r["tar_kept"]:.3f}')
    t, rw = r['prune_s'], r['rewritten']
    print(f'   prune: {sum(t):.2f} s in all, max {max(t):.2f} s, mean {sum(t) / len(t):.2f} s; '
          f'repacked {sum(rw) / M:.1f} MiB in all, max {max(rw) / M:.1f} MiB in one prune', flush=True)


# --- 2. mount RSS after reading a big file -------------------------------------------------

def rss_line(label, pid):
    s = status(pid)
    with open(f'/proc/{pid}/status') as f:
        hwm = next(int(x.split()[1]) for x in f if x.startswith('VmHWM:'))
    mib = s['VmRSS'] / 1024
    print(f'   {label}: RSS {mib:.1f} MiB (anon {s["RssAnon"] / 1024:.1f}, file {s["RssFile"] / 1024:.1f}), '
          f'peak {hwm / 1024:.1f} MiB, {s["Threads"]} threads; goal <= {RSS_GOAL_MIB} MiB: '
          f'{"PASS" if hwm / 1024 <= RSS_GOAL_MIB else "MISS"}', flush=True)
    return {'rss_kib': s['VmRSS'], 'peak_kib': hwm, 'anon_kib': s['RssAnon']}


def big_file(build, cb, W, a):
    print(f'== mount RSS after reading a {a.gib:g} GiB file', flush=True)
    data = f'{W}/big'
    tdir = f'{data}/shop/big-{0:032x}/snapshots/s1'
    os.makedirs(tdir)
    with open(f'{tdir}/nb-1-big-Data.db', 'wb') as f:
        block = random.Random(1).randbytes(MiB)
        for i in range(int(a.gib * 1024)):
            f.write(i.to_bytes(8, 'little') + block[8:])  # incompressible, no two MiB alike
    store = f'{W}/store-big'
    sh(cb, 'init', '--store', store)
    sh(cb, 'create', '--store', store, '--name', 'b1', '--data-dir', data, '--snapshot', 's1')
    drop_caches()
    m = Mount(build, store, f'{W}/mnt')
    try:
        rss_line('after mounting', m.proc.pid)
        t = time.perf_counter()
        n = read_file(f'{W}/mnt/backups/b1/shop/big/nb-1-big-Data.db')
        secs = time.perf_counter() - t
        print(f'   read {n / MiB:.0f} MiB in {secs:.1f} s ({n / MiB / secs:.0f} MiB/s)')
        res = rss_line(f'after reading {a.gib:g} GiB', m.proc.pid)
    finally:
        m.close()
    shutil.rmtree(data)
    shutil.rmtree(store)
    return res


# --- 3. a million files ----------------------------------------------------------------------

def make_tree(root, files, per_table=1000):
    """files tiny files, per_table to a table (sstables of 4 components, each 16 distinct
    bytes), as one snapshot 'many'. Returns the number made."""
    made = 0
    for t in range((files + per_table - 1) // per_table):
        d = f'{root}/shop/t{t:04d}-{t:032x}/snapshots/many'
        os.makedirs(d)
        n = min(per_table, files - made)
        for i in range(n):
            comp = node_sim.COMPONENTS[i % 4]
            fd = os.open(f'{d}/nb-{i // 4 + 1}-big-{comp}', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b'%08d%08d' % (t, i))
            os.close(fd)
        made += n
    return made


def walk_stat(top):
    n = 0
    for root, _, names in os.walk(top):
        for name in names:
            os.lstat(os.path.join(root, name))
            n += 1
    return n


def timed_find(path):
    t = time.perf_counter()
    out = subprocess.run(['find', path, '-type', 'f'], check=True, capture_output=True).stdout
    return out.count(b'\n'), time.perf_counter() - t


def the_tree(W, files):
    """The tree of `files` files in W/tree-FILES, made on the first run and kept for the next
    ones (removing a million files whose inodes a cache drop evicted takes ~15 minutes here).
    Returns (path, seconds it took to make)."""
    data, done = f'{W}/tree-{files}', f'{W}/tree-{files}.made'
    if os.path.exists(done):
        with open(done) as f:
            return data, float(f.read())
    shutil.rmtree(data, ignore_errors=True)
    t = time.perf_counter()
    n = make_tree(data, files)
    t_tree = time.perf_counter() - t
    assert n == files
    with open(done, 'w') as f:
        f.write(f'{t_tree}\n')
    return data, t_tree


def million_files(build, cb, W, a):
    print(f'== {a.files} catalogued files: create, mount RSS after walking them, find', flush=True)
    store = f'{W}/store-many'
    data, t_tree = the_tree(W, a.files)
    n = a.files
    sh(cb, 'init', '--store', store)
    t = time.perf_counter()
    sh(cb, 'create', '--store', store, '--name', 'm1', '--data-dir', data, '--snapshot', 'many')
    t_create = time.perf_counter() - t
    cat = os.path.getsize(f'{store}/catalog.db')
    print(f'   tree of {n} files on local disk made in {t_tree:.1f} s (by the run that made it; kept '
          f'in {data} for later runs); create in {t_create:.1f} s ({n / t_create:.0f} files/s); '
          f'catalog.db {cat / MiB:.1f} MiB', flush=True)

    drop_caches()
    local_n, local_s = timed_find(data)
    drop_caches()
    m = Mount(build, store, f'{W}/mnt')
    res = {'files': n, 'tree_s': t_tree, 'create_s': t_create, 'catalog_bytes': cat}
    try:
        mount_n, mount_s = timed_find(f'{W}/mnt/backups/m1')
        res['after_find'] = rss_line(f'after find over {mount_n} files', m.proc.pid)
        t = time.perf_counter()
        walked = walk_stat(f'{W}/mnt/backups/m1')
        t_walk = time.perf_counter() - t
        res['after_walk'] = rss_line(f'after a stat of every file ({walked} in {t_walk:.1f} s)',
                                     m.proc.pid)
    finally:
        m.close()
    assert mount_n == local_n == n, (mount_n, local_n, n)
    res.update(find_mount_fps=mount_n / mount_s, find_local_fps=local_n / local_s)
    print(f'   find (cold): mount {mount_n / mount_s:.0f} files/s, local disk {local_n / local_s:.0f} '
          f'files/s, ratio mount/local {local_s / mount_s:.2f}', flush=True)
    shutil.rmtree(store)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', required=True, help='a meson build directory')
    ap.add_argument('--dir', default=os.environ.get('BENCH_DIR', '/var/tmp/cassbackup-store-bench'))
    ap.add_argument('--days', type=int, default=30)
    ap.add_argument('--tables', type=int, default=20)
    ap.add_argument('--sstable-kib', type=int, default=1024, help="day 0's sstable Data.db size")
    ap.add_argument('--gib', type=float, default=2, help='size of the file read through the mount')
    ap.add_argument('--files', type=int, default=1_000_000)
    ap.add_argument('--only', choices=['days', 'big', 'files'], action='append',
                    help='run only these parts (repeatable)')
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    cb = os.path.join(build, 'tools', 'cassbackup')
    W = a.dir
    subprocess.run(['fusermount3', '-u', f'{W}/mnt'], capture_output=True)
    os.makedirs(W, exist_ok=True)
    for name in os.listdir(W):  # all but the file trees of earlier runs (see the_tree)
        if not name.startswith('tree-'):
            p = os.path.join(W, name)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    with open('/proc/loadavg') as f:
        print(f'load average at start: {" ".join(f.read().split()[:3])}; {os.cpu_count()} cores', flush=True)
    parts = a.only or ['days', 'big', 'files']
    res = {}
    t0 = time.perf_counter()
    if 'days' in parts:
        res['days'] = thirty_days(cb, W, a)
        report_days(res['days'])
    if 'big' in parts:
        res['big'] = big_file(build, cb, W, a)
    if 'files' in parts:
        res['files'] = million_files(build, cb, W, a)
    with open('/proc/loadavg') as f:
        print(f'load average at end: {" ".join(f.read().split()[:3])}; {time.perf_counter() - t0:.0f} s in all')
    with open(os.path.join(W, 'store-results.json'), 'w') as f:
        json.dump(res, f, indent=1)


if __name__ == '__main__':
    main()
