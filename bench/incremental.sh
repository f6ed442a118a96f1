#!/usr/bin/env bash
# Incremental backup of 1,000 new small sstables vs a full backup of the same node
# (bench/incremental.py; --help for its options). Not part of the test suite.
#   sudo bench/incremental.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
meson compile -C build-release >/dev/null
exec /usr/bin/python3 bench/incremental.py --build build-release "$@"
