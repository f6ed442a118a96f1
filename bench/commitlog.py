#!/usr/bin/python3
"""Archive of one commitlog segment, as Cassandra's archive_command runs it, measured in one run
(bench/README.md). Not part of the tests.

    bench/commitlog.py [--build DIR] [--mib 32] [--runs 5] [--server moto|s3rver]

A segment of --mib MiB with Cassandra's header (tests/segment_sim.py) and a body of mutations'
worth of bytes (half random, half repetitive text: a commitlog compresses about 2:1) is
archived --runs times, each under a new segment id, page cache dropped before each when root:
  local: `cassbackup archive-commitlog` into a local store vs `cp %path DIR/%name`, the
         archive_command of Cassandra's own commitlog_archiving.properties example;
  S3:    `cassbackup archive-commitlog` into an S3 store on loopback vs `aws s3 cp`, what an
         operator on AWS would otherwise run.
Prints the medians, the ratios, and the budget: the time Cassandra takes to fill one segment
at 10 MB/s of writes (an archive must finish well inside it, one runs at a time).
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import MiB, REPO, drop_caches  # noqa: E402
from s3_bench import BUCKET, Server  # noqa: E402

sys.path.insert(1, os.path.join(REPO, 'tests'))
import segment_sim  # noqa: E402

T0 = 1796300000000  # a segment id: Cassandra's are the node's start time in ms, then +1 each


def segment_body(mib, rng):
    """The bytes after the header: mutations' worth, compressing about 2:1."""
    text = b'INSERT INTO shop.orders (id, customer, total) VALUES (%d, customer-%d, 42.00);\n'
    block = bytearray()
    while len(block) < MiB:
        block += rng.randbytes(4096)
        n = rng.randrange(1 << 30)
        while len(block) % 8192:
            block += (text % (n, n))[:8192 - len(block) % 8192]
    return bytes(block[:MiB]) * mib


def write(d, seg_id, body):
    """CommitLog-7-<seg_id>.log in d: its header, then body, cut to the segment's size."""
    path = os.path.join(d, f'CommitLog-7-{seg_id}.log')
    with open(path, 'wb') as f:
        f.write(segment_sim.segment(7, seg_id, body)[:len(body)])
    return path


def timed_run(argv, env=None):
    if os.geteuid() == 0:
        drop_caches()
    t = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    secs = time.monotonic() - t
    if p.returncode != 0:
        sys.exit(f'{" ".join(argv)}: exit {p.returncode}: {p.stderr.strip()}')
    return secs


def archive_argv(cb, store, path):
    """archive_command as Cassandra runs it: split on spaces, %path and %name substituted."""
    return [cb, 'archive-commitlog', '--store', store, '--node', 'bench', path, os.path.basename(path)]


def compare(name, ours, theirs, theirs_name, budget):
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f'{name}: archive-commitlog {o:.3f} s (runs {", ".join(f"{x:.2f}" for x in ours)}), '
          f'{theirs_name} {t:.3f} s; ratio {o / t:.2f}; {o / budget * 100:.0f}% of the '
          f'{budget:.2f} s a segment takes to fill at 10 MB/s')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=os.path.join(REPO, 'build-release'))
    ap.add_argument('--mib', type=int, default=32)
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--server', choices=('moto', 's3rver'), default='moto')
    a = ap.parse_args()
    cb = os.path.join(a.build, 'tools', 'cassbackup')
    data = segment_body(a.mib, random.Random(1))
    budget = a.mib * MiB / 10e6
    work = tempfile.mkdtemp(prefix='cb-bench-commitlog-')
    try:
        segs = os.path.join(work, 'commitlog')
        os.makedirs(segs)
        store, plain = os.path.join(work, 'store'), os.path.join(work, 'plain')
        os.makedirs(plain)
        subprocess.run([cb, 'init', '--store', store], check=True, capture_output=True)
        ours, cps = [], []
        for i in range(a.runs):  # interleaved, so both see the same load
            path = write(segs, T0 + i, data)
            ours.append(timed_run(archive_argv(cb, store, path)))
            cps.append(timed_run(['cp', path, os.path.join(plain, os.path.basename(path))]))
        compare('local store', ours, cps, 'cp', budget)

        srv = Server(a.server, work)
        try:
            srv.wait_ready()
            env = srv.cb_env(os.path.join(work, 'cache'))
            s3 = f's3://{BUCKET}/cb'
            subprocess.run([cb, 'init', '--store', s3], check=True, capture_output=True, env=env)
            aws = shutil.which('aws')
            ours, awss = [], []
            for i in range(a.runs):
                path = write(segs, T0 + 100 + i, data)
                ours.append(timed_run(archive_argv(cb, s3, path), env))
                if aws:
                    awss.append(timed_run([aws, '--endpoint-url', env['AWS_ENDPOINT_URL'], 's3',
                                           'cp', '--quiet', path,
                                           f's3://{BUCKET}/plain/{os.path.basename(path)}'], env))
            if awss:
                compare(f'S3 ({a.server})', ours, awss, 'aws s3 cp', budget)
            else:
                print(f'S3 ({a.server}): archive-commitlog {statistics.median(ours):.3f} s; aws '
                      f'(awscli) is not installed: no comparison')
        finally:
            srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
