#!/usr/bin/env python3
"""Checks that tests/meson.build registers every pytest file: a test_*.py that is not listed
there would never run under meson test, and nothing else would say so.

    registered.py TESTS_DIR NAME...     (the NAMEs meson.build registers, e.g. test_prune.py)

Exits 0 when the test_*.py files in TESTS_DIR are exactly the NAMEs, else prints one line per
file that differs and exits 1."""
import os
import sys


def main(argv):
    if len(argv) < 2:
        sys.exit('usage: registered.py TESTS_DIR NAME...')
    tests_dir, names = argv[1], set(argv[2:])
    present = {n for n in os.listdir(tests_dir) if n.startswith('test_') and n.endswith('.py')}
    problems = [f'{n}: not registered in tests/meson.build (pytest_files), so meson test never runs it'
                for n in sorted(present - names)]
    problems += [f'{n}: registered in tests/meson.build but not in {tests_dir}'
                 for n in sorted(names - present)]
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f'{len(present)} pytest files, all registered')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
