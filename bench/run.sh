#!/usr/bin/env bash
# Benchmarks: builds a release build, then measures cassbackup against the tools an operator
# would otherwise use, all in this one run, and prints ratios. Not part of the test suite.
#   sudo bench/run.sh                      (2 GiB Data.db files, 10,000 backups)
#   BENCH_GIB=1 BENCH_BACKUPS=2000 sudo bench/run.sh
#   sudo env PATH="$PATH" bench/run.sh --s3 [--server moto|s3rver] [--gib 1] [--tables 100] ...
#                                          (object storage: bench/s3_bench.py, --help for options)
#   sudo bench/run.sh store [--days 30 --files 1000000 --gib 2]   store format 2's figures instead
#                                                                 (bench/store_bench.py)
# Needs root (drops the page cache for cold reads, mounts FUSE). Writes under $BENCH_DIR
# (default /var/tmp/cassbackup-bench, about 4x BENCH_GIB GiB free).
set -euo pipefail
cd "$(dirname "$0")/.."
script=bench/bench.py deps=(archivemount)
if [ "${1:-}" = --s3 ]; then
	shift
	script=bench/s3_bench.py deps=(s3fs rclone)
elif [ "${1:-}" = store ]; then
	shift
	script=bench/store_bench.py
fi
bash tools/install-deps.sh "${deps[@]}"
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
meson compile -C build-release >/dev/null
exec /usr/bin/python3 "$script" --build build-release "$@"
