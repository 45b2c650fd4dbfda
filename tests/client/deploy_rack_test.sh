#!/usr/bin/env bash
# deploy/rack end to end: `up` a 3-VM rack of a tiny model with its state in a temp dir, `up`
# again (refused), `status`, `logs`, `rackctl bench` through it, `down`, then check that no
# process of the rack is left and that a second `down` does nothing. Then a rack of simulated
# GPUs runs a 2,000-sample offline bench in which every sample must complete.
# Usage: deploy_rack_test.sh REPO_ROOT BUILD_DIR
set -euo pipefail
repo=$1
export RACKSERVE_BUILD_DIR=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/deploy_rack_test.XXXXXX")
export RACKSERVE_RACK_DIR=$tmp/rack
rack=$repo/deploy/rack
cleanup() {
  "$rack" down >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

"$RACKSERVE_BUILD_DIR/runtime/tools/rackserve-make-model" --out "$tmp/model" --preset tiny \
  --format nvfp4 --seed 2 >/dev/null
cat >"$tmp/rack.yaml" <<YAML
model: model
vms:
  - {name: vm00, devices: 1}
  - {name: vm01, devices: 1}
  - {name: vm02, devices: 1}
layouts:
  tp1: {tp: 1, pp: 1}
layout: tp1
YAML

echo "== up"
"$rack" up --topology "$tmp/rack.yaml" --model "$tmp/model" --kv-cache-mb 32 --wait 60 \
  | tee "$tmp/up.txt"
grep -q "3 replicas ready" "$tmp/up.txt" || fail "up did not report 3 ready replicas"
[[ -s $RACKSERVE_RACK_DIR/coordinator.addr ]] || fail "no coordinator.addr"
[[ -f $RACKSERVE_RACK_DIR/topology.yaml ]] || fail "no rendered topology"
grep -q "^model: $tmp/model\$" "$RACKSERVE_RACK_DIR/topology.yaml" || fail "model not rendered"

echo "== up again is refused"
if "$rack" up --topology "$tmp/rack.yaml" --model "$tmp/model" 2>"$tmp/again.txt"; then
  fail "a second up succeeded"
fi
grep -q "already up" "$tmp/again.txt" || fail "second up: $(cat "$tmp/again.txt")"

echo "== status"
"$rack" status | tee "$tmp/status.txt"
grep -q "4 of 4 processes alive" "$tmp/status.txt" || fail "status: not all alive"
grep -q "replicas: 3 ready of 3" "$tmp/status.txt" || fail "status: replicas not ready"

echo "== logs"
"$rack" logs vm01 | grep -q "listening on" || fail "logs vm01 has no 'listening on'"

echo "== rackctl bench (address from \$RACKSERVE_RACK_DIR/coordinator.addr)"
"$RACKSERVE_BUILD_DIR/client/rackctl" bench --scenario offline --count 12 --max-output 16 \
  2>/dev/null | tee "$tmp/bench.txt"
grep -q "Result is : VALID" "$tmp/bench.txt" || fail "bench not VALID"

pids=$(cat "$RACKSERVE_RACK_DIR"/pids/*.pid)
echo "== down"
"$rack" down
for pid in $pids; do
  if kill -0 "$pid" 2>/dev/null; then fail "pid $pid still alive after down"; fi
done
left=$(grep -lszxF "RACKSERVE_RACK_INSTANCE=$RACKSERVE_RACK_DIR" /proc/[0-9]*/environ || true)
[[ -z $left ]] || fail "processes of the rack are still running: $left"
[[ ! -e $RACKSERVE_RACK_DIR/coordinator.addr ]] || fail "coordinator.addr left behind"
"$rack" down | grep -q "no rack up" || fail "second down was not a no-op"

echo "== simulated GPUs: 2 VMs x 4 GB300s, a 2,000-sample offline bench, every sample completes"
cat >"$tmp/sim.yaml" <<'YAML'
model: llama2-70b
vms:
  - {name: vm00, devices: 4}
  - {name: vm01, devices: 4}
layout: {tp: 1, pp: 1}
YAML
"$rack" up --topology "$tmp/sim.yaml" --backend sim --model llama2-70b --wait 60 \
  --heartbeat-timeout 7 >"$tmp/sim-up.txt" || fail "sim rack did not come up: $(cat "$tmp/sim-up.txt")"
tr '\0' ' ' <"/proc/$(cat "$RACKSERVE_RACK_DIR/pids/coordinator.pid")/cmdline" |
  grep -q -- "--heartbeat-timeout-s 7" || fail "--heartbeat-timeout did not reach the coordinator"
"$RACKSERVE_BUILD_DIR/client/rackctl" bench --scenario offline --count 2000 2>"$tmp/sim-bench.err" \
  >"$tmp/sim-bench.txt" || fail "sim bench failed: $(tail -c 600 "$tmp/sim-bench.err")"
grep -q "Every sample completed        : Yes (2000 of 2000)" "$tmp/sim-bench.txt" ||
  fail "sim bench lost samples: $(cat "$tmp/sim-bench.txt")"
grep -q ": exact" "$tmp/sim-bench.txt" || fail "sim bench audit not exact"
"$rack" down >/dev/null
echo "PASS"
