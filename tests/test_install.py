"""Installing like a system tool: `meson install` puts every file where doc/install.md
says; mount(8), fstab lines, `mount -a` (noauto, nofail, x-*) and umount(8) work with the
installed helper; the man pages cover every subcommand, option and configuration key; the bash
completion offers subcommands, options and backup names; df on a mount shows no full disk.

mount(8) is tested in a private mount namespace (unshare -m): the installed helper is put at
/sbin/mount.cassbackup by an overlay over /sbin that only that namespace sees, and the fstab is
a temporary file (mount -T), so nothing on the real system changes.
"""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import BUILD, CASSBACKUP, MOUNT, REPO, cb, make_sample, mounted, run

COMPLETION = os.path.join(REPO, 'completion', 'cassbackup')
BASH_COMPLETION = '/usr/share/bash-completion/bash_completion'
MESON = shutil.which('meson') or '/usr/bin/meson'
COMMANDS = ['init', 'create', 'list', 'status', 'show', 'forget', 'prune', 'unlock', 'key', 'verify', 'restore', 'load',
            'validate-config', 'check', 'copy', 'export', 'reindex', 'backup', 'install-timer',
            'archive-commitlog']


def build_options():
    out = run(MESON, 'introspect', '--buildoptions', BUILD).stdout
    return {o['name']: o['value'] for o in json.loads(out)}


def config_h(name):
    with open(os.path.join(BUILD, 'config.h')) as f:
        return [l.split('"')[1] for l in f if f'define {name} ' in l][0]


def merged_usr():
    return os.path.realpath('/sbin') == '/usr/sbin'


def expected_helper_dir(opts):
    """doc/install.md: /sbin, or /usr/sbin with --prefix=/usr on merged /usr; or mount_helper_dir."""
    if opts['mount_helper_dir']:
        return opts['mount_helper_dir']
    return '/usr/sbin' if opts['prefix'] == '/usr' and merged_usr() else '/sbin'


def expected_completion_dir(opts):
    if opts['bash_completion_dir']:
        return opts['bash_completion_dir']
    datadir = os.path.join(opts['prefix'], opts['datadir'])
    p = run('pkg-config', '--variable=completionsdir', f'--define-variable=datadir={datadir}',
            'bash-completion', check=False)
    return p.stdout.strip() if p.returncode == 0 else os.path.join(datadir, 'bash-completion', 'completions')


def expected_unit_dir(opts):
    if opts['systemd_unit_dir']:
        return opts['systemd_unit_dir']
    p = run('pkg-config', '--variable=systemdsystemunitdir', f'--define-variable=rootprefix={opts["prefix"]}',
            'systemd', check=False)
    return p.stdout.strip() if p.returncode == 0 else os.path.join(opts['prefix'], 'lib', 'systemd', 'system')


def man_pages_expected(opts):
    return opts['man'] == 'enabled' or (opts['man'] == 'auto' and shutil.which('scdoc') is not None)


@pytest.fixture(scope='module')
def installed(tmp_path_factory, binaries):
    """`meson install --destdir` of the build under test into a temporary root."""
    dest = str(tmp_path_factory.mktemp('destdir'))
    run(MESON, 'install', '-C', BUILD, '--destdir', dest, '--no-rebuild', '--quiet')
    return dest


def files_under(root):
    res = set()
    for d, _, names in os.walk(root):
        res |= {'/' + os.path.relpath(os.path.join(d, n), root) for n in names}
    return res


# --- where meson install puts things -------------------------------------------------------

