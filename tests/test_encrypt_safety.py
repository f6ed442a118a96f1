"""Encrypted stores as an adversary tried them (issue 16's review): key slots removed from two
hosts at once, a damaged slot, a key file someone else wrote, a target made to look plain
under copy, damage that must read as damage, and the mount under a configuration with
cache_dir. Each test failed before its fix."""
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess

import pytest

from conftest import (CASSBACKUP, cb, data_dir_args, make_sample, mounted, node_files_off, sample_dirs,
                      read, snapshot_tables, stop_while_writing)
from test_encrypt import keyfile, store_files, store_with_backup_b
from s3proxy import S3Proxy
from test_restore_safety import live_with_tables
from test_s3 import moto


def stored(loc):
    """The store's files but its catalog (a cache every command may touch)."""
    return [f for f in store_files(loc) if '/catalog.db' not in f]


def slots(loc, key, env):
    return json.loads(cb('key', 'list', '--store', loc, '--key-file', key, '--json', env=env).stdout)


def two_key_files(tmp_path):
    """A store holding backup b with two key-file slots: (loc, env, k1, k2, slot of k1, slot of k2)."""
    loc, env, k1 = store_with_backup_b(tmp_path)
    k2 = str(tmp_path / 'k2')
    cb('key', 'add', '--store', loc, '--key-file', k1, '--new-key-file', k2, env=env)
    [a] = [s['id'] for s in slots(loc, k1, env) if s['current']]
    [b] = [s['id'] for s in slots(loc, k2, env) if s['current']]
    return loc, env, k1, k2, a, b


