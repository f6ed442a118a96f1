#!/usr/bin/env bash
# Encrypted vs plain store: create, cold sequential reads and random 4 KiB reads through the
# mount, each measured in this run; prints the ratios encrypted / plain (goal: within 10%).
# (bench/encrypt_bench.py; --help for its options.) Not part of the test suite.
#   sudo bench/encrypt.sh                  (512 MiB snapshot, 3 runs)
#   sudo bench/encrypt.sh --mib 2048 --runs 5
# Needs root (drops the page cache, mounts FUSE). Writes under --dir (/var/tmp/cassbackup-encrypt-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
meson compile -C build-release >/dev/null
exec /usr/bin/python3 bench/encrypt_bench.py --build build-release "$@"
