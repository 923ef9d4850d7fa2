#!/usr/bin/env python3
"""Checks the files of deploy/ against the server they deploy.

- Every YAML and JSON file parses.
- Every SENTRYAGENT_* variable they set is one `sentryagentd --help` lists.
- The Kubernetes manifests: the kinds asked for, probes on /health
  (liveness) and /health/ready (readiness), a non-root container, the
  Secret and ConfigMap the Deployment reads, a grace period longer than the
  shutdown timeout; the ConfigMap's tier table passes `--check-config`.
- The compose file: Postgres, Redis, two nodes and a proxy.
- The Grafana dashboard: the rows overview, limiter, billing, backends.

Usage: deploy_files.py <path of the sentryagentd binary>
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

binary = sys.argv[1]
os.chdir(os.path.join(os.path.dirname(__file__), ".."))
problems = []


def fail(msg):
    problems.append(msg)


docs = {}
for path in sorted(glob.glob("deploy/**/*", recursive=True)):
    if os.path.isdir(path):
        continue
    try:
        if path.endswith((".yml", ".yaml")):
            with open(path) as f:
                docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
        elif path.endswith(".json"):
            with open(path) as f:
                docs[path] = [json.load(f)]
    except Exception as e:  # noqa: BLE001 - report every file
        fail(f"{path}: does not parse: {e}")
print(f"parsed {len(docs)} YAML/JSON files in deploy/")

# Variables: only those the server has.
help_text = subprocess.run(
    [binary, "--help"], check=True, capture_output=True, text=True, env={}
).stdout
known = set(re.findall(r"env: (SENTRYAGENT_[A-Z_]+)", help_text))
if len(known) < 20:
    fail(f"--help lists only {len(known)} variables")
for path in sorted(glob.glob("deploy/**/*", recursive=True)):
    if os.path.isdir(path):
        continue
    with open(path, errors="replace") as f:
        text = f.read()
    for var in sorted(set(re.findall(r"SENTRYAGENT_[A-Z_]+", text))):
        if var not in known:
            fail(f"{path}: {var} is not a variable of sentryagentd")

# Kubernetes.
k8s = {}
for path in glob.glob("deploy/k8s/*.yaml"):
    for d in docs.get(path, []):
        if "kind" in d and "apiVersion" in d:
            k8s.setdefault(d["kind"], []).append((path, d))
for kind in [
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "Secret",
    "ConfigMap",
]:
    if kind not in k8s:
        fail(f"deploy/k8s: no {kind}")
if "Deployment" in k8s:
    path, dep = k8s["Deployment"][0]
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    probe = lambda p: c.get(p, {}).get("httpGet", {}).get("path")  # noqa: E731
    if probe("livenessProbe") != "/health":
        fail(f"{path}: liveness must probe /health")
    if probe("readinessProbe") != "/health/ready":
        fail(f"{path}: readiness must probe /health/ready")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        fail(f"{path}: the pod must run as non-root")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    timeout = int(env.get("SENTRYAGENT_SHUTDOWN_TIMEOUT") or 30)
    if spec.get("terminationGracePeriodSeconds", 30) <= timeout:
        fail(f"{path}: the grace period must exceed the shutdown timeout")
    secret = [s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s]
    if secret != [d["metadata"]["name"] for _, d in k8s.get("Secret", [])]:
        fail(f"{path}: envFrom names {secret}, not the example Secret")
    maps = [v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v]
    if maps != [d["metadata"]["name"] for _, d in k8s.get("ConfigMap", [])]:
        fail(f"{path}: volumes name the ConfigMaps {maps}")
    labels = dep["spec"]["selector"]["matchLabels"]
    for kind in ["Service", "PodDisruptionBudget"]:
        for p, d in k8s.get(kind, []):
            sel = d["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            if sel != labels:
                fail(f"{p}: its selector {sel} is not the Deployment's {labels}")
for path, cm in k8s.get("ConfigMap", []):
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        f.write(cm["data"]["tiers.json"])
        f.flush()
        out = subprocess.run(
            [binary, "--check-config", "--store", "memory://", "--tiers", f.name],
            capture_output=True,
            text=True,
            env={},
        )
        if out.returncode != 0:
            fail(f"{path}: tiers.json fails --check-config:\n{out.stdout}{out.stderr}")

# Compose.
compose = docs.get("deploy/compose.yaml", [{}])[0]
services = compose.get("services", {})
images = {name: s.get("image", "") for name, s in services.items()}
nodes = [n for n, s in services.items() if "SENTRYAGENT_STORE" in s.get("environment", {})]
if len(nodes) != 2:
    fail(f"deploy/compose.yaml: {len(nodes)} sentryagentd nodes, not 2")
for want in ["postgres", "redis", "caddy"]:
    if not any(want in i for i in images.values()):
        fail(f"deploy/compose.yaml: no {want} service")

# Dashboard.
dash = docs.get("deploy/grafana/sentryagent.json", [{}])[0]
rows = {p["title"].lower() for p in dash.get("panels", []) if p.get("type") == "row"}
for want in ["overview", "limiter", "billing", "backends"]:
    if want not in rows:
        fail(f"deploy/grafana/sentryagent.json: no {want} row")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("deploy/ files OK")
