"""restore: data safety and bad input (issue 6, defects 1, 2, 4, 8, 10, 11, 13, 14, 15, 18).

Every test restores a real backup (made by `cassbackup create` from generated or real
sstables) into a live-looking data directory and checks, file by file, what is there after.
"""
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import (FIXTURE_TAG, MOUNT, cb, data_dir_args, mounted, packs, read, run, sample_dirs,
                      snapshot_tables)

STANDINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'standins')
NODETOOL = os.path.join(STANDINS, 'nodetool')
HEX = '0123456789abcdef' * 2


def tree_files(root):
    """{relpath: bytes} of every file under root (symlinks as 'LINK->target')."""
    res = {}
    for r, dirs, names in os.walk(root):
        for n in names + [d for d in dirs if os.path.islink(os.path.join(r, d))]:
            p = os.path.join(r, n)
            res[os.path.relpath(p, root)] = ('LINK->' + os.readlink(p)).encode() if os.path.islink(p) else read(p)
    return res


def sstables_by_prefix(files):
    """{(dir, prefix): {component: bytes}} of a {relpath: bytes} map of sstable components."""
    res = {}
    for rel, data in files.items():
        d, n = os.path.split(rel)
        if '-big-' not in n or n.startswith('.'):
            continue
        prefix, comp = n.rsplit('-', 1)
        res.setdefault((d, prefix), {})[comp] = data
    return res


def assert_restored(tdir, backup_files, live_before):
    """Every backed-up sstable is in tdir byte for byte (under some generation, each under its
    own), every live file is untouched, and nothing else is there."""
    after = tree_files(tdir)
    for rel, data in live_before.items():
        assert after.get(rel) == data, f'live file {rel} changed'
    new = {rel: data for rel, data in after.items() if rel not in live_before}
    assert not [r for r in new if os.path.basename(r).startswith('.cassbackup')], 'temp files left'
    want = sstables_by_prefix({r: d for r, d in backup_files.items()
                               if r not in ('manifest.json', 'schema.cql')})
    have = sstables_by_prefix(new)
    used = set()
    for (d, prefix), comps in sorted(want.items()):
        match = [k for k, v in have.items() if k[0] == d and v == comps and k not in used]
        assert match, f'backed-up sstable {d}/{prefix} is not in the target byte for byte'
        used.add(match[0])
    assert used == set(have), f'unexpected sstables in the target: {set(have) - used}'


def sample_backup(store, sample_tree, *select):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1', *select)
    return snapshot_tables(dirs, 'nightly-1')


def live_with_tables(root, tables):
    """A data directory holding a system keyspace, as every started node does, and tables."""
    os.makedirs(os.path.join(root, 'system', 'local-' + '7ad54392bcdd35a684174e047860b377'))
    dirs = {}
    for ks, t in tables:
        dirs[(ks, t)] = os.path.join(root, ks, f'{t}-{HEX}')
        os.makedirs(dirs[(ks, t)], exist_ok=True)
    return dirs


def read_files(files):
    return {rel: read(p) for rel, p in files.items()}


# --- defect 1: colliding index sstables lost ------------------------------------------------

def test_colliding_index_sstables_all_restored(store, sample_tree, tmp_path):
    src = sample_backup(store, sample_tree, '--table', 'shop.orders')[('shop', 'orders')]
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'orders')])[('shop', 'orders')]
    idx = os.path.join(tdir, '.orders_by_customer_idx')
    os.makedirs(idx)
    for g in (1, 2):  # the live index already has an nb-1 and an nb-2 of its own
        for comp in ('Data.db', 'TOC.txt', 'Digest.crc32'):
            open(os.path.join(idx, f'nb-{g}-big-{comp}'), 'w').write(f'live index {g} {comp}\n')
    before = tree_files(tdir)
    r = cb('restore', '--store', store, 'b', '--data-dir', live)
    assert 'restored b: 1 tables' in r.stdout and '2 sstables under new generations' in r.stdout
    assert_restored(tdir, read_files(src), before)
    # the two index sstables got two different fresh generations
    assert sorted(n for n in os.listdir(idx) if n.endswith('-Data.db')) == [
        'nb-1-big-Data.db', 'nb-2-big-Data.db', 'nb-3-big-Data.db', 'nb-4-big-Data.db']
    r2 = cb('restore', '--store', store, 'b', '--data-dir', live)
    assert ', 0 files' in r2.stdout and tree_files(tdir).keys() == tree_files(tdir).keys()


