"""verify: the summary at the end (text line, JSON object) and --all on a store without backups
(issue 9)."""
import json
import os

import pytest

from conftest import cb, data_dir_args, make_sample, packs, sample_dirs


@pytest.fixture(scope='module')
def small_tree(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('verify-sample'))
    make_sample(out, '--data-kib', '16', '--data-dirs', '1', '--keyspaces', '1', '--tables', '2',
                '--sstables', '1', '--no-clutter')
    return sample_dirs(out)


def test_empty_store_all_says_so_and_succeeds(store):
    r = cb('verify', '--store', store, '--all')
    assert r.stdout == f'no backups in {store}\n' and r.stderr == ''
    r = cb('verify', '--store', store, '--all', '--keyspace', 'shop')
    assert r.stdout == f'no backups in {store}\n'
    res = json.loads(cb('verify', '--store', store, '--all', '--json').stdout)
    assert res == {'tables': [], 'summary': {'backups': 0, 'tables': 0, 'ok': 0, 'failed': 0,
                                             'files': 0, 'bytes': 0}}


def test_summary_counts_ok_and_failed_tables(store, small_tree):
    """Backup 'b' holds table1's bytes in a's pack (deduplicated) and orders' in its own: with
    that pack gone, table1 checks out and orders fails."""
    cb('create', '--store', store, '--name', 'a', *data_dir_args(small_tree), '--snapshot', 'nightly-1',
       '--table', 'shop.table1')
    [a_pack] = packs(store)
    cb('create', '--store', store, '--name', 'b', *data_dir_args(small_tree), '--snapshot', 'nightly-1')
    [b_pack] = [p for p in packs(store) if p != a_pack]
    good = cb('verify', '--store', store, '--all').stdout.splitlines()
    assert good[-1].startswith('3 tables ok, 0 failed in 2 backups (') and len(good) == 4
    res = json.loads(cb('verify', '--store', store, '--all', '--json').stdout)
    files = sum(t['files'] for t in res['tables'])
    assert res['summary'] == {'backups': 2, 'tables': 3, 'ok': 3, 'failed': 0, 'files': files,
                              'bytes': sum(t['bytes'] for t in res['tables'])}
    os.rename(b_pack, b_pack + '.away')
    p = cb('verify', '--store', store, 'b', check=False)
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert [l.split(':')[0] for l in lines if not l.startswith(' ')][:2] == ['FAILED  b shop.orders', 'ok      b shop.table1']
    assert lines[-1].startswith('1 table ok, 1 failed in 1 backup (')
    p = cb('verify', '--store', store, 'b', '--json', check=False)
    res = json.loads(p.stdout)
    assert p.returncode == 1 and [t['status'] for t in res['tables']] == ['failed', 'ok']
    assert {k: res['summary'][k] for k in ('backups', 'tables', 'ok', 'failed')} == \
        {'backups': 1, 'tables': 2, 'ok': 1, 'failed': 1}


def test_a_damaged_pack_the_catalog_could_not_index_is_named_damaged(store, small_tree):
    """A host whose catalog must index a pack whose trailer is damaged: verify named the pack
    as one that "could not be read; try again", framing damage as a store failing. It says
    why (the trailer) and where to look, and no retry."""
    cb('create', '--store', store, '--name', 'a', *data_dir_args(small_tree), '--snapshot', 'nightly-1')
    [pack] = packs(store)
    size = os.path.getsize(pack)
    with open(pack, 'r+b') as f:
        f.seek(size - 64)
        f.write(b'\0' * 64)
    for name in os.listdir(store):
        if name.startswith('catalog.db'):
            os.unlink(os.path.join(store, name))
    p = cb('verify', '--store', store, '--all', check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert 'damaged trailer or seek table' in p.stdout and 'try again' not in p.stdout, p.stdout


def test_verify_dir_with_a_fifo_in_it_does_not_wait(store, small_tree, tmp_path):
    """A FIFO under a component's name in the directory verify --dir checks: verify opened it
    to compare its bytes and waited for a writer for ever. It is a file without them."""
    cb('create', '--store', store, '--name', 'f', *data_dir_args(small_tree), '--snapshot', 'nightly-1',
       '--table', 'shop.table1')
    target = tmp_path / 'restored'
    target.mkdir()
    (target / 'shop').mkdir()
    tdir = target / 'shop' / 'table1-0123456789abcdef0123456789abcdef'
    tdir.mkdir()
    cb('restore', '--store', store, 'f', '--data-dir', str(target))
    stats = sorted(n for n in os.listdir(tdir) if n.endswith('-Statistics.db'))[0]
    os.unlink(tdir / stats)
    os.mkfifo(tdir / stats)
    p = cb('verify', '--store', store, '--dir', str(tdir), '--against', 'f/shop/table1', check=False,
           timeout=120)
    assert p.returncode == 1 and stats in p.stdout, p.stdout
