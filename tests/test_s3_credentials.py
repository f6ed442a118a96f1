"""Issue 16: where S3 credentials come from (the AWS chain, catalog/awscred.c), server-side
encryption and storage classes, and S3 errors that say what is wrong. Against moto checking
every signature against its IAM users (test_s3.moto), its STS, and tests/credserver.py (the
EC2 instance metadata service with IMDSv2 and the container credentials endpoint)."""
import json
import os
import re
import stat
import time
import urllib.error

import pytest

import awssig
from conftest import MOUNT, cb, data_dir_args, make_sample, mounted, read, run, sample_dirs, snapshot_tables
from credserver import CredServer
from s3proxy import S3Proxy
from test_s3 import ALLOW_ALL, iam_user, moto

LOC = 's3://cbtest/stores/prod'


@pytest.fixture
def aws(tmp_path, binaries):
    """(url, admin env, bare env): moto with a store at LOC made with the admin user's keys;
    bare has the endpoint and region but no credentials at all (HOME without ~/.aws, instance
    metadata off), for each test to add its source."""
    with moto(tmp_path) as (port, key, secret):
        url = f'http://127.0.0.1:{port}'
        base = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
        home = tmp_path / 'home'
        home.mkdir()
        bare = dict(base, HOME=str(home), AWS_ENDPOINT_URL=url, AWS_REGION='us-east-1',
                    AWS_EC2_METADATA_DISABLED='true', CASSBACKUP_CACHE_DIR=str(tmp_path / 'cache'))
        admin = dict(bare, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
        cb('init', '--store', LOC, env=admin)
        yield url, admin, bare


def config(tmp_path, text, name='cassbackup.conf'):
    p = tmp_path / name
    p.write_text(f'store = {LOC}\n' + text)
    return str(p)


def secret_file(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def source_of(conf, env):
    """What validate-config says of the store line: which source gave the credentials."""
    p = cb('--config', conf, 'validate-config', env=env, check=False)
    line = [ln for ln in p.stdout.splitlines() if ' store = ' in ln or 'store =' in ln][0]
    assert 'a cassbackup store' in line, p.stdout
    return line


def works(env, conf=None):
    """The store lists through these credentials (and nothing was printed on stderr)."""
    args = ('--config', conf) if conf else ()
    p = cb(*args, 'list', '--store', LOC, '--json', env=env)
    assert json.loads(p.stdout) == [] and p.stderr == '', p.stderr


def one_line_error(p):
    assert p.returncode != 0, p.stdout
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


def make_role(url, admin, name='cb-node'):
    """A role of moto's IAM anyone may assume, allowed everything; its ARN."""
    key, secret = admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY']
    trust = json.dumps({'Version': '2012-10-17', 'Statement': [
        {'Effect': 'Allow', 'Principal': {'AWS': '*'}, 'Action': 'sts:AssumeRole'},
        {'Effect': 'Allow', 'Principal': {'Federated': '*'}, 'Action': 'sts:AssumeRoleWithWebIdentity'}]})
    xml = awssig.query(url, 'iam', {'Action': 'CreateRole', 'RoleName': name,
                                    'AssumeRolePolicyDocument': trust, 'Version': '2010-05-08'}, key, secret)
    awssig.query(url, 'iam', {'Action': 'PutRolePolicy', 'RoleName': name, 'PolicyName': 'all',
                              'PolicyDocument': ALLOW_ALL, 'Version': '2010-05-08'}, key, secret)
    return re.search(r'<Arn>([^<]+)</Arn>', xml).group(1)


# --- the chain -----------------------------------------------------------------------------

def test_environment_keys_and_what_validate_config_says(aws, tmp_path):
    url, admin, bare = aws
    works(admin)
    assert 'S3 credentials from environment (AWS_ACCESS_KEY_ID)' in source_of(config(tmp_path, ''), admin)


def test_none_anywhere_is_one_line_naming_what_was_tried(aws):
    _, _, bare = aws
    p = cb('list', '--store', LOC, env=bare, check=False)
    line = one_line_error(p)
    assert 'no S3 credentials' in line and 'AWS_ACCESS_KEY_ID' in line and 'AWS_EC2_METADATA_DISABLED' in line
    assert p.returncode == 2  # a configuration to fix (it was 1, as for a failed request)


@pytest.mark.parametrize('endpoint', ['ftp://127.0.0.1:9', 'file:///etc', '127.0.0.1:9000'])
def test_an_endpoint_that_is_no_http_url_is_refused_at_once(aws, endpoint):
    """libcurl took ftp:// (a minute's wait for an answer) and file:// (it read local files);
    validate-config alone refused them."""
    _, admin, _ = aws
    p = cb('list', '--store', LOC, env=dict(admin, AWS_ENDPOINT_URL=endpoint), check=False)
    assert p.returncode == 2 and p.stderr == (f'cassbackup: S3 endpoint {endpoint} (s3_endpoint, AWS_ENDPOINT_URL): '
                                              'expected an http:// or https:// URL\n')


@pytest.mark.parametrize('loc, said', [
    ('s3://bucket1//x', "prefix '/x' has an empty, '.' or '..' part"),
    ('s3://Bucket1/x', "'Bucket1' is no bucket name (3 to 63 of a-z 0-9 . -)"),
])
def test_a_malformed_location_says_which_part(aws, loc, said):
    _, admin, _ = aws
    p = cb('list', '--store', loc, env=admin, check=False)
    assert p.returncode == 2 and one_line_error(p).startswith(f'cassbackup: cannot open store {loc}: not s3://BUCKET')
    assert said in p.stderr


def test_a_key_file_given_comes_first(aws, tmp_path):
    """s3_key_file in the configuration wins over keys in the environment (they would be refused)."""
    _, admin, bare = aws
    key = secret_file(tmp_path / 'key', f"access_key = {admin['AWS_ACCESS_KEY_ID']}\n"
                                        f"secret_key = {admin['AWS_SECRET_ACCESS_KEY']}\n")
    env = dict(bare, AWS_ACCESS_KEY_ID='AKIAWRONGWRONGWRONG1', AWS_SECRET_ACCESS_KEY='wrong')
    conf = config(tmp_path, f's3_key_file = {key}\n')
    works(env, conf)
    assert f'S3 credentials from s3_key_file {key}' in source_of(conf, env)


def test_profile_with_static_keys(aws, tmp_path):
    _, admin, bare = aws
    creds = secret_file(tmp_path / 'home' / 'credentials',
                        f"[default]\naws_access_key_id = AKIAWRONGWRONGWRONG1\naws_secret_access_key = x\n"
                        f"[prod]\naws_access_key_id = {admin['AWS_ACCESS_KEY_ID']}\n"
                        f"aws_secret_access_key = {admin['AWS_SECRET_ACCESS_KEY']}\n")
    env = dict(bare, AWS_PROFILE='prod', AWS_SHARED_CREDENTIALS_FILE=creds)
    works(env)
    assert f'S3 credentials from profile prod ({creds})' in source_of(config(tmp_path, ''), env)
    # the default profile of ~/.aws/credentials when AWS_PROFILE is unset (here: refused keys)
    os.makedirs(tmp_path / 'home' / '.aws')
    os.rename(creds, tmp_path / 'home' / '.aws' / 'credentials')
    line = one_line_error(cb('list', '--store', LOC, env=bare, check=False))
    assert 'InvalidAccessKeyId' in line and 'profile default' in line, line


def test_a_profile_named_but_absent_is_an_error_not_the_next_source(aws, tmp_path):
    _, admin, bare = aws
    env = dict(bare, AWS_PROFILE='nope')
    line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
    assert 'no S3 credentials: profile nope is in neither' in line and '.aws/credentials' in line, line
    # a key id in the environment without its secret is an error naming both, not a silent
    # step to the next source (here a profile whose keys work): as botocore's
    # PartialCredentialsError
    creds = secret_file(tmp_path / 'credentials', f"[default]\naws_access_key_id = {admin['AWS_ACCESS_KEY_ID']}\n"
                                                 f"aws_secret_access_key = {admin['AWS_SECRET_ACCESS_KEY']}\n")
    works(dict(bare, AWS_SHARED_CREDENTIALS_FILE=creds))
    for half in ({'AWS_ACCESS_KEY_ID': 'AKIAOPERATORKEY00001'}, {'AWS_SECRET_ACCESS_KEY': 'x'}):
        p = cb('list', '--store', LOC, env=dict(bare, AWS_SHARED_CREDENTIALS_FILE=creds, **half), check=False)
        line = one_line_error(p)
        assert p.returncode == 2 and 'the environment sets AWS_' in line and 'but not AWS_' in line, line
    cfg = secret_file(tmp_path / 'config', '[profile eu]\nregion = eu-west-1\n')
    line = one_line_error(cb('list', '--store', LOC, env=dict(env, AWS_PROFILE='eu', AWS_CONFIG_FILE=cfg),
                             check=False))
    assert 'profile eu has no aws_access_key_id, role_arn or credential_process' in line, line


def test_profile_assumes_a_role_through_sts(aws, tmp_path):
    """role_arn with source_profile: STS AssumeRole signed with the source profile's keys; the
    temporary keys (and their session token) sign the S3 requests, which moto checks."""
    url, admin, bare = aws
    arn = make_role(url, admin)
    creds = secret_file(tmp_path / 'credentials', f"[base]\naws_access_key_id = {admin['AWS_ACCESS_KEY_ID']}\n"
                                                 f"aws_secret_access_key = {admin['AWS_SECRET_ACCESS_KEY']}\n")
    cfg = secret_file(tmp_path / 'config', f'[profile node]\nrole_arn = {arn}\nsource_profile = base\n'
                                           f'role_session_name = cb-test\n')
    env = dict(bare, AWS_PROFILE='node', AWS_SHARED_CREDENTIALS_FILE=creds, AWS_CONFIG_FILE=cfg)
    dirs = sample_dirs(make_sample(str(tmp_path / 'src'), '--data-kib', '256', '--keyspaces', '1',
                                   '--tables', '1', '--sstables', '1'))
    cb('create', '--store', LOC, '--name', 'n1', *data_dir_args(dirs), '--snapshot', 'nightly-1', env=env)
    cb('verify', '--store', LOC, 'n1', env=env)
    assert f'S3 credentials from role {arn} (profile node, STS AssumeRole)' in source_of(config(tmp_path, ''), env)
    # a role profile whose source_profile is itself: its own static keys assume the role (as
    # botocore does; it recursed to the chain's depth limit)
    creds_self = secret_file(tmp_path / 'credentials-self',
                             f"[node]\naws_access_key_id = {admin['AWS_ACCESS_KEY_ID']}\n"
                             f"aws_secret_access_key = {admin['AWS_SECRET_ACCESS_KEY']}\n")
    cfg_self = secret_file(tmp_path / 'config-self', f'[profile node]\nrole_arn = {arn}\nsource_profile = node\n')
    p = cb('list', '--store', LOC, env=dict(env, AWS_SHARED_CREDENTIALS_FILE=creds_self, AWS_CONFIG_FILE=cfg_self))
    assert 'n1' in p.stdout and p.stderr == '', p.stderr
    # a source profile without keys: one line naming both profiles
    cfg2 = secret_file(tmp_path / 'config2', f'[profile node]\nrole_arn = {arn}\nsource_profile = gone\n')
    line = one_line_error(cb('list', '--store', LOC, env=dict(env, AWS_CONFIG_FILE=cfg2), check=False))
    assert 'profile gone is in neither' in line or 'source_profile gone has no credentials' in line, line


def test_profile_credential_process(aws, tmp_path):
    _, admin, bare = aws
    script = tmp_path / 'helper'
    script.write_text('#!/bin/sh\ncat <<EOF\n' + json.dumps({
        'Version': 1, 'AccessKeyId': admin['AWS_ACCESS_KEY_ID'],
        'SecretAccessKey': admin['AWS_SECRET_ACCESS_KEY']}) + '\nEOF\n')
    script.chmod(0o700)
    cfg = secret_file(tmp_path / 'config', f'[default]\ncredential_process = {script}\n')
    env = dict(bare, AWS_CONFIG_FILE=cfg)
    works(env)
    assert 'credential_process of profile default' in source_of(config(tmp_path, ''), env)
    script.write_text('#!/bin/sh\necho no keys today >&2\nexit 3\n')
    p = cb('list', '--store', LOC, env=env, check=False)
    assert p.returncode != 0 and 'exited with status 3' in p.stderr, p.stderr
    # its arguments, or a variable set before it, may hold a secret (a vault token): the
    # message names the program only
    for line in (f'{script} --token s.SECRETVAULTTOKEN', f'VAULT_TOKEN=hvs.SECRETVAULTTOKEN {script} --role b'):
        secret_file(tmp_path / 'config', f'[default]\ncredential_process = {line}\n')
        p = cb('list', '--store', LOC, env=env, check=False)
        assert f'credential_process {script}: exited with status 3' in p.stderr, p.stderr
        assert 'SECRETVAULTTOKEN' not in p.stderr + p.stdout, p.stderr
    # an Expiration with a UTC offset is that instant (it was taken for "never expires": the
    # expired keys were used and never fetched again); one that is no time is refused
    for exp, said in (('2020-01-01T02:00:00+02:00', 'expired'), ('next tuesday', 'is not an ISO 8601 time')):
        script.write_text('#!/bin/sh\ncat <<EOF\n' + json.dumps({
            'Version': 1, 'AccessKeyId': admin['AWS_ACCESS_KEY_ID'], 'SessionToken': 'tok',
            'SecretAccessKey': admin['AWS_SECRET_ACCESS_KEY'], 'Expiration': exp}) + '\nEOF\n')
        secret_file(tmp_path / 'config', f'[default]\ncredential_process = {script}\n')
        line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
        assert said in line, (exp, line)


def test_web_identity(aws, tmp_path):
    """AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (EKS IRSA): STS AssumeRoleWithWebIdentity."""
    url, admin, bare = aws
    arn = make_role(url, admin, 'irsa')
    token = secret_file(tmp_path / 'token', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2ln\n')
    env = dict(bare, AWS_WEB_IDENTITY_TOKEN_FILE=token, AWS_ROLE_ARN=arn)
    works(env)
    assert f'web identity {token} (role {arn}' in source_of(config(tmp_path, ''), env)
    os.unlink(token)
    line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
    assert f'AWS_WEB_IDENTITY_TOKEN_FILE {token}: No such file' in line, line


def test_container_credentials_with_their_token(aws, tmp_path):
    url, admin, bare = aws
    user = 'container'
    iam_user(url, user, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], access_key=False)
    with CredServer(url, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], user) as cs:
        tok = secret_file(tmp_path / 'pod-token', cs.container_token + '\n')
        full = cs.url + cs.container_path
        env = dict(bare, AWS_CONTAINER_CREDENTIALS_FULL_URI=full, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=tok)
        works(env)
        assert f'container credentials {full}' in source_of(config(tmp_path, ''), env)
        assert cs.refused == []
        secret_file(tmp_path / 'pod-token', 'not-the-token\n')
        line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
        assert f'container credentials {full}: HTTP 403' in line, line
    # the token goes over plain http only to loopback or the ECS/EKS agents' addresses
    for uri in ('http://198.51.100.7/creds', 'http://127.example.com/creds', 'http://[::2]/creds'):
        env = dict(env, AWS_CONTAINER_CREDENTIALS_FULL_URI=uri)
        line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
        assert f'AWS_CONTAINER_CREDENTIALS_FULL_URI {uri}: plain http only to loopback' in line, line
    # a loopback or agent address as userinfo ("user@host") is not the host (the token went to
    # the host after it); a URI with userinfo is refused, and not echoed (it may hold a password)
    for uri in ('http://127.0.0.1@198.51.100.7/creds', 'http://169.254.170.2@198.51.100.7:80/creds',
                'http://localhost:1@198.51.100.7/', 'https://user:pw-SECRET@example.com/creds'):
        env = dict(env, AWS_CONTAINER_CREDENTIALS_FULL_URI=uri)
        line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
        assert 'a user name or password in the URI (user@host) is not supported' in line, line
        assert '198.51' not in line and 'SECRET' not in line, line
    # loopback however it is written: asked (nothing listens on port 1), not refused
    for uri in ('http://[::1]:1/creds', 'http://[0:0:0:0:0:0:0:1]:1/creds', 'http://[::0001]:1/creds',
                'http://127.1.2.3:1/creds', 'http://LOCALHOST:1/creds'):
        env = dict(env, AWS_CONTAINER_CREDENTIALS_FULL_URI=uri)
        line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
        assert f'no S3 credentials: {uri}: ' in line and 'plain http only' not in line, line


def test_instance_metadata_with_imdsv2_tokens(aws, tmp_path):
    url, admin, bare = aws
    user = 'instance'
    iam_user(url, user, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], access_key=False)
    with CredServer(url, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], user) as cs:
        env = {k: v for k, v in bare.items() if k != 'AWS_EC2_METADATA_DISABLED'}
        env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] = cs.url
        works(env)
        assert f'instance metadata {cs.url}' in source_of(config(tmp_path, ''), env)
        assert cs.refused == [] and cs.tokens  # IMDSv2 only: never a GET without a token


