"""cassbackup create: what it refuses, what it does not follow, names as bytes, memory bounds,
and what a killed create leaves behind (issue 6, defects 6, 10, 11, 16, 17, 21)."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import (manifest_path, CASSBACKUP, backup_list, cb, data_dir_args, make_sample, mounted, packs, read, run,
                      sample_dirs, snapshot_tables, tmp_files, uploading)

TABLE_ID = '0123456789abcdef0123456789abcdef'


def one_error_line(p, *words):
    assert p.returncode != 0
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def pack_members(store):
    """Member names (bytes) of every pack, as GNU tar lists them."""
    names = []
    for p in packs(store):
        out = subprocess.run(['tar', '--zstd', '--quoting-style=literal', '-tf', p], capture_output=True, check=True).stdout
        names += out.split(b'\n')[:-1]
    return names


def make_table(root, ks, table, tag, files):
    """root/ks/table-ID/snapshots/tag/ holding files {relpath(bytes): content}; returns the
    snapshot dir (bytes)."""
    snap = os.path.join(os.fsencode(root), ks.encode(), f'{table}-{TABLE_ID}'.encode(), b'snapshots',
                        tag.encode())
    for rel, data in files.items():
        p = os.path.join(snap, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb') as f:
            f.write(data)
    return snap


# --- defect 6: frame size and in-flight memory -------------------------------------------------

@pytest.mark.parametrize('args,words', [
    (['--frame-kib', '65536'], ['--frame-kib 65536', '4096']),
    (['--frame-kib', '8192'], ['--frame-kib 8192', '4096']),
    (['--frame-kib', '32'], ['--frame-kib 32', '64']),
    (['--frame-kib', '1x'], ['--frame-kib 1x']),
    (['--threads', '65'], ['--threads 65', '64']),
    (['--threads', '-1'], ['--threads -1']),
])
def test_out_of_range_sizes_refused(store, sample_tree, args, words):
    p = cb('create', '--store', store, '--data-dir', sample_dirs(sample_tree)[0], '--snapshot',
           'nightly-1', *args, check=False)
    assert p.returncode == 2
    one_error_line(p, *words)
    assert backup_list(store) == [] and packs(store) == [] and tmp_files(store) == []


def max_rss_kib(argv):
    """Peak RSS (VmHWM) of argv, measured by a fresh parent that has no other children."""
    code = ('import resource, subprocess, sys\n'
            'p = subprocess.run(sys.argv[1:], capture_output=True)\n'
            'sys.stderr.buffer.write(p.stderr)\n'
            'print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n')
    p = run(sys.executable, '-c', code, *argv)
    rc, kib = p.stdout.split()
    assert rc == '0', p.stderr
    return int(kib)


@pytest.mark.parametrize('level,data_kib', [(3, 262144), (19, 16384)])
def test_max_frame_max_threads_memory_bounded(store, tmp_path, level, data_kib):
    """The largest frames with the most threads: compression buffers and contexts stay within
    their budget (128 MiB), whatever --threads says. Level 3 with enough data to fill any queue;
    level 19, whose contexts are largest (about 50 MiB each at 4 MiB frames), on less."""
    src = make_sample(str(tmp_path / 's'), '--data-kib', str(data_kib), '--incompressible',
                      '--data-dirs', '1', '--keyspaces', '1', '--tables', '1', '--sstables', '1',
                      '--no-index', '--no-clutter')
    kib = max_rss_kib([CASSBACKUP, 'create', '--store', store, '--name', 'big', '--data-dir',
                       sample_dirs(src)[0], '--snapshot', 'nightly-1', '--frame-kib', '4096',
                       '--threads', '64', '--level', str(level)])
    # 128 MiB of buffers and contexts, 8 MiB read into memory at most, the program and its
    # libraries; AddressSanitizer's shadow memory and allocator add to that.
    asan = 'sanitize' in os.environ.get('CASSBACKUP_BUILD', '')
    assert kib < (320 if asan else 200) * 1024, f'peak RSS {kib} KiB'
    [b] = backup_list(store)
    assert b['bytes'] >= data_kib << 10


# --- defect 10: a catalog that cannot be read is not "already exists" ---------------------------

def corrupt_backups_index(store):
    db = os.path.join(store, 'catalog.db')
    con = sqlite3.connect(db)
    con.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    pages = con.execute("SELECT rootpage FROM sqlite_master WHERE type = 'index' AND "
                        "tbl_name = 'backups' AND sql IS NULL").fetchall()
    assert pages  # UNIQUE(ref), UNIQUE(name, node_key)
    [(size,)] = con.execute('PRAGMA page_size').fetchall()
    con.close()
    with open(db, 'r+b') as f:
        for (page,) in pages:
            f.seek((page - 1) * size)
            f.write(b'\xff' * size)


@pytest.mark.parametrize('take_snapshot', [False, True])
def test_unreadable_catalog_is_not_a_taken_name(store, sample_tree, tmp_path, take_snapshot):
    dirs = sample_dirs(sample_tree)
    cb('create', '--store', store, '--name', 'one', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    corrupt_backups_index(store)
    nlog = str(tmp_path / 'n.log')
    extra = ['--take-snapshot', '--nodetool', os.path.join(os.path.dirname(__file__), 'standins',
                                                           'nodetool')] if take_snapshot else []
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=':'.join(dirs))
    p = cb('create', '--store', store, '--name', 'two', *data_dir_args(dirs), '--snapshot',
           'nightly-1', *extra, env=env, check=False)
    line = one_error_line(p, 'cannot read catalog', store)
    assert 'already exists' not in line
    # no snapshot was taken (the node's identity was asked, to know the name is its to take)
    assert not os.path.exists(nlog) or all(json.loads(l)['cmd'] in ('version', 'info', 'status', 'describecluster')
                                           for l in open(nlog).read().splitlines())
    assert len(packs(store)) == 1 and tmp_files(store) == []


# --- defect 11: no runnable nodetool: refuse before anything --------------------------------

@pytest.mark.parametrize('nodetool', ['/nonexistent/nodetool', 'not-executable'])
def test_take_snapshot_without_nodetool_refuses_first(store, sample_tree, tmp_path, nodetool):
    if nodetool == 'not-executable':
        nodetool = str(tmp_path / 'nodetool')
        with open(nodetool, 'w') as f:
            f.write('#!/bin/sh\nexit 0\n')
        os.chmod(nodetool, 0o644)
    p = cb('create', '--store', store, '--name', 'x', '--data-dir', sample_dirs(sample_tree)[0],
           '--snapshot', 'cb-9', '--take-snapshot', '--nodetool', nodetool, check=False)
    assert p.returncode == 2
    line = one_error_line(p, nodetool, 'no snapshot was taken')
    assert 'still on disk' not in line and 'by hand' not in line
    assert backup_list(store) == [] and packs(store) == [] and tmp_files(store) == []


@pytest.mark.parametrize('option', ['--node', '--host-id'])
@pytest.mark.parametrize('value', ['..', 'a/b', '', 'x' * 65, 'a b'], ids=['dotdot', 'slash', 'empty', '65-bytes', 'blank'])
def test_a_node_the_store_cannot_name_is_a_usage_error(store, tmp_path, option, value):
    """--node .. (or a/b, or 65 bytes) exited 1 after the work had begun; it is a usage error:
    exit 2 before anything runs (no snapshot taken, nothing written)."""
    data = tmp_path / 'data'
    make_table(data, 'shop', 'orders', 'nightly-1', {b'nb-1-big-Data.db': b'orders'})
    nlog = str(tmp_path / 'n.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=str(data))
    p = cb('create', '--store', store, '--name', 'b', '--data-dir', data, '--snapshot', 'cb-1', option, value,
           '--take-snapshot', '--nodetool', os.path.join(os.path.dirname(__file__), 'standins', 'nodetool'),
           env=env, check=False)
    assert p.returncode == 2, p
    one_error_line(p, option, 'a node is 1 to 64 bytes of printable ASCII' if option == '--node'
                   else 'a host id is a UUID')
    assert backup_list(store) == [] and packs(store) == [] and tmp_files(store) == []
    assert not os.path.exists(nlog) or open(nlog).read() == ''  # nodetool never ran


# --- a snapshot tag is one directory name ------------------------------------------------------

@pytest.mark.parametrize('tag,why', [
    ('../backups', "contains '/'"),
    ('a/b', "contains '/'"),
    ('/abs', "contains '/'"),
    ('', 'empty'),
    ('.', "'.' and '..'"),
    ('..', "'.' and '..'"),
    ('x' * 256, 'longer than 255 bytes'),
], ids=['dotdot-path', 'path', 'absolute', 'empty', 'dot', 'dotdot', '256-bytes'])
@pytest.mark.parametrize('take_snapshot', [False, True])
def test_snapshot_tag_not_one_component_refused(store, tmp_path, tag, why, take_snapshot):
    """nodetool snapshot -t TAG makes <table dir>/snapshots/TAG: a tag is one path component.
    One that is not is refused before anything runs (with --take-snapshot too: nodetool
    snapshot and clearsnapshot are never given it), also when --name spares it as a name."""
    data = tmp_path / 'data'
    make_table(data, 'shop', 'orders', 'nightly-1', {b'nb-1-big-Data.db': b'orders'})
    make_table(data, 'shop', 'orders', 'nightly-2', {b'nb-2-big-Data.db': b'orders 2'})
    nlog = str(tmp_path / 'n.log')
    env = dict(os.environ, NODETOOL_STANDIN_LOG=nlog, NODETOOL_STANDIN_DATA_DIRS=str(data))
    extra = ['--take-snapshot', '--nodetool', os.path.join(os.path.dirname(__file__), 'standins',
                                                           'nodetool')] if take_snapshot else []
    p = cb('create', '--store', store, '--name', 'b', '--data-dir', data, '--snapshot', tag, *extra,
           env=env, check=False)
    assert p.returncode == 2, p.stderr
    one_error_line(p, '--snapshot', 'one directory name', why)
    assert backup_list(store) == [] and packs(store) == [] and tmp_files(store) == []
    assert not os.path.exists(nlog) or open(nlog).read() == ''  # nodetool never ran
    snaps = data / 'shop' / f'orders-{TABLE_ID}' / 'snapshots'
    assert sorted(os.listdir(snaps)) == ['nightly-1', 'nightly-2']
    # 255 bytes is a name like any other
    if why.startswith('longer'):
        p = cb('create', '--store', store, '--name', 'b', '--data-dir', data, '--snapshot', 'x' * 255,
               check=False)
        assert p.returncode == 1 and '--snapshot' not in p.stderr and 'not found' in p.stderr, p.stderr


# --- defect 16: symlinks in the data directory are not followed -----------------------------

def test_symlinked_snapshot_or_table_dir_not_followed(store, tmp_path):
    data = tmp_path / 'data'
    make_table(data, 'shop', 'orders', 'nightly-1', {b'nb-1-big-Data.db': b'orders' * 100})
    secret = tmp_path / 'outside'
    secret_snap = make_table(secret, 'x', 'y', 'nightly-1', {b'nb-7-big-Data.db': b'secret' * 100,
                                                           b'.idx/nb-7-big-Index.db': b'secret'})
    for root, _, names in os.walk(secret):
        for n in names:
            os.chmod(os.path.join(root, n), 0o600)
    # a table whose snapshots/<tag> is a symlink to that tree
    snaps = data / 'shop' / f'items-{TABLE_ID}' / 'snapshots'
    os.makedirs(snaps)
    os.symlink(secret_snap, snaps / 'nightly-1')
    # a table directory that is a symlink
    os.symlink(os.path.dirname(os.path.dirname(secret_snap)), data / 'shop' / f'users-{TABLE_ID}')
    # a symlinked file inside a real snapshot
    real_snap = data / 'shop' / f'orders-{TABLE_ID}' / 'snapshots' / 'nightly-1'
    os.symlink(os.path.join(secret_snap, b'nb-7-big-Data.db'), real_snap / 'nb-2-big-Data.db')
    p = cb('create', '--store', store, '--name', 'b', '--data-dir', data, '--snapshot', 'nightly-1')
    skipped = [l for l in p.stderr.splitlines() if 'symbolic link' in l]
    assert len(skipped) == 3, p.stderr
    assert any(f'items-{TABLE_ID}/snapshots/nightly-1' in l for l in skipped)
    assert any(l.rstrip(': ').endswith(f'users-{TABLE_ID}') or f'users-{TABLE_ID}:' in l
               for l in skipped), skipped
    assert any('nb-2-big-Data.db' in l for l in skipped)
    names = pack_members(store)
    assert not any(b'nb-7' in n or b'nb-2' in n or b'items' in n or b'users' in n for n in names), names
    assert f'shop/orders-{TABLE_ID}/nb-1-big-Data.db'.encode() in names
    [b] = backup_list(store)
    assert b['files'] == 1 and b['tables'] == 1


def test_what_is_neither_a_file_nor_an_index_directory_is_named_when_left_out(store, tmp_path):
    """A snapshot holding a directory whose name does not start with a dot (no index's) and a
    FIFO named as an sstable component: both were left out without a word, exit 0."""
    data = tmp_path / 'data'
    snap = make_table(data, 'shop', 'orders', 'nightly-1', {b'nb-1-big-Data.db': b'orders' * 100,
                                                          b'extra/nb-2-big-Data.db': b'extra'})
    os.mkfifo(os.path.join(snap, b'nb-3-big-Data.db'))
    p = cb('create', '--store', store, '--name', 'b', '--data-dir', data, '--snapshot', 'nightly-1')
    said = sorted(l for l in p.stderr.splitlines() if 'neither a file nor an index directory' in l)
    assert len(said) == 2 and 'nightly-1/extra:' in said[0] and 'nightly-1/nb-3-big-Data.db:' in said[1], \
        p.stderr
    [b] = backup_list(store)
    assert b['files'] == 1


def test_symlinked_keyspace_dir_not_followed(store, tmp_path):
    data = tmp_path / 'data'
    make_table(data, 'shop', 'orders', 'nightly-1', {b'nb-1-big-Data.db': b'orders'})
    make_table(tmp_path / 'outside', 'ks', 'secret', 'nightly-1', {b'nb-1-big-Data.db': b'secret'})
    os.symlink(tmp_path / 'outside' / 'ks', data / 'evil')
    p = cb('create', '--store', store, '--name', 'b', '--data-dir', data, '--snapshot', 'nightly-1')
    assert [l for l in p.stderr.splitlines() if 'symbolic link' in l and 'evil' in l]
    assert not any(b'secret' in n for n in pack_members(store))


def test_only_a_symlinked_snapshot_is_not_found_and_says_why(store, tmp_path):
    data = tmp_path / 'data'
    secret = make_table(tmp_path / 'outside', 'x', 'y', 'nightly-1', {b'nb-1-big-Data.db': b'secret'})
    snaps = data / 'shop' / f'items-{TABLE_ID}' / 'snapshots'
    os.makedirs(snaps)
    os.symlink(secret, snaps / 'nightly-1')
    p = cb('create', '--store', store, '--name', 'b', '--data-dir', data, '--snapshot', 'nightly-1',
           check=False)
    one_error_line(p, 'snapshot nightly-1: not found', 'symbolic links are not followed',
                   f'items-{TABLE_ID}/snapshots/nightly-1')
    assert backup_list(store) == [] and packs(store) == [] and tmp_files(store) == []


# --- defect 17: names are bytes, whatever the locale ----------------------------------------

LATIN1 = b'caf\xe9'                       # not valid UTF-8
UTF8 = 'ünïcødé'.encode('utf-8')


@pytest.mark.parametrize('lang', ['C', 'C.UTF-8'])
def test_non_ascii_names_backed_up_as_bytes(store, tmp_path, lang):
    files = {
        b'nb-1-big-Data.db': b'plain',
        LATIN1 + b'-Data.db': b'latin-1 name',
        UTF8 + b'-Data.db': b'utf-8 name',
        b'.idx_' + LATIN1 + b'/nb-1-big-Index.db': b'index under latin-1 dir',
        b'.idx_' + UTF8 + b'/' + LATIN1: b'latin-1 file in utf-8 dir' * 1000,
        b'same-' + LATIN1: b'latin-1 name' ,  # same bytes as another file: a hard link in the pack
    }
    data = tmp_path / 'data'
    snap = make_table(data, 'shop', 'orders', 'nightly-1', files)
    env = {k: v for k, v in os.environ.items() if not k.startswith('LC_')}
    env.update(LANG=lang, LC_ALL=lang)
    p = subprocess.run([CASSBACKUP, 'create', '--store', store, '--name', 'b', '--data-dir', data,
                        '--snapshot', 'nightly-1'], capture_output=True, env=env)
    assert p.returncode == 0, p.stderr
    members = pack_members(store)
    prefix = f'shop/orders-{TABLE_ID}/'.encode()
    for rel in files:
        assert prefix + rel in members, (rel, members)
    with mounted(store, str(tmp_path / 'mnt')) as m:
        top = os.fsencode(m.path('b', 'shop', 'orders'))
        assert sorted(os.listdir(top)) == sorted({r.split(b'/')[0] for r in files})
        for rel, data_ in files.items():
            assert read(os.path.join(top, rel)) == data_
    # and the pack extracts with stock tar to the same bytes
    out = tmp_path / 'x'
    os.makedirs(out)
    [pk] = packs(store)
    subprocess.run(['tar', '--zstd', '-xf', pk, '-C', out], check=True, env=env)
    for rel, data_ in files.items():
        assert read(os.path.join(os.fsencode(out), prefix, rel)) == data_
    # the manifest (backups/b/NODE.json) is JSON (UTF-8) and names every file by its bytes
    man = json.loads(read(manifest_path(store, 'b')))

    def name(o, key):
        return o[key].encode() if key in o else bytes.fromhex(o[key + '_hex'])
    paths = set()
    for ks in man['keyspaces']:
        for t in ks['tables']:
            for f in t['files']:
                d = name(f, 'dir') + b'/' if 'dir' in f or 'dir_hex' in f else b''
                paths.add(d + name(f, 'name'))
    assert paths == set(files)


def test_non_ascii_error_message_shows_bytes(store, tmp_path):
    data = tmp_path / 'data'
    snap = make_table(data, 'shop', 'orders', 'nightly-1', {LATIN1 + b'-Data.db': b'x'})
    os.symlink(b'/nonexistent', os.path.join(snap, b'link-' + LATIN1))
    p = subprocess.run([CASSBACKUP, 'create', '--store', store, '--name', 'b', '--data-dir', data,
                        '--snapshot', 'nightly-1'], capture_output=True, env=dict(os.environ, LC_ALL='C'))
    assert p.returncode == 0, p.stderr
    assert b'link-' + LATIN1 in p.stderr


# --- defect 21: killed while everything dedups: nothing left behind -------------------------

def test_kill_9_while_deduplicating_leaves_nothing(store, tmp_path):
    src = make_sample(str(tmp_path / 's'), '--data-kib', '32768', '--data-dirs', '1', '--keyspaces', '2',
                      '--tables', '2', '--sstables', '4', '--no-clutter')
    [d] = sample_dirs(src)
    cb('create', '--store', store, '--name', 'first', '--data-dir', d, '--snapshot', 'nightly-1')
    first = packs(store)
    kills = 0
    for i in range(10):
        proc = subprocess.Popen([CASSBACKUP, 'create', '--store', store, '--name', f'k{i}',
                                 '--data-dir', d, '--snapshot', 'nightly-1', '--threads', '1'],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # killed once its pack upload is open (an unnamed file in tmp/), while it dedups
        while not uploading(proc.pid, store) and proc.poll() is None:
            time.sleep(0.001)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
    assert kills > 0
    p = cb('create', '--store', store, '--name', 'after', '--data-dir', d, '--snapshot', 'nightly-1')
    assert tmp_files(store) == [], (p.stderr, tmp_files(store))
    assert [b['name'] for b in backup_list(store)][-1] == 'after'
    assert packs(store) == first  # everything after the first backup was deduplicated
