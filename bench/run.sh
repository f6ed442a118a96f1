#!/usr/bin/env bash
# Benchmarks: builds a release build, then measures cassbackup against the tools an operator
# would otherwise use, all in this one run, and prints ratios. Not part of the test suite.
#   sudo bench/run.sh                      (2 GiB Data.db files, 10,000 backups)
#   BENCH_GIB=1 BENCH_BACKUPS=2000 sudo bench/run.sh
#   sudo bench/run.sh store [--days 30 --files 1000000 --gib 2]   store format 2's figures instead
#                                                                 (bench/store_bench.py)
# Needs root (drops the page cache for cold reads, mounts FUSE). Writes under $BENCH_DIR
# (default /var/tmp/cassbackup-bench, about 4x BENCH_GIB GiB free).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh archivemount
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
meson compile -C build-release >/dev/null
if [ "${1:-}" = store ]; then
	shift
	exec /usr/bin/python3 bench/store_bench.py --build build-release "$@"
fi
exec /usr/bin/python3 bench/bench.py --build build-release "$@"
