"""The store is the truth, the catalog a cache: what readers do when the catalog is rebuilt,
stale, damaged or planted while they run, and the mount as fstab runs it (daemonized).

Each test here failed before the repository object (issue 13): a reindex under a running mount
made six readers get other files' bytes; a daemonized mount lost its catalog to the next
create; a catalog row pointing at another blob made restore write another file's bytes."""
import contextlib
import errno
import json
import os
import random
import re
import shutil
import signal
import stat
import sqlite3
import subprocess
import tarfile
import tempfile
import threading
import time

import pytest

from conftest import (CASSBACKUP, MOUNT, Mount, backup_list, cb, data_dir_args, make_sample,
                      manifest_path, mounted, preload, read, rewrite_manifest, run, sample_dirs,
                      snapshot_tables)
from s3proxy import S3Proxy
from test_s3 import moto, s3_env, s3rver


def sample(tmp_path, name, seed, kib='1024'):
    return make_sample(str(tmp_path / name), '--data-kib', kib, '--data-dirs', '1', '--keyspaces',
                       '2', '--tables', '2', '--seed', str(seed), '--no-clutter')


def backup(store, tmp_path, name, seed, kib='1024'):
    """Backs up a sample of its own (seed: other bytes than any other backup's) as name; its
    files as {path below /backups: source path}."""
    dirs = sample_dirs(sample(tmp_path, f'src-{name}', seed, kib))
    cb('create', '--store', store, '--name', name, *data_dir_args(dirs), '--snapshot', 'nightly-1')
    files = {}
    for (ks, table), rels in snapshot_tables(dirs, 'nightly-1').items():
        for rel, src in rels.items():
            files[os.path.join(name, ks, table, rel)] = src
    return files


def sql(store, query, *args):
    with sqlite3.connect(os.path.join(store, 'catalog.db')) as c:
        return c.execute(query, args).fetchall()