def test_an_expired_token_answer_renews_the_credentials(aws, tmp_path):
    """S3's 400 ExpiredToken (keys revoked or expired early, a clock behind) makes the client
    fetch its credentials again and repeat the request, instead of failing."""
    url, admin, bare = aws
    user = 'renew'
    iam_user(url, user, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], access_key=False)
    with CredServer(url, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], user) as cs, \
            S3Proxy(int(url.rsplit(':', 1)[1]), fault='expired', every=1000,
                    match='GET /cbtest/stores/prod/config') as px:
        env = {k: v for k, v in bare.items() if k != 'AWS_EC2_METADATA_DISABLED'}
        env.update(AWS_EC2_METADATA_SERVICE_ENDPOINT=cs.url, AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}')
        works(env)
        assert len(cs.issued) == 2  # fetched at the start, and again after the ExpiredToken
        assert [s for _, t, s, _ in px.log if 'config' in t][:2] == [400, 200]


def test_long_create_renews_its_credentials(aws, tmp_path):
    """A create held to 2 MiB/s (--limit-upload) uploading a pack of about 16 MiB in 5 MiB parts
    one at a time (s3_parallel = 1) outlasts keys due for renewal 2 s after they are given: it
    renews them between parts, the first key is deleted under it, and the backup is whole."""
    url, admin, bare = aws
    user = 'creator'
    iam_user(url, user, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], access_key=False)
    dirs = sample_dirs(make_sample(str(tmp_path / 'src'), '--data-kib', '32768', '--keyspaces', '1',
                                   '--tables', '1', '--sstables', '1', '--data-dirs', '1'))
    conf = config(tmp_path, 's3_parallel = 1\n')
    with CredServer(url, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], user,
                    lifetime=302) as cs:
        env = {k: v for k, v in bare.items() if k != 'AWS_EC2_METADATA_DISABLED'}
        env.update(AWS_EC2_METADATA_SERVICE_ENDPOINT=cs.url, CASSBACKUP_S3_PART_SIZE='5M')
        cb('--config', conf, 'create', '--store', LOC, '--name', 'slow', *data_dir_args(dirs),
           '--snapshot', 'nightly-1', '--limit-upload', '2M', env=env, timeout=600)
        assert len(cs.issued) >= 3 and cs.refused == []
    cb('verify', '--store', LOC, 'slow', env=admin)


