#!/usr/bin/env bash
# Grows the fuzz corpus in tests/fuzz/corpus: runs each target for GROW_SECONDS (default 90)
# from its corpus, then merges what it found back (libFuzzer -merge=1: only inputs that add
# coverage, named by their SHA-1). tests/run.sh starts its short CI runs from this corpus, and
# every build replays it as a test, so run this after changing a parser, and commit the result.
#   tests/fuzz/grow.sh              # every target
#   GROW_SECONDS=600 tests/fuzz/grow.sh manifest catalog
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/install-deps.sh clang
secs=${GROW_SECONDS:-90}
dir=build-fuzz
if [ ! -f "$dir/build.ninja" ]; then
	CC=clang meson setup "$dir" -Dtests=false -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
fi
meson compile -C "$dir" fuzzers >/dev/null
mkdir -p "$dir/crashes"
targets=("$@")
if [ "${#targets[@]}" = 0 ]; then
	for bin in "$dir"/tests/fuzz/fuzz_*; do
		[ -f "$bin" ] && [ -x "$bin" ] && targets+=("${bin##*/fuzz_}")
	done
fi
for t in "${targets[@]}"; do
	bin=$dir/tests/fuzz/fuzz_$t corpus=tests/fuzz/corpus/$t
	[ -x "$bin" ] || { echo "tests/fuzz/grow.sh: no fuzz target $t" >&2; exit 2; }
	found=$(mktemp -d) merged=$(mktemp -d)
	before=$(ls "$corpus" | wc -l)
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$dir/crashes/$t-" "$found" "$corpus" >/dev/null 2>&1 ||
		{ echo "tests/fuzz/grow.sh: $t crashed: its input is in $dir/crashes/" >&2; exit 1; }
	"$bin" -merge=1 "$merged" "$corpus" "$found" >/dev/null 2>&1
	# what the merge kept that the corpus does not hold yet (the seeds keep their names)
	for f in "$merged"/*; do
		[ -e "$f" ] || continue
		cmp -s "$f" "$corpus/${f##*/}" 2>/dev/null && continue
		held=0
		for g in "$corpus"/*; do
			cmp -s "$f" "$g" && { held=1; break; }
		done
		[ "$held" = 1 ] || cp "$f" "$corpus/"
	done
	rm -rf "$found" "$merged"
	echo "$t: $before inputs, now $(ls "$corpus" | wc -l)"
done