def many_sstables_tree(root, n, index_dirs):
    """A snapshot of ks.t with n sstables in the table directory and n in each index dir."""
    sdir = os.path.join(root, 'ks', f't-{HEX}', 'snapshots', 'many')
    for d in [''] + index_dirs:
        os.makedirs(os.path.join(sdir, d), exist_ok=True)
        for g in range(1, n + 1):
            for comp in ('Data.db', 'TOC.txt'):
                with open(os.path.join(sdir, d, f'nb-{g}-big-{comp}'), 'w') as f:
                    f.write(f'backup {d} {g} {comp}\n' if comp == 'Data.db' else 'Data.db\nTOC.txt\n')
    with open(os.path.join(sdir, 'manifest.json'), 'w') as f:
        json.dump({'files': [f'nb-{g}-big-Data.db' for g in range(1, n + 1)]}, f)
    return sdir


def test_more_colliding_sstables_than_any_fixed_table(store, tmp_path):
    """75 colliding sstables in the table directory and in each of 70 index directories."""
    n, index_dirs = 75, [f'.i{k}_idx' for k in range(70)]
    sdir = many_sstables_tree(str(tmp_path / 'src'), n, index_dirs)
    cb('create', '--store', store, '--name', 'many', '--data-dir', str(tmp_path / 'src'), '--snapshot', 'many')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('ks', 't')])[('ks', 't')]
    for d in [''] + index_dirs:
        os.makedirs(os.path.join(tdir, d), exist_ok=True)
        for g in range(1, n + 1):
            for comp in ('Data.db', 'TOC.txt'):
                open(os.path.join(tdir, d, f'nb-{g}-big-{comp}'), 'w').write(f'live {d} {g} {comp}\n')
    before = tree_files(tdir)
    r = cb('restore', '--store', store, 'many', '--data-dir', live)
    assert f'{n * 71} sstables under new generations' in r.stdout
    backup = {os.path.relpath(os.path.join(dp, f), sdir): read(os.path.join(dp, f))
              for dp, _, fs in os.walk(sdir) for f in fs}
    assert_restored(tdir, backup, before)


def long_name_sstables_tree(root, n, index_dir):
    """A snapshot of ks.t whose n sstables, in the table directory and in index_dir, have
    components named with NAME_MAX (255) bytes: Data.db and TOC.txt each, plus a lone file of
    255 bytes in each directory. Returns the snapshot dir and {relpath: bytes}."""
    sdir = os.path.join(root, 'ks', f't-{HEX}', 'snapshots', 'long')
    files = {}
    for d in ('', index_dir):
        os.makedirs(os.path.join(sdir, d), exist_ok=True)
        for g in range(n):
            gen = f'{g:05d}' + 'x' * (255 - len('nb--big-Data.db') - 5)
            for comp in ('Data.db', 'TOC.txt'):
                name = f'nb-{gen}-big-{comp}'
                assert len(name.encode()) == 255
                files[os.path.join(d, name)] = (b'Data.db\nTOC.txt\n' if comp == 'TOC.txt' else
                                                f'{d} {g} '.encode() + os.urandom(64 + g))
        files[os.path.join(d, 'z' * 255)] = f'lone file in {d!r}\n'.encode()
    for rel, data in files.items():
        with open(os.path.join(sdir, rel), 'wb') as f:
            f.write(data)
    data_files = sorted(r for r in files if r.endswith('-Data.db'))
    with open(os.path.join(sdir, 'manifest.json'), 'w') as f:
        json.dump({'files': data_files}, f)
    return sdir, files


def test_names_of_name_max_bytes_restored(store, tmp_path):
    """Files whose names have NAME_MAX (255) bytes, several hundred of them, are restored byte
    for byte: a temporary name does not grow with the final name (it was the final name behind
    a prefix and a pid, longer than NAME_MAX: ENAMETOOLONG)."""
    n = 150
    sdir, files = long_name_sstables_tree(str(tmp_path / 'src'), n, '.t_by_v_idx')
    cb('create', '--store', store, '--name', 'long', '--data-dir', str(tmp_path / 'src'), '--snapshot', 'long')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('ks', 't')])[('ks', 't')]
    r = cb('restore', '--store', store, 'long', '--data-dir', live, check=False)
    assert r.returncode == 0, r.stderr
    assert f'{len(files)} files' in r.stdout, r.stdout
    after = tree_files(tdir)
    assert sorted(after) == sorted(files), 'missing or extra files (temporary files left?)'
    for rel, data in files.items():
        assert after[rel] == data, f'{rel[:40]}...: bytes differ'
    assert len([r for r in after if len(os.path.basename(r)) == 255]) == 4 * n + 2
    # a second run finds everything in place and writes nothing
    r2 = cb('restore', '--store', store, 'long', '--data-dir', live)
    assert ', 0 files' in r2.stdout and tree_files(tdir) == after


# --- defect 2 and 11: nodetool ----------------------------------------------------------------

