"""Commands that read a backup while a prune repacks its packs (issue 13's adversarial run):
verify said a healthy backup FAILED ("pack file is missing"), restore that it was damaged, copy
"no such backup" with exit 3. Readers take no lock (a machine that only restores needs no
write access to the store), so a content whose pack went since the command read the catalog
is read from where the store holds it now (store_relocate). Paused at an exact request: the
reader's first GET of a pack is held by a proxy while the prune runs."""
import json
import os
import subprocess

import pytest

from conftest import CASSBACKUP, cb, snapshot_tables
from s3proxy import S3Proxy
from test_lease import day1_forgotten_day2_sharing_a_big_file
from test_restore_safety import live_with_tables
from test_s3 import moto

STORE = 's3://cbtest/stores/rp'


@pytest.fixture
def pruned_under_a_reader(tmp_path, monkeypatch):
    """Yields run(argv): argv (a cassbackup command reading day2 through a proxy, with a
    catalog of its own) is started, held at its first GET of a pack, a prune repacks day1's
    pack (which holds day2's big sstable) and deletes it, and the command goes on; run returns
    its CompletedProcess. Also yields the data dirs."""
    with moto(tmp_path) as (port, key, secret):
        for k, v in dict(AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', AWS_ACCESS_KEY_ID=key,
                         AWS_SECRET_ACCESS_KEY=secret, AWS_REGION='us-east-1',
                         CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache')).items():
            monkeypatch.setenv(k, v)
        cb('init', '--store', STORE)
        dirs = day1_forgotten_day2_sharing_a_big_file(tmp_path, STORE, kib=4096)[0]
        with S3Proxy(port) as px:
            reader = dict(os.environ, AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}',
                          CASSBACKUP_CACHE_DIR=str(tmp_path / 'reader-cache'))
            cb('list', '--store', STORE, env=reader)  # its catalog knows every pack now

            def run(*argv):
                px.set_fault('hold', match='GET /cbtest/stores/rp/packs/')
                p = subprocess.Popen([CASSBACKUP, *argv], env=reader, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                try:
                    while not px.holding.wait(0.1):
                        assert p.poll() is None, p.communicate()
                    pr = json.loads(cb('prune', '--store', STORE, '--max-unused', '0', '--json').stdout)
                    assert [a['action'] for a in pr['actions']] == ['repack'], pr
                finally:
                    px.set_fault(None)
                    px.release()
                out, err = p.communicate(timeout=300)
                return subprocess.CompletedProcess(argv, p.returncode, out, err)
            yield run, dirs


def test_verify_during_a_prune(pruned_under_a_reader):
    run, _ = pruned_under_a_reader
    p = run('verify', '--store', STORE, 'day2')
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert 'pack file is missing' not in p.stdout + p.stderr


def test_restore_during_a_prune(pruned_under_a_reader, tmp_path):
    run, dirs = pruned_under_a_reader
    live = str(tmp_path / 'live')
    tables = live_with_tables(live, snapshot_tables(dirs, 'nightly-2'))
    p = run('restore', '--store', STORE, 'day2', '--data-dir', live)
    assert p.returncode == 0, (p.stdout, p.stderr)
    for (ks, t), files in snapshot_tables(dirs, 'nightly-2').items():
        for rel, path in files.items():
            if rel.endswith('.db') or rel.endswith('.txt'):
                got = os.path.join(tables[(ks, t)], rel)
                assert open(got, 'rb').read() == open(path, 'rb').read(), rel


def test_copy_during_a_prune(pruned_under_a_reader, tmp_path):
    run, _ = pruned_under_a_reader
    dst = str(tmp_path / 'dst')
    cb('init', '--store', dst)
    p = run('copy', '--from', STORE, '--to', dst, 'day2')
    assert p.returncode == 0, (p.stdout, p.stderr)
    cb('verify', '--store', dst, '--all')
