#!/usr/bin/env bash
# Archive of a 32 MiB commitlog segment into a local and an S3 store vs cp and aws s3 cp
# (bench/commitlog.py; --help for its options). Not part of the test suite.
#   sudo env PATH="$PATH" bench/commitlog.sh      (PATH: moto_server and aws, where pip put them)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
meson compile -C build-release >/dev/null
exec /usr/bin/python3 bench/commitlog.py --build build-release "$@"
