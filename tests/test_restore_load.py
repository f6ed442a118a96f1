"""verify, restore, load, create --take-snapshot and the config file.

Cassandra, nodetool and sstableloader cannot run here: nodetool and sstableloader are the
stand-ins in tests/standins/, which check what they are given (arguments, complete sstables,
Digest.crc32, the exact backed-up bytes) and make snapshots with hard links as Cassandra does.
"""
import hashlib
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import zlib

import pytest

from conftest import (CASSBACKUP, FIXTURE_TAG, backup_list, cb, data_dir_args, make_sample, mounted,
                      packs, read, run, sample_dirs, snapshot_tables)

STANDINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'standins')
NODETOOL = os.path.join(STANDINS, 'nodetool')
LOADER = os.path.join(STANDINS, 'sstableloader')


def sha(path):
    return hashlib.sha256(read(path)).hexdigest()


def log_lines(path):
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


# what create asks nodetool of the node (its version, identity and ring) before anything else,
# and restore (which node this is: info)
IDENTITY = ('version', 'info', 'status', 'describecluster')


def changes(path):
    """The nodetool calls that are not create's or restore's questions about the node."""
    return [c for c in log_lines(path) if c['cmd'] not in IDENTITY]


@pytest.fixture
def real_backup(store, fixture_tree):
    cb('create', '--store', store, '--name', 'real', '--data-dir', fixture_tree, '--snapshot', FIXTURE_TAG)
    return store, fixture_tree


def live_node(root, backup_tree, tag, ids='0123456789abcdef0123456789abcdef'):
    """A node's data directory with every table of the backup created (other table ids)."""
    for (ks, table) in snapshot_tables([backup_tree], tag):
        os.makedirs(os.path.join(root, ks, f'{table}-{ids}'), exist_ok=True)
    return root


# --- verify ---------------------------------------------------------------------------------

def test_verify_real_sstables_all_digests_ok(real_backup):
    store, _ = real_backup
    r = cb('verify', '--store', store, 'real', '--json')
    res = json.loads(r.stdout)['tables']
    assert len(res) == 66 and all(t['status'] == 'ok' for t in res)
    text = cb('verify', '--store', store, '--all').stdout.splitlines()
    assert len(text) == 67 and all(l.startswith('ok ') for l in text[:-1])
    assert text[-1].startswith('66 tables ok, 0 failed in 1 backup (660 files, ')


def digest_variant_tree(root, fixture_tree):
    """Real Data.db files from the fixtures with each Digest variant Cassandra ever wrote:
    crc32 (3.0+), adler32 (2.x), sha1 holding an Adler-32 (2.1) and sha1sum lines (2.0); each
    in a good and in a wrong copy."""
    src = snapshot_tables([fixture_tree], FIXTURE_TAG)[('legacy_tables', 'legacy_nb_simple')]
    data = read(src['nb-1-big-Data.db'])
    crc, adler, sha1 = zlib.crc32(data), zlib.adler32(data), hashlib.sha1(data).hexdigest()
    variants = {
        'crc32': ('Digest.crc32', str(crc)),
        'adler32': ('Digest.adler32', str(adler)),
        'sha1adler': ('Digest.sha1', str(adler)),
        'sha1sum': ('Digest.sha1', f'{sha1}  nb-1-big-Data.db\n'),
    }
    for name, (comp, good) in variants.items():
        for quality, text in (('good', good), ('bad', good.replace(good[2], '0' if good[2] != '0' else '1', 1))):
            sdir = os.path.join(root, 'digests', f'{name}_{quality}-{"ab" * 16}', 'snapshots', 't')
            os.makedirs(sdir)
            for rel, p in src.items():
                if 'Digest' not in rel and rel not in ('manifest.json', 'schema.cql'):
                    shutil.copy(p, os.path.join(sdir, rel))
            with open(os.path.join(sdir, 'nb-1-big-' + comp), 'w') as f:
                f.write(text)
            with open(os.path.join(sdir, 'nb-1-big-TOC.txt'), 'w') as f:
                f.write('\n'.join(sorted(n[len('nb-1-big-'):] for n in os.listdir(sdir) if n.startswith('nb-1-big-'))) + '\n')
    return root


def test_verify_each_digest_variant(store, fixture_tree, tmp_path):
    root = digest_variant_tree(str(tmp_path / 'd'), fixture_tree)
    cb('create', '--store', store, '--name', 'dig', '--data-dir', root, '--snapshot', 't')
    res = {t['table']: t for t in json.loads(cb('verify', '--store', store, 'dig', '--json', check=False).stdout)['tables']}
    for name in ('crc32', 'adler32', 'sha1adler', 'sha1sum'):
        assert res[f'{name}_good']['status'] == 'ok', res[f'{name}_good']
        assert res[f'{name}_bad']['status'] == 'failed', name
    assert 'CRC32' in res['crc32_bad']['errors'][0]
    assert 'Adler-32' in res['adler32_bad']['errors'][0] and 'Adler-32' in res['sha1adler_bad']['errors'][0]
    assert 'SHA-1' in res['sha1sum_bad']['errors'][0]
    assert cb('verify', '--store', store, 'dig', check=False).returncode == 1


