// The `issue-token` action against the real server, a fake GitHub token
// service and a fake GitHub OpenID Connect issuer on loopback.
'use strict';

const assert = require('node:assert');
const { after, before, test } = require('node:test');
const { assertMasked, claimsOf, fakeGitHub, runAction, startServer } = require('./helpers.js');

let gh;
let server;
let agentId;

before(async () => {
  gh = await fakeGitHub();
  server = await startServer();
  const tenant = await server.tenant('Octo');
  const agent = await server.api('POST', '/v1/agents', tenant.key, {
    name: 'deployer',
    allowed_scopes: ['deploy', 'read'],
    issue_client_secret: false,
  });
  assert.strictEqual(agent.status, 201, JSON.stringify(agent.body));
  agentId = agent.body.id;
  const policy = await server.api('POST', '/v1/trust-policies', tenant.key, {
    name: 'deploy from main',
    issuer: gh.issuer,
    audience: server.base,
    conditions: {
      repository_id: '74',
      ref: 'refs/heads/main',
      workflow_ref: 'octo-org/octo-agent/.github/workflows/deploy.yml@*',
    },
    grant: { agent_id: agentId },
    max_token_ttl_seconds: 600,
  });
  assert.strictEqual(policy.status, 201, JSON.stringify(policy.body));
});

after(async () => {
  await server.stop();
  await gh.close();
});

const inputs = (extra = {}) => ({ url: server.base, 'agent-id': agentId, ...extra });

test('issues the agent an access token, every token masked before anything is printed', async () => {
  const r = await runAction('issue-token', inputs({ scope: 'deploy' }), gh.runtimeEnv);
  assert.strictEqual(r.code, 0, r.stdout + r.stderr);
  const token = r.outputs['access-token'];
  assert.ok(token, JSON.stringify(r.outputs));
  assert.strictEqual(r.outputs['expires-in'], '600');
  assertMasked(r.stdout, [gh.runtimeEnv.ACTIONS_ID_TOKEN_REQUEST_TOKEN, token]);
  const claims = claimsOf(token);
  assert.strictEqual(claims.sub, agentId);
  assert.strictEqual(claims.scope, 'deploy');
  assert.deepStrictEqual(claims.act, {
    iss: gh.issuer,
    sub: 'repo:octo-org/octo-agent:ref:refs/heads/main',
  });
  // The ID token itself was masked too (it was asked for once).
  const masks = r.stdout.split('\n').filter((l) => l.startsWith('::add-mask::'));
  assert.strictEqual(masks.length, 3, r.stdout);
});

test('without `permissions: id-token: write` it says so', async () => {
  const r = await runAction('issue-token', inputs(), {});
  assert.strictEqual(r.code, 1);
  assert.match(r.stdout, /::error::.*permissions: id-token: write/);
  assert.deepStrictEqual(r.outputs, {});
});

test('a token for another audience is refused', async () => {
  const r = await runAction('issue-token', inputs({ audience: 'https://elsewhere.example' }), gh.runtimeEnv);
  assert.strictEqual(r.code, 1);
  assert.match(r.stdout, /::error::.*invalid_grant.*trust policy/);
  assert.deepStrictEqual(r.outputs, {});
});

test('a workflow the policy does not match is refused', async () => {
  const saved = { ...gh.state.claims };
  gh.state.claims.ref = 'refs/heads/feature';
  gh.state.claims.sub = 'repo:octo-org/octo-agent:ref:refs/heads/feature';
  try {
    const r = await runAction('issue-token', inputs(), gh.runtimeEnv);
    assert.strictEqual(r.code, 1);
    assert.match(r.stdout, /::error::.*invalid_grant/);
    assert.deepStrictEqual(r.outputs, {});
  } finally {
    gh.state.claims = saved;
  }
});

test('a scope the agent does not have is refused', async () => {
  const r = await runAction('issue-token', inputs({ scope: 'admin' }), gh.runtimeEnv);
  assert.strictEqual(r.code, 1);
  assert.match(r.stdout, /::error::.*invalid_scope/);
});

test('after the issuer rotates its keys, re-runs still get tokens', async () => {
  const first = await runAction('issue-token', inputs(), gh.runtimeEnv);
  assert.strictEqual(first.code, 0, first.stdout);
  gh.rotate('gh-2');
  for (let i = 0; i < 2; i += 1) {
    const r = await runAction('issue-token', inputs(), gh.runtimeEnv);
    assert.strictEqual(r.code, 0, r.stdout);
    assert.notStrictEqual(r.outputs['access-token'], first.outputs['access-token']);
  }
});

test('bad inputs are clear errors', async () => {
  let r = await runAction('issue-token', { url: server.base }, gh.runtimeEnv);
  assert.strictEqual(r.code, 1);
  assert.match(r.stdout, /::error::input `agent-id` is required/);
  r = await runAction('issue-token', inputs({ url: 'not a url' }), gh.runtimeEnv);
  assert.strictEqual(r.code, 1);
  assert.match(r.stdout, /::error::input `url` is not a URL/);
  r = await runAction('issue-token', inputs({ 'agent-id': 'agt_nobody' }), gh.runtimeEnv);
  assert.strictEqual(r.code, 1);
  assert.match(r.stdout, /::error::.*invalid_grant/);
});
