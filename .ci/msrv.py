#!/usr/bin/env python3
"""Fails when the workspace's rust-version is lower than the highest
rust-version among the resolved dependencies (`cargo metadata`)."""
import json
import subprocess
import sys


def parse(v):
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
members = set(meta["workspace_members"])
resolved = {n["id"] for n in meta["resolve"]["nodes"]}
ours = {}
deps = []
for p in meta["packages"]:
    if p["id"] not in resolved or not p.get("rust_version"):
        continue
    if p["id"] in members:
        ours[p["name"]] = p["rust_version"]
    else:
        deps.append((parse(p["rust_version"]), p["rust_version"], p["name"], p["version"]))
if not ours:
    sys.exit("no workspace member declares rust-version")
deps.sort(reverse=True)
top = deps[0]
low = [(n, v) for n, v in ours.items() if parse(v) < top[0]]
print(f"highest dependency rust-version: {top[1]} ({top[2]} {top[3]})")
if low:
    for n, v in low:
        print(f"error: {n} declares rust-version {v}, lower than {top[1]} needed by {top[2]} {top[3]}")
    sys.exit(1)
print("rust-version of every member: " + ", ".join(sorted(set(ours.values()))))
