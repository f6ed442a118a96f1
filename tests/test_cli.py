"""The CLI layer: exit codes, --version, help, usage errors, closest names, escaped names, and
messages that say what is really wrong (issue 6, defects 3, 4, 19)."""
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile

import pytest

from conftest import manifest_path, rewrite_manifest, CASSBACKUP, cb, data_dir_args, make_sample, run, sample_dirs

NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']


def one_error_line(p, code, *words):
    assert p.returncode == code, (p.returncode, p.stderr)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope='module')
def small_tree(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('cli-sample'))
    make_sample(out, '--data-kib', '16', '--data-dirs', '1', '--keyspaces', '1', '--tables', '2',
                '--sstables', '1', '--no-clutter')
    return sample_dirs(out)


@pytest.fixture
def two_backups(store, small_tree):
    for n in ('nightly-1', 'nightly-2'):
        cb('create', '--store', store, '--name', n, *data_dir_args(small_tree), '--snapshot', 'nightly-1')
    return store


def test_version_and_help(binaries):
    r = cb('--version')
    assert r.stdout.startswith('cassbackup ') and r.stdout.split()[1][0].isdigit()
    for c in ('list', 'verify', 'init', 'validate-config'):
        h = cb('help', c)
        assert h.stdout == cb(c, '--help').stdout
        assert h.stdout.startswith('usage: cassbackup ' + c)
        assert 'exit status: 0 ok, 1 the work failed, 2 usage or configuration error, 3 no such store or backup' in h.stdout
    assert '--store DIR' in cb('help', 'list').stdout and '(config: store)' in cb('help', 'list').stdout
    one_error_line(cb('help', 'lst', check=False), 2, "unknown command 'lst'", "did you mean 'list'")


def test_exit_codes(store, tmp_path):
    one_error_line(cb('list', '--store', tmp_path / 'nope', check=False), 3, 'No such file')
    plain = tmp_path / 'plain'
    plain.mkdir()
    one_error_line(cb('verify', '--store', plain, '--all', check=False), 3, 'not a cassbackup store')
    one_error_line(cb('verify', '--store', store, 'nope', check=False), 3, 'backup nope: no such backup')
    one_error_line(cb('verify', '--store', store, check=False), 2, 'give backup names or --all')
    one_error_line(cb('list', check=False), 2, 'missing --store DIR')
    one_error_line(cb('list', '--store', store, '--jsn', check=False), 2, 'unknown option --jsn', '--json')
    one_error_line(cb('list', '--store', store, 'extra', check=False), 2, 'too many operands')
    one_error_line(cb('verify', '--store', store, '--all', '--table', 'nodot', check=False), 2,
                   '--table nodot: expected KEYSPACE.TABLE')
    one_error_line(cb('list', '--store', store, '--config', check=False), 2, '--config needs a FILE')
    one_error_line(cb('init', check=False), 2, 'missing --store DIR')
    # --node picks a node's backup of each NAME; with --all copy ignored it (every node's went)
    # and verify stopped at the first other node's backup (exit 3, nothing verified)
    other = tmp_path / 'other'
    cb('init', '--store', other)
    for args in (('verify', '--store', store), ('copy', '--from', store, '--to', other)):
        one_error_line(cb(*args, '--all', '--node', 'n1', check=False), 2, 'give NAME... with --node, not --all')


def test_init_takes_store_from_config(tmp_path):
    """init reads `store` from the configuration as every command does; --store or the
    operand wins over it; both on the line is still a usage error."""
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'store = {tmp_path}/fromconf\n')
    r = cb('--config', conf, 'init')
    assert r.stdout == f'created store {tmp_path}/fromconf\n'
    assert os.path.isfile(tmp_path / 'fromconf' / 'catalog.db')
    assert cb('--config', conf, 'list', '--json').stdout.strip() == '[]'
    for args, made in ((['--store', tmp_path / 'flag'], 'flag'), ([tmp_path / 'operand'], 'operand'),
                       (['-s', tmp_path / 'short'], 'short')):
        r = cb('--config', conf, 'init', *args)
        assert r.stdout == f'created store {tmp_path}/{made}\n'
        assert os.path.isfile(tmp_path / made / 'catalog.db')
    one_error_line(cb('--config', conf, 'init', '--store', tmp_path / 'a', tmp_path / 'b', check=False), 2,
                   'give the store once')
    assert not os.path.exists(tmp_path / 'a') and not os.path.exists(tmp_path / 'b')
    # a store already there (the configuration's) is not made again
    one_error_line(cb('--config', conf, 'init', check=False), 1, f'cannot create store {tmp_path}/fromconf')
    assert 'store' in cb('init', '--help').stdout.split('(config: store)')[0].splitlines()[-1]