def read_uncached(path):
    """The file's bytes as the mount serves them now: its pages are dropped after the read, so
    the next read asks the mount again rather than the page cache (which keeps bytes served
    before, right or wrong, for as long as it likes)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return b''.join(chunks)
    finally:
        os.close(fd)


class Readers:
    """n threads reading every file of `files` through the mount, again and again, comparing
    each with its source: a wrong byte is recorded, so is any error."""

    def __init__(self, m, files, n=6):
        self.m, self.files = m, {p: read(src) for p, src in files.items()}
        self.stop, self.wrong, self.errors, self.reads = threading.Event(), [], [], 0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(n)]

    def more(self, n):
        """n more readers: the mount starts worker threads for them, which open their catalog
        connections now, after whatever happened to the catalog."""
        for i in range(n):
            t = threading.Thread(target=self.run, args=(len(self.threads),))
            self.threads.append(t)
            t.start()

    def run(self, i):
        paths = sorted(self.files)
        k = i
        while not self.stop.is_set():
            p = paths[k % len(paths)]
            k += 7
            try:
                got = read_uncached(self.m.path(p))
            except OSError as e:
                self.errors.append((p, e.errno))
                continue
            self.reads += 1
            if got != self.files[p]:
                self.wrong.append(p)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def wait_reads(self, n):
        """Until n more reads were done (the readers make progress), at most 120 s."""
        want, deadline = self.reads + n, time.monotonic() + 120
        while self.reads < want and not self.wrong:
            assert time.monotonic() < deadline, 'the readers made no progress'
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()


def test_reindex_forget_prune_and_create_under_a_mount_with_32_threads(store, tmp_path):
    """Readers through a mount of 32 worker threads while the catalog is rebuilt three times, a
    backup is forgotten and pruned, another created: every byte read is right, and no read of a
    backup that stays fails. The backups are made in the reverse of their names' order, so a
    catalog rebuilt from the store (which takes backups in by name) numbers them otherwise, and
    more readers join after each rebuild, so worker threads the mount starts then open their
    connection to the rebuilt catalog."""
    keep = {**backup(store, tmp_path, 'z', 1), **backup(store, tmp_path, 'y', 2)}
    backup(store, tmp_path, 'x', 3)
    with mounted(store, str(tmp_path / 'mnt'), ('-o', 'threads=32')) as m:
        with Readers(m, keep, n=4) as r:
            r.wait_reads(200)
            for _ in range(3):
                cb('reindex', '--store', store)
                r.more(4)
                r.wait_reads(200)
            cb('forget', '--store', store, 'x')
            cb('prune', '--store', store, '--max-unused', '0')
            r.wait_reads(100)
            new = backup(store, tmp_path, 'd', 4)
            cb('reindex', '--store', store)
            r.more(8)
            r.wait_reads(300)
        assert r.wrong == [], f'{len(r.wrong)} reads gave another file\'s bytes: {r.wrong[:5]}'
        assert r.errors == [], f'{len(r.errors)} reads failed: {r.errors[:5]}'
        deadline = time.monotonic() + 30
        while 'd' not in os.listdir(m.path()):
            assert time.monotonic() < deadline, 'backup d did not appear'
            time.sleep(0.1)
        assert 'x' not in os.listdir(m.path())
        for p, src in new.items():
            assert read(m.path(p)) == read(src)


def open_table_dirs(m, files):
    """{table directory below /backups: an open fd of it} for the tables of files, as a
    reader holds them (a working directory, rsync's sender, find, an openat walk)."""
    dirs = {os.path.dirname(p) for p in files if os.path.basename(os.path.dirname(p)) != '.'}
    return {d: os.open(m.path(d), os.O_RDONLY | os.O_DIRECTORY) for d in sorted(dirs)}


def read_at(dfd, name):
    fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
    try:
        return os.read(fd, os.fstat(fd).st_size + 1)
    finally:
        os.close(fd)


def test_a_walk_from_inside_a_backup_goes_on_after_reindex(store, tmp_path):
    """reindex rebuilds the catalog under a running mount, taking the backups in by name (b
    first, made last). A reader walking from inside a backup (an open directory: rsync's
    sender, a working directory after cd) still opens every file there, with the same inode
    number and its own bytes. The kernel cannot look such a walk up again from the root, and
    it failed with ESTALE: the rebuild had given every node a new number."""
    files = {**backup(store, tmp_path, 'c', 31, kib='64'), **backup(store, tmp_path, 'b', 32, kib='64')}
    files = {p: src for p, src in files.items() if os.path.dirname(p).count('/') == 2}
    with mounted(store, str(tmp_path / 'mnt')) as m:
        dirs = open_table_dirs(m, files)
        try:
            inos = {p: os.stat(os.path.basename(p), dir_fd=dirs[os.path.dirname(p)]).st_ino
                    for p in files}
            for _ in range(2):
                cb('reindex', '--store', store)
                for p, src in files.items():
                    dfd = dirs[os.path.dirname(p)]
                    assert read_at(dfd, os.path.basename(p)) == read(src), p
                    assert os.stat(os.path.basename(p), dir_fd=dfd).st_ino == inos[p], p
        finally:
            for fd in dirs.values():
                os.close(fd)


class TwoHosts:
    """An encrypted local store (its catalog a cache per host: CASSBACKUP_CACHE_DIR) whose
    backup b1 of node n1 hosts make and make again: create(tag, host) writes gens Data.db files
    of random bytes into snapshot tag (content[tag, gen]) and backs them up as b1."""

    def __init__(self, tmp_path, gens=(1,)):
        self.tmp, self.gens = tmp_path, gens
        self.table = tmp_path / 'data' / 'ks' / 't-0123456789abcdef0123456789abcdef'
        self.loc, self.key = str(tmp_path / 'store'), tmp_path / 'key'
        self.key.write_text(os.urandom(32).hex() + '\n')
        self.key.chmod(0o600)
        self.content = {}
        cb('init', '--store', self.loc, '--encrypt', '--key-file', str(self.key))

    def at(self, host):
        return dict(os.environ, CASSBACKUP_CACHE_DIR=str(self.tmp / host))

    def cb(self, *args, host):
        return cb(*args, '--store', self.loc, '--key-file', str(self.key), env=self.at(host))

    def create(self, tag, host):
        (self.table / 'snapshots' / tag).mkdir(parents=True)
        for gen in self.gens:
            self.content[tag, gen] = os.urandom(5000)
            (self.table / 'snapshots' / tag / f'nb-{gen}-big-Data.db').write_bytes(self.content[tag, gen])
        self.cb('create', '--data-dir', str(self.tmp / 'data'), '--node', 'n1', '--no-schema', '--no-conf',
                '--snapshot', tag, '--name', 'b1', host=host)

    def mounted(self, host):
        return mounted(self.loc, str(self.tmp / 'mnt'), opts=('-o', f'key_file={self.key}'), env=self.at(host))


def test_a_reindex_never_gives_a_backup_made_again_the_old_ones_numbers(tmp_path):
    """Host B forgets b1 and makes it again with other bytes; host A, whose catalog still has
    the old b1, rebuilds it with reindex under its mount. The rebuild keeps the number of each
    node that is the same node (the same backup, path and content), and the new b1 is another
    backup: a directory of the old b1 held open finds none of the new one's files there."""
    h = TwoHosts(tmp_path)
    h.create('s1', 'host-a')
    with h.mounted('host-a') as m:
        fd = os.open(m.path('b1', 'ks', 't'), os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert read_at(fd, 'nb-1-big-Data.db') == h.content['s1', 1]
            h.cb('forget', 'b1', host='host-b')
            h.create('s2', 'host-b')
            h.cb('reindex', host='host-a')
            with pytest.raises(OSError) as e:
                got = read_at(fd, 'nb-1-big-Data.db')
                assert got != h.content['s2', 1], 'a directory of the old b1 gave the new b1\'s bytes'
            assert e.value.errno in (errno.ESTALE, errno.ENOENT), e.value
        finally:
            os.close(fd)
        assert read_uncached(m.path('b1', 'ks', 't', 'nb-1-big-Data.db')) == h.content['s2', 1]


def table_of(store, path):
    """The catalog row of the table of path below /backups (backup/keyspace/table/...)."""
    b, ks, t = path.split('/')[:3]
    [(row,)] = sql(store, 'SELECT t.id FROM tables t JOIN keyspaces k ON k.id = t.keyspace_id JOIN backups b'
                          ' ON b.id = t.backup_id WHERE b.name = ? AND k.name = ? AND t.name = ?', b, ks, t)
    return row


def test_a_reindex_gives_rows_the_catalog_had_wrong_new_numbers(store, tmp_path):
    """A catalog with a file's mode and mtime and its table's mode planted (damaged): the mount
    showed them, and reindex, which keeps each node's number, kept the planted attributes in the
    kernel's caches (a day long) though the rebuilt catalog had them right. A row that is not as
    the store has it is now another node: a new number, looked up again. Its sound siblings keep
    theirs."""
    files = backup(store, tmp_path, 'a', 9, kib='8')
    p, sibling = sorted(f for f in files if f.count('/') == 3)[:2]
    table = table_of(store, p)
    with sqlite3.connect(os.path.join(store, 'catalog.db')) as c:
        c.execute('UPDATE files SET mode = 33206, mtime_ns = 1000000000 WHERE table_row = ? AND name = ?',
                  (table, os.path.basename(p)))
        c.execute('UPDATE tables SET mode = 511 WHERE id = ?', (table,))
    src, tsrc = os.stat(files[p]), os.stat(os.path.dirname(files[p]))
    with mounted(store, str(tmp_path / 'mnt')) as m:
        st = os.stat(m.path(p))
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o666, 10 ** 9)  # the planted row
        assert stat.S_IMODE(os.stat(m.path(os.path.dirname(p))).st_mode) == 0o777
        kept = os.stat(m.path(sibling)).st_ino
        cb('reindex', '--store', store)
        assert read_uncached(m.path(p)) == read(files[p])
        st = os.stat(m.path(p))
        assert (st.st_mode, st.st_mtime_ns) == (src.st_mode, src.st_mtime_ns)
        assert stat.S_IMODE(os.stat(m.path(os.path.dirname(p))).st_mode) == stat.S_IMODE(tsrc.st_mode)
        assert os.stat(m.path(sibling)).st_ino != kept  # below a table given a new number
    assert cb('check', '--store', store).stdout.rstrip().endswith('no problems')


def test_reindex_renumber_undoes_numbers_swapped_in_the_catalog(store, tmp_path):
    """Two files' row ids swapped in the catalog under a running mount: the kernel's Data.db
    now names the Index.db row, and the mount serves Index.db's bytes for it (each checked
    against its own manifest entry: the catalog alone cannot tell). A reindex keeps numbers
    (the rows are sound, only misnumbered); reindex --renumber gives every node a new one, and
    the mount looks each path up again: the right bytes."""
    files = backup(store, tmp_path, 'a', 7, kib='64')
    table = sorted({os.path.dirname(p) for p in files if p.count('/') == 3})[0]
    data = next(p for p in files if p.startswith(table + '/') and p.endswith('Data.db'))
    index = next(p for p in files if p.startswith(table + '/') and p.endswith('Index.db'))
    with mounted(store, str(tmp_path / 'mnt')) as m:
        rows = [(os.stat(m.path(p)).st_ino & ((1 << 48) - 1)) >> 3 for p in (data, index)]
        assert read_uncached(m.path(data)) == read(files[data])
        with sqlite3.connect(os.path.join(store, 'catalog.db')) as c:
            c.execute('UPDATE files SET id = -5 WHERE id = ?', (rows[0],))
            c.execute('UPDATE files SET id = ? WHERE id = ?', (rows[0], rows[1]))
            c.execute('UPDATE files SET id = ? WHERE id = -5', (rows[1],))
        assert read_uncached(m.path(data)) != read(files[data])
        out = cb('reindex', '--store', store, '--renumber').stdout
        assert out == f'reindexed {store}: 1 backup, 1 pack\n', out
        for p, src in files.items():
            assert read_uncached(m.path(p)) == read(src), p


def test_files_in_index_directories_a_manifest_does_not_list_are_all_taken_in(store, tmp_path):
    """A manifest whose files name index directories its table's "dirs" does not list (older
    or hand-edited): the catalog makes the directory for the first file, and the second file
    there hit the directory's UNIQUE constraint. The whole backup was then skipped as "another
    backup of the node", reindex exited 0 with a table of it missing from the mount."""
    files = backup(store, tmp_path, 'a', 11, kib='8')
    mp = manifest_path(store, 'a')
    with open(mp) as f:
        doc = json.load(f)
    in_dirs = 0
    for k in doc['keyspaces']:
        for t in k['tables']:
            in_dirs += sum(1 for f in t['files'] if f.get('dir'))
            t['dirs'] = []
    assert in_dirs >= 2
    rewrite_manifest(mp, doc)
    p = cb('reindex', '--store', store)
    assert p.stdout == f'reindexed {store}: 1 backup, 1 pack\n', p.stdout
    with mounted(store, str(tmp_path / 'mnt')) as m:
        for path, src in files.items():
            assert read(m.path(path)) == read(src), path


def test_a_manifest_naming_an_index_directory_twice_is_named_and_the_store_goes_on(store, tmp_path):
    """A manifest (hand-edited, or without its checksum) whose table lists one index directory
    twice: its second row failed the catalog's UNIQUE constraint, which was taken for a damaged
    catalog: every command failed and set catalog.db aside, again and again. The manifest is
    now refused as damaged, named, and the other backups go on."""
    backup(store, tmp_path, 'a', 13, kib='8')
    files = backup(store, tmp_path, 'b', 14, kib='8')
    mp = manifest_path(store, 'a')
    with open(mp) as f:
        doc = json.load(f)
    t = next(t for k in doc['keyspaces'] for t in k['tables'] if t.get('dirs'))
    t['dirs'].append(dict(t['dirs'][0]))
    rewrite_manifest(mp, doc)
    p = cb('reindex', '--store', store, check=False)
    assert p.returncode == 1 and f'index directory "{t["dirs"][0]["name"]}" appears twice' in p.stdout, p.stdout
    p = cb('list', '--store', store)
    assert 'appears twice' in p.stderr and p.stderr.count('\n') == 1, p.stderr
    assert [b['name'] for b in backup_list(store)] == ['b']
    assert not [f for f in os.listdir(store) if 'damaged' in f]
    with mounted(store, str(tmp_path / 'mnt')) as m:
        for path, src in files.items():
            assert read(m.path(path)) == read(src), path


def test_a_damaged_id_beyond_the_numbered_ones_is_not_kept_by_reindex(store, tmp_path):
    """One file row's id damaged to 2^45 (beyond what the tree numbers): reindex kept it and
    raised the id sequence to it, so every file of every later backup was numbered past what
    the mount shows: backup b's files were all missing from its directory. Such an id is not
    kept, nor raises the sequence."""
    backup(store, tmp_path, 'a', 15, kib='8')
    with sqlite3.connect(os.path.join(store, 'catalog.db')) as c:
        c.execute('UPDATE files SET id = ? WHERE id = (SELECT MAX(id) FROM files)', (1 << 45,))
    cb('reindex', '--store', store)
    [(seq,)] = sql(store, "SELECT seq FROM sqlite_sequence WHERE name = 'files'")
    assert seq < 1 << 44
    files = backup(store, tmp_path, 'b', 16, kib='8')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        for path, src in files.items():
            assert read(m.path(path)) == read(src), path


def test_reindex_never_numbers_from_1_again_when_the_sequences_are_lost(store, tmp_path):
    """The catalog's id sequences lost (sqlite_sequence rows damaged): a rebuild numbered rows
    from 1 again, giving backup a the numbers z had had (z is made first, a taken in first), and
    a running mount served a's bytes under z's paths. The sequences are raised to the ids
    there first, with or without --renumber."""
    files = {**backup(store, tmp_path, 'z', 17, kib='8'), **backup(store, tmp_path, 'a', 18, kib='8')}
    with mounted(store, str(tmp_path / 'mnt')) as m:
        for path in files:
            os.stat(m.path(path))
        for args in (('--renumber',), ()):
            with sqlite3.connect(os.path.join(store, 'catalog.db')) as c:
                c.execute('DELETE FROM sqlite_sequence')
            cb('reindex', '--store', store, *args)
            for path, src in files.items():
                assert read_uncached(m.path(path)) == read(src), (args, path)


def test_a_file_whose_pack_the_catalog_lost_is_looked_up_again_at_its_open(store, tmp_path):
    """The catalog without the pack of a backup's files (as a rebuild left it when a GET of
    the pack's index failed): every file of the live backup gave EIO until some later refresh
    happened to index the pack. The open now brings the catalog's packs up to date and looks
    its bytes up again."""
    files = backup(store, tmp_path, 'a', 19, kib='8')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        with sqlite3.connect(os.path.join(store, 'catalog.db')) as c:
            c.execute('UPDATE blobs SET pack_id = NULL, offset = NULL')
            c.execute('DELETE FROM blob_locs')
            c.execute('DELETE FROM packs')
        for p, src in files.items():
            assert read_uncached(m.path(p)) == read(src), p


def test_catalog_made_anew_under_a_mount_never_serves_another_file(store, tmp_path):
    """The catalog deleted and made anew (ids start over) while files are looked up and open:
    the mount moves to the new catalog, and a node number it handed out before names nothing
    (the kernel looks the path up again), never another file."""
    files = {**backup(store, tmp_path, 'b', 11), **backup(store, tmp_path, 'a', 12)}
    with mounted(store, str(tmp_path / 'mnt'), ('-o', 'threads=32'),
                 expect_errors=('catalog was made anew',)) as m:
        with Readers(m, files, n=4) as r:
            r.wait_reads(100)
            for ext in ('', '-wal', '-shm'):
                p = os.path.join(store, 'catalog.db' + ext)
                if os.path.exists(p):
                    os.unlink(p)
            cb('list', '--store', store)  # makes a new catalog: b and a numbered otherwise
            for _ in range(4):
                r.more(6)
                r.wait_reads(200)
        assert r.wrong == [], f'{len(r.wrong)} reads gave another file\'s bytes: {r.wrong[:5]}'
        assert r.errors == [], f'{len(r.errors)} reads failed: {r.errors[:5]}'


def point_at_other_blob(store, name, other, with_its_backup=False):
    """Makes the catalog row of the file of backup name read the blob of backup other's file of
    the same name (with_its_backup: and name backup other as its own, under name's table): a
    stale or planted catalog."""
    where = ("FROM files f JOIN backups b ON b.id = f.backup_id JOIN tables t ON t.id = f.table_row"
             " JOIN keyspaces k ON k.id = t.keyspace_id WHERE b.name = ? AND f.dir_id = 0")
    (fid, fname, ks, table), = sql(store, f"SELECT f.id, f.name, k.name, t.name {where}"
                                          " AND f.name LIKE '%Data.db' ORDER BY f.id LIMIT 1", name)
    (blob,), = sql(store, f"SELECT f.blob_id {where} AND f.name = ? AND k.name = ? AND t.name = ?",
                   other, fname, ks, table)
    (size,), = sql(store, 'SELECT size FROM blobs WHERE id = ?', blob)
    sql(store, 'UPDATE files SET blob_id = ?, size = ? WHERE id = ?', blob, size, fid)
    if with_its_backup:
        sql(store, 'UPDATE files SET backup_id = (SELECT id FROM backups WHERE name = ?) WHERE id = ?',
            other, fid)
    return os.path.join(name, ks, table, fname)


@pytest.mark.parametrize('with_its_backup', [False, True])
def test_a_catalog_row_pointing_at_another_blob_is_refused_by_the_mount(store, tmp_path, with_its_backup):
    """with_its_backup: the row also named the other backup as its own, so its bytes were
    checked against that backup's manifest, and read as the file of a, no error."""
    files = {**backup(store, tmp_path, 'a', 21), **backup(store, tmp_path, 'b', 22)}
    target = point_at_other_blob(store, 'a', 'b', with_its_backup)
    said = 'listed under another backup' if with_its_backup else 'is not what backups/a/'
    with mounted(store, str(tmp_path / 'mnt'), expect_errors=(said,)) as m:
        with pytest.raises(OSError) as e:
            read(m.path(target))
        assert e.value.errno == errno.EIO
        for p, src in files.items():  # every other file reads right
            if p != target:
                assert read(m.path(p)) == read(src)


def test_a_catalog_row_pointing_at_another_blob_is_refused_by_restore(store, tmp_path):
    """restore used the catalog's SHA-256 to check the bytes it wrote: a row pointing at another
    blob wrote that blob's bytes, exit 0. Now the row is held against the manifest first."""
    backup(store, tmp_path, 'a', 31)
    backup(store, tmp_path, 'b', 32)
    point_at_other_blob(store, 'a', 'b')
    target = sample(tmp_path, 'target', 99, kib='16')
    dd = sample_dirs(target)[0]
    before = {os.path.join(r, n): os.path.getsize(os.path.join(r, n))
              for r, _, ns in os.walk(dd) for n in ns}
    p = cb('restore', '--store', store, 'a', '--data-dir', dd, check=False)
    assert p.returncode != 0
    [line] = p.stderr.splitlines()
    assert 'is not what backups/a/' in line and 'nothing was restored' in line
    after = {os.path.join(r, n): os.path.getsize(os.path.join(r, n))
             for r, _, ns in os.walk(dd) for n in ns}
    assert after == before


def files_sizes(d):
    return {os.path.join(r, n): os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(d) for n in ns}


def lose_from_catalog(store, name, what):
    """Deletes from the catalog one file row of backup name (what='file': an Index.db), or a
    whole table's rows (what='table'), or names a file twice in place of another (what='twice':
    an Index.db's row named as the Data.db beside it, the table's constraint gone, as only a
    planted catalog has it): a stale, damaged or planted catalog."""
    if what == 'twice':
        (fid, row, ks, table, name), = sql(
            store, "SELECT f.id, f.table_row, k.name, t.name, f.name FROM files f JOIN backups b ON "
                   "b.id = f.backup_id JOIN tables t ON t.id = f.table_row JOIN keyspaces k ON k.id = "
                   "t.keyspace_id WHERE b.name = ? AND f.dir_id = 0 AND f.name LIKE '%Index.db' ORDER BY "
                   "f.id LIMIT 1", name)
        for q in ('CREATE TABLE files2 AS SELECT * FROM files', 'DROP TABLE files',
                  'ALTER TABLE files2 RENAME TO files'):
            sql(store, q)
        data = name[:-len('Index.db')] + 'Data.db'
        (blob, size), = sql(store, 'SELECT blob_id, size FROM files WHERE table_row = ? AND dir_id = 0 '
                                   'AND name = ?', row, data)
        sql(store, 'UPDATE files SET name = ?, blob_id = ?, size = ? WHERE id = ?', data, blob, size, fid)
        return ks, table
    if what == 'file':
        (fid, ks, table), = sql(store, "SELECT f.id, k.name, t.name FROM files f JOIN backups b ON "
                                       "b.id = f.backup_id JOIN tables t ON t.id = f.table_row JOIN "
                                       "keyspaces k ON k.id = t.keyspace_id WHERE b.name = ? AND "
                                       "f.dir_id = 0 AND f.name LIKE '%Index.db' ORDER BY f.id LIMIT 1",
                                name)
        sql(store, 'DELETE FROM files WHERE id = ?', fid)
        return ks, table
    (row, ks, table), = sql(store, 'SELECT t.id, k.name, t.name FROM tables t JOIN keyspaces k ON '
                                   'k.id = t.keyspace_id JOIN backups b ON b.id = k.backup_id WHERE '
                                   'b.name = ? ORDER BY t.id DESC LIMIT 1', name)
    for q in ('DELETE FROM files WHERE table_row = ?', 'DELETE FROM dirs WHERE table_row = ?',
              'DELETE FROM tables WHERE id = ?'):
        sql(store, q, row)
    return ks, table


@pytest.mark.parametrize('what', ['file', 'table', 'twice'])
def test_a_catalog_missing_a_file_or_a_table_is_refused(store, tmp_path, what):
    """restore wrote an sstable without the Index.db the catalog had lost, or left out a table
    it had lost, load streamed only the tables it listed, verify checked only those: each exit
    0. Each row listed was held against the manifest, never the manifest against the rows."""
    files = backup(store, tmp_path, 'a', 41, kib='16')
    ks, table = lose_from_catalog(store, 'a', what)
    said = {'file': 'files for a/', 'table': 'the catalog lists 3 tables for a,',
            'twice': 'twice (a damaged catalog'}[what]
    dd = sample_dirs(sample(tmp_path, 'target', 99, kib='16'))[0]
    before = files_sizes(dd)
    p = cb('restore', '--store', store, 'a', '--data-dir', dd, check=False)
    assert p.returncode == 1
    [line] = p.stderr.splitlines()
    assert said in line and "'cassbackup reindex' rebuilds it" in line
    assert files_sizes(dd) == before
    v = cb('verify', '--store', store, 'a', check=False)
    assert v.returncode == 1 and said in v.stdout + v.stderr
    if what == 'table':
        log = tmp_path / 'loader.log'
        ld = cb('load', '--store', store, 'a', '--hosts', 'h1', '--sstableloader',
                os.path.join(os.path.dirname(os.path.abspath(__file__)), 'standins', 'sstableloader'), '--state-dir', str(tmp_path / 'state'),
                env=dict(os.environ, SSTABLELOADER_STANDIN_LOG=str(log)), check=False)
        assert ld.returncode == 1 and said in ld.stderr and not log.exists()
    # the mount: a listing that lacks the file or the table is an error, not a shorter list
    with mounted(store, str(tmp_path / 'mnt'), expect_errors=(said, 'twice in it')) as m:
        lacking = ['a', f'a/{ks}'] if what == 'table' else [f'a/{ks}/{table}']
        for d in lacking:
            with pytest.raises(OSError) as e:
                os.listdir(m.path(d))
            assert e.value.errno == errno.EIO, d
        there = [p for p in files if os.path.exists(m.path(p))]
        assert len(there) == len(files) - (sum(f'/{ks}/{table}/' in p for p in files)
                                           if what == 'table' else 1)
        for p in there:  # what the catalog still has reads right
            assert read(m.path(p)) == read(files[p])
    cb('reindex', '--store', store)  # the catalog made again from the store: whole again
    cb('restore', '--store', store, 'a', '--data-dir', dd)
    cb('verify', '--store', store, 'a')


def test_a_reindex_between_restores_queries_changes_nothing_it_restores(store, tmp_path):
    """restore read the table list, then each table's files by row id, in queries of their own:
    a reindex between them (new row ids) left the later tables empty, exit 0. The plan is now
    read in one read transaction. The pause: restore stops as it opens the first target
    table directory, after reading that table's files and before the others'."""
    from test_lease import stopped_at_state_t
    files = backup(store, tmp_path, 'a', 42, kib='16')
    target = tmp_path / 'target'
    tables = sorted({tuple(p.split('/')[1:3]) for p in files})
    for ks, t in tables:
        (target / ks / f'{t}-00000000000000000000000000000001').mkdir(parents=True)
    first = f'{tables[0][1]}-00000000000000000000000000000001'
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_OPEN=first)
    p = subprocess.Popen([CASSBACKUP, 'restore', '--store', store, 'a', '--data-dir', str(target)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stopped_at_state_t(p)
        cb('reindex', '--store', store)
    finally:
        os.kill(p.pid, signal.SIGCONT)
        out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    for rel, src in files.items():
        _, ks, t, name = rel.split('/', 3)
        if name in ('manifest.json', 'schema.cql'):
            continue
        got = target / ks / f'{t}-00000000000000000000000000000001' / name
        assert read(str(got)) == read(src), rel


def test_a_catalog_row_pointing_elsewhere_in_its_pack_is_refused_by_the_mount(store, tmp_path):
    """The blob's own row moved to another offset of its pack (a catalog out of step with its
    packs): the pack's index does not hold that content there, so no byte is served."""
    files = backup(store, tmp_path, 'a', 41)
    (bid, off), = sql(store, "SELECT bl.id, bl.offset FROM blobs bl JOIN files f ON f.blob_id = bl.id"
                             " WHERE f.name LIKE '%Data.db' ORDER BY bl.offset DESC LIMIT 1")
    (other,), = sql(store, 'SELECT MIN(offset) FROM blobs WHERE offset < ?', off)
    sql(store, 'UPDATE blobs SET offset = ? WHERE id = ?', other, bid)
    with mounted(store, str(tmp_path / 'mnt'), expect_errors=("that pack's index has no such blob",)) as m:
        bad = 0
        for p, src in files.items():
            try:
                assert read(m.path(p)) == read(src)
            except OSError as e:
                assert e.errno == errno.EIO
                bad += 1
        assert bad >= 1


# --- the mount as fstab runs it: daemonized ------------------------------------------------

def daemon_mount(store, mnt, *opts):
    """mount.cassbackup STORE MNT without -f: it forks and returns once mounted."""
    os.makedirs(mnt, exist_ok=True)
    run(MOUNT, store, mnt, *opts)
    assert os.path.ismount(mnt)


def unmount(mnt):
    run('fusermount3', '-u', mnt)


def wait_listed(mnt, name, timeout=30):
    deadline = time.monotonic() + timeout
    while name not in os.listdir(os.path.join(mnt, 'backups')):
        assert time.monotonic() < deadline, f'{name} did not appear in {mnt}/backups'
        time.sleep(0.1)


def test_daemonized_mounts_beside_creates_prunes_and_each_other(store, tmp_path):
    """Two daemonized mounts of one store, with creates, a forget and a prune beside them:
    both list every new backup and read every file right (the daemon opened its catalog before
    forking, and the next create took its -wal and -shm from under it)."""
    files = backup(store, tmp_path, 'a', 51)
    m1, m2 = str(tmp_path / 'm1'), str(tmp_path / 'm2')
    daemon_mount(store, m1)
    try:
        daemon_mount(store, m2)
        try:
            for i, name in enumerate(['b', 'c', 'd']):
                files.update(backup(store, tmp_path, name, 52 + i))
                for mnt in (m1, m2):
                    wait_listed(mnt, name)
            cb('forget', '--store', store, 'b')
            cb('prune', '--store', store, '--max-unused', '0')
            for mnt in (m1, m2):
                deadline = time.monotonic() + 30
                while 'b' in os.listdir(os.path.join(mnt, 'backups')):
                    assert time.monotonic() < deadline, 'forgotten backup b stays listed'
                    time.sleep(0.1)
                for p, src in files.items():
                    if not p.startswith('b/'):
                        assert read(os.path.join(mnt, 'backups', p)) == read(src), p
        finally:
            unmount(m2)
    finally:
        unmount(m1)


# --- where a mount may go ------------------------------------------------------------------

def refused_mount(store, mnt, *opts):
    """mount.cassbackup -f that must refuse mnt: it exits 1 without mounting (one that mounts
    instead is unmounted, and the test fails)."""
    proc = subprocess.Popen([MOUNT, store, str(mnt), '-f', *opts], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        subprocess.run(['fusermount3', '-u', str(mnt)], capture_output=True)
        proc.communicate()
        pytest.fail(f'mount.cassbackup mounted on {mnt}')
    assert proc.returncode == 1 and not os.path.ismount(mnt), err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

def test_mount_refuses_a_non_empty_directory_unless_asked(store, tmp_path):
    backup(store, tmp_path, 'a', 61)
    mnt = tmp_path / 'full'
    mnt.mkdir()
    (mnt / 'keep.txt').write_text('mine')
    p = refused_mount(store, mnt)
    assert 'not empty' in p.stderr and '-o nonempty' in p.stderr
    with mounted(store, str(mnt), ('-o', 'nonempty')) as m:
        assert os.listdir(m.path()) == ['a']
    assert (mnt / 'keep.txt').read_text() == 'mine'


@pytest.mark.parametrize('where', ['table', 'data', 'below'])
def test_mount_refuses_a_cassandra_data_directory_always(store, tmp_path, where):
    backup(store, tmp_path, 'a', 62)
    data = tmp_path / 'cassandra' / 'data'
    (data / 'system_schema' / 'tables-afddfb9dbc1e30688056eed6c302ba09').mkdir(parents=True)
    table = data / 'shop' / 'orders-0123456789abcdef0123456789abcdef'
    table.mkdir(parents=True)
    mnt = {'table': table, 'data': data / 'mnt', 'below': table / 'snapshots' / 'x'}[where]
    mnt.mkdir(parents=True, exist_ok=True)
    p = refused_mount(store, mnt, '-o', 'nonempty')
    [line] = p.stderr.splitlines()
    assert 'inside the Cassandra directory' in line


# --- the catalog's cache directory --------------------------------------------------------

def test_a_planted_cache_directory_is_refused(store, tmp_path):
    """A user whose catalog lives in a cache directory (a store it cannot write) must not read a
    catalog another user planted there: the directory must be its own."""
    backup(store, tmp_path, 'a', 71)
    top = tempfile.mkdtemp(prefix='cb-plant-')  # pytest's own tmp dirs are root's only
    try:
        os.chmod(top, 0o755)
        shared = os.path.join(top, 'store')
        shutil.copytree(store, shared)
        run('chmod', '-R', 'a+rX', shared)  # readable, not writable: its catalog goes to the cache
        xdg = os.path.join(top, 'xdg')
        os.mkdir(xdg)
        os.chmod(xdg, 0o1777)
        planted = os.path.join(xdg, 'cassbackup')
        os.mkdir(planted, 0o755)  # root's, as another user would plant it
        as_nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']
        env = dict(os.environ, XDG_CACHE_HOME=xdg, HOME='/nonexistent')
        env.pop('CASSBACKUP_CACHE_DIR', None)
        p = run(*as_nobody, CASSBACKUP, 'list', '--store', shared, env=env, check=False)
        assert p.returncode != 0
        [line] = p.stderr.splitlines()
        assert "not this user's own directory" in line and planted in line
        shutil.rmtree(planted)
        p = run(*as_nobody, CASSBACKUP, 'list', '--store', shared, env=env)
        assert p.stdout.splitlines()[1].startswith('a ')
        st = os.stat(planted)
        assert (st.st_mode & 0o777, st.st_uid) == (0o700, 65534)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize('damage', ['id-is-a-file', 'place-is-a-file', 'catalog-is-a-directory'])
def test_a_damaged_cache_place_gives_way_to_a_temporary_catalog(tmp_path, damage):
    """The cache place of an encrypted store's catalog replaced by a file stopped every command
    with "Not a directory", exit 3 (no such store); catalog.db made a directory, exit 1. The
    catalog is only a cache: the run keeps a temporary one, read from the store, and says so."""
    loc, key = str(tmp_path / 'store'), tmp_path / 'key'
    key.write_text(os.urandom(32).hex() + '\n')
    key.chmod(0o600)
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', loc, '--encrypt', '--key-file', str(key), env=env)
    dirs = sample_dirs(sample(tmp_path, 'src', 5, kib='64'))
    cb('create', '--store', loc, '--key-file', str(key), '--name', 'b1', *data_dir_args(dirs), '--snapshot',
       'nightly-1', env=env)
    [path] = [os.path.join(d, 'catalog.db') for d, _, names in os.walk(tmp_path / 'cache') if 'catalog.db' in names]
    if damage.endswith('-is-a-file'):
        gone = os.path.dirname(path) if damage == 'place-is-a-file' else os.path.dirname(os.path.dirname(path))
        shutil.rmtree(gone)
        with open(gone, 'w') as f:
            f.write('x')
    else:
        for name in os.listdir(os.path.dirname(path)):
            os.unlink(os.path.join(os.path.dirname(path), name))
        os.mkdir(path)
    p = cb('list', '--store', loc, '--key-file', str(key), env=env)
    assert p.stdout.splitlines()[1].startswith('b1 ')
    [note] = p.stderr.splitlines()
    assert note.startswith(f'cassbackup: note: catalog {path}: ') and 'this run keeps a temporary one' in note
    cb('verify', '--store', loc, '--key-file', str(key), 'b1', env=env)
    # the cache directory itself not one: a setting to fix (exit 2), not "no such store" (3)
    p = cb('list', '--store', loc, '--key-file', str(key), check=False,
           env=dict(env, CASSBACKUP_CACHE_DIR=str(tmp_path / 'key')))
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and str(tmp_path / 'key') in p.stderr, p.stderr


def test_a_backup_committed_between_a_readers_listings_is_taken_in_whole(tmp_path):
    """A reader (its own catalog) brings its catalog up to date while a create commits: the
    backup's manifest appears in its listing of backups/, its pack not yet in its listing of
    packs/ (the reader paused between the two at an exact request). The backup is taken in
    whole: listed complete, its files read. Packs were listed first: it was taken in with no
    pack holding its files, listed incomplete, and an incremental refused to follow it."""
    with moto(tmp_path) as (port, key, secret):
        env = s3_env(port, key, secret, tmp_path / 'writer-cache')
        loc = 's3://cbtest/stores/between'
        cb('init', '--store', loc, env=env)
        dirs = sample_dirs(sample(tmp_path, 'src', 1, kib='64'))
        with S3Proxy(port) as px:
            reader = dict(env, AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}',
                          CASSBACKUP_CACHE_DIR=str(tmp_path / 'reader-cache'))
            cb('list', '--store', loc, env=reader)  # its catalog made: the store is empty
            px.set_fault('hold', match='prefix=stores%2Fbetween%2Fbackups%2F')
            p = subprocess.Popen([CASSBACKUP, 'list', '--store', loc, '--json'], env=reader,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                while not px.holding.wait(0.1):
                    assert p.poll() is None, p.communicate()
                cb('create', '--store', loc, '--name', 'b1', *data_dir_args(dirs), '--snapshot',
                   'nightly-1', env=env)
            finally:
                px.set_fault(None)
                px.release()
                out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        got = [b for g in json.loads(out) for b in g['nodes']]
        assert [(b['name'], b['complete']) for b in got] == [('b1', True)], got
        # the reader's catalog, straight to the server now (the proxy is gone)
        cb('verify', '--store', loc, 'b1', env=dict(env, CASSBACKUP_CACHE_DIR=str(tmp_path / 'reader-cache')))


@pytest.mark.parametrize('where', ['encrypted-directory', 'moto', 's3rver'])
def test_a_backup_forgotten_and_made_again_under_its_name_is_read_again(tmp_path, where):
    """Host B forgets backup b1 and makes a new b1, its manifest the same size as the old one's.
    Host A's catalog (a cache of its own: an encrypted store's, or object storage's) noticed a
    replaced manifest by its size only: it kept the old b1, and A's prune deleted the new b1's
    pack as used by no backup, exit 0. The store's version of each manifest (an ETag, or a
    file's inode and change time) now tells them apart."""
    data = tmp_path / 'data'
    table = data / 'ks' / 't-0123456789abcdef0123456789abcdef'

    def snapshot(tag):
        (table / 'snapshots' / tag).mkdir(parents=True)
        (table / 'snapshots' / tag / 'nb-1-big-Data.db').write_bytes(os.urandom(3000))

    def run_at(host, *args, **kw):
        return cb(*args, '--store', loc, *keyargs, env=dict(env, CASSBACKUP_CACHE_DIR=str(tmp_path / host)), **kw)

    def create(tag, name):
        run_at('host-b', 'create', '--data-dir', str(data), '--node', 'n1', '--no-schema', '--no-conf',
               '--snapshot', tag, '--name', name)

    def manifest_size():
        """The sealed manifest's size in the directory (in object storage the same by the same
        construction: one file of as many bytes, a tag of as many characters)."""
        if where == 'encrypted-directory':
            return os.path.getsize(os.path.join(loc, 'backups', 'b1', 'n1.json'))
        return None

    with contextlib.ExitStack() as stack:
        if where == 'encrypted-directory':
            loc, env = str(tmp_path / 'store'), dict(os.environ)
            key = tmp_path / 'key'
            key.write_text(os.urandom(32).hex() + '\n')
            key.chmod(0o600)
            keyargs = ('--key-file', str(key))
            cb('init', '--store', loc, '--encrypt', *keyargs)
        else:
            server = moto if where == 'moto' else s3rver
            port, akey, secret = stack.enter_context(server(tmp_path))
            env = s3_env(port, akey, secret, tmp_path / 'unused')
            loc, keyargs = 's3://cbtest/stores/again', ()
            cb('init', '--store', loc, env=env)
        snapshot('s0')
        create('s0', 'b0')
        snapshot('s1')
        create('s1', 'b1')
        run_at('host-a', 'list')  # host A's catalog knows b1 of snapshot s1
        before = manifest_size()
        run_at('host-b', 'forget', 'b1')
        snapshot('s2')
        create('s2', 'b1')
        assert manifest_size() == before  # what the old code compared: the same
        # the version the writer recorded is the one a listing gives: not read again each time
        out = run_at('host-b', 'check').stdout
        assert 'was behind the store' not in out, out
        shown = run_at('host-a', 'show', 'b1').stdout
        assert re.search(r'snapshot tag\s+s2', shown), shown
        run_at('host-a', 'prune')
        out = run_at('fresh', 'check', '--read-data').stdout
        assert out.rstrip().endswith('no problems'), out
        run_at('fresh', 'export', 'b1', '-o', str(tmp_path / 'b1.tar'))
        with tarfile.open(tmp_path / 'b1.tar') as t:
            [member] = [m for m in t.getmembers() if m.name.endswith('nb-1-big-Data.db')]
            assert t.extractfile(member).read() == (table / 'snapshots' / 's2' / 'nb-1-big-Data.db').read_bytes()


def test_a_mount_never_opens_a_file_of_a_backup_made_again_under_its_name(tmp_path):
    """Host B forgets backup b1 and makes it again with other bytes; host A's mount (an
    encrypted store: a catalog of its own) had read the old b1. Opened before its catalog caught
    up (a directory of the old b1 held open, as a copy in progress holds it; or within the 2 s
    before it looks at backups/ again), a file of b1 was the forgotten backup's bytes: the
    manifest digest the open is checked against was the old one too. The open now looks at the
    manifest's version (one stat in a local store): the old file is stale (ESTALE), and b1's
    path gives the new bytes."""
    h = TwoHosts(tmp_path, gens=(1, 2))
    h.create('s1', 'host-a')
    with h.mounted('host-a') as m:
        old_dir = m.path('b1', 'ks', 't')
        assert read_uncached(os.path.join(old_dir, 'nb-1-big-Data.db')) == h.content['s1', 1]
        fd = os.open(old_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            h.cb('forget', 'b1', host='host-b')
            h.create('s2', 'host-b')
            with pytest.raises(OSError) as e:  # no lookup in backups/ since: the catalog is behind
                os.open('nb-2-big-Data.db', os.O_RDONLY, dir_fd=fd)
            assert e.value.errno in (errno.ESTALE, errno.ENOENT), e.value
        finally:
            os.close(fd)
        for gen in (1, 2):
            assert read_uncached(m.path('b1', 'ks', 't', f'nb-{gen}-big-Data.db')) == h.content['s2', gen]
    # (the mount logs nothing: a backup made again is no damage to report)


def test_a_writer_records_the_version_of_what_it_wrote_not_of_what_is_there_later(tmp_path):
    """A create looked at its manifest's key after writing it to learn its version: another
    host that forgot the backup and made it again meanwhile (same size) had its manifest's
    version recorded against the first create's rows, so that host's catalog never read the
    new manifest, and its prune deleted the new backup's pack, exit 0. The version now comes
    from the write itself (here: the written file, still open)."""
    from test_lease import resumed, stopped_at_state_t
    data = tmp_path / 'data'
    table = data / 'ks' / 't-0123456789abcdef0123456789abcdef'
    for tag in ('s1', 's2'):
        (table / 'snapshots' / tag).mkdir(parents=True)
        (table / 'snapshots' / tag / 'nb-1-big-Data.db').write_bytes(os.urandom(3000))
    loc, key = str(tmp_path / 'store'), tmp_path / 'key'
    key.write_text(os.urandom(32).hex() + '\n')
    key.chmod(0o600)

    def at(host, **extra):
        return dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / host), **extra)

    # host B's copy of the data directory: a node's create waits for another create of it
    shutil.copytree(data, tmp_path / 'data-b')

    def create(tag, data):
        return [CASSBACKUP, 'create', '--store', loc, '--key-file', str(key), '--data-dir', str(data),
                '--node', 'n1', '--no-schema', '--no-conf', '--snapshot', tag, '--name', 'b1']
    cb('init', '--store', loc, '--encrypt', '--key-file', str(key))
    a = stopped_at_state_t(subprocess.Popen(
        create('s1', data), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=at('host-a', LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST='after')))
    try:  # host A's manifest has landed; host B forgets it and makes b1 again
        cb('forget', '--store', loc, '--key-file', str(key), 'b1', env=at('host-b'))
        run(*create('s2', tmp_path / 'data-b'), env=at('host-b'))
    finally:
        rc, out, err = resumed(a)
    assert rc == 0, err
    shown = cb('show', '--store', loc, '--key-file', str(key), 'b1', env=at('host-a')).stdout
    assert re.search(r'snapshot tag\s+s2', shown), shown
    cb('prune', '--store', loc, '--key-file', str(key), env=at('host-a'))
    out = cb('check', '--store', loc, '--key-file', str(key), '--read-data', env=at('fresh')).stdout
    assert out.rstrip().endswith('no problems'), out


def test_a_manifest_made_again_in_the_same_inode_and_second_is_read_again(tmp_path):
    """On a file system of 1-second timestamps (ext4 with 128-byte inodes), a manifest forgotten
    and made again within the same second reused the freed inode: inode, size and change time
    were the same, so another host's catalog kept the old backup and its prune deleted the
    pack the new one uses, exit 0. The inode's generation (FS_IOC_GETVERSION) now tells them
    apart. Real ext4 on a loop device."""
    img, mnt = tmp_path / 'fs.img', tmp_path / 'mnt'
    with open(img, 'wb') as f:
        f.truncate(64 << 20)
    run('mkfs.ext4', '-q', '-F', '-I', '128', str(img))
    mnt.mkdir()
    p = subprocess.run(['mount', '-o', 'loop', str(img), str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f'cannot mount a loop device here: {p.stderr.strip()}')
    try:
        data = tmp_path / 'data'
        table = data / 'ks' / 't-0123456789abcdef0123456789abcdef'
        for tag in ('s0', 's1'):
            (table / 'snapshots' / tag).mkdir(parents=True)
            (table / 'snapshots' / tag / 'nb-1-big-Data.db').write_bytes(os.urandom(3000))
        shutil.copytree(table / 'snapshots' / 's0', table / 'snapshots' / 's0-again')  # as long as s1+6
        loc, key = str(mnt / 'store'), tmp_path / 'key'
        key.write_text(os.urandom(32).hex() + '\n')
        key.chmod(0o600)

        def at(host, *args, **kw):
            return cb(*args, '--store', loc, '--key-file', str(key),
                      env=dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / host)), **kw)

        def create(tag, name):
            at('host-b', 'create', '--data-dir', str(data), '--node', 'n1', '--no-schema', '--no-conf',
               '--snapshot', tag, '--name', name)
        cb('init', '--store', loc, '--encrypt', '--key-file', str(key))
        create('s0', 'b0')
        manifest = os.path.join(loc, 'backups', 'b1', 'n1.json')
        for attempt in range(5):  # the forget and the new create within one second of the first
            time.sleep(1.02 - time.time() % 1)
            create('s1', 'b1')
            at('host-a', 'list')
            before = os.stat(manifest)
            at('host-b', 'forget', 'b1')
            create('s0-again', 'b1')
            after = os.stat(manifest)
            if (after.st_ino, after.st_size, after.st_ctime) == (before.st_ino, before.st_size, before.st_ctime):
                break
            at('host-b', 'forget', 'b1')  # a second went by (a busy machine): again
        else:
            pytest.skip('could not make the manifest again within its second (machine too busy)')
        at('host-b', 'forget', 'b0')
        shown = at('host-a', 'show', 'b1').stdout
        assert re.search(r'snapshot tag\s+s0-again', shown), shown
        at('host-a', 'prune')
        out = at('fresh', 'check', '--read-data').stdout
        assert out.rstrip().endswith('no problems'), out
    finally:
        subprocess.run(['umount', str(mnt)], capture_output=True)


def test_a_catalog_damaged_inside_is_set_aside_and_rebuilt(store, tmp_path):
    """A catalog.db whose header reads but whose pages are damaged was never set aside: list,
    reindex (the cure the man page gives) and the mount all failed with "cannot bring the
    catalog up to date: not an error". It is only a cache: set aside as catalog.db.damaged,
    rebuilt from the store, and every file reads right."""
    files = {**backup(store, tmp_path, 'a', 61, kib='64'), **backup(store, tmp_path, 'b', 62, kib='64')}
    sql(store, 'PRAGMA wal_checkpoint(TRUNCATE)')
    cat = os.path.join(store, 'catalog.db')
    rnd = random.Random(1)
    with open(cat, 'r+b') as f:
        size = os.fstat(f.fileno()).st_size
        assert size > 4 * 4096
        for off in range(3 * 4096, size, 2 * 4096):  # every other page from the fourth on
            f.seek(off)
            f.write(bytes(rnd.getrandbits(8) for _ in range(4096)))
    p = cb('list', '--store', store)
    assert 'a' in p.stdout and 'b' in p.stdout and 'not an error' not in p.stderr, p.stderr
    assert os.path.exists(cat + '.damaged')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        for rel, src in files.items():
            assert read(m.path(rel)) == read(src)
