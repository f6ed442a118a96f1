"""Encrypted stores (issue 16): init --encrypt --key-file, the lifecycle of a plain store on a
local and an S3 (moto) store, nothing readable in the store without the key, one line for a
missing or wrong key, every flipped bit an error and never other bytes, copy both ways, key
slots added and removed."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import (CASSBACKUP, MOUNT, TEST_HOOKS, cb, data_dir_args, make_sample, mounted, read,
                      run, sample_dirs, snapshot_tables)
from test_s3 import moto


def keyfile(path, text=None):
    with open(path, 'w') as f:
        f.write(text if text is not None else os.urandom(32).hex() + '\n')
    os.chmod(path, 0o600)
    return str(path)


@pytest.fixture(params=['local', 'moto'])
def enc_store(request, tmp_path, binaries):
    """(location, environment, key file) of an empty encrypted store, local or on moto."""
    key = str(tmp_path / 'store.key')
    if request.param == 'local':
        loc = str(tmp_path / 'store')
        env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        out = cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env).stdout
        assert 'created key file' in out and 'created encrypted store' in out
        yield loc, env, key
        return
    with moto(tmp_path) as (port, akey, secret):
        env = dict(os.environ, AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', AWS_ACCESS_KEY_ID=akey,
                   AWS_SECRET_ACCESS_KEY=secret, AWS_REGION='us-east-1',
                   CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        loc = 's3://cbtest/stores/enc'
        cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
        yield loc, env, key


def test_key_file_made_by_init_is_private(enc_store):
    _, _, key = enc_store
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert len(read(key).strip()) == 64


def test_a_key_or_passphrase_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    """A key or passphrase file that is a FIFO: every command, and the mount, waited for good
    for a writer, in the open that came before the check that it is a regular file. Now it is
    refused in one line. (timeout: a bound for a hang, not a timing.)"""
    loc, key = str(tmp_path / 'store'), str(tmp_path / 'k')
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo, 0o600)
    for args in (['list', '--store', loc, '--key-file', fifo],
                 ['list', '--store', loc, '--passphrase-file', fifo],
                 ['key', 'add', '--store', loc, '--key-file', key, '--new-passphrase-file', fifo],
                 ['init', '--store', str(tmp_path / 'other'), '--encrypt', '--key-file', fifo]):
        p = cb(*args, env=env, check=False, timeout=60)
        assert p.returncode in (1, 2) and p.stderr.count('\n') == 1, (args, p.stderr)
        assert 'fifo: not a regular file' in p.stderr, (args, p.stderr)
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    p = subprocess.run([MOUNT, loc, str(mnt), '-o', f'key_file={fifo}'], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1 and 'fifo: not a regular file' in p.stderr and not os.listdir(mnt)
    assert not os.path.exists(str(tmp_path / 'other'))


def test_init_makes_the_key_files_name_durable_before_the_store(tmp_path):
    """init fsynced the new key file's bytes but not its directory: after a power cut the store
    (its key slot sealed for that key) could be there and the key file's name not. A crash
    cannot be made here; strace shows the order of the calls."""
    keys = tmp_path / 'keys'
    keys.mkdir()
    trace = tmp_path / 'trace'
    asan = ':'.join(filter(None, [os.environ.get('ASAN_OPTIONS'), 'detect_leaks=0']))  # not under ptrace
    run('strace', '-f', '-qq', '-e', 'trace=openat,fsync,mkdirat', '-o', str(trace), CASSBACKUP,
        'init', '--store', str(tmp_path / 'store'), '--encrypt', '--key-file', str(keys / 'k'),
        env=dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'), ASAN_OPTIONS=asan))
    calls = [l.split(None, 1)[1] for l in trace.read_text().splitlines()]
    made = next(i for i, c in enumerate(calls) if f'"{keys}/k", O_WRONLY|O_CREAT|O_EXCL' in c)
    slots = next(i for i, c in enumerate(calls) if re.match(r'mkdirat\(\d+, "keys"', c))
    dirs = [(i, c.rsplit('= ', 1)[1]) for i, c in enumerate(calls)
            if f'"{keys}", O_RDONLY' in c and 'O_DIRECTORY' in c]
    assert any(made < i < slots and any(c.startswith(f'fsync({fd})') for c in calls[i + 1:slots])
               for i, fd in dirs), calls


def test_lifecycle_on_an_encrypted_store(enc_store, tmp_path):
    """init, create x2 (the second deduplicated), list, mount + cp, verify, restore, forget,
    prune, check, reindex, export: as on a plain store."""
    loc, env, key = enc_store

    def c(*args, **kw):
        return cb(*args, '--key-file', key, env=env, **kw)

    src = make_sample(str(tmp_path / 's'), '--data-kib', '2048', '--data-dirs', '1', '--no-clutter')
    dirs = sample_dirs(src)
    c('create', '--store', loc, '--name', 'day1', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    again = json.loads(c('create', '--store', loc, '--name', 'day1b', *data_dir_args(dirs),
                         '--snapshot', 'nightly-1', '--json').stdout)
    assert again['new_bytes'] == 0, again
    make_sample(src, '--data-kib', '2048', '--data-dirs', '1', '--no-clutter', '--grow-percent', '30',
                '--tag', 'nightly-2', '--seed', '2')
    c('create', '--store', loc, '--name', 'day2', *data_dir_args(dirs), '--snapshot', 'nightly-2')
    text = c('list', '--store', loc).stdout
    assert 'store encrypted: AES-256-GCM' in text
    names = [b['name'] for b in json.loads(c('list', '--store', loc, '--json').stdout)]
    assert names == ['day1', 'day1b', 'day2']
    c('verify', '--store', loc, '--all')
    want = snapshot_tables(dirs, 'nightly-2')
    with mounted(loc, str(tmp_path / 'mnt'), opts=['-o', f'key_file={key}'], env=env) as m:
        for (ks, table), files in want.items():
            for rel, path in files.items():
                assert read(m.path('day2', ks, table, rel)) == read(path)
        cp = tmp_path / 'cp'
        subprocess.run(['cp', '-a', m.path('day2'), str(cp)], check=True)
    for (ks, table), files in want.items():
        for rel, path in files.items():
            assert read(cp / ks / table / rel) == read(path)
    c('forget', '--store', loc, 'day1', 'day1b')
    res = json.loads(c('prune', '--store', loc, '--max-unused', '0', '--json').stdout)
    assert res['packs']['deleted'] + res['packs']['repacked'] >= 1 and res['bytes']['freed'] > 0, res
    chk = json.loads(c('check', '--store', loc, '--read-data', '--json').stdout)
    assert chk['summary']['problems'] == 0 and chk['summary']['encrypted'] is True, chk
    before = json.loads(c('list', '--store', loc, '--json').stdout)
    assert before and all(b['encrypted'] is True for b in before)
    import shutil
    shutil.rmtree(env['CASSBACKUP_CACHE_DIR'])  # the catalog, from nothing: it is only a cache
    c('reindex', '--store', loc)
    assert json.loads(c('list', '--store', loc, '--json').stdout) == before
    tarball = tmp_path / 'day2.tar'
    c('export', '--store', loc, 'day2', '-o', tarball)
    out = tmp_path / 'x'
    out.mkdir()
    subprocess.run(['tar', '-x', '-C', out, '-f', tarball], check=True)
    live = tmp_path / 'live'
    for (ks, table) in want:
        (live / ks / f'{table}-{"c" * 32}').mkdir(parents=True)
    c('restore', '--store', loc, 'day2', '--data-dir', live)
    for (ks, table), files in want.items():
        [tdir] = [d for d in os.listdir(out / ks) if d.startswith(table + '-')]
        for rel, path in files.items():
            assert read(out / ks / tdir / rel) == read(path)
            if rel not in ('manifest.json', 'schema.cql'):
                assert read(live / ks / f'{table}-{"c" * 32}' / rel) == read(path)


def store_files(loc):
    res = []
    for root, _, names in os.walk(loc):
        res += [os.path.join(root, n) for n in names]
    return sorted(res)


def test_nothing_readable_in_the_store_without_the_key(tmp_path, binaries):
    """Packs, manifests and indexes: no name, no content, no hash of a file, and no catalog in
    the store; config and keys/ hold no secret."""
    loc, key = str(tmp_path / 'store'), keyfile(tmp_path / 'k')
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '512', '--data-dirs', '1', '--no-clutter')
    dirs = sample_dirs(src)
    cb('create', '--store', loc, '--name', 'secret-name', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--key-file', key, '--level', '1', env=env)
    files = [f for f in store_files(loc)]
    assert not [f for f in files if f.endswith('catalog.db')]
    want = snapshot_tables(dirs, 'nightly-1')
    import hashlib
    sample = next(p for fs in want.values() for r, p in fs.items() if r.endswith('Data.db'))
    needles = [b'shop', b'nb-1-big', b'secret-name', b'sha256', b'index.json',
               hashlib.sha256(read(sample)).hexdigest().encode(), read(sample)[:64]]
    for f in files:
        body = read(f)
        if f.endswith('/config') or '/keys/' in f:
            assert read(key).strip() not in body
            continue
        if f.endswith('/reserve'):  # space kept for locks on a full disk: zeros
            assert body == bytes(len(body)), f
            continue
        assert body.startswith(b'CBENC1\0\0'), f
        for n in needles:
            assert n not in body, (f, n)


def test_missing_wrong_or_open_key_is_one_line(tmp_path, binaries):
    loc, key = str(tmp_path / 'store'), keyfile(tmp_path / 'k')
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    p = cb('list', '--store', loc, env=env, check=False)
    # each is a configuration error: exit 2 (nothing was done), never 3 (no such store)
    assert p.returncode == 2
    assert p.stderr == f'cassbackup: store {loc} is encrypted: give --key-file or key_file in the config (a passphrase: --passphrase-file, or type it at a terminal)\n'
    wrong = keyfile(tmp_path / 'wrong')
    p = cb('list', '--store', loc, '--key-file', wrong, env=env, check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1
    assert "the key file opens none of the store's 1 key file slot (wrong key?)" in p.stderr
    assert 'blank line' not in p.stderr
    # the right key with a second newline (an editor's): a wrong key, and it says why
    with open(key) as f:
        doubled = keyfile(tmp_path / 'doubled', f.read() + '\n')
    p = cb('list', '--store', loc, '--key-file', doubled, env=env, check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1
    assert p.stderr.rstrip().endswith('(wrong key?); it ends with a blank line, a carriage return or a space, '
                                      'which count as part of it (only one final newline is dropped)'), p.stderr
    os.chmod(key, 0o644)
    p = cb('list', '--store', loc, '--key-file', key, env=env, check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1 and 'chmod 600' in p.stderr
    os.chmod(key, 0o600)
    short = keyfile(tmp_path / 'short', 'abc\n')
    p = cb('list', '--store', loc, '--key-file', short, env=env, check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1 and 'key file' in p.stderr
    p = cb('list', '--store', loc, '--key-file', str(tmp_path / 'gone'), env=env, check=False)
    assert p.returncode == 2 and p.stderr == (f'cassbackup: cannot open store {loc}: key file '
                                              f'{tmp_path}/gone: No such file or directory\n'), p
    p = cb('init', '--store', str(tmp_path / 'other'), '--encrypt', env=env, check=False)
    assert p.returncode == 2 and '--key-file' in p.stderr
    # a key without --encrypt said it failed, and left a plain store behind: refused first
    p = cb('init', '--store', str(tmp_path / 'other'), '--key-file', key, env=env, check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1 and 'not --encrypt' in p.stderr, p
    assert not os.path.exists(tmp_path / 'other')
    # a key file init cannot use leaves nothing behind: the same init works once it is fixed
    os.chmod(key, 0o640)
    p = cb('init', '--store', str(tmp_path / 'other'), '--encrypt', '--key-file', key, env=env, check=False)
    assert p.returncode == 2 and p.stderr.count('\n') == 1 and 'chmod 600' in p.stderr, p
    assert not os.path.exists(tmp_path / 'other')
    os.chmod(key, 0o600)
    cb('init', '--store', str(tmp_path / 'other'), '--encrypt', '--key-file', key, env=env)
    # the mount says the same
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    p = subprocess.run([os.path.join(os.path.dirname(os.path.dirname(__import__('conftest').CASSBACKUP)),
                                     'fs', 'mount.cassbackup'), loc, str(mnt), '-f'],
                       capture_output=True, text=True, env=env)
    assert p.returncode != 0 and 'is encrypted: give -o key_file=FILE' in p.stderr
    # a key for a plain store is refused (whoever gives one reads only what it authenticates),
    # so is a plain config over key slots
    plain = str(tmp_path / 'plain')
    cb('init', '--store', plain, env=env)
    p = cb('list', '--store', plain, '--key-file', key, env=env, check=False)
    assert p.returncode != 0 and 'refusing to read it as plaintext' in p.stderr, p.stderr
    cb('list', '--store', plain, env=env)
    cfg = json.loads(read(os.path.join(loc, 'config')))
    del cfg['encryption']
    os.chmod(os.path.join(loc, 'config'), 0o600)
    with open(os.path.join(loc, 'config'), 'w') as f:
        json.dump(cfg, f)
    p = cb('list', '--store', loc, '--key-file', key, env=env, check=False)
    assert p.returncode != 0 and 'its config says it is not encrypted' in p.stderr


def test_a_planted_plain_config_never_makes_us_write_plaintext(tmp_path, binaries):
    """Regression: an encrypted store's config replaced by a plain one (keys/ kept, or removed
    too) made a create write a plain pack and manifest beside the sealed ones, with a key
    given (it was ignored) or without one."""
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    loc, key = str(tmp_path / 'store'), str(tmp_path / 'k')
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '64', '--data-dirs', '1', '--no-clutter')
    args = (*data_dir_args(sample_dirs(src)), '--snapshot', 'nightly-1')
    cb('create', '--store', loc, '--name', 'sealed', *args, '--key-file', key, env=env)
    cfg = json.loads(read(os.path.join(loc, 'config')))
    del cfg['encryption']
    os.chmod(os.path.join(loc, 'config'), 0o600)
    with open(os.path.join(loc, 'config'), 'w') as f:
        json.dump(cfg, f)

    def objects():
        return sorted(os.path.join(r, n) for r, _, ns in os.walk(loc) for n in ns)
    before = objects()
    # keys/ kept: refused with no key given as with one, to read as to write (exit 1: the
    # store's state, not the command's configuration)
    p = cb('create', '--store', loc, '--name', 'plain', *args, env=env, check=False)
    assert p.returncode == 1 and 'keys/ holds key slots' in p.stderr, p.stderr
    for cmd in (['list'], ['verify', '--all']):
        p = cb(*cmd, '--store', loc, env=env, check=False)
        assert p.returncode == 1 and p.stderr.count('\n') == 1 and 'keys/ holds key slots' in p.stderr, p
    p = cb('create', '--store', loc, '--name', 'plain', *args, '--key-file', key, env=env, check=False)
    assert p.returncode != 0 and 'its config says it is not encrypted' in p.stderr, p.stderr
    # keys/ removed too: a key given still means ciphertext
    for slot in os.listdir(os.path.join(loc, 'keys')):
        os.unlink(os.path.join(loc, 'keys', slot))
    p = cb('create', '--store', loc, '--name', 'plain', *args, '--key-file', key, env=env, check=False)
    assert p.returncode != 0
    assert 'a key is given but its config says it is not encrypted' in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert [o for o in objects() if '/keys/' not in o] == [o for o in before if '/keys/' not in o]
    # nor read what is there as plaintext when a key is given: plain backups planted in place
    # of the sealed ones were listed, restored and mounted
    planted = str(tmp_path / 'planted')
    cb('init', '--store', planted, env=env)
    cb('create', '--store', planted, '--name', 'sealed', *args, env=env)
    for d in ('backups', 'packs'):
        shutil.rmtree(os.path.join(loc, d))
        shutil.copytree(os.path.join(planted, d), os.path.join(loc, d))
    p = cb('list', '--store', loc, '--key-file', key, env=env, check=False)
    assert p.returncode != 0 and 'refusing to read it as plaintext' in p.stderr, p.stderr
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    p = subprocess.run([MOUNT, loc, str(mnt), '-f', '-o', f'key_file={key}'], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode != 0 and 'refusing to read it as plaintext' in p.stderr, p.stderr


def test_list_says_which_manifest_it_cannot_read(tmp_path, binaries):
    """Regression: a manifest replaced by another backup's (it no longer opens under its own
    name) made list leave that backup out without a word, exit 0."""
    loc, key = str(tmp_path / 'store'), str(tmp_path / 'k')
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '64', '--data-dirs', '1', '--no-clutter')
    for name in ('f1', 'f2'):
        cb('create', '--store', loc, '--name', name, *data_dir_args(sample_dirs(src)),
           '--snapshot', 'nightly-1', '--key-file', key, env=env)
    m = {n: [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(loc, 'backups', n)) for f in fs][0]
         for n in ('f1', 'f2')}
    with open(m['f2'], 'rb') as f, open(m['f1'], 'wb') as g:
        g.write(f.read())
    fresh = dict(env, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache2'))
    p = cb('list', '--store', loc, '--key-file', key, '--json', env=fresh)
    assert [b['name'] for b in json.loads(p.stdout)] == ['f2']
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert 'warning: 1 manifest(s) of store' in p.stderr and 'f1' in p.stderr, p.stderr


def flip(path, bit):
    with open(path, 'r+b') as f:
        f.seek(bit // 8)
        b = f.read(1)[0]
        f.seek(bit // 8)
        f.write(bytes([b ^ (1 << (bit % 8))]))


def read_or_eio(path):
    try:
        return read(path)
    except OSError as e:
        assert e.errno == errno.EIO, (path, e)
        return None


def test_every_bit_flip_is_an_error_never_other_bytes(tmp_path, binaries):
    """Bits flipped across a pack (its header, chunks of frames, their tags, the trailer and
    seek table at its end) and across a manifest: the mount gives the right bytes or EIO, never
    other bytes; check --read-data and verify fail."""
    loc, key = str(tmp_path / 'store'), keyfile(tmp_path / 'k')
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '256', '--data-dirs', '1', '--no-clutter')
    dirs = sample_dirs(src)
    cb('create', '--store', loc, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--key-file', key, env=env)
    want = {(ks, t, rel): read(p) for (ks, t), fs in snapshot_tables(dirs, 'nightly-1').items()
            for rel, p in fs.items()}
    [pack] = [f for f in store_files(loc) if '/packs/' in f]
    size = os.path.getsize(pack)
    chunk = 16384 + 16
    # the header; in every chunk one of its first byte, middle and tag, in turn (all three in
    # the first and the last chunk); the last 200 bytes (trailer, seek table)
    bits = [0, 8 * 7, 8 * 8 + 3, 8 * 31 + 7]
    starts = list(range(32, size, chunk))
    for i, start in enumerate(starts):
        end = min(start + chunk, size)
        where = [8 * start + 1, 8 * ((start + end) // 2) + 5, 8 * (end - 1)]
        bits += where if i in (0, len(starts) - 1) else [where[i % 3]]
    bits += [8 * (size - k) + 2 for k in (3, 40, 90, 150, 200)]
    bits = sorted(set(b for b in bits if b < 8 * size))
    eio = 0
    for bit in bits:
        flip(pack, bit)
        try:
            r = cb('check', '--store', loc, '--read-data', '--key-file', key, env=env, check=False)
            assert r.returncode != 0, f'check passed with bit {bit} of {size * 8} flipped'
            r = cb('verify', '--store', loc, '--all', '--key-file', key, env=env, check=False)
            verify_failed = r.returncode != 0
            with mounted(loc, str(tmp_path / 'mnt'), opts=['-o', f'key_file={key}'], env=env,
                         expect_errors=('',)) as m:
                seen_eio = False
                for (ks, t, rel), body in want.items():
                    if not os.path.exists(m.path('b', ks, t)):
                        seen_eio = True
                        continue
                    got = read_or_eio(m.path('b', ks, t, rel))
                    assert got is None or got == body, f'bit {bit}: other bytes in {ks}/{t}/{rel}'
                    seen_eio |= got is None
            eio += seen_eio
            # what the mount could not read, verify could not either
            assert verify_failed or not seen_eio, f'bit {bit}: verify passed, the mount gave EIO'
        finally:
            flip(pack, bit)
    # most flips land in data a read decodes; the rest (a member's tar header alone in a frame)
    # are found by check --read-data, asserted above
    assert eio >= len(bits) // 2, (eio, len(bits))
    cb('check', '--store', loc, '--read-data', '--key-file', key, env=env)
    # a manifest: any flip is an unreadable manifest, never another backup
    [man] = [f for f in store_files(loc) if '/backups/' in f]
    for bit in (0, 8 * 40, 8 * os.path.getsize(man) - 1):
        flip(man, bit)
        r = cb('check', '--store', loc, '--key-file', key, env=env, check=False)
        assert r.returncode != 0
        flip(man, bit)


def test_swapped_or_truncated_objects_fail(tmp_path, binaries):
    """A pack put under another pack's key, a manifest under another backup's name, a pack cut
    at a chunk boundary: each an error."""
    loc, key = str(tmp_path / 'store'), keyfile(tmp_path / 'k')
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '256', '--data-dirs', '1', '--no-clutter')
    cb('create', '--store', loc, '--name', 'a', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--key-file', key, env=env)
    [pack] = [f for f in store_files(loc) if '/packs/' in f]
    body = read(pack)
    os.chmod(pack, 0o600)
    cut = 32 + 2 * (16384 + 16)
    with open(pack, 'wb') as f:
        f.write(body[:cut])
    r = cb('check', '--store', loc, '--read-data', '--key-file', key, env=env, check=False)
    assert r.returncode != 0
    with open(pack, 'wb') as f:
        f.write(body)
    cb('check', '--store', loc, '--read-data', '--key-file', key, env=env)
    [man] = [f for f in store_files(loc) if '/backups/' in f]
    other = os.path.join(os.path.dirname(os.path.dirname(man)), 'b', os.path.basename(man))
    os.makedirs(os.path.dirname(other))
    with open(other, 'wb') as f:
        f.write(read(man))
    r = cb('check', '--store', loc, '--key-file', key, env=env, check=False)
    assert r.returncode != 0 and 'backups/b/' in r.stdout + r.stderr


def test_copy_between_plain_and_encrypted_both_ways(tmp_path, binaries):
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    plain, enc, enc2 = (str(tmp_path / n) for n in ('plain', 'enc', 'enc2'))
    k1, k2 = str(tmp_path / 'k1'), str(tmp_path / 'k2')
    cb('init', '--store', plain, env=env)
    cb('init', '--store', enc, '--encrypt', '--key-file', k1, env=env)
    cb('init', '--store', enc2, '--encrypt', '--key-file', k2, env=env)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '512', '--data-dirs', '1', '--no-clutter')
    dirs = sample_dirs(src)
    cb('create', '--store', plain, '--name', 'p', *data_dir_args(dirs), '--snapshot', 'nightly-1', env=env)
    cb('copy', '--from', plain, '--to', enc, '--all', '--to-key-file', k1, env=env)
    cb('verify', '--store', enc, '--all', '--key-file', k1, env=env)
    cb('copy', '--from', enc, '--to', enc2, '--all', '--key-file', k1, '--to-key-file', k2, env=env)
    cb('verify', '--store', enc2, '--all', '--key-file', k2, env=env)
    back = str(tmp_path / 'back')
    cb('init', '--store', back, env=env)
    p = cb('copy', '--from', enc2, '--to', back, '--all', '--key-file', k2, env=env, check=False)
    assert p.returncode == 2 and 'give --to-plain if that is meant' in p.stderr
    cb('copy', '--from', enc2, '--to', back, '--all', '--key-file', k2, '--to-plain', env=env)
    cb('verify', '--store', back, '--all', env=env)
    assert [b['name'] for b in json.loads(cb('list', '--store', back, '--json', env=env).stdout)] == ['p']
    # the plain copy is plain: a pack there is a zstd stream again
    packs = [os.path.join(r, n) for r, _, ns in os.walk(os.path.join(back, 'packs')) for n in ns]
    assert packs and all(read(p)[:4] == b'\x28\xb5\x2f\xfd' for p in packs)


def test_copy_never_writes_plaintext_into_a_target_made_to_say_plain(tmp_path, binaries):
    """A plain source copied into an encrypted target, its key given as --key-file (the target's
    key by default): after someone without the key made the target's config say plain and moved
    keys/ aside, copy wrote the backup there in plaintext, exit 0, where create refused the
    store. It is refused the same way (exit 2), and nothing lands in the target."""
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    plain, enc, k = str(tmp_path / 'plain'), str(tmp_path / 'enc'), str(tmp_path / 'k')
    cb('init', '--store', plain, env=env)
    cb('init', '--store', enc, '--encrypt', '--key-file', k, env=env)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '256', '--data-dirs', '1', '--no-clutter')
    for name in ('p1', 'p2'):
        cb('create', '--store', plain, '--name', name, *data_dir_args(sample_dirs(src)), '--snapshot',
           'nightly-1', env=env)
    cb('copy', '--from', plain, '--to', enc, '--key-file', k, 'p1', env=env)
    shutil.move(os.path.join(enc, 'keys'), str(tmp_path / 'keys-aside'))
    with open(os.path.join(enc, 'config')) as f:
        config = json.load(f)
    del config['encryption']
    with open(os.path.join(enc, 'config'), 'w') as f:
        json.dump(config, f)
    def objects():  # what the store holds, but its catalog (a cache, made by any open)
        return sorted(os.path.join(r, n) for r, _, ns in os.walk(enc) for n in ns
                      if not n.startswith('catalog.db'))
    before = objects()
    for key_opt in ('--key-file', '--to-key-file', '--passphrase-file'):
        p = cb('copy', '--from', plain, '--to', enc, key_opt, k, 'p2', env=env, check=False)
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert f'{key_opt}: store {enc} is not encrypted' in p.stderr and 'give --to-plain' in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert objects() == before, set(objects()) ^ set(before)


def store_with_backup_b(tmp_path):
    """(location, environment, key file) of a local encrypted store holding one small backup,
    b; scrypt made cheap for passphrase slots."""
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'), CASSBACKUP_TEST_SCRYPT_N='1024')
    loc, key = str(tmp_path / 'store'), keyfile(tmp_path / 'k1')
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '256', '--data-dirs', '1', '--no-clutter')
    cb('create', '--store', loc, '--name', 'b', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--key-file', key, env=env)
    return loc, env, key


def test_key_slots_add_list_remove_and_passphrase(tmp_path, binaries):
    """restic's key add/list/remove: a second key file and a passphrase (scrypt) open the
    same store; the slot the given key opened cannot be removed; a removed key no longer
    opens the store; nothing else is rewritten."""
    loc, env, k1 = store_with_backup_b(tmp_path)
    before = {f: read(f) for f in store_files(loc) if '/keys/' not in f and 'catalog' not in f}
    k2 = str(tmp_path / 'k2')
    out = cb('key', 'add', '--store', loc, '--key-file', k1, '--new-key-file', k2, env=env).stdout
    assert 'created key file' in out and os.stat(k2).st_mode & 0o777 == 0o600
    pp = keyfile(tmp_path / 'pass', 'correct horse battery staple\n')
    cb('key', 'add', '--store', loc, '--key-file', k1, '--new-passphrase-file', pp, env=env)
    slots = json.loads(cb('key', 'list', '--store', loc, '--key-file', k2, '--json', env=env).stdout)
    assert sorted(s['kind'] for s in slots) == ['file', 'file', 'passphrase']
    [cur] = [s for s in slots if s['current']]
    assert cb('list', '--store', loc, '--passphrase-file', pp, env=env).stdout.count('\nb ') == 1
    cb('verify', '--store', loc, '--all', '--passphrase-file', pp, env=env)
    with mounted(loc, str(tmp_path / 'mnt'), opts=['-o', f'passphrase_file={pp}'], env=env) as m:
        assert os.listdir(m.path()) == ['b']
    p = cb('key', 'remove', '--store', loc, '--key-file', k2, cur['id'], env=env, check=False)
    assert p.returncode != 0 and 'refusing to remove it' in p.stderr
    # another spelling of it, which a file system that ignores case would take for it
    p = cb('key', 'remove', '--store', loc, '--key-file', k2, cur['id'].upper(), env=env, check=False)
    assert p.returncode != 0 and 'lower-case hex' in p.stderr, p.stderr
    [k1_slot] = [s for s in json.loads(cb('key', 'list', '--store', loc, '--key-file', k1, '--json',
                                           env=env).stdout) if s['current']]
    cb('key', 'remove', '--store', loc, '--key-file', k2, k1_slot['id'], env=env)
    p = cb('list', '--store', loc, '--key-file', k1, env=env, check=False)
    assert p.returncode != 0 and 'wrong key' in p.stderr
    p = cb('list', '--store', loc, '--passphrase-file', keyfile(tmp_path / 'bad', 'not the passphrase\n'),
           env=env, check=False)
    assert p.returncode != 0 and 'wrong passphrase' in p.stderr
    cb('verify', '--store', loc, '--all', '--key-file', k2, env=env)
    assert {f: read(f) for f in before} == before
    p = cb('key', 'list', '--store', str(tmp_path / 'plain'), env=env, check=False)
    assert p.returncode != 0
    cb('init', '--store', str(tmp_path / 'plain'), env=env)
    p = cb('key', 'list', '--store', str(tmp_path / 'plain'), env=env, check=False)
    assert p.returncode != 0 and 'is not encrypted' in p.stderr


def removes_crossing(loc, env, paused_key, its_target, other_key, other_target, stop=None):
    """Two key removes crossing: paused_key's remove of slot its_target, paused (a suspended
    machine) just before its delete (or where stop, the killat shim's variables, says), past
    its lease; meanwhile other_key's remove of other_target runs (waiting out that lease);
    then the first goes on. The first's (exit status, stdout, stderr)."""
    from conftest import preload
    from test_lease import stopped_at_state_t
    stop = stop or {'CASSBACKUP_TEST_STOP_AT_UNLINK': f'{its_target}.json'}
    first = stopped_at_state_t(subprocess.Popen(
        [CASSBACKUP, 'key', 'remove', '--store', loc, '--key-file', paused_key, its_target], text=True,
        env=dict(env, LD_PRELOAD=preload('killat'), **stop), stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        cb('key', 'remove', '--store', loc, '--key-file', other_key, other_target, env=env)
    finally:
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=120)
    return first.returncode, out, err


def test_a_key_remove_paused_past_its_lease_never_leaves_the_store_without_a_slot(tmp_path, binaries):
    """Keys k1 and k2, each removing the other's slot: the remove with k1, paused (a suspended
    machine) after it saw its own slot and before it deleted k2's, lost its lease; the remove
    with k2 took the store and deleted k1's slot; k1's then deleted k2's: no slot left, every
    backup unreadable, both exit 0. It now looks again after its delete, writes its own slot
    back as it was when no usable slot is left, and says so (exit 1)."""
    loc, env, k1 = store_with_backup_b(tmp_path)
    env = dict(env, CASSBACKUP_LOCK_STALE_SECONDS='2', CASSBACKUP_LOCK_REFRESH_SECONDS='1')
    k2 = str(tmp_path / 'k2')
    cb('key', 'add', '--store', loc, '--key-file', k1, '--new-key-file', k2, env=env)

    def own_slot(key):
        slots = json.loads(cb('key', 'list', '--store', loc, '--key-file', key, '--json', env=env).stdout)
        return next(s['id'] for s in slots if s['current'])
    s1, s2 = own_slot(k1), own_slot(k2)
    rc, out, err = removes_crossing(loc, env, k1, s2, k2, s1)
    assert rc == 1, (out, err)
    assert f'removed key slot {s2}' in out and f'key slot {s1}, the one this key opened, was removed' in err, err
    assert 'written back' in err, err
    assert sorted(os.listdir(os.path.join(loc, 'keys'))) == [f'{s1}.json']
    cb('verify', '--store', loc, '--all', '--key-file', k1, env=env)
    # with a third key, the other remove's retirement of k1 stands: k1's slot is not written
    # back while another slot opens the store (a key retired on purpose opened it again)
    k3 = str(tmp_path / 'k3')
    for new in (k2, k3):
        if os.path.exists(new):
            os.unlink(new)
        cb('key', 'add', '--store', loc, '--key-file', k1, '--new-key-file', new, env=env)
    s2, s3 = own_slot(k2), own_slot(k3)
    rc, out, err = removes_crossing(loc, env, k1, s3, k2, s1)
    assert rc == 1 and 'this key no longer opens the store' in err, (out, err)
    assert sorted(os.listdir(os.path.join(loc, 'keys'))) == [f'{s2}.json']
    p = cb('list', '--store', loc, '--key-file', k1, env=env, check=False)
    assert p.returncode == 2 and 'wrong key' in p.stderr, p.stderr
    # a slot that opens nothing here (another store's, copied in) is no slot left: k2's remove
    # of k1's own slot, while k1 removes k2's, leaves k1's written back
    os.makedirs(tmp_path / 'other')
    other, _, _ = store_with_backup_b(tmp_path / 'other')
    [foreign] = os.listdir(os.path.join(other, 'keys'))
    shutil.copy(os.path.join(other, 'keys', foreign), os.path.join(loc, 'keys', foreign))
    os.unlink(k1)
    cb('key', 'add', '--store', loc, '--key-file', k2, '--new-key-file', k1, env=env)
    s1 = own_slot(k1)
    rc, out, err = removes_crossing(loc, env, k1, s2, k2, s1)
    assert rc == 1 and 'written back' in err, (out, err)
    cb('verify', '--store', loc, '--all', '--key-file', k1, env=env)


def test_a_key_remove_paused_past_its_lease_before_its_delete_deletes_nothing(tmp_path, binaries):
    """Keys k1 and k2, each removing the other's slot: the remove with k1, paused (a suspended
    machine) after it saw its own slot and before its delete, lost its lease; the remove with
    k2 took the store and deleted k1's slot. k1's then deleted k2's, and only its write-back
    (which a kill there would have missed) kept a slot. It looks at its lock just before the
    delete now, and stops there: k2's slot stays, k2 opens the store."""
    loc, env, k1 = store_with_backup_b(tmp_path)
    env = dict(env, CASSBACKUP_LOCK_STALE_SECONDS='2', CASSBACKUP_LOCK_REFRESH_SECONDS='1')
    k2 = str(tmp_path / 'k2')
    cb('key', 'add', '--store', loc, '--key-file', k1, '--new-key-file', k2, env=env)
    slots = {k: next(s['id'] for s in json.loads(cb('key', 'list', '--store', loc, '--key-file', k, '--json',
                                                     env=env).stdout) if s['current']) for k in (k1, k2)}
    # stopped with its own slot open, read as it is then: the unlock's read is the first
    rc, out, err = removes_crossing(loc, env, k1, slots[k2], k2, slots[k1],
                                    stop={'CASSBACKUP_TEST_STOP_AT_FSTAT': f'{slots[k1]}.json',
                                          'CASSBACKUP_TEST_STOP_AT_FSTAT_NTH': '2'})
    assert rc == 1 and 'lapsed' in err and len(err.splitlines()) == 1, (out, err)
    assert 'removed key slot' not in out, out
    assert sorted(os.listdir(os.path.join(loc, 'keys'))) == [f'{slots[k2]}.json']
    cb('verify', '--store', loc, '--all', '--key-file', k2, env=env)


def test_a_key_slot_without_config_mac_is_named(tmp_path, binaries):
    """A slot without config_mac (from a release before it, or the field removed by someone
    with write access to the store) opens the store without noticing a damaged config: a
    config given another chunk size then made create seal a backup nothing reads, exit 0.
    check names such a slot (info, with what to do) and key list says it is not bound; a slot
    made now is bound."""
    loc, env, k1 = store_with_backup_b(tmp_path)
    [slot] = os.listdir(os.path.join(loc, 'keys'))
    assert json.loads(cb('key', 'list', '--store', loc, '--key-file', k1, '--json', env=env).stdout)[0]['config_bound']
    assert 'config_mac' not in cb('check', '--store', loc, '--key-file', k1, env=env).stdout
    path = os.path.join(loc, 'keys', slot)
    with open(path) as f:
        doc = json.load(f)
    del doc['config_mac']
    with open(path, 'w') as f:
        json.dump(doc, f)
    [listed] = json.loads(cb('key', 'list', '--store', loc, '--key-file', k1, '--json', env=env).stdout)
    assert listed['config_bound'] is False
    j = json.loads(cb('check', '--store', loc, '--key-file', k1, '--json', env=env).stdout)
    [line] = [i for i in j['info'] if 'config_mac' in i]
    assert line.startswith(f'keys/{slot}: a key slot without config_mac') and 'cassbackup key add' in line, line


def test_kill_9_while_writing_leaves_no_backup_and_no_plaintext(tmp_path, binaries):
    """An encrypted create killed while it writes a pack: no backup, nothing committed in
    plaintext; the next create, prune and check --read-data are clean."""
    import signal
    from conftest import CASSBACKUP, stop_while_writing
    loc, key = str(tmp_path / 'store'), keyfile(tmp_path / 'k')
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '8192', '--data-dirs', '1', '--no-clutter',
                      '--incompressible')
    argv = [CASSBACKUP, 'create', '--store', loc, '--name', 'k', *data_dir_args(sample_dirs(src)),
            '--snapshot', 'nightly-1', '--key-file', key, '--threads', '1']
    c = stop_while_writing(argv, loc, env=env)
    assert c is not None, 'create ended before it could be stopped'
    c.send_signal(signal.SIGKILL)
    c.communicate()
    assert json.loads(cb('list', '--store', loc, '--json', '--key-file', key, env=env).stdout) == []
    for f in store_files(loc):
        if not (f.endswith('/config') or '/keys/' in f or f.endswith('/reserve')):
            assert read(f).startswith(b'CBENC1\0\0'), f
    cb('unlock', '--store', loc, '--all', '--key-file', key, env=env)
    cb('create', '--store', loc, '--name', 'k', *data_dir_args(sample_dirs(src)), '--snapshot',
       'nightly-1', '--key-file', key, env=env)
    cb('prune', '--store', loc, '--key-file', key, env=env)
    cb('check', '--store', loc, '--read-data', '--key-file', key, env=env)
    cb('verify', '--store', loc, '--all', '--key-file', key, env=env)


def test_commitlog_segments_are_sealed_and_read_back(tmp_path, binaries):
    """archive-commitlog into an encrypted store: the segment object is sealed; the mount gives
    its bytes back, also at an offset."""
    from test_commitlog import T0, write_segment
    loc, key = str(tmp_path / 'store'), keyfile(tmp_path / 'k')
    env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    cb('init', '--store', loc, '--encrypt', '--key-file', key, env=env)
    seg = write_segment(str(tmp_path / 'commitlog'), T0)
    name = os.path.basename(seg)
    cb('archive-commitlog', '--store', loc, '--node', 'n1', '--key-file', key, seg, name, env=env)
    [obj] = [f for f in store_files(loc) if '/commitlogs/' in f]
    assert read(obj).startswith(b'CBENC1\0\0') and name.encode() not in read(obj)
    with mounted(loc, str(tmp_path / 'mnt'), opts=['-o', f'key_file={key}'], env=env) as m:
        p = os.path.join(m.mnt, 'commitlogs', 'n1', name)
        assert read(p) == read(seg)
        with open(p, 'rb') as f:
            f.seek(65536 + 7)
            assert f.read(1000) == read(seg)[65536 + 7:65536 + 1007]


def test_load_mounts_an_encrypted_store_with_the_key_given(tmp_path, binaries):
    """load mounts the store for sstableloader: the key given on its command line (not in a
    configuration file) reaches that mount."""
    import hashlib
    from test_restore_load import LOADER
    loc, key = str(tmp_path / 'store'), keyfile(tmp_path / 'k')
    cb('init', '--store', loc, '--encrypt', '--key-file', key)
    src = make_sample(str(tmp_path / 's'), '--data-kib', '256', '--data-dirs', '1', '--no-clutter')
    dirs = sample_dirs(src)
    cb('create', '--store', loc, '--name', 'b', *data_dir_args(dirs), '--snapshot', 'nightly-1',
       '--key-file', key)
    expect = {f'{ks}.{t}': {rel: hashlib.sha256(read(p)).hexdigest() for rel, p in files.items()}
              for (ks, t), files in snapshot_tables(dirs, 'nightly-1').items()}
    ef = str(tmp_path / 'expect.json')
    with open(ef, 'w') as f:
        json.dump(expect, f)
    state = tmp_path / 'state'
    state.mkdir()
    env = dict(os.environ, SSTABLELOADER_STANDIN_EXPECT=ef, SSTABLELOADER_STANDIN_STATE=str(state),
               SSTABLELOADER_STANDIN_LOG=str(tmp_path / 'loader.log'))
    r = cb('load', '--store', loc, 'b', '--hosts', 'h1', '--sstableloader', LOADER, '--key-file', key,
           '--json', env=env)
    res = json.loads(r.stdout)
    assert len(res['tables']) == len(expect) and all(t['status'] == 'ok' for t in res['tables']), res


def at_terminal(args, env, typed, timeout=120, stdin_devnull=False, job=None):
    """Runs cassbackup with a pseudo-terminal as its controlling terminal and standard input and
    output (standard input /dev/null with stdin_devnull); once it asks for a passphrase, types
    `typed` (bytes). job: None, cassbackup leads the terminal's session; 'background' or
    'foreground', it runs as a shell's job would, in a process group of its own under a session
    leader that waits for it: a stop (^Z) then counts, and ends it with exit status 99. Returns
    (wait status, all it wrote to the terminal, whether the terminal's echo is on once it
    ended)."""
    import fcntl
    import select
    import termios
    import time
    master, slave = os.openpty()
    pid = os.fork()
    if pid == 0:
        try:  # as from a login shell: ^C's SIGINT not ignored (a background test run ignores it)
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if stdin_devnull:
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if job:
                child = os.fork()
                if child == 0:
                    os.setpgid(0, 0)
                    if job == 'foreground':
                        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                        os.tcsetpgrp(0 if not stdin_devnull else 1, os.getpgrp())
                        signal.signal(signal.SIGTTOU, signal.SIG_DFL)
                    os.execve(CASSBACKUP, [CASSBACKUP, *args], env)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                _, st = os.waitpid(child, os.WUNTRACED)
                if os.WIFSTOPPED(st):
                    os.kill(child, signal.SIGKILL)
                    os._exit(99)
                os._exit(os.waitstatus_to_exitcode(st) & 0xff if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))
            os.execve(CASSBACKUP, [CASSBACKUP, *args], env)
        finally:
            os._exit(127)
    out, sent, status, deadline = b'', False, None, time.monotonic() + timeout
    try:
        while status is None:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                raise AssertionError(f'{args}: no end within {timeout} s; terminal: {out!r}')
            if not sent and b'passphrase of store' in out:
                os.write(master, typed)
                sent = True
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                out += os.read(master, 4096)
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
        while select.select([master], [], [], 0)[0]:
            out += os.read(master, 4096)
        echo = bool(termios.tcgetattr(slave)[3] & termios.ECHO)
    finally:
        if status is None:
            os.waitpid(pid, 0)
        os.close(master)
        os.close(slave)
    return status, out.decode(errors='replace'), echo


