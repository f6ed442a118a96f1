"""systemd: the units meson installs (cassbackup-backup.service and .timer), checked with
systemd-analyze verify as installed (in a private mount namespace where the DESTDIR's prefix
is laid over the real one, so their ExecStart= and man pages are where the units say), and
the drop-ins 'cassbackup install-timer' writes from the configuration."""
import json
import os
import shutil

import pytest

from conftest import BUILD, CASSBACKUP, REPO, cb, run

MESON = shutil.which('meson') or '/usr/bin/meson'
ANALYZE = shutil.which('systemd-analyze')
UNITS = ('cassbackup-backup.service', 'cassbackup-backup.timer', 'cassbackup-incremental.service',
         'cassbackup-incremental.timer')



@pytest.fixture(autouse=True)
def systemd_analyze():
    assert ANALYZE, 'systemd-analyze not installed (Debian systemd; tools/install-deps.sh installs it)'


def build_options():
    out = run(MESON, 'introspect', '--buildoptions', BUILD).stdout
    return {o['name']: o['value'] for o in json.loads(out)}


@pytest.fixture(scope='module')
def installed(tmp_path_factory, binaries):
    """`meson install --destdir` of the build under test; (destdir, {unit name: installed path})."""
    dest = str(tmp_path_factory.mktemp('destdir'))
    run(MESON, 'install', '-C', BUILD, '--destdir', dest, '--no-rebuild', '--quiet')
    paths = json.loads(run(MESON, 'introspect', BUILD, '--installed').stdout).values()
    units = {os.path.basename(p): p for p in paths if os.path.basename(p) in UNITS}
    assert sorted(units) == sorted(UNITS)
    return dest, units


def unit_values(text, key):
    return [l.split('=', 1)[1] for l in text.splitlines() if l.startswith(key + '=')]


def test_units_are_installed_for_this_prefix(installed):
    dest, units = installed
    opts = build_options()
    service = open(dest + units['cassbackup-backup.service']).read()
    timer = open(dest + units['cassbackup-backup.timer']).read()
    assert unit_values(service, 'ExecStart') == [os.path.join(opts['prefix'], opts['bindir'], 'cassbackup') + ' backup']
    assert unit_values(service, 'Type') == ['oneshot']
    assert unit_values(timer, 'OnCalendar') == ['*-*-* 01:00:00 UTC']
    assert unit_values(timer, 'RandomizedDelaySec') == ['30min']
    assert unit_values(timer, 'Persistent') == ['true']
    bindir = os.path.join(opts['prefix'], opts['bindir'])
    inc_service = open(dest + units['cassbackup-incremental.service']).read()
    inc_timer = open(dest + units['cassbackup-incremental.timer']).read()
    assert unit_values(inc_service, 'ExecStart') == [os.path.join(bindir, 'cassbackup') + ' backup --incremental']
    assert unit_values(inc_service, 'Type') == ['oneshot']
    assert unit_values(inc_timer, 'OnCalendar') == ['*-*-* *:15:00 UTC']
    assert unit_values(inc_timer, 'RandomizedDelaySec') == ['10min']
    assert unit_values(inc_timer, 'Persistent') == ['true']
    if opts['systemd_unit_dir']:
        assert os.path.dirname(units['cassbackup-backup.timer']) == opts['systemd_unit_dir']


def write_conf(tmp_path, **keys):
    path = tmp_path / 'cassbackup.conf'
    path.write_text(''.join(f'{k} = {v}\n' for k, v in keys.items()))
    return str(path)


VERIFY = r'''
set -u
dest=$1 prefix=$2 unitdir=$3 dropins=$4 bad=$5 res=$6
mount -t overlay overlay -o "lowerdir=$dest$prefix:$prefix" "$prefix" || exit 1
man=--man=no
[ -d "$prefix/share/man/man8" ] && [ -e "$prefix/share/man/man8/cassbackup.8" ] && man=--man=yes
export MANPATH=$prefix/share/man:
units="$unitdir/cassbackup-backup.service $unitdir/cassbackup-backup.timer"
units="$units $unitdir/cassbackup-incremental.service $unitdir/cassbackup-incremental.timer"
SYSTEMD_UNIT_PATH=$unitdir: systemd-analyze verify $man $units >"$res/plain.out" 2>&1; echo $? >"$res/plain.rc"
SYSTEMD_UNIT_PATH=$dropins:$unitdir: systemd-analyze verify $man $units >"$res/dropins.out" 2>&1
echo $? >"$res/dropins.rc"
SYSTEMD_UNIT_PATH=$bad:$unitdir: systemd-analyze verify $man $units >"$res/bad.out" 2>&1; echo $? >"$res/bad.rc"
'''


