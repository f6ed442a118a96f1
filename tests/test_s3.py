"""Stores in S3-compatible object storage, against real S3 servers on loopback that this file
starts on free ports: moto_server (Python moto) and s3rver (npm). A server that is not
installed skips its tests with one line saying so, or under CI=true fails them (CI must not pass
without its S3 coverage); tests/run.sh installs both where it can."""
import atexit
import contextlib
import functools
import json
import os
import shutil
import subprocess
import re
import tempfile
import time
import urllib.error
import urllib.request

import pytest

import awssig

from conftest import (BUILD, REPO, cb, data_dir_args, make_sample, mounted, read, sample_dirs, snapshot_tables,
                      stop_server)

S3RVER = os.path.join(REPO, 'build-node', 'node_modules', '.bin', 's3rver')


ALLOW_ALL = json.dumps({'Version': '2012-10-17',
                        'Statement': [{'Effect': 'Allow', 'Action': '*', 'Resource': '*'}]})


def iam_user(url, name, key='bootstrap', secret='bootstrap', access_key=True):
    """(access key id, secret) of a new IAM user of moto allowed everything (None without
    access_key: keys made by others, tests/credserver.py)."""
    awssig.query(url, 'iam', {'Action': 'CreateUser', 'UserName': name, 'Version': '2010-05-08'},
                 key, secret)
    awssig.query(url, 'iam', {'Action': 'PutUserPolicy', 'UserName': name, 'PolicyName': 'all',
                              'PolicyDocument': ALLOW_ALL, 'Version': '2010-05-08'}, key, secret)
    if not access_key:
        return None
    xml = awssig.query(url, 'iam', {'Action': 'CreateAccessKey', 'UserName': name,
                                    'Version': '2010-05-08'}, key, secret)
    return (re.search(r'<AccessKeyId>([^<]+)<', xml).group(1),
            re.search(r'<SecretAccessKey>([^<]+)<', xml).group(1))


def logged_port(proc, log):
    """The port werkzeug says it runs on, once it does."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f'moto_server exited at start: {open(log).read()}')
        m = re.search(r'Running on http://127\.0\.0\.1:(\d+)', open(log).read())
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    pytest.fail('moto_server did not say where it listens')


@functools.lru_cache(maxsize=None)
def moto_python():
    """The python3 on PATH when it has moto's server (the pyenv one), else None."""
    python = shutil.which('python3')
    ok = python and subprocess.run([python, '-c', 'import moto.server, moto.iam.access_control'],
                                   capture_output=True).returncode == 0
    return python if ok else None


def server_missing(why, server):
    """Skips the test for a missing S3 server, saying so; under CI=true (.ci/run sets it) fails
    it instead: CI must not pass without its S3 coverage."""
    if os.environ.get('CI', '').lower() in ('true', '1', 'yes'):
        pytest.fail(f'{why}: CI=true needs every S3 server, so this is a failure, not a skip')
    pytest.skip(f'{why}: {server} tests skipped')


_MOTO = {}  # this test process's moto_server: proc, port, log


def moto_server():
    """(port, log) of the moto_server this test process shares across its tests, started at
    the first call: a start costs 1.4 CPU-s (moto's imports), ~80 of them a suite run."""
    python = moto_python()
    if not python:
        server_missing('moto_server is not installed (pip install "moto[server]")', 'moto')
    if _MOTO and _MOTO['proc'].poll() is None:
        return _MOTO['port'], _MOTO['log']
    # a file, not a pipe: a full pipe would stall the server
    log = os.path.join(tempfile.mkdtemp(prefix='cb-moto-'), 'moto.log')
    # port 0: the server binds a free port itself and logs it, so no other process on this
    # machine can take the port between a choice and the bind (and answer in its place)
    # setpriv (util-linux): SIGTERM once the test process ends, however it ends (a suite's
    # timeout kills it with SIGKILL), so no server outlives its tests; no Python runs between
    # fork and exec (a preexec_fn may deadlock beside the tests' server threads)
    proc = subprocess.Popen(['setpriv', '--pdeathsig', 'TERM', python,
                             os.path.join(REPO, 'tests', 'moto_strict.py'), '-H', '127.0.0.1',
                             '-p', '0'], stdout=open(log, 'w'), stderr=subprocess.STDOUT)
    try:
        port = logged_port(proc, log)
    except BaseException:
        stop_server(proc)
        raise
    atexit.register(lambda: (stop_server(proc), shutil.rmtree(os.path.dirname(log), ignore_errors=True)))
    _MOTO.update(proc=proc, port=port, log=log)
    return port, log