@pytest.fixture
def passphrase_store(tmp_path, binaries):
    """(location, environment, passphrase) of a local encrypted store holding backup b, whose
    second key slot is a passphrase."""
    loc, env, key = store_with_backup_b(tmp_path)
    phrase = 'correct horse battery staple'
    cb('key', 'add', '--store', loc, '--key-file', key, '--new-passphrase-file',
       keyfile(tmp_path / 'pass', phrase + '\n'), env=env)
    return loc, env, phrase


def test_passphrase_typed_at_a_terminal_opens_the_store(passphrase_store):
    """With neither key file nor passphrase file, a command run at a terminal asks for the
    passphrase with echo off, opens the store with it, and leaves the echo on again; ^Z while
    it asks is ignored (a shell that stopped it would turn the echo back on)."""
    loc, env, phrase = passphrase_store
    status, out, echo = at_terminal(['list', '--store', loc], env, b'\x1a' + phrase.encode() + b'\n',
                                    job='foreground')
    assert os.waitstatus_to_exitcode(status) == 0, out  # 99: ^Z stopped it
    assert f'passphrase of store {loc}: ' in out
    assert re.search(r'(^|\n)b ', out), out
    assert phrase not in out  # not echoed
    assert echo


def test_wrong_passphrase_typed_is_one_line(passphrase_store):
    loc, env, _ = passphrase_store
    status, out, echo = at_terminal(['list', '--store', loc], env, b'not the passphrase\n')
    assert os.waitstatus_to_exitcode(status) == 2, out
    assert 'wrong passphrase' in out and 'not the passphrase' not in out and echo


