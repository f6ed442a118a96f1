#!/usr/bin/env python3
"""Reads the output of a build with gcc -fanalyzer and compares its findings with the reviewed
baseline (tests/analyzer-baseline.txt). tests/analyze.sh runs it; see tests/README.md.

    analyzer_findings.py BUILD_LOG BASELINE          exit 1 on a finding the baseline lacks
    analyzer_findings.py BUILD_LOG                   print the findings, normalized

A finding is normalized to one line, `FILE FUNCTION -Wanalyzer-KIND`: the source file (relative
to the repository) and the function the warning is in, where a warning inside an inline function
of a header counts against the .c file that included the header, under the outermost function
of the inline chain gcc names. No line numbers, so an edit elsewhere in a file does not make its findings new.
The same line may occur several times (several findings of a kind in one function): the
baseline must hold it as many times, so a further finding of that kind there is new.

Baseline lines are normalized findings, each followed by `# reason` (why it is not a bug);
blank lines and lines starting with # are comments."""
import collections
import re
import sys

IN_FUNCTION = re.compile(r'^(\S+?): In function [‘\'](\S+?)[’\']:$')
INCLUDED_FROM = re.compile(r'^(?:In file included from|\s+from) (\S+?):\d+[:,]$')
INLINE_START = re.compile(r'^In function [‘\'](\S+?)[’\'],$')
INLINED_FROM = re.compile(r'^\s+inlined from [‘\'](\S+?)[’\'] at (\S+?):\d+:\d+[,:]$')
WARNING = re.compile(r'^(\S+?):\d+:\d+: warning: (.*) \[(-Wanalyzer-[a-z0-9-]+)\]$')


def source(path):
    """The repository-relative path of a file named in the build's output (../catalog/x.c)."""
    while path.startswith('../'):
        path = path[3:]
    return path


def findings(log_lines):
    """[(normalized line, the warning as gcc printed it)] in the order of the log."""
    res = []
    context = None  # (file, function) the next warning belongs to
    inlined = False
    unit = None  # the .c file whose header the next inline function is in
    for line in log_lines:
        line = line.rstrip('\n')
        m = INCLUDED_FROM.match(line)
        if m:
            if m.group(1).endswith('.c'):
                unit = source(m.group(1))
            continue
        m = IN_FUNCTION.match(line)
        if m:
            context, inlined = (source(m.group(1)), m.group(2)), False
            continue
        m = INLINE_START.match(line)
        if m:
            context, inlined = (unit, m.group(1)), True
            continue
        m = INLINED_FROM.match(line)
        if m and inlined:
            context = (source(m.group(2)) if m.group(2).endswith('.c') else unit, m.group(1))
            continue
        m = WARNING.match(line)
        if m:
            file, func = context if context and context[0] else (source(m.group(1)), '?')
            res.append((f'{file} {func} {m.group(3)}', line))
    return res


def baseline(path):
    entries = collections.Counter()
    with open(path) as f:
        for n, line in enumerate(f, 1):
            text = line.split('#', 1)[0].strip()
            if not text:
                continue
            if len(text.split()) != 3 or '#' not in line:
                sys.exit(f'{path}:{n}: expected "FILE FUNCTION -Wanalyzer-KIND  # reason"')
            entries[' '.join(text.split())] += 1
    return entries


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit('usage: analyzer_findings.py BUILD_LOG [BASELINE]')
    with open(argv[1], errors='replace') as f:
        found = findings(f)
    if len(argv) == 2:
        for norm, _ in found:
            print(norm)
        return 0
    known = baseline(argv[2])
    seen = collections.Counter()
    new = []
    for norm, raw in found:
        seen[norm] += 1
        if seen[norm] > known[norm]:
            new.append((norm, raw))
    for norm, raw in new:
        print(f'new analyzer finding: {norm}\n    {raw}')
    for norm in sorted(known):
        if seen[norm] < known[norm]:
            print(f'analyzer: {norm} is in the baseline {known[norm]} time(s) but found {seen[norm]}: '
                  'remove what is gone from tests/analyzer-baseline.txt, ignoring')
    print(f'analyzer: {len(found)} findings, {len(found) - len(new)} in the reviewed baseline, {len(new)} new')
    return 1 if new else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