def moto_api(url, what, body):
    urllib.request.urlopen(urllib.request.Request(f'{url}/moto-api/{what}', data=body,
                                                  headers={'Content-Type': 'text/plain'},
                                                  method='POST')).read()


def s3_env(port, key, secret, cache_dir):
    """The environment of a cassbackup that reaches the S3 server on port with this key, its
    catalog in cache_dir."""
    return dict(os.environ, AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', AWS_ACCESS_KEY_ID=key,
                AWS_SECRET_ACCESS_KEY=secret, AWS_REGION='us-east-1', CASSBACKUP_CACHE_DIR=str(cache_dir))


@contextlib.contextmanager
def moto(tmp_path):
    """moto_server (this process's, emptied: moto_server()) with the bucket cbtest, checking
    every request's SigV4 signature against its IAM users from the start
    (moto/iam/access_control.py: the count of unauthenticated actions is set to 0 once the
    bucket and a user exist), so a signing mistake fails a test. Yields (port, access key id,
    secret key) of that user, made for this test: a process an earlier test left behind is
    refused with its old key. tmp_path/moto.log is the server's request log (shared: compare
    counts taken before and after)."""
    port, log = moto_server()
    url = f'http://127.0.0.1:{port}'
    # the four requests that follow are taken unsigned (three to make the user, the bucket's
    # PUT), and no more: a process an earlier test left behind is refused meanwhile too
    moto_api(url, 'reset-auth', b'4')
    moto_api(url, 'reset', b'')  # every bucket, user and key of the test before: gone
    key, secret = iam_user(url, 'cassbackup')
    awssig.request('PUT', f'{url}/cbtest', key, secret).read()
    moto_api(url, 'reset-auth', b'0')
    with pytest.raises(urllib.error.HTTPError):  # from here on, signatures count
        awssig.request('GET', f'{url}/cbtest', key, 'not-' + secret)
    os.symlink(log, tmp_path / 'moto.log')
    yield port, key, secret