def test_unknown_backup_lists_closest_names(two_backups):
    p = cb('verify', '--store', two_backups, 'nightly-3', check=False)
    one_error_line(p, 3, 'backup nightly-3: no such backup', 'closest: nightly-1, nightly-2')
    p = cb('verify', '--store', two_backups, 'zzzzzzzzzzzz', check=False)
    assert 'closest' not in one_error_line(p, 3, 'no such backup')


def test_verify_selection(two_backups):
    r = cb('verify', '--store', two_backups, 'nightly-1', '--table', 'shop.table1', '--json')
    res = json.loads(r.stdout)['tables']
    assert [(t['keyspace'], t['table'], t['status']) for t in res] == [('shop', 'table1', 'ok')]
    p = cb('verify', '--store', two_backups, 'nightly-1', '--table', 'shop.nosuch', check=False)
    one_error_line(p, 1, 'table shop.nosuch: not in backup nightly-1')


def test_config_dev_null_is_none_and_a_special_file_says_why(store, tmp_path):
    """--config /dev/null (the usual way to say "no configuration") said "config /dev/null:
    Invalid argument". It is an empty configuration now; a FIFO or a directory says what a
    configuration file must be."""
    assert cb('--config', '/dev/null', 'list', '--store', store).returncode == 0
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    one_error_line(cb('--config', fifo, 'list', '--store', store, check=False), 2,
                   f'config {fifo}: not a regular file (a text file of key = value lines; /dev/null for none)')
    one_error_line(cb('--config', tmp_path, 'list', '--store', store, check=False), 2,
                   f'config {tmp_path}: Is a directory')


def test_config_error_names_the_right_line(store, tmp_path):
    """Defect 3: blank lines count, so the line number is the one an editor shows."""
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'# cassbackup\n\nstore = {store}\n\n\nthreads 4\n')
    one_error_line(cb('--config', conf, 'list', check=False), 2, 'line 6: expected key = value')
    conf.write_text(f'\n\n\nstore = {store}\n\nstroe = /x\n')
    one_error_line(cb('--config', conf, 'list', check=False), 2, "line 6: unknown key 'stroe'")
    # a NUL byte ended the file there: the lines after it (a second node, keep_last, an unknown
    # key) were dropped without a word, and validate-config said 0 problems
    conf.write_bytes(f'store = {store}\nnode = first\0\nnode = second\nkeep_last = 1\nbogus = 1\n'.encode())
    for args in (['list'], ['validate-config']):
        one_error_line(cb('--config', conf, *args, check=False), 2, 'line 2: a NUL byte')
    # a key with no value: "store =" said "cannot open store : Invalid argument", exit 1;
    # "key_file =" on a plain store that the store had been replaced
    for key in ('store', 'key_file'):
        conf.write_text(f'store = {store}\n{key} =  # later\n')
        for args in (['list'], ['validate-config']):
            one_error_line(cb('--config', conf, *args, check=False), 2,
                           f'config {conf}, line 2: {key} has no value (remove the line for the default)')
    # a directory as the configuration: "Invalid argument"
    one_error_line(cb('--config', tmp_path, 'list', check=False), 2, f'config {tmp_path}: Is a directory')


def test_a_size_below_its_least_says_the_least(store):
    """--pack-size 12 said "must be from 1048576 to 0 bytes": 0 is no upper bound."""
    for cmd in ('prune', 'copy'):
        args = ['--store', store] if cmd == 'prune' else ['--from', store, '--to', store, '--all']
        p = cb(cmd, *args, '--pack-size', '12', check=False)
        line = one_error_line(p, 2, '--pack-size', 'must be at least 1048576 bytes')
        assert ' to 0' not in line


def test_verify_dir_that_is_a_file(two_backups, tmp_path):
    """Defect 4: after a successful stat, no stale errno ("No such file or directory")."""
    f = tmp_path / 'file'
    f.write_text('x')
    p = cb('verify', '--store', two_backups, '--dir', f, '--against', 'nightly-1/shop/table1', check=False)
    line = one_error_line(p, 2, str(f), 'not a directory')
    assert 'No such file' not in line


