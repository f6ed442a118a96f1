#!/usr/bin/env bash
# Static analysis: builds catalog/, fs/ and tools/ with gcc -fanalyzer in its own build
# directory (build-analyze, or $1) and fails on a finding that tests/analyzer-baseline.txt, the
# reviewed list of false positives, does not hold. tests/run.sh runs it after the builds;
# tests/README.md says how to read a finding and how to update the baseline.
#   tests/analyze.sh                 # every finding normalized, the new ones with gcc's line
#   ANALYZE_LOG=FILE tests/analyze.sh   # keep gcc's full output (the paths it took) in FILE
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-analyze}
log=${ANALYZE_LOG:-$dir/analyzer.log}
cc=${CC:-gcc}
if ! "$cc" --version 2>/dev/null | head -1 | grep -q 'gcc\|GCC'; then
	echo "tests/analyze.sh: CC=$cc is not gcc; -fanalyzer is gcc's" >&2
	exit 1
fi
# the baseline holds what one gcc reports; another gcc reports other things, to be reviewed anew
major=$("$cc" -dumpversion | cut -d. -f1)
reviewed=$(sed -n 's/^# reviewed with gcc \([0-9]*\).*/\1/p' tests/analyzer-baseline.txt | head -1)
if [ "$major" != "$reviewed" ]; then
	echo "tests/analyze.sh: tests/analyzer-baseline.txt was reviewed with gcc ${reviewed:-?}, this is gcc $major:" \
		"review its findings and write a baseline for it (tests/README.md)" >&2
	exit 1
fi
# tests=false: the analyzer looks at the product's code, not at the tests'
if [ -f "$dir/build.ninja" ]; then
	meson setup --reconfigure "$dir" >/dev/null
else
	CC=$cc meson setup "$dir" -Dtests=false -Dc_args=-fanalyzer >/dev/null
fi
# a warning is printed only when its file is compiled: compile everything, every time
meson compile -C "$dir" --clean >/dev/null
start=$(date +%s)
mkdir -p "$(dirname "$log")"
if ! meson compile -C "$dir" >"$log" 2>&1; then
	tail -50 "$log" >&2
	echo "tests/analyze.sh: the -fanalyzer build failed (full output in $log)" >&2
	exit 1
fi
echo "analyzer: built in $(($(date +%s) - start)) s (full output in $log)"
exec python3 tests/analyzer_findings.py "$log" tests/analyzer-baseline.txt