def test_verify_flipped_byte_in_data_db_via_digest(store, fixture_tree, tmp_path):
    """Bit rot on the node before the backup: the bytes are stored faithfully, Digest catches it."""
    tree = str(tmp_path / 'data')
    shutil.copytree(fixture_tree, tree)
    f = snapshot_tables([tree], FIXTURE_TAG)[('legacy_tables', 'legacy_mc_clust')]['mc-1-big-Data.db']
    os.unlink(f)  # break the hard link: change only the snapshot's copy
    b = bytearray(read(snapshot_tables([fixture_tree], FIXTURE_TAG)[('legacy_tables', 'legacy_mc_clust')]['mc-1-big-Data.db']))
    b[len(b) // 2] ^= 0x01
    open(f, 'wb').write(b)
    cb('create', '--store', store, '--name', 'rot', '--data-dir', tree, '--snapshot', FIXTURE_TAG,
       '--table', 'legacy_tables.legacy_mc_clust', '--table', 'legacy_tables.legacy_mc_simple')
    p = cb('verify', '--store', store, 'rot', check=False)
    assert p.returncode == 1
    assert 'FAILED  rot legacy_tables.legacy_mc_clust' in p.stdout
    assert 'mc-1-big-Data.db: CRC32 is' in p.stdout
    assert 'ok      rot legacy_tables.legacy_mc_simple' in p.stdout


def rewrite_frame(pack, member_offset, fn):
    """Replaces the zstd frame holding tar-stream offset member_offset by a *valid* frame of
    changed content (fn(bytes) -> bytes, same length): damage zstd's checksum cannot see. The
    pack stays a consistent format-2 pack (pack.h): its seek table describes the new frame and
    the trailer holds the new table's SHA-256, as a careful forger would leave it. Returns True
    when the seek table changed (the new frame's length differs), False when only the frame's
    bytes did (a re-encoded frame of the same length)."""
    import hashlib
    from conftest import seek_entry_size
    data = read(pack)
    n, es = int.from_bytes(data[-9:-5], 'little'), seek_entry_size(data)
    tsize = 8 + es * n + 9
    trailer = data[len(data) - tsize - 64:len(data) - tsize]
    base = len(data) - 9 - es * n
    entries = [(int.from_bytes(data[base + es * i:][:4], 'little'),
                int.from_bytes(data[base + es * i + 4:][:4], 'little')) for i in range(n)]
    coff = doff = 0
    out, new_entries, sums = b'', [], []
    for c, d in entries:
        frame = data[coff:coff + c]
        if doff <= member_offset < doff + d:
            plain = subprocess.run(['zstd', '-dc'], input=frame, capture_output=True, check=True).stdout
            plain = fn(plain, member_offset - doff)
            frame = subprocess.run(['zstd', '-3', '-c', '--check', '--content-size'], input=plain,
                                   capture_output=True, check=True).stdout
        out += frame
        new_entries.append((len(frame), d))
        sums.append(frame[-4:] if es == 12 else b'')  # the new frame's own checksum
        coff += c
        doff += d
    st = b''.join(c.to_bytes(4, 'little') + d.to_bytes(4, 'little') + x for (c, d), x in zip(new_entries, sums))
    footer = n.to_bytes(4, 'little') + data[-5:-4] + (0x8F92EAB1).to_bytes(4, 'little')
    table = (0x184D2A5E).to_bytes(4, 'little') + (len(st) + 9).to_bytes(4, 'little') + st + footer
    out += trailer[:32] + hashlib.sha256(table).digest() + table
    open(pack, 'wb').write(out)
    return new_entries != entries


def test_verify_flipped_byte_in_other_component_via_sha256(real_backup):
    store, tree = real_backup
    [pack] = packs(store)
    db = os.path.join(store, 'catalog.db')
    import sqlite3
    con = sqlite3.connect(db)
    [(off,)] = con.execute(
        "SELECT b.offset FROM files f JOIN blobs b ON b.id = f.blob_id JOIN tables t ON t.id = f.table_row "
        "WHERE t.name = 'legacy_oa_clust' AND f.name = 'oa-1-big-Index.db' AND f.backup_id = 1").fetchall()
    con.close()

    def flip(plain, at):
        b = bytearray(plain)
        b[at + 5] ^= 0x20
        return bytes(b)

    rewrite_frame(pack, off, flip)
    run('zstd', '-t', '-q', pack)  # still a valid zstd stream: only SHA-256 can tell
    p = cb('verify', '--store', store, 'real', check=False)
    assert p.returncode == 1
    bad = [l for l in p.stdout.splitlines() if not l.startswith('ok ')]
    assert bad[0].startswith('FAILED  real legacy_tables.legacy_oa_clust')
    assert 'oa-1-big-Index.db: SHA-256 differs' in bad[1]
    assert len([l for l in p.stdout.splitlines() if l.startswith('FAILED')]) == 1


def test_verify_missing_toc_component_and_manifest_entry(store, sample_tree, tmp_path):
    tree = str(tmp_path / 'data')
    shutil.copytree(sample_tree, tree, symlinks=True)
    dirs = sample_dirs(tree)
    files = snapshot_tables(dirs, 'nightly-1')[('shop', 'table1')]
    os.unlink(files['nb-1-big-Filter.db'])
    cb('create', '--store', store, '--name', 'holes', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--table', 'shop.table1')
    # create refuses a snapshot missing a Data.db its manifest.json lists, so the hole is made
    # in the store, as damage (or an older cassbackup) would leave it
    con = sqlite3.connect(os.path.join(store, 'catalog.db'))
    with con:
        assert con.execute("DELETE FROM files WHERE name = 'nb-2-big-Data.db'").rowcount == 1
    con.close()
    p = cb('verify', '--store', store, 'holes', check=False)
    assert p.returncode == 1
    assert 'nb-1-big-TOC.txt lists nb-1-big-Filter.db, which is missing' in p.stdout
    assert 'manifest.json lists nb-2-big-Data.db, which is missing' in p.stdout
    assert 'nb-2-big-Digest.crc32 has no nb-2-big-Data.db to check' in p.stdout


def test_verify_bad_input(store):
    p = cb('verify', '--store', store, 'nope', check=False)
    assert p.returncode == 3 and 'backup nope: no such backup' in p.stderr
    assert cb('verify', '--store', store, check=False).returncode == 2


# --- restore --------------------------------------------------------------------------------

def test_restore_into_new_node_then_import(real_backup, tmp_path):
    store, tree = real_backup
    live = live_node(str(tmp_path / 'live'), tree, FIXTURE_TAG)
    nlog = str(tmp_path / 'nodetool.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=live)
    r = cb('restore', '--store', store, 'real', '--data-dir', live, '--keyspace', 'test_ks',
           '--table', 'legacy_tables.legacy_na_clust', '--import', '--nodetool', NODETOOL, env=env)
    assert 'imported real: 2 of 2 tables' in r.stdout
    calls = [c for c in log_lines(nlog) if c['cmd'] == 'import']
    assert [(c['cmd'], c['args'][:2]) for c in calls] == [('import', ['legacy_tables', 'legacy_na_clust']),
                                                         ('import', ['test_ks', 'test_table'])]
    src = snapshot_tables([tree], FIXTURE_TAG)[('test_ks', 'test_table')]
    dst = os.path.join(live, 'test_ks', 'test_table-0123456789abcdef0123456789abcdef')
    assert sorted(os.listdir(dst)) == sorted(n for n in src if n not in ('manifest.json', 'schema.cql'))
    for n in os.listdir(dst):
        assert read(os.path.join(dst, n)) == read(src[n])
        if not n.endswith('-Statistics.db'):  # rewritten by import, as Cassandra does
            assert os.stat(os.path.join(dst, n)).st_mtime_ns == os.stat(src[n]).st_mtime_ns
    cb('verify', '--store', store, '--dir', dst, '--against', 'real/test_ks/test_table')


def test_restore_renames_colliding_sstables_and_is_idempotent(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--keyspace', 'shop')
    live = str(tmp_path / 'live')
    tdir = os.path.join(live, 'shop', 'orders-' + 'c' * 32)
    os.makedirs(os.path.join(tdir, '.orders_by_customer_idx'))
    for t in ('table1', 'table2'):
        os.makedirs(os.path.join(live, 'shop', f'{t}-' + 'c' * 32))
    # the live table already has an nb-1 and nb-2 of its own (other data), and nb-5
    for g in (1, 2, 5):
        for comp in ('Data.db', 'TOC.txt'):
            open(os.path.join(tdir, f'nb-{g}-big-{comp}'), 'w').write(f'live {g}\n')
    before = {n: read(os.path.join(tdir, n)) for n in os.listdir(tdir) if n.startswith('nb-')}
    plan = cb('restore', '--store', store, 'b', '--data-dir', live, '--dry-run').stdout
    assert 'rename  nb-1-big -> nb-6-big' in plan and 'rename  nb-2-big -> nb-7-big' in plan
    assert sorted(os.listdir(tdir)) == sorted(list(before) + ['.orders_by_customer_idx'])  # nothing written
    r = cb('restore', '--store', store, 'b', '--data-dir', live).stdout
    assert '2 sstables under new generations' in r
    for n, content in before.items():  # live files untouched
        assert read(os.path.join(tdir, n)) == content
    src = snapshot_tables(dirs, 'nightly-1')[('shop', 'orders')]
    for g_old, g_new in ((1, 6), (2, 7)):
        for rel, p in src.items():
            if rel.startswith(f'nb-{g_old}-big-'):
                assert read(os.path.join(tdir, rel.replace(f'nb-{g_old}-', f'nb-{g_new}-'))) == read(p)
    idx = os.listdir(os.path.join(tdir, '.orders_by_customer_idx'))
    assert len(idx) == 16 and not any(n.startswith('.cassbackup') for n in os.listdir(tdir))
    cb('verify', '--store', store, '--dir', tdir, '--against', 'b/shop/orders')
    # twice: nothing copied, nothing duplicated
    snapshot_before = sorted(os.listdir(tdir))
    r2 = cb('restore', '--store', store, 'b', '--data-dir', live).stdout
    assert 'restored b: 3 tables, 0 files' in r2 and sorted(os.listdir(tdir)) == snapshot_before
    assert 'next: nodetool import shop orders ' + tdir in r2


def test_restore_missing_table_prints_schema_and_writes_nothing(real_backup, tmp_path):
    store, tree = real_backup
    live = live_node(str(tmp_path / 'live'), tree, FIXTURE_TAG)
    shutil.rmtree(os.path.join(live, 'test_ks'))
    p = cb('restore', '--store', store, 'real', '--data-dir', live, check=False)
    assert p.returncode == 1
    assert 'table test_ks.test_table: no table directory' in p.stderr and 'create the table first' in p.stderr
    assert 'CREATE TABLE IF NOT EXISTS test_ks.test_table' in p.stderr
    assert p.stderr.rstrip().endswith('nothing was restored')
    assert all(not files for _, _, files in os.walk(live))


def test_restore_two_candidate_dirs_refuses_until_chosen(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--table', 'shop.table1')
    live = str(tmp_path / 'live')
    old, new = (os.path.join(live, 'shop', f'table1-{c * 32}') for c in 'ab')
    os.makedirs(old)
    os.makedirs(new)
    p = cb('restore', '--store', store, 'b', '--data-dir', live, check=False)
    assert p.returncode == 1 and '2 table directories' in p.stderr and old in p.stderr and new in p.stderr
    assert '--table-dir shop.table1=PATH' in p.stderr
    assert os.listdir(old) == [] and os.listdir(new) == []
    cb('restore', '--store', store, 'b', '--data-dir', live, '--table-dir', f'shop.table1={new}')
    assert os.listdir(old) == [] and len(os.listdir(new)) == 16


def jbod_node_lost_its_table(store, root, *sample_args):
    """A node of two data directories (Cassandra makes the table's directory in each, under one
    id), backed up as b, then the table's files lost in both: (d1, d2, t1, t2), the data
    directories and the table's directory in each."""
    src = make_sample(str(root), '--data-dirs', '2', '--keyspaces', '1', '--tables', '1',
                      '--sstables', '2', '--data-kib', '64', '--no-clutter', '--tag', 't', *sample_args)
    d1, d2 = (os.path.join(src, f'data{i}') for i in (1, 2))
    cb('create', '--store', store, '--name', 'b', '--data-dir', d1, '--data-dir', d2, '--snapshot', 't')
    t1, t2 = (os.path.join(d, 'shop', n) for d in (d1, d2) for n in os.listdir(os.path.join(d, 'shop')))
    assert os.path.basename(t1) == os.path.basename(t2)
    for t in (t1, t2):
        for n in os.listdir(t):
            if n != 'snapshots':
                (shutil.rmtree if os.path.isdir(os.path.join(t, n)) else os.unlink)(os.path.join(t, n))
    return d1, d2, t1, t2


def test_restore_into_a_node_of_several_data_directories(store, tmp_path):
    """Cassandra makes a table's directory in every data directory, under one id (JBOD):
    restore refused every table as 'dropped and re-created?'. It now copies into the first
    data directory's, and an sstable name taken in another (Cassandra keeps generations unique
    across them) gets a generation above every one of them."""
    d1, d2, t1, t2 = jbod_node_lost_its_table(store, tmp_path / 'node')
    planted = {'nb-1-big-Data.db': b'other bytes\n', 'nb-7-big-Data.db': b'a later flush\n'}
    for n, b in planted.items():
        open(os.path.join(t2, n), 'wb').write(b)
    r = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2)
    assert 'next: nodetool import shop orders ' + t1 in r.stdout, r.stdout
    assert sorted(n for n in os.listdir(t2) if n != 'snapshots') == sorted(planted)
    for n, b in planted.items():
        assert read(os.path.join(t2, n)) == b
    restored = {n for n in os.listdir(t1) if n.endswith('Data.db')}
    assert restored == {'nb-2-big-Data.db', 'nb-8-big-Data.db'}, restored
    snap = snapshot_tables([d1, d2], 't')[('shop', 'orders')]
    assert read(os.path.join(t1, 'nb-8-big-Data.db')) == read(snap['nb-1-big-Data.db'])
    assert read(os.path.join(t1, 'nb-2-big-Data.db')) == read(snap['nb-2-big-Data.db'])
    # killed while placing the renamed sstable (its Data.db and its last component not there
    # yet): the next run completes it in place, rather than copy it once more as nb-9
    whole = sorted(os.listdir(t1))
    renamed = sorted(n for n in whole if n.startswith('nb-8-big-'))
    os.unlink(os.path.join(t1, 'nb-8-big-Data.db'))
    os.unlink(os.path.join(t1, [n for n in renamed if n != 'nb-8-big-Data.db'][-1]))
    plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run').stdout
    assert 'resume  nb-1-big' in plan and 'nb-9' not in plan, plan
    # unless a flush took that generation in the other data directory since: then what the
    # killed run left is removed, and the sstable copied under a generation of its own
    open(os.path.join(t2, 'nb-8-big-Data.db'), 'wb').write(b'a flush since\n')
    plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run').stdout
    assert 'rename  nb-1-big -> nb-9-big' in plan and 'removing what a killed restore left as generation 8' in plan, plan
    cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2)
    assert sorted(os.listdir(t1)) == sorted(n.replace('nb-8-', 'nb-9-') for n in whole)
    assert read(os.path.join(t2, 'nb-8-big-Data.db')) == b'a flush since\n'
    for n in renamed:
        assert read(os.path.join(t1, n.replace('nb-8-', 'nb-9-'))) == read(snap[n.replace('nb-8-', 'nb-1-')])
    os.unlink(os.path.join(t2, 'nb-8-big-Data.db'))
    for n in renamed:
        os.rename(os.path.join(t1, n.replace('nb-8-', 'nb-9-')), os.path.join(t1, n))
    assert sorted(os.listdir(t1)) == whole
    # a node that lost one disk: what the other still holds, byte for byte, is not copied again
    shutil.rmtree(t1)
    os.mkdir(t1)
    for n in os.listdir(t2):
        os.unlink(os.path.join(t2, n)) if n in planted else None
    for rel, src in snap.items():
        if rel.startswith('nb-2-big-'):
            shutil.copyfile(src, os.path.join(t2, rel))
    plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run').stdout
    assert f'skip    nb-2-big: already present in {t2}' in plan and 'copy    nb-1-big' in plan, plan
    # the other data directory's table directory a symlink (to another disk): it counts too
    elsewhere = str(tmp_path / 'disk3')
    shutil.move(t2, elsewhere)
    os.symlink(elsewhere, t2)
    open(os.path.join(elsewhere, 'nb-1-big-Data.db'), 'wb').write(b'other bytes\n')
    plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run').stdout
    assert 'rename  nb-1-big -> nb-3-big' in plan and 'already present in' in plan, plan
    # a table dropped and re-created in data1: --table-dir picks one, and the other data
    # directory's directory of the same id still counts
    os.makedirs(os.path.join(d1, 'shop', 'orders-' + 'e' * 32))
    p = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run', check=False)
    assert p.returncode == 1 and 'was it dropped and re-created?' in p.stderr, p.stderr
    plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run',
              '--table-dir', f'shop.orders={t1}/').stdout
    assert 'rename  nb-1-big -> nb-3-big' in plan and 'already present in' in plan, plan
    shutil.rmtree(os.path.join(d1, 'shop', 'orders-' + 'e' * 32))
    # the target a symlink to a directory of another name (a faster disk): its namesakes in the
    # other data directories are found by the name it has in its data directory
    ssd = str(tmp_path / 'ssd' / 'orders_on_ssd')
    os.makedirs(os.path.dirname(ssd))
    shutil.move(t1, ssd)
    os.symlink(ssd, t1)
    plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run').stdout
    assert 'rename  nb-1-big -> nb-3-big' in plan and 'already present in' in plan, plan


def test_restore_import_into_a_node_of_several_data_directories(store, tmp_path):
    """--import on a node with two data directories: the stage is on the first's file system,
    nodetool import (the stand-in, as Cassandra, keeps generations unique across the table's
    data directories) takes the sstables, and nothing is left staged."""
    d1, d2, t1, t2 = jbod_node_lost_its_table(store, tmp_path / 'node', '--no-index')
    open(os.path.join(t2, 'nb-1-big-Data.db'), 'wb').write(b'other bytes\n')
    env = dict(os.environ, NODETOOL_STANDIN_DATA_DIRS=f'{d1}:{d2}')
    cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--import', '--nodetool', NODETOOL,
       env=env)
    data1 = sorted(n for n in os.listdir(t1) if n.endswith('-Data.db'))
    assert len(data1) == 2 and 'nb-1-big-Data.db' not in data1, data1
    assert sorted(n for n in os.listdir(t2) if n != 'snapshots') == ['nb-1-big-Data.db']
    assert not [n for n in os.listdir(d1) if n.startswith('.cassbackup-import-')]


def table2_backup_and_live_dir(store, sample_tree, tmp_path):
    """Backup b of table shop.table2 in store, and a node's data directory with an empty
    table directory for it: (data directory, table directory)."""
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--table', 'shop.table2')
    live = str(tmp_path / 'live')
    t = os.path.join(live, 'shop', 'table2-' + 'd' * 32)
    os.makedirs(t)
    return live, t


def test_restore_import_run_again_imports_nothing_twice(store, sample_tree, tmp_path):
    """nodetool import rewrites each sstable's Statistics.db (level and repair state reset):
    for a leveled table above level 0 its bytes change, and a restore --import run again (as
    its own failure line tells the operator to) took the imported sstables for others and
    imported every one a second time."""
    live, t = table2_backup_and_live_dir(store, sample_tree, tmp_path)
    env = dict(os.environ, NODETOOL_STANDIN_DATA_DIRS=live, NODETOOL_STANDIN_LEVELED='1')
    args = ('restore', '--store', store, 'b', '--data-dir', live, '--import', '--nodetool', NODETOOL)
    cb(*args, env=env)
    first = sorted(os.listdir(t))
    assert len([n for n in first if n.endswith('-Data.db')]) == 2, first
    out = cb(*args, env=env).stdout
    assert sorted(os.listdir(t)) == first, out
    assert '2 sstables already present' in out, out
    # Cassandra resamples an sstable's index summary and saves Summary.db again: the same
    summary = sorted(n for n in first if n.endswith('-Summary.db'))[0]
    with open(os.path.join(t, summary), 'ab') as f:
        f.write(b'resampled')
    out = cb(*args, env=env).stdout
    assert sorted(os.listdir(t)) == first and '2 sstables already present' in out, out
    # and verify takes it as Cassandra's, as restore does (it said the file was missing)
    out = cb('verify', '--store', store, '--dir', t, '--against', 'b/shop/table2', '--imported').stdout
    assert '(1 Summary.db saved again by Cassandra: index summary resampled)' in out, out
    # an empty one is damage, not Cassandra's rewrite: for verify and for restore
    os.truncate(os.path.join(t, summary), 0)
    p = cb('verify', '--store', store, '--dir', t, '--against', 'b/shop/table2', '--imported', check=False)
    assert p.returncode == 1 and summary in p.stdout, p.stdout
    out = cb(*args, env=env).stdout
    assert '8 files (' in out and '1 sstables already present' in out, out
    # and an sstable whose Data.db differs is another
    data = sorted(n for n in os.listdir(t) if n.endswith('-Data.db'))[-1]  # the one just imported
    with open(os.path.join(t, data), 'r+b') as f:
        f.write(b'X')
    out = cb(*args, env=env).stdout
    assert '8 files (' in out and '1 sstables already present' in out, out


def test_a_kill_while_removing_a_killed_runs_leftover_leaves_it_findable(store, tmp_path):
    """A restore killed while placing sstable nb-1 renamed as nb-3 (its Data.db and last
    component not placed); since, the other data directory took generation 3 in another
    format (oa-3, a flush after an upgrade: it was not seen, and nb-3 was completed beside
    it). The next run removes the leftover, and is killed after its first removal: it removed
    the first component, the one the next run finds a leftover by, and the rest stayed for
    good. Removal goes last component first."""
    # under a directory "backups": where the killat shim counts removals
    d1, d2, t1, t2 = jbod_node_lost_its_table(store, tmp_path / 'backups' / 'node', '--no-index')
    open(os.path.join(t2, 'nb-1-big-Data.db'), 'wb').write(b'other bytes\n')
    cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2)
    renamed = sorted(n for n in os.listdir(t1) if n.startswith('nb-3-big-'))
    assert len(renamed) == 8, os.listdir(t1)
    os.unlink(os.path.join(t1, 'nb-3-big-Data.db'))
    os.unlink(os.path.join(t1, [n for n in renamed if n != 'nb-3-big-Data.db'][-1]))
    open(os.path.join(t2, 'oa-3-big-Data.db'), 'wb').write(b'a flush since\n')
    plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run').stdout
    assert 'rename  nb-1-big -> nb-4-big' in plan and 'removing what a killed restore left as generation 3' in plan, plan
    from conftest import preload
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_KILL_AT_UNLINK='1',
               CASSBACKUP_TEST_KILL_AFTER='1')
    p = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, env=env, check=False)
    assert p.returncode == -9, (p.returncode, p.stderr)
    cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2)
    left = sorted(os.listdir(t1))
    assert not [n for n in left if n.startswith('nb-3-')], left
    assert len([n for n in left if n.startswith('nb-4-big-')]) == 8 and read(os.path.join(t2, 'oa-3-big-Data.db')) == b'a flush since\n'


