"""The mount reading a store in object storage: frames fetched in runs with ranged GETs (counted
in moto_server's request log), read-ahead, the disk cache (-o cache_dir, disk_cache_size), and a
pack deleted under the mount. The S3 servers are test_s3.py's."""
import os
import random
import re
import stat

import pytest

import awssig

from conftest import MOUNT, cb, data_dir_args, make_sample, mounted, read, run, sample_dirs, snapshot_tables
from test_s3 import moto, s3, s3rver  # noqa: F401 (s3 is a fixture; moto and s3rver its servers)

FRAME = 128 << 10  # the writer's default frame size (seekable.h)


@pytest.fixture
def moto_store(tmp_path, binaries):
    """(store location, environment, server URL, its request log) of an empty store on moto."""
    with moto(tmp_path) as (port, key, secret):
        url = f'http://127.0.0.1:{port}'
        env = dict(os.environ, AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret,
                   AWS_REGION='us-east-1', CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        loc = 's3://cbtest/stores/prod'
        cb('init', '--store', loc, env=env)
        yield loc, env, url, str(tmp_path / 'moto.log')


def pack_gets(log):
    """Ranged GETs of packs moto has answered so far (werkzeug logs one line per request)."""
    with open(log) as f:
        return sum(1 for line in f if '"GET ' in line and '/packs/' in line and '" 206 ' in line)


def pack_keys(env):
    """Keys of the packs in the bucket (a signed listing: moto checks signatures)."""
    body = awssig.env_get(env, '/cbtest?prefix=stores/prod/packs/')
    return set(re.findall(r'<Key>([^<]+)</Key>', body))


def delete_key(env, key):
    """Deletes an object as a client of the store would (signed: moto refuses others)."""
    awssig.env_request(env, 'DELETE', f'/cbtest/{key}').read()
    assert key not in pack_keys(env)


def backup(loc, env, tmp_path, name, kib=4096, seed=1, incompressible=False):
    """A backup of a sample with one Data.db of kib KiB; {relpath in the mount: source file}."""
    src = make_sample(str(tmp_path / f'src-{name}'), '--data-kib', str(kib), '--data-dirs', '1',
                      '--keyspaces', '1', '--tables', '1', '--sstables', '1', '--seed', str(seed),
                      '--no-clutter', '--no-index', *(['--incompressible'] if incompressible else []))
    dirs = sample_dirs(src)
    cb('create', '--store', loc, '--name', name, *data_dir_args(dirs), '--snapshot', 'nightly-1', env=env)
    return {os.path.join(name, ks, table, rel): path
            for (ks, table), files in snapshot_tables(dirs, 'nightly-1').items()
            for rel, path in files.items()}


def data_db(files):
    [rel] = [r for r in files if r.endswith('-Data.db')]
    return rel


def test_cold_read_fetches_neighbouring_frames_together(moto_store, tmp_path):
    loc, env, url, log = moto_store
    files = backup(loc, env, tmp_path, 'n1')
    rel = data_db(files)
    size = os.path.getsize(files[rel])
    frames = size // FRAME
    assert frames >= 16
    with mounted(loc, str(tmp_path / 'mnt'), env=env) as m:
        before = pack_gets(log)
        assert read(m.path(rel)) == read(files[rel])
        gets = pack_gets(log) - before
    # one GET per frame before; runs of frames and read-ahead chunks now
    assert 0 < gets < frames / 2, (gets, frames)


def test_random_reads_are_byte_identical(s3, tmp_path):
    loc, env = s3
    files = backup(loc, env, tmp_path, 'n1', kib=3000)
    rng = random.Random(8)
    with mounted(loc, str(tmp_path / 'mnt'), env=env) as m:
        for rel, src in files.items():
            want = read(src)
            fd = os.open(m.path(rel), os.O_RDONLY)
            try:
                for _ in range(40 if len(want) > FRAME else 3):
                    off = rng.randrange(0, max(len(want), 1))
                    n = rng.choice((1, 4096, 70000, 300000))
                    assert os.pread(fd, n, off) == want[off:off + n], (rel, off, n)
            finally:
                os.close(fd)


def cache_files(d):
    return {n: os.path.join(d, n) for n in os.listdir(d) if not n.startswith('.')}


def read_through_disk_cache(moto_store, tmp_path, extra='', incompressible=False):
    """Backs up a sample and reads its Data.db once through a mount with a disk cache:
    (files, the Data.db, the cache directory, the mount's options)."""
    loc, env, url, log = moto_store
    files = backup(loc, env, tmp_path, 'n1', incompressible=incompressible)
    rel = data_db(files)
    cdir = str(tmp_path / 'dcache')
    opts = ('-o', f'cache_dir={cdir}{extra}')
    with mounted(loc, str(tmp_path / 'mnt'), opts, env=env) as m:
        assert read(m.path(rel)) == read(files[rel])
    return files, rel, cdir, opts


def test_disk_cache_survives_remount_without_the_store(moto_store, tmp_path):
    loc, env, url, log = moto_store
    files, rel, cdir, opts = read_through_disk_cache(moto_store, tmp_path, ',disk_cache_size=64M')
    assert stat.S_IMODE(os.stat(cdir).st_mode) == 0o700
    kept = cache_files(cdir)
    assert kept and all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in kept.values())

    with mounted(loc, str(tmp_path / 'mnt'), opts, env=env) as m:
        fd = os.open(m.path(rel), os.O_RDONLY)
        for key in pack_keys(env):  # the store loses the bytes: only the disk cache has them
            delete_key(env, key)
        before = pack_gets(log)
        try:
            got = b''.join(iter(lambda: os.read(fd, 1 << 20), b''))
        finally:
            os.close(fd)
        assert got == read(files[rel])
        assert pack_gets(log) == before


