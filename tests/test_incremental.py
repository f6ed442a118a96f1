"""Incremental backups: Cassandra's backups/ directories (incremental_backups: true) taken into
the store on top of a full backup, their links removed once committed.

The node is a data directory of real sstables (../shared/fixtures, make_tree.sh). Its four
legacy_nb_* tables are backed up in full; a flush is what Cassandra's Tracker does with
incremental_backups on: a new sstable written into the table directory and each component
hard-linked into <table>/backups/. The flushed sstables are real ones of the other tables
(never backed up, so their bytes are new to the store), renamed to the next generation.
"""
import functools
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import (rewrite_manifest, CASSBACKUP, FIXTURES, FIXTURE_TAG, backup_list, cb, manifest_path,
                      mounted, packs, run, uploading)
from s3proxy import S3Proxy
from test_s3 import moto, s3, s3_env, s3rver  # noqa: F401 (fixtures)

KS = 'legacy_tables'
TAKEN = '.cassbackup-taken'  # cassbackup's record in backups/ (tools/taken.h)
TABLES = ['legacy_nb_clust', 'legacy_nb_clust_counter', 'legacy_nb_simple',
          'legacy_nb_simple_counter']


def listed(d):
    """The names in directory d, but cassbackup's own record in backups/."""
    return [n for n in os.listdir(d) if not n.startswith(TAKEN)]


def sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


class Node:
    """A data directory, its cassandra.yaml, and the sstables flushed so far."""

    def __init__(self, tmp_path, incremental_backups='true'):
        # the node's data directory holds the four tables; the fixture tree's others, beside
        # it, give the bytes of the sstables flushed
        tree = str(tmp_path / 'tree')
        run('bash', os.path.join(FIXTURES, 'make_tree.sh'),
            env=dict(os.environ, OUT=tree, PATH='/usr/bin:/bin:' + os.environ['PATH']))
        self.data = str(tmp_path / 'data')
        os.makedirs(os.path.join(self.data, KS))
        for d in os.listdir(os.path.join(tree, KS)):
            if d.rsplit('-', 1)[0] in TABLES:
                os.rename(os.path.join(tree, KS, d), os.path.join(self.data, KS, d))
        self.conf = tmp_path / 'conf'
        self.conf.mkdir()
        yaml = 'cluster_name: test\n'
        if incremental_backups is not None:
            yaml += f'incremental_backups: {incremental_backups}\n'
        (self.conf / 'cassandra.yaml').write_text(yaml)
        self.dirs = {d.rsplit('-', 1)[0]: os.path.join(self.data, KS, d)
                     for d in os.listdir(os.path.join(self.data, KS))}
        donors = []
        for d in sorted(os.listdir(os.path.join(tree, KS))):
            table = d.rsplit('-', 1)[0]
            if not table.startswith('legacy_da_'):  # BTI: no Index.db, another format
                path = os.path.join(tree, KS, d)
                prefixes = sorted({n.rsplit('-', 1)[0] + '-' for n in os.listdir(path)
                                   if n.endswith('-TOC.txt')})
                donors += [(path, p) for p in prefixes]
        self.donors = donors
        self.gen = {t: 100 for t in TABLES}
        self.env = None  # the environment of an S3 store

    def flush(self, table, link=True):
        """A new sstable in table (a donor's components as nb-<gen>-big-*), linked into
        backups/ as Cassandra does. Returns {name: sha256} of its components."""
        src, prefix = self.donors.pop(0)
        self.gen[table] += 1
        tdir = self.dirs[table]
        os.makedirs(os.path.join(tdir, 'backups'), exist_ok=True)
        made = {}
        for n in sorted(os.listdir(src)):
            if not n.startswith(prefix):
                continue
            comp = n[len(prefix):]
            name = f'nb-{self.gen[table]}-big-{comp}'
            with open(os.path.join(src, n), 'rb') as f, open(os.path.join(tdir, name), 'wb') as g:
                g.write(f.read())
            if link:
                os.link(os.path.join(tdir, name), os.path.join(tdir, 'backups', name))
            made[name] = sha(os.path.join(tdir, name))
        return made

    def links(self):
        """{table: {name: (inode, sha256)}} of every file in backups/."""
        res = {}
        for t, d in self.dirs.items():
            b = os.path.join(d, 'backups')
            if os.path.isdir(b):
                res[t] = {n: (os.stat(os.path.join(b, n)).st_ino, sha(os.path.join(b, n)))
                          for n in os.listdir(b) if not n.startswith(TAKEN)}
        return res

    def snapshot(self, table, tag=FIXTURE_TAG):
        snap = os.path.join(self.dirs[table], 'snapshots', tag)
        return {n: sha(os.path.join(snap, n)) for n in os.listdir(snap)}

    def snapshot_all(self, tag, tables=TABLES):
        """nodetool snapshot -t tag (of these tables only: -kt): each table's files linked into
        snapshots/tag, with the fixture snapshot's manifest.json and schema.cql (written now:
        the snapshot's time)."""
        for t in tables:
            d = self.dirs[t]
            snap = os.path.join(d, 'snapshots', tag)
            os.makedirs(snap)
            for n in os.listdir(d):
                if os.path.isfile(os.path.join(d, n)):
                    os.link(os.path.join(d, n), os.path.join(snap, n))
            for extra in ('manifest.json', 'schema.cql'):
                src = os.path.join(d, 'snapshots', FIXTURE_TAG, extra)
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(snap, extra))

    def create(self, store, *args, check=True):
        return cb('create', '--store', store, '--data-dir', self.data, '--node', 'n1',
                  '--cassandra-conf', str(self.conf), *args, check=check, env=self.env)

    def full(self, store, name='full', *args):
        return self.create(store, '--snapshot', FIXTURE_TAG, '--name', name, *args)

    def incremental(self, store, name, *args, check=True):
        return self.create(store, '--incremental', '--name', name, *args, check=check)


def manifest(store, name):
    with open(manifest_path(store, name)) as f:
        return json.load(f)


def tree_of(m):
    """{table: {name: sha256}} of a manifest's files (table directory only)."""
    return {t['name']: {f['name']: f['sha256'] for f in t['files'] if 'dir' not in f}
            for ks in m['keyspaces'] for t in ks['tables']}


def mounted_tree(m, name):
    res = {}
    for t in TABLES:
        d = m.path(name, KS, t)
        res[t] = {n: sha(os.path.join(d, n)) for n in os.listdir(d)
                  if not os.path.isdir(os.path.join(d, n))}
    return res


@pytest.fixture
def node(tmp_path, binaries):
    return Node(tmp_path)


def a_day(node, store, rounds=3, per_table=2):
    """A full backup, then `rounds` times: flushes into every table and an incremental.
    Returns the expected tree {table: {name: sha256}} after each backup, by name."""
    node.full(store)
    state = {t: node.snapshot(t) for t in TABLES}
    expected = {'full': {t: dict(v) for t, v in state.items()}}
    for i in range(1, rounds + 1):
        for t in TABLES:
            for _ in range(per_table):
                state[t].update(node.flush(t))
        r = node.incremental(store, f'inc{i}')
        assert f'incremental inc{i} on {"full" if i == 1 else f"inc{i - 1}"} (base full)' in r.stdout
        expected[f'inc{i}'] = {t: dict(v) for t, v in state.items()}
    return expected


def test_a_day_of_incrementals_mounts_and_restores_as_one_tree(node, store, tmp_path):
    expected = a_day(node, store)
    # the links stored are gone: backups/ stops growing
    assert all(not names for names in node.links().values())
    # each manifest names its base and the backup it follows, and holds the whole tree
    for i, prev in ((1, 'full'), (2, 'inc1'), (3, 'inc2')):
        m = manifest(store, f'inc{i}')
        assert (m['base'], m['previous']) == ('full', prev)
        assert {t: v for t, v in tree_of(m).items() if t in TABLES} == expected[f'inc{i}']
        added = [f['name'] for ks in m['keyspaces'] for t in ks['tables'] for f in t['files']
                 if f.get('added')]
        assert len(added) == sum(len(v) for v in expected[f'inc{i}'].values()) - \
            sum(len(v) for v in expected[f'inc{i - 1}' if i > 1 else 'full'].values())
    assert 'base' not in manifest(store, 'full')
    # list shows each incremental with its base
    listed = {b['name']: b for b in backup_list(store)}
    assert (listed['full']['incremental'], listed['full']['base']) == (False, None)
    assert (listed['inc3']['base'], listed['inc3']['previous']) == ('full', 'inc2')
    text = cb('list', '--store', store).stdout
    assert 'incremental (node n1): on inc2, full backup full' in text
    assert 'incremental      on inc2, full backup full' in cb('show', '--store', store, 'inc3').stdout
    # the mount: /backups/incN is the full backup with every incremental up to N applied
    mnt = str(tmp_path / 'mnt')
    with mounted(store, mnt) as m:
        for name, tree in expected.items():
            assert mounted_tree(m, name) == tree, name
        assert os.getxattr(m.path('inc3'), 'user.cassbackup.base') == b'full'
        assert os.getxattr(m.path('inc3'), 'user.cassbackup.previous') == b'inc2'
        assert 'user.cassbackup.base' not in os.listxattr(m.path('full'))
    # restore of an incremental gives the state at it, sstables intact
    live = tmp_path / 'live' / 'data'
    for t in TABLES:
        os.makedirs(live / KS / (t + '-' + 'e' * 32))
    r = cb('restore', '--store', store, 'inc2', '--data-dir', str(live))
    assert 'restored inc2' in r.stdout
    for t in TABLES:
        d = live / KS / (t + '-' + 'e' * 32)
        got = {n: sha(d / n) for n in os.listdir(d)}
        want = expected['inc2'][t]
        assert {k: v for k, v in got.items() if k not in ('manifest.json', 'schema.cql')} == \
            {k: v for k, v in want.items() if k not in ('manifest.json', 'schema.cql')}
    # reindex rebuilds the same from the manifests alone
    before = backup_list(store)
    os.unlink(os.path.join(store, 'catalog.db'))
    cb('reindex', '--store', store)
    assert [(b['name'], b['base'], b['previous']) for b in backup_list(store)] == \
        [(b['name'], b['base'], b['previous']) for b in before]


def test_nothing_new_makes_no_backup(node, store):
    node.full(store)
    r = node.incremental(store, 'inc1')
    assert 'nothing new in backups/ since full; no backup was made; 0 link(s)' in r.stdout
    assert [b['name'] for b in backup_list(store)] == ['full']
    # links of sstables the full backup holds (made before its snapshot) stay: a removal with
    # no backup made is one no manifest records (taken.h); the next incremental that takes
    # something in removes them, once hashed
    t = TABLES[0]
    b = os.path.join(node.dirs[t], 'backups')
    os.makedirs(b)
    names = sorted(n for n in os.listdir(node.dirs[t]) if n.startswith('nb-'))
    for n in names:
        os.link(os.path.join(node.dirs[t], n), os.path.join(b, n))
    r = node.incremental(store, 'inc1')
    assert (f'0 link(s) it holds removed, {len(names)} left for the next incremental that '
            'takes something in') in r.stdout
    assert sorted(listed(b)) == names and not os.path.exists(os.path.join(b, TAKEN))
    node.flush(TABLES[1])
    r = node.incremental(store, 'inc1')
    assert 'incremental inc1 on full (base full)' in r.stdout and listed(b) == []
    # nothing new since inc1, which removed links there: links of what it holds go, once
    # hashed; one whose bytes differ from what the backup holds stays (a sstable linked
    # again, one component with other bytes under the same name, size and mtime)
    for n in names:
        os.link(os.path.join(node.dirs[t], n), os.path.join(b, n))
    src = os.path.join(node.dirs[t], names[0])
    st = os.stat(src)
    other = os.path.join(b, names[0])
    with open(src, 'rb') as f:
        data = bytearray(f.read())
    data[0] ^= 1
    os.unlink(other)
    with open(other, 'wb') as f:
        f.write(data)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = node.incremental(store, 'inc2')
    assert f'{len(names) - 1} link(s) it holds removed' in r.stdout
    assert 'holds other bytes than the backup has under that name: left in place' in r.stderr
    assert listed(b) == [names[0]]


def relink(node, table, names):
    """backups/ links of table's sstables names again, as a run killed while removing them
    leaves them."""
    b = os.path.join(node.dirs[table], 'backups')
    for n in names:
        os.link(os.path.join(node.dirs[table], n), os.path.join(b, n))


def links_are_committed(node, store):
    """Every sstable flushed is either still linked in backups/ or its bytes are in a complete
    backup of the store (the rule link removal keeps)."""
    held = set()
    for b in backup_list(store):
        if b['complete']:
            for t in tree_of(manifest(store, b['name'])).values():
                held |= set(t.values())
    links = node.links()
    for t in TABLES:
        d = node.dirs[t]
        for n in os.listdir(d):
            if n.startswith('nb-') and int(n.split('-')[1]) > 100:
                assert n in links.get(t, {}) or sha(os.path.join(d, n)) in held, \
                    f'{t}/{n}: its link is gone and no complete backup holds its bytes'