def test_a_key_remove_whose_own_slot_went_meanwhile_removes_nothing(tmp_path, binaries):
    """Two `key remove` at once, each with its own key removing the other's slot, removed both
    and left a store no key opens. Now a remove holds the store's exclusive lock and removes
    only while the slot its key opened is still there: here it waits for a create's lock,
    the other slot's remove happens meanwhile, and it refuses."""
    loc, env, k1, k2, a, b = two_key_files(tmp_path)
    src = make_sample(str(tmp_path / 'big'), '--data-kib', '8192', '--incompressible', '--no-clutter',
                      '--keyspaces', '1', '--tables', '1', '--no-index')
    c = stop_while_writing([CASSBACKUP, *node_files_off(['create', '--store', loc, '--key-file', k1,
                                                         '--name', 'c', *data_dir_args(sample_dirs(src)),
                                                         '--snapshot', 'nightly-1'])], loc, env)
    assert c, 'the create ended before it was stopped writing'
    p = None
    try:
        p = subprocess.Popen([CASSBACKUP, 'key', 'remove', '--store', loc, '--key-file', k1, b],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
        line = p.stderr.readline()
        assert 'waiting for the shared lock of create' in line, line
        os.unlink(os.path.join(loc, 'keys', a + '.json'))  # k2's remove of k1's slot, meanwhile
    finally:
        c.send_signal(signal.SIGCONT)
        c.communicate(timeout=300)
        out, err = p.communicate(timeout=120) if p else ('', '')
    assert c.returncode == 0
    assert p.returncode == 1 and 'removed key slot' not in out, (out, err)
    assert f'key slot {a}, the one this key opened, was removed meanwhile' in err
    assert [s['id'] for s in slots(loc, k2, env)] == [b]
    cb('verify', '--store', loc, '--all', '--key-file', k2, env=env)


def test_two_key_removes_at_once_always_leave_a_key(tmp_path, binaries):
    """The race as an operator meets it, several times: whatever the order, one remove wins,
    the other refuses, and the winner's key still opens every backup."""
    for round in range(4):
        os.mkdir(tmp_path / str(round))
        loc, env, k1, k2, a, b = two_key_files(tmp_path / str(round))
        procs = [subprocess.Popen([CASSBACKUP, 'key', 'remove', '--store', loc, '--key-file', k, victim],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
                 for k, victim in ((k1, b), (k2, a))]
        results = [p.communicate(timeout=180) + (p.returncode,) for p in procs]
        # the loser's key opens nothing once the winner removed its slot (2: at the open), or
        # the winner removed it between the loser's open and its remove (1)
        assert sorted(rc for _, _, rc in results)[0] == 0, results
        assert sorted(rc for _, _, rc in results)[1] in (1, 2), results
        [winner] = [k for (_, _, rc), k in zip(results, (k1, k2)) if rc == 0]
        assert len(slots(loc, winner, env)) == 1
        cb('verify', '--store', loc, '--all', '--key-file', winner, env=env)


def test_a_damaged_slot_is_named_and_check_reports_it(tmp_path, binaries):
    """The only key-file slot cut short said "the store has no key file key slots"; and check
    said nothing of a damaged slot beside good ones."""
    loc, env, k1, k2, a, b = two_key_files(tmp_path)
    with open(os.path.join(loc, 'keys', b + '.json'), 'r+') as f:
        f.truncate(100)
    p = cb('check', '--store', loc, '--key-file', k1, env=env, check=False)
    assert p.returncode != 0 and f'keys/{b}.json: damaged key slot' in p.stdout + p.stderr, p
    p = cb('list', '--store', loc, '--key-file', k2, env=env, check=False)
    assert p.returncode != 0
    assert f'keys/{b}.json is damaged' not in p.stderr  # k2's own slot is the damaged one...
    assert 'opens none of the store' in p.stderr and f'1 damaged slot not tried (keys/{b}.json' in p.stderr
    os.unlink(os.path.join(loc, 'keys', a + '.json'))  # ...and now the only one
    p = cb('list', '--store', loc, '--key-file', k2, env=env, check=False)
    # the store is damaged, not the configuration: exit 1, not 2
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1
    assert f'no key slot for a key file opens the store: keys/{b}.json is damaged' in p.stderr, p.stderr
    os.unlink(os.path.join(loc, 'keys', b + '.json'))  # and none at all: said as such
    p = cb('list', '--store', loc, '--key-file', k2, env=env, check=False)
    assert p.returncode != 0 and 'the store has no key slots at all (keys/ is empty)' in p.stderr, p.stderr


def test_a_key_file_another_user_owns_is_refused(tmp_path, binaries):
    """root wrapped the master key under a key file another user wrote (mode 600 and all)."""
    os.chmod(tmp_path, 0o755)
    planted = keyfile(tmp_path / 'planted.key')
    os.chown(planted, 65534, 65534)
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    p = cb('init', '--store', str(tmp_path / 's'), '--encrypt', '--key-file', planted, env=env, check=False)
    assert p.returncode != 0 and not os.path.exists(tmp_path / 's' / 'config')
    assert f'key file {planted}: owned by user id 65534, not by us (user id 0) or root' in p.stderr
    os.mkdir(tmp_path / 'x')
    loc, env, k1 = store_with_backup_b(tmp_path / 'x')
    p = cb('key', 'add', '--store', loc, '--key-file', k1, '--new-key-file', planted, env=env, check=False)
    assert p.returncode != 0 and 'owned by user id 65534' in p.stderr
    p = cb('list', '--store', loc, '--passphrase-file', planted, env=env, check=False)
    assert p.returncode != 0 and 'owned by user id 65534' in p.stderr


def test_a_key_file_symlink_another_user_owns_is_refused(tmp_path, binaries):
    """A symlink another user planted, naming a root-owned private file whose bytes that user
    knows, chose the key as a planted file does; it was followed without a word. A link of
    ours or root's (a Kubernetes secret's) is followed."""
    os.chmod(tmp_path, 0o755)
    key = keyfile(tmp_path / 'root.key')
    link = tmp_path / 'planted-link'
    os.symlink(key, link)
    os.lchown(link, 65534, 65534)
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    p = cb('init', '--store', str(tmp_path / 's'), '--encrypt', '--key-file', link, env=env, check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1, p.stderr
    assert f'the symlink {link} is owned by user id 65534' in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / 's')
    # a link to a directory, anywhere on the way: the same (its owner can point it elsewhere)
    (tmp_path / 'keys').mkdir()
    os.rename(key, tmp_path / 'keys' / 'root.key')
    dirlink = tmp_path / 'shared'
    os.symlink(tmp_path / 'keys', dirlink)
    os.lchown(dirlink, 65534, 65534)
    for given in (dirlink / 'root.key', tmp_path / 'via'):
        if given.name == 'via':
            os.symlink('shared/root.key', given)  # ours, relative, through theirs
        p = cb('init', '--store', str(tmp_path / 's'), '--encrypt', '--key-file', given, env=env, check=False)
        assert p.returncode == 2 and f'the symlink {dirlink} is owned by user id 65534' in p.stderr, p.stderr
    # a Kubernetes secret's layout, every link root's: followed
    (tmp_path / '..2026_12_06').mkdir()
    os.rename(tmp_path / 'keys' / 'root.key', tmp_path / '..2026_12_06' / 'key')
    os.symlink('..2026_12_06', tmp_path / '..data')
    ours = tmp_path / 'k8s-link'
    os.symlink('..data/key', ours)
    cb('init', '--store', str(tmp_path / 's'), '--encrypt', '--key-file', ours, env=env)
    cb('list', '--store', str(tmp_path / 's'), '--key-file', ours, env=env)
    # a key handed over as an open descriptor, its name gone: /dev/fd/N is a magic link the
    # kernel follows to the open file, not a path (its text named the removed file)
    fd = os.open(ours, os.O_RDONLY)
    try:
        os.unlink(tmp_path / '..2026_12_06' / 'key')
        p = subprocess.run([CASSBACKUP, 'list', '--store', str(tmp_path / 's'), '--key-file', f'/dev/fd/{fd}'],
                           env=env, pass_fds=(fd,), capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    finally:
        os.close(fd)


def test_a_config_whose_encryption_settings_changed_is_named_not_the_key_or_the_packs(tmp_path, binaries):
    """Nothing authenticated the plaintext config: one bit flipped in its chunk size made
    check call every pack corrupt, while a create from another node sealed a new backup with
    the wrong chunk size, unreadable once the config was put right; one flipped in its id
    was reported as a wrong key. The slots now bind the config's id and chunk size to the
    key: each is named as the config's damage, and nothing is written."""
    loc, env, key = store_with_backup_b(tmp_path)
    config = os.path.join(loc, 'config')
    good = read(config)
    src = make_sample(str(tmp_path / 's2'), '--data-kib', '64', '--data-dirs', '1', '--no-clutter', '--seed', '7')
    for field, old, new in (('chunk', b'"chunk": 16384', b'"chunk": 16385'), ('id', None, None)):
        # the id: its first hex digit changed to another hex digit (a bit flip may leave hex)
        bad = good.replace(old, new) if old else re.sub(
            rb'("id": ")([0-9a-f])', lambda m: m.group(1) + (b'1' if m.group(2) == b'0' else b'0'), good, count=1)
        assert bad != good
        with open(config, 'wb') as f:
            f.write(bad)
        for args in (('list',), ('check',)):
            p = cb(*args, '--store', loc, '--key-file', key, env=env, check=False)
            assert p.returncode == 1 and 'wrong key' not in p.stderr, (field, p.stderr)
            assert 'config' in p.stderr and 'put back a copy' in p.stderr, (field, p.stderr)  # whole
            assert 'corrupt' not in p.stdout + p.stderr, (field, p.stdout + p.stderr)
        before = sorted(store_files(loc))
        p = cb('create', '--store', loc, '--name', 'c', *data_dir_args(sample_dirs(src)), '--snapshot',
               'nightly-1', '--key-file', key, env=dict(env, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache2')),
               check=False)
        assert p.returncode != 0 and 'config' in p.stderr, (field, p.stderr)
        assert sorted(store_files(loc)) == before
        with open(config, 'wb') as f:
            f.write(good)
    cb('verify', '--store', loc, '--all', '--key-file', key, env=env)
    # a slot of another store copied in beside this one's: a wrong key is still a wrong key
    os.makedirs(tmp_path / 'other')
    other, _, _ = store_with_backup_b(tmp_path / 'other')
    [slot] = os.listdir(os.path.join(other, 'keys'))
    shutil.copy(os.path.join(other, 'keys', slot), os.path.join(loc, 'keys', slot))
    p = cb('list', '--store', loc, '--key-file', keyfile(tmp_path / 'wrong'), env=env, check=False)
    assert p.returncode == 2 and 'wrong key' in p.stderr, p.stderr


def test_a_key_file_through_another_process_in_proc_is_refused(tmp_path, binaries):
    """/proc/PID/cwd, /root and /fd/N of another user's process that made itself not dumpable
    show as root's links: root followed them where that user pointed them (a root-owned
    private file whose bytes it knows). Only this process's own /proc links are followed."""
    import pathlib
    import tempfile
    shared = pathlib.Path(tempfile.mkdtemp(prefix='cb-proc-'))  # one user 65534 can reach
    os.chmod(shared, 0o755)
    rootdir = shared / 'rootdir'
    rootdir.mkdir(mode=0o711)
    planted = keyfile(rootdir / 'planted')
    script = shared / 'holder.py'
    script.write_text('import ctypes, os, sys, time\n'
                      'ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n'  # PR_SET_DUMPABLE 0
                      'os.chdir(sys.argv[1])\n'
                      'fd = os.open(sys.argv[2], os.O_PATH)\n'
                      'print(os.getpid(), fd, flush=True)\n'
                      'time.sleep(120)\n')
    holder = subprocess.Popen(['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups',
                               '/usr/bin/python3', str(script), str(rootdir), str(planted)],
                              stdout=subprocess.PIPE, text=True)
    try:
        pid, fd = holder.stdout.readline().split()
        env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        for given in (f'/proc/{pid}/cwd/planted', f'/proc/{pid}/fd/{fd}', f'/proc/{pid}/root{planted}'):
            p = cb('init', '--store', str(tmp_path / 's'), '--encrypt', '--key-file', given, env=env,
                   check=False)
            assert p.returncode == 2 and 'a link of another process in /proc' in p.stderr, (given, p.stderr)
            assert not os.path.exists(tmp_path / 's')
        # this process's own: followed (as for /dev/fd/N)
        cb('init', '--store', str(tmp_path / 's'), '--encrypt', '--key-file', f'/proc/self/root{planted}',
           env=env)
    finally:
        holder.kill()
        holder.wait()
        shutil.rmtree(shared)


def test_a_key_file_swapped_for_a_link_as_it_is_opened_is_refused(tmp_path, binaries):
    """The links on a key file's path were checked by name, then open(2) looked the path up
    again: another user who may write a directory on it swapped in a link of theirs between
    the two (held open here by the killat shim, just before the open), and key add made a
    slot for the file that link chose. The path is walked once, from descriptors."""
    from conftest import preload
    from test_lease import stopped_at_state_t
    os.chmod(tmp_path, 0o755)
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, 0o777)  # a key directory others may write to (not sticky)
    known = keyfile(tmp_path / 'known', 'A' * 64 + '\n')  # root's, its bytes known to others
    key = keyfile(shared / 'ops.key')
    evil = shared / 'evil'
    os.symlink(known, evil)
    os.lchown(evil, 65534, 65534)
    loc, env, own = store_with_backup_b(tmp_path)
    adder = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, 'key', 'add', '--store', loc, '--key-file', own, '--new-key-file', key],
        env=dict(env, LD_PRELOAD=preload('killat'), CASSBACKUP_TEST_STOP_AT_OPEN='ops.key'),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        os.rename(key, shared / 'ops.key.moved')  # what user 65534 may do in shared/
        os.rename(evil, key)
    finally:
        os.kill(adder.pid, signal.SIGCONT)
        out, err = adder.communicate(timeout=120)
    assert adder.returncode != 0 and 'is owned by user id 65534' in err, (out, err)
    p = cb('list', '--store', loc, '--key-file', known, env=env, check=False)
    assert p.returncode == 2 and 'wrong key' in p.stderr, p.stderr


def test_copy_never_writes_plaintext_into_a_target_made_to_look_plain(tmp_path, binaries):
    """Someone who may write the target but holds no key deletes "encryption" from its config
    and moves keys/ away: copy with the usual --key-file wrote the backups there in plaintext."""
    src, env, k1 = store_with_backup_b(tmp_path)
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst, '--encrypt', '--key-file', k1, env=env)
    conf = json.load(open(os.path.join(dst, 'config')))
    del conf['encryption']
    with open(os.path.join(dst, 'config'), 'w') as f:
        json.dump(conf, f)
    os.rename(os.path.join(dst, 'keys'), str(tmp_path / 'keys-away'))
    before = stored(dst)
    p = cb('copy', '--from', src, '--to', dst, '--key-file', k1, 'b', env=env, check=False)
    assert p.returncode == 2 and 'its backups would be stored there in plaintext' in p.stderr, p
    assert stored(dst) == before
    p = cb('copy', '--from', src, '--to', dst, '--to-key-file', k1, '--key-file', k1, 'b', env=env,
           check=False)
    assert p.returncode == 2 and '--to-key-file: store' in p.stderr and 'is not encrypted' in p.stderr
    assert stored(dst) == before
    # said so: a plain copy (a to_key_file in the configuration is not for it)
    conf = tmp_path / 'c.conf'
    conf.write_text(f'to_key_file = {k1}\n')
    cb('--config', str(conf), 'copy', '--from', src, '--to', dst, '--key-file', k1, '--to-plain', 'b', env=env)
    cb('verify', '--store', dst, '--all', env=env)
    p = cb('copy', '--from', dst, '--to', src, '--key-file', k1, '--to-plain', 'b', env=env, check=False)
    assert p.returncode == 2 and '--to-plain: store' in p.stderr and 'is encrypted' in p.stderr


def test_damage_in_an_encrypted_pack_reads_as_damage(tmp_path, binaries):
    """A flipped byte in an encrypted pack said "cannot read the pack from the store" and
    restore told to run it again (a transient failure); a plain store's says damaged."""
    loc, env, key = store_with_backup_b(tmp_path)
    [pack] = [f for f in store_files(loc) if '/packs/' in f]
    with open(pack, 'r+b') as f:
        f.seek(os.path.getsize(pack) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x20]))
    live = str(tmp_path / 'live')
    live_with_tables(live, snapshot_tables(sample_dirs(str(tmp_path / 's')), 'nightly-1'))
    p = cb('restore', '--store', loc, '--key-file', key, 'b', '--data-dir', live,
           env=env, check=False)
    assert p.returncode == 1, p
    assert 'run the same command again' not in p.stderr and 'cannot read the pack from the store' not in p.stderr
    assert 'backup b is damaged' in p.stderr and 'fails authentication' in p.stderr, p.stderr
    assert f'cassbackup verify --store {loc} --key-file {key} b' in p.stderr
    p = cb('verify', '--store', loc, '--key-file', key, 'b', env=env, check=False)
    assert p.returncode == 1 and 'cannot read the pack from the store' not in p.stdout + p.stderr
    assert 'corrupt' in p.stdout + p.stderr, p