def test_mount_outlives_three_rotations_of_short_lived_credentials(aws, tmp_path):
    """Keys from instance metadata that expire 302 s after they are issued are due for refresh
    (5 minutes before expiry) 2 s later; the credentials server deletes each key two issues
    after it, so a mount that did not move on would be refused. The mount keeps reading
    through at least three rotations, and a backup made meanwhile reads whole."""
    url, admin, bare = aws
    user = 'node'
    iam_user(url, user, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], access_key=False)
    src = make_sample(str(tmp_path / 'src'), '--data-kib', '512', '--keyspaces', '1', '--tables', '1',
                      '--sstables', '1', '--no-clutter', '--no-index')
    dirs = sample_dirs(src)
    cb('create', '--store', LOC, '--name', 'n1', *data_dir_args(dirs), '--snapshot', 'nightly-1', env=admin)
    with CredServer(url, admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY'], user,
                    lifetime=302) as cs:
        env = {k: v for k, v in bare.items() if k != 'AWS_EC2_METADATA_DISABLED'}
        env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] = cs.url
        with mounted(LOC, str(tmp_path / 'mnt'), env=env) as m:
            assert os.listdir(m.path()) == ['n1']
            while len(cs.issued) < 4:  # each listing of /backups asks the store (every 2 s)
                assert os.listdir(m.path()) == ['n1']
                time.sleep(0.2)
            cb('create', '--store', LOC, '--name', 'n2', *data_dir_args(dirs), '--snapshot',
               'nightly-1', env=admin)
            while 'n2' not in os.listdir(m.path()):
                time.sleep(0.2)
            for (ks, table), files in snapshot_tables(dirs, 'nightly-1').items():
                for rel, path in files.items():
                    assert read(m.path('n2', ks, table, rel)) == read(path)
            assert cs.refused == []
            issued = list(cs.issued)
        # the keys the mount began with are gone from IAM: the rotation was real
        with pytest.raises(urllib.error.HTTPError) as e:
            awssig.request('GET', f'{url}/cbtest?prefix=x', issued[0], 'x')
        assert e.value.code == 403 and b'InvalidAccessKeyId' in e.value.read()


