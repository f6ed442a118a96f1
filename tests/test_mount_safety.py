"""The mount and the catalog's readers facing a damaged or hostile store, and the mount's own
hygiene: reads at the end, negative entries, log lines that name the file, memory."""
import errno
import json
import os
import re
import sqlite3
import subprocess

import pytest

from conftest import (rewrite_manifest, manifest_path, CASSBACKUP, Mount, backup_list, cb, data_dir_args, make_sample, mounted,
                      packs, read, sample_dirs, snapshot_tables)


def small_sample(tmp_path, name, seed, kib='64'):
    return make_sample(str(tmp_path / name), '--data-kib', kib, '--data-dirs', '1', '--keyspaces',
                       '1', '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter',
                       '--seed', str(seed))


@pytest.fixture
def two(store, tmp_path):
    """A store with backups 'a' and 'b' of different data (shop.orders each)."""
    a, b = small_sample(tmp_path, 'a', 21), small_sample(tmp_path, 'b', 22)
    cb('create', '--store', store, '--name', 'a', *data_dir_args(sample_dirs(a)), '--snapshot', 'nightly-1')
    cb('create', '--store', store, '--name', 'b', *data_dir_args(sample_dirs(b)), '--snapshot', 'nightly-1')
    return store, snapshot_tables(sample_dirs(a), 'nightly-1'), snapshot_tables(sample_dirs(b), 'nightly-1')


def sql(store, query, *args):
    with sqlite3.connect(os.path.join(store, 'catalog.db')) as c:
        rows = c.execute(query, args).fetchall()
    return rows


def backup_id(store, name):
    return sql(store, 'SELECT id FROM backups WHERE name = ?', name)[0][0]


# --- defect 7: reads at the end, and one meaning per error code -------------------------------

def test_read_at_or_past_the_end_gives_no_bytes_and_logs_nothing(two, tmp_path):
    store, want_a, _ = two
    with mounted(store, str(tmp_path / 'mnt')) as m:   # any daemon output fails the test
        for rel, src in want_a[('shop', 'orders')].items():
            size = os.path.getsize(src)
            fd = os.open(m.path('a', 'shop', 'orders', rel), os.O_RDONLY)
            try:
                assert os.pread(fd, 4096, size) == b''
                assert os.pread(fd, 4096, size + 123456789) == b''
                assert os.pread(fd, size + 4096, 0) == read(src)
            finally:
                os.close(fd)


def test_file_beyond_the_end_of_its_pack_is_not_called_a_bad_seek_table(two, tmp_path):
    """The catalog puts a file's bytes past the end of its pack's stream: EIO, and the log says
    so (before: -EINVAL, logged as "pack has no valid seek table"). Since the open binds the
    catalog's location to the pack's own index, it is refused there, as a location the pack does
    not hold."""
    store, want_a, want_b = two
    fid, blob = sql(store, "SELECT f.id, f.blob_id FROM files f JOIN backups b ON b.id = f.backup_id"
                    " WHERE b.name = 'a' AND f.name LIKE '%Data.db'")[0]
    sql(store, 'UPDATE blobs SET offset = ? WHERE id = ?', 1 << 40, blob)
    with mounted(store, str(tmp_path / 'mnt'), expect_errors=("that pack's index has no such blob",)) as m:
        with pytest.raises(OSError) as e:
            read(m.path('a', 'shop', 'orders', 'nb-1-big-Data.db'))
        assert e.value.errno == errno.EIO
        for rel, src in want_b[('shop', 'orders')].items():
            assert read(m.path('b', 'shop', 'orders', rel)) == read(src)
        log = m.log()
    assert 'seek table' not in log
    assert 'backups/a/shop/orders/nb-1-big-Data.db' in log


# --- defect 14: the daemon's line names the file and the pack ---------------------------------