def test_import_passes_nodetool_credentials(store, sample_tree, tmp_path):
    sample_backup(store, sample_tree, '--table', 'shop.table1')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'table1')])[('shop', 'table1')]
    pw = tmp_path / 'pw'
    pw.write_text('secret\n')
    os.chmod(pw, 0o600)
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'nodetool = {NODETOOL}\nnodetool_user = cassandra\nnodetool_password_file = {pw}\n')
    nlog = str(tmp_path / 'n.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=live)
    for mode in ('--import', '--refresh'):
        cb('--config', conf, 'restore', '--store', store, 'b', '--data-dir', live, mode, env=env)
    calls = [json.loads(l) for l in open(nlog) if json.loads(l)['cmd'] in ('import', 'refresh')]
    assert [(c['cmd'], c['opts']) for c in calls] == [
        ('import', {'-u': 'cassandra', '-pwf': str(pw)}), ('refresh', {'-u': 'cassandra', '-pwf': str(pw)})]
    # --import hands nodetool the staging directory (tests/test_import.py), which is gone after
    assert calls[0]['args'][:2] == ['shop', 'table1']
    assert re.fullmatch(re.escape(live) + r'/\.cassbackup-import-\d+/shop/table1', calls[0]['args'][2])
    assert not os.path.exists(calls[0]['args'][2]) and len(os.listdir(tdir)) == 16
    # without --import the command printed to run next carries them too
    r = cb('--config', conf, 'restore', '--store', store, 'b', '--data-dir', live)
    assert f'next: {NODETOOL} -u cassandra -pwf {pw} import shop table1 {tdir}' in r.stdout


@pytest.mark.parametrize('mode', ['--import', '--refresh'])
def test_no_runnable_nodetool_refuses_before_copying(store, sample_tree, tmp_path, mode):
    sample_backup(store, sample_tree, '--table', 'shop.table1')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'table1')])[('shop', 'table1')]
    notexec = tmp_path / 'nodetool-not-executable'
    notexec.write_text('#!/bin/sh\n')
    for nt, why in (('/nonexistent/nodetool', 'no such program'), (str(notexec), 'not an executable')):
        p = cb('restore', '--store', store, 'b', '--data-dir', live, mode, '--nodetool', nt, check=False)
        assert p.returncode == 2, p
        assert p.stderr.count('\n') == 1 and nt in p.stderr and why in p.stderr and 'nothing was restored' in p.stderr
        assert os.listdir(tdir) == []
    p = cb('restore', '--store', store, 'b', '--data-dir', live, mode, check=False,
           env=dict(os.environ, PATH='/nonexistent'))
    assert p.returncode == 2 and 'cannot run nodetool' in p.stderr and os.listdir(tdir) == []


# --- defect 13: not a data directory ----------------------------------------------------------

def test_data_dir_that_is_not_one_gets_one_line(store, sample_tree, tmp_path):
    sample_backup(store, sample_tree, '--keyspace', 'shop')
    live = str(tmp_path / 'live')
    dirs = live_with_tables(live, [('shop', t) for t in ('orders', 'table1', 'table2')])
    afile = tmp_path / 'afile'
    afile.write_text('x')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with mounted(store, str(tmp_path / 'mnt')) as m:
        for bad in (str(tmp_path / 'nonexistent'), os.path.join(live, 'shop'), dirs[('shop', 'orders')],
                    str(tmp_path), m.mnt, m.path('b'), str(afile), str(empty)):
            p = cb('restore', '--store', store, 'b', '--data-dir', bad, check=False)
            assert p.returncode == 2, (bad, p)
            assert p.stderr.count('\n') == 1, (bad, p.stderr)
            assert f'--data-dir {bad}: ' in p.stderr and 'CREATE TABLE' not in p.stderr
            why = ('No such file' if 'nonexistent' in bad else 'not a directory' if bad == str(afile)
                   else 'not a Cassandra data directory')
            assert why in p.stderr, (bad, p.stderr)
    assert not any(files for _, _, files in os.walk(live))


def test_new_node_with_only_system_keyspaces_gets_schema_advice(store, sample_tree, tmp_path):
    """A brand-new node: its data directory holds the system keyspaces only. It is a data
    directory; the tables are missing, and restore says to create them."""
    sample_backup(store, sample_tree, '--table', 'shop.table1')
    live = str(tmp_path / 'live')
    live_with_tables(live, [('system_schema', 'tables'), ('system_auth', 'roles')])
    p = cb('restore', '--store', store, 'b', '--data-dir', live, check=False)
    assert p.returncode == 1 and 'table shop.table1: no table directory' in p.stderr
    assert 'CREATE TABLE IF NOT EXISTS shop.table1' in p.stderr


# --- defect 4: stale errno --------------------------------------------------------------------

def test_table_dir_that_is_a_file_says_so(store, sample_tree, tmp_path):
    sample_backup(store, sample_tree, '--table', 'shop.table1')
    live = str(tmp_path / 'live')
    live_with_tables(live, [('shop', 'table1')])
    f = tmp_path / 'plainfile'
    f.write_text('x')
    p = cb('restore', '--store', store, 'b', '--data-dir', live, '--table-dir', f'shop.table1={f}', check=False)
    assert p.returncode == 1 and f'table directory {f}: not a directory' in p.stderr
    assert 'No such file' not in p.stderr and read(f) == b'x'


