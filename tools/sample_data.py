#!/usr/bin/python3
"""Make a Cassandra-style data directory with a snapshot, for demos, tests and benchmarks.

    sample_data.py --out DIR [--data-dirs 2] [--keyspaces 2] [--tables 3] [--data-kib 512]
                   [--incompressible] [--tag nightly-1] [--seed 1] [--grow-percent 5]

Layout, as Cassandra 4.x/5.0 leaves it after `nodetool snapshot -t TAG`:

    DIR/data<i>/<ks>/<table>-<32 hex id>/nb-<gen>-big-<Component>          live sstables
    DIR/data<i>/<ks>/<table>-<id>/snapshots/<TAG>/...                      hard links + manifest.json,
                                                                           schema.cql
    .../snapshots/<TAG>/.<table>_idx/nb-<gen>-big-<Component>               a secondary index

Digest.crc32 holds the real CRC32 of Data.db and TOC.txt the real component list, so the files
pass the checks Cassandra and `cassbackup verify` make. Each table's sstables are spread over the
data directories (Cassandra's data_file_directories). For the exclusion rules, the tree also
holds what a backup must never take: live-only sstables, an older snapshot tag, a transaction
log and a tmp- file inside the snapshot. --grow-percent adds new sstables (as compaction and
flushes would) and takes the snapshot again under --tag, for second-day backups.
Uses only the Python standard library.
"""
import argparse
import hashlib
import json
import os
import random
import sys
import zlib

COMPONENTS = ['Data.db', 'Index.db', 'Summary.db', 'Filter.db', 'Statistics.db',
              'CompressionInfo.db', 'Digest.crc32', 'TOC.txt']


def table_id(ks, table):
    return hashlib.md5(f'{ks}.{table}'.encode()).hexdigest()


def compressible_block(rng, size):
    """Row-like text: repetitive structure, random values (zstd -3 gets about 2.2x). One draw
    of 128 random bits makes a line's fields."""
    words = (b'alpha', b'bravo', b'charlie', b'delta', b'echo', b'foxtrot', b'golf', b'hotel')
    lines = []
    n = 0
    while n < size:
        x = rng.getrandbits(128)
        line = b'%08d|%s|%s|%d|%016x\n' % (x % 10**8, words[(x >> 27) & 7], words[(x >> 30) & 7],
                                            (x >> 33) % 1000, x >> 64)
        lines.append(line)
        n += len(line)
    return b''.join(lines)[:size]


# A compressible Data.db cycles through this many distinct 1 MiB blocks of text: a cycle of
# 4 MiB is longer than zstd -3's 2 MiB window, so no compressor sees the repetition, and
# making them is most of this script's time.
TEXT_BLOCKS = 4


def write_data(path, size, incompressible, rng):
    """Writes size bytes; returns their CRC32. Cycles through TEXT_BLOCKS distinct 1 MiB
    blocks, each with its own random head, so the file is as compressible as one block and fast
    to make."""
    crc = 0
    blocks = []
    chunk = 1 << 20
    with open(path, 'wb') as f:
        left = size
        i = 0
        while left > 0:
            n = min(chunk, left)
            if incompressible:
                b = rng.randbytes(n)
            else:
                if len(blocks) < TEXT_BLOCKS:  # only the last chunk is short: no later one reuses it
                    blocks.append(compressible_block(rng, n))
                b = rng.randbytes(64) + blocks[i % len(blocks)][64:n] if n > 64 else rng.randbytes(n)
            f.write(b)
            crc = zlib.crc32(b, crc)
            left -= n
            i += 1
    return crc


def write_sstable(tdir, gen, data_bytes, incompressible, rng):
    names = []
    for comp in COMPONENTS:
        name = f'nb-{gen}-big-{comp}'
        p = os.path.join(tdir, name)
        if comp == 'Data.db':
            crc = write_data(p, data_bytes, incompressible, rng)
        elif comp == 'Digest.crc32':
            with open(p, 'w') as f:
                f.write(str(crc))
        elif comp == 'TOC.txt':
            with open(p, 'w') as f:
                f.write('\n'.join(COMPONENTS) + '\n')
        else:
            with open(p, 'wb') as f:
                f.write(rng.randbytes(rng.randrange(16, 4096)))
        names.append(name)
    return names


def schema(ks, table, tid):
    u = f'{tid[:8]}-{tid[8:12]}-{tid[12:16]}-{tid[16:20]}-{tid[20:]}'
    return (f'CREATE TABLE IF NOT EXISTS {ks}.{table} (\n    id uuid PRIMARY KEY,\n'
            f'    customer text,\n    total decimal\n) WITH ID = {u}\n'
            f"    AND compaction = {{'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy'}};\n")