def test_short_passphrase_typed_is_refused(passphrase_store):
    loc, env, _ = passphrase_store
    status, out, echo = at_terminal(['list', '--store', loc], env, b'short\n')
    assert os.waitstatus_to_exitcode(status) == 2, out
    assert 'the passphrase typed is 5 bytes; a passphrase has at least 8' in out


@pytest.mark.parametrize('cmd', ['list', 'copy'])
def test_interrupt_at_the_prompt_ends_the_command(passphrase_store, tmp_path, cmd):
    """^C at the prompt ends the command as SIGINT would, the terminal's echo put back first;
    also in a command with its own SIGINT handler (copy: cancel between steps)."""
    loc, env, _ = passphrase_store
    args = ['list', '--store', loc] if cmd == 'list' else ['copy', '--from', loc, '--to',
                                                           str(tmp_path / 'to'), '--all']
    if cmd == 'copy':
        cb('init', '--store', str(tmp_path / 'to'), env=env)
    status, out, echo = at_terminal(args, env, b'\x03')
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT, (status, out)
    assert echo


@pytest.mark.skipif(not TEST_HOOKS, reason='a build without -Dtest_hooks=true waits the whole 120 s')
def test_unanswered_prompt_gives_up(passphrase_store):
    """A prompt nobody answers (a pseudo-terminal an unattended run was given) ends after a
    while with one line, not never (CASSBACKUP_TEST_PROMPT_SECONDS shortens the 120 s)."""
    loc, env, _ = passphrase_store
    status, out, echo = at_terminal(['list', '--store', loc], dict(env, CASSBACKUP_TEST_PROMPT_SECONDS='1'),
                                    b'', timeout=60)
    assert os.waitstatus_to_exitcode(status) == 2, out
    assert 'no passphrase typed in 1 s' in out and echo


