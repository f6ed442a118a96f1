#!/usr/bin/python3
"""mount.cassbackup's memory under load: N concurrent readers plus a stream of creates.

    sudo /usr/bin/python3 bench/mount_rss.py --build build --seconds 60 --readers 16

Prints the daemon's RSS (anonymous / file / shmem) every --every seconds, then, when gdb is
installed, glibc's malloc_stats() of the daemon (arenas, in use vs. held). Readers drop each
file's pages after reading it (POSIX_FADV_DONTNEED), so every read reaches the daemon. Not part
of the test suite: it measures, it asserts nothing.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def status(pid):
    res = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            k, _, v = line.partition(':')
            if k in ('VmRSS', 'RssAnon', 'RssFile', 'RssShmem', 'Threads'):
                res[k] = int(v.split()[0])
    return res


def reader(mnt, stop, counts, i):
    rnd = random.Random(i)
    while not stop.is_set():
        try:
            names = os.listdir(os.path.join(mnt, 'backups'))
            b = os.path.join(mnt, 'backups', rnd.choice(names))
            ks = os.path.join(b, rnd.choice(os.listdir(b)))
            t = os.path.join(ks, rnd.choice(os.listdir(ks)))
            files = [n for n in os.listdir(t) if n.endswith('Data.db')]
            p = os.path.join(t, rnd.choice(files))
            fd = os.open(p, os.O_RDONLY)
            try:
                while os.read(fd, 1 << 17):
                    counts[i] += 1 << 17
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        except OSError as e:
            print(f'reader {i}: {e}', file=sys.stderr)
            time.sleep(0.1)


def creator(cb, store, data, stop, made):
    n = 0
    while not stop.is_set():
        n += 1
        subprocess.run([cb, 'create', '--store', store, '--name', f'c{n:05d}', '--data-dir', data,
                        '--snapshot', 'nightly-1', '--threads', '1'], check=True,
                       capture_output=True)
        made[0] = n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default=os.path.join(REPO, 'build'))
    ap.add_argument('--dir', default='/var/tmp/cassbackup-rss')
    ap.add_argument('--seconds', type=int, default=60)
    ap.add_argument('--every', type=int, default=5)
    ap.add_argument('--readers', type=int, default=16)
    ap.add_argument('--mount-opts', default='')
    a = ap.parse_args()
    cb = os.path.join(a.build, 'tools', 'cassbackup')
    mount = os.path.join(a.build, 'fs', 'mount.cassbackup')
    shutil.rmtree(a.dir, ignore_errors=True)
    os.makedirs(a.dir)
    sample, store, mnt = (os.path.join(a.dir, x) for x in ('sample', 'store', 'mnt'))
    os.makedirs(mnt)
    subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'sample_data.py'), '--out', sample,
                    '--data-dirs', '1', '--keyspaces', '2', '--tables', '3', '--sstables', '4',
                    '--data-kib', '1024', '--incompressible', '--no-clutter', '--seed', '7'],
                   check=True, capture_output=True)
    data = os.path.join(sample, 'data1')
    subprocess.run([cb, 'init', '--store', store], check=True, capture_output=True)
    subprocess.run([cb, 'create', '--store', store, '--name', 'c00000', '--data-dir', data,
                    '--snapshot', 'nightly-1'], check=True, capture_output=True)
    opts = ['-o', a.mount_opts] if a.mount_opts else []
    log = open(os.path.join(a.dir, 'mount.log'), 'w')
    proc = subprocess.Popen([mount, store, mnt, '-f', *opts], stdout=log, stderr=subprocess.STDOUT)
    while not os.path.ismount(mnt):
        assert proc.poll() is None, 'mount.cassbackup exited'
        time.sleep(0.05)
    stop = threading.Event()
    counts = [0] * a.readers
    made = [0]
    threads = [threading.Thread(target=reader, args=(mnt, stop, counts, i)) for i in range(a.readers)]
    threads.append(threading.Thread(target=creator, args=(cb, store, data, stop, made)))
    for t in threads:
        t.start()
    t0 = time.monotonic()
    print(f'{"s":>4} {"RSS MiB":>8} {"anon":>6} {"file":>6} {"shmem":>6} {"thr":>4} {"read MiB":>9} {"backups":>8}')
    peak = 0
    try:
        while time.monotonic() - t0 < a.seconds:
            time.sleep(a.every)
            s = status(proc.pid)
            peak = max(peak, s['VmRSS'])
            print(f'{time.monotonic() - t0:4.0f} {s["VmRSS"] / 1024:8.1f} {s["RssAnon"] / 1024:6.1f} '
                  f'{s["RssFile"] / 1024:6.1f} {s["RssShmem"] / 1024:6.1f} {s["Threads"]:4d} '
                  f'{sum(counts) / 2**20:9.0f} {made[0] + 1:8d}', flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f'peak RSS {peak / 1024:.1f} MiB')
    if shutil.which('gdb'):
        subprocess.run(['gdb', '-p', str(proc.pid), '-batch', '-ex', 'call (void)malloc_stats()'],
                       capture_output=True)
    subprocess.run(['fusermount3', '-u', mnt], check=True)
    proc.wait(30)
    log.close()
    with open(os.path.join(a.dir, 'mount.log')) as f:
        out = f.read()
    if out:
        print(out, end='')
    return proc.returncode


if __name__ == '__main__':
    sys.exit(main())