def test_links_stay_when_the_backup_they_follow_lost_a_pack(node, store):
    """Regression: an incomplete incremental (its pack lost) was followed, and the links of
    its files, linked again, were removed though no pack held their bytes."""
    node.full(store)
    t = TABLES[0]
    made = node.flush(t)
    node.incremental(store, 'inc1')
    assert node.links().get(t) == {}
    relink(node, t, made)
    newest = max(packs(store), key=os.path.getmtime)
    os.unlink(newest)  # inc1's pack lost
    cb('reindex', '--store', store)
    assert [(b['name'], b['complete']) for b in backup_list(store)] == [('full', True),
                                                                      ('inc1', False)]
    r = node.incremental(store, 'inc2', check=False)
    links_are_committed(node, store)
    if r.returncode == 0:  # made on full, with the files taken in again: those links may go
        assert manifest(store, 'inc2')['previous'] == 'full'


def test_an_incomplete_base_is_refused(node, store):
    """Regression: --base named a full backup whose pack was lost, and the links of files it
    names were removed."""
    node.full(store)
    t = TABLES[0]
    names = sorted(n for n in os.listdir(node.dirs[t]) if n.startswith('nb-'))
    os.makedirs(os.path.join(node.dirs[t], 'backups'))
    relink(node, t, names)
    for p in packs(store):
        os.unlink(p)
    cb('reindex', '--store', store)
    r = node.incremental(store, 'i1', '--base', 'full', check=False)
    assert r.returncode != 0
    assert '--base full: an incomplete backup' in r.stderr
    assert sorted(node.links()[t]) == names


def test_a_name_taken_by_other_bytes_gets_a_fresh_generation(node, store, tmp_path):
    node.full(store)
    t = TABLES[2]
    snap = node.snapshot(t)
    # an sstable named like one of the full backup's, with other bytes (a generation reused)
    node.gen[t] = 0
    made = node.flush(t)
    assert set(made) <= set(snap) and any(made[n] != snap[n] for n in made)
    r = node.incremental(store, 'inc1')
    assert '1 sstable(s) renamed to a fresh generation' in r.stdout
    tree = tree_of(manifest(store, 'inc1'))[t]
    for n, h in snap.items():
        assert tree[n] == h  # the full backup's sstable is untouched
    renamed = {n: h for n, h in tree.items() if n not in snap}
    assert sorted(h for h in renamed.values()) == sorted(made.values())
    gens = {n.split('-')[1] for n in renamed}
    assert len(gens) == 1 and int(gens.pop()) > max(int(n.split('-')[1]) for n in snap
                                                    if n.startswith('nb-'))
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert mounted_tree(m, 'inc1')[t] == tree


def test_an_sstable_partly_held_is_taken_whole_under_a_fresh_generation(node, store, tmp_path):
    """backups/ held links of an sstable the full backup has, and one component more (new
    bytes): the incremental took the sstable again under its own names, so each held name was
    in the table twice, a manifest nobody can read (restore: no such backup), committed, and
    the links removed: the new component's bytes then in no backup, and prune deleted them."""
    node.full(store)
    t = TABLES[0]
    d = node.dirs[t]
    names = sorted(n for n in os.listdir(d) if n.startswith('nb-'))
    prefix = names[0].rsplit('-', 1)[0]
    os.makedirs(os.path.join(d, 'backups'), exist_ok=True)
    relink(node, t, [n for n in names if n.startswith(prefix + '-')])
    extra = os.path.join(d, 'backups', prefix + '-Extra.db')
    with open(extra, 'wb') as f:
        f.write(b'extra bytes')
    node.incremental(store, 'inc1')
    tree = tree_of(manifest(store, 'inc1'))[t]  # reads back: no name twice
    assert hashlib.sha256(b'extra bytes').hexdigest() in tree.values()
    cb('check', '--store', store)
    cb('prune', '--store', store)
    cb('verify', '--store', store, 'inc1')
    live = tmp_path / 'live'
    os.makedirs(live / KS / (t + '-' + 'e' * 32))
    cb('restore', '--store', store, 'inc1', '--data-dir', str(live), '--table', f'{KS}.{t}')
    restored = {n: sha(str(live / KS / (t + '-' + 'e' * 32) / n))
                for n in os.listdir(live / KS / (t + '-' + 'e' * 32))}
    assert hashlib.sha256(b'extra bytes').hexdigest() in restored.values()


def test_refused_when_incremental_backups_is_off(tmp_path, binaries, store):
    for setting in ('false', None):
        sub = tmp_path / (setting or 'unset')
        sub.mkdir()
        node = Node(sub, incremental_backups=setting)
        node.full(store, name=f'full-{setting}')
        node.flush(TABLES[0])
        before = node.links()
        r = node.incremental(store, f'inc-{setting}', check=False)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and 'incremental_backups is' in lines[0] and 'cassandra.yaml' in lines[0]
        assert node.links() == before
        assert f'inc-{setting}' not in [b['name'] for b in backup_list(store)]


def test_base_and_options(node, store):
    r = node.incremental(store, 'inc0', check=False)
    assert r.returncode == 3 and 'no complete full backup' in r.stderr
    node.full(store)
    node.full(store, 'full2')
    node.flush(TABLES[0])
    r = node.incremental(store, 'inc1', '--base', 'full')
    assert 'incremental inc1 on full (base full)' in r.stdout
    node.flush(TABLES[0])
    r = node.incremental(store, 'inc2', '--base', 'inc1', check=False)
    assert r.returncode == 2 and '--base inc1: an incremental backup' in r.stderr
    r = node.incremental(store, 'inc2', '--base', 'nope', check=False)
    assert r.returncode == 3
    r = node.incremental(store, 'inc2', '--snapshot', FIXTURE_TAG, check=False)
    assert r.returncode == 2 and 'drop --snapshot' in r.stderr
    r = node.create(store, '--snapshot', FIXTURE_TAG, '--name', 'f', '--take-over', check=False)
    assert r.returncode == 2 and '--take-over is for --incremental' in r.stderr
    # without --base: the node's last full backup; but inc1, on full, took in links since
    # full2 was made: a chain on full2 would lack them
    r = node.incremental(store, 'inc2', check=False)
    assert r.returncode == 3 and 'incremental inc1 (of every table, on another full backup) ' \
        'was made after full2' in r.stderr, r.stderr
    node.snapshot_all('now')  # the fixture's snapshot is older than inc1's removals: no base
    node.create(store, '--snapshot', 'now', '--name', 'full3')
    node.flush(TABLES[1])
    r = node.incremental(store, 'inc2')
    assert 'incremental inc2 on full3 (base full3)' in r.stdout


def committed_blobs(store):
    """{(table, sha256)} of every file of every backup whose manifest is written."""
    res = set()
    for root, _, names in os.walk(os.path.join(store, 'backups')):
        for n in names:
            if n.endswith('.json'):
                with open(os.path.join(root, n)) as f:
                    m = json.load(f)
                for t, files in tree_of(m).items():
                    res |= {(t, h) for h in files.values()}
    return res


def check_no_link_lost(node, store, before):
    """Every link gone from backups/ since `before` has its bytes in a committed backup."""
    now = node.links()
    held = committed_blobs(store)
    for t, names in before.items():
        for n, (_, h) in names.items():
            if n not in now.get(t, {}):
                assert (t, h) in held, f'{t}/backups/{n} removed, its bytes in no backup'


def stop_while_uploading(argv, store):
    """Starts argv and stops it (SIGSTOP) once it holds a pack upload open in STORE/tmp:
    after its lock, before its commit. None when it ended first."""
    c = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while c.poll() is None and not uploading(c.pid, store):
        time.sleep(0.0005)
    c.send_signal(signal.SIGSTOP)
    if c.poll() is None and uploading(c.pid, store):
        return c
    c.send_signal(signal.SIGCONT)
    c.communicate()
    return None


def test_links_stay_until_the_commit(node, store):
    """Stopped while it writes its pack, then killed: no link removed, no backup; run again,
    it commits and removes them."""
    node.full(store)
    argv = [CASSBACKUP, 'create', '--store', store, '--data-dir', node.data, '--node', 'n1',
            '--cassandra-conf', str(node.conf), '--incremental', '--name', 'inc1',
            '--level', '19', '--threads', '1']
    for _ in range(3):  # each try flushes more; one that ended first made a backup
        for t in TABLES:
            for _ in range(3):
                node.flush(t)
        before = node.links()
        c = stop_while_uploading(argv, store)
        if c:
            break
        argv[argv.index('--name') + 1] += 'x'
        check_no_link_lost(node, store, before)
    assert c is not None, 'every incremental ended before it wrote a pack'
    try:
        assert node.links() == before  # writing its pack: nothing removed
        assert not os.path.exists(os.path.join(store, 'backups', argv[argv.index('--name') + 1]))
    finally:
        c.kill()
        c.wait()
    assert node.links() == before
    names = [b['name'] for b in backup_list(store)]
    node.incremental(store, 'after')
    assert all(not v for v in node.links().values())
    check_no_link_lost(node, store, before)
    assert [b['name'] for b in backup_list(store)] == names + ['after']


def test_kill_at_random_points_never_loses_a_link(node, store):
    """kill -9 of create --incremental after a random delay (up to 1.5 times its longest
    whole run seen, the first one run whole), 12 times, a few flushes between: no link whose bytes are not
    committed is ever gone, and every backup listed is whole."""
    rng = random.Random(15)
    node.full(store)
    argv = [CASSBACKUP, 'create', '--store', store, '--data-dir', node.data, '--node', 'n1',
            '--cassandra-conf', str(node.conf), '--incremental']
    for t in TABLES:
        node.flush(t)
    t0 = time.monotonic()
    node.incremental(store, 'whole')
    longest = time.monotonic() - t0
    for i in range(12):
        for t in rng.sample(TABLES, 2):
            node.flush(t)
        before = node.links()
        t0 = time.monotonic()
        c = subprocess.Popen(argv + ['--name', f'k{i}'], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            c.wait(rng.uniform(0, 1.5 * longest))
        except subprocess.TimeoutExpired:
            c.send_signal(signal.SIGKILL)
        c.communicate()
        if c.returncode == 0:
            longest = max(longest, time.monotonic() - t0)
        check_no_link_lost(node, store, before)
        # the store is whole: every backup listed is complete and verifies
        for b in backup_list(store):
            assert b['complete']
    # what the kills left, a last run takes in
    before = node.links()
    r = node.incremental(store, 'last')
    check_no_link_lost(node, store, before)
    assert all(not v for v in node.links().values())
    for b in backup_list(store):
        cb('verify', '--store', store, b['name'])


def links_in(node):
    return sum(len(v) for v in node.links().values())


@pytest.mark.parametrize('at, after', [(1, False), (1, True), ('middle', False), ('last', True)])
def test_kill_inside_link_removal(node, store, at, after):
    """kill -9 at an exact removal among those create --incremental makes after its commit
    (tests/shim/killat.c): the backup is committed and whole, exactly the links before the
    kill are gone and their bytes are in it, and the next run removes the rest (the backup it
    follows holds them) without making a backup."""
    from conftest import BUILD, preload
    assert os.path.exists(os.path.join(BUILD, 'tests', 'libkillat.so')), 'the killat shim is not built'
    node.full(store)
    for t in TABLES:
        node.flush(t)
    total = links_in(node)
    n = {1: 1, 'middle': total // 2, 'last': total}[at]
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_KILL_AT_UNLINK=str(n),
               CASSBACKUP_TEST_KILL_AFTER='1' if after else '0')
    before = node.links()
    r = subprocess.run([CASSBACKUP, 'create', '--store', store, '--data-dir', node.data, '--node', 'n1',
                        '--cassandra-conf', str(node.conf), '--incremental', '--name', 'killed'],
                       env=env, capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert [(b['name'], b['complete']) for b in backup_list(store)] == [('full', True), ('killed', True)]
    assert links_in(node) == total - (n if after else n - 1)
    check_no_link_lost(node, store, before)
    r = node.incremental(store, 'again')
    assert f'nothing new in backups/ since killed; no backup was made; {total - (n if after else n - 1)} ' \
        'link(s) it holds removed' in r.stdout
    assert links_in(node) == 0
    cb('verify', '--store', store, 'killed')


def test_a_backup_forgotten_before_its_links_go_takes_none_of_them(node, store):
    """An incremental paused after its commit, before it removed its backups/ links; meanwhile
    its backup was forgotten: the links went all the same, their bytes in packs no backup used,
    which the next prune deleted. The removals take a shared lock of the store (no prune runs
    during them) and first look that the backup is still there: links left, said."""
    from conftest import preload
    from test_lease import stopped_at_state_t
    node.full(store)
    for t in TABLES:
        node.flush(t)
    before = node.links()
    c = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, 'create', '--store', store, '--data-dir', node.data, '--node', 'n1',
         '--cassandra-conf', str(node.conf), '--incremental', '--name', 'inc1'], text=True,
        env=dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST='after'),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        cb('forget', '--store', store, 'inc1')
    finally:
        c.send_signal(signal.SIGCONT)
        out, err = c.communicate(timeout=120)
    assert c.returncode == 1 and 'forgotten meanwhile' in err and 'links left in place' in err, (out, err)
    cb('prune', '--store', store, '--max-unused', '0')
    assert node.links() == before
    node.incremental(store, 'inc2')  # the next one takes them in again, and removes them
    assert links_in(node) == 0
    check_no_link_lost(node, store, before)