# --- server-side encryption and storage classes ----------------------------------------------

def objects(admin):
    body = awssig.env_get(admin, '/cbtest?prefix=stores/prod/')
    return re.findall(r'<Key>([^<]+)</Key>', body)


def test_sse_and_storage_class_on_every_object_written(aws, tmp_path):
    """s3_sse = AES256 and s3_storage_class = STANDARD_IA reach every object, those sent in
    parts too (moto records both: HEAD shows them)."""
    _, admin, _ = aws
    conf = config(tmp_path, 's3_sse = AES256\ns3_storage_class = STANDARD_IA\n')
    dirs = sample_dirs(make_sample(str(tmp_path / 'src'), '--data-kib', '12288', '--keyspaces', '1',
                                   '--tables', '1', '--sstables', '1', '--data-dirs', '1'))
    env = dict(admin, CASSBACKUP_S3_PART_SIZE='5M')
    cb('--config', conf, 'create', '--store', LOC, '--name', 'n1', *data_dir_args(dirs), '--snapshot',
       'nightly-1', env=env)
    written = [k for k in objects(admin) if not k.endswith('/config')]
    assert any('/packs/' in k for k in written) and any('/backups/' in k for k in written)
    for key in written:
        h = awssig.env_request(admin, 'HEAD', f'/cbtest/{key}').headers
        assert h.get('x-amz-server-side-encryption') == 'AES256', (key, dict(h))
        assert h.get('x-amz-storage-class') == 'STANDARD_IA', (key, dict(h))
    cb('--config', conf, 'verify', '--store', LOC, 'n1', env=env)
    assert 'sent on every write' in cb('--config', conf, 'validate-config', env=admin, check=False).stdout


