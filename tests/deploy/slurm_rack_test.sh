#!/bin/bash
# End-to-end: the rack through a REAL Slurm on this host (TOOLCHAIN.md, "Slurm, several nodes on
# one host"). As root: munged with its own key and socket, slurmctld and 18 slurmd (n1..n18) from
# a config in a temp dir; deploy/slurm/rack-up with 18 VMs of one CPU device (tiny generated
# model, --threads 1); a batch of requests through the rack with rackctl, each must complete;
# deploy/slurm/rack-down; the job must be CANCELLED by it with no failure recorded and no
# rackserve-* or slurmstepd process of it left. Slurm's daemons are always torn down (trap).
#
# Usage: slurm_rack_test.sh REPO_ROOT BUILD_DIR   (ctest label e2e)
set -euo pipefail
repo=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
num_vms=18

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $(date +%T) $*"; }

[[ $(id -u) -eq 0 ]] || fail "needs root (slurmd, munged)"
missing=()
for tool in munged slurmctld slurmd sbatch srun squeue scancel scontrol sinfo; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
((${#missing[@]} == 0)) ||
  fail "missing ${missing[*]}: install Debian packages slurm-wlm munge (deploy/install-deps)"
for bin in coordinator/rackserve-coordinator worker/rackserve-worker \
  runtime/tools/rackserve-make-model client/rackctl; do
  [[ -x $build/$bin ]] ||
    fail "$build/$bin not built (cmake --build $build --target $(basename "$bin"))"
done

tmp=$(mktemp -d /tmp/rackserve-slurm-test.XXXXXX)
export SLURM_CONF=$tmp/slurm.conf
job_dir=$tmp/job

# Stops what this test started, by the PIDs it recorded; used on every exit.
teardown() {
  local rc=$?
  set +e
  if [[ -f $job_dir/job.id ]]; then
    "$repo/deploy/slurm/rack-down" --job-dir "$job_dir" --timeout 30 >/dev/null 2>&1
  fi
  local pids=() f
  for f in "$tmp"/slurmd-*.pid "$tmp"/slurmctld.pid "$tmp"/munged.pid; do
    [[ -f $f ]] && pids+=("$(cat "$f")")
  done
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null
  for _ in $(seq 100); do
    local alive=0 p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  ((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
  if ((rc != 0)); then
    echo "--- logs (test failed) ---" >&2
    tail -n 20 "$tmp"/log/slurmctld.log "$job_dir"/{job.log,coordinator.log,preflight.log} \
      "$job_dir"/worker-0.log >&2 2>/dev/null
    tail -n 5 "$tmp"/log/slurmd-*.log >&2 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 1' TERM INT

step "munged (own key and socket in $tmp)"
mkdir -p "$tmp"/{munge,log,state,spool} && chmod 700 "$tmp/munge"
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/munge.key"
munged --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/munge.socket.2" \
  --pid-file="$tmp/munged.pid" --log-file="$tmp/log/munged.log" --seed-file="$tmp/munge/seed"

step "slurmctld + $num_vms slurmd"
host=$(hostname -s)
# Below Linux's ephemeral range (32768 and up): a port there may be held by an outgoing
# connection of a test running beside this one (once, one of the 18 slurmd never came up; its
# log was gone, so the failure output now keeps every slurmd's last lines).
ctld_port=$((20000 + RANDOM % 12000))
node_port=$((ctld_port + 1))
cat >"$SLURM_CONF" <<CONF
ClusterName=rackserve-ci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/munge.socket.2
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool/%n
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd-%n.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd-%n.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
KillWait=10
InactiveLimit=0
NodeName=n[1-$num_vms] NodeHostname=$host NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN \
  Port=[$node_port-$((node_port + num_vms - 1))]
PartitionName=rack Nodes=n[1-$num_vms] Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -c
for i in $(seq "$num_vms"); do slurmd -N "n$i"; done
for _ in $(seq 300); do
  idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | wc -l)
  ((idle == num_vms)) && break
  sleep 0.2
done
((idle == num_vms)) || fail "only $idle of $num_vms Slurm nodes idle after 60 s: $(sinfo -N 2>&1)"

step "tiny model and an $num_vms-VM topology"
"$build/runtime/tools/rackserve-make-model" --out "$tmp/model" --preset tiny --format nvfp4 \
  --seed 1 >/dev/null
topology=$repo/deploy/topologies/local-18.yaml
if [[ ! -f $topology ]]; then
  topology=$tmp/local-18.yaml
  {
    echo "model: $tmp/model"
    echo "vms:"
    for ((i = 0; i < num_vms; i++)); do printf '  - {name: vm%02d, devices: 1}\n' "$i"; done
    echo "layout: {tp: 1, pp: 1}"
  } >"$topology"
fi

step "rack-up refuses bad arguments, naming them"
expect_refusal() {  # expect_refusal CODE TEXT ARGS...: rack-up exits CODE with TEXT on stderr
  local code=$1 text=$2 rc=0
  shift 2
  "$repo/deploy/slurm/rack-up" "$@" >/dev/null 2>"$tmp/refusal.err" || rc=$?
  ((rc == code)) || fail "rack-up $* exited $rc, want $code"
  grep -qF -- "$text" "$tmp/refusal.err" ||
    fail "rack-up $*: '$text' not in: $(cat "$tmp/refusal.err")"
}
expect_refusal 2 "--topology is required" --model "$tmp/model"
expect_refusal 1 "$tmp/missing.yaml" --topology "$tmp/missing.yaml" --model "$tmp/model" \
  --build "$build"
expect_refusal 1 "$tmp/no-model" --topology "$topology" --model "$tmp/no-model" --build "$build"
[[ ! -e $job_dir/job.id ]] || fail "a refused rack-up submitted a job"

step "rack-up through Slurm"
"$repo/deploy/slurm/rack-up" --topology "$topology" --model "$tmp/model" --build "$build" \
  --job-dir "$job_dir" --threads 1 --kv-cache-mb 16 --wait 240
job=$(cat "$job_dir/job.id")
[[ $(squeue -h -j "$job" -o %T) == RUNNING ]] || fail "job $job is not RUNNING after rack-up"
# Node i serves VM i, with the GPUs the launcher assigned (Slurm sets none without GRES).
for ((i = 0; i < num_vms; i++)); do
  line="worker-task: VM vm$(printf %02d "$i") (node n$((i + 1)), GPUs 0)"
  grep -qxF "$line" "$job_dir/worker-$i.log" ||
    fail "worker-$i.log lacks '$line': $(head -n 1 "$job_dir/worker-$i.log")"
done
workers=0
for pid in $(pgrep '^rackserve-worke' || true); do
  environ=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null) || continue
  grep -qx "SLURM_JOB_ID=$job" <<<"$environ" || continue
  grep -qx "CUDA_VISIBLE_DEVICES=0" <<<"$environ" ||
    fail "worker $pid of job $job runs without CUDA_VISIBLE_DEVICES=0"
  workers=$((workers + 1))
done
((workers == num_vms)) || fail "$workers rackserve-worker processes in job $job, want $num_vms"
"$repo/deploy/slurm/rack-status" --job-dir "$job_dir" >"$tmp/status.txt" ||
  fail "rack-status: $(cat "$tmp/status.txt")"

step "a batch through the rack"
requests=$tmp/requests.jsonl
for i in $(seq 36); do
  echo "{\"id\": \"q$i\", \"prompt_ids\": [1, $((i + 2)), 7], \"max_new_tokens\": 8," \
    "\"ignore_eos\": true}"
done >"$requests"
RACKSERVE_RACK_DIR=$job_dir "$build/client/rackctl" batch --in "$requests" \
  --out "$tmp/results.jsonl" --concurrency 18 2>"$tmp/batch.err" ||
  fail "rackctl batch: $(tail -n 3 "$tmp/batch.err")"
/usr/bin/python3 - "$tmp/results.jsonl" <<'PY' || fail "batch results"
import json, sys
results = {r["id"]: r for r in map(json.loads, open(sys.argv[1])) if r}
assert len(results) == 36, f"{len(results)} of 36 results"
for rid, r in results.items():
    assert not r.get("error"), f"{rid}: {r['error']}"
    assert len(r["token_ids"]) == 8, f"{rid}: {len(r['token_ids'])} tokens, want 8"
PY

step "rack-down"
"$repo/deploy/slurm/rack-down" --job-dir "$job_dir" --timeout 60
[[ -z $(squeue -h -j "$job" -o %i 2>/dev/null) ]] || fail "job $job still listed"
state=$(scontrol show job "$job" -o 2>/dev/null | grep -o 'JobState=[A-Z_]*' || true)
[[ $state == JobState=CANCELLED ]] || fail "job $job ended as '$state', want CANCELLED by rack-down"
[[ ! -e $job_dir/failed ]] || fail "the job recorded a failure: $(cat "$job_dir/failed")"
left=$(pgrep -f "^slurmstepd: \[$job\." || true)
for pid in $(pgrep '^rackserve-' || true); do
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_JOB_ID=$job" && left+=" $pid"
done
[[ -z ${left// /} ]] || fail "processes of job $job remain: $left"

step "a rack whose workers cannot start: rack-up fails naming the VM, node and GPUs"
if "$repo/deploy/slurm/rack-up" --topology "$topology" --model "$tmp/model" --build "$build" \
  --job-dir "$job_dir" --threads 1 --kv-cache-mb 0 --wait 120 >"$tmp/bad.out" 2>&1; then
  fail "rack-up succeeded with --kv-cache-mb 0: $(cat "$tmp/bad.out")"
fi
grep -Eq "VM vm[0-9]+ \(node n[0-9]+, GPUs 0\)" "$tmp/bad.out" ||
  fail "rack-up's failure does not name the VM, node and GPUs: $(cat "$tmp/bad.out")"
[[ ! -f $job_dir/job.id ]] || fail "rack-up left the failed job $(cat "$job_dir/job.id") behind"
step "PASS"