def test_retention_keeps_the_base(node, store, tmp_path):
    expected = a_day(node, store)
    # forget by name: the base of a staying incremental is refused, nothing forgotten
    r = cb('forget', '--store', store, 'full', check=False)
    assert r.returncode == 2 and 'incremental backup inc1 is made on it' in r.stderr
    r = cb('forget', '--store', store, 'inc2', check=False)
    assert r.returncode == 2 and 'incremental backup inc3 is made on it' in r.stderr
    assert len(backup_list(store)) == 4
    # a policy keeping the newest keeps everything it follows
    r = cb('forget', '--store', store, '--keep-last', '1', '--prune')
    assert [b['name'] for b in backup_list(store)] == ['full', 'inc1', 'inc2', 'inc3']
    assert 'base' in r.stdout
    # a newer full backup without incrementals (of a snapshot taken now: the fixture's is
    # older than inc3's removals, no base): the old chain can go as a whole
    node.snapshot_all('now')
    node.create(store, '--snapshot', 'now', '--name', 'full2')
    r = cb('forget', '--store', store, '--keep-last', '1', '--prune')
    assert [b['name'] for b in backup_list(store)] == ['full2']
    with mounted(store, str(tmp_path / 'mnt')) as m:
        assert mounted_tree(m, 'full2') == {t: node.snapshot(t, 'now') for t in TABLES}
    # and an incremental of it, forgotten together with its base
    node.flush(TABLES[0])
    node.incremental(store, 'inc4')
    cb('forget', '--store', store, 'inc4', 'full2')
    assert backup_list(store) == []
    assert expected


def test_full_backup_clears_links_older_than_its_snapshot(node, store):
    node.full(store)
    # links of sstables flushed before the snapshot (in it), and of one flushed after it
    for t in TABLES:
        b = os.path.join(node.dirs[t], 'backups')
        os.makedirs(b, exist_ok=True)
        for n in os.listdir(node.dirs[t]):
            if n.startswith('nb-'):
                os.link(os.path.join(node.dirs[t], n), os.path.join(b, n))
    later = node.flush(TABLES[1])
    mtime = time.time() + 3600  # written after the snapshot
    for n in later:
        os.utime(os.path.join(node.dirs[TABLES[1]], n), (mtime, mtime))
    r = node.full(store, 'full2', '--clear-incremental-links')
    assert f'removed, {len(later)} left' in r.stdout
    links = node.links()
    assert set(links[TABLES[1]]) == set(later)
    assert all(not links[t] for t in TABLES if t != TABLES[1])


def test_clearing_links_keeps_those_whose_bytes_only_an_unused_pack_holds(node, store):
    """--clear-incremental-links removed a link whose bytes a pack held that no backup used
    (its backup forgotten): the next prune deleted that pack, and the bytes were gone."""
    node.full(store)
    t = TABLES[3]
    made = node.flush(t)  # linked into backups/ too
    node.snapshot_all('tag2')
    node.create(store, '--snapshot', 'tag2', '--name', 'f0')
    cb('forget', '--store', store, 'f0')  # its pack, holding made, is used by no backup now
    hour_ago = time.time() - 3600  # flushed well before the next snapshot
    for n in made:  # compacted away from the table: only the links in backups/ are left
        os.utime(os.path.join(node.dirs[t], n), (hour_ago, hour_ago))
        os.unlink(os.path.join(node.dirs[t], n))
    node.snapshot_all('tag3')
    node.create(store, '--snapshot', 'tag3', '--name', 'f1', '--clear-incremental-links')
    cb('prune', '--store', store)
    held = set()
    for b in backup_list(store):
        for tree in tree_of(manifest(store, b['name'])).values():
            held |= set(tree.values())
    links = node.links().get(t, {})
    data = [n for n in made if n.endswith('Data.db')]
    assert data and all(n in links for n in data)  # bytes no backup holds: kept
    for n, h in made.items():  # each either still linked or held by a backup
        assert (n in links and sha(os.path.join(node.dirs[t], 'backups', n)) == h) or h in held, n


def set_created(store, name, ms):
    """Backup name was made at ms (manifests are never rewritten in place: the catalog, a
    cache, is dropped to read it again)."""
    path = manifest_path(store, name)
    with open(path) as f:
        doc = json.load(f)
    doc['created_ns'] = ms * 10**6
    rewrite_manifest(path, doc)
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(os.path.join(store, 'catalog.db' + suffix)):
            os.unlink(os.path.join(store, 'catalog.db' + suffix))


T0 = 1767225600000  # 2026-01-01 00:00:00 GMT
HOUR = 3600 * 1000


