#!/usr/bin/env bash
# The test command (README.md): installs dependencies, builds, runs gcc -fanalyzer over the
# product's code (tests/analyze.sh: fails on a finding not in the reviewed baseline), and runs
# every test twice, both at once: in a plain build, and under AddressSanitizer +
# UndefinedBehaviorSanitizer; then every fuzz target for FUZZ_SECONDS (default 10) each under
# libFuzzer, from its corpus in tests/fuzz/corpus.
# Needs root: the tests mount FUSE and tmpfs file systems for real.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh clang ansible-core openssh-server
# s3rver, the second S3 server the object-storage tests run against (moto_server is the first,
# from Python's moto where installed). Without it those tests skip, saying so (under CI=true,
# as .ci/run sets, they fail).
if [ ! -x build-node/node_modules/.bin/s3rver ] && command -v npm >/dev/null; then
	mkdir -p build-node
	(cd build-node && npm install --no-audit --no-fund --silent s3rver@3.7.1 >/dev/null 2>&1) ||
		echo "tests/run.sh: npm could not install s3rver; its tests will skip (fail under CI=true)" >&2
fi
[ -e /dev/fuse ] || { echo "tests/run.sh: /dev/fuse is missing; the mount tests need FUSE" >&2; exit 1; }

setup() { # builddir, options...
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	# quiet when it builds; its output (the warning -Werror stopped on) when it does not
	meson compile -C "$dir" >"$dir/compile.log" 2>&1 || { cat "$dir/compile.log" >&2; return 1; }
}

# -Werror: a build that warns fails here (meson compile's output is not shown).
# -Dtest_hooks=true: the CASSBACKUP_TEST_* variables that shorten a prompt's wait and the KDF.
setup build -Dtests=true -Dtest_hooks=true -Dwerror=true
setup build-sanitize -Dtests=true -Dtest_hooks=true -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true

echo "== static analysis (gcc -fanalyzer against tests/analyzer-baseline.txt)"
bash tests/analyze.sh build-analyze

# Both builds' suites run side by side: most of a test file's time is spent waiting on
# servers, mounts and subprocesses (tests/README.md has the figures). Their lines are shown
# as they come, each prefixed with its build's name. One meson test per pytest file
# (tests/meson.build); independent ones run side by side, two per core per build unless
# TEST_PROCESSES says otherwise.
jobs=${TEST_PROCESSES:-$(( $(nproc) * 2 ))}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
suite() { # name build-dir: the build's tests, their status
	echo "[$1] == the $1 build's tests"
	meson test -C "$2" --print-errorlogs --num-processes "$jobs" 2>&1 | sed -u "s/^/[$1] /"
	return "${PIPESTATUS[0]}"
}
suite plain build &
plain=$!
suite sanitize build-sanitize & # AddressSanitizer + UndefinedBehaviorSanitizer
sanitize=$!
failed=()
wait "$plain" || failed+=("the plain build's tests")
wait "$sanitize" || failed+=("the AddressSanitizer + UndefinedBehaviorSanitizer build's tests")
if [ "${#failed[@]}" -gt 0 ]; then
	printf 'tests/run.sh: failed: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "== fuzzing every parser of store bytes (libFuzzer, ${FUZZ_SECONDS:-10} s each)"
FUZZ_SECONDS=${FUZZ_SECONDS:-10} bash tests/fuzz/run.sh