def test_a_killed_runs_leftover_beside_another_version_of_its_generation(store, tmp_path):
    """A leftover of a killed run in the target, whose generation a flush in another sstable
    version took in the target itself since (an oa-3 beside a half-placed nb-3): under a
    renamed generation it was no longer recognised and stayed for good; under its own name it
    was completed, two sstables of one generation. Now each is removed and the sstable copied
    under a fresh generation; the other version's files are left alone."""
    d1, d2, t1, t2 = jbod_node_lost_its_table(store, tmp_path / 'node', '--no-index')
    open(os.path.join(t2, 'nb-1-big-Data.db'), 'wb').write(b'other bytes\n')
    cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2)
    for gen, own, fresh in ((3, 'nb-1-big', 4), (2, 'nb-2-big', 5)):
        os.unlink(os.path.join(t1, f'nb-{gen}-big-Data.db'))
        os.unlink(os.path.join(t1, f'nb-{gen}-big-TOC.txt'))
        open(os.path.join(t1, f'oa-{gen}-big-Data.db'), 'wb').write(b'a flush since\n')
        plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run').stdout
        assert f'rename  {own} -> nb-{fresh}-big' in plan and 'removing what a killed restore left' in plan, plan
        cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2)
        left = os.listdir(t1)
        assert not [n for n in left if n.startswith(f'nb-{gen}-')], left
        assert len([n for n in left if n.startswith(f'nb-{fresh}-big-')]) == 8, left
        assert read(os.path.join(t1, f'oa-{gen}-big-Data.db')) == b'a flush since\n'


