#!/usr/bin/python3
"""The rackserve.v1 client API from Python: a coordinator and one worker as real processes on
loopback (tiny generated model), a SubmitBatch of 20 requests and a Generate stream through
stubs generated from proto/, every completion checked, and GetStats' totals adding up.

Run by ctest with Debian's /usr/bin/python3 (packages python3-grpcio, python3-protobuf). The
processes are always torn down; their logs are printed when a check fails. Exit status 0: passed.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

VOCAB = 512  # the tiny preset
BATCH = 20
RPC_TIMEOUT_S = 60


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def import_grpc(stubs):
    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
    except ImportError as e:
        sys.exit(f"rack_client_test: {sys.executable} cannot import grpc ({e}); install the Debian "
                 "packages python3-grpcio and python3-protobuf (apt-get install python3-grpcio)")
    sys.path.insert(0, stubs)
    try:
        from rackserve.v1 import rack_pb2, rack_pb2_grpc
    except ImportError as e:
        sys.exit(f"rack_client_test: no generated stubs in {stubs} ({e}); build the target "
                 "rack_client_python_test")
    return grpc, rack_pb2, rack_pb2_grpc


class Process:
    """A child process whose output goes to a log file; killed (SIGKILL) by stop()."""

    def __init__(self, argv, log_path):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def wait_listening(self, timeout_s):
        marker = "listening on "
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            log = self.log()
            at = log.find(marker)
            if at >= 0 and log.find("\n", at) >= 0:
                return log[at + len(marker):log.find("\n", at)].strip()
            if self.popen.poll() is not None:
                break
            time.sleep(0.02)
        raise CheckFailed(f"{self.log_path}: no 'listening on' within {timeout_s} s")

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()


def prompt(i):
    return [1 + (i * 37 + k * 11) % (VOCAB - 1) for k in range(3 + i % 6)]


def max_new(i):
    return 6 + i % 10


def request(rack_pb2, request_id, i):
    r = rack_pb2.GenerateRequest(request_id=request_id, prompt_token_ids=prompt(i))
    r.sampling.max_new_tokens = max_new(i)
    r.sampling.ignore_eos = True
    return r


def wait_ready(grpc, rack_pb2, stub, replicas, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            topology = stub.GetTopology(rack_pb2.TopologyRequest(), timeout=5)
            stats = stub.GetStats(rack_pb2.StatsRequest(), timeout=5)
            if (len(topology.replicas) == replicas and
                    all(r.state == "ready" for r in topology.replicas) and
                    len(stats.replicas) == replicas and
                    all(r.kv_blocks_total > 0 for r in stats.replicas)):
                return
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise CheckFailed(f"{replicas} replica(s) not ready within {timeout_s} s")


def run(args, grpc, rack_pb2, rack_pb2_grpc, processes):
    model_dir = os.path.join(args.workdir, "model")
    subprocess.run([args.make_model, "--preset", "tiny", "--format", "nvfp4", "--seed", "5",
                    "--tokenizer=false", "--out", model_dir], check=True,
                   stdout=subprocess.DEVNULL)
    topology_path = os.path.join(args.workdir, "rack.yaml")
    with open(topology_path, "w") as f:
        f.write(f"model: {model_dir}\nvms:\n  - {{name: vm0, devices: 1}}\n"
                "layout: {tp: 1, pp: 1}\n")

    coordinator = Process(
        [args.coordinator, "--topology", topology_path, "--listen", "127.0.0.1:0"],
        os.path.join(args.workdir, "coordinator.log"))
    processes.append(coordinator)
    address = coordinator.wait_listening(60)
    processes.append(Process([args.worker, "--coordinator", address, "--vm", "vm0", "--model",
                              model_dir, "--devices", "1", "--threads", "1", "--kv-cache-mb", "64"],
                             os.path.join(args.workdir, "vm0.log")))
    channel = grpc.insecure_channel(address)
    stub = rack_pb2_grpc.RackStub(channel)
    wait_ready(grpc, rack_pb2, stub, 1, 60)

    # A batch: every request completes once, with max_new tokens from the vocabulary.
    completions = {}
    for c in stub.SubmitBatch(iter([request(rack_pb2, f"py{i}", i) for i in range(BATCH)]),
                              timeout=RPC_TIMEOUT_S):
        check(c.error_code == 0, f"{c.request_id} failed: {c.error_code} {c.error_message}")
        check(c.request_id not in completions, f"{c.request_id} completed twice")
        completions[c.request_id] = c
    check(sorted(completions) == sorted(f"py{i}" for i in range(BATCH)),
          f"completions for {sorted(completions)}")
    for i in range(BATCH):
        c = completions[f"py{i}"]
        check(len(c.token_ids) == max_new(i), f"py{i}: {len(c.token_ids)} tokens, not {max_new(i)}")
        check(all(0 <= t < VOCAB for t in c.token_ids), f"py{i}: token outside the vocabulary")
        check(c.finish_reason == rack_pb2.FINISH_REASON_MAX_TOKENS,
              f"py{i}: finish_reason {rack_pb2.FinishReason.Name(c.finish_reason)}")
        check(c.prompt_tokens == len(prompt(i)), f"py{i}: prompt_tokens {c.prompt_tokens}")
        check(0 < c.timings.ttft_seconds <= c.timings.total_seconds,
              f"py{i}: timings {c.timings}")

    # A stream of the same prompt as py0: greedy, so the same tokens, in contiguous chunks.
    streamed = []
    finish = rack_pb2.FINISH_REASON_UNSPECIFIED
    for chunk in stub.Generate(request(rack_pb2, "py-stream", 0), timeout=RPC_TIMEOUT_S):
        check(chunk.first_index == len(streamed), f"py-stream: chunk at {chunk.first_index} "
              f"after {len(streamed)} tokens")
        streamed.extend(chunk.token_ids)
        finish = chunk.finish_reason or finish
    check(streamed == list(completions["py0"].token_ids),
          f"py-stream {streamed} != py0 {list(completions['py0'].token_ids)}")
    check(finish == rack_pb2.FINISH_REASON_MAX_TOKENS, "py-stream: no MAX_TOKENS finish")

    # The stats add up: delivered == the worker's count == the replica's and the VM's totals.
    generated = sum(max_new(i) for i in range(BATCH)) + max_new(0)
    prompts = sum(len(prompt(i)) for i in range(BATCH)) + len(prompt(0))
    deadline = time.monotonic() + 15
    while True:
        stats = stub.GetStats(rack_pb2.StatsRequest(), timeout=5)
        if stats.worker_generated_tokens_total == generated or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(stats.rack.generated_tokens_total == generated,
          f"rack.generated_tokens_total {stats.rack.generated_tokens_total} != {generated}")
    check(stats.worker_generated_tokens_total == generated,
          f"worker_generated_tokens_total {stats.worker_generated_tokens_total} != {generated}")
    check(stats.rack.prompt_tokens_total == prompts,
          f"rack.prompt_tokens_total {stats.rack.prompt_tokens_total} != {prompts}")
    check(stats.requests_completed == BATCH + 1, f"requests_completed {stats.requests_completed}")
    for scope in ("replicas", "vms"):
        total = sum(s.throughput.generated_tokens_total for s in getattr(stats, scope))
        check(total == generated, f"{scope}' generated_tokens_total sum to {total} != {generated}")
    channel.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stubs", required=True, help="directory of the generated *_pb2*.py")
    parser.add_argument("--coordinator", required=True, help="rackserve-coordinator binary")
    parser.add_argument("--worker", required=True, help="rackserve-worker binary")
    parser.add_argument("--make-model", required=True, help="rackserve-make-model binary")
    parser.add_argument("--workdir", required=True, help="scratch directory (recreated)")
    args = parser.parse_args()
    grpc, rack_pb2, rack_pb2_grpc = import_grpc(args.stubs)

    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    processes = []
    start = time.monotonic()
    try:
        run(args, grpc, rack_pb2, rack_pb2_grpc, processes)
    except (CheckFailed, grpc.RpcError, subprocess.CalledProcessError) as e:
        print(f"rack_client_test: FAILED: {e}", file=sys.stderr)
        for p in processes:
            print(f"--- {p.log_path}\n{p.log()}", file=sys.stderr)
        return 1
    finally:
        for p in processes:
            p.stop()
    print(f"rack_client_test: PASSED ({BATCH} batched + 1 streamed request, "
          f"{time.monotonic() - start:.1f} s)")
    shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