def test_damaged_or_missing_pack_is_logged_by_backup_keyspace_table_file(two, tmp_path):
    store, _, _ = two
    pack_a = os.path.join(store, sql(store, "SELECT p.path FROM files f JOIN blobs bl ON bl.id ="
                                     " f.blob_id JOIN packs p ON p.id = bl.pack_id JOIN backups b"
                                     " ON b.id = f.backup_id WHERE b.name = 'a' LIMIT 1")[0][0])
    with open(pack_a, 'r+b') as f:   # cut off the seek table
        f.truncate(os.path.getsize(pack_a) - 5)
    key = os.path.relpath(pack_a, store)
    # a pack of another size than the one indexed is no longer taken for it: read again, and
    # its damage named
    with mounted(store, str(tmp_path / 'mnt'), expect_errors=('damaged trailer or seek table',)) as m:
        with pytest.raises(OSError):
            read(m.path('a', 'shop', 'orders', 'nb-1-big-Data.db'))
        line = [l for l in m.log().splitlines() if 'nb-1-big-Data.db' in l][0]
    assert (f'cannot read backups/a/shop/orders/nb-1-big-Data.db: {store}: its bytes are in no pack the '
            f'catalog knows: 1 pack of the store could not be read ({key}: damaged trailer or seek table') in line
    assert 'inode' not in line

    os.rename(pack_a, pack_a + '.away')
    with mounted(store, str(tmp_path / 'mnt2'), expect_errors=('pack file is missing',)) as m:
        with pytest.raises(OSError):
            read(m.path('a', 'shop', 'orders', 'nb-1-big-Data.db'))
        line = [l for l in m.log().splitlines() if 'nb-1-big-Data.db' in l][0]
    # format 2: the pack is gone from the store, so from the catalog too: no pack holds the bytes
    assert f'cannot read backups/a/shop/orders/nb-1-big-Data.db: {store}: no pack in the store holds its bytes (pack file is missing)' in line


# --- defect 15: names and sizes read from the catalog -----------------------------------------

@pytest.mark.parametrize('bad', ['x/../y', '..', '.', ''])
def test_backup_with_a_bad_name_hides_only_itself(two, tmp_path, bad):
    """In store format 2 a backup's name comes from its manifest: one naming itself badly is
    refused where it is read, and hides only itself."""
    store, _, want_b = two
    path = manifest_path(store, 'a')
    with open(path) as f:
        doc = json.load(f)
    doc['name'] = bad
    rewrite_manifest(path, doc)
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert os.listdir(m.path()) == ['b']
        for rel, src in want_b[('shop', 'orders')].items():
            assert read(m.path('b', 'shop', 'orders', rel)) == read(src)
        assert not os.path.exists(m.path('y'))


@pytest.mark.parametrize('bad', ['x/../y', '..', '.', ''])
def test_catalog_row_with_a_bad_backup_name_is_healed_from_the_store(two, tmp_path, bad):
    """The catalog is a cache: a backup row renamed in it is dropped and the backup taken in
    again from its manifest when the store is opened."""
    store, want_a, _ = two
    sql(store, 'UPDATE backups SET name = ? WHERE name = ?', bad, 'a')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert sorted(os.listdir(m.path())) == ['a', 'b']
        for rel, src in want_a[('shop', 'orders')].items():
            assert read(m.path('a', 'shop', 'orders', rel)) == read(src)


def test_bad_rows_below_a_backup_hide_only_themselves(two, tmp_path):
    store, want_a, want_b = two
    bid = backup_id(store, 'b')
    sql(store, "UPDATE keyspaces SET name = '../escape_ks' WHERE backup_id = ?", bid)
    aid = backup_id(store, 'a')
    sql(store, "UPDATE files SET name = '../../x' WHERE backup_id = ? AND name LIKE '%Index.db'", aid)
    sql(store, "UPDATE files SET size = ? WHERE backup_id = ? AND name LIKE '%Data.db'",
        (1 << 62) + 5, aid)
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert sorted(os.listdir(m.path())) == ['a', 'b']
        assert os.listdir(m.path('b')) == []
        shown = sorted(os.listdir(m.path('a', 'shop', 'orders')))
        want = sorted(r for r in want_a[('shop', 'orders')]
                      if not r.endswith('Index.db') and not r.endswith('Data.db'))
        assert shown == want
        for rel in want:
            assert read(m.path('a', 'shop', 'orders', rel)) == read(want_a[('shop', 'orders')][rel])
        assert not os.path.exists(m.path('a', 'shop', 'orders', 'nb-1-big-Data.db'))


def test_list_survives_a_size_near_2_62(two):
    store, _, _ = two
    aid = backup_id(store, 'a')
    # a's blobs are its own (different data from b's), so they make up its unique bytes
    sql(store, 'UPDATE blobs SET size = ? WHERE id IN (SELECT blob_id FROM files WHERE backup_id = ?)',
        (1 << 62) + 5, aid)
    sql(store, 'UPDATE backups SET bytes = ? WHERE id = ?', (1 << 62) + 7, aid)
    p = cb('list', '--store', store, '--json', check=False)
    assert p.returncode == 0, p.stderr
    import json
    assert [b['name'] for b in json.loads(p.stdout)] == ['b']
    assert f'catalog row {aid}: size out of range, not listed' in p.stderr


