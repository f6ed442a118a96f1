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
meson compile -C "$dir" >/dev/null
mkdir -p "$dir/crashes"
for bin in "$dir"/tests/fuzz/fuzz_*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	t=${bin##*/fuzz_}
	scratch=$(mktemp -d)
	cp tests/fuzz/corpus/"$t"/* "$scratch"/
	echo "== fuzz $t for ${secs}s"
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$dir/crashes/$t-" "$scratch" 2>&1 | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)' || true
	rm -rf "$scratch"
	if compgen -G "$dir/crashes/$t-*" >/dev/null; then
		echo "fuzz $t: crash inputs in $dir/crashes/" >&2
		exit 1
	fi
done
echo "fuzz: no crashes"