def test_install_puts_every_file_where_readme_says(installed):
    opts = build_options()
    prefix = opts['prefix']
    helper_dir = expected_helper_dir(opts)
    # mount(8) runs helpers from /sbin, /sbin/fs.d or /sbin/fs only (util-linux FS_SEARCH_PATH)
    assert os.path.realpath(helper_dir) in {os.path.realpath(d) for d in ('/sbin', '/sbin/fs.d', '/sbin/fs')}
    # and cassbackup load starts the helper from where it is installed
    assert config_h('SBINDIR') == helper_dir
    want = {
        os.path.join(prefix, opts['bindir'], 'cassbackup'),
        os.path.join(helper_dir, 'mount.cassbackup'),
        os.path.join(expected_completion_dir(opts), 'cassbackup'),
    }
    want |= {os.path.join(expected_unit_dir(opts), u)
             for u in ('cassbackup-backup.service', 'cassbackup-backup.timer',
                       'cassbackup-incremental.service', 'cassbackup-incremental.timer')}
    if man_pages_expected(opts):
        mandir = os.path.join(prefix, opts['mandir'])
        want |= {f'{mandir}/man8/cassbackup.8', f'{mandir}/man8/mount.cassbackup.8',
                 f'{mandir}/man5/cassbackup.conf.5'}
    assert files_under(installed) == want
    for exe in (os.path.join(prefix, opts['bindir'], 'cassbackup'), os.path.join(helper_dir, 'mount.cassbackup')):
        p = run(installed + exe, '--version')
        assert p.stdout.startswith(os.path.basename(exe) + ' ')


def setup_only(tmp_path, *args, path=None):
    """`meson setup` of the source tree into a new directory (no compile); the process."""
    env = dict(os.environ)
    if path is not None:
        env['PATH'] = path
    return run(MESON, 'setup', tmp_path / 'b', REPO, '-Dtests=false', *args, env=env, check=False)


def installed_paths(builddir):
    return set(json.loads(run(MESON, 'introspect', builddir, '--installed').stdout).values())


def test_prefix_usr_puts_helper_in_usr_sbin_on_merged_usr(tmp_path):
    if not merged_usr():
        pytest.skip('/sbin is not /usr/sbin here')
    p = setup_only(tmp_path, '--prefix=/usr')
    assert p.returncode == 0, p.stdout + p.stderr
    paths = installed_paths(tmp_path / 'b')
    assert '/usr/sbin/mount.cassbackup' in paths and '/usr/bin/cassbackup' in paths
    assert '/usr/share/bash-completion/completions/cassbackup' in paths
    assert '#define SBINDIR "/usr/sbin"' in (tmp_path / 'b' / 'config.h').read_text()


def test_mount_helper_dir_option(tmp_path):
    p = setup_only(tmp_path, '-Dmount_helper_dir=/sbin/fs.d')
    assert p.returncode == 0, p.stdout + p.stderr
    assert '/sbin/fs.d/mount.cassbackup' in installed_paths(tmp_path / 'b')
    assert '#define SBINDIR "/sbin/fs.d"' in (tmp_path / 'b' / 'config.h').read_text()
    p = setup_only(tmp_path / 'rel', '-Dmount_helper_dir=sbin')
    assert p.returncode != 0 and '-Dmount_helper_dir=sbin: must be an absolute directory' in p.stdout


def test_missing_scdoc_fails_only_when_man_pages_are_enabled(tmp_path):
    # a PATH with every program of /usr/bin but scdoc
    fakebin = tmp_path / 'bin'
    fakebin.mkdir()
    for n in os.listdir('/usr/bin'):
        if n != 'scdoc':
            os.symlink(os.path.join('/usr/bin', n), fakebin / n)
    p = setup_only(tmp_path / 'on', '-Dman=enabled', path=str(fakebin))
    assert p.returncode != 0
    assert '-Dman=enabled: scdoc not found (apt-get install scdoc), or give -Dman=disabled' in p.stdout
    p = setup_only(tmp_path / 'auto', path=str(fakebin))
    assert p.returncode == 0, p.stdout + p.stderr
    assert not [x for x in installed_paths(tmp_path / 'auto' / 'b') if '/man/' in x]


# --- man pages -------------------------------------------------------------------------------

def man_page(name):
    if not man_pages_expected(build_options()):
        pytest.skip('man pages not built (-Dman / scdoc)')
    path = os.path.join(BUILD, 'doc', name)
    p = run('man', '--warnings', '-E', 'UTF-8', '-l', path, env=dict(os.environ, MANWIDTH='200'))
    assert p.stderr == '', f'{name}: {p.stderr}'
    return p.stdout


def long_options(help_text):
    return set(re.findall(r'--[a-z][a-z0-9-]*', help_text))


