#!/bin/bash
# A throwaway single-node Ceph object gateway for the tests: one monitor, one OSD keeping its data
# in memory (memstore), one radosgw, all on 127.0.0.1, and one S3 user.
#
#   ceph-rgw.sh DIR
#
# Settings (environment):
#   CEPH_MON_PORT       monitor port (3300)            CEPH_RGW_PORT   S3 port (7480)
#   CEPH_MEMSTORE_BYTES OSD capacity (3 GiB)           CEPH_PARENT     exit when this PID is gone
#   CEPH_ACCESS_KEY / CEPH_SECRET_KEY                  the S3 user's keys (RGWACCESS / RGWSECRET)
#   CEPH_GC_MIN_WAIT    seconds before RGW frees deleted data (30; RGW's own default is 2 h)
#
# While it runs, `radosgw-admin --conf DIR/ceph.conf --name client.admin gc process --include-all`
# frees deleted data at once (the benchmark does between phases).
#
# When the gateway answers S3 requests it writes DIR/endpoint (the URL); it runs until SIGTERM
# (or its parent is gone), then stops what it started and removes DIR. A failure leaves
# DIR/failed with the last log lines. Needs the Debian packages ceph-mon ceph-osd radosgw ceph-common.
set -uo pipefail
DIR=${1:?usage: ceph-rgw.sh DIR}
MON_PORT=${CEPH_MON_PORT:-3300}
RGW_PORT=${CEPH_RGW_PORT:-7480}
MEMSTORE=${CEPH_MEMSTORE_BYTES:-3221225472}
ACCESS=${CEPH_ACCESS_KEY:-RGWACCESS}
SECRET=${CEPH_SECRET_KEY:-RGWSECRET}
PARENT=${CEPH_PARENT:-}
GC_MIN_WAIT=${CEPH_GC_MIN_WAIT:-30}

# Ports already taken would have our clients talk to someone else's Ceph: refuse at once.
for port in "$MON_PORT" "$RGW_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    mkdir -p "$DIR" && echo "ceph-rgw.sh: port $port on 127.0.0.1 is in use (set CEPH_MON_PORT / CEPH_RGW_PORT)" > "$DIR/failed"
    exit 1
  fi
done
rm -rf "$DIR" && mkdir -p "$DIR"/{mon,osd,run,log,rgw} || exit 1
cd "$DIR" || exit 1
CONF=$DIR/ceph.conf
started=()

stop() {
  trap - TERM INT EXIT
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null; done
  for _ in $(seq 20); do
    alive=0
    for pid in "${started[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.25
  done
  for pid in "${started[@]}"; do kill -9 "$pid" 2>/dev/null; done
  # A clean stop leaves nothing; a failure leaves DIR/failed and the logs.
  if [ "${1:-0}" = 0 ]; then rm -rf "$DIR"; else rm -rf "$DIR"/{mon,osd,rgw}; fi
  exit "${1:-0}"
}
trap 'stop 0' TERM INT
trap 'stop 1' EXIT

fail() {
  { echo "ceph-rgw.sh: $*"; for f in log/*.out log/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 15 "$f"; }; done; } > failed
  stop 1
}

# A client command that gives up instead of hanging when the monitor is not there.
ceph_admin() { timeout 30 ceph --conf "$CONF" --name client.admin "$@"; }

fsid=$(cat /proc/sys/kernel/random/uuid)
cat > "$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$MON_PORT/0
public network = 127.0.0.0/8
ms bind ipv6 = false
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = $MEMSTORE
osd crush chooseleaf type = 0
run dir = $DIR/run
log file = $DIR/log/\$name.log
admin socket = $DIR/run/\$name.asok
keyring = $DIR/\$name.keyring
[mon.a]
mon data = $DIR/mon/a
[osd.0]
osd data = $DIR/osd/0
[client.rgw.test]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $DIR/rgw
rgw dns name = 127.0.0.1
# Deleted and overwritten data is freed within a minute, not RGW's default of hours: a test run
# writes and deletes far more than the OSD holds.
rgw gc obj min wait = $GC_MIN_WAIT
rgw gc processor period = 30
rgw gc processor max time = 30
EOF

# Monitor: keyrings, a map with the one monitor, its store, then the daemon.
ceph-authtool --create-keyring mon.a.keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null || fail "mon keyring"
ceph-authtool --create-keyring client.admin.keyring --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null || fail "admin keyring"
ceph-authtool mon.a.keyring --import-keyring client.admin.keyring >/dev/null || fail "keyring import"
monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$fsid" monmap >/dev/null || fail "monmap"
ceph-mon --conf "$CONF" --mkfs -i a --monmap monmap --keyring mon.a.keyring > log/mon-mkfs.out 2>&1 || fail "mon mkfs"
ceph-mon --conf "$CONF" -i a -f > log/mon.out 2>&1 &
started+=($!)
ceph_admin -s >/dev/null 2>&1 || fail "monitor does not answer on port $MON_PORT"

# One OSD on memstore.
uuid=$(cat /proc/sys/kernel/random/uuid)
id=$(ceph_admin osd new "$uuid") || fail "osd new"
ceph_admin auth get-or-create "osd.$id" mon 'allow profile osd' mgr 'allow profile osd' osd 'allow *' \
  -o "osd.$id.keyring" >/dev/null 2>&1 || fail "osd key"
mkdir -p "osd/$id"
sed -i "s|^\[osd.0\]|[osd.$id]|; s|osd/0|osd/$id|" "$CONF"
ceph-osd --conf "$CONF" -i "$id" --mkfs --osd-uuid "$uuid" > log/osd-mkfs.out 2>&1 || fail "osd mkfs"
ceph-osd --conf "$CONF" -i "$id" -f > log/osd.out 2>&1 &
started+=($!)
up=0
for _ in $(seq 120); do
  if ceph_admin osd stat --format json 2>/dev/null | grep -q '"num_up_osds":1'; then up=1; break; fi
  sleep 0.5
done
[ $up = 1 ] || fail "osd did not come up"

# The gateway and its user.
ceph_admin auth get-or-create client.rgw.test mon 'allow rw' osd 'allow rwx' -o client.rgw.test.keyring \
  >/dev/null 2>&1 || fail "rgw key"
radosgw --conf "$CONF" --name client.rgw.test -f > log/rgw.out 2>&1 &
started+=($!)
answering=0
for _ in $(seq 240); do
  if curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/"; then answering=1; break; fi
  sleep 0.5
done
[ $answering = 1 ] || fail "radosgw does not answer on port $RGW_PORT"
timeout 60 radosgw-admin --conf "$CONF" --name client.admin user create --uid=neam-test \
  --display-name=neam-test --access-key="$ACCESS" --secret-key="$SECRET" > log/user.out 2>&1 || fail "user create"

# Ready when a signed request of that user succeeds.
ready=0
for _ in $(seq 60); do
  status=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS:$SECRET" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "http://127.0.0.1:$RGW_PORT/")
  [ "$status" = 200 ] && { ready=1; break; }
  sleep 0.5
done
[ $ready = 1 ] || fail "S3 requests of the test user fail"
echo "http://127.0.0.1:$RGW_PORT" > endpoint.tmp && mv endpoint.tmp endpoint

while :; do
  if [ -n "$PARENT" ] && ! kill -0 "$PARENT" 2>/dev/null; then stop 0; fi
  for pid in "${started[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a daemon exited (pid $pid)"; done
  sleep 2 & wait $!
done