def test_damaged_catalog_is_not_called_missing(two_backups):
    """Defect 19: a catalog.db that exists but is damaged is not "no catalog.db; make one".
    In store format 2 the catalog is a cache of the store: a damaged one is rebuilt from the
    manifests and pack indexes, and nothing is lost."""
    before = json.loads(cb('list', '--store', two_backups, '--json').stdout)
    db = os.path.join(two_backups, 'catalog.db')
    with open(db, 'r+b') as f:
        f.write(b'this is no SQLite header, it was overwritten')
    p = cb('list', '--store', two_backups, '--json')
    assert 'init' not in p.stderr and 'no catalog.db' not in p.stderr
    key = lambda b: b['name']
    assert sorted(json.loads(p.stdout), key=key) == sorted(before, key=key)
    assert os.path.exists(db + '.damaged')


def test_a_catalog_of_another_format_is_set_aside_under_its_format(two_backups):
    """A catalog an older (or newer) release made is rebuilt, and the one set aside is named by
    its format: it was called catalog.db.damaged, which sent an operator looking for a broken
    disk after an upgrade."""
    before = json.loads(cb('list', '--store', two_backups, '--json').stdout)
    db = os.path.join(two_backups, 'catalog.db')
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value = 'cassbackup-catalog-6' WHERE key = 'format'")
    p = cb('list', '--store', two_backups, '--json')
    key = lambda b: b['name']
    assert sorted(json.loads(p.stdout), key=key) == sorted(before, key=key)
    assert os.path.exists(db + '.cassbackup-catalog-6')
    assert not os.path.exists(db + '.damaged')


def test_bad_sha_length_is_not_not_an_error(two_backups):
    """Defect 19: a SHA-256 of the wrong length in the catalog is a damaged catalog, not "not an error"."""
    with sqlite3.connect(os.path.join(two_backups, 'catalog.db')) as c:
        c.execute("UPDATE blobs SET sha256 = substr(sha256, 1, 31)")
    line = one_error_line(cb('verify', '--store', two_backups, 'nightly-1', check=False), 1,
                          'catalog.db is damaged')
    assert 'not an error' not in line


def test_permission_denied_is_not_read_only(binaries, small_tree):
    """Defect 19: a user who may not write the store is told so, not "Read-only file system"."""
    top = tempfile.mkdtemp(prefix='cb-perm-')
    try:
        os.chmod(top, 0o755)
        store = os.path.join(top, 'store')
        cb('init', '--store', store)
        run('chmod', '-R', 'a+rX', os.path.dirname(small_tree[0]))
        p = run(*NOBODY, CASSBACKUP, 'create', '--store', store, '--name', 'x',
                *data_dir_args(small_tree), '--snapshot', 'nightly-1', check=False)
        line = one_error_line(p, 1, 'cannot open store', 'permission denied', 'user id 65534')
        assert 'Read-only' not in line
        p = run(*NOBODY, CASSBACKUP, 'list', '--store', store, check=False)
        line = one_error_line(p, 1, 'cannot open store', 'permission denied')
        assert 'Read-only' not in line
    finally:
        shutil.rmtree(top)


def test_names_are_escaped_in_human_output(two_backups):
    """Defect 19: a newline in a name (from a hostile or damaged store) cannot forge a line."""
    forged = 'evil\nok      nightly-9 shop.table1: 8 files, 1.0 KiB'
    # A name is a manifest's file name and its "name": both can hold a newline.
    old = manifest_path(two_backups, 'nightly-2')
    with open(old) as f:
        doc = json.load(f)
    doc['name'] = forged
    rewrite_manifest(manifest_path(two_backups, forged), doc)
    os.unlink(old)
    out = cb('verify', '--store', two_backups, '--all').stdout.splitlines()
    assert out.pop().startswith('4 tables ok, 0 failed in 2 backups ('), out
    assert len(out) == 4 and all(l.startswith('ok      ') for l in out), out
    assert not any(l.startswith('ok      nightly-9') for l in out)
    assert sum('evil\\nok      nightly-9' in l for l in out) == 2
    lst = cb('list', '--store', two_backups).stdout.splitlines()
    assert len(lst) == 3 and lst[2].startswith('evil\\nok ') or lst[1].startswith('evil\\nok '), lst
    # JSON keeps the name as it is
    names = {b['name'] for b in json.loads(cb('list', '--store', two_backups, '--json').stdout)}
    assert forged in names


