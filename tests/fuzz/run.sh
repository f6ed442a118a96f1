#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for FUZZ_SECONDS
# (default 60) from the corpus in tests/fuzz/corpus. New inputs go to a scratch directory, not
# into the repository; a crash leaves its input in build-fuzz/crashes/ and fails the script.
#   FUZZ_SECONDS=3600 tests/fuzz/run.sh      # a long run by hand
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/install-deps.sh clang
secs=${FUZZ_SECONDS:-60}
dir=build-fuzz
if [ -f "$dir/build.ninja" ]; then
	meson setup --reconfigure "$dir" >/dev/null
else
	CC=clang meson setup "$dir" -Dtests=false -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
fi
meson compile -C "$dir" fuzzers >/dev/null
mkdir -p "$dir/crashes"

# One target: its corpus copied to a scratch directory, run for $secs, its summary lines to
# $dir/fuzz-$t.log.
fuzz_one() { # binary target
	local bin=$1 t=$2 scratch
	scratch=$(mktemp -d)
	cp tests/fuzz/corpus/"$t"/* "$scratch"/
	{
		echo "== fuzz $t for ${secs}s"
		"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix="$dir/crashes/$t-" "$scratch" 2>&1 |
			grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)' || true
	} >"$dir/fuzz-$t.log"
	rm -rf "$scratch"
}

# The targets run side by side, one per core (FUZZ_JOBS): each still gets $secs of a core.
jobs=${FUZZ_JOBS:-$(nproc)}
targets=()
for bin in "$dir"/tests/fuzz/fuzz_*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	t=${bin##*/fuzz_}
	targets+=("$t")
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
		wait -n || true
	done
	fuzz_one "$bin" "$t" &
done
wait
failed=0
for t in "${targets[@]}"; do
	cat "$dir/fuzz-$t.log"
	if compgen -G "$dir/crashes/$t-*" >/dev/null; then
		echo "fuzz $t: crash inputs in $dir/crashes/" >&2
		failed=1
	fi
done
[ "$failed" = 0 ] || exit 1
echo "fuzz: no crashes"
