// Test plumbing of the Actions' tests: the real `sentryagentd` on loopback,
// a fake GitHub (its OpenID Connect issuer with RSA keys, and the Actions
// ID token service), and a runner for an action's `index.js` as the
// Actions runtime starts it. Node's built-ins only.
'use strict';

const assert = require('node:assert');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');

/** A free loopback port. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

/** An RSA key pair with its kid. */
function rsaKey(kid) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' } };
}

/**
 * A fake GitHub: an OpenID Connect issuer (discovery and JWKS) whose keys
 * can rotate, and the Actions ID token service the runner's
 * `ACTIONS_ID_TOKEN_REQUEST_URL` points at. `claims` are the job's token
 * claims (GitHub's shape); the token service signs them for the asked
 * audience.
 */
async function fakeGitHub() {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const requestToken = `runtime-${crypto.randomUUID()}`;
  const state = {
    keys: [rsaKey('gh-1')],
    claims: {
      sub: 'repo:octo-org/octo-agent:ref:refs/heads/main',
      ref: 'refs/heads/main',
      ref_type: 'branch',
      sha: 'd6fde92930d4715a2b49857d24b940956b26d2d3',
      repository: 'octo-org/octo-agent',
      repository_id: '74',
      repository_owner: 'octo-org',
      repository_owner_id: '65',
      repository_visibility: 'private',
      run_id: '8123456789',
      run_number: '10',
      run_attempt: '1',
      runner_environment: 'github-hosted',
      actor: 'octocat',
      actor_id: '12',
      workflow: 'deploy',
      workflow_ref: 'octo-org/octo-agent/.github/workflows/deploy.yml@refs/heads/main',
      job_workflow_ref: 'octo-org/octo-agent/.github/workflows/deploy.yml@refs/heads/main',
      event_name: 'push',
      environment: 'prod',
    },
    tokenRequests: 0,
  };
  const sign = (claims) => {
    const key = state.keys[0];
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5t: 'abc', kid: key.kid }));
    const payload = b64url(JSON.stringify(claims));
    const sig = crypto.sign('sha256', Buffer.from(`${header}.${payload}`), key.privateKey);
    return `${header}.${payload}.${b64url(sig)}`;
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, issuer);
    const json = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/.well-known/openid-configuration') {
      return json(200, {
        issuer,
        jwks_uri: `${issuer}/.well-known/jwks`,
        subject_types_supported: ['public', 'pairwise'],
        response_types_supported: ['id_token'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
    }
    if (url.pathname === '/.well-known/jwks') {
      return json(200, { keys: state.keys.map((k) => k.jwk) });
    }
    if (url.pathname === '/_apis/token') {
      state.tokenRequests += 1;
      if (req.headers.authorization !== `Bearer ${requestToken}`) {
        return json(401, { message: 'bad runtime token' });
      }
      if (url.searchParams.get('api-version') !== '2.0') {
        return json(400, { message: 'api-version' });
      }
      const now = Math.floor(Date.now() / 1000);
      const claims = {
        jti: crypto.randomUUID(),
        ...state.claims,
        aud: url.searchParams.get('audience') || 'https://github.com/octo-org',
        iss: issuer,
        nbf: now - 5,
        iat: now,
        exp: now + 300,
      };
      return json(200, { count: 1, value: sign(claims) });
    }
    json(404, { message: 'not found' });
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    issuer,
    state,
    /** The runner's variables of a job with `id-token: write`. */
    runtimeEnv: {
      ACTIONS_ID_TOKEN_REQUEST_URL: `${issuer}/_apis/token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: requestToken,
    },
    /** The issuer rotates: a new key signs, the old one is no longer published. */
    rotate(kid) {
      state.keys = [rsaKey(kid)];
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** The `sentryagentd` binary built by cargo. */
function serverBinary() {
  const bin = process.env.SENTRYAGENTD || path.join(ROOT, 'target', 'debug', 'sentryagentd');
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} is missing: run \`cargo build -p sentryagentd\` first (or set SENTRYAGENTD)`);
  }
  return bin;
}