def test_cassbackup_8_documents_every_subcommand_and_option():
    text = man_page('cassbackup.8')
    for cmd in COMMANDS + ['help']:
        assert re.search(rf'^   {re.escape(cmd)}$', text, re.M), f'no section for {cmd}'
    for cmd in COMMANDS:
        section = re.split(r'\n {0,3}\S', text.split(f'\n   {cmd}\n', 1)[1], maxsplit=1)[0]
        # options of every command are documented once, under GLOBAL OPTIONS
        missing = long_options(cb(cmd, '--help').stdout) - long_options(section) - {
            '--config', '--help', '--key-file', '--passphrase-file'}
        assert not missing, f'cassbackup.8, {cmd}: {sorted(missing)} not documented'
    assert '--config FILE' in text and 'EXIT STATUS' in text


def test_cassbackup_conf_5_documents_every_key():
    text = man_page('cassbackup.conf.5')
    src = open(os.path.join(REPO, 'tools', 'conf.c')).read()
    table = src.split('known_keys[] = {', 1)[1].split('};', 1)[0]
    keys = re.findall(r'"([a-z_]+)"', table)
    assert len(keys) >= 10
    for k in keys:
        assert re.search(rf'^       {k} = ', text, re.M), f'cassbackup.conf.5: key {k} not documented'


def test_mount_cassbackup_8_documents_every_option():
    text = man_page('mount.cassbackup.8')
    usage = run(MOUNT, '--help').stdout
    flags = [f for f in re.findall(r'^  (-[a-zA-Z])\b', usage, re.M) if f != '-o']
    for o in re.findall(r'^  -o ([a-z0-9_]+)', usage, re.M) + flags:
        assert re.search(rf'^       {re.escape(o)}\b', text, re.M), f'mount.cassbackup.8: {o} not documented'
    assert 'mount -t cassbackup' in text and 'fstab' in text and 'nofail' in text


# --- bash completion -------------------------------------------------------------------------

def complete(*words, env=None):
    """COMPREPLY of the completion for the command line `words` (the last one is being
    completed), as bash-completion runs it."""
    line = ' '.join(words)
    script = (f'source {BASH_COMPLETION}; source {COMPLETION}\n'
              'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$LINE"; COMP_POINT=${#LINE}\n'
              'COMPREPLY=(); _cassbackup; printf "%s\\n" "${COMPREPLY[@]}"\n')
    p = run('bash', '-c', script, 'bash', CASSBACKUP, *words,
            env=dict(env or os.environ, LINE=CASSBACKUP + ' ' + line))
    assert p.stderr == ''
    return [w for w in p.stdout.split('\n') if w]


@pytest.fixture(scope='module')
def named_store(tmp_path_factory, binaries):
    root = tmp_path_factory.mktemp('complete')
    data = make_sample(str(root / 'data'), '--keyspaces', '1', '--tables', '1', '--sstables', '1',
                       '--data-kib', '4', '--tag', 'snap', '--no-clutter')
    store = str(root / 'store')
    cb('init', '--store', store)
    for name in ('nightly-1', 'nightly-2', 'weekly-1'):
        cb('create', '--store', store, '--snapshot', 'snap', '--name', name, '--data-dir',
           os.path.join(data, 'data1'))
    return store


def test_completion_offers_subcommands():
    assert complete('') == COMMANDS + ['help']
    assert complete('v') == ['verify', 'validate-config']
    assert complete('--config', '/x', 'l') == ['list', 'load']
    assert complete('p') == ['prune']
    assert complete('help', 're') == ['restore', 'reindex']


def getopt_table_options(cmd):
    """The long options the command's parser accepts, read from its option table in tools/."""
    fname = 'cmd_validate.c' if cmd == 'validate-config' else f'cmd_{cmd.replace("-", "_")}.c'
    path = os.path.join(REPO, 'tools', fname)
    if cmd == 'init':
        path = os.path.join(REPO, 'tools', 'cassbackup.c')
    src = open(path).read()
    names = re.findall(r'\{"([a-z][a-z0-9-]*)", (?:no|required|optional)_argument', src)
    names += re.findall(r'\.name = "([a-z][a-z0-9-]*)", \.(?:short_name|type)', src)
    return {'--' + n for n in names} | {'--config', '--help'}