def s3rver_port(proc, log):
    """The port s3rver says it listens on, once it does (its CLI prints it, --silent or not)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f's3rver exited at start: {open(log).read()}')
        m = re.search(r'S3rver listening on 127\.0\.0\.1:(\d+)', open(log).read())
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    pytest.fail('s3rver did not say where it listens')


@contextlib.contextmanager
def s3rver(tmp_path):
    if not os.access(S3RVER, os.X_OK):
        server_missing(f'{S3RVER} is not installed (tests/run.sh: npm install s3rver)', 's3rver')
    data = tmp_path / 's3rver-data'
    data.mkdir()
    log = str(tmp_path / 's3rver.log')
    # port 0, as for moto: a port chosen here could be taken by a test running beside this one
    # before s3rver binds it, and that test's server would answer in its place
    proc = subprocess.Popen([S3RVER, '-d', str(data), '-a', '127.0.0.1', '-p', '0',
                             '--configure-bucket', 'cbtest', '--silent'],
                            stdout=open(log, 'w'), stderr=subprocess.STDOUT)
    try:
        yield s3rver_port(proc, log), 'S3RVER', 'S3RVER'
    finally:
        stop_server(proc)


@pytest.fixture(params=['moto', 's3rver'])
def s3(request, tmp_path, binaries):
    """(store location, environment) of an empty S3 store on a loopback server."""
    server = moto if request.param == 'moto' else s3rver
    with server(tmp_path) as (port, key, secret):
        env = s3_env(port, key, secret, tmp_path / 'cache')
        loc = 's3://cbtest/stores/prod'
        cb('init', '--store', loc, env=env)
        yield loc, env


@pytest.fixture(params=['local', 'moto', 's3rver'])
def any_store(request, tmp_path, binaries):
    """(store location, environment) of an empty store: a local directory, or S3 on moto or
    s3rver, for the tests that must behave the same on every kind."""
    if request.param == 'local':
        loc = str(tmp_path / 'store')
        env = dict(os.environ, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        cb('init', '--store', loc, env=env)
        yield loc, env
        return
    server = moto if request.param == 'moto' else s3rver
    with server(tmp_path) as (port, key, secret):
        env = s3_env(port, key, secret, tmp_path / 'cache')
        loc = 's3://cbtest/stores/prod'
        cb('init', '--store', loc, env=env)
        yield loc, env


def drop_catalog(loc, env):
    """Deletes the catalog cache of a store: in the store when local, in the cache dir when not."""
    if loc.startswith('s3://'):
        shutil.rmtree(env['CASSBACKUP_CACHE_DIR'])
        return
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(os.path.join(loc, 'catalog.db' + suffix)):
            os.unlink(os.path.join(loc, 'catalog.db' + suffix))


def test_backend_contract(s3):
    """Every backend operation, large multipart uploads and >1000-key listings included."""
    loc, env = s3
    p = subprocess.run([os.path.join(BUILD, 'tests', 'backend_contract'), loc + '/contract'],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr


def test_backend_contract_locally_twice_at_once(tmp_path, binaries):
    """The local contract makes a store of its own under the directory it is given: two runs at
    once there (two suites on one machine, meson's plain and sanitizer builds) both pass, and
    leave nothing behind (both wrote /tmp/locks/... and failed, counting each other's keys)."""
    runs = [subprocess.Popen([os.path.join(BUILD, 'tests', 'backend_contract'), str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in runs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    assert os.listdir(tmp_path) == []


def test_the_environment_wins_over_the_configuration_in_the_mount_too(tmp_path, binaries):
    """AWS_ENDPOINT_URL wins over the configuration's s3_endpoint for the mount as for every
    command (the AWS CLI's rule). The mount took the file's: `cassbackup load`, which checks
    the store and then mounts it with -o config=FILE, read another service than it checked."""
    with moto(tmp_path) as (port, key, secret):
        env = s3_env(port, key, secret, tmp_path / 'cache')
        conf = tmp_path / 'cassbackup.conf'
        conf.write_text('s3_endpoint = http://127.0.0.1:9\ns3_region = nowhere-1\n')
        loc = 's3://cbtest/stores/prod'
        src = make_sample(str(tmp_path / 's'), '--data-kib', '64', '--data-dirs', '1', '--keyspaces', '1',
                          '--tables', '1')
        cb('--config', conf, 'init', '--store', loc, env=env)
        cb('--config', conf, 'create', '--store', loc, '--name', 'n1', *data_dir_args(sample_dirs(src)),
           '--snapshot', 'nightly-1', env=env)
        with mounted(loc, str(tmp_path / 'mnt'), opts=('-o', f'config={conf}'), env=env) as m:
            assert os.listdir(m.path()) == ['n1']


def test_create_list_verify_mount_forget(any_store, tmp_path):
    loc, env = any_store
    src = make_sample(str(tmp_path / 's'), '--data-kib', '4096', '--data-dirs', '1')
    dirs = sample_dirs(src)
    cb('create', '--store', loc, '--name', 'n1', *data_dir_args(dirs), '--snapshot', 'nightly-1', env=env)
    [b] = json.loads(cb('list', '--store', loc, '--json', env=env).stdout)
    assert b['name'] == 'n1' and b['complete']
    cb('verify', '--store', loc, 'n1', env=env)
    # a second init is refused: a store is there
    p = cb('init', '--store', loc, env=env, check=False)
    assert p.returncode != 0 and 'already there' in p.stderr
    with mounted(loc, str(tmp_path / 'mnt'), env=env) as m:
        for (ks, table), files in snapshot_tables(dirs, 'nightly-1').items():
            for rel, path in files.items():
                assert read(m.path('n1', ks, table, rel)) == read(path)
        # libcurl is loaded by what uses S3 only (catalog/curl_lib.c), not at every start
        assert has_libcurl(m.proc.pid) == loc.startswith('s3://')
    cb('forget', '--store', loc, 'n1', env=env)
    assert json.loads(cb('list', '--store', loc, '--json', env=env).stdout) == []


def has_libcurl(pid):
    with open(f'/proc/{pid}/maps') as f:
        return 'libcurl.so' in f.read()


def test_a_libcurl_that_cannot_be_loaded_is_one_line(tmp_path, binaries):
    """libcurl is loaded when S3 is first used: one that cannot be (here a broken file found
    first on LD_LIBRARY_PATH) stops an S3 command with one line naming it and the loader's
    reason, exit 1, while a local store never needs it."""
    lib = tmp_path / 'lib'
    lib.mkdir()
    (lib / 'libcurl.so.4').write_bytes(b'not a library')
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib), AWS_ACCESS_KEY_ID='k', AWS_SECRET_ACCESS_KEY='s',
               AWS_ENDPOINT_URL='http://127.0.0.1:9', CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
    p = cb('list', '--store', 's3://cbtest/p', env=env, check=False)
    assert p.returncode == 1, p.stderr
    [line] = p.stderr.splitlines()
    assert 'cannot load libcurl.so.4' in line and str(lib / 'libcurl.so.4') in line, line
    cb('init', '--store', tmp_path / 'store', env=env)
    assert json.loads(cb('list', '--store', tmp_path / 'store', '--json', env=env).stdout) == []


def test_two_nodes_create_at_once_and_dedup(any_store, tmp_path):
    """Two nodes back up into one store at the same time: both land, both verify; a third
    backup of the same data stores next to nothing."""
    loc, env = any_store
    srcs = [make_sample(str(tmp_path / f'n{i}'), '--data-kib', '4096', '--data-dirs', '1', '--seed', str(i))
            for i in (1, 2)]
    procs = [subprocess.Popen([os.path.join(BUILD, 'tools', 'cassbackup'), 'create', '--store', loc,
                               '--name', f'node{i}', *data_dir_args(sample_dirs(src)), '--snapshot',
                               'nightly-1', '--node', f'node{i}', '--json'],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, src in zip((1, 2), srcs)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    names = sorted(b['name'] for b in json.loads(cb('list', '--store', loc, '--json', env=env).stdout))
    assert names == ['node1', 'node2']
    cb('verify', '--store', loc, '--all', env=env)
    again = cb('create', '--store', loc, '--name', 'node1-again', *data_dir_args(sample_dirs(srcs[0])),
               '--snapshot', 'nightly-1', '--node', 'node1', '--json', env=env)
    summary = json.loads(again.stdout)
    assert summary['new_bytes'] == 0, summary


def test_store_lifecycle_forget_prune_check_reindex_export_restore(any_store, tmp_path):
    """issue 8: the commands of a store that runs for years, the same on S3 as on a local store:
    two days of a node, forget and prune of the first, check --read-data, reindex from nothing
    (the catalog deleted), export restored with stock tar, restore into a node, a mount with the
    same bytes."""
    loc, env = any_store
    src = make_sample(str(tmp_path / 's'), '--data-kib', '2048', '--data-dirs', '1', '--no-clutter')
    dirs = sample_dirs(src)
    cb('create', '--store', loc, '--name', 'day1', *data_dir_args(dirs), '--snapshot', 'nightly-1', env=env)
    make_sample(src, '--data-kib', '2048', '--data-dirs', '1', '--no-clutter', '--grow-percent', '30',
                '--tag', 'nightly-2', '--seed', '2')
    cb('create', '--store', loc, '--name', 'day2', *data_dir_args(dirs), '--snapshot', 'nightly-2', env=env)
    cb('forget', '--store', loc, 'day1', env=env)
    res = json.loads(cb('prune', '--store', loc, '--max-unused', '0', '--json', env=env).stdout)
    assert res['packs']['deleted'] + res['packs']['repacked'] >= 1 and res['bytes']['freed'] > 0, res
    again = json.loads(cb('prune', '--store', loc, '--json', env=env).stdout)
    assert again['actions'] == [], again
    names = [b['name'] for b in json.loads(cb('list', '--store', loc, '--json', env=env).stdout)]
    assert names == ['day2']
    cb('check', '--store', loc, '--read-data', env=env)
    before = json.loads(cb('list', '--store', loc, '--json', env=env).stdout)
    drop_catalog(loc, env)
    cb('reindex', '--store', loc, env=env)
    assert json.loads(cb('list', '--store', loc, '--json', env=env).stdout) == before
    cb('check', '--store', loc, '--read-data', env=env)
    want = snapshot_tables(dirs, 'nightly-2')
    tarball = tmp_path / 'day2.tar'
    cb('export', '--store', loc, 'day2', '-o', tarball, env=env)
    out = tmp_path / 'x'
    out.mkdir()
    subprocess.run(['tar', '-x', '-C', out, '-f', tarball], check=True)
    live = tmp_path / 'live'
    for (ks, table) in want:
        (live / ks / f'{table}-{"c" * 32}').mkdir(parents=True)
    cb('restore', '--store', loc, 'day2', '--data-dir', live, env=env)
    with mounted(loc, str(tmp_path / 'mnt'), env=env) as m:
        for (ks, table), files in want.items():
            [tdir] = [d for d in os.listdir(out / ks) if d.startswith(table + '-')]
            for rel, path in files.items():
                assert read(m.path('day2', ks, table, rel)) == read(path)
                assert read(out / ks / tdir / rel) == read(path)
                if rel not in ('manifest.json', 'schema.cql'):  # the snapshot's, not the table's
                    assert read(live / ks / f'{table}-{"c" * 32}' / rel) == read(path)


def test_create_and_copy_after_another_hosts_prune(s3, tmp_path):
    """Two hosts, two catalog caches: host B's cache still lists a pack that host A's prune
    deleted. B's create (and copy) of the same data must send the blobs again, not take them
    as present in the gone pack (they used to: a committed backup without its bytes)."""
    loc, env_a = s3
    env_b = dict(env_a, CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache-b'))
    src = make_sample(str(tmp_path / 's'), '--data-kib', '1024', '--data-dirs', '1', '--no-clutter')
    dirs = sample_dirs(src)
    cb('create', '--store', loc, '--name', 'old', *data_dir_args(dirs), '--snapshot', 'nightly-1', env=env_a)
    cb('list', '--store', loc, env=env_b)  # B's cache knows old's pack
    cb('forget', '--store', loc, 'old', env=env_a)
    cb('prune', '--store', loc, env=env_a)
    cb('create', '--store', loc, '--name', 'new', *data_dir_args(dirs), '--snapshot', 'nightly-1', env=env_b)
    cb('check', '--store', loc, '--read-data', env=env_a)
    cb('verify', '--store', loc, 'new', env=env_a)
    local = str(tmp_path / 'local')
    cb('init', '--store', local)
    cb('create', '--store', local, '--name', 'copied', *data_dir_args(dirs), '--snapshot', 'nightly-1')
    cb('forget', '--store', loc, 'new', env=env_a)
    cb('prune', '--store', loc, env=env_a)
    cb('copy', '--from', local, '--to', loc, 'copied', env=env_b)
    cb('check', '--store', loc, '--read-data', env=env_a)
    [b] = json.loads(cb('list', '--store', loc, '--json', env=env_a).stdout)
    assert b['name'] == 'copied' and b['complete'], b
    cb('verify', '--store', loc, 'copied', env=env_b)


def test_a_missing_server_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv('CI', raising=False)
    with pytest.raises(pytest.skip.Exception, match='s3rver tests skipped'):
        server_missing('s3rver is not installed', 's3rver')
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match='CI=true needs every S3 server'):
        server_missing('s3rver is not installed', 's3rver')