def point_in_time(store, tmp_path, created):
    """Backups dated as created {name: ms}; returns pitr(at_ms, *args): a dry run of a
    point-in-time restore of node n1 into an empty node."""
    for name, ms in created.items():
        set_created(store, name, ms)
    conf = tmp_path / 'pitrconf'
    conf.mkdir()
    live = tmp_path / 'live' / 'data'
    for t in TABLES:
        os.makedirs(live / KS / (t + '-' + 'e' * 32))

    def pitr(at, *args):
        when = time.strftime('%Y:%m:%d %H:%M:%S', time.gmtime(at // 1000))
        return cb('restore', '--store', store, '--data-dir', str(live), '--point-in-time', when,
                  '--cassandra-conf', str(conf), '--node', 'n1', '--dry-run', *args, check=False)
    return pitr


def test_point_in_time_takes_the_full_backup_and_its_incrementals_before_the_time(node, store,
                                                                                   tmp_path):
    a_day(node, store, rounds=2, per_table=1)
    t0, hour = T0, HOUR
    pitr = point_in_time(store, tmp_path, {'full': t0, 'inc1': t0 + hour, 'inc2': t0 + 2 * hour})
    r = pitr(t0 + hour + hour // 2)
    assert 'backup inc1 of node n1' in r.stdout, r.stdout + r.stderr
    # the replay starts at the full backup's snapshot: an incremental flushes nothing itself
    assert '(snapshot by 2026:01:01 00:00:00' in r.stdout
    r = pitr(t0 + 3 * hour)
    assert 'backup inc2 of node n1' in r.stdout, r.stdout + r.stderr
    r = pitr(t0 + hour // 2)
    assert 'backup full of node n1' in r.stdout, r.stdout + r.stderr


def test_an_incremental_builds_on_a_full_backup_kept_under_its_host_id_in_capitals(node, store, tmp_path):
    """An older cassbackup kept a host id as the user gave it: a full backup made with --host-id
    in capitals is backups/full/<ID>.json. create --incremental of that node, its id now in lower
    case, found no full backup to build on, exit 3; and a point-in-time restore of an
    incremental on it could not find where its replay starts."""
    hid = '5f1c0c8e-0000-4000-8000-0000000000ab'
    node.full(store, 'full', '--host-id', hid)
    path = manifest_path(store, 'full')
    doc = json.load(open(path))
    doc['host_id'] = hid.upper()
    os.unlink(path)
    rewrite_manifest(os.path.join(os.path.dirname(path), hid.upper() + '.json'), doc)
    for t in TABLES:
        node.flush(t)
    node.incremental(store, 'inc1', '--host-id', hid)
    assert manifest(store, 'inc1')['base'] == 'full'
    assert os.listdir(os.path.join(store, 'backups', 'inc1')) == [hid + '.json']
    pitr = point_in_time(store, tmp_path, {'full': T0, 'inc1': T0 + HOUR})
    r = pitr(T0 + 2 * HOUR)
    assert r.returncode == 0 and 'backup inc1 of node n1' in r.stdout, r.stdout + r.stderr
    assert '(snapshot by 2026:01:01 00:00:00' in r.stdout, r.stdout


def test_point_in_time_takes_a_full_backup_of_the_tables_restored(node, store, tmp_path):
    """A full backup of one table made after the nightly one of every table was taken for a
    point-in-time restore of the whole node: the other tables came back from no backup, and the
    replay from its snapshot on missed their older writes. The newest full backup holding the
    tables restored is taken."""
    node.full(store)
    node.full(store, 'one', '--table', f'{KS}.{TABLES[0]}')
    node.flush(TABLES[1])
    node.incremental(store, 'inc1')
    at = T0 + 3 * HOUR
    pitr = functools.partial(point_in_time(store, tmp_path, {'full': T0, 'inc1': T0 + HOUR,
                                                             'one': T0 + 2 * HOUR}), at)
    r = pitr()
    assert 'backup inc1 of node n1' in r.stdout, r.stdout + r.stderr
    r = pitr('--table', f'{KS}.{TABLES[0]}')
    assert 'backup one of node n1' in r.stdout, r.stdout + r.stderr
    r = pitr('--table', f'{KS}.{TABLES[1]}')
    assert 'backup inc1 of node n1' in r.stdout, r.stdout + r.stderr
    # only a backup of fewer tables: refused, naming it
    cb('forget', '--store', store, 'inc1')
    cb('forget', '--store', store, 'full')
    r = pitr()
    assert r.returncode == 3 and r.stderr.strip() == (
        'cassbackup: node n1 has no complete full backup of the tables restored made at or before '
        f'2026:01:01 03:00:00 GMT; the last one, one, is of table {KS}.{TABLES[0]}: restore those '
        'with --keyspace or --table, or name an older backup of them'), r.stderr

def test_point_in_time_takes_a_full_backup_from_before_scopes_only_for_tables_it_holds(
        node, store, tmp_path):
    """A full backup whose manifest records no scope (an older cassbackup's) read as every
    table: one made of one table was taken for a point-in-time restore of the whole node, the
    other tables coming back from no backup. It serves only tables named with --table that its
    tree holds."""
    t0, t1 = TABLES[0], TABLES[1]
    node.full(store, 'one', '--table', f'{KS}.{t0}')
    path = manifest_path(store, 'one')
    m = manifest(store, 'one')
    del m['scope']
    rewrite_manifest(path, m)
    pitr = functools.partial(point_in_time(store, tmp_path, {'one': T0}), T0 + HOUR)
    for args in [(), ('--keyspace', KS), ('--table', f'{KS}.{t1}')]:
        r = pitr(*args)
        assert r.returncode == 3 and r.stderr.strip() == (
            'cassbackup: node n1 has no complete full backup of the tables restored made at or '
            'before 2026:01:01 01:00:00 GMT; the last one, one, is of tables it does not record '
            '(made by a cassbackup before scopes): restore those with --keyspace or --table, or '
            'name an older backup of them'), (args, r.stderr)
    r = pitr('--table', f'{KS}.{t0}')
    assert r.returncode == 0 and 'backup one of node n1' in r.stdout, r.stdout + r.stderr


def test_index_sstables_and_a_table_made_again(node, store, tmp_path):
    """backups/.<index>/ is taken in as the index directory; a table dropped and made again
    (another id, the old directory gone) shows as the node has it."""
    node.full(store)
    t = TABLES[2]
    tdir = node.dirs[t]
    idx = os.path.join(tdir, '.idx')
    os.makedirs(os.path.join(tdir, 'backups', '.idx'))
    os.makedirs(idx)
    src, prefix = node.donors.pop(0)
    want = {}
    for n in os.listdir(src):
        if n.startswith(prefix):
            name = 'nb-500-big-' + n[len(prefix):]
            with open(os.path.join(src, n), 'rb') as f, open(os.path.join(idx, name), 'wb') as g:
                g.write(f.read())
            os.link(os.path.join(idx, name), os.path.join(tdir, 'backups', '.idx', name))
            want[name] = sha(os.path.join(idx, name))
    # legacy_nb_clust dropped and made again: a new directory, the old one removed
    old = node.dirs[TABLES[0]]
    new = old.rsplit('-', 1)[0] + '-' + 'a' * 32
    os.rename(old, new)
    for n in os.listdir(new):
        if n.startswith('nb-'):
            os.unlink(os.path.join(new, n))
    node.dirs[TABLES[0]] = new
    made = node.flush(TABLES[0])
    r = node.incremental(store, 'inc1')
    assert f'{len(want) + len(made)} new file(s)' in r.stdout
    m = manifest(store, 'inc1')
    tables = {tb['name']: tb for ks in m['keyspaces'] for tb in ks['tables']}
    assert {f['name']: f['sha256'] for f in tables[t]['files'] if f.get('dir') == '.idx'} == want
    assert tables[TABLES[0]]['id'] == 'a' * 32
    assert {f['name']: f['sha256'] for f in tables[TABLES[0]]['files']} == made
    assert not os.listdir(os.path.join(tdir, 'backups', '.idx'))
    with mounted(store, str(tmp_path / 'mnt')) as mt:
        d = mt.path('inc1', KS, t, '.idx')
        assert {n: sha(os.path.join(d, n)) for n in os.listdir(d)} == want
        assert mounted_tree(mt, 'inc1')[TABLES[0]] == made


@pytest.mark.parametrize('where', ['backups/.idx', 'backups'])
def test_a_mount_in_a_table_directory_is_not_crossed(node, store, tmp_path, where):
    """A directory elsewhere bind-mounted at <table>/backups/.<name>/ (it looks like an index
    directory) was taken in, and its files were unlinked there: another directory's, outside
    the data directory. Cassandra's hard links never cross a mount; one is skipped, said."""
    node.full(store)
    t = TABLES[2]
    at = os.path.join(node.dirs[t], where)
    os.makedirs(at, exist_ok=True)
    outside = tmp_path / 'elsewhere'
    (outside / 'backups' / '.idx').mkdir(parents=True)
    src, prefix = node.donors.pop(0)
    for n in os.listdir(src):
        if n.startswith(prefix):
            for d in (outside, outside / 'backups', outside / 'backups' / '.idx'):
                shutil.copyfile(os.path.join(src, n), d / ('nb-150-big-' + n[len(prefix):]))
    before = {p: sha(p) for p in map(str, outside.rglob('*')) if os.path.isfile(p)}
    made = node.flush(TABLES[0])
    subprocess.run(['mount', '--bind', str(outside), at], check=True)
    try:
        r = node.incremental(store, 'inc1')
    finally:
        subprocess.run(['umount', at], check=True)
    assert {p: sha(p) for p in map(str, outside.rglob('*')) if os.path.isfile(p)} == before
    assert f'skipping {at}: a mount point' in r.stderr, r.stderr
    m = manifest(store, 'inc1')
    tables = {tb['name']: tb for ks in m['keyspaces'] for tb in ks['tables']}
    have = {f['name']: f['sha256'] for f in tables[TABLES[0]]['files']}
    assert {n: have.get(n) for n in made} == made
    assert not any(f['name'].startswith('nb-150-') for f in tables[t]['files'])


def recreate(node, table, id_hex, drop_snapshot):
    """Drops table as Cassandra does (its sstables gone, the directory and its backups/ left;
    with auto_snapshot a dropped-<millis>-<table> snapshot) and makes it again as <table>-<id>.
    Returns the old directory."""
    old = node.dirs[table]
    for n in os.listdir(old):
        if os.path.isfile(os.path.join(old, n)):
            os.unlink(os.path.join(old, n))
    if drop_snapshot:
        os.makedirs(os.path.join(old, 'snapshots', f'dropped-{int(time.time() * 1000)}-{table}'))
    node.dirs[table] = os.path.join(os.path.dirname(old), f'{table}-{id_hex}')
    os.makedirs(node.dirs[table])
    return old


def drop(node, table, ago=0):
    """Drops table as Cassandra does with auto_snapshot, `ago` seconds back: its sstables
    gone, a dropped-<millis>-<table> snapshot, backups/ left."""
    d = node.dirs[table]
    for n in os.listdir(d):
        if os.path.isfile(os.path.join(d, n)):
            os.unlink(os.path.join(d, n))
    os.makedirs(os.path.join(d, 'snapshots', f'dropped-{int((time.time() - ago) * 1000)}-{table}'))


def set_mtime(node, table, names, when):
    """The sstables names of table, and their backups/ links, written at time when (s)."""
    for n in names:
        for path in (os.path.join(node.dirs[table], n), os.path.join(node.dirs[table], 'backups', n)):
            if os.path.exists(path):
                os.utime(path, (when, when))


def backdate(node, table, names, ago):
    set_mtime(node, table, names, time.time() - ago)


def test_a_dropped_and_recreated_table_is_backed_up_as_the_live_one(node, store):
    """The dropped table's directory stays with its backups/ links (flushed before the drop):
    they belong to no live table. The incremental takes the live directory's, shows the table
    as made again, says which directory it skipped, and leaves that one's links alone."""
    import uuid
    t = TABLES[2]
    node.full(store)
    stale = node.flush(t)  # flushed before the drop, never backed up
    old = recreate(node, t, uuid.uuid4().hex, drop_snapshot=True)
    fresh = node.flush(t)
    other = node.flush(TABLES[0])
    r = node.incremental(store, 'inc1')
    skipped = [l for l in r.stderr.splitlines() if 'skipping' in l]
    assert skipped == [f'cassbackup: skipping {old}/backups (now {os.path.basename(node.dirs[t])}): '
                       "a dropped table's, not the live one's; its links are left for you to remove"]
    tree = tree_of(manifest(store, 'inc1'))
    assert tree[t] == fresh  # the table as made again: none of the dropped one's files
    assert tree[TABLES[0]] == {**node.snapshot(TABLES[0]), **other}
    assert sorted(listed(os.path.join(old, 'backups'))) == sorted(stale)
    assert not listed(os.path.join(node.dirs[t], 'backups'))
    # and the next one too, the old links still there
    more = node.flush(t)
    node.incremental(store, 'inc2')
    assert tree_of(manifest(store, 'inc2'))[t] == {**fresh, **more}


def test_a_table_made_again_with_its_old_id_is_the_live_one(node, store):
    """CREATE TABLE ... WITH ID: dropped as A, made as B, B dropped, made again with A's id.
    Both directories hold a drop snapshot; A holds live sstables: A is the table, B skipped."""
    import uuid
    from conftest import preload
    t = TABLES[2]
    # the full backup 20 minutes ago (its clock moved back by the clockshift shim)
    node.env = dict(os.environ, LD_PRELOAD=preload('clockshift'), CASSBACKUP_TEST_CLOCK_SHIFT='-1200')
    if 'libasan' in node.env['LD_PRELOAD']:  # a sanitizer build: programs create starts get the
        # runtime preloaded too, and their leaks at exit would fail them (as test_cluster.at_clock)
        node.env['ASAN_OPTIONS'] = ':'.join(filter(None, [os.environ.get('ASAN_OPTIONS', ''), 'detect_leaks=0']))
    node.full(store)
    node.env = None
    a_dir = node.dirs[t]
    stale = node.flush(t)  # A's, flushed before its drop 10 minutes ago, never backed up
    backdate(node, t, stale, 900)
    drop(node, t, ago=600)
    node.dirs[t] = os.path.join(os.path.dirname(a_dir), f'{t}-{uuid.uuid1().hex}')
    os.makedirs(node.dirs[t])
    b_files = node.flush(t)
    b_dir = node.dirs[t]
    drop(node, t)
    node.dirs[t] = a_dir  # WITH ID = A's id: the same directory again
    again = node.flush(t)
    r = node.incremental(store, 'inc1')
    assert f'skipping {b_dir}/backups (now {os.path.basename(a_dir)})' in r.stderr
    assert re.search(rf'skipping {len(stale)} file\(s\) of {os.path.basename(a_dir)}/backups flushed '
                     r'before the table was dropped or truncated at \S+: data it no longer has; left for '
                     r'you to remove',
                     r.stderr), r.stderr
    # made again: neither the full backup's files nor the links from before the drop
    assert tree_of(manifest(store, 'inc1'))[t] == again
    assert sorted(listed(os.path.join(b_dir, 'backups'))) == sorted(b_files)
    assert sorted(listed(os.path.join(a_dir, 'backups'))) == sorted(stale)


def test_a_truncated_table_shows_only_what_was_flushed_since(node, store):
    """TRUNCATE deletes every sstable; with auto_snapshot Cassandra takes
    truncated-<millis>-<table>. The backups/ links from before it stay. The incremental after it
    shows the table as the node has it (only what was flushed since), not the full backup's
    files or the links from before the truncate: a restore would bring truncated rows back."""
    from conftest import preload
    t = TABLES[1]
    node.env = dict(os.environ, LD_PRELOAD=preload('clockshift'), CASSBACKUP_TEST_CLOCK_SHIFT='-1200')
    if 'libasan' in node.env['LD_PRELOAD']:  # as in the WITH ID test above
        node.env['ASAN_OPTIONS'] = ':'.join(filter(None, [os.environ.get('ASAN_OPTIONS', ''), 'detect_leaks=0']))
    node.full(store)  # 20 minutes ago
    node.env = None
    stale = node.flush(t)  # flushed 15 minutes ago, then the table was truncated 10 minutes ago
    backdate(node, t, stale, 900)
    d = node.dirs[t]
    for n in os.listdir(d):
        if os.path.isfile(os.path.join(d, n)):
            os.unlink(os.path.join(d, n))
    os.makedirs(os.path.join(d, 'snapshots', f'truncated-{int((time.time() - 600) * 1000)}-{t}'))
    since = node.flush(t)
    other = node.flush(TABLES[0])
    r = node.incremental(store, 'inc1')
    assert re.search(rf'skipping {len(stale)} file\(s\) of {os.path.basename(d)}/backups flushed before '
                     r'the table was dropped or truncated at \S+: data it no longer has', r.stderr), r.stderr
    tree = tree_of(manifest(store, 'inc1'))
    assert tree[t] == since
    assert tree[TABLES[0]] == {**node.snapshot(TABLES[0]), **other}  # the others as before
    assert sorted(listed(os.path.join(d, 'backups'))) == sorted(stale)
    # the next incremental builds on it: the truncate is older than inc1
    more = node.flush(t)
    node.incremental(store, 'inc2')
    assert tree_of(manifest(store, 'inc2'))[t] == {**since, **more}


def test_a_cleared_truncate_snapshot_brings_no_truncated_rows_back(node, store):
    """The truncate snapshot cleared (nodetool clearsnapshot) after the incremental that saw
    it: the next one took the links flushed before the truncate in as new, removed them, and a
    restore of it brought the truncated rows back. The truncate its previous backup recorded
    (emptied_ms) leaves them out too, and in place."""
    from conftest import preload
    t = TABLES[1]
    node.env = dict(os.environ, LD_PRELOAD=preload('clockshift'), CASSBACKUP_TEST_CLOCK_SHIFT='-1200')
    if 'libasan' in node.env['LD_PRELOAD']:  # as in the tests above
        node.env['ASAN_OPTIONS'] = ':'.join(filter(None, [os.environ.get('ASAN_OPTIONS', ''), 'detect_leaks=0']))
    node.full(store)  # 20 minutes ago
    node.env = None
    stale = node.flush(t)  # flushed 15 minutes ago, then the table was truncated 10 minutes ago
    backdate(node, t, stale, 900)
    truncate(node, t, time.time() - 600)
    since = node.flush(t)
    node.incremental(store, 'inc1')
    shutil.rmtree(os.path.join(node.dirs[t], 'snapshots', [n for n in os.listdir(os.path.join(node.dirs[t], 'snapshots'))
                                                           if n.startswith('truncated-')][0]))
    more = node.flush(t)
    r = node.incremental(store, 'inc2')
    assert f'{len(stale)} file(s) flushed before their table was truncated or dropped (as inc1 recorded) ' \
        'left out, and in place' in r.stdout, r.stdout
    assert tree_of(manifest(store, 'inc2'))[t] == {**since, **more}
    assert sorted(listed(os.path.join(node.dirs[t], 'backups'))) == sorted(stale)


def truncate(node, table, at):
    """TRUNCATE of table as Cassandra makes it with auto_snapshot, its snapshot named at time
    at (s): every sstable gone from the table directory, backups/ left as it is."""
    d = node.dirs[table]
    for n in os.listdir(d):
        if os.path.isfile(os.path.join(d, n)):
            os.unlink(os.path.join(d, n))
    os.makedirs(os.path.join(d, 'snapshots', f'truncated-{int(at * 1000)}-{table}'))


def test_an_sstable_flushed_right_after_a_truncate_is_taken_in(node, store):
    """A flush within a minute after TRUNCATE's snapshot was left out of every incremental as
    data from before the truncate, and its link said to be removed by hand, exit 0: only a
    drop's snapshot is named before the flush it makes; a truncate's is named after its
    flush, and what is flushed after the name is data the truncate kept."""
    t = TABLES[1]
    node.full(store)
    stale = node.flush(t)
    backdate(node, t, stale, 900)
    truncate(node, t, time.time() - 2)
    since = node.flush(t)  # 2 s after the truncate
    r = node.incremental(store, 'inc1')
    assert f'skipping {len(stale)} file(s)' in r.stderr, r.stderr
    assert tree_of(manifest(store, 'inc1'))[t] == since


def test_a_table_made_again_with_its_id_right_after_a_drop_is_backed_up(node, store):
    """DROP, then CREATE TABLE ... WITH ID (the same directory) and a flush within a minute:
    that flush was left out of every incremental as data from before the drop, and its link
    said to be removed by hand, exit 0. From before the drop is what its snapshot links (its
    own flush too) or what is no newer than its name."""
    t = TABLES[2]
    node.full(store)
    stale = node.flush(t)
    d = node.dirs[t]
    snap = os.path.join(d, 'snapshots', f'dropped-{int((time.time() - 5) * 1000)}-{t}')
    os.makedirs(snap)
    for n in listed(d):
        if os.path.isfile(os.path.join(d, n)):
            os.link(os.path.join(d, n), os.path.join(snap, n))
            os.unlink(os.path.join(d, n))
    since = node.flush(t)  # made again WITH ID, flushed 5 s after the drop
    r = node.incremental(store, 'inc1')
    assert f'skipping {len(stale)} file(s)' in r.stderr, r.stderr
    assert tree_of(manifest(store, 'inc1'))[t] == since


def test_a_truncate_in_another_data_directory_is_seen_by_every_incremental(node, store, tmp_path):
    """A table in two data directories, truncated while its sstables were all in the first,
    whose backups/ did not exist yet: the incrementals looked for the truncate only where
    backups/ was, so one took the old files with what was flushed since, and the one after,
    seeing the first directory at last, emptied the table again and dropped that, exit 0."""
    t = TABLES[1]
    tdir2, both = second_data_dir(node, tmp_path, t)
    node.full(store, 'full', *both)
    truncate(node, t, time.time() - 60)  # its snapshot in the first data directory only
    a = flush_into(node, tdir2, 500)
    node.incremental(store, 'inc1', *both)
    assert tree_of(manifest(store, 'inc1'))[t] == a
    c = node.flush(t)  # the first directory's backups/ is made
    node.incremental(store, 'inc2', *both)
    assert tree_of(manifest(store, 'inc2'))[t] == {**a, **c}


def test_a_clock_stepped_back_after_a_truncate_never_empties_the_table_again(node, store):
    """A truncate's snapshot is named by the node's clock; the next incremental emptied the
    table whenever that name was later than its previous backup's date. A clock running
    ahead at the truncate, stepped back since, made every incremental drop what the one
    before had taken in (its links removed), exit 0. The backups record the newest drop or
    truncate they saw, and a table is emptied only when a newer one appears."""
    t = TABLES[1]
    node.full(store)
    ahead = time.time() + 300  # the clock 5 minutes ahead, then stepped back
    truncate(node, t, ahead)
    since = node.flush(t)
    set_mtime(node, t, since, ahead + 60)
    node.incremental(store, 'inc1')
    assert tree_of(manifest(store, 'inc1'))[t] == since
    assert {tb['name']: tb['emptied_ms'] for ks in manifest(store, 'inc1')['keyspaces']
            for tb in ks['tables']}[t] == int(ahead * 1000)
    other = node.flush(TABLES[0])
    node.incremental(store, 'inc2')
    tree = tree_of(manifest(store, 'inc2'))
    assert tree[t] == since and tree[TABLES[0]].items() >= other.items()
    # a truncate since: emptied
    truncate(node, t, ahead + 120)
    after = node.flush(t)
    set_mtime(node, t, after, ahead + 180)
    node.incremental(store, 'inc3')
    assert tree_of(manifest(store, 'inc3'))[t] == after


@pytest.mark.parametrize('how', ['no drop snapshot', 'the live one made again with an old id'])
def test_two_directories_of_a_table_without_a_sure_sign_are_refused(node, store, how):
    """Without auto_snapshot there is no sign that cannot mislead (a newer time-based id is
    none: WITH ID, a clock behind), and a live directory may hold an old drop snapshot: both
    refused, nothing taken, no link removed."""
    import uuid
    node.full(store)
    t = TABLES[2]
    if how == 'no drop snapshot':
        node.flush(t)
        recreate(node, t, uuid.uuid1().hex, drop_snapshot=False)  # a newer time-based id
        node.flush(t)
    else:  # A dropped (snapshot), B made and dropped without one, A made again WITH ID
        a_dir = node.dirs[t]
        drop(node, t)
        node.dirs[t] = os.path.join(os.path.dirname(a_dir), f'{t}-{uuid.uuid1().hex}')
        os.makedirs(node.dirs[t])
        node.flush(t)
        for n in os.listdir(node.dirs[t]):
            if os.path.isfile(os.path.join(node.dirs[t], n)):
                os.unlink(os.path.join(node.dirs[t], n))
        node.dirs[t] = a_dir
        node.flush(t)
    before = node.links()
    r = node.incremental(store, 'inc1', check=False)
    assert r.returncode == 1
    assert re.search(rf"^cassbackup: table {KS}.{t}: backups/ found in two table directories with "
                     r"different ids \(.*\); was the table dropped and re-created\? move the dropped "
                     r"one's backups/ out of the data directory; no backup was made$", r.stderr, re.M)
    assert [b['name'] for b in backup_list(store)] == ['full']
    assert node.links() == before


def test_two_incrementals_at_once(node, store):
    """Two creates --incremental of one node at the same time: each commits or fails with one
    line (a link the other removed under it); no link whose bytes are not committed is lost,
    and the next run leaves backups/ empty."""
    node.full(store)
    for t in TABLES:
        for _ in range(2):
            node.flush(t)
    before = node.links()
    argv = [CASSBACKUP, 'create', '--store', store, '--data-dir', node.data, '--node', 'n1',
            '--cassandra-conf', str(node.conf), '--no-schema', '--incremental', '--name']
    procs = [subprocess.Popen(argv + [n], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for n in ('a', 'b')]
    outs = [p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode in (0, 1), err
        if p.returncode:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and 'cannot' in lines[0], err
    assert any(p.returncode == 0 for p in procs)
    check_no_link_lost(node, store, before)
    for b in backup_list(store):
        assert b['complete']
    node.incremental(store, 'c')
    assert all(not v for v in node.links().values())


def test_an_incremental_that_waited_follows_the_one_it_waited_for(node, tmp_path):
    """Two incrementals of one node, each with a catalog of its own (another cache directory:
    another user, a systemd unit's CacheDirectory=), on S3. b holds the node's lock, paused at
    its first pack upload; an sstable is flushed; a opens the store and waits for the lock. Once
    b is done, a follows b and takes the new sstable: chosen from a catalog read at its open, it followed the full backup, found b's removals
    from backups/ and refused with exit 3 (a stale catalog; the CI of 699f29f failed the same
    way on a local store)."""
    with moto(tmp_path) as (port, key, secret):
        env = s3_env(port, key, secret, tmp_path / 'cache-a')
        loc = 's3://cbtest/stores/waited'
        cb('init', '--store', loc, env=env)
        node.env = env
        node.full(loc)
        for t in TABLES:
            node.flush(t)
        argv = [CASSBACKUP, 'create', '--store', loc, '--data-dir', node.data, '--node', 'n1',
                '--cassandra-conf', str(node.conf), '--no-schema', '--incremental', '--name']
        with S3Proxy(port, 'hold', match='PUT /cbtest/stores/waited/packs/') as px:
            b_env = dict(env, AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}',
                         CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache-b'))
            b = subprocess.Popen(argv + ['b'], env=b_env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            a_err = tmp_path / 'a.err'
            a = None
            try:
                while not px.holding.wait(0.1):
                    assert b.poll() is None, b.communicate()
                flushed = node.flush(TABLES[1])  # after b's scan: a's to take
                a = subprocess.Popen(argv + ['a'], env=env, stdout=subprocess.PIPE,
                                     stderr=open(a_err, 'w'), text=True)
                while 'waiting for another cassbackup create' not in a_err.read_text():
                    assert a.poll() is None, a_err.read_text()
                    time.sleep(0.05)
            finally:
                px.set_fault(None)
                px.release()
                out_b, err_b = b.communicate(timeout=300)
                out_a = a.communicate(timeout=300)[0] if a else ''
        assert b.returncode == 0, err_b
        assert a.returncode == 0, a_err.read_text()
        assert f'incremental a on b (base full): {len(flushed)} new file(s)' in out_a, out_a
        listed = {x['name']: x for g in json.loads(cb('list', '--store', loc, '--json', env=env).stdout)
                  for x in g['nodes']}
        assert (listed['b']['previous'], listed['a']['previous']) == ('full', 'b')
        assert listed['a']['complete'] and listed['b']['complete']
        assert all(not v for v in node.links().values())


def test_incrementals_into_object_storage(s3, tmp_path):
    """The same on S3 (moto, s3rver): the links go after the commit, the mount shows each
    incremental's whole tree, list its base."""
    loc, env = s3
    node = Node(tmp_path)
    node.env = env
    node.full(loc)
    state = {t: node.snapshot(t) for t in TABLES}
    for i in (1, 2):
        for t in TABLES[:2]:
            state[t].update(node.flush(t))
        node.incremental(loc, f'inc{i}')
        assert all(not v for v in node.links().values())
    listed = {b['name']: b for g in json.loads(cb('list', '--store', loc, '--json', env=env).stdout)
              for b in g['nodes']}
    assert (listed['inc2']['base'], listed['inc2']['previous']) == ('full', 'inc1')
    with mounted(loc, str(tmp_path / 'mnt'), env=env) as m:
        assert mounted_tree(m, 'inc2') == state


def test_backup_incremental_as_its_timer_runs_it(node, store, tmp_path):
    """cassbackup backup --incremental (cassbackup-incremental.service): on the last full
    backup, named from the default template by the UTC hour, its links removed; nothing new is
    success; its metrics are operation="incremental", never a full backup's."""
    from test_ops import has, metrics, of
    node.full(store, 'full', '--include-system')  # as cassbackup backup makes it
    mfile = str(tmp_path / 'cassbackup.prom')
    conf = tmp_path / 'cassbackup.conf'
    hook_log = tmp_path / 'hook.log'
    hook = tmp_path / 'hook.sh'
    hook.write_text(f'#!/bin/sh\necho "$CASSBACKUP_HOOK $CASSBACKUP_OPERATION $CASSBACKUP_BACKUP" >> {hook_log}\n')
    hook.chmod(0o755)
    keys = dict(store=store, data_dir=node.data, cassandra_conf=str(node.conf), metrics_file=mfile,
                hook_pre=hook, hook_post=hook)
    conf.write_text(''.join(f'{k} = {v}\n' for k, v in keys.items()))
    flushed = node.flush(TABLES[0])
    before = time.gmtime()
    r = cb('--config', str(conf), 'backup', '--incremental', '--node', 'n1')
    names = {time.strftime('inc-%Y-%m-%dT%H00', t) for t in (before, time.gmtime())}
    made = [b['name'] for b in backup_list(store) if b['name'] != 'full']
    assert len(made) == 1 and made[0] in names, (made, names)
    assert f'incremental {made[0]} on full (base full): {len(flushed)} new file(s)' in r.stdout
    m = manifest(store, made[0])
    assert (m['base'], m['previous']) == ('full', 'full')
    assert tree_of(m)[TABLES[0]] == {**node.snapshot(TABLES[0]), **flushed}
    assert all(not names for names in node.links().values())
    # hooks are told what metrics are: an incremental, not a full backup
    assert hook_log.read_text().splitlines() == [f'hook_pre incremental {made[0]}',
                                                 f'hook_post incremental {made[0]}']
    ms = metrics(mfile)
    inc = dict(operation='incremental', node='n1')
    assert of(ms, 'cassbackup_last_run_success', **inc) == 1
    assert of(ms, 'cassbackup_last_files', **inc) > 0
    assert not has(ms, 'cassbackup_last_success_timestamp_seconds', operation='create')
    # nothing new: exit 0, no backup, counted as a successful run with no figures of its own
    # (--name: the hour's name is taken; create refuses a name taken, as for a full backup)
    r = cb('--config', str(conf), 'backup', '--incremental', '--node', 'n1', '--name', 'again')
    assert f'nothing new in backups/ since {made[0]}; no backup was made' in r.stdout
    # hook_post is told no backup was made: no name
    assert hook_log.read_text().splitlines()[-2:] == ['hook_pre incremental again', 'hook_post incremental ']
    assert len(backup_list(store)) == 2
    ms = metrics(mfile)
    assert of(ms, 'cassbackup_runs_total', **inc) == 2
    assert of(ms, 'cassbackup_failures_total', **inc) == 0
    assert of(ms, 'cassbackup_last_run_success', **inc) == 1
    # the configuration's template and period; a full backup's metrics stay apart
    conf.write_text(conf.read_text() + 'incremental_name = n1-%Y%m%dT%H%M\nincremental_name_period = 15min\n')
    node.flush(TABLES[1])
    cb('--config', str(conf), 'backup', '--incremental', '--node', 'n1')
    latest = [b for b in backup_list(store) if b['name'].startswith('n1-')]
    assert len(latest) == 1 and int(latest[0]['name'][-2:]) % 15 == 0
    assert latest[0]['previous'] == made[0] and latest[0]['base'] == 'full'
    assert of(metrics(mfile), 'cassbackup_runs_total', **inc) == 3


@pytest.mark.parametrize('key, value, said', [
    ('incremental_name', 'x' * 300, 'incremental_name = ' + 'x' * 300 + ': makes no name'),
    ('incremental_name_period', '1mo', 'incremental_name_period = 1mo: '),
])
def test_backup_incremental_refuses_a_bad_name_template(node, store, tmp_path, key, value, said):
    node.full(store)
    node.flush(TABLES[0])
    conf = tmp_path / 'cassbackup.conf'
    conf.write_text(f'store = {store}\ndata_dir = {node.data}\ncassandra_conf = {node.conf}\n{key} = {value}\n')
    p = cb('--config', str(conf), 'backup', '--incremental', check=False)
    assert p.returncode == 2
    assert p.stderr.startswith(f'cassbackup: {said}') and p.stderr.endswith('; nothing was done\n')
    assert len(p.stderr.splitlines()) == 1
    assert [b['name'] for b in backup_list(store)] == ['full']
    assert node.links()[TABLES[0]]


def test_an_incremental_builds_only_on_a_full_backup_of_its_tables(node, store):
    """A full backup of one table became the base of the next incremental of every table:
    the other tables' trees then held only what was flushed since, their older data silently
    missing from every backup of the chain. The base is now the newest full backup of the
    tables the incremental is of, and --base of other tables is refused."""
    t0, t1 = TABLES[0], TABLES[1]
    node.full(store)
    node.full(store, 'p1', '--table', f'{KS}.{t0}')
    assert manifest(store, 'full')['scope'] == {'system': False, 'select': []}
    assert manifest(store, 'p1')['scope'] == {'system': False,
                                              'select': [{'keyspace': KS, 'table': t0}]}
    # list and show say what each is of
    assert {b['name']: b['scope'] for b in backup_list(store)} == {
        'full': manifest(store, 'full')['scope'], 'p1': manifest(store, 'p1')['scope']}
    shown = cb('show', '--store', store, 'p1').stdout.splitlines()
    assert f'  tables of        table {KS}.{t0}' in shown, shown
    state = {t: node.snapshot(t) for t in TABLES}
    state[t1].update(node.flush(t1))
    r = node.incremental(store, 'inc1')
    assert 'incremental inc1 on full (base full)' in r.stdout
    assert tree_of(manifest(store, 'inc1')) == state
    assert manifest(store, 'inc1')['scope'] == {'system': False, 'select': []}
    # --base of other tables: refused, nothing changed
    flushed = node.flush(t1)
    before = node.links()
    r = node.incremental(store, 'inc2', '--base', 'p1', check=False)
    assert r.returncode == 2, r
    assert r.stderr.strip().splitlines() == [
        f'cassbackup: --base p1 is a backup of table {KS}.{t0}, this incremental of every table '
        '(on it, it would lack their older data): give the --keyspace, --table and '
        '--include-system the full backup was made with, or make a full backup of these; '
        'no backup was made']
    assert node.links() == before and 'inc2' not in {b['name'] for b in backup_list(store)}
    # an incremental of that table would build on it, but inc1 (on full) took in and removed
    # links since p1 was made: refused; after a new full backup of it, it builds on that one
    node.flush(t0)
    r = node.incremental(store, 'inc3', '--table', f'{KS}.{t0}', check=False)
    assert r.returncode == 3 and 'incremental inc1 (of every table, on another full backup) ' \
        'was made after p1' in r.stderr, r.stderr
    node.snapshot_all('p2')
    node.create(store, '--snapshot', 'p2', '--name', 'p2', '--table', f'{KS}.{t0}')
    node.flush(t0)
    # it would take t0's links from the chain of every table: refused, said, unless asked
    before = node.links()
    r = node.incremental(store, 'inc3', '--table', f'{KS}.{t0}', check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "cassbackup: the node's incrementals of every table (their newest, inc1) take in "
        f"backups/ links of tables this one is of too: one of table {KS}.{t0} would take them, and "
        "theirs would be refused until their next full backup; make it of their tables, or give "
        "--take-over; no backup was made"], r.stderr
    assert node.links() == before and 'inc3' not in {b['name'] for b in backup_list(store)}
    r = node.incremental(store, 'inc3', '--table', f'{KS}.{t0}', '--take-over')
    assert 'incremental inc3 on p2 (base p2)' in r.stdout
    assert set(tree_of(manifest(store, 'inc3'))) == {t0}
    assert all(n in node.links()[t1] for n in flushed)  # t1's links are not its to take
    # and now the chain of every table is refused in turn: inc3 took t0's links
    r = node.incremental(store, 'inc4', check=False)
    assert r.returncode == 3 and 'incremental inc3 (of table ' in r.stderr, r.stderr


def test_a_full_backup_from_before_scopes_is_no_base(node, store):
    """A full backup whose manifest records no scope (made by a cassbackup before scopes) read
    as every table: when it was made of one table, an incremental of every table built on it,
    exit 0, and the other tables' older data was missing from every backup of the chain. Its
    manifest cannot say which tables it holds, so no incremental builds on it."""
    t0, t1 = TABLES[0], TABLES[1]
    node.full(store, 'p1', '--table', f'{KS}.{t0}')
    path = manifest_path(store, 'p1')
    m = manifest(store, 'p1')
    del m['scope']  # as the older cassbackup wrote it
    rewrite_manifest(path, m)
    cb('reindex', '--store', store)
    flushed = node.flush(t1)
    before = node.links()
    r = node.incremental(store, 'inc1', check=False)
    assert r.returncode == 3 and r.stderr.strip().splitlines() == [
        "cassbackup: the node's last full backup, p1, was made by a cassbackup that did not "
        'record which tables it is of (it may hold some only): no incremental builds on it; '
        'make a full backup; no backup was made'], r
    r = node.incremental(store, 'inc1', '--table', f'{KS}.{t0}', '--base', 'p1', check=False)
    assert r.returncode == 2 and '--base p1 was made by a cassbackup that did not record' \
        in r.stderr, r
    assert node.links() == before and [b['name'] for b in backup_list(store)] == ['p1']
    # it still reads, restores and is kept as before; a full backup starts a chain
    assert cb('verify', '--store', store, 'p1').returncode == 0
    state = {t: node.snapshot(t) for t in TABLES}
    node.full(store)
    state[t1].update(flushed)
    state[t1].update(node.flush(t1))
    r = node.incremental(store, 'inc1')
    assert 'incremental inc1 on full (base full)' in r.stdout
    assert tree_of(manifest(store, 'inc1')) == state


def test_an_incremental_is_refused_before_it_ends_a_chain_that_is_not_the_newest(node, store):
    """Two timers' chains of other tables (t0 and t1; t2 and t3), the second's incremental the
    node's newest: a hand-made incremental of t0 alone, on a full backup of t0, was accepted
    (only the node's newest incremental was looked at) and the first chain's next one refused.
    Every chain that goes on counts; one of every table a chain is of goes on, ending it."""
    t0, t1, t2, t3 = TABLES
    a, c = (f'{KS}.{t0}', f'{KS}.{t1}'), (f'{KS}.{t2}', f'{KS}.{t3}')
    sel = lambda ts: [x for t in ts for x in ('--table', t)]  # noqa: E731
    node.full(store, 'fa', *sel(a))
    node.full(store, 'fc', *sel(c))
    node.flush(t0)
    node.incremental(store, 'ia1', *sel(a))
    node.snapshot_all('p')
    node.create(store, '--snapshot', 'p', '--name', 'p', '--table', a[0])
    node.flush(t2)
    node.incremental(store, 'ic1', *sel(c))  # the node's newest incremental
    node.flush(t0)
    before = node.links()
    r = node.incremental(store, 'h1', '--table', a[0], check=False)
    assert r.returncode == 2 and "the node's incrementals of table " \
        f"{KS}.{t0} and table {KS}.{t1} (their newest, ia1) take in backups/ links" in r.stderr, r.stderr
    assert node.links() == before
    node.flush(t1)
    r = node.incremental(store, 'ia2', *sel(a))  # that chain goes on
    assert 'incremental ia2 on ia1 (base fa)' in r.stdout
    # taken over: that chain ends; one that no longer goes on refuses nothing
    node.snapshot_all('p2')
    node.create(store, '--snapshot', 'p2', '--name', 'p2', '--table', a[0])
    node.flush(t0)
    r = node.incremental(store, 'h1', '--table', a[0], '--take-over')
    assert 'incremental h1 on p2 (base p2)' in r.stdout
    node.flush(t1)
    assert node.incremental(store, 'ia3', *sel(a), check=False).returncode == 3
    node.flush(t0)
    r = node.incremental(store, 'h2', '--table', a[0])
    assert 'incremental h2 on h1 (base p2)' in r.stdout


def test_a_snapshot_of_some_tables_only_is_a_backup_of_those(node, store):
    """create --snapshot T of a snapshot taken of two tables only (nodetool snapshot -kt) said
    nothing and recorded a backup of every table: an incremental of every table on it lacked
    the older data of the two others. It warns, and records the two tables as its scope."""
    some = TABLES[:2]
    node.snapshot_all('some', some)
    r = node.create(store, '--snapshot', 'some', '--name', 'f-some')
    others = ', '.join(f'{KS}.{t}' for t in TABLES[2:])
    assert (f'cassbackup: warning: the snapshot is not in 2 selected table(s) that hold data '
            f'({others}): this backup lacks them, and an incremental builds on it only for the '
            'tables it holds') in r.stderr.splitlines()
    assert manifest(store, 'f-some')['scope']['select'] == [{'keyspace': KS, 'table': t}
                                                             for t in some]
    node.flush(TABLES[2])
    before = node.links()
    r = node.incremental(store, 'inc1', check=False)
    assert r.returncode == 3 and 'node n1 has no full backup of the tables this incremental is of; ' \
        'the last one, f-some, is of table ' in r.stderr, r
    assert node.links() == before
    sel = [a for t in reversed(some) for a in ('--table', f'{KS}.{t}')]  # any order
    node.flush(some[0])
    r = node.incremental(store, 'inc1', *sel)
    assert 'incremental inc1 on f-some (base f-some)' in r.stdout
    # a table whose snapshot is in one data directory and whose live sstables are in another
    # too is whole: no warning
    second = node.data + '2'
    os.makedirs(os.path.join(second, KS, os.path.basename(node.dirs[TABLES[3]])))
    src = node.dirs[TABLES[3]]
    for n in os.listdir(src):
        if os.path.isfile(os.path.join(src, n)):
            shutil.copy(os.path.join(src, n), os.path.join(second, KS, os.path.basename(src), 'x' + n))
    node.snapshot_all('all')
    r = node.create(store, '--snapshot', 'all', '--name', 'f-all', '--data-dir', second)
    assert 'warning' not in r.stderr
    assert manifest(store, 'f-all')['scope'] == {'system': False, 'select': []}


@pytest.mark.parametrize('at', [1, 4])
def test_a_renamed_sstable_killed_before_its_removals_is_held_not_taken_again(node, store, at):
    """An incremental took an sstable under a fresh generation (the tree held its names with
    other bytes) and was killed before removing its links: the next one took it again under
    yet another generation (the same data twice in every later backup), or, with some links
    gone, left the rest for good as an sstable still being linked. Now they are held under the
    generation the killed run gave them, and removed."""
    from conftest import BUILD, preload
    assert os.path.exists(os.path.join(BUILD, 'tests', 'libkillat.so')), 'the killat shim is not built'
    node.full(store)
    t = TABLES[2]
    node.gen[t] = 0  # a generation the full backup holds, with other bytes
    made = node.flush(t)
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_KILL_AT_UNLINK=str(at),
               CASSBACKUP_TEST_KILL_AFTER='0')
    r = subprocess.run([CASSBACKUP, 'create', '--store', store, '--data-dir', node.data, '--node', 'n1',
                        '--cassandra-conf', str(node.conf), '--incremental', '--name', 'killed'],
                       env=env, capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    tree = tree_of(manifest(store, 'killed'))[t]
    assert sorted(made.values()) == sorted(h for n, h in tree.items() if n not in node.snapshot(t))
    left = links_in(node)
    assert left == len(made) - (at - 1)
    r = node.incremental(store, 'again')
    assert f'nothing new in backups/ since killed; no backup was made; {left} link(s) it holds ' \
        'removed' in r.stdout, r.stdout
    assert links_in(node) == 0
    assert [b['name'] for b in backup_list(store)] == ['full', 'killed']


def test_an_incremental_on_another_chain_since_the_base_is_refused(node, store):
    """Incrementals on one full backup, then on another one made meanwhile (hand-made ones
    without --include-system, then the timer's with it): the first chain's incrementals had
    taken in and removed the links flushed since the other full backup, so the second chain
    lacked that data, exit 0. Refused until a full backup is made."""
    node.full(store, 'night')
    node.full(store, 'sys', '--include-system')
    node.flush(TABLES[0])
    node.incremental(store, 'i1')  # on night
    node.flush(TABLES[1])
    before = node.links()
    r = node.incremental(store, 'i2', '--include-system', check=False)
    assert r.returncode == 3 and r.stderr.strip() == (
        'cassbackup: incremental i1 (of every table, on another full backup) was made after sys '
        'and took in and removed backups/ links of tables this one is of too: on sys it would '
        'lack their data; make a full backup of these tables first; no backup was made'), r.stderr
    assert node.links() == before
    r = node.incremental(store, 'i2', '--include-system', '--base', 'sys', check=False)
    assert r.returncode == 2 and 'incremental i1 (of every table' in r.stderr
    node.snapshot_all('sys2')
    node.create(store, '--snapshot', 'sys2', '--name', 'sys2', '--include-system')
    node.flush(TABLES[3])
    r = node.incremental(store, 'i2', '--include-system')
    assert 'incremental i2 on sys2 (base sys2)' in r.stdout
    # a full backup of other tables than the incrementals leaves their links alone
    node.flush(TABLES[2])
    before = node.links()
    node.snapshot_all('night2')
    r = node.create(store, '--snapshot', 'night2', '--name', 'night2', '--clear-incremental-links')
    assert ('cassbackup: backups/ links left in place: the node\'s incrementals (the newest, i2) '
            'are of every table and the system keyspaces, this backup of every table, and those '
            'incrementals still take them in') in r.stderr.splitlines(), r.stderr
    assert node.links() == before


def test_a_full_backup_that_cleared_links_ends_the_older_chains(node, store):
    """A full backup of one table made with --clear-incremental-links removed that table's
    links flushed before its snapshot; the next incremental of every table, on the older full
    backup of every table, then lacked them, exit 0. The clearing is in the manifest, and such
    an incremental is refused."""
    t0 = TABLES[0]
    node.full(store)
    node.flush(t0)
    node.snapshot_all('one')
    r = node.create(store, '--snapshot', 'one', '--name', 'one', '--table', f'{KS}.{t0}',
                    '--clear-incremental-links')
    assert 'link(s) older than the snapshot with their bytes in the store removed' in r.stdout
    assert manifest(store, 'one')['clears_links'] is True
    assert 'clears_links' not in manifest(store, 'full')
    node.flush(TABLES[1])
    before = node.links()
    r = node.incremental(store, 'inc1', check=False)
    assert r.returncode == 3 and r.stderr.strip() == (
        f'cassbackup: full backup one (of table {KS}.{t0}, --clear-incremental-links) was made '
        'after full and removed backups/ links of tables this one is of too: on full it would '
        'lack their data; make a full backup of these tables first; no backup was made'), r.stderr
    assert node.links() == before


def a_new_chain_goes_on(node, store, full, table, inc):
    """A full backup of a snapshot taken now, a flush into table: incremental inc builds on it."""
    node.snapshot_all(full)
    node.create(store, '--snapshot', full, '--name', full)
    node.flush(table)
    r = node.incremental(store, inc)
    assert f'incremental {inc} on {full} (base {full})' in r.stdout


def one_table_chain(node, store, nothing_new=False):
    """The nightly full backup (with the system keyspaces, as cassbackup backup makes it), then
    by hand a full backup of one table and an incremental of it, which takes in (or, with
    nothing new, only removes) the links of an sstable flushed meanwhile. Returns that
    sstable's {name: sha256}."""
    t0 = TABLES[0]
    node.full(store, 'night', '--include-system')
    if nothing_new:  # flushed before the one-table backup: its snapshot holds it
        made = node.flush(t0)
        node.snapshot_all('one', [t0])
        node.create(store, '--snapshot', 'one', '--name', 'one', '--table', f'{KS}.{t0}')
    else:
        node.snapshot_all('one', [t0])
        node.create(store, '--snapshot', 'one', '--name', 'one', '--table', f'{KS}.{t0}')
        made = node.flush(t0)
    r = node.incremental(store, 'j1', '--table', f'{KS}.{t0}')
    if nothing_new:  # no backup recorded a removal: the links stay (taken.h)
        assert 'nothing new' in r.stdout and '8 left for the next incremental' in r.stdout
        assert sorted(node.links()[t0]) == sorted(made)
    else:
        assert 'incremental j1 on one' in r.stdout and not node.links().get(t0)
    return made


def refused_for_lost_links(node, store, *args):
    node.flush(TABLES[1])
    before = node.links()
    r = node.incremental(store, 'i1', '--include-system', *args, check=False)
    assert r.returncode == 3, r
    assert f'cassbackup: table {KS}.{TABLES[0]}: links were removed from its backups/ ' in r.stderr
    assert 'make a full backup of these tables first; no backup was made' in r.stderr
    assert node.links() == before and 'i1' not in [b['name'] for b in backup_list(store)]


@pytest.mark.parametrize('how', ['nothing_new', 'forgotten', 'clock', 'copied'])
def test_links_taken_by_another_chain_are_never_missed(node, store, tmp_path, how):
    """Links another chain removed since this chain's last backup: the store could not tell
    when that chain's incremental found nothing new (no backup), had been forgotten, was dated
    before the base by a wrong clock, or when the chain went on in another store; the next
    incremental then lacked the sstable, exit 0. Each table's backups/ directory now counts
    the removals and names the backup that made the last one (.cassbackup-taken), and each
    backup records what it found and left there. An incremental that finds nothing new no
    longer removes links a full backup holds: the next incremental of the other chain takes
    them in."""
    made = one_table_chain(node, store, nothing_new=how == 'nothing_new')
    if how == 'nothing_new':
        node.flush(TABLES[1])
        r = node.incremental(store, 'i1', '--include-system')
        assert 'incremental i1 on night (base night)' in r.stdout
        assert tree_of(manifest(store, 'i1'))[TABLES[0]].items() >= made.items()
        return
    if how == 'forgotten':
        cb('forget', '--store', store, 'j1')
        cb('forget', '--store', store, 'one')
    if how == 'clock':
        for name in ('one', 'j1'):
            set_created(store, name, 1000)  # 1970: before the nightly one
    if how == 'copied':
        other = str(tmp_path / 'other')
        cb('init', '--store', other)
        cb('copy', '--from', store, '--to', other, 'night')
        store = other
    refused_for_lost_links(node, store)
    # a full backup starts a chain that has them
    node.snapshot_all('night2')
    node.create(store, '--snapshot', 'night2', '--name', 'night2', '--include-system')
    node.flush(TABLES[2])
    r = node.incremental(store, 'i2', '--include-system')
    assert 'incremental i2 on night2 (base night2)' in r.stdout


@pytest.mark.parametrize('when', ['1', 'after'])
def test_a_run_killed_before_its_marks_removed_nothing_and_its_chain_goes_on(node, store, when):
    """An incremental commits its manifest, then marks .cassbackup-taken, then removes links.
    Killed just before its manifest ('1') or between it and the marks ('after'), it marked and
    removed nothing: the chain goes on (on the backup committed, whose links the next one then
    holds and removes), and the mark is the next one's."""
    from conftest import preload
    from test_lease import stopped_at_state_t
    t0 = TABLES[0]
    node.full(store, 'night', '--include-system')
    made = node.flush(t0)
    env = dict(os.environ, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_MANIFEST=when)
    c = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, 'create', '--store', store, '--data-dir', node.data, '--node', 'n1',
         '--cassandra-conf', str(node.conf), '--incremental', '--name', 'killed',
         '--include-system', '--no-schema', '--no-conf'],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    c.kill()
    c.wait()
    assert taken_state(node.dirs[t0]) == (0, '-')  # made ready before the commit: no removal
    assert sorted(node.links()[t0]) == sorted(made)
    committed = when == 'after'
    assert [b['name'] for b in backup_list(store)] == ['night'] + ['killed'] * committed
    node.flush(TABLES[1])
    r = node.incremental(store, 'again', '--include-system')
    assert f'incremental again on {"killed" if committed else "night"} (base night)' in r.stdout
    assert tree_of(manifest(store, 'again'))[t0].items() >= made.items()
    assert not node.links().get(t0) and taken_state(node.dirs[t0]) == (1, 'again/n1')


def test_a_clock_set_back_never_makes_an_incremental_skip_the_one_before(node, store):
    """The next incremental followed the newest incremental made after its full backup, by
    their dates: a full backup dated ahead (a clock set back since) made it skip inc1 and build
    on the full one, lacking the sstable inc1 took in (and removed), exit 0. It follows the
    chain by the names each incremental records."""
    node.full(store)
    made = node.flush(TABLES[0])
    node.incremental(store, 'inc1')
    set_created(store, 'full', 4102444800000)  # 2100: ahead of every other date
    node.flush(TABLES[1])
    r = node.incremental(store, 'inc2')
    assert 'incremental inc2 on inc1 (base full)' in r.stdout, r.stdout
    assert tree_of(manifest(store, 'inc2'))[TABLES[0]].items() >= made.items()


def test_point_in_time_of_a_whole_node_takes_a_backup_with_the_system_keyspaces(node, store,
                                                                                tmp_path):
    """restore --point-in-time --whole-node took the newest full backup of every table, one
    made without --include-system, and the whole-node restore then refused it; the nightly
    backup with the system keyspaces covered the time."""
    src = node.dirs[TABLES[3]]  # a system_schema keyspace: a copy of one table's directory
    shutil.copytree(src, os.path.join(node.data, 'system_schema', 'keyspaces-' + 'a' * 32))
    node.full(store, 'night', '--include-system')
    node.full(store, 'hand')  # every table, no system keyspaces
    pitr = point_in_time(store, tmp_path, {'night': T0, 'hand': T0 + 2 * HOUR})
    r = pitr(T0 + 3 * HOUR, '--whole-node', '--owner', 'root')
    assert 'backup night of node n1' in r.stdout, r.stdout + r.stderr
    r = pitr(T0 + 3 * HOUR)
    assert 'backup hand of node n1' in r.stdout, r.stdout + r.stderr


def test_a_full_backup_refused_as_incomplete_marks_nothing(node, store):
    """A full backup with --clear-incremental-links marked backups/ as taken before it checked
    its snapshot whole: refused (a Data.db missing), it left a mark that refused the node's
    chain, though nothing was removed."""
    node.full(store)
    node.flush(TABLES[0])
    node.snapshot_all('broken')
    snap = os.path.join(node.dirs[TABLES[0]], 'snapshots', 'broken')
    data = sorted(n for n in listed(snap) if n.endswith('-Data.db'))
    os.unlink(os.path.join(snap, data[0]))
    r = node.create(store, '--snapshot', 'broken', '--name', 'broken',
                    '--clear-incremental-links', check=False)
    assert r.returncode != 0
    assert not os.path.exists(os.path.join(node.dirs[TABLES[0]], 'backups', TAKEN))
    r = node.incremental(store, 'inc1')
    assert 'incremental inc1 on full (base full)' in r.stdout


def flush_into(node, tdir, gen):
    """An sstable of generation gen flushed into table directory tdir (another data directory
    of the table), linked into its backups/. Returns {name: sha256}."""
    src, prefix = node.donors.pop(0)
    os.makedirs(tdir / 'backups', exist_ok=True)
    made = {}
    for n in sorted(os.listdir(src)):
        if n.startswith(prefix):
            name = f'nb-{gen}-big-' + n[len(prefix):]
            shutil.copy(os.path.join(src, n), tdir / name)
            os.link(tdir / name, tdir / 'backups' / name)
            made[name] = sha(tdir / name)
    return made


def second_data_dir(node, tmp_path, table):
    """A second data directory holding an empty directory of table: (that directory, the
    --data-dir options adding it)."""
    second = tmp_path / 'data2'
    tdir2 = second / KS / os.path.basename(node.dirs[table])
    tdir2.mkdir(parents=True)
    return tdir2, ['--data-dir', str(second)]


def taken_state(tdir):
    """What tdir/backups/.cassbackup-taken says: (count, by) of format 2."""
    magic, fmt, epoch, n, by = open(os.path.join(tdir, 'backups', TAKEN)).read().split()
    assert (magic, fmt, len(epoch)) == ('cassbackup-taken', '2', 16)
    return int(n), by.split(':', 1)[-1]  # '-': made ready, nothing removed


def test_a_table_in_two_data_directories_counts_its_links_in_both(node, store, tmp_path):
    """A table's backups/ in a second data directory, made after the first one's was marked
    (Cassandra flushed there for the first time): the mark of each is checked and moved on its
    own (only where links are removed), and the backup records each."""
    t = TABLES[0]
    tdir2, both = second_data_dir(node, tmp_path, t)
    node.full(store, 'full', *both)
    node.flush(t)
    node.incremental(store, 'inc1', *both)
    made = flush_into(node, tdir2, 500)
    r = node.incremental(store, 'inc2', *both)
    assert 'incremental inc2 on inc1 (base full)' in r.stdout, r.stdout + r.stderr
    assert tree_of(manifest(store, 'inc2'))[t].items() >= made.items()
    # the first directory, where it removed nothing, stays as inc1 left it
    assert (taken_state(node.dirs[t]), taken_state(tdir2)) == ((1, 'inc1/n1'), (1, 'inc2/n1'))
    links = {tb['name']: tb.get('links') for ks in manifest(store, 'inc2')['keyspaces']
             for tb in ks['tables']}[t]
    assert sorted((l['dir'], l['left'].split()[1], l.get('found', '- -').split()[1])
                  for l in links) == sorted([(os.path.join(node.dirs[t], 'backups'), '1', '-'),
                                             (str(tdir2 / 'backups'), '1', '0')])


def test_a_full_backup_records_every_data_directory_of_its_tables(node, store, tmp_path):
    """A full backup read the marks only in the data directories holding its snapshot: a
    second directory of the table that held no sstable any more, but backups/ marked by the
    older chain, refused every incremental of the new chain until the next full backup."""
    t = TABLES[0]
    tdir2, both = second_data_dir(node, tmp_path, t)
    node.full(store, 'full', *both)
    made = flush_into(node, tdir2, 500)
    node.incremental(store, 'inc1', *both)
    for n in made:  # compacted away since: the second directory has no sstable to snapshot
        os.unlink(tdir2 / n)
    node.snapshot_all('night2')
    node.create(store, '--snapshot', 'night2', '--name', 'night2', *both)
    node.flush(t)
    r = node.incremental(store, 'inc2', *both)
    assert 'incremental inc2 on night2 (base night2)' in r.stdout, r.stdout + r.stderr


def test_forgetting_the_newest_incremental_refuses_the_next_one(node, store):
    """forget by name of a chain's newest incremental: the next one followed the one before
    it, and the record of links taken said only this chain had removed any, so it lacked the
    sstable the forgotten one had taken in and removed, exit 0. The record names the backup
    that made the last removal: refused until a full backup is made."""
    node.full(store)
    node.flush(TABLES[0])
    node.incremental(store, 'inc1')
    node.flush(TABLES[1])
    node.incremental(store, 'inc2')
    cb('forget', '--store', store, 'inc2')
    node.flush(TABLES[2])
    before = node.links()
    r = node.incremental(store, 'inc3', check=False)
    assert r.returncode == 3 and r.stderr.strip() == (
        f'cassbackup: table {KS}.{TABLES[1]}: links were removed from its backups/ '
        f'({node.dirs[TABLES[1]]}/backups) since inc1, by backup inc2/n1: on full this '
        'incremental would lack them; make a full backup of these tables first; no backup was '
        'made'), r.stderr
    assert node.links() == before
    a_new_chain_goes_on(node, store, 'night2', TABLES[3], 'inc3')


def test_a_count_removed_by_hand_after_a_first_removal_refuses_the_chain(node, store, tmp_path):
    """The first backup to remove links from a backups/ directory found no file there; once
    another store's chain had removed links too and the file was removed by hand, the first
    chain read the missing file as what its last backup found (a run killed before its
    mark), went on, and lacked that sstable, exit 0. A file is made ready before a first
    removal, so a missing one never reads as found."""
    t = TABLES[0]
    node.full(store)
    node.flush(t)
    node.incremental(store, 'a1')  # the first removal there
    other = str(tmp_path / 'other')
    cb('init', '--store', other)
    node.snapshot_all('now')
    node.create(other, '--snapshot', 'now', '--name', 'b0')
    node.flush(t)
    node.incremental(other, 'b1')  # takes the links of that flush, in the other store
    os.unlink(os.path.join(node.dirs[t], 'backups', TAKEN))
    node.flush(TABLES[1])
    before = node.links()
    r = node.incremental(store, 'a2', check=False)
    assert r.returncode == 3 and (f'table {KS}.{t}: {node.dirs[t]}/backups/{TAKEN} is gone since '
                                  'a1 (removed by hand?)') in r.stderr, r.stderr
    assert node.links() == before


@pytest.mark.parametrize('manifest_json', [True, False])
def test_a_full_backup_of_a_snapshot_older_than_a_removal_is_no_base(node, store, manifest_json):
    """A snapshot taken by hand, then an incremental of the old chain took in what was flushed
    since and removed its links, then the snapshot was backed up: the new chain's incrementals
    lacked that sstable, exit 0. The full backup says so and records nothing of that
    directory, so they are refused for that table until a full backup of a fresh snapshot.
    When the snapshot began is its directory's birth time, also without manifest.json."""
    node.full(store, 'night')
    node.snapshot_all('night2')
    if not manifest_json:  # Cassandra before 2.2, or a snapshot copied without it
        for t in TABLES:
            os.unlink(os.path.join(node.dirs[t], 'snapshots', 'night2', 'manifest.json'))
    node.flush(TABLES[0])
    node.incremental(store, 'inc1')  # on night: takes the flush in, removes its links
    r = node.create(store, '--snapshot', 'night2', '--name', 'night2')
    assert (f'cassbackup: warning: table {KS}.{TABLES[0]}: {node.dirs[TABLES[0]]}/backups: links '
            'were removed there after snapshot night2 was taken') in r.stderr, r.stderr
    node.flush(TABLES[1])
    before = node.links()
    r = node.incremental(store, 'inc2', check=False)
    assert r.returncode == 3 and (f'table {KS}.{TABLES[0]}: links were removed from its backups/ '
                                  f'({node.dirs[TABLES[0]]}/backups) since night2, by backup inc1/n1')\
        in r.stderr, r.stderr
    assert node.links() == before
    a_new_chain_goes_on(node, store, 'night3', TABLES[2], 'inc2')


def test_clearing_removes_links_only_where_it_marked(node, store):
    """create --clear-incremental-links of a snapshot of one table removed the links of the
    other tables too (those whose bytes the store held), with no mark there to tell the
    node's incrementals: links go only from the backups/ directories it marked."""
    t0, t1 = TABLES[0], TABLES[1]
    node.full(store)
    b = os.path.join(node.dirs[t1], 'backups')
    os.makedirs(b)
    names = sorted(n for n in listed(node.dirs[t1]) if n.startswith('nb-'))
    for n in names:  # links of sstables the full backup holds
        os.link(os.path.join(node.dirs[t1], n), os.path.join(b, n))
    node.snapshot_all('one', [t0])
    r = node.create(store, '--snapshot', 'one', '--name', 'one', '--clear-incremental-links')
    assert 'removed, ' in r.stdout, r.stdout + r.stderr
    assert sorted(listed(b)) == names and not os.path.exists(os.path.join(b, TAKEN))


def test_a_data_directory_whose_path_is_not_utf8(node, store):
    """A path is bytes: a data directory whose path is not UTF-8 made every full backup fail
    with "Cannot allocate memory" once its tables' backups/ directories were recorded. The
    path is written in hex (dir_hex), and the chain goes on."""
    new = node.data + '-\udce9'  # the byte 0xe9, as os.fsencode spells it
    os.rename(node.data, new)
    node.dirs = {t: new + d[len(node.data):] for t, d in node.dirs.items()}
    node.data = new
    node.flush(TABLES[0])
    node.full(store)
    node.flush(TABLES[1])
    r = node.incremental(store, 'inc1')
    assert 'incremental inc1 on full (base full)' in r.stdout, r.stdout + r.stderr
    links = [l for ks in manifest(store, 'inc1')['keyspaces'] for tb in ks['tables']
             for l in tb.get('links', [])]
    assert links and all(bytes.fromhex(l['dir_hex']).startswith(os.fsencode(new)) for l in links)
    node.flush(TABLES[2])
    r = node.incremental(store, 'inc2')
    assert 'incremental inc2 on inc1 (base full)' in r.stdout


def test_a_data_directory_given_another_way_is_named(node, store, tmp_path):
    """The data directory given through a symbolic link: the backups/ directories are not
    those the chain recorded, and the refusal said links had been removed, by the chain's
    own backup. It says the path is another."""
    node.full(store)
    node.flush(TABLES[0])
    node.incremental(store, 'inc1')
    alias = tmp_path / 'alias'
    os.symlink(node.data, alias)
    node.flush(TABLES[1])
    r = cb('create', '--store', store, '--data-dir', str(alias), '--node', 'n1', '--cassandra-conf',
           str(node.conf), '--incremental', '--name', 'inc2', check=False)
    assert r.returncode == 3 and (
        f'its backups/ ({alias}/{KS}/{os.path.basename(node.dirs[TABLES[0]])}/backups) is as inc1 '
        f'recorded it under another path, {node.dirs[TABLES[0]]}/backups: give the data '
        'directories as that backup was given them') in r.stderr, r.stderr


def test_a_damaged_count_stops_incrementals_not_full_backups(node, store):
    """.cassbackup-taken that cassbackup did not write: an incremental stops on it in one line
    naming it (nothing removed); the nightly full backup is made all the same."""
    node.full(store)
    node.flush(TABLES[0])
    path = os.path.join(node.dirs[TABLES[0]], 'backups', TAKEN)
    with open(path, 'w') as f:
        f.write('garbage\n')
    before = node.links()
    r = node.incremental(store, 'inc1', check=False)
    assert r.returncode == 1 and r.stderr.strip() == (
        f'cassbackup: cannot read {node.dirs[TABLES[0]]}/backups/{TAKEN}: not a file cassbackup '
        'wrote (remove it, then make a full backup: the chain starts again there); no backup '
        'was made'), r.stderr
    assert node.links() == before
    node.snapshot_all('night2')
    r = node.create(store, '--snapshot', 'night2', '--name', 'night2')
    assert (f'cassbackup: warning: table {KS}.{TABLES[0]}: {node.dirs[TABLES[0]]}/backups: cannot '
            f'read {TAKEN} there (not a file cassbackup wrote') in r.stderr, r.stderr
    os.unlink(path)  # what to do: remove it, and the chain starts again on a full backup
    r = node.incremental(store, 'inc1')
    assert ('nothing new in backups/ since night2; no backup was made; 0 link(s) it holds '
            'removed, 8 left') in r.stdout


def test_one_create_of_a_node_at_a_time(node, store):
    """An hourly incremental started while the nightly full backup ran followed the previous
    full backup and took links the new chain then lacked (refused all day after), and two
    incrementals of one chain each missed what the other took. A create holds an exclusive
    flock of the node's first data directory from its plan to its last removal: another waits
    for it (--lock-wait), then goes on after it."""
    import fcntl
    node.full(store)
    made = node.flush(TABLES[0])
    fd = os.open(node.data, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a create running would
        r = node.incremental(store, 'inc1', '--lock-wait', '1', check=False)
        assert r.returncode == 1 and r.stderr.splitlines() == [
            f'cassbackup: waiting for another cassbackup create of this node (data directory '
            f'{node.data}) to end, up to 1 s',
            f'cassbackup: another cassbackup create of this node (data directory {node.data}) is '
            'still running after 1 s; nothing was done'], r.stderr
        assert sorted(node.links()[TABLES[0]]) == sorted(made)
        c = subprocess.Popen([CASSBACKUP, 'create', '--store', store, '--data-dir', node.data,
                              '--node', 'n1', '--cassandra-conf', str(node.conf), '--incremental',
                              '--name', 'inc1', '--no-schema', '--no-conf'],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = c.stderr.readline()  # it waits, and says so
        assert first.startswith('cassbackup: waiting for another cassbackup create'), first
        assert c.poll() is None
    finally:
        os.close(fd)  # the other create ends
    out, err = c.communicate(timeout=120)
    assert c.returncode == 0 and 'incremental inc1 on full (base full)' in out, err
    assert tree_of(manifest(store, 'inc1'))[TABLES[0]].items() >= made.items()


def test_retention_takes_a_full_backup_of_an_older_snapshot_as_that_old(node, store, tmp_path):
    """A snapshot s2 is taken, a flush follows and an incremental I1 takes it in (its links
    removed), then s2 is backed up (F2). Retention ordered backups by when they were made:
    --keep-last 1 kept F2 and forgot I1 and its base, and prune deleted the flushed sstable's
    bytes, though no kept backup held them. A full backup now counts as of its snapshot's time
    (its directories' mtime, in the manifest as snapshot_ns)."""
    node.full(store, 'F1')
    node.snapshot_all('s2')
    flushed = node.flush('legacy_nb_simple')
    node.incremental(store, 'I1')
    node.create(store, '--snapshot', 's2', '--name', 'F2')
    m = manifest(store, 'F2')
    assert 0 < m['snapshot_ns'] < manifest(store, 'I1')['created_ns'] < m['created_ns']
    out = cb('forget', '--store', store, '--keep-last', '1', '--prune').stdout
    assert [b['name'] for b in backup_list(store)] == ['F1', 'I1'], out
    # the flushed sstable, whose links I1 removed, is still in a kept backup, byte for byte
    out = tmp_path / 'exported'
    out.mkdir()
    cb('export', '--store', store, 'I1', '-o', str(tmp_path / 'i1.tar'))
    run('tar', '-xf', str(tmp_path / 'i1.tar'), '-C', str(out))
    got = {n: sha(os.path.join(root, n)) for root, _, names in os.walk(out) for n in names if n in flushed}
    assert got == flushed


def test_an_incremental_while_nodetool_is_silent_takes_the_host_id_its_backups_record(node, store):
    """The full backup was made while nodetool answered (keyed by the host id); Cassandra then
    stopped, its drain's flush waiting in backups/. The incremental, whose host id nodetool did
    not say, looked for the chain by the node name and said "no complete full backup", exit 3,
    every hour. It takes the one host id the node name's backups record, says so, and records
    it: the next incremental (nodetool back) goes on from it. Several host ids under the name
    (a host replaced) cannot be chosen between: --host-id."""
    hid = '5f1c0a5e-7d1b-4a3e-9c55-000000000001'
    node.full(store, 'full', '--host-id', hid)
    for t in TABLES:
        node.flush(t)
    r = node.incremental(store, 'inc1')
    assert f"node n1's host id taken from its backups, which all record it: {hid}" in r.stderr, r.stderr
    assert (manifest(store, 'inc1')['host_id'], manifest(store, 'inc1')['previous']) == (hid, 'full')
    for t in TABLES:
        node.flush(t)
    r = node.incremental(store, 'inc2', '--host-id', hid)
    assert manifest(store, 'inc2')['previous'] == 'inc1'
    node.full(store, 'other', '--host-id', '5f1c0a5e-7d1b-4a3e-9c55-000000000002')
    for t in TABLES:
        node.flush(t)
    r = node.incremental(store, 'inc3', check=False)
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
    assert "node n1's host id is not known (nodetool did not answer), and its backups record several" in r.stderr