def test_sse_kms_with_a_key_id(aws, tmp_path):
    _, admin, _ = aws
    kms = 'arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9'
    conf = config(tmp_path, f's3_sse = aws:kms\ns3_sse_kms_key_id = {kms}\n')
    dirs = sample_dirs(make_sample(str(tmp_path / 'src'), '--data-kib', '64', '--keyspaces', '1',
                                   '--tables', '1', '--sstables', '1'))
    cb('--config', conf, 'create', '--store', LOC, '--name', 'n1', *data_dir_args(dirs), '--snapshot',
       'nightly-1', env=admin)
    for key in [k for k in objects(admin) if not k.endswith('/config')]:
        h = awssig.env_request(admin, 'HEAD', f'/cbtest/{key}').headers
        assert h.get('x-amz-server-side-encryption') == 'aws:kms', (key, dict(h))
        assert h.get('x-amz-server-side-encryption-aws-kms-key-id') == kms, (key, dict(h))


def test_sse_c_key_on_every_put_get_and_head(aws, tmp_path):
    """SSE-C: the customer key goes with every PUT, multipart create and part, GET and HEAD of
    an object (moto ignores SSE-C, so the fault proxy records what arrives)."""
    url, admin, _ = aws
    raw = bytes(range(32))
    keyfile = tmp_path / 'ssec.key'
    keyfile.write_bytes(raw)
    keyfile.chmod(0o600)
    conf = config(tmp_path, f's3_sse_c_key_file = {keyfile}\n')
    dirs = sample_dirs(make_sample(str(tmp_path / 'src'), '--data-kib', '12288', '--keyspaces', '1',
                                   '--tables', '1', '--sstables', '1', '--data-dirs', '1'))
    import base64
    import hashlib
    want = {'x-amz-server-side-encryption-customer-algorithm': 'AES256',
            'x-amz-server-side-encryption-customer-key': base64.b64encode(raw).decode(),
            'x-amz-server-side-encryption-customer-key-md5':
                base64.b64encode(hashlib.md5(raw).digest()).decode()}
    with S3Proxy(int(url.rsplit(':', 1)[1])) as px:
        env = dict(admin, AWS_ENDPOINT_URL=f'http://127.0.0.1:{px.port}', CASSBACKUP_S3_PART_SIZE='5M')
        cb('--config', conf, 'create', '--store', LOC, '--name', 'n1', *data_dir_args(dirs),
           '--snapshot', 'nightly-1', env=env)
        cb('--config', conf, 'export', '--store', LOC, 'n1', '-o', str(tmp_path / 'n1.tar'), env=env)
        sent = [(m, t, {k.lower(): v for k, v in h.items()}) for m, t, h in px.received]
    object_reqs = [(m, t, h) for m, t, h in sent
                   if '/stores/prod/' in t and not t.split('?')[0].endswith('/config')
                   and ('?' not in t or 'partNumber=' in t or t.endswith('?uploads=') or t.endswith('?uploads'))
                   and m in ('PUT', 'GET', 'HEAD', 'POST')]
    kinds = {(m, 'part' if 'partNumber=' in t else 'create' if 'uploads' in t else 'object')
             for m, t, h in object_reqs}
    assert {('PUT', 'object'), ('PUT', 'part'), ('POST', 'create'), ('GET', 'object')} <= kinds, kinds
    for m, t, h in object_reqs:
        for name, value in want.items():
            assert h.get(name) == value, (m, t, name)
    assert all(n not in h for m, t, h in sent if m == 'DELETE' or t.endswith('list-type=2')
               for n in want)  # not sent where S3 has no use for it