def test_jbod_restore_sees_the_table_through_dot_paths_and_symlinked_indexes(store, tmp_path):
    """--table-dir T/. lost the table's other data directories (matched by the name '.'), and an
    index directory of another data directory that is a symlink (to another disk) was taken
    for absent: generations were copied that those already had."""
    d1, d2, t1, t2 = jbod_node_lost_its_table(store, tmp_path / 'node')
    open(os.path.join(t2, 'nb-1-big-Data.db'), 'wb').write(b'other bytes\n')
    plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run',
              '--table-dir', f'shop.orders={t1}/.').stdout
    assert 'rename  nb-1-big -> nb-3-big' in plan, plan
    disk = tmp_path / 'disk3' / 'idx'
    disk.mkdir(parents=True)
    (disk / 'nb-1-big-Data.db').write_bytes(b'index bytes of another\n')
    os.symlink(disk, os.path.join(t2, '.orders_by_customer_idx'))
    plan = cb('restore', '--store', store, 'b', '--data-dir', d1, '--data-dir', d2, '--dry-run').stdout
    assert 'rename  .orders_by_customer_idx/nb-1-big -> nb-3-big' in plan, plan


def test_restore_and_load_leave_the_system_keyspaces_out(store, tmp_path):
    """Backups made with --include-system (as `backup` and the timers make them) brought the
    node's system and system_schema tables back into a live node with a plain restore, a
    point-in-time one included, and load streamed them to another cluster. Only the tables
    named, or with nothing named the user keyspaces, are taken; a node's own keyspaces go back
    only with --whole-node."""
    src = make_sample(str(tmp_path / 'node'), '--keyspaces', '3', '--tables', '1', '--sstables', '1',
                      '--data-kib', '16', '--no-clutter', '--tag', 't')
    d = os.path.join(src, 'data1')
    os.rename(os.path.join(d, 'shop1'), os.path.join(d, 'system'))
    os.rename(os.path.join(d, 'shop2'), os.path.join(d, 'system_auth'))
    cb('create', '--store', store, '--name', 'b', '--data-dir', d, '--snapshot', 't', '--include-system')
    plan = cb('restore', '--store', store, 'b', '--data-dir', d, '--dry-run').stdout
    assert 'shop.orders ->' in plan and not [ln for ln in plan.splitlines() if ln.startswith('system')], plan
    assert 'note: 2 tables of the system keyspaces left out' in plan
    plan = cb('restore', '--store', store, 'b', '--data-dir', d, '--dry-run', '--keyspace', 'system_auth').stdout
    assert 'system_auth.orders' in plan and 'shop.orders' not in plan, plan
    for ks in ('system', 'system_schema'):
        p = cb('restore', '--store', store, 'b', '--data-dir', d, '--keyspace', ks, check=False)
        assert p.returncode == 2 and f'keyspace {ks}: a node\'s own tables' in p.stderr, p.stderr
        assert '--whole-node' in p.stderr
    state = tmp_path / 'state'
    state.mkdir()
    env = dict(os.environ, SSTABLELOADER_STANDIN_STATE=str(state),
               SSTABLELOADER_STANDIN_LOG=str(tmp_path / 'loader.log'))
    r = cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, env=env)
    assert 'note: 2 tables of the system keyspaces left out' in r.stdout, r.stdout
    assert [(c['keyspace'], c['table']) for c in log_lines(str(tmp_path / 'loader.log'))] == [('shop', 'orders')]
    p = cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--keyspace', 'system',
           env=env, check=False)
    assert p.returncode == 2 and "keyspace system: a node's own tables" in p.stderr, p.stderr


