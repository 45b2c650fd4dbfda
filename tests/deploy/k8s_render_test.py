#!/usr/bin/python3
"""Offline check of deploy/k8s/render: renders an 18 VM x 4 GPU rack (gb300-nvl72 shape; also
deploy/topologies/gb300-nvl72.yaml when present) and checks every document it writes.

Usage: k8s_render_test.py REPO_ROOT   (run by ctest with Debian's /usr/bin/python3)
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

import yaml

REPO = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else os.getcwd()
RENDER = os.path.join(REPO, "deploy", "k8s", "render")
NVL72 = os.path.join(REPO, "deploy", "topologies", "gb300-nvl72.yaml")
NVL72_MISSING = "deploy/topologies/gb300-nvl72.yaml not written yet"
SHELL_VARIABLES = {"$RACKSERVE_VMS", "$POD_INDEX", "$POD_IP", "$1"}


def write_topology(directory, vms, devices, name="rack.yaml"):
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("model: /models/llama\nvms:\n")
        for i in range(vms):
            f.write(f"  - {{name: vm{i:02d}, devices: {devices}}}\n")
        f.write("layout: {tp: 1, pp: 1}\n")
    return path


def run_render(*args):
    return subprocess.run([RENDER, *args], capture_output=True, text=True, timeout=60)


class RenderNvl72(unittest.TestCase):
    def render_and_check(self, topology):
        with tempfile.TemporaryDirectory() as out:
            result = run_render("--topology", topology, "--image", "registry.local/rackserve:1",
                                "--namespace", "rack-a", "--out", out)
            self.assertEqual(result.returncode, 0, result.stderr)
            docs = []
            for file_name in sorted(os.listdir(out)):
                with open(os.path.join(out, file_name), encoding="utf-8") as f:
                    text = f.read()
                # The only '$' left are the worker's shell variables.
                leftover = set(re.findall(r"\$\{?\w*", text)) - SHELL_VARIABLES
                self.assertEqual(leftover, set(), f"unrendered placeholder in {file_name}")
                docs += [d for d in yaml.safe_load_all(text) if d is not None]
        return docs

    def check_docs(self, docs, num_vms, gpus):
        by_kind = {}
        for d in docs:
            self.assertIn("apiVersion", d)
            by_kind.setdefault(d["kind"], []).append(d)
            if d["kind"] != "Namespace":
                self.assertEqual(d["metadata"]["namespace"], "rack-a", d["metadata"]["name"])
        self.assertEqual(sorted(by_kind), ["ComputeDomain", "ConfigMap", "Deployment", "Namespace",
                                           "Service", "StatefulSet"])

        (domain,) = by_kind["ComputeDomain"]
        self.assertEqual(domain["apiVersion"], "resource.nvidia.com/v1beta1")
        channel_template = domain["spec"]["channel"]["resourceClaimTemplate"]["name"]
        self.assertTrue(channel_template)

        (coordinator,) = by_kind["Deployment"]
        self.assertEqual(coordinator["spec"]["replicas"], 1)
        (container,) = coordinator["spec"]["template"]["spec"]["containers"]
        self.assertEqual(container["image"], "registry.local/rackserve:1")
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/healthz")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(sorted(ports), ["grpc", "http"])
        self.assertEqual(container["readinessProbe"]["httpGet"]["port"], "http")
        services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
        coordinator_service = services[coordinator["metadata"]["name"]]
        self.assertEqual({p["name"] for p in coordinator_service["spec"]["ports"]},
                         {"grpc", "http"})
        self.assertEqual(coordinator_service["spec"]["selector"],
                         coordinator["spec"]["template"]["metadata"]["labels"])

        (workers,) = by_kind["StatefulSet"]
        self.assertEqual(workers["spec"]["replicas"], num_vms)
        self.assertIn(workers["spec"]["serviceName"], services)
        pod = workers["spec"]["template"]["spec"]
        (worker,) = pod["containers"]
        self.assertEqual(worker["resources"]["limits"]["nvidia.com/gpu"], gpus)
        claim_names = [c["name"] for c in worker["resources"]["claims"]]
        pod_claims = {c["name"]: c for c in pod["resourceClaims"]}
        self.assertEqual(len(claim_names), 1)
        self.assertEqual(pod_claims[claim_names[0]]["resourceClaimTemplateName"], channel_template)
        env = {e["name"]: e for e in worker["env"]}
        self.assertEqual(env["RACKSERVE_VMS"]["value"].split(),
                         [f"vm{i:02d}" for i in range(num_vms)])
        self.assertEqual(env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.labels['apps.kubernetes.io/pod-index']")
        command = " ".join(worker["command"] + worker["args"])
        self.assertIn("--vm=\"$1\"", command)
        self.assertIn(f"--devices={gpus}", command)
        self.assertIn(f"--coordinator={coordinator_service['metadata']['name']}:", command)

        (config_map,) = by_kind["ConfigMap"]
        topology = yaml.safe_load(config_map["data"]["topology.yaml"])
        self.assertEqual(len(topology["vms"]), num_vms)
        self.assertEqual(topology["model"], "/model")

    def test_gb300_nvl72_shape(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.check_docs(self.render_and_check(write_topology(tmp, 18, 4)), 18, 4)

    @unittest.skipUnless(os.path.exists(NVL72), NVL72_MISSING)
    def test_repo_gb300_nvl72(self):
        self.check_docs(self.render_and_check(NVL72), 18, 4)

    def test_stdout_is_one_stream_of_documents(self):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_render("--topology", write_topology(tmp, 2, 4), "--image", "img",
                                "--namespace", "rack-a")
        self.assertEqual(result.returncode, 0, result.stderr)
        kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout) if d]
        self.assertEqual(len(kinds), 7)


    @unittest.skipUnless(os.path.exists(NVL72), NVL72_MISSING)
    def test_layout_choice_lands_in_the_topology(self):
        with tempfile.TemporaryDirectory() as out:
            result = run_render("--topology", NVL72, "--image", "img", "--layout", "tp4",
                                "--out", out)
            self.assertEqual(result.returncode, 0, result.stderr)
            with open(os.path.join(out, "topology.yaml"), encoding="utf-8") as f:
                config_map = yaml.safe_load(f)
        self.assertEqual(yaml.safe_load(config_map["data"]["topology.yaml"])["layout"], "tp4")


class RenderErrors(unittest.TestCase):
    def test_unknown_layout_names_it(self):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_render("--topology", write_topology(tmp, 2, 4), "--image", "img",
                                "--layout", "tp9")
        self.assertEqual(result.returncode, 1)
        self.assertIn("tp9", result.stderr)

    def test_missing_topology_names_the_file(self):
        result = run_render("--topology", "/nonexistent/rack.yaml", "--image", "img")
        self.assertEqual(result.returncode, 1)
        self.assertIn("/nonexistent/rack.yaml", result.stderr)

    def test_uneven_devices_names_the_field(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "uneven.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write("model: m\nvms:\n  - {name: a, devices: 4}\n  - {name: b, devices: 2}\n")
            result = run_render("--topology", path, "--image", "img")
        self.assertEqual(result.returncode, 1)
        self.assertIn("uneven.yaml: vms:", result.stderr)

    def test_bad_devices_names_the_vm(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bad.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write("model: m\nvms:\n  - {name: a, devices: 4}\n  - {name: b, devices: x}\n")
            result = run_render("--topology", path, "--image", "img")
        self.assertEqual(result.returncode, 1)
        self.assertIn("vms[1].devices", result.stderr)

    def test_bad_namespace_is_usage_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_render("--topology", write_topology(tmp, 1, 4), "--image", "img",
                                "--namespace", "Bad_NS")
        self.assertEqual(result.returncode, 2)
        self.assertIn("Bad_NS", result.stderr)


if __name__ == "__main__":
    unittest.main()
