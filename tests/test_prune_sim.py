"""30 simulated days of a changing node, then forget --keep-daily 7 --keep-weekly 4 --prune:
the store ends within 10% of a fresh store holding only the kept backups (issue 7).

Each day, compaction replaces ~20% of every table's sstables with one new sstable, and a flush
adds one more (tests/node_sim.py). Backup dates are set in the manifests (the commit records),
one day apart, then the catalog is rebuilt."""
import random
import shutil
import time

from conftest import backup_list, cb
from node_sim import DAY, a_day, date_backup, store_bytes


def backdate(store, days):
    """Backup dayN made N days after day0, 30 days ago; then the catalog is rebuilt."""
    start = time.time_ns() - days * DAY
    for d in range(days):
        date_backup(store, f'day{d}', start + d * DAY)
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