def test_restore_owner_and_refresh(store, sample_tree, tmp_path):
    live, t = table2_backup_and_live_dir(store, sample_tree, tmp_path)
    os.chown(t, 65534, 65534)  # default owner: the table directory's
    nlog = str(tmp_path / 'n.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=live)
    cb('restore', '--store', store, 'b', '--data-dir', live, '--refresh', '--nodetool', NODETOOL, env=env)
    assert {(os.stat(os.path.join(t, n)).st_uid, os.stat(os.path.join(t, n)).st_gid) for n in os.listdir(t)} == {(65534, 65534)}
    assert [(c['cmd'], c['args']) for c in changes(nlog)] == [('refresh', ['shop', 'table2'])]
    t2 = os.path.join(str(tmp_path / 'live2'), 'shop', 'table2-' + 'd' * 32)
    os.makedirs(t2)
    cb('restore', '--store', store, 'b', '--data-dir', str(tmp_path / 'live2'), '--owner', 'nobody:daemon')
    assert {os.stat(os.path.join(t2, n)).st_gid for n in os.listdir(t2)} == {1}
    # a user given by number takes its primary group as by name (it took the group of the same
    # number: Debian's cassandra is often 111:115)
    user = next(u for u in pwd.getpwall() if u.pw_uid != u.pw_gid and 0 < u.pw_uid < 60000)
    shutil.rmtree(t2)
    os.makedirs(t2)
    cb('restore', '--store', store, 'b', '--data-dir', str(tmp_path / 'live2'), '--owner', str(user.pw_uid))
    assert {(os.stat(os.path.join(t2, n)).st_uid, os.stat(os.path.join(t2, n)).st_gid)
            for n in os.listdir(t2)} == {(user.pw_uid, user.pw_gid)}
    # nodetool refresh failing: the files stay, the exit says so
    env['NODETOOL_STANDIN_FAIL'] = 'refresh'
    env['NODETOOL_STANDIN_DATA_DIRS'] = str(tmp_path / 'live2')
    shutil.rmtree(t2)
    os.makedirs(t2)
    p = cb('restore', '--store', store, 'b', '--data-dir', str(tmp_path / 'live2'), '--refresh',
           '--nodetool', NODETOOL, env=env, check=False)
    assert p.returncode == 1 and 'exited with status 1' in p.stderr and len(os.listdir(t2)) == 16
    # nodetool import failing: Cassandra took nothing, the staging directory is gone
    env['NODETOOL_STANDIN_FAIL'] = 'import'
    shutil.rmtree(t2)
    os.makedirs(t2)
    p = cb('restore', '--store', store, 'b', '--data-dir', str(tmp_path / 'live2'), '--import',
           '--nodetool', NODETOOL, env=env, check=False)
    assert p.returncode == 1 and 'exited with status 1' in p.stderr and 'staging directory was removed' in p.stderr
    assert os.listdir(t2) == [] and sorted(os.listdir(tmp_path / 'live2')) == ['shop']


def test_restore_from_damaged_pack_leaves_no_partial_sstable(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--table', 'shop.orders')
    [pack] = packs(store)
    os.rename(pack, pack + '.away')
    live = str(tmp_path / 'live')
    t = os.path.join(live, 'shop', 'orders-' + 'e' * 32)
    os.makedirs(t)
    p = cb('restore', '--store', store, 'b', '--data-dir', live, check=False)
    assert p.returncode == 1 and 'pack file is missing' in p.stderr
    assert os.listdir(t) == [] or set(os.listdir(t)) == {'.orders_by_customer_idx'}


# --- load -----------------------------------------------------------------------------------

@pytest.fixture
def load_env(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    expect = {f'{ks}.{t}': {rel: sha(p) for rel, p in files.items()}
              for (ks, t), files in snapshot_tables(dirs, 'nightly-1').items()}
    ef = str(tmp_path / 'expect.json')
    json.dump(expect, open(ef, 'w'))
    state = tmp_path / 'state'
    state.mkdir()
    env = dict(os.environ, SSTABLELOADER_STANDIN_EXPECT=ef, SSTABLELOADER_STANDIN_STATE=str(state),
               SSTABLELOADER_STANDIN_LOG=str(tmp_path / 'loader.log'))
    return store, env, str(tmp_path / 'status.json'), str(tmp_path / 'loader.log'), expect


def test_load_streams_every_table(load_env):
    store, env, status, llog, expect = load_env
    r = cb('load', '--store', store, 'b', '--hosts', '10.0.0.1,10.0.0.2', '--sstableloader', LOADER,
           '--throttle', '100', '--parallel', '2', '--status-file', status, '--json', env=env)
    res = json.loads(r.stdout)
    assert res['backup'] == 'b' and len(res['tables']) == len(expect)
    assert all(t['status'] == 'ok' and t['attempts'] == 1 and t['started'] and t['finished']
               for t in res['tables'])
    assert json.load(open(status)) == res
    calls = log_lines(llog)
    assert sorted(f"{c['keyspace']}.{c['table']}" for c in calls) == sorted(expect)
    for c in calls:
        assert c['hosts'] == '10.0.0.1,10.0.0.2' and c['throttle'] == '100'
        assert c['dir'].endswith(f"/backups/b/{c['keyspace']}/{c['table']}")
    # the mount it made is gone again (its own: other tests may be loading beside this one)
    mnts = {c['dir'][:-len(f"/backups/b/{c['keyspace']}/{c['table']}")] for c in calls}
    assert len(mnts) == 1 and '/cassbackup-load-' in next(iter(mnts))
    assert not [l for l in open('/proc/self/mountinfo') if l.split()[4] in mnts]


def test_load_retries_and_rerun_skips_loaded_tables(load_env):
    store, env, status, llog, expect = load_env
    env1 = dict(env, SSTABLELOADER_STANDIN_FAIL='shop.table1:1')
    cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--retries', '2',
       '--retry-delay', '0', '--status-file', status, env=env1)
    t1 = [t for t in json.load(open(status))['tables'] if t['table'] == 'table1' and t['keyspace'] == 'shop'][0]
    assert t1['status'] == 'ok' and t1['attempts'] == 2

    os.unlink(status)
    open(llog, 'w').close()
    env2 = dict(env, SSTABLELOADER_STANDIN_FAIL='shop1.table2:always')
    p = cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--retries', '1',
           '--retry-delay', '0', '--status-file', status, env=env2, check=False)
    assert p.returncode == 1
    assert 'FAILED  shop1.table2 after 2 attempt(s): exit status 1: ERROR sstableloader: stream to h1 failed' in p.stdout
    st = {f"{t['keyspace']}.{t['table']}": t for t in json.load(open(status))['tables']}
    assert st['shop1.table2']['status'] == 'failed' and st['shop1.table2']['attempts'] == 2
    assert 'failed for shop1.table2' in st['shop1.table2']['last_error']
    assert sum(t['status'] == 'ok' for t in st.values()) == len(expect) - 1

    # re-run: only the failed table is attempted again
    open(llog, 'w').close()
    r = cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--status-file', status,
           '--retry-delay', '0', env=env)
    assert [f"{c['keyspace']}.{c['table']}" for c in log_lines(llog)] == ['shop1.table2']
    assert f'1 loaded, {len(expect) - 1} already loaded before (skipped), 0 failed' in r.stdout
    # --force loads everything again
    open(llog, 'w').close()
    cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--status-file', status,
       '--force', env=env)
    assert len(log_lines(llog)) == len(expect)