def test_classes_that_need_a_restore_are_refused(aws, tmp_path):
    _, admin, _ = aws
    for cls in ('GLACIER', 'DEEP_ARCHIVE'):
        conf = config(tmp_path, f's3_storage_class = {cls}\n')
        line = one_line_error(cb('--config', conf, 'list', '--store', LOC, env=admin, check=False))
        assert f's3_storage_class = {cls}: objects of this class need a restore' in line, line
        p = cb('--config', conf, 'validate-config', env=admin, check=False)
        assert p.returncode == 1 and f's3_storage_class = {cls}' in p.stdout and 'need a restore' in p.stdout
    for bad, why in [('s3_sse = AES128', 'expected AES256 or aws:kms'),
                     ('s3_sse_kms_key_id = k1', 'needs s3_sse = aws:kms'),
                     ('s3_storage_class = COLD', 'expected STANDARD'),
                     ('s3_storage_class = REDUCED_REDUNDANCY', 'expected STANDARD')]:
        line = one_line_error(cb('--config', config(tmp_path, bad + '\n'), 'list', '--store', LOC,
                                 env=admin, check=False))
        assert why in line, (bad, line)
    keyfile = secret_file(tmp_path / 'short.key', 'abc\n')
    line = one_line_error(cb('--config', config(tmp_path, f's3_sse_c_key_file = {keyfile}\n'), 'list',
                             '--store', LOC, env=admin, check=False))
    assert f's3_sse_c_key_file {keyfile}: not a 256-bit key' in line, line
    p = run(MOUNT, LOC, str(tmp_path / 'mnt'), '-o', 's3_storage_class=GLACIER', check=False, env=admin)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and 'need a restore' in p.stderr, p.stderr