def test_damaged_disk_cache_files_are_fetched_again(moto_store, tmp_path):
    loc, env, url, log = moto_store
    files, rel, cdir, opts = read_through_disk_cache(moto_store, tmp_path)
    kept = cache_files(cdir)
    frames = sorted(p for n, p in kept.items() if n.startswith('f-'))
    tables = [p for n, p in kept.items() if n.startswith('t-')]
    assert len(frames) > 8 and tables
    for i, p in enumerate(frames + tables):  # bit flips, a truncation, garbage
        data = bytearray(read(p))
        if i % 3 == 0:
            data[len(data) // 2] ^= 0x55
        elif i % 3 == 1:
            del data[len(data) // 3:]
        else:
            data[:] = os.urandom(len(data))
        with open(p, 'wb') as f:
            f.write(data)
    with mounted(loc, str(tmp_path / 'mnt'), opts, env=env) as m:
        before = pack_gets(log)
        assert read(m.path(rel)) == read(files[rel])
        assert pack_gets(log) > before  # fetched again, not served damaged
    # and the cache is whole again: with the packs gone from the bucket, the file reads from it
    # alone (read-ahead past the file's end may ask for frames no mount kept: those GETs fail
    # harmlessly, so they are not counted, only the file's bytes are checked)
    with mounted(loc, str(tmp_path / 'mnt'), opts, env=env) as m:
        fd = os.open(m.path(rel), os.O_RDONLY)
        for key in pack_keys(env):
            delete_key(env, key)
        try:
            got = b''.join(iter(lambda: os.read(fd, 1 << 20), b''))
        finally:
            os.close(fd)
        assert got == read(files[rel])


def test_pack_tails_swapped_in_the_disk_cache_are_fetched_again(moto_store, tmp_path):
    """Two packs' cached tails (seek tables) swapped between their names: each agreed with
    itself, so both were taken as verified, and every file of both backups gave EIO on this
    mount and the next ("pack has no valid seek table", blaming sound packs). A cached tail
    now carries its pack's key: another pack's is dropped and fetched again."""
    loc, env, url, log = moto_store
    files = {**backup(loc, env, tmp_path, 'a', kib=256, seed=3), **backup(loc, env, tmp_path, 'b', kib=512, seed=4)}
    cdir = str(tmp_path / 'dcache')
    opts = ('-o', f'cache_dir={cdir}')
    with mounted(loc, str(tmp_path / 'mnt'), opts, env=env) as m:
        for p, src in files.items():
            assert read(m.path(p)) == read(src), p
    x, y = sorted(p for n, p in cache_files(cdir).items() if n.startswith('t-'))
    tx, ty = read(x), read(y)
    with open(x, 'wb') as f:
        f.write(ty)
    with open(y, 'wb') as f:
        f.write(tx)
    for _ in range(2):
        with mounted(loc, str(tmp_path / 'mnt'), opts, env=env) as m:
            for p, src in files.items():
                assert read(m.path(p)) == read(src), p


def test_a_frame_copied_over_another_in_the_disk_cache_is_fetched_again(moto_store, tmp_path):
    """Incompressible frames all have one size: one cached frame copied over its neighbour's
    file passed every check (size, zstd's own checksum) and the file read the neighbour's
    bytes. The seek table holds each frame's checksum now, and a frame must match its place."""
    loc, env, url, log = moto_store
    files, rel, cdir, opts = read_through_disk_cache(moto_store, tmp_path, incompressible=True)
    frames = sorted((p for n, p in cache_files(cdir).items() if n.startswith('f-')),
                    key=lambda p: int(p.rsplit('-', 1)[1]))
    assert len(frames) > 8
    swapped = 0
    for a, b in zip(frames[1::2], frames[2::2]):
        if os.path.getsize(a) == os.path.getsize(b) and read(a) != read(b):
            with open(a, 'wb') as f:
                f.write(read(b))
            swapped += 1
    assert swapped > 2
    with mounted(loc, str(tmp_path / 'mnt'), opts, env=env) as m:
        before = pack_gets(log)
        right = read(m.path(rel)) == read(files[rel])  # (not compared in assert: 4 MiB diffs)
        assert right, 'the file read other bytes'
        assert pack_gets(log) > before  # fetched again, not served from another place


def test_disk_cache_stays_within_its_size(moto_store, tmp_path):
    loc, env, url, log = moto_store
    files = backup(loc, env, tmp_path, 'n1', kib=6000)
    cdir = str(tmp_path / 'dcache')
    limit = 512 << 10
    with mounted(loc, str(tmp_path / 'mnt'), ('-o', f'cache_dir={cdir},disk_cache_size=512K'), env=env) as m:
        for rel, src in files.items():
            assert read(m.path(rel)) == read(src)
            assert sum(os.path.getsize(p) for p in cache_files(cdir).values()) <= limit
    kept = cache_files(cdir)
    assert kept and sum(os.path.getsize(p) for p in kept.values()) <= limit


def test_disk_cache_option_errors(moto_store, tmp_path):
    loc, env, url, log = moto_store
    os.makedirs(tmp_path / 'mnt')
    for opts, why in (('disk_cache_size=1G', 'needs -o cache_dir'),
                      (f'cache_dir={tmp_path},disk_cache_size=1KB', "unit 'KB' is ambiguous"),
                      (f'cache_dir={tmp_path}/a/b', 'cannot create'),
                      ('cache_dir=/tmp', "not this user's own directory")):
        p = run(MOUNT, loc, str(tmp_path / 'mnt'), '-f', '-o', opts, env=env, check=False)
        assert p.returncode == 1 and why in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr


def test_pack_deleted_under_the_mount(moto_store, tmp_path):
    loc, env, url, log = moto_store
    one = backup(loc, env, tmp_path, 'n1', seed=1)
    first = pack_keys(env)
    two = backup(loc, env, tmp_path, 'n2', seed=2)
    [gone] = first
    assert len(pack_keys(env)) == 2
    rel1, rel2 = data_db(one), data_db(two)
    with mounted(loc, str(tmp_path / 'mnt'), env=env, expect_errors=('cannot read',)) as m:
        fd = os.open(m.path(rel1), os.O_RDONLY)
        delete_key(env, gone)
        try:
            with pytest.raises(OSError) as e:
                os.pread(fd, 4096, 0)
            assert e.value.errno == 5  # EIO
        finally:
            os.close(fd)
        assert read(m.path(rel2)) == read(two[rel2])  # the other pack still reads
        lines = [line for line in m.log().splitlines() if 'cannot read' in line]
        assert len(lines) == 1, lines
        assert f'backups/{rel1}' in lines[0] and gone.split('stores/prod/')[1] in lines[0], lines


def test_s3_settings_as_mount_options(moto_store, tmp_path):
    """An fstab mount has no environment: -o s3_endpoint, s3_region and s3_key_file reach the
    store, and -o limit_download is taken; a bad one is one line and exit 1."""
    loc, env, url, _ = moto_store
    files = backup(loc, env, tmp_path, 'n1', kib=1024)
    key = tmp_path / 'key'
    key.write_text(f"access_key = {env['AWS_ACCESS_KEY_ID']}\nsecret_key = {env['AWS_SECRET_ACCESS_KEY']}\n")
    key.chmod(0o600)
    bare = {k: v for k, v in env.items() if not k.startswith('AWS_')}
    bare['AWS_EC2_METADATA_DISABLED'] = 'true'  # no instance metadata to find keys at
    p = run(MOUNT, loc, str(tmp_path / 'mnt'), check=False, env=bare)
    assert p.returncode != 0
    opts = (f'-os3_endpoint={url},s3_region=us-east-1,s3_key_file={key},limit_download=64M,s3_parallel=2',)
    with mounted(loc, str(tmp_path / 'mnt'), opts=opts, env=bare) as m:
        for rel, path in files.items():
            assert read(m.path(rel)) == read(path)
    for bad, why in [('limit_download=fast', 'not a size'), (f's3_key_file={tmp_path}/none', 'No such file'),
                     ('s3_region=', 'needs a value'), ('s3_parallel=17', 'from 0 to 16'),
                     ('s3_ca_file=none.pem', 'No such file'),
                     ('s3_endpoint=file:///etc', 'expected an http:// or https:// URL')]:
        p = run(MOUNT, loc, str(tmp_path / 'mnt'), '-o', bad, check=False, env=bare)
        assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and why in p.stderr, (bad, p.stderr)


def test_mount_and_load_take_s3_settings_from_the_configuration(moto_store, tmp_path):
    """mount.cassbackup reads cassbackup.conf's S3 settings as every command does (-o
    config=FILE, else /etc/cassbackup.conf); -o options win over it; the mount load starts
    gets the configuration load was given."""
    from test_restore_load import LOADER, log_lines
    loc, env, url, _ = moto_store
    files = backup(loc, env, tmp_path, 'n1', kib=256)
    key = tmp_path / 'key'
    key.write_text(f"access_key = {env['AWS_ACCESS_KEY_ID']}\nsecret_key = {env['AWS_SECRET_ACCESS_KEY']}\n")
    key.chmod(0o600)
    conf = tmp_path / 'cassbackup.conf'
    conf.write_text(f's3_endpoint = {url}\ns3_region = us-east-1\ns3_key_file = {key}\n')
    bare = {k: v for k, v in env.items() if not k.startswith('AWS_')}
    bare['AWS_EC2_METADATA_DISABLED'] = 'true'
    with mounted(loc, str(tmp_path / 'mnt'), opts=('-o', f'config={conf}'), env=bare) as m:
        for rel, path in files.items():
            assert read(m.path(rel)) == read(path)
    # an option on the line wins over the file: a wrong endpoint there, the right one given
    conf.write_text(f's3_endpoint = http://127.0.0.1:9/\ns3_region = us-east-1\ns3_key_file = {key}\n')
    with mounted(loc, str(tmp_path / 'mnt'), opts=('-o', f'config={conf},s3_endpoint={url}'), env=bare) as m:
        assert sorted(os.listdir(m.path())) == sorted(os.listdir(m.path()))
        assert os.listdir(os.path.join(m.mnt, 'backups')) == ['n1']
    p = run(MOUNT, loc, str(tmp_path / 'mnt'), '-o', f'config={tmp_path}/none', check=False, env=bare)
    assert p.returncode == 1 and 'none' in p.stderr
    # load: its own mount reaches the store through the configuration too
    conf.write_text(f's3_endpoint = {url}\ns3_region = us-east-1\ns3_key_file = {key}\n')
    (tmp_path / 'st').mkdir()
    lenv = dict(bare, SSTABLELOADER_STANDIN_STATE=str(tmp_path / 'st'), SSTABLELOADER_STANDIN_LOG=str(tmp_path / 'l.log'))
    p = cb('--config', conf, 'load', '--store', loc, 'n1', '--hosts', 'h1', '--sstableloader', LOADER,
           '--state-dir', str(tmp_path / 'state'), env=lenv)
    assert ' 0 failed' in p.stdout and log_lines(str(tmp_path / 'l.log'))


def test_environment_wins_over_the_config_file(moto_store, tmp_path):
    """As for the AWS CLI, AWS_ENDPOINT_URL and AWS_REGION win over s3_endpoint and s3_region of
    cassbackup.conf (the file used to win, against what its man page says); the file is used
    when the environment has none."""
    loc, env, url, _ = moto_store
    conf = tmp_path / 'cb.conf'
    conf.write_text('s3_endpoint = http://127.0.0.1:9/\ns3_region = nowhere-1\n')
    assert cb('--config', conf, 'list', '--store', loc, env=env).returncode == 0
    conf.write_text(f's3_endpoint = {url}\ns3_region = us-east-1\n')
    no_endpoint = {k: v for k, v in env.items() if k not in ('AWS_ENDPOINT_URL', 'AWS_REGION')}
    assert cb('--config', conf, 'list', '--store', loc, env=no_endpoint).returncode == 0


def test_disk_cache_keeps_to_its_own_files(moto_store, tmp_path):
    """review: the disk cache takes in and evicts only files it names itself: an operator's
    file in the directory survives a cache that overflows, and is never read as a frame."""
    loc, env, url, log = moto_store
    files, rel, cdir, opts = read_through_disk_cache(moto_store, tmp_path, ',disk_cache_size=256K')
    mine = os.path.join(cdir, 'notes.txt')
    with open(mine, 'w') as f:
        f.write('an operator was here\n')
    os.utime(mine, (1, 1))  # the oldest file there: evicted first if the cache took it in
    with mounted(loc, str(tmp_path / 'mnt'), opts, env=env) as m:
        assert read(m.path(rel)) == read(files[rel])
    assert read(mine) == b'an operator was here\n'