def test_load_target_keyspace_and_no_index_dirs(load_env, tmp_path):
    store, env, status, llog, expect = load_env
    env = dict(env, SSTABLELOADER_STANDIN_SOURCE_KEYSPACE='shop')
    with mounted(store, str(tmp_path / 'mnt')) as m:
        cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--status-file', status,
           '--table', 'shop.orders', '--target-keyspace', 'shop_copy', '--mount', m.mnt, env=env)
    [c] = log_lines(llog)
    assert (c['keyspace'], c['table']) == ('shop_copy', 'orders')
    assert c['subdirs'] == [] and not any(f.startswith('.') for f in c['files'])
    assert 'nb-1-big-Data.db' in c['files']


def test_load_target_keyspace_refuses_two_tables_of_one_name(load_env):
    """Both keyspaces of the backup have a table orders: with --target-keyspace, both were
    linked to one staging directory <target>/orders, the second taken for a retry of the first,
    so shop's sstables streamed twice and shop1's never, exit 0. Both would load into one
    table: refused before anything is streamed."""
    store, env, status, llog, expect = load_env
    assert {'shop.orders', 'shop1.orders'} <= set(expect)
    p = cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--status-file',
           status, '--target-keyspace', 'copy', env=env, check=False)
    assert p.returncode == 1 and p.stderr.count('\n') == 1
    assert 'tables shop.orders and shop1.orders would both load into copy.orders' in p.stderr
    assert log_lines(llog) == [] and not os.path.exists(status)


