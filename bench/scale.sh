#!/usr/bin/env bash
# Scale benchmark: cassbackup on a node the size of a real Cassandra node (32 GiB by default),
# against tar + zstd, one plain S3 PUT and the plain file, all measured in this one run
# (bench/scale_bench.py; --help for its options). Not part of the test suite.
#   sudo bench/scale.sh                          (32 GiB node: tens of minutes, ~70 GiB free)
#   sudo bench/scale.sh --gib 1                  (a few minutes)
#   sudo bench/scale.sh --build OLD-BUILD --no-s3 --json before.json     (an older build)
# Needs root (drops the page cache, mounts FUSE). Writes under --dir (/var/tmp/cassbackup-scale).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh curl
# s3rver, as tests/run.sh installs it
if [ ! -x build-node/node_modules/.bin/s3rver ] && command -v npm >/dev/null; then
	mkdir -p build-node
	(cd build-node && npm install --no-audit --no-fund --silent s3rver@3.7.1 >/dev/null 2>&1) ||
		echo "bench/scale.sh: npm could not install s3rver; run with --no-s3" >&2
fi
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
meson compile -C build-release >/dev/null
exec /usr/bin/python3 bench/scale_bench.py --build build-release "$@"
