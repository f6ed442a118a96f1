#!/usr/bin/env bash
# The main job on sample data (README.md): installs dependencies, builds, makes a sample
# Cassandra data directory with a snapshot, backs it up, mounts the store and lists it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null

D=${CASSBACKUP_DEMO:-/tmp/cassbackup-demo}
fusermount3 -u "$D/mnt" 2>/dev/null || true
rm -rf "$D"
mkdir -p "$D/mnt" "$D/restore"
/usr/bin/python3 tools/sample_data.py --out "$D/cassandra" --data-kib 4096
# the node's configuration directory, kept with every backup (a real node: /etc/cassandra)
mkdir -p "$D/cassandra/conf"
printf 'cluster_name: demo\ndata_file_directories:\n    - %s\n    - %s\n' \
	"$D/cassandra/data1" "$D/cassandra/data2" >"$D/cassandra/conf/cassandra.yaml"
printf 'dc=dc1\nrack=rack1\n' >"$D/cassandra/conf/cassandra-rackdc.properties"
set -x
build/tools/cassbackup init --store "$D/store"
# --no-schema: no cqlsh reaches a Cassandra here (a real node keeps its DESCRIBE SCHEMA)
build/tools/cassbackup create --store "$D/store" --name nightly-1 --snapshot nightly-1 \
	--data-dir "$D/cassandra/data1" --data-dir "$D/cassandra/data2" \
	--cassandra-conf "$D/cassandra/conf" --no-schema
build/tools/cassbackup list --store "$D/store"
build/fs/mount.cassbackup "$D/store" "$D/mnt"
ls "$D/mnt/backups/" "$D/mnt/backups/nightly-1/" "$D/mnt/backups/nightly-1/shop/"
ls -l "$D/mnt/backups/nightly-1/shop/orders/"
getfattr -d "$D/mnt/backups/nightly-1"
rsync -a --exclude manifest.json --exclude schema.cql \
	"$D/mnt/backups/nightly-1/shop/orders/" "$D/restore/orders/"
{ set +x; } 2>/dev/null
echo
echo "Restored shop.orders into $D/restore/orders. The store stays mounted at $D/mnt;"
echo "unmount it with: fusermount3 -u $D/mnt"
