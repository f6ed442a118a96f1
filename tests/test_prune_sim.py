"""30 simulated days of a changing node, then forget --keep-daily 7 --keep-weekly 4 --prune:
the store ends within 10% of a fresh store holding only the kept backups (issue 7).

Each day, compaction replaces ~20% of every table's sstables with one new sstable, and a flush
adds one more; the day's snapshot is hard links, as nodetool snapshot makes them. Backup dates
are set in the manifests (the commit records), one day apart, then the catalog is rebuilt."""
import json
import os
import random
import shutil
import time

from conftest import backup_list, cb

DAY = 86400 * 10**9
TABLES = [('shop', f't{i}', f'{i:032x}') for i in range(6)]
COMPONENTS = ['Data.db', 'Index.db', 'Statistics.db', 'TOC.txt']


def write_sstable(tdir, gen, rng, kib):
    for comp in COMPONENTS:
        size = kib * 1024 if comp == 'Data.db' else 512
        with open(os.path.join(tdir, f'nb-{gen}-big-{comp}'), 'wb') as f:
            f.write(rng.randbytes(size))


def sstables(tdir):
    return sorted({int(n.split('-')[1]) for n in os.listdir(tdir) if n.startswith('nb-')})


def remove_sstable(tdir, gen):
    for comp in COMPONENTS:
        os.unlink(os.path.join(tdir, f'nb-{gen}-big-{comp}'))


def a_day(data, day, rng):
    """Compaction and a flush in every table, then a snapshot named day<N>."""
    for ks, table, tid in TABLES:
        tdir = os.path.join(data, ks, f'{table}-{tid}')
        os.makedirs(tdir, exist_ok=True)
        live = sstables(tdir)
        gen = max(live, default=0) + 1
        if day == 0:
            for _ in range(5):
                write_sstable(tdir, gen, rng, 48)
                gen += 1
        else:
            gone = rng.sample(live, max(1, len(live) // 5))
            for g in gone:
                remove_sstable(tdir, g)
            write_sstable(tdir, gen, rng, 48 * len(gone))  # the compaction's output
            write_sstable(tdir, gen + 1, rng, 16)          # a flush
        snap = os.path.join(tdir, 'snapshots', f'day{day}')
        os.makedirs(snap)
        for n in os.listdir(tdir):
            if n.startswith('nb-'):
                os.link(os.path.join(tdir, n), os.path.join(snap, n))


def store_bytes(store):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(store, 'packs'))
               for f in fs)


def backdate(store, days):
    """Backup dayN made N days after day0, 30 days ago; then the catalog is rebuilt."""
    start = time.time_ns() - days * DAY
    for d in range(days):
        path = os.path.join(store, 'backups', f'day{d}.json')
        with open(path) as f:
            doc = json.load(f)
        doc['created_ns'] = start + d * DAY
        with open(path, 'w') as f:
            json.dump(doc, f)
    cb('reindex', '--store', store)


def test_thirty_days_then_forget_and_prune(store, tmp_path):
    rng = random.Random(7)
    data = str(tmp_path / 'data')
    days = 30
    for d in range(days):
        a_day(data, d, rng)
        cb('create', '--store', store, '--name', f'day{d}', '--data-dir', data, '--snapshot', f'day{d}',
           '--node', 'n1', '--frame-kib', '128')
    backdate(store, days)
    before = store_bytes(store)
    cb('forget', '--store', store, '--keep-daily', '7', '--keep-weekly', '4', '--prune')
    kept = [b['name'] for b in backup_list(store)]
    assert 7 <= len(kept) <= 11, kept
    after = store_bytes(store)
    cb('check', '--store', store, '--read-data')

    fresh = str(tmp_path / 'fresh')
    cb('init', '--store', fresh)
    for name in sorted(kept, key=lambda n: int(n[3:])):
        cb('create', '--store', fresh, '--name', name, '--data-dir', data, '--snapshot', name,
           '--node', 'n1', '--frame-kib', '128')
    ideal = store_bytes(fresh)
    print(f'30 days: {before} bytes; after forget+prune {after}; fresh store of the {len(kept)} kept '
          f'backups {ideal} ({after / ideal:.3f}x)')
    assert after < before
    assert after <= ideal * 1.10, (after, ideal)
    shutil.rmtree(data)