/**
 * The real server on a free loopback port, in memory, with plain-HTTP
 * loopback issuers allowed (the fake GitHub) and no refetch delay.
 */
async function startServer() {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const operatorKey = `sa_ak_${crypto.randomBytes(24).toString('base64url')}`;
  const child = spawn(serverBinary(), [], {
    env: {
      PATH: process.env.PATH,
      SENTRYAGENT_LISTEN: `127.0.0.1:${port}`,
      SENTRYAGENT_STORE: 'memory://',
      SENTRYAGENT_BOOTSTRAP_KEY: operatorKey,
      SENTRYAGENT_FEDERATION_ALLOW_HTTP_LOOPBACK: '1',
      SENTRYAGENT_FEDERATION_JWKS_MIN_REFETCH_SECONDS: '0',
      RUST_LOG: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const deadline = Date.now() + 20000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sentryagentd exited: ${stderr}`);
    try {
      const r = await fetch(`${base}/health/ready`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`sentryagentd did not become ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const api = async (method, p, key, body) => {
    const res = await fetch(`${base}${p}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  return {
    base,
    operatorKey,
    api,
    /** A tenant and an admin key of it. */
    async tenant(name) {
      const t = await api('POST', '/v1/tenants', operatorKey, { name, tier: 'pro' });
      assert.strictEqual(t.status, 201, JSON.stringify(t.body));
      const k = await api('POST', `/v1/tenants/${t.body.id}/api-keys`, operatorKey, { name: 'setup' });
      assert.strictEqual(k.status, 201, JSON.stringify(k.body));
      return { id: t.body.id, key: k.body.key };
    },
    stop() {
      child.kill('SIGTERM');
      return new Promise((resolve) => child.on('exit', resolve));
    },
  };
}

/**
 * Runs an action (`issue-token` or `register-agent`) as the runner does:
 * `node index.js` with its inputs as `INPUT_*` and `GITHUB_OUTPUT` a fresh
 * file. Returns the exit code, stdout and the outputs.
 */
function runAction(action, inputs, env = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sa-action-'));
  const outputFile = path.join(dir, 'output');
  fs.writeFileSync(outputFile, '');
  const childEnv = { PATH: process.env.PATH, GITHUB_OUTPUT: outputFile, ...env };
  for (const [k, v] of Object.entries(inputs)) {
    childEnv[`INPUT_${k.replace(/ /g, '_').toUpperCase()}`] = v;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'actions', action, 'index.js')], {
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const outputs = parseOutputs(fs.readFileSync(outputFile, 'utf8'));
      fs.rmSync(dir, { recursive: true, force: true });
      resolve({ code, stdout, stderr, outputs });
    });
  });
}

/** Parses `$GITHUB_OUTPUT` (`name<<DELIM` blocks and `name=value` lines). */
function parseOutputs(text) {
  const out = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, name, delim] = heredoc;
      const value = [];
      i += 1;
      while (i < lines.length && lines[i] !== delim) {
        value.push(lines[i]);
        i += 1;
      }
      out[name] = value.join('\n');
    } else if (line.includes('=')) {
      const at = line.indexOf('=');
      out[line.slice(0, at)] = line.slice(at + 1);
    }
  }
  return out;
}

/**
 * Checks that every secret in `secrets` is masked in `stdout` before it (or
 * anything derived) could appear, and appears nowhere else.
 */
function assertMasked(stdout, secrets) {
  for (const s of secrets.filter(Boolean)) {
    const lines = stdout.split('\n');
    const maskAt = lines.indexOf(`::add-mask::${s}`);
    assert.ok(maskAt >= 0, `a secret was not masked:\n${stdout}`);
    lines.forEach((l, i) => {
      if (i !== maskAt) assert.ok(!l.includes(s), `a secret was printed:\n${stdout}`);
    });
    const firstOther = lines.findIndex((l) => l && !l.startsWith('::add-mask::'));
    assert.ok(firstOther === -1 || firstOther > maskAt, `something was printed before a mask:\n${stdout}`);
  }
}

/** The claims of a JWT (not verified). */
function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

module.exports = { assertMasked, claimsOf, fakeGitHub, runAction, startServer };
