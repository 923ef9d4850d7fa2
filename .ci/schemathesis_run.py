#!/usr/bin/env python3
"""Runs schemathesis against a real sentryagentd, three times.

Starts the server (memory:// store, loopback, a bootstrap operator key, a
tier table without limits so generated traffic is not cut short by 429 or
402), makes a tenant and a tenant admin key, then runs `st run` against
<base>/openapi.json as the operator, as the tenant admin and anonymously:
fixed seed, a bounded number of examples per operation, the checks
not_a_server_error, status_code_conformance and
response_schema_conformance. Afterwards the server must still be running
and must not have logged a panic.

Usage: schemathesis_run.py <sentryagentd binary> <st binary>
"""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

binary, st = sys.argv[1], sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
# Fixed seed and budget: the same requests every run.
SEED = os.environ.get("SENTRYAGENT_SCHEMATHESIS_SEED", "20261202")
MAX_EXAMPLES = os.environ.get("SENTRYAGENT_SCHEMATHESIS_EXAMPLES", "25")
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, key=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def main():
    work = tempfile.mkdtemp(prefix="sentryagent-schemathesis-")
    tiers = os.path.join(work, "tiers.json")
    unlimited = {
        "max_agents": None,
        "api_calls_per_day": None,
        "token_issuances_per_month": None,
        "requests_per_minute": None,
        "client_requests_per_minute": None,
    }
    with open(tiers, "w") as f:
        json.dump({t: unlimited for t in ("free", "pro", "enterprise")}, f)
    operator = "sa_ak_" + secrets.token_urlsafe(33).replace("=", "")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = os.path.join(work, "server.log")
    log = open(log_path, "wb")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SENTRYAGENT_BOOTSTRAP_KEY": operator,
        "RUST_LOG": "warn",
    }
    server = subprocess.Popen(
        [binary, "--listen", f"127.0.0.1:{port}", "--store", "memory://",
         "--tiers", tiers, "--log-format", "json"],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    failed = []
    try:
        deadline = time.time() + 30
        while True:
            try:
                call("GET", f"{base}/health")
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    sys.exit("sentryagentd did not start:\n" + open(log_path).read())
                time.sleep(0.1)
        tenant = call("POST", f"{base}/v1/tenants", operator, {"name": "Fuzz", "tier": "pro"})
        tkey = call("POST", f"{base}/v1/tenants/{tenant['id']}/api-keys", operator,
                    {"name": "schemathesis"})["key"]
        # One agent so that the tenant has something to list.
        call("POST", f"{base}/v1/agents", tkey, {"name": "fuzz-bot"})

        for who, key in (("operator", operator), ("tenant admin", tkey), ("anonymous", None)):
            print(f"== schemathesis as {who} (seed {SEED}, {MAX_EXAMPLES} examples per operation)",
                  flush=True)
            cmd = [st, "--config-file", os.path.join(here, "schemathesis.toml"), "run",
                   f"{base}/openapi.json", "--url", base, "--seed", SEED,
                   "--max-examples", MAX_EXAMPLES, "--checks", CHECKS,
                   "--phases", "examples,coverage,fuzzing",
                   "--generation-database", "none", "--no-color",
                   "--request-timeout", "10", "--workers", "2",
                   "--report-dir", os.path.join(work, "report")]
            if key:
                cmd += ["-H", f"Authorization: Bearer {key}"]
            started = time.time()
            # In the scratch directory: schemathesis keeps a cache where it runs.
            rc = subprocess.call(cmd, cwd=work)
            print(f"   {who}: exit {rc} in {time.time() - started:.0f} s", flush=True)
            if rc != 0:
                failed.append(who)
            if server.poll() is not None:
                failed.append(f"the server exited ({server.returncode}) during the {who} run")
                break
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()
    text = open(log_path, errors="replace").read()
    if "panicked" in text:
        failed.append("the server logged a panic")
    if failed:
        print("server log (tail):\n" + text[-4000:])
        sys.exit("schemathesis found problems: " + "; ".join(failed))
    shutil.rmtree(work, ignore_errors=True)
    print("schemathesis: no server error, every response as documented (3 runs)")


main()