@pytest.mark.parametrize('cmd', COMMANDS)
def test_completion_offers_every_option_of_each_subcommand(cmd):
    offered = set(complete(cmd, '--'))
    # exactly what `cassbackup CMD --help` names: read at completion time, it cannot drift
    assert offered == long_options(cb(cmd, '--help').stdout) | {'--config', '--help'}
    # and --help names every option the command's parser accepts
    assert getopt_table_options(cmd) <= offered, f'{cmd} --help misses {getopt_table_options(cmd) - offered}'


def test_completion_offers_options_of_create():
    offered = complete('create', '--')
    for o in ('--store', '--data-dir', '--snapshot', '--name', '--keyspace', '--table', '--level',
              '--threads', '--frame-kib', '--take-snapshot', '--nodetool', '--json', '--config'):
        assert o in offered
    assert complete('create', '--fr') == ['--frame-kib']
    assert complete('create', '--store', '/x', '--level', '') == []  # a number: nothing to offer


def test_completion_offers_backup_names(named_store, tmp_path):
    names = ['nightly-1', 'nightly-2', 'weekly-1']
    assert complete('verify', '--store', named_store, '') == names
    assert complete('restore', '-s', named_store, 'night') == ['nightly-1', 'nightly-2']
    assert complete('load', f'--store={named_store}', 'w') == ['weekly-1']
    assert complete('verify', '--store', named_store, '--against', 'we') == ['weekly-1/']
    # no --store on the line: the configuration's store (--config FILE on the line)
    conf = tmp_path / 'cassbackup.conf'
    conf.write_text(f'store = {named_store}\n')
    assert complete('--config', str(conf), 'verify', 'n') == ['nightly-1', 'nightly-2']
    assert complete('restore', '--config', str(conf), '') == names
    # commands without a NAME operand, and create's --name NAME, offer no names
    assert complete('create', '--store', named_store, '--name', '') == []
    assert 'nightly-1' not in complete('list', '--store', named_store, '')
    # a store that is not there: nothing, and nothing printed
    assert complete('verify', '--store', str(tmp_path / 'none'), '') == []


def test_completion_offers_directories_for_dir_options(named_store):
    parent = os.path.dirname(named_store)
    assert complete('list', '--store', os.path.join(parent, 'st')) == [named_store]
    assert complete('create', '--data-dir', os.path.join(parent, 'da')) == [os.path.join(parent, 'data')]


# --- df ---------------------------------------------------------------------------------------

def test_df_on_the_mount_reports_no_space_not_a_full_disk(named_store, tmp_path):
    """It used to report the store's file system with nothing free: 100% used, a disk-full
    alarm for every monitor. Now 0 blocks: no percentage to alarm on."""
    mnt = str(tmp_path / 'mnt')
    with mounted(named_store, mnt):
        sv = os.statvfs(mnt)
        assert (sv.f_blocks, sv.f_bfree, sv.f_bavail) == (0, 0, 0)
        assert (sv.f_files, sv.f_ffree, sv.f_favail) == (0, 0, 0)
        assert sv.f_flag & os.ST_RDONLY and sv.f_namemax == 255
        out = run('df', '--output=size,used,avail,pcent', mnt).stdout.split('\n')[1].split()
        assert out == ['0', '0', '0', '-']
        assert run('df', '--output=itotal,ipcent', mnt).stdout.split('\n')[1].split() == ['0', '-']
        assert os.listdir(os.path.join(mnt, 'backups')) != []


# --- mount(8), fstab, mount -a, umount(8) -----------------------------------------------------

