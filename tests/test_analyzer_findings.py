"""tests/analyzer_findings.py, the step that holds gcc -fanalyzer's findings against the reviewed
baseline (tests/analyze.sh): how a finding is named, and that only a new one fails the step."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, 'analyzer_findings.py')

# gcc 12's output, cut down: a finding in a function of a .c file, a second of the same kind
# there, and one in an inline function of a header, inlined into a function of that header
LOG = """\
[1/3] Compiling C object catalog/libcbcatalog.a.p/seekable.c.o
../catalog/seekable.c: In function \u2018seekable_read\u2019:
../catalog/seekable.c:617:9: warning: double-\u2018free\u2019 of \u2018frame\u2019 [CWE-415] [-Wanalyzer-double-free]
  617 |         free(frame);
../catalog/seekable.c:640:9: warning: double-\u2018free\u2019 of \u2018scratch\u2019 [CWE-415] [-Wanalyzer-double-free]
[2/3] Compiling C object catalog/libcbcatalog.a.p/packread.c.o
In file included from ../catalog/manifest.h:26,
                 from ../catalog/packfmt.h:14,
                 from ../catalog/packread.c:4:
In function \u2018get_le32\u2019,
    inlined from \u2018get_le64\u2019 at ../catalog/util.h:99:19:
../catalog/util.h:90:27: warning: dereference of NULL \u2018p\u2019 [CWE-476] [-Wanalyzer-null-dereference]
[3/3] Compiling C object tools/cassbackup.p/scan.c.o
../tools/scan.c: In function \u2018same_contents\u2019:
../tools/scan.c:189:21: warning: use of NULL \u2018x\u2019 where non-null expected [CWE-476] [-Wanalyzer-null-argument]
../tools/scan.c:190:1: warning: unused variable \u2018y\u2019 [-Wunused-variable]
"""

FINDINGS = ['catalog/seekable.c seekable_read -Wanalyzer-double-free',
            'catalog/seekable.c seekable_read -Wanalyzer-double-free',
            'catalog/packread.c get_le64 -Wanalyzer-null-dereference',
            'tools/scan.c same_contents -Wanalyzer-null-argument']


def run(tmp_path, baseline=None):
    log = tmp_path / 'analyzer.log'
    log.write_text(LOG, encoding='utf-8')
    args = [sys.executable, SCRIPT, str(log)]
    if baseline is not None:
        (tmp_path / 'baseline.txt').write_text(baseline)
        args.append(str(tmp_path / 'baseline.txt'))
    return subprocess.run(args, capture_output=True, text=True)


def reviewed(lines):
    return '# reviewed with gcc 12\n\n' + ''.join(f'{x}  # a reason\n' for x in lines)


def test_findings_are_named_by_file_function_and_kind(tmp_path):
    p = run(tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == FINDINGS  # other warnings are not the analyzer's


def test_a_complete_baseline_passes(tmp_path):
    p = run(tmp_path, reviewed(FINDINGS))
    assert p.returncode == 0, p.stdout + p.stderr
    assert 'analyzer: 4 findings, 4 in the reviewed baseline, 0 new' in p.stdout


def test_a_new_finding_fails_with_gcc_line(tmp_path):
    p = run(tmp_path, reviewed(FINDINGS[1:]))  # one of the two double frees is not reviewed
    assert p.returncode == 1
    assert p.stdout.splitlines()[:2] == [
        'new analyzer finding: catalog/seekable.c seekable_read -Wanalyzer-double-free',
        "    ../catalog/seekable.c:640:9: warning: double-\u2018free\u2019 of \u2018scratch\u2019 [CWE-415] "
        '[-Wanalyzer-double-free]']


def test_a_finding_gone_is_reported_not_failed(tmp_path):
    p = run(tmp_path, reviewed(FINDINGS + ['catalog/x.c gone -Wanalyzer-malloc-leak']))
    assert p.returncode == 0
    assert 'catalog/x.c gone -Wanalyzer-malloc-leak is in the baseline 1 time(s) but found 0' in p.stdout


def test_a_baseline_line_without_reason_is_refused(tmp_path):
    p = run(tmp_path, reviewed(FINDINGS[1:]) + FINDINGS[0] + '\n')
    assert p.returncode == 1
    assert 'baseline.txt:6: expected "FILE FUNCTION -Wanalyzer-KIND  # reason"' in p.stderr
