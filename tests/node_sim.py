"""A simulated Cassandra node that changes from day to day, for tests/test_prune_sim.py and
bench/store_bench.py (which puts tests/ on sys.path to import it). Standard library only.

Each day, compaction replaces ~20% of every table's sstables with one new sstable, and a flush
adds one more; the day's snapshot is hard links, as nodetool snapshot makes them."""
import json
import os

DAY = 86400 * 10**9
COMPONENTS = ['Data.db', 'Index.db', 'Statistics.db', 'TOC.txt']


def tables(n):
    """n tables of keyspace shop: (keyspace, table, 32-hex id)."""
    return [('shop', f't{i}', f'{i:032x}') for i in range(n)]


def write_sstable(tdir, gen, rng, kib):
    """One sstable: Data.db of kib KiB, the other components 512 bytes, all random."""
    for comp in COMPONENTS:
        size = kib * 1024 if comp == 'Data.db' else 512
        with open(os.path.join(tdir, f'nb-{gen}-big-{comp}'), 'wb') as f:
            f.write(rng.randbytes(size))


def sstables(tdir):
    return sorted({int(n.split('-')[1]) for n in os.listdir(tdir) if n.startswith('nb-')})


def remove_sstable(tdir, gen):
    for comp in COMPONENTS:
        os.unlink(os.path.join(tdir, f'nb-{gen}-big-{comp}'))


def a_day(data, day, rng, table_list=tables(6), kib=48):
    """Compaction and a flush in every table, then a snapshot named day<N>. Day 0 writes five
    sstables of kib KiB per table; later days replace a fifth of them with one sstable of their
    count times kib KiB, and flush one of kib/3 KiB."""
    for ks, table, tid in table_list:
        tdir = os.path.join(data, ks, f'{table}-{tid}')
        os.makedirs(tdir, exist_ok=True)
        live = sstables(tdir)
        gen = max(live, default=0) + 1
        if day == 0:
            for _ in range(5):
                write_sstable(tdir, gen, rng, kib)
                gen += 1
        else:
            gone = rng.sample(live, max(1, len(live) // 5))
            for g in gone:
                remove_sstable(tdir, g)
            write_sstable(tdir, gen, rng, kib * len(gone))  # the compaction's output
            write_sstable(tdir, gen + 1, rng, max(1, kib // 3))  # a flush
        snap = os.path.join(tdir, 'snapshots', f'day{day}')
        os.makedirs(snap)
        for n in os.listdir(tdir):
            if n.startswith('nb-'):
                os.link(os.path.join(tdir, n), os.path.join(snap, n))


def snapshot_bytes(data, day, table_list=tables(6)):
    """Bytes of day<N>'s snapshot: what a tar of it holds (headers aside)."""
    total = 0
    for ks, table, tid in table_list:
        snap = os.path.join(data, ks, f'{table}-{tid}', 'snapshots', f'day{day}')
        total += sum(os.path.getsize(os.path.join(snap, n)) for n in os.listdir(snap))
    return total


def store_bytes(store):
    """Bytes of a local store's packs."""
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(store, 'packs'))
               for f in fs)


def date_backup(store, name, created_ns):
    """Sets backup NAME's date in its manifest (the commit record); the caller then rebuilds
    the catalog (cassbackup reindex), which reads dates from the manifests."""
    d = os.path.join(store, 'backups', name)
    [path] = [os.path.join(d, f) for f in os.listdir(d)] if os.path.isdir(d) else \
        [os.path.join(store, 'backups', f'{name}.json')]
    with open(path) as f:
        doc = json.load(f)
    doc['created_ns'] = created_ns
    doc.pop('manifest_sha256', None)  # it hashed the bytes before: as a manifest without it
    with open(path, 'w') as f:
        json.dump(doc, f)