def test_load_into_another_target_keyspace_loads_again(load_env, tmp_path):
    """The record was keyed by the backup and the hosts: a load of the same backup into a second
    --target-keyspace said "2 already loaded before" and streamed nothing, exit 0. A load into
    the first keyspace again still skips what it loaded."""
    store, env, status, llog, expect = load_env
    env = dict(env, SSTABLELOADER_STANDIN_SOURCE_KEYSPACE='shop')
    for target in ('copy_a', 'copy_b', 'copy_a'):
        cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--keyspace',
           'shop', '--target-keyspace', target, '--state-dir', str(tmp_path / 'records'), env=env)
    tables = sorted(k.split('.', 1)[1] for k in expect if k.startswith('shop.'))
    assert sorted((c['keyspace'], c['table']) for c in log_lines(llog)) == \
        [(ks, t) for ks in ('copy_a', 'copy_b') for t in tables]


def test_a_record_that_does_not_name_its_keyspace_skips_nothing(load_env, tmp_path):
    """A record written before records named their target keyspace may be one of a load into
    another keyspace (--target-keyspace had the same record then): a load into the backed-up
    keyspace took its tables as loaded, streamed nothing, exit 0. Such a record skips none."""
    store, env, status, llog, expect = load_env
    args = ['load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--keyspace',
            'shop', '--status-file', status]
    cb(*args, env=env)
    first = len(log_lines(llog))
    record = json.load(open(status))
    del record['target_keyspace']  # as the older version wrote it
    json.dump(record, open(status, 'w'))
    cb(*args, env=env)
    assert len(log_lines(llog)) == 2 * first
    cb(*args, env=env)  # its own record, which names the keyspace, skips them again
    assert len(log_lines(llog)) == 2 * first


def test_load_bad_input(load_env):
    store, env, status, llog, _ = load_env
    p = cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--table', 'no.such',
           '--status-file', status, env=env, check=False)
    assert p.returncode == 1 and 'nothing to load' in p.stderr
    p = cb('load', '--store', store, 'b', '--hosts', 'h1', '--sstableloader', '/nonexistent/loader',
           '--retries', '0', '--table', 'shop.orders', '--status-file', status, env=env, check=False)
    assert p.returncode == 2 and 'cannot run /nonexistent/loader' in p.stderr  # checked before any work


# --- create --take-snapshot -----------------------------------------------------------------