def test_systemd_analyze_verify_installed_units_and_drop_ins(installed, tmp_path):
    if shutil.which('unshare') is None:
        pytest.skip('unshare (util-linux) not installed')
    dest, units = installed
    prefix = build_options()['prefix']
    unitdir = os.path.dirname(units['cassbackup-backup.service'])
    dropins, bad, res = tmp_path / 'dropins', tmp_path / 'bad', tmp_path / 'res'
    for d in (dropins, bad, res):
        d.mkdir()
    conf = write_conf(tmp_path, schedule='Mon..Fri *-*-* 02:15:00 UTC', randomized_delay='45min',
                      on_failure='cassbackup-backup.timer', incremental_schedule='*-*-* 03..23:30:00 UTC')
    cb('--config', conf, 'install-timer', '--unit-dir', dropins)
    assert sorted(os.listdir(dropins)) == [u + '.d' for u in sorted(UNITS)]
    # the same with a schedule systemd would not take, put there behind install-timer's back:
    # verify must see the drop-in for this test to mean anything
    shutil.copytree(dropins, bad, dirs_exist_ok=True)
    f = bad / 'cassbackup-backup.timer.d' / 'cassbackup.conf'
    f.write_text(f.read_text().replace('Mon..Fri *-*-* 02:15:00 UTC', 'every weekday'))
    f = bad / 'cassbackup-incremental.timer.d' / 'cassbackup.conf'
    f.write_text(f.read_text().replace('*-*-* 03..23:30:00 UTC', 'each hour'))
    p = run('unshare', '-m', '--propagation', 'private', 'bash', '-c', VERIFY, 'verify', dest, prefix,
            unitdir, dropins, bad, res, check=False)
    assert p.returncode == 0, p.stdout + p.stderr

    def step(n):
        return int((res / f'{n}.rc').read_text()), (res / f'{n}.out').read_text()
    assert step('plain') == (0, '')
    assert step('dropins') == (0, '')
    rc, out = step('bad')
    assert rc != 0 and 'Failed to parse calendar specification' in out and 'every weekday' in out
    assert 'each hour' in out


def test_install_timer_takes_the_schedule_from_the_configuration(tmp_path):
    conf = write_conf(tmp_path, schedule='Mon..Fri *-*-* 02:15:00 UTC', randomized_delay='45min',
                      on_failure='status-email@%n.service')
    p = cb('--config', conf, 'install-timer', '--unit-dir', tmp_path)
    timer = (tmp_path / 'cassbackup-backup.timer.d' / 'cassbackup.conf').read_text()
    service = (tmp_path / 'cassbackup-backup.service.d' / 'cassbackup.conf').read_text()
    assert p.stdout.splitlines()[:2] == [f'wrote {tmp_path}/cassbackup-backup.timer.d/cassbackup.conf',
                                         f'wrote {tmp_path}/cassbackup-backup.service.d/cassbackup.conf']
    # an empty OnCalendar= first drops the shipped schedule: only the configuration's is left
    assert unit_values(timer, 'OnCalendar') == ['', 'Mon..Fri *-*-* 02:15:00 UTC']
    assert unit_values(timer, 'RandomizedDelaySec') == ['45min']
    assert unit_values(service, 'ExecStart') == ['', f'"{os.path.realpath(CASSBACKUP)}" --config "{conf}" backup']
    assert unit_values(service, 'OnFailure') == ['status-email@%n.service']
    # systemd's own reading of the schedule: the next run is a weekday at 02:15 UTC
    cal = run(ANALYZE, 'calendar', unit_values(timer, 'OnCalendar')[1], env=dict(os.environ, TZ='UTC')).stdout
    assert 'Normalized form: Mon..Fri *-*-* 02:15:00 UTC' in cal
    # run again with another schedule: the drop-in is replaced, nothing else left behind
    conf = write_conf(tmp_path, schedule='daily')
    cb('--config', conf, 'install-timer', '--unit-dir', tmp_path)
    timer = (tmp_path / 'cassbackup-backup.timer.d' / 'cassbackup.conf').read_text()
    assert unit_values(timer, 'OnCalendar') == ['', 'daily']
    assert unit_values(timer, 'RandomizedDelaySec') == ['30min']
    assert os.listdir(tmp_path / 'cassbackup-backup.timer.d') == ['cassbackup.conf']
    assert unit_values((tmp_path / 'cassbackup-backup.service.d' / 'cassbackup.conf').read_text(), 'OnFailure') == []


def exec_argv(line):
    """The words systemd makes of an ExecStart= value: quotes, backslash escapes, then %% and $$."""
    import shlex
    return [w.replace('%%', '%').replace('$$', '$') for w in shlex.split(line)]


