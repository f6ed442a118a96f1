"""Bounded packs: create, copy and prune write packs of about --pack-size (one packer), a table of
a quarter of it or more in packs of its own, a file larger than it in a pack of its own; an
object too large for S3 is refused before anything is sent. Every pack is read as a plain tar
stream with `zstd -dc`, the way an operator without cassbackup would."""
import json
import os
import subprocess
import tarfile

import pytest

from conftest import (cb, data_dir_args, make_sample, mounted, packs, read, sample_dirs,
                      snapshot_tables)

MiB = 1 << 20
INDEX = '.cassbackup/index.json'


def members(pack):
    """[(name, size)] of the pack's tar stream, and its length in bytes."""
    z = subprocess.Popen(['zstd', '-dcq', pack], stdout=subprocess.PIPE)
    out = []
    with tarfile.open(fileobj=z.stdout, mode='r|') as t:
        for m in t:
            out.append((m.name, m.size if m.isreg() else 0))
    z.stdout.read()
    z.stdout.close()
    assert z.wait() == 0
    length = int(subprocess.run(f"zstd -dcq '{pack}' | wc -c", shell=True, capture_output=True,
                                text=True, check=True).stdout)
    return out, length


def table_of(member):
    """'ks/table-id' of a member ks/table-id/[.index/]file."""
    return '/'.join(member.split('/')[:2])


def shrink(dirs, keyspace, keep=1, tag='nightly-1'):
    """Leaves sstable generations up to keep in the snapshots of keyspace's tables (and their
    manifest.json): small tables beside big ones."""
    for d in dirs:
        kdir = os.path.join(d, keyspace)
        for tdir in os.listdir(kdir):
            sdir = os.path.join(kdir, tdir, 'snapshots', tag)
            for root, _, names in os.walk(sdir):
                for n in names:
                    if n.startswith('nb-') and int(n.split('-')[1]) > keep:
                        os.unlink(os.path.join(root, n))
            m = os.path.join(sdir, 'manifest.json')
            if os.path.exists(m):
                doc = json.loads(read(m))
                doc['files'] = [f for f in doc['files'] if int(f.split('-')[1]) <= keep]
                os.unlink(m)
                with open(m, 'w') as f:
                    json.dump(doc, f)


def table_bytes(dirs, tag='nightly-1'):
    """{'ks/table': bytes} of the snapshot, as create counts them."""
    out = {}
    for (ks, table), files in snapshot_tables(dirs, tag).items():
        out[(ks, table)] = sum(os.path.getsize(p) for p in files.values())
    return out


def check_packs(store, target, big_tables):
    """Every pack: at most target bytes of tar stream, unless it holds one member larger than
    that; members of a big table never share a pack with another table's. Returns the packs'
    [(members, length)]."""
    seen = []
    for p in packs(store):
        ms, length = members(p)
        data = [(n, s) for n, s in ms if n != INDEX]
        tables = {table_of(n).rsplit('-', 1)[0] for n, _ in data}
        if length > target + 64 * 1024:  # beyond the target: the index and a tar block or two
            assert len(data) == 1 and data[0][1] > target - 8192, (p, length, data)
        if tables & big_tables:
            assert len(tables) == 1, (p, tables)
        seen.append((ms, length))
    return seen