def test_mount_under_a_configuration_with_cache_dir(tmp_path, binaries):
    """cache_dir in cassbackup.conf is where commands keep the catalog; the mount took it for
    its -o cache_dir (a disk cache of frames) and refused every encrypted store."""
    loc, env, key = store_with_backup_b(tmp_path)
    cache = str(tmp_path / 'conf-cache')
    conf = tmp_path / 'cassbackup.conf'
    conf.write_text(f'cache_dir = {cache}\nkey_file = {key}\n')
    env = {k: v for k, v in env.items() if k != 'CASSBACKUP_CACHE_DIR'}
    assert 'b' in cb('list', '--config', str(conf), '--store', loc, env=env).stdout
    with mounted(loc, str(tmp_path / 'mnt'), opts=['-o', f'config={conf}'], env=env) as m:
        assert os.listdir(m.path()) == ['b']
    p = subprocess.run([CASSBACKUP.replace('tools/cassbackup', 'fs/mount.cassbackup'), loc,
                        str(tmp_path / 'mnt'), '-o', f'config={conf},cache_dir={tmp_path}/dc'],
                       capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert p.returncode != 0 and '-o cache_dir: not available for an encrypted store' in p.stderr


def test_key_file_and_passphrase_file_both_given_is_a_usage_error(tmp_path, binaries):
    loc, env, key = store_with_backup_b(tmp_path)
    bad = keyfile(tmp_path / 'six', 'sixsix\n')
    p = cb('list', '--store', loc, '--key-file', key, '--passphrase-file', bad, env=env, check=False)
    assert p.returncode == 2 and 'give --key-file or --passphrase-file, not both' in p.stderr
    # one on the line wins over the other's configuration key
    conf = tmp_path / 'c.conf'
    conf.write_text(f'passphrase_file = {bad}\n')
    assert 'b' in cb('--config', str(conf), 'list', '--store', loc, '--key-file', key, env=env).stdout


def test_failed_init_leaves_no_key_file_it_made(tmp_path, binaries):
    loc = tmp_path / 'full'
    loc.mkdir()
    (loc / 'something').write_text('x')
    key = str(tmp_path / 'new.key')
    p = cb('init', '--store', str(loc), '--encrypt', '--key-file', key,
           env=dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache')), check=False)
    assert p.returncode != 0 and not os.path.exists(key), p


def test_a_lock_that_fails_authentication_is_no_lock(tmp_path, binaries):
    """In a plain store an object in locks/ that is not a lock document counts as stale; in an
    encrypted one an object that fails authentication (written without the key) stopped every
    command that takes a lock: "cannot lock store: locks/x.json: fails authentication"."""
    loc, env, key = store_with_backup_b(tmp_path)
    os.makedirs(os.path.join(loc, 'locks'), exist_ok=True)
    with open(os.path.join(loc, 'locks', 'planted.json'), 'w') as f:
        json.dump({'host': 'elsewhere', 'command': 'prune', 'pid': 1, 'exclusive': True,
                   'time_ns': 0, 'renewals': 1}, f)
    p = cb('check', '--store', loc, '--key-file', key, '--json', env=env)
    assert any(i.startswith('locks/planted.json: not a lock document') for i in json.loads(p.stdout)['info'])
    cb('forget', '--store', loc, '--key-file', key, 'b', env=env)
    cb('prune', '--store', loc, '--key-file', key, env=env)
    assert 'removed 1' in cb('unlock', '--store', loc, '--key-file', key, env=env).stdout
    assert not os.path.exists(os.path.join(loc, 'locks', 'planted.json'))


def test_a_slot_the_store_cannot_read_is_not_called_damaged(tmp_path, binaries):
    """check called a healthy slot "damaged ... remove this one" when reading it failed (a
    403 here): the store's error is not the slot's."""
    with moto(tmp_path) as (port, akey, secret):
        env = dict(os.environ, AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', AWS_ACCESS_KEY_ID=akey,
                   AWS_SECRET_ACCESS_KEY=secret, AWS_REGION='us-east-1',
                   CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        loc, k1, k2 = 's3://cbtest/stores/enc', keyfile(tmp_path / 'k1'), str(tmp_path / 'k2')
        cb('init', '--store', loc, '--encrypt', '--key-file', k1, env=env)
        cb('key', 'add', '--store', loc, '--key-file', k1, '--new-key-file', k2, env=env)
        ids = sorted(s['id'] for s in slots(loc, k1, env))
        [mine] = [s['id'] for s in slots(loc, k1, env) if s['current']]
        opener, other = (k1, ids[1]) if mine == ids[0] else (k2, ids[1])  # opens before the other
        with S3Proxy(port, 'forbidden', match=f'GET /cbtest/stores/enc/keys/{other}.json') as px:
            p = cb('check', '--store', loc, '--key-file', opener,
                   env=dict(env, AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}'), check=False)
    assert p.returncode != 0
    assert 'damaged key slot' not in p.stdout + p.stderr, p
    assert f'keys/{other}.json' in p.stdout + p.stderr and '403' in p.stdout + p.stderr, p


def test_copies_of_a_store_keep_catalogs_of_their_own(tmp_path, binaries):
    """Copies of an encrypted store (cp -a, as when a store moves to another disk) have one
    store id; each keeps a catalog of its own in the cache, named by where it is. They shared
    CACHE/ID/catalog.db: a `list` of one copy rewrote it to that copy's backups while a prune
    of the other was between its reading of backups/ and its use of the catalog, and that
    prune deleted archived commitlog segments the other copy's backups need, exit 0
    (reproduced by an adversarial run with slowed opens)."""
    a, env, key = store_with_backup_b(tmp_path)
    src = make_sample(str(tmp_path / 's2'), '--data-kib', '128', '--data-dirs', '1', '--no-clutter')
    cb('create', '--store', a, '--name', 'c', *data_dir_args(sample_dirs(src)), '--snapshot', 'nightly-1',
       '--key-file', key, env=env)
    b = str(tmp_path / 'copy')
    subprocess.run(['cp', '-a', a, b], check=True)
    cb('forget', '--store', a, 'b', '--key-file', key, env=env)
    names = {}
    for loc in (b, a, b):
        doc = json.loads(cb('list', '--store', loc, '--json', '--key-file', key, env=env).stdout)
        names[loc] = sorted(x['name'] for x in doc)
    assert names == {a: ['c'], b: ['b', 'c']}
    catalogs = {}
    for root, _, files in os.walk(env['CASSBACKUP_CACHE_DIR']):
        if 'catalog.db' in files:
            with sqlite3.connect(os.path.join(root, 'catalog.db')) as db:
                catalogs[root] = sorted(n for (n,) in db.execute('SELECT DISTINCT name FROM backups'))
    assert sorted(catalogs.values()) == [['b', 'c'], ['c']], catalogs


def test_another_stores_slot_in_place_of_the_key_files_is_named_not_the_config(tmp_path, binaries):
    """Stores A and B made with one key file; A has a passphrase slot too. A's key file slot
    replaced by B's (the wrong saved copy put back): opening A with the key file said "the
    config is damaged or was replaced (put back a copy)", which it was not (the passphrase
    still opens A), and check said "no problems". Both now name the slot made for B."""
    loc, env, key = store_with_backup_b(tmp_path)
    os.makedirs(tmp_path / 'b')
    bloc = str(tmp_path / 'b' / 'store')
    cb('init', '--store', bloc, '--encrypt', '--key-file', key, env=env)
    pp = tmp_path / 'pp'
    pp.write_text('a passphrase for the drawer\n')
    os.chmod(pp, 0o600)
    cb('key', 'add', '--store', loc, '--key-file', key, '--new-passphrase-file', pp, env=env)
    [theirs] = os.listdir(os.path.join(bloc, 'keys'))
    ours = [s for s in os.listdir(os.path.join(loc, 'keys'))
            if json.loads(read(os.path.join(loc, 'keys', s)))['kind'] == 'file']
    assert len(ours) == 1
    os.unlink(os.path.join(loc, 'keys', ours[0]))
    shutil.copy(os.path.join(bloc, 'keys', theirs), os.path.join(loc, 'keys', theirs))
    p = cb('list', '--store', loc, '--key-file', key, env=env, check=False)
    assert p.returncode == 1 and p.stderr.count('\n') == 1, p.stderr
    assert f"key file slot was made for another store (keys/{theirs}" in p.stderr, p.stderr
    assert 'config is damaged' not in p.stderr and "'cassbackup key add' a key file" in p.stderr, p.stderr
    p = cb('check', '--store', loc, '--passphrase-file', pp, env=env, check=False)
    assert p.returncode == 1 and f'keys/{theirs}: a key slot made for another store' in p.stdout, p.stdout
    cb('key', 'remove', '--store', loc, '--passphrase-file', pp, theirs.removesuffix('.json'), env=env)
    cb('key', 'add', '--store', loc, '--passphrase-file', pp, '--new-key-file', key, env=env)
    cb('verify', '--store', loc, '--all', '--key-file', key, env=env)
    assert cb('check', '--store', loc, '--key-file', key, env=env).stdout.rstrip().endswith('no problems')