# --- defect 8: a lone file taken by other bytes ------------------------------------------------

def test_lone_file_taken_by_other_bytes_is_a_conflict(store, sample_tree, tmp_path):
    src_tree = str(tmp_path / 'src')
    shutil.copytree(sample_tree, src_tree, symlinks=True)
    dirs = sample_dirs(src_tree)
    src = snapshot_tables(dirs, 'nightly-1')[('shop', 'table1')]
    sdir = os.path.dirname(src['manifest.json'])
    open(os.path.join(sdir, 'operator-notes.txt'), 'w').write('from the backup\n')
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--table', 'shop.table1')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'table1')])[('shop', 'table1')]
    open(os.path.join(tdir, 'operator-notes.txt'), 'w').write('live, other bytes\n')
    before = tree_files(tdir)
    plan = cb('restore', '--store', store, 'b', '--data-dir', live, '--dry-run').stdout
    assert 'keep    operator-notes.txt: CONFLICT' in plan and 'already present' not in plan
    p = cb('restore', '--store', store, 'b', '--data-dir', live, check=False)
    assert p.returncode == 1 and '1 files not restored' in p.stderr and 'left as they are' in p.stderr
    assert read(os.path.join(tdir, 'operator-notes.txt')) == b'live, other bytes\n'
    files = read_files(src)
    files.pop('operator-notes.txt', None)
    assert_restored(tdir, files, before)
    # the same bytes: already present, not a conflict
    open(os.path.join(tdir, 'operator-notes.txt'), 'w').write('from the backup\n')
    r = cb('restore', '--store', store, 'b', '--data-dir', live)
    assert '0 files' in r.stdout and 'CONFLICT' not in r.stderr


# --- defect 14: damaged pack ------------------------------------------------------------------

@pytest.mark.parametrize('damage', ['missing', 'corrupt'])
def test_damaged_pack_points_at_verify(store, sample_tree, tmp_path, damage):
    sample_backup(store, sample_tree, '--table', 'shop.orders')
    [pack] = packs(store)
    if damage == 'missing':
        os.rename(pack, pack + '.away')
    else:
        b = bytearray(read(pack))
        for i in range(len(b) // 4, len(b) // 2):
            b[i] ^= 0x5a
        open(pack, 'wb').write(b)
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'orders')])[('shop', 'orders')]
    p = cb('restore', '--store', store, 'b', '--data-dir', live, check=False)
    assert p.returncode == 1
    assert 'run the same command again' not in p.stderr
    assert 'backup b is damaged' in p.stderr and f'cassbackup verify --store {store} b' in p.stderr
    assert ('pack file is missing' if damage == 'missing' else 'corrupt') in p.stderr
    assert not [n for _, _, fs in os.walk(tdir) for n in fs if n.startswith('.cassbackup')]


# --- defect 15: names from a hostile or damaged store -------------------------------------------

HOSTILE = {
    'keyspace ../escape_ks': "UPDATE keyspaces SET name = '../escape_ks' WHERE name = 'shop'",
    'index dir ../../../escape_idx': "UPDATE dirs SET name = '../../../escape_idx'",
    'table ..': "UPDATE tables SET name = '..' WHERE name = 'orders'",
    'index dir ..': "UPDATE dirs SET name = '..'",
    'file ../x': "UPDATE files SET name = '../escape-nb-1-big-Data.db' WHERE name = 'nb-1-big-Data.db'",
}


@pytest.mark.parametrize('edit', sorted(HOSTILE))
def test_hostile_catalog_names_write_nothing(store, sample_tree, tmp_path, edit):
    sample_backup(store, sample_tree, '--table', 'shop.orders')
    con = sqlite3.connect(os.path.join(store, 'catalog.db'))
    assert con.execute(HOSTILE[edit]).rowcount >= 1
    con.commit()
    con.close()
    root = tmp_path / 'root'
    live = str(root / 'data' / 'live')
    live_with_tables(live, [('shop', 'orders')])
    # where the unchecked names lead: make them exist, as they would on a real machine
    os.makedirs(root / 'data' / 'escape_ks' / f'orders-{HEX}')
    (root / 'escape_idx').mkdir()
    before = tree_files(str(root))
    p = cb('restore', '--store', store, 'b', '--data-dir', live, check=False)
    assert p.returncode != 0, p
    assert tree_files(str(root)) == before, 'restore wrote files'
    # The catalog refuses the name where it reads it (restore checks again before use).
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and 'damaged' in lines[0] and 'invalid' in lines[0] and 'name' in lines[0], lines