def test_create_writes_packs_of_the_pack_size_big_tables_alone(store, tmp_path):
    src = make_sample(str(tmp_path / 's'), '--data-kib', '256', '--data-dirs', '1', '--keyspaces', '2',
                      '--tables', '3', '--sstables', '3', '--incompressible', '--seed', '3')
    dirs = sample_dirs(src)
    shrink(dirs, 'shop1')
    target = 2 * MiB
    sizes = table_bytes(dirs)
    big = {f'{ks}/{t}' for (ks, t), n in sizes.items() if n >= target // 4}
    small = {f'{ks}/{t}' for (ks, t), n in sizes.items() if n < target // 4}
    assert big and small, sizes
    out = cb('create', '--store', store, '--name', 'n1', *data_dir_args(dirs), '--snapshot',
             'nightly-1', '--pack-size', '2M', '--json').stdout
    made = json.loads(out)['packs']
    seen = check_packs(store, target, big)
    assert made == len(seen) > 1
    # every file is in some pack, and a backup reads back whole through the mount
    with mounted(store, str(tmp_path / 'mnt')) as m:
        for (ks, table), files in snapshot_tables(dirs, 'nightly-1').items():
            for rel, path in files.items():
                assert read(m.path('n1', ks, table, rel)) == read(path)
    cb('check', '--store', store, '--read-data')


def test_a_file_larger_than_the_pack_size_is_a_pack_of_its_own(store, tmp_path):
    src = make_sample(str(tmp_path / 's'), '--data-kib', '3072', '--data-dirs', '1', '--keyspaces', '1',
                      '--tables', '1', '--sstables', '2', '--incompressible', '--no-index')
    dirs = sample_dirs(src)
    cb('create', '--store', store, '--name', 'n1', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--pack-size', '1M')
    seen = check_packs(store, MiB, set())
    alone = [ms for ms, _ in seen if any(n.endswith('-Data.db') for n, _ in ms)]
    assert len(alone) == 2 and all(len([n for n, _ in ms if n != INDEX]) == 1 for ms in alone)
    cb('verify', '--store', store, 'n1')


def test_copy_and_prune_write_packs_of_the_pack_size(store, tmp_path):
    src = make_sample(str(tmp_path / 's'), '--data-kib', '512', '--data-dirs', '1', '--keyspaces', '2',
                      '--tables', '2', '--sstables', '2', '--incompressible', '--seed', '5')
    dirs = sample_dirs(src)
    cb('create', '--store', store, '--name', 'ab', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--pack-size', '64M')
    assert len(packs(store)) == 1
    other = str(tmp_path / 'other')
    cb('init', '--store', other)
    cb('copy', '--from', store, '--to', other, 'ab', '--pack-size', '1M')
    sizes = table_bytes(dirs)
    big = {f'{ks}/{t}' for (ks, t), n in sizes.items() if n >= MiB // 4}
    assert len(check_packs(other, MiB, big)) > 1
    cb('verify', '--store', other, 'ab')
    # a backup of part of the same files, then the first forgotten: the one pack is part used,
    # and a prune repacks what is used into packs of 1M
    shrink(dirs, 'shop1')
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    cb('forget', '--store', store, 'ab')
    cb('prune', '--store', store, '--max-unused', '0', '--pack-size', '1M')
    assert len(check_packs(store, MiB, set())) > 1
    cb('verify', '--store', store, 'b')
    cb('check', '--store', store, '--read-data')


def test_prune_deletes_as_it_repacks_so_its_room_is_bounded(store, tmp_path):
    """A prune that repacks many packs deletes the copied ones whenever they hold 8 pack
    sizes (under the exclusive lock, then it goes on under the shared one): the room a repack
    needs beyond the store's stays about 8 packs, whatever the store's size."""
    src = make_sample(str(tmp_path / 's'), '--data-kib', '256', '--data-dirs', '1', '--keyspaces', '2',
                      '--tables', '8', '--sstables', '4', '--incompressible', '--no-index', '--seed', '6')
    dirs = sample_dirs(src)
    cb('create', '--store', store, '--name', 'ab', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--pack-size', '1M')
    shrink(dirs, 'shop')
    shrink(dirs, 'shop1')
    cb('create', '--store', store, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    cb('forget', '--store', store, 'ab')
    res = json.loads(cb('prune', '--store', store, '--max-unused', '0', '--pack-size', '1M',
                        '--json').stdout)
    repacked = [a for a in res['actions'] if a['action'] == 'repack']
    copied = sum(a['size'] for a in repacked)
    assert copied > 16 * MiB and all(a['done'] for a in res['actions']), res
    assert res['delete_phases'] >= 2, res
    cb('verify', '--store', store, 'b')
    cb('check', '--store', store, '--read-data')


def test_pack_size_is_checked(store, tmp_path):
    for bad, why in (('0', 'must be'), ('12KB', 'ambiguous'), ('100K', 'must be')):
        p = cb('create', '--store', store, '--name', 'x', '--data-dir', str(tmp_path), '--snapshot',
               't', '--pack-size', bad, check=False)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
        assert '--pack-size' in p.stderr and why in p.stderr, p.stderr


def test_an_object_over_5_tib_is_refused_before_anything_is_sent(tmp_path, binaries):
    """S3 takes at most 10,000 parts of at most 5 GiB: a pack larger than 5 TiB cannot be
    stored. A sparse file of 5 TiB + 1 byte (it takes no disk) makes create refuse it in one
    line, before reading or sending its bytes."""
    from test_s3 import moto, s3_env
    src = make_sample(str(tmp_path / 's'), '--data-kib', '16', '--data-dirs', '1', '--keyspaces', '1',
                      '--tables', '1', '--sstables', '1', '--no-index', '--no-clutter')
    [d] = sample_dirs(src)
    [(ks, table)] = snapshot_tables([d], 'nightly-1')
    [data] = [p for r, p in snapshot_tables([d], 'nightly-1')[(ks, table)].items() if r.endswith('Data.db')]
    with open(data, 'r+b') as f:
        f.truncate((5 << 40) + 1)
    with moto(tmp_path) as (port, key, secret):
        env = s3_env(port, key, secret, tmp_path / 'cache')
        loc = 's3://cbtest/stores/big'
        cb('init', '--store', loc, env=env)
        p = cb('create', '--store', loc, '--name', 'n1', '--data-dir', d, '--snapshot', 'nightly-1',
               env=env, check=False, timeout=120)
        assert p.returncode == 1
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and 'more than S3 can store' in lines[0], p.stderr
        assert json.loads(cb('list', '--store', loc, '--json', env=env).stdout) == []


@pytest.mark.parametrize('nth', [1, 2, 'last'])
def test_a_pack_commit_that_fails_behind_the_next_pack_fails_create(store, tmp_path, nth):
    """create commits each pack on a thread of its own while it writes the next one: when that
    commit fails (the Nth link into packs/ fails with EIO: tests/shim/killat.c), create still
    stops with one line naming that pack, commits no backup, and the store checks clean; the
    next create succeeds."""
    from conftest import BUILD, preload
    assert os.path.exists(os.path.join(BUILD, 'tests', 'libkillat.so')), 'the killat shim is not built'
    src = make_sample(str(tmp_path / 's'), '--data-kib', '1024', '--data-dirs', '1', '--keyspaces', '1',
                      '--tables', '4', '--sstables', '2', '--incompressible', '--seed', '5')
    dirs = sample_dirs(src)
    args = ['create', '--store', store, '--name', 'n1', *data_dir_args(dirs), '--snapshot', 'nightly-1',
            '--pack-size', '1M']
    made = json.loads(cb(*args[:4], 'probe', *args[5:], '--json').stdout)['packs']
    assert made >= 4, made
    cb('forget', '--store', store, 'probe')
    cb('prune', '--store', store)
    n = made if nth == 'last' else nth
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_FAIL_PACK_LINK=str(n))
    p = cb(*args, env=env, check=False)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and 'cannot write pack ' in lines[0] and 'Input/output error' in lines[0], p.stderr
    assert 'backing up' not in lines[0]  # an earlier pack's commit: no file of the next one is to blame
    assert cb('list', '--store', store, '--json').stdout.strip() == '[]'
    cb('check', '--store', store)
    cb(*args)
    cb('verify', '--store', store, 'n1')