# --- errors that say what is wrong -------------------------------------------------------------

def test_missing_bucket_says_no_such_bucket(aws):
    _, admin, _ = aws
    line = one_line_error(cb('list', '--store', 's3://nobucket/stores/prod', env=admin, check=False))
    assert 'bucket nobucket does not exist (NoSuchBucket)' in line and 'no config' not in line, line


def test_mistyped_prefix_names_the_stores_nearby(aws):
    _, admin, _ = aws
    line = one_line_error(cb('list', '--store', 's3://cbtest/stores/prd', env=admin, check=False))
    assert 'not a cassbackup store (no config)' in line and 'beside or below it: s3://cbtest/stores/prod' in line, line
    line = one_line_error(cb('list', '--store', 's3://cbtest/stores', env=admin, check=False))
    assert 's3://cbtest/stores/prod' in line, line
    line = one_line_error(cb('list', '--store', 's3://cbtest/elsewhere', env=admin, check=False))
    assert 'no store beside or below it either' in line, line


def test_refused_access_key_and_signature(aws):
    _, admin, _ = aws
    env = dict(admin, AWS_ACCESS_KEY_ID='AKIAIOSFODNN7EXAMPLE')
    line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
    assert 'S3 refused the access key AKIAIOSFODNN7EXAMPLE (HTTP 403 InvalidAccessKeyId' in line and 'permission denied for user' not in line, line
    assert 'credentials from environment (AWS_ACCESS_KEY_ID)' in line, line
    secret = admin['AWS_SECRET_ACCESS_KEY']
    # another first character: 'x' alone left a secret that begins with 'x' (1 in 64) as it was
    env = dict(admin, AWS_SECRET_ACCESS_KEY=('y' if secret[0] == 'x' else 'x') + secret[1:])
    assert env['AWS_SECRET_ACCESS_KEY'] != secret
    line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
    assert 'S3 refused the signature' in line and 'SignatureDoesNotMatch' in line, line
    assert env['AWS_SECRET_ACCESS_KEY'] not in line