def test_symlinked_index_dir_in_target_is_not_followed(store, sample_tree, tmp_path):
    sample_backup(store, sample_tree, '--table', 'shop.orders')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'orders')])[('shop', 'orders')]
    outside = tmp_path / 'outside'
    outside.mkdir()
    os.symlink(outside, os.path.join(tdir, '.orders_by_customer_idx'))
    p = cb('restore', '--store', store, 'b', '--data-dir', live, check=False)
    assert p.returncode == 1 and 'a symlink or not a directory' in p.stderr
    assert os.listdir(outside) == [] and os.listdir(tdir) == ['.orders_by_customer_idx']


# --- defect 18: temp files of a killed restore ------------------------------------------------

def dead_pid():
    p = subprocess.Popen(['true'])
    p.wait()
    return p.pid


def test_rerun_removes_temp_files_of_dead_restores(store, sample_tree, tmp_path):
    src = sample_backup(store, sample_tree, '--table', 'shop.orders')[('shop', 'orders')]
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'orders')])[('shop', 'orders')]
    idx = os.path.join(tdir, '.orders_by_customer_idx')
    os.makedirs(idx)
    gone = dead_pid()
    stale = [os.path.join(tdir, f'.cassbackup-restore-{gone}-nb-1-big-Data.db'),  # names before
             os.path.join(idx, f'.cassbackup-restore-{gone}-nb-2-big-Index.db'),  # the counter
             os.path.join(tdir, f'.cassbackup-restore-{gone}-0'),
             os.path.join(idx, f'.cassbackup-restore-{gone}-17')]
    alive = os.path.join(tdir, f'.cassbackup-restore-{os.getpid()}-nb-1-big-TOC.txt')
    for f in stale + [alive]:
        open(f, 'w').write('half copied')
    r = cb('restore', '--store', store, 'b', '--data-dir', live)
    assert 'removed 4 temporary files left by an interrupted restore' in r.stdout
    assert not any(os.path.exists(f) for f in stale)
    assert os.path.exists(alive)  # its restore may still be running: not ours to remove
    os.unlink(alive)
    assert_restored(tdir, read_files(src), {})


def test_kill_9_mid_restore_then_rerun_finishes_clean(store, tmp_path):
    """A restore killed while writing (stopped by SIGSTOP inside its copy, then SIGKILL) leaves
    temporary files; the next run removes them and restores everything."""
    n = 40
    sdir = many_sstables_tree(str(tmp_path / 'src'), n, [])
    big = os.path.join(sdir, 'nb-1-big-Data.db')
    with open(big, 'wb') as f:
        f.write(os.urandom(64 << 20))
    cb('create', '--store', store, '--name', 'many', '--data-dir', str(tmp_path / 'src'), '--snapshot', 'many')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('ks', 't')])[('ks', 't')]
    from conftest import CASSBACKUP
    proc = subprocess.Popen([CASSBACKUP, 'restore', '--store', store, 'many', '--data-dir', live],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # wait (no time limit) until it has a temporary file open, then kill it hard
    while proc.poll() is None and not any(n.startswith('.cassbackup-restore-') for n in os.listdir(tdir)):
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    temps = [n for n in os.listdir(tdir) if n.startswith('.cassbackup-restore-')]
    if not temps:
        pytest.skip('restore finished before it could be killed')
    r = cb('restore', '--store', store, 'many', '--data-dir', live)
    assert 'temporary files left by an interrupted restore' in r.stdout
    backup = {os.path.relpath(os.path.join(dp, f), sdir): read(os.path.join(dp, f))
              for dp, _, fs in os.walk(sdir) for f in fs}
    assert_restored(tdir, backup, {})




def test_an_sstable_a_killed_restore_left_without_data_db_is_completed_in_place(store, sample_tree,
                                                                                tmp_path):
    """A restore killed between the renames of one sstable's components (Data.db goes last)
    left them without Data.db; the next run copied that sstable under a new generation and left
    the components it had placed for good, an orphan beside it. Those components, the backup's
    bytes, are now completed in place; one with other bytes is not, as before."""
    src = sample_backup(store, sample_tree, '--table', 'shop.orders')[('shop', 'orders')]
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'orders')])[('shop', 'orders')]
    cb('restore', '--store', store, 'b', '--data-dir', live)
    whole = tree_files(tdir)
    data = sorted(n for n in os.listdir(tdir) if n.endswith('-Data.db'))[0]
    prefix = data[:-len('Data.db')]
    # what the killed run left: every component renamed but Data.db, and one not yet
    os.unlink(os.path.join(tdir, data))
    others = sorted(n for n in os.listdir(tdir) if n.startswith(prefix))
    os.unlink(os.path.join(tdir, others[0]))
    r = cb('restore', '--store', store, 'b', '--data-dir', live, '--dry-run')
    assert f'  resume  {prefix[:-1]}: an interrupted restore left it without its Data.db' in r.stdout, r.stdout
    r = cb('restore', '--store', store, 'b', '--data-dir', live)
    assert '; 0 sstables under new generations' in r.stdout, r.stdout
    assert tree_files(tdir) == whole
    # a component there with other bytes: not ours to complete, a new generation as before
    os.unlink(os.path.join(tdir, data))
    with open(os.path.join(tdir, others[1]), 'ab') as f:
        f.write(b'x')
    r = cb('restore', '--store', store, 'b', '--data-dir', live)
    assert '1 sstables under new generations' in r.stdout, r.stdout
    assert read(os.path.join(tdir, others[1])) == whole[others[1]] + b'x'