def test_validate_config_notes_hosts_state_dir_and_mount_helper(store, tmp_path):
    """issue 9 / 6 defect 9: the sstableloader password's exposure is said (a note, not a
    problem); hosts are checked as load checks them (host_list_ok: a tab inside used to pass);
    load_state_dir and mount_helper are checked."""
    pw = tmp_path / 'pw'
    pw.write_text('secret\n')
    pw.chmod(0o600)
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'store = {store}\nsstableloader_user = u\nsstableloader_password_file = {pw}\n'
                    f'hosts = 10.0.0.1,10.0.0.2\nload_state_dir = {tmp_path}/state/load\n'
                    f'mount_helper = /bin/true\n')
    r = cb('--config', conf, 'validate-config')
    lines = r.stdout.splitlines()
    notes = [l for l in lines if l.startswith('note ')]
    assert notes == [f'note     line 3   sstableloader_password_file = {pw}: sstableloader receives the password '
                     "as -pw on its command line, visible in ps while it runs (Cassandra's LoaderOptions has "
                     'no other way)']
    assert 'does not exist yet; load makes it' in [l for l in lines if 'load_state_dir' in l][0]
    assert 'runs /bin/true' in [l for l in lines if 'mount_helper' in l][0]
    assert lines[-1].endswith(': 6 settings checked, 0 problem(s)')
    afile = tmp_path / 'afile'
    afile.write_text('')
    conf.write_text(f'store = {store}\nhosts = h1\th2\nload_state_dir = {afile}/x\n'
                    f'mount_helper = {tmp_path}/none\n')
    p = cb('--config', conf, 'validate-config', check=False)
    problems = [l for l in p.stdout.splitlines() if l.startswith('PROBLEM')]
    assert p.returncode == 1 and len(problems) == 3, p.stdout
    assert 'hosts = h1\\th2: expected HOST[,HOST...]' in problems[0]
    assert f'load_state_dir = {afile}/x: Not a directory' in problems[1]
    assert 'mount_helper' in problems[2] and 'no executable program' in problems[2]


def test_validate_config_runs_nodetool(store, tmp_path):
    """nodetool is run ('nodetool version', with the configuration's credentials): one that
    cannot reach Cassandra (a stopped node: the stand-in prints what the real one prints and
    exits 1) is a problem, named with what it said, not a program that "runs"."""
    nodetool = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'standins', 'nodetool')
    pw = tmp_path / 'pw'
    pw.write_text('secret\n')
    pw.chmod(0o600)
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'store = {store}\nnodetool = {nodetool}\nnodetool_user = cassandra\n'
                    f'nodetool_password_file = {pw}\n')
    nlog = tmp_path / 'n.log'
    env = dict(os.environ, NODETOOL_STANDIN_LOG=str(nlog))
    p = cb('--config', conf, 'validate-config', env=dict(env, NODETOOL_STANDIN_DOWN='1'), check=False)
    assert p.returncode == 1, p.stdout
    problems = [l for l in p.stdout.splitlines() if l.startswith('PROBLEM')]
    assert len(problems) == 1 and ' nodetool = ' in problems[0], p.stdout
    assert 'runs' not in problems[0] and f'{nodetool} version failed (exit status 1)' in problems[0]
    assert problems[0].endswith("nodetool: Failed to connect to '127.0.0.1:7199' - ConnectException: "
                                "'Connection refused'."), problems[0]
    assert p.stdout.splitlines()[-1].endswith(': 4 settings checked, 1 problem(s)')
    r = cb('--config', conf, 'validate-config', env=env)
    [line] = [l for l in r.stdout.splitlines() if ' nodetool = ' in l]
    assert line.startswith('ok ') and f'runs {nodetool}' in line and 'Cassandra 4.1.3' in line, line
    calls = [json.loads(l) for l in open(nlog)]
    assert [(c['cmd'], c['opts']) for c in calls] == [('version', {'-u': 'cassandra', '-pwf': str(pw)})] * 2
    # a program that fails without a word on stderr: what it printed, else its exit status
    for script, said in (('echo "error: JMX says no"; exit 2', 'exit status 2): error: JMX says no'),
                         ('exit 3', 'exit status 3)'), ('echo Hello', 'printed no ReleaseVersion line')):
        fake = tmp_path / 'fake-nodetool'
        fake.write_text(f'#!/bin/sh\n{script}\n')
        fake.chmod(0o755)
        conf.write_text(f'store = {store}\nnodetool = {fake}\n')
        p = cb('--config', conf, 'validate-config', check=False)
        [line] = [l for l in p.stdout.splitlines() if ' nodetool = ' in l]
        assert p.returncode == 1 and line.startswith('PROBLEM') and said in line, line