def test_load_does_not_ask_for_a_passphrase_it_cannot_use(passphrase_store, tmp_path):
    """load mounts the store for sstableloader: a typed passphrase cannot reach that mount, so
    it does not ask, and says what to give, before writing anything."""
    loc, env, phrase = passphrase_store
    state = tmp_path / 'st'
    status, out, echo = at_terminal(['load', '--store', loc, 'b', '--hosts', '127.0.0.1',
                                     '--sstableloader', '/bin/true', '--state-dir', str(state)],
                                    env, phrase.encode() + b'\n')
    assert os.waitstatus_to_exitcode(status) == 2, out
    assert 'passphrase of store' not in out
    assert 'cannot hand that mount a typed passphrase' in out and '--passphrase-file' in out, out
    assert not state.exists()


@pytest.mark.parametrize('how', ['stdin-not-a-terminal', 'background', 'no-prompt-env', 'no-terminal'])
def test_no_prompt_unless_a_person_is_there(passphrase_store, how):
    """No prompt, one line and exit 2 at once: standard input not a terminal (cron, pipes)
    though a terminal is there, a command put in the background (`cmd &`), CASSBACKUP_NO_PROMPT
    (the Ansible playbooks set it: ssh -tt gives modules a terminal), or no terminal at all."""
    loc, env, _ = passphrase_store
    if how == 'no-terminal':
        p = subprocess.run([CASSBACKUP, 'list', '--store', loc], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60, start_new_session=True)
        status, out = p.returncode << 8, p.stderr
    else:
        status, out, _ = at_terminal(['list', '--store', loc],
                                     dict(env, CASSBACKUP_NO_PROMPT='1') if how == 'no-prompt-env' else env,
                                     b'', timeout=60, stdin_devnull=how == 'stdin-not-a-terminal',
                                     job='background' if how == 'background' else None)
    assert os.waitstatus_to_exitcode(status) == 2, out
    assert 'passphrase of store' not in out
    assert out.strip().count('\n') == 0 and 'type it at a terminal' in out, out