def restore_while_a_data_db_appears(store, live, tdir, other_writer):
    """A restore of backup b into live, stopped just before it renames an sstable's Data.db
    into tdir; other_writer(tdir, prefix) runs then (a flush of the node making that Data.db).
    The restore's (exit status, stderr) and the sstable's prefix."""
    from conftest import CASSBACKUP, preload
    from test_lease import stopped_at_state_t
    c = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, 'restore', '--store', store, 'b', '--data-dir', live], text=True,
        env=dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_RENAME='*-Data.db'),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        names = [n for n in os.listdir(tdir) if not n.startswith('.')]
        prefixes = {n[:n.rindex('-') + 1] for n in names} - {n[:-len('Data.db')] for n in names
                                                            if n.endswith('-Data.db')}
        assert len(prefixes) == 1, names  # one sstable's components, without its Data.db
        [prefix] = prefixes
        other_writer(tdir, prefix)
    finally:
        c.send_signal(signal.SIGCONT)
        out, err = c.communicate(timeout=120)
    return c.returncode, err, prefix


def flush(tdir, prefix):
    with open(os.path.join(tdir, prefix + 'Data.db'), 'wb') as f:
        f.write(b'a flush of the node')


def test_a_data_db_that_appears_before_ours_takes_no_component_of_ours(store, sample_tree, tmp_path):
    """A flush of the node made the Data.db of the generation a restore was placing, between
    the renames of that sstable's other components and its Data.db: the restore stopped (it
    never replaces a file) but left the backup's components beside the other Data.db, one
    sstable of two, and said every sstable was wholly in place or absent. It takes them back:
    those it placed, those a killed run had placed (a resumed sstable), never a file another
    process put under one of their names."""
    sample_backup(store, sample_tree, '--table', 'shop.orders')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'orders')])[('shop', 'orders')]
    rc, err, prefix = restore_while_a_data_db_appears(store, live, tdir, flush)
    assert rc == 1 and 'appeared in the target during the restore' in err, err
    assert sorted(os.listdir(tdir)) == [prefix + 'Data.db'], os.listdir(tdir)
    assert read(os.path.join(tdir, prefix + 'Data.db')) == b'a flush of the node'
    # a resumed sstable: a killed run placed its components, not its Data.db
    os.unlink(os.path.join(tdir, prefix + 'Data.db'))
    cb('restore', '--store', store, 'b', '--data-dir', live)
    os.unlink(os.path.join(tdir, prefix + 'Data.db'))
    whole = sorted(n for n in os.listdir(tdir) if not n.startswith(prefix))  # the other sstables
    rc, err, _ = restore_while_a_data_db_appears(store, live, tdir, flush)
    assert rc == 1 and sorted(os.listdir(tdir)) == sorted(whole + [prefix + 'Data.db']), (err, os.listdir(tdir))
    # another writer's file under one of the names: left as it is
    os.unlink(os.path.join(tdir, prefix + 'Data.db'))

    def replace_index_then_flush(tdir, prefix):
        with open(os.path.join(tdir, '.theirs'), 'wb') as f:
            f.write(b'their index')
        os.rename(os.path.join(tdir, '.theirs'), os.path.join(tdir, prefix + 'Index.db'))
        flush(tdir, prefix)
    rc, err, _ = restore_while_a_data_db_appears(store, live, tdir, replace_index_then_flush)
    assert rc == 1 and sorted(os.listdir(tdir)) == sorted(whole + [prefix + 'Data.db', prefix + 'Index.db']), \
        os.listdir(tdir)
    assert read(os.path.join(tdir, prefix + 'Index.db')) == b'their index'