def test_validate_config_refuses_what_the_commands_refuse(store, tmp_path):
    """validate-config said ok (or only "set") to values the routine job then refused with
    exit 2: a node name with a blank, a name_period that is no duration, a pack_size under
    its least. Each is checked as the command checks it, with the command's words."""
    conf = tmp_path / 'cb.conf'
    bad = {'node': ('db 1', "a node is 1 to 64 bytes of printable ASCII, no blank or '/'"),
           'host_id': ('zz', 'a host id is a UUID as nodetool info prints it'),
           'name_period': ('1 month', 'not a duration'),
           'incremental_name_period': ('x', 'not a duration'),
           'name': ('nightly-%Q', ''),
           'pack_size': ('12', 'must be at least 1048576 bytes'),
           'limit_upload': ('fast', '')}
    for key, (value, words) in bad.items():
        conf.write_text(f'store = {store}\n{key} = {value}\n')
        p = cb('--config', conf, 'validate-config', check=False)
        problems = [l for l in p.stdout.splitlines() if l.startswith('PROBLEM')]
        assert p.returncode == 1 and len(problems) == 1 and f'{key} = {value}: {words}' in problems[0], p.stdout
        # and the command refuses it too
        q = cb('--config', conf, 'backup', '--store', store, '--data-dir', str(tmp_path), check=False)
        assert q.returncode == 2, (key, q.stderr)
    conf.write_text(f'store = {store}\nnode = db-1\nhost_id = 5F1C0C8E-0000-4000-8000-000000000001\nname = nightly-%Y%m%d\n'
                    f'name_period = 1d\npack_size = 64M\nlimit_upload = 0\n')
    r = cb('--config', conf, 'validate-config')
    assert r.stdout.splitlines()[-1].endswith(': 7 settings checked, 0 problem(s)'), r.stdout
    assert 'names a backup made now nightly-' in r.stdout
    # a relative path works from here, and not from the timer's service, which runs in /
    os.makedirs(tmp_path / 'rel')
    conf.write_text(f'store = {store}\ndata_dir = rel\nnodetool = nodetool\n')
    r = cb('--config', conf, 'validate-config', cwd=tmp_path, check=False)
    notes = [l for l in r.stdout.splitlines() if l.startswith('note')]
    assert len(notes) == 1 and 'data_dir = rel: a relative path' in notes[0] and '(' in notes[0], r.stdout


def test_validate_config_checks_s3_settings(store, tmp_path):
    """issue 8: the S3 key file may be read by its owner only; the CA file must be readable and
    the endpoint a URL. A missing key file is reported by validate-config, not refused before
    it runs (every other command refuses it)."""
    key = tmp_path / 'key'
    key.write_text('access_key = a\nsecret_key = b\n')
    key.chmod(0o640)
    conf = tmp_path / 'cb.conf'
    conf.write_text(f'store = {store}\ns3_key_file = {key}\ns3_ca_file = {tmp_path}/none.pem\n'
                    f's3_endpoint = 127.0.0.1:9000\n')
    p = cb('--config', conf, 'validate-config', check=False)
    problems = [l for l in p.stdout.splitlines() if l.startswith('PROBLEM')]
    assert p.returncode == 1 and len(problems) == 3, p.stdout
    assert f's3_key_file = {key}: mode 640 lets others than its owner at the secret key' in problems[0]
    assert f's3_ca_file = {tmp_path}/none.pem: No such file or directory' in problems[1]
    assert 's3_endpoint = 127.0.0.1:9000: expected an http:// or https:// URL' in problems[2]
    key.chmod(0o600)
    (tmp_path / 'ca.pem').write_text('')
    conf.write_text(f'store = {store}\ns3_key_file = {key}\ns3_ca_file = {tmp_path}/ca.pem\n'
                    f's3_endpoint = http://127.0.0.1:9000\n')
    r = cb('--config', conf, 'validate-config')
    assert r.stdout.splitlines()[-1].endswith(': 4 settings checked, 0 problem(s)'), r.stdout
    key.unlink()
    p = cb('--config', conf, 'validate-config', check=False)
    assert p.returncode == 1 and f's3_key_file = {key}: No such file or directory' in p.stdout, p.stdout
    p = cb('--config', conf, 'list', check=False)
    assert p.returncode == 2 and f'cannot read s3_key_file {key}' in p.stderr
    # s3_parallel: 1 to 16 parallel transfers
    conf.write_text(f'store = {store}\ns3_parallel = 0\n')
    p = cb('--config', conf, 'validate-config', check=False)
    assert p.returncode == 1 and 's3_parallel = 0: expected a number from 1 to 16' in p.stdout, p.stdout
    p = cb('--config', conf, 'list', check=False)
    assert p.returncode == 2 and p.stderr.strip() == ('cassbackup: s3_parallel = 0: expected a number of '
                                                      'requests from 1 to 16'), p.stderr
    conf.write_text(f'store = {store}\ns3_parallel = 8\n')
    assert cb('--config', conf, 'validate-config').returncode == 0
