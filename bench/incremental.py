#!/usr/bin/python3
"""Incremental backup of 1,000 new small sstables vs a full backup of the same node, measured
in this one run (bench/README.md). Not part of the tests.

    bench/incremental.py [--build DIR] [--tables 20] [--sstables 100] [--new 1000] [--kib 48]

A node of --tables tables with --sstables sstables each (4 components, Data.db of --kib KiB,
random bytes: tests/node_sim.py) is backed up in full. Then --new small sstables (Data.db of
4 KiB) are flushed, spread over the tables, each hard-linked into <table>/backups/ as Cassandra
does with incremental_backups: true. Measured on that state, page cache dropped before each
when root: `create --incremental` (takes in the new sstables, removes their links) against
`nodetool snapshot` (hard links, as a stand-in does) + `create --snapshot` of the whole node,
the full backup an operator would otherwise run. Prints both times, files, bytes stored and
the ratio incremental / full.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests'))
import node_sim  # noqa: E402


def drop_caches():
    if os.geteuid() == 0:
        subprocess.run(['sync'])
        with open('/proc/sys/vm/drop_caches', 'w') as f:
            f.write('3\n')


def run(cb, *args):
    t0 = time.monotonic()
    p = subprocess.run([cb, *args], capture_output=True, text=True)
    secs = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f'cassbackup {" ".join(args)} exited {p.returncode}: {p.stderr.strip()}')
    return secs, p.stdout


def sstable(tdir, gen, rng, kib):
    """node_sim's sstable, with the TOC.txt Cassandra writes (its components, one a line)."""
    node_sim.write_sstable(tdir, gen, rng, kib)
    with open(os.path.join(tdir, f'nb-{gen}-big-TOC.txt'), 'w') as f:
        f.write('\n'.join(node_sim.COMPONENTS) + '\n')


def snapshot(data, tag):
    """What nodetool snapshot -t tag does to the sstables: hard links in snapshots/tag."""
    for ks in os.listdir(data):
        for t in os.listdir(os.path.join(data, ks)):
            tdir = os.path.join(data, ks, t)
            snap = os.path.join(tdir, 'snapshots', tag)
            os.makedirs(snap)
            for n in os.listdir(tdir):
                if n.startswith('nb-'):
                    os.link(os.path.join(tdir, n), os.path.join(snap, n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=os.path.join(REPO, 'build-release'))
    ap.add_argument('--tables', type=int, default=20)
    ap.add_argument('--sstables', type=int, default=100, help='per table, before the flushes')
    ap.add_argument('--new', type=int, default=1000, help='new small sstables flushed')
    ap.add_argument('--kib', type=int, default=48, help="an old sstable's Data.db")
    ap.add_argument('--dir', default=None)
    a = ap.parse_args()
    cb = os.path.join(a.build, 'tools', 'cassbackup')
    work = a.dir or tempfile.mkdtemp(prefix='cassbackup-incr-')
    data, store, conf = (os.path.join(work, d) for d in ('data', 'store', 'conf'))
    os.makedirs(conf)
    with open(os.path.join(conf, 'cassandra.yaml'), 'w') as f:
        f.write('cluster_name: bench\nincremental_backups: true\n')
    rng = random.Random(1)
    tables = node_sim.tables(a.tables)
    dirs = []
    for ks, table, tid in tables:
        tdir = os.path.join(data, ks, f'{table}-{tid}')
        os.makedirs(os.path.join(tdir, 'backups'))
        dirs.append(tdir)
        for g in range(1, a.sstables + 1):
            sstable(tdir, g, rng, a.kib)
    common = ['--store', store, '--data-dir', data, '--node', 'n1', '--cassandra-conf', conf]
    run(cb, 'init', '--store', store)
    snapshot(data, 'base')
    run(cb, 'create', *common, '--snapshot', 'base', '--name', 'base')
    for i in range(a.new):  # the flushes
        tdir = dirs[i % len(dirs)]
        gen = a.sstables + 1 + i // len(dirs)
        sstable(tdir, gen, rng, 4)
        for comp in node_sim.COMPONENTS:
            n = f'nb-{gen}-big-{comp}'
            os.link(os.path.join(tdir, n), os.path.join(tdir, 'backups', n))
    live = sum(len([n for n in os.listdir(d) if n.startswith('nb-')]) for d in dirs)

    drop_caches()
    inc_secs, inc_out = run(cb, 'create', *common, '--incremental', '--name', 'incr')
    # the same state again in backups/ is gone now: the full backup sees the same sstables
    drop_caches()
    t0 = time.monotonic()
    snapshot(data, 'full')
    snap_secs = time.monotonic() - t0
    full_secs, full_out = run(cb, 'create', *common, '--snapshot', 'full', '--name', 'full')
    full_total = snap_secs + full_secs
    left = sum(len(os.listdir(os.path.join(d, 'backups'))) for d in dirs)

    print(f'node: {a.tables} tables, {live} files live; {a.new} new sstables '
          f'({a.new * len(node_sim.COMPONENTS)} files) in backups/')
    print('incremental: ' + inc_out.strip().replace('\n', '\n             '))
    print('full:        ' + full_out.strip())
    print(f'| create --incremental ({a.new} new sstables) | {inc_secs:.2f} s |')
    print(f'| snapshot + create (full, same node) | {full_total:.2f} s ({snap_secs:.2f} + {full_secs:.2f}) |')
    print(f'| ratio incremental / full | {inc_secs / full_total:.3f} |')
    print(f'| links left in backups/ | {left} |')
    if not a.dir:
        shutil.rmtree(work)


if __name__ == '__main__':
    main()