def test_two_restores_into_one_table_take_turns(store, sample_tree, tmp_path):
    """A second restore into a table while the first was placing an sstable took the first's
    components for a killed run's and completed the sstable; the first then found its Data.db
    taken and took its components back: a Data.db alone, exit 0 for one of them. A restore
    locks each target table directory now: the second is refused in one line, nothing placed."""
    sample_backup(store, sample_tree, '--table', 'shop.orders')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'orders')])[('shop', 'orders')]
    seen = {}

    def second_restore(tdir, prefix):
        seen['before'] = sorted(os.listdir(tdir))
        seen['p'] = cb('restore', '--store', store, 'b', '--data-dir', live, check=False)
        seen['after'] = sorted(os.listdir(tdir))
    rc, err, prefix = restore_while_a_data_db_appears(store, live, tdir, second_restore)
    p = seen['p']
    assert p.returncode == 1 and p.stderr.splitlines() == [
        f'cassbackup: table directory {tdir}: another restore is placing files in it (or another '
        'table of this one is to go there too); run this one once it has ended', 'cassbackup: nothing was restored'], p.stderr
    assert seen['after'] == seen['before']
    assert rc == 0, err
    files = snapshot_tables(sample_dirs(sample_tree), 'nightly-1')[('shop', 'orders')]
    assert {n: read(os.path.join(tdir, n)) for n in os.listdir(tdir) if not n.startswith('.')} == \
        {n: read(f) for n, f in files.items() if '/' not in n and n not in ('manifest.json', 'schema.cql')}


def test_a_renamed_sstable_a_killed_restore_left_is_completed_under_its_generation(store, sample_tree,
                                                                                 tmp_path):
    """The target held other bytes under one of the backup's sstable identifiers, so restore
    copied that sstable under a new generation; killed between the renames of its components,
    it left them without Data.db, and the next run copied the sstable under yet another
    generation and left those components in the live directory for good. They are now
    completed in place, under the generation the killed run chose."""
    sample_backup(store, sample_tree, '--table', 'shop.orders')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('shop', 'orders')])[('shop', 'orders')]
    cb('restore', '--store', store, 'b', '--data-dir', live)
    prefix = sorted(n for n in os.listdir(tdir) if n.endswith('-Data.db'))[0][:-len('Data.db')]
    for n in os.listdir(tdir):  # other bytes under that identifier
        if n.startswith(prefix):
            with open(os.path.join(tdir, n), 'ab') as f:
                f.write(b'x')
    before = set(os.listdir(tdir))
    r = cb('restore', '--store', store, 'b', '--data-dir', live)
    assert '; 1 sstables under new generations' in r.stdout, r.stdout
    [renamed] = [n[:-len('Data.db')] for n in set(os.listdir(tdir)) - before if n.endswith('-Data.db')]
    whole = tree_files(tdir)
    # what a kill leaves: its components placed in order but the last, Data.db (placed last) not
    os.unlink(os.path.join(tdir, renamed + 'Data.db'))
    os.unlink(os.path.join(tdir, sorted(n for n in os.listdir(tdir) if n.startswith(renamed))[-1]))
    r = cb('restore', '--store', store, 'b', '--data-dir', live, '--dry-run')
    assert f'  resume  {prefix[:-1]} as {renamed[:-1]}: an interrupted restore left it' in r.stdout, r.stdout
    r = cb('restore', '--store', store, 'b', '--data-dir', live)
    assert '; 1 sstables under new generations' in r.stdout, r.stdout
    assert tree_files(tdir) == whole  # no third copy, no orphan


def test_two_sstables_never_resume_under_one_generation(store, tmp_path):
    """Two sstables of the backup whose first component placed (TOC.txt) has the same bytes,
    both renamed; a kill left that component of the first under its new generation: the next
    run planned both to resume there, and failed on the second's Data.db, exit 1. One resumes
    there; the other goes under a new generation of its own."""
    sdir = many_sstables_tree(str(tmp_path / 'src'), 2, [])
    cb('create', '--store', store, '--name', 'two', '--data-dir', str(tmp_path / 'src'), '--snapshot', 'many')
    live = str(tmp_path / 'live')
    tdir = live_with_tables(live, [('ks', 't')])[('ks', 't')]
    for g in (1, 2):  # other bytes under both identifiers
        for comp in ('Data.db', 'TOC.txt'):
            open(os.path.join(tdir, f'nb-{g}-big-{comp}'), 'w').write(f'live {g} {comp}\n')
    r = cb('restore', '--store', store, 'two', '--data-dir', live)
    assert '; 2 sstables under new generations' in r.stdout, r.stdout
    assert sorted(os.listdir(tdir))[4:] == ['nb-3-big-Data.db', 'nb-3-big-TOC.txt', 'nb-4-big-Data.db',
                                            'nb-4-big-TOC.txt']
    for n in ('nb-3-big-Data.db', 'nb-4-big-Data.db', 'nb-4-big-TOC.txt'):  # what a kill leaves
        os.unlink(os.path.join(tdir, n))
    r = cb('restore', '--store', store, 'two', '--data-dir', live)
    assert '; 2 sstables under new generations' in r.stdout, r.stdout
    got = sorted(read(os.path.join(tdir, n)) for n in os.listdir(tdir)
                 if n.endswith('-Data.db') and not n.startswith(('nb-1-', 'nb-2-')))
    assert got == sorted(read(os.path.join(sdir, f'nb-{g}-big-Data.db')) for g in (1, 2))
    prefixes = {n[:-len('Data.db')] for n in os.listdir(tdir) if n.endswith('-Data.db')}
    assert all(n.startswith(tuple(prefixes)) for n in os.listdir(tdir)), os.listdir(tdir)