def snapshot(tdir, tag, idx):
    """What `nodetool snapshot -t TAG` does for one table directory: hard links of every live
    sstable component (and of the index's), manifest.json and schema.cql."""
    sdir = os.path.join(tdir, 'snapshots', tag)
    os.makedirs(sdir, exist_ok=True)
    data = []
    for name in sorted(os.listdir(tdir)):
        p = os.path.join(tdir, name)
        if os.path.isfile(p) and '-big-' in name:
            q = os.path.join(sdir, name)
            if not os.path.exists(q):
                os.link(p, q)
            if name.endswith('-Data.db'):
                data.append(name)
    if idx and os.path.isdir(os.path.join(tdir, idx)):
        os.makedirs(os.path.join(sdir, idx), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(tdir, idx))):
            q = os.path.join(sdir, idx, name)
            if not os.path.exists(q):
                os.link(os.path.join(tdir, idx, name), q)
    return sdir, data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--data-dirs', type=int, default=2)
    ap.add_argument('--keyspaces', type=int, default=2)
    ap.add_argument('--tables', type=int, default=3, help='tables per keyspace')
    ap.add_argument('--sstables', type=int, default=2, help='sstables per table')
    ap.add_argument('--data-kib', type=int, default=512, help='size of each Data.db')
    ap.add_argument('--incompressible', action='store_true')
    ap.add_argument('--tag', default='nightly-1')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--grow-percent', type=float, default=0,
                    help='add this share of new sstables and snapshot again under --tag')
    ap.add_argument('--no-index', action='store_true')
    ap.add_argument('--no-clutter', action='store_true',
                    help='leave out live-only files, old tags, txn logs and tmp files')
    a = ap.parse_args(argv)

    rng = random.Random(a.seed)
    dirs = [os.path.join(a.out, f'data{i + 1}') for i in range(a.data_dirs)]
    ntables = nfiles = nbytes = 0
    for k in range(a.keyspaces):
        ks = f'shop{k}' if k else 'shop'
        for t in range(a.tables):
            table = 'orders' if t == 0 else f'table{t}'
            tid = table_id(ks, table)
            idx = None if a.no_index or t != 0 else f'.{table}_by_customer_idx'
            tdirs = [os.path.join(d, ks, f'{table}-{tid}') for d in dirs]
            for d in tdirs:
                os.makedirs(d, exist_ok=True)
            existing = sum(1 for d in tdirs for n in os.listdir(d) if n.endswith('-Data.db'))
            if a.grow_percent:
                new = max(1, round(existing * a.grow_percent / 100)) if existing else a.sstables
            else:
                new = a.sstables if existing == 0 else 0
            for g in range(existing + 1, existing + new + 1):
                d = tdirs[(g - 1) % len(tdirs)]
                write_sstable(d, g, a.data_kib * 1024, a.incompressible, rng)
                if idx:
                    os.makedirs(os.path.join(d, idx), exist_ok=True)
                    write_sstable(os.path.join(d, idx), g, 4096, False, rng)
            data_all = []
            for i, d in enumerate(tdirs):
                if not a.no_clutter and not a.grow_percent and i == 0:
                    # An older snapshot and a live-only sstable: never part of this backup.
                    snapshot(d, 'older-tag', idx)
                sdir, data = snapshot(d, a.tag, idx)
                data_all += data
                if not a.no_clutter and i == 0:
                    with open(os.path.join(sdir, f'nb_txn_compaction_{tid[:8]}.log'), 'w') as f:
                        f.write('ADD:[x,0,8][1]\n')
                    with open(os.path.join(sdir, 'tmp-nb-99-big-Data.db'), 'wb') as f:
                        f.write(b'partial')
            for i, d in enumerate(tdirs):
                sdir = os.path.join(d, 'snapshots', a.tag)
                if i == 0:
                    with open(os.path.join(sdir, 'manifest.json'), 'w') as f:
                        json.dump({'files': sorted(data_all), 'created_at': '2026-11-20T01:00:00.000Z',
                                   'expires_at': None}, f)
                    with open(os.path.join(sdir, 'schema.cql'), 'w') as f:
                        f.write(schema(ks, table, tid))
                for root, _, files in os.walk(sdir):
                    for n in files:
                        if not n.startswith('tmp-') and '_txn_' not in n:
                            nfiles += 1
                            nbytes += os.path.getsize(os.path.join(root, n))
            if not a.no_clutter and not a.grow_percent:
                write_sstable(tdirs[0], 900 + t, 1024, False, rng)  # flushed after the snapshot
            ntables += 1
    print(f'{ntables} tables, {nfiles} files, {nbytes} bytes in snapshot {a.tag} '
          f'under {", ".join(dirs)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
