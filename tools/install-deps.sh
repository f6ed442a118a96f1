#!/usr/bin/env bash
# Installs, from Debian's archive, what cassbackup needs to build, run and test. Idempotent:
# packages already installed are not touched, and apt-get runs only when something is missing.
# systemd (systemd-analyze) and prometheus (promtool) are for the tests of the units, the metrics
# file and the alert rules; strace for a test of the order of init's fsyncs. Extra packages may
# be named as arguments (bench/run.sh adds archivemount; bench/run.sh --s3 adds s3fs and rclone).
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc libc6-dev libfuse3-dev fuse3 libarchive-dev libzstd-dev
      libsqlite3-dev libssl-dev zlib1g-dev libjansson-dev libcurl4-openssl-dev python3 python3-pytest rsync zstd tar attr util-linux
      scdoc bash-completion man-db systemd prometheus strace "$@")
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "installing: ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