def test_key_file_without_secret_key_names_the_file(aws, tmp_path):
    _, admin, bare = aws
    key = secret_file(tmp_path / 'key', f"access_key = {admin['AWS_ACCESS_KEY_ID']}\n")
    line = one_line_error(cb('--config', config(tmp_path, f's3_key_file = {key}\n'), 'list', env=bare,
                             check=False))
    assert f's3_key_file {key} has no secret_key line' in line, line
    p = run(MOUNT, LOC, str(tmp_path / 'mnt'), '-o', f's3_key_file={key}', check=False, env=bare)
    assert p.returncode == 1 and f's3_key_file {key} has no secret_key line' in p.stderr, p.stderr


def test_wrong_port_names_the_endpoint(aws):
    _, admin, _ = aws
    import socket
    with socket.socket() as s:  # a port nothing listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(admin, AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}')
    line = one_line_error(cb('list', '--store', LOC, env=env, check=False))
    assert f'cannot connect to http://127.0.0.1:{port}' in line and 'Connection refused' in line, line


def test_key_file_mode_is_still_checked(aws, tmp_path):
    """Unchanged behaviour beside the chain: a group-readable key file is a PROBLEM."""
    _, admin, _ = aws
    key = tmp_path / 'key'
    key.write_text(f"access_key = {admin['AWS_ACCESS_KEY_ID']}\nsecret_key = {admin['AWS_SECRET_ACCESS_KEY']}\n")
    key.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP)
    p = cb('--config', config(tmp_path, f's3_key_file = {key}\n'), 'validate-config', env=admin, check=False)
    assert p.returncode == 1 and 'mode 640' in p.stdout


def readme_policy():
    """The IAM policy README.md gives a node, as it stands there."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'README.md')) as f:
        return json.loads(re.search(r'```json\n(.*?)```', f.read(), re.S).group(1))


def test_the_readme_policy_runs_a_node_and_a_prefix_outside_it_is_access_denied(aws, tmp_path):
    """A node with README's IAM policy (bucket acme-backups, prefix cass/prod) makes, lists,
    forgets and checks backups there. An init of a prefix the policy does not cover
    said only "HEAD cass/staging/config: HTTP 403" (a HEAD's answer carries no error code): it
    now says access denied, with the credential source and the endpoint, as every other
    refusal does."""
    url, admin, bare = aws
    awssig.request('PUT', f'{url}/acme-backups', admin['AWS_ACCESS_KEY_ID'],
                   admin['AWS_SECRET_ACCESS_KEY']).read()
    akey, asecret = admin['AWS_ACCESS_KEY_ID'], admin['AWS_SECRET_ACCESS_KEY']
    awssig.query(url, 'iam', {'Action': 'CreateUser', 'UserName': 'node', 'Version': '2010-05-08'}, akey, asecret)
    awssig.query(url, 'iam', {'Action': 'PutUserPolicy', 'UserName': 'node', 'PolicyName': 'readme',
                              'PolicyDocument': json.dumps(readme_policy()), 'Version': '2010-05-08'},
                 akey, asecret)
    xml = awssig.query(url, 'iam', {'Action': 'CreateAccessKey', 'UserName': 'node', 'Version': '2010-05-08'},
                       akey, asecret)
    node = dict(bare, AWS_ACCESS_KEY_ID=re.search(r'<AccessKeyId>([^<]+)<', xml).group(1),
                AWS_SECRET_ACCESS_KEY=re.search(r'<SecretAccessKey>([^<]+)<', xml).group(1))
    prod = 's3://acme-backups/cass/prod'
    cb('init', '--store', prod, env=node)
    dirs = sample_dirs(make_sample(str(tmp_path / 'src'), '--data-kib', '64', '--tables', '1',
                                   '--keyspaces', '1', '--no-clutter'))
    cb('create', '--store', prod, '--name', 'b1', *data_dir_args(dirs), '--snapshot', 'nightly-1', env=node)
    assert 'b1' in cb('list', '--store', prod, env=node).stdout
    cb('forget', '--store', prod, 'b1', env=node)
    # moto authorizes a DeleteObjects against the bucket's ARN; S3 authorizes s3:DeleteObject
    # on each object it deletes, as the policy grants: prune runs with the admin's keys here
    cb('prune', '--store', prod, env=admin)
    assert cb('check', '--store', prod, env=node).stdout.rstrip().endswith('no problems')

    p = cb('init', '--store', 's3://acme-backups/cass/staging', env=node, check=False)
    assert p.returncode == 1 and p.stderr.count('\n') == 1, p.stderr
    assert 'cass/staging/config: access denied (HTTP 403 to a HEAD; credentials from environment' in p.stderr, p.stderr
    assert f'endpoint {url}/acme-backups' in p.stderr, p.stderr