def test_take_snapshot_then_always_clear(store, tmp_path):
    src = make_sample(str(tmp_path / 's'), '--data-kib', '64', '--no-clutter')
    dirs = sample_dirs(src)
    for d in dirs:  # a node before the snapshot: only live sstables
        for root, subdirs, _ in os.walk(d):
            if 'snapshots' in subdirs:
                shutil.rmtree(os.path.join(root, 'snapshots'))
                subdirs.remove('snapshots')
    nlog = str(tmp_path / 'n.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs))
    cb('create', '--store', store, '--name', 'snap', *data_dir_args(dirs), '--snapshot', 'cb-1',
       '--take-snapshot', '--nodetool', NODETOOL, '--keyspace', 'shop', env=env)
    assert [(c['cmd'], c['args']) for c in log_lines(nlog)] == [
        ('version', []), ('info', ['-T']), ('status', []), ('describecluster', []),
        ('snapshot', ['-t', 'cb-1', 'shop']), ('clearsnapshot', ['-t', 'cb-1'])]
    assert not any(r.endswith('/snapshots/cb-1') for d in dirs for r, _, _ in os.walk(d))  # no hard links left
    [b] = backup_list(store)
    assert b['tables'] == 3 and b['files'] > 40
    # a failure after the snapshot: it is cleared all the same
    open(nlog, 'w').close()
    p = cb('create', '--store', store, '--name', 'snap2', *data_dir_args(dirs), '--snapshot', 'cb-2',
           '--take-snapshot', '--nodetool', NODETOOL, '--table', 'shop.nosuch', '--table', 'shop.orders',
           env=env, check=False)
    assert p.returncode != 0 and 'table shop.nosuch: not found' in p.stderr
    assert [c['cmd'] for c in changes(nlog)] == ['snapshot', 'clearsnapshot']
    assert not any(r.endswith('/snapshots/cb-2') for d in dirs for r, _, _ in os.walk(d))
    assert len(backup_list(store)) == 1
    # the name check comes before any snapshot is taken
    open(nlog, 'w').close()
    p = cb('create', '--store', store, '--name', 'snap', *data_dir_args(dirs), '--snapshot', 'cb-3',
           '--take-snapshot', '--nodetool', NODETOOL, env=env, check=False)
    assert p.returncode == 1 and changes(nlog) == []


def live_sample(tmp_path):
    """A node before any snapshot: generated data directories holding only live sstables."""
    src = make_sample(str(tmp_path / 's'), '--data-kib', '16', '--no-clutter')
    dirs = sample_dirs(src)
    for d in dirs:
        for root, subdirs, _ in os.walk(d):
            if 'snapshots' in subdirs:
                shutil.rmtree(os.path.join(root, 'snapshots'))
                subdirs.remove('snapshots')
    return dirs


def snapshot_dirs(dirs, tag):
    return sorted(r for d in dirs for r, _, _ in os.walk(d) if r.endswith('/snapshots/' + tag))


def test_take_snapshot_on_a_stopped_node_says_none_was_taken(store, tmp_path):
    """nodetool snapshot fails (a stopped node: nothing answers on the JMX port): one line says
    the snapshot could not be taken, with what nodetool said, and claims no snapshot on disk;
    nothing is cleared (there is nothing of ours to clear)."""
    dirs = live_sample(tmp_path)
    nlog = str(tmp_path / 'n.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs),
               NODETOOL_STANDIN_DOWN='1')
    p = cb('create', '--store', store, '--name', 'snap', *data_dir_args(dirs), '--snapshot', 'cb-1',
           '--take-snapshot', '--nodetool', NODETOOL, env=env, check=False)
    assert p.returncode == 1
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert 'snapshot cb-1 could not be taken' in lines[0], lines[0]
    assert "nodetool: Failed to connect to '127.0.0.1:7199' - ConnectException: 'Connection refused'." in lines[0]
    assert 'on disk' not in lines[0] or 'no snapshots/cb-1' in lines[0], lines[0]
    assert 'by hand' not in lines[0] and 'still' not in lines[0]
    assert [c['cmd'] for c in changes(nlog)] == ['snapshot']
    assert backup_list(store) == [] and packs(store) == [] and snapshot_dirs(dirs, 'cb-1') == []


def test_take_snapshot_of_a_taken_tag_leaves_that_snapshot(store, tmp_path):
    """A snapshot by that tag is there already (the operator's): nodetool refuses the tag, and
    that snapshot is neither cleared nor called ours; it is named as left on disk."""
    dirs = live_sample(tmp_path)
    nlog = str(tmp_path / 'n.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs))
    run(NODETOOL, 'snapshot', '-t', 'keep', '-kt', 'shop.orders', env=env)
    theirs = snapshot_dirs(dirs, 'keep')
    assert theirs
    open(nlog, 'w').close()
    p = cb('create', '--store', store, '--name', 'snap', *data_dir_args(dirs), '--snapshot', 'keep',
           '--take-snapshot', '--nodetool', NODETOOL, env=env, check=False)
    assert p.returncode == 1
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert 'snapshot keep could not be taken' in lines[0] and 'already exists' in lines[0], lines[0]
    assert 'left as it is' in lines[0] and theirs[0] in lines[0], lines[0]
    assert [c['cmd'] for c in changes(nlog)] == ['snapshot']
    assert snapshot_dirs(dirs, 'keep') == theirs and backup_list(store) == []


def test_take_snapshot_backup_fails_clear_fails_names_the_snapshot(store, tmp_path):
    """The snapshot was taken, the backup failed and so did clearsnapshot: now, and only now,
    the snapshot is said to be left on disk, by its tag and where."""
    dirs = live_sample(tmp_path)
    nlog = str(tmp_path / 'n.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs),
               NODETOOL_STANDIN_FAIL='clearsnapshot')
    p = cb('create', '--store', store, '--name', 'snap', *data_dir_args(dirs), '--snapshot', 'cb-2',
           '--take-snapshot', '--nodetool', NODETOOL, '--table', 'shop.nosuch', '--table', 'shop.orders',
           env=env, check=False)
    assert p.returncode == 1 and 'table shop.nosuch: not found' in p.stderr
    [line] = [l for l in p.stderr.splitlines() if 'clearsnapshot' in l]
    left = snapshot_dirs(dirs, 'cb-2')
    assert left and 'snapshot cb-2 is still on disk' in line and left[0] in line, line
    assert "clear it with 'nodetool clearsnapshot -t cb-2'" in line, line
    assert [c['cmd'] for c in changes(nlog)] == ['snapshot', 'clearsnapshot']


# --- configuration --------------------------------------------------------------------------

def test_config_file_defaults_and_validate(store, sample_tree, tmp_path):
    dirs = sample_dirs(sample_tree)
    pw = tmp_path / 'pw'
    pw.write_text('secret\n')
    os.chmod(pw, 0o600)
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'# cassbackup\nstore = {store}\n' + ''.join(f'data_dir = {d}\n' for d in dirs) +
                    f'nodetool = {NODETOOL}\nnodetool_user = cassandra\nnodetool_password_file = {pw}\n'
                    f'sstableloader = {LOADER}\nhosts = 10.0.0.1,10.0.0.2\n')
    r = cb('--config', conf, 'validate-config')
    assert r.stdout.strip().endswith('0 problem(s)') and 'PROBLEM' not in r.stdout
    # flags override the file; the file fills in the rest
    cb('--config', conf, 'create', '--name', 'fromconf', '--snapshot', 'nightly-1')
    assert [b['name'] for b in json.loads(cb('list', '--json', '--config', conf).stdout)] == ['fromconf']

    bad = tmp_path / 'bad.conf'
    os.chmod(pw, 0o644)
    bad.write_text(f'store = {tmp_path}\ndata_dir = {tmp_path}/none\nnodetool = /bin/nonexistent-nodetool\n'
                   f'nodetool_password_file = {pw}\nhosts = a, b\n')
    p = cb('--config', bad, 'validate-config', check=False)
    assert p.returncode == 1
    problems = [l for l in p.stdout.splitlines() if l.startswith('PROBLEM')]
    assert len(problems) == 5
    assert 'not a cassbackup store' in problems[0] and 'No such file' in problems[1]
    assert 'no executable program' in problems[2] and 'readable by everyone' in problems[3]
    p = cb('--config', tmp_path / 'missing.conf', 'list', check=False)
    assert p.returncode == 2 and 'missing.conf: No such file or directory' in p.stderr
    typo = tmp_path / 'typo.conf'
    typo.write_text('stroe = /x\n')
    p = cb('--config', typo, 'list', check=False)
    assert p.returncode == 2 and "line 1: unknown key 'stroe'" in p.stderr