def test_install_timer_quotes_paths_systemd_would_split_or_expand(tmp_path):
    """The configuration's path went into ExecStart= as it was: a blank split it into two
    words, a '%' was read as a specifier, and systemd refused the unit ("Service has no
    ExecStart= setting") after install-timer said to enable it, exit 0."""
    d = tmp_path / 'my conf%z $HOME'
    d.mkdir()
    conf = write_conf(d, schedule='daily')
    units = tmp_path / 'units'
    units.mkdir()
    cb('--config', conf, 'install-timer', '--unit-dir', units)
    service = (units / 'cassbackup-backup.service.d' / 'cassbackup.conf').read_text()
    [_, line] = unit_values(service, 'ExecStart')
    assert exec_argv(line) == [os.path.realpath(CASSBACKUP), '--config', conf, 'backup']
    # systemd's own reading: the shipped unit with this drop-in verifies clean
    src = os.path.join(REPO, 'systemd', 'cassbackup-backup.service.in')
    with open(src) as f:
        unit = f.read().replace('@BINDIR@', os.path.dirname(os.path.realpath(CASSBACKUP)))
    (units / 'cassbackup-backup.service').write_text(unit)
    p = run(ANALYZE, 'verify', '--man=no', str(units / 'cassbackup-backup.service'), check=False,
            env=dict(os.environ, SYSTEMD_UNIT_PATH=f'{units}:'))
    assert p.returncode == 0 and 'specifier' not in p.stderr and 'ExecStart' not in p.stderr, p.stderr
    # a path no unit line can hold is refused, nothing written
    d2 = tmp_path / 'a\nb'
    d2.mkdir()
    conf2 = write_conf(d2, schedule='daily')
    units2 = tmp_path / 'units2'
    units2.mkdir()
    p = cb('--config', conf2, 'install-timer', '--unit-dir', units2, check=False)
    assert p.returncode == 2 and 'a control character' in p.stderr and os.listdir(units2) == []


def test_install_timer_writes_the_incremental_units_only_with_incremental_schedule(tmp_path):
    units = tmp_path / 'units'
    units.mkdir()
    conf = write_conf(tmp_path, schedule='daily')
    p = cb('--config', conf, 'install-timer', '--unit-dir', units)
    assert sorted(os.listdir(units)) == ['cassbackup-backup.service.d', 'cassbackup-backup.timer.d']
    assert 'incremental_schedule is not set: nothing written for cassbackup-incremental.timer' in p.stdout
    assert p.stdout.splitlines()[-1] == \
        'now run: systemctl daemon-reload && systemctl enable --now cassbackup-backup.timer'
    conf = write_conf(tmp_path, schedule='daily', incremental_schedule='hourly', randomized_delay='45min',
                      on_failure='status-email@%n.service')
    p = cb('--config', conf, 'install-timer', '--unit-dir', units)
    timer = (units / 'cassbackup-incremental.timer.d' / 'cassbackup.conf').read_text()
    service = (units / 'cassbackup-incremental.service.d' / 'cassbackup.conf').read_text()
    assert unit_values(timer, 'OnCalendar') == ['', 'hourly']
    assert unit_values(timer, 'RandomizedDelaySec') == []  # the unit's: well within the hour
    assert unit_values(service, 'ExecStart') == \
        ['', f'"{os.path.realpath(CASSBACKUP)}" --config "{conf}" backup --incremental']
    assert unit_values(service, 'OnFailure') == ['status-email@%n.service']
    assert 'not set' not in p.stdout
    assert p.stdout.splitlines()[-1] == ('now run: systemctl daemon-reload && systemctl enable --now '
                                         'cassbackup-backup.timer cassbackup-incremental.timer')


@pytest.mark.parametrize('key, value, said', [
    ('schedule', 'every weekday', 'schedule = every weekday: systemd-analyze calendar refuses it: '
     'Failed to parse calendar specification \'every weekday\': Invalid argument'),
    ('randomized_delay', 'soon', 'randomized_delay = soon: systemd-analyze timespan refuses it: '
     'Failed to parse time span \'soon\': Invalid argument'),
    ('incremental_schedule', 'each hour', 'incremental_schedule = each hour: systemd-analyze calendar '
     'refuses it: Failed to parse calendar specification \'each hour\': Invalid argument'),
    ('on_failure', 'a.service;b', 'on_failure = a.service;b: expected unit names (letters, digits, '
     ': - _ . \\ @ %)'),
])
def test_install_timer_refuses_what_systemd_would_not_take(tmp_path, key, value, said):
    conf = write_conf(tmp_path, **{key: value})
    units = tmp_path / 'units'
    units.mkdir()
    p = cb('--config', conf, 'install-timer', '--unit-dir', units, check=False)
    assert p.returncode == 2
    assert p.stderr == f'cassbackup: {said}\n'
    assert os.listdir(units) == []


def test_install_timer_needs_a_unit_directory(tmp_path):
    p = cb('install-timer', '--unit-dir', tmp_path / 'none', check=False)
    assert p.returncode == 2
    assert p.stderr == f'cassbackup: --unit-dir {tmp_path}/none: No such file or directory\n'
