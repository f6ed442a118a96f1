#!/usr/bin/env bash
# The test command (README.md): installs dependencies, builds, and runs every test twice:
# once in a plain build, once under AddressSanitizer + UndefinedBehaviorSanitizer.
# Needs root: the tests mount FUSE and tmpfs file systems for real.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
[ -e /dev/fuse ] || { echo "tests/run.sh: /dev/fuse is missing; the mount tests need FUSE" >&2; exit 1; }

setup() { # builddir, options...
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	meson compile -C "$dir" >/dev/null
}

setup build -Dtests=true
setup build-sanitize -Dtests=true -Db_sanitize=address,undefined -Db_lundef=false

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== plain build"
meson test -C build --print-errorlogs -v
echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
meson test -C build-sanitize --print-errorlogs -v