def test_verify_reports_a_bad_keyspace_row_instead_of_skipping_it(two):
    store, _, _ = two
    bid = backup_id(store, 'b')
    ks = sql(store, 'SELECT id FROM keyspaces WHERE backup_id = ?', bid)[0][0]
    sql(store, "UPDATE keyspaces SET name = '../escape_ks' WHERE id = ?", ks)
    p = cb('verify', '--store', store, 'b', check=False)
    assert p.returncode != 0
    assert f'catalog row {ks}: invalid keyspace name' in p.stderr
    assert cb('verify', '--store', store, 'a', check=False).returncode == 0


# --- structure: negative entries in directories that cannot change ----------------------------

def lookups(log):
    return len(re.findall(r'opcode: LOOKUP', log))


def test_missing_names_in_immutable_directories_are_cached_as_negative_entries(two, tmp_path):
    store, _, _ = two
    with mounted(store, str(tmp_path / 'mnt'), opts=('-d',), expect_errors=('',)) as m:
        table = m.path('a', 'shop', 'orders')
        os.listdir(table)
        before = lookups(m.log())
        for _ in range(3):
            assert not os.path.exists(os.path.join(table, 'no-such-file'))
        assert lookups(m.log()) == before + 1   # asked once, then answered by the kernel
        # /backups gains entries: a missing name there is asked for every time
        before = lookups(m.log())
        for _ in range(3):
            assert not os.path.exists(m.path('no-such-backup'))
        assert lookups(m.log()) == before + 3


# --- defect 20: memory under concurrent readers and creates ------------------------------------

def test_concurrent_readers_and_creates_leave_nothing_behind(two, tmp_path):
    """16 readers (dropping the pages they read, so every read reaches the daemon) while backups
    are created. Not a leak: the daemon exits clean, which under LeakSanitizer (the sanitize
    build) means every frame, catalog connection and decompression context was freed. The
    growth seen before was the allocator's (bench/mount_rss.py measures it)."""
    import threading
    store, _, _ = two
    src = small_sample(tmp_path, 'c', 23, kib='512')
    errors = []

    def reader(m, i):
        for _ in range(6):
            for name in sorted(os.listdir(m.path())):
                t = m.path(name, 'shop', 'orders')
                for f in sorted(os.listdir(t)):
                    try:
                        fd = os.open(os.path.join(t, f), os.O_RDONLY)
                        while os.read(fd, 1 << 17):
                            pass
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        os.close(fd)
                    except OSError as e:
                        errors.append(e)

    with mounted(store, str(tmp_path / 'mnt'), opts=('-o', 'cache_size=2,threads=8')) as m:
        threads = [threading.Thread(target=reader, args=(m, i)) for i in range(16)]
        for t in threads:
            t.start()
        for i in range(4):
            cb('create', '--store', store, '--name', f'c{i}', *data_dir_args(sample_dirs(src)),
               '--snapshot', 'nightly-1', '--threads', '1')
        for t in threads:
            t.join()
        assert errors == []
        assert len(os.listdir(m.path())) == 6


FUSECTL = '/sys/fs/fuse/connections'


def fuse_connections():
    """The fusectl directory, mounted here when it is not yet (it is root's to mount)."""
    if not os.path.ismount(FUSECTL):
        p = subprocess.run(['mount', '-t', 'fusectl', 'none', FUSECTL], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f'cannot mount fusectl on {FUSECTL}: {p.stderr.strip()}')
    return FUSECTL


def test_files_open_when_the_connection_is_aborted_are_freed(two, tmp_path):
    """The kernel sends no RELEASE (RELEASEDIR) for a file (directory) still open when the
    connection goes away (an abort, an unmount racing a close): the daemon frees them as it
    ends. Under AddressSanitizer the daemon reported each as a leak and exited 1 (seen in CI:
    a close racing the unmount, then a directory listing under 16 concurrent readers)."""
    store, a, _ = two
    conns = fuse_connections()
    mnt = str(tmp_path / 'mnt')
    m = Mount(store, mnt)
    dirs = []
    try:
        files = [open(m.path('a', 'shop', 'orders', rel), 'rb') for rel in sorted(a[('shop', 'orders')])[:3]]
        for f in files:
            f.read(1)
        for d in (m.path(), m.path('a'), m.path('a', 'shop', 'orders')):
            dirs.append(os.open(d, os.O_RDONLY | os.O_DIRECTORY))
            assert os.listdir(dirs[-1])
        with open(os.path.join(conns, str(os.minor(os.stat(mnt).st_dev)), 'abort'), 'w') as ab:
            ab.write('1')
        rc = m.proc.wait(30)
        log = m.log()
        assert 'LeakSanitizer' not in log, log
        assert rc == 0, log
        for f in files:
            try:
                f.close()
            except OSError:
                pass  # the connection is gone
    finally:
        for d in dirs:
            try:
                os.close(d)
            except OSError:
                pass
        m.kill()