NAMESPACE_SCRIPT = r'''
set -u
R=$1 HELPERDIR=$2 STORE=$3 T=$4
# the installed helper at /sbin/mount.cassbackup, for this namespace only
mount -t overlay cb-sbin -o "lowerdir=$HELPERDIR:/sbin" /sbin || exit 99
trap 'umount "$T"/m1 "$T"/m2 "$T"/m3 2>/dev/null' EXIT
step() { local n=$1; shift; "$@" >"$R/$n.out" 2>&1; echo $? >"$R/$n.rc"; }
mounted() { findmnt -n -o FSTYPE,SOURCE --mountpoint "$1"; }
ours() { findmnt -rn -t fuse.cassbackup -o TARGET | grep -F "$T/"; } # other mounts are copied in too
step helper ls /sbin/mount.cassbackup
step mount_t mount -t cassbackup "$STORE" "$T/m1"
step mount_t_is mounted "$T/m1"
step mount_t_ls ls "$T/m1/backups"
step df df --output=size,used,avail,pcent "$T/m1"
step umount umount "$T/m1"
step umount_is mounted "$T/m1"
step mount_a mount -T "$T/fstab" -a
step mount_a_m1 mounted "$T/m1"
step mount_a_m2 mounted "$T/m2"
step mount_a_m3 mounted "$T/m3"
step mount_a_again mount -T "$T/fstab" -a
step mount_noauto mount -T "$T/fstab" "$T/m2"
step mount_noauto_is mounted "$T/m2"
step umount_all umount "$T/m1" "$T/m2"
step umount_all_is ours
step mount_a_failing mount -T "$T/fstab-failing" -a
step mount_a_failing_is ours
'''


def test_mount_fstab_mount_a_and_umount_with_the_installed_helper(installed, named_store, tmp_path):
    if shutil.which('unshare') is None:
        pytest.skip('unshare (util-linux) not installed')
    helper_dir = installed + config_h('SBINDIR')
    assert os.access(os.path.join(helper_dir, 'mount.cassbackup'), os.X_OK)
    t = tmp_path
    for d in ('m1', 'm2', 'm3', 'res'):
        (t / d).mkdir()
    missing = str(t / 'no-such-store')
    (t / 'fstab').write_text(
        '# cassbackup test fstab\n'
        f'{named_store}  {t}/m1  cassbackup  defaults,x-foo=1  0 0\n'
        f'{named_store}  {t}/m2  cassbackup  noauto,x-foo=1  0 0\n'
        f'{missing}  {t}/m3  cassbackup  nofail,x-foo=1  0 0\n')
    (t / 'fstab-failing').write_text(f'{missing}  {t}/m3  cassbackup  x-foo=1  0 0\n')
    p = run('unshare', '-m', '--propagation', 'private', 'bash', '-c', NAMESPACE_SCRIPT, 'ns',
            t / 'res', helper_dir, named_store, t, check=False)
    assert p.returncode == 0, p.stdout + p.stderr

    def step(n):
        return int((t / 'res' / f'{n}.rc').read_text()), (t / 'res' / f'{n}.out').read_text()

    src = os.path.realpath(named_store)
    assert step('helper')[0] == 0
    # mount -t cassbackup STORE DIR, then umount DIR
    assert step('mount_t') == (0, '')
    assert step('mount_t_is') == (0, f'fuse.cassbackup {src}\n')
    assert step('mount_t_ls') == (0, 'nightly-1\nnightly-2\nweekly-1\n')
    assert step('df')[1].split('\n')[1].split() == ['0', '0', '0', '-']
    assert step('umount') == (0, '')
    assert step('umount_is')[0] == 1
    # mount -a: the defaults line is mounted (x-foo=1 ignored), the noauto one is not, and the
    # nofail one with a missing store is reported on one line and does not fail mount -a
    rc, out = step('mount_a')
    assert rc == 0, out
    assert out == f'mount.cassbackup: cannot open store {missing}: No such file or directory, ignoring (nofail)\n'
    assert step('mount_a_m1') == (0, f'fuse.cassbackup {src}\n')
    assert step('mount_a_m2')[0] == 1 and step('mount_a_m3')[0] == 1
    # again: already mounted is no error for the mounted line
    assert step('mount_a_again')[0] == 0
    # a noauto line mounts when named
    assert step('mount_noauto') == (0, '')
    assert step('mount_noauto_is') == (0, f'fuse.cassbackup {src}\n')
    assert step('umount_all') == (0, '')
    assert step('umount_all_is') == (1, '')
    # without nofail, the missing store fails mount -a with the helper's one line
    rc, out = step('mount_a_failing')
    assert rc != 0 and f'cannot open store {missing}: No such file or directory' in out
    assert step('mount_a_failing_is') == (1, '')
    # every daemon mount(8) started has exited with its mount
    deadline = time.monotonic() + 120
    while subprocess.run(['pgrep', '-f', f'mount.cassbackup {named_store} '], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, 'a mount.cassbackup started by mount(8) is still running'
        time.sleep(0.05)