# --- defect 10: allocation failures -----------------------------------------------------------

FAILALLOC_C = r'''/* Fails the FAILALLOC_N-th call of FAILALLOC_FN (calloc or realloc) made by the program
 * itself (not by a shared library), counting from 1, and notes it in FAILALLOC_REPORT. */
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static uintptr_t lo, hi;
static long count;
static int first_object(struct dl_phdr_info *i, size_t s, void *d)
{
	(void)s; (void)d;
	for (int k = 0; k < i->dlpi_phnum; k++)
		if (i->dlpi_phdr[k].p_type == PT_LOAD && (i->dlpi_phdr[k].p_flags & PF_X)) {
			lo = i->dlpi_addr + i->dlpi_phdr[k].p_vaddr;
			hi = lo + i->dlpi_phdr[k].p_memsz;
		}
	return 1;
}
static int fail_now(const char *fn, void *ra)
{
	const char *f = getenv("FAILALLOC_FN"), *n = getenv("FAILALLOC_N");
	if (!f || !n || strcmp(f, fn))
		return 0;
	if (!lo)
		dl_iterate_phdr(first_object, NULL);
	if ((uintptr_t)ra < lo || (uintptr_t)ra >= hi || ++count != atol(n))
		return 0;
	const char *rep = getenv("FAILALLOC_REPORT");
	if (rep) {
		FILE *o = fopen(rep, "w");
		if (o) { fputs("failed\n", o); fclose(o); }
	}
	return 1;
}
void *calloc(size_t n, size_t s)
{
	return fail_now("calloc", __builtin_return_address(0)) ? NULL : __libc_calloc(n, s);
}
void *realloc(void *p, size_t s)
{
	return fail_now("realloc", __builtin_return_address(0)) ? NULL : __libc_realloc(p, s);
}
'''


@pytest.fixture(scope='module')
def failalloc(tmp_path_factory):
    from conftest import CASSBACKUP
    if b'libasan' in subprocess.run(['ldd', CASSBACKUP], capture_output=True).stdout:
        pytest.skip('under ASan the allocator is ASan\'s: allocation failures are injected in the plain build')
    d = tmp_path_factory.mktemp('failalloc')
    (d / 'failalloc.c').write_text(FAILALLOC_C)
    run('cc', '-shared', '-fPIC', '-O1', '-o', d / 'failalloc.so', d / 'failalloc.c')
    return str(d / 'failalloc.so')


@pytest.mark.parametrize('fn', ['calloc', 'realloc'])
def test_every_allocation_failure_is_said_not_a_crash(store, sample_tree, tmp_path, failalloc, fn):
    """Each calloc/realloc that restore (and the code it links) makes fails in turn: every run
    ends with a message and a failure status, or does the whole work; never a crash, a silent
    partial success, or a partial sstable."""
    src = sample_backup(store, sample_tree, '--table', 'shop.orders', '--table', 'shop.table1')[('shop', 'orders')]
    live = str(tmp_path / 'live')
    dirs = live_with_tables(live, [('shop', 'orders'), ('shop', 'table1')])
    tdir = dirs[('shop', 'orders')]
    other = str(tmp_path / 'other')  # a second data directory that does not hold the table
    live_with_tables(other, [])
    report = tmp_path / 'failed'
    n = 0
    while True:
        n += 1
        shutil.rmtree(tdir)
        os.makedirs(tdir)
        if report.exists():
            report.unlink()
        env = dict(os.environ, LD_PRELOAD=failalloc, FAILALLOC_FN=fn, FAILALLOC_N=str(n),
                   FAILALLOC_REPORT=str(report))
        p = cb('restore', '--store', store, 'b', '--table', 'shop.orders', '--data-dir', live, '--data-dir', other,
               env=env, check=False)
        assert os.listdir(dirs[('shop', 'table1')]) == [], n  # not asked for: never restored
        if p.returncode == 0:  # a failure the run could work around: the result must be whole
            assert_restored(tdir, read_files(src), {})
            assert f'next: nodetool import shop orders {tdir}\n' in p.stdout, (n, p.stdout)
            if not report.exists():
                break
            continue
        assert report.exists() and p.returncode in (1, 2), (n, p)
        # "cassbackup: ..." or, while the command line is parsed, "cassbackup restore: ..."
        assert p.stderr.startswith('cassbackup') and 'invalid' not in p.stderr, (n, p.stderr)
        left = tree_files(tdir)
        assert not [r for r in left if os.path.basename(r).startswith('.cassbackup')], n
        have = sstables_by_prefix(left)
        want = sstables_by_prefix(read_files(src))
        assert all(have[k] == want[k] for k in have), n  # whole sstables only
    assert n > 1
