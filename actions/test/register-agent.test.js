// The `register-agent` action against the real server, a fake GitHub token
// service and a fake GitHub OpenID Connect issuer on loopback.
'use strict';

const assert = require('node:assert');
const crypto = require('node:crypto');
const { after, before, test } = require('node:test');
const { assertMasked, fakeGitHub, runAction, startServer } = require('./helpers.js');

let gh;
let server;
let tenant;

before(async () => {
  gh = await fakeGitHub();
  server = await startServer();
  tenant = await server.tenant('Octo');
  const policy = await server.api('POST', '/v1/trust-policies', tenant.key, {
    name: 'registrar',
    issuer: gh.issuer,
    audience: server.base,
    conditions: { repository_owner_id: '65', ref: 'refs/heads/main' },
    grant: { admin_scopes: ['agents_write'] },
    max_token_ttl_seconds: 300,
  });
  assert.strictEqual(policy.status, 201, JSON.stringify(policy.body));
});

after(async () => {
  await server.stop();
  await gh.close();
});

const inputs = (extra) => ({ url: server.base, tenant: tenant.id, ...extra });

async function agentsNamed(name) {
  const r = await server.api('GET', `/v1/agents?name=${encodeURIComponent(name)}`, tenant.key);
  assert.strictEqual(r.status, 200);
  return r.body.items;
}

test('creates the agent, then re-runs update the same one', async () => {
  const first = await runAction(
    'register-agent',
    inputs({
      name: 'ci-bot',
      description: 'Deploys from CI',
      capabilities: 'ocr, translate',
      visibility: 'public',
      state: 'listed',
      'output-client-secret': 'true',
    }),
    gh.runtimeEnv,
  );
  assert.strictEqual(first.code, 0, first.stdout + first.stderr);
  const o = first.outputs;
  assert.match(o['agent-id'], /^agt_/);
  assert.strictEqual(o['client-id'], o['agent-id']);
  assert.match(o.did, /^did:key:z6Mk/);
  assert.strictEqual(o.created, 'true');
  assert.match(o['client-secret'], /^sa_cs_/);
  assertMasked(first.stdout, [gh.runtimeEnv.ACTIONS_ID_TOKEN_REQUEST_TOKEN, o['client-secret']]);
  let [agent] = await agentsNamed('ci-bot');
  assert.strictEqual(agent.id, o['agent-id']);
  assert.deepStrictEqual(agent.capabilities, ['ocr', 'translate']);
  assert.strictEqual(agent.state, 'listed');
  assert.strictEqual(agent.visibility, 'public');

  for (const description of ['Deploys from CI, v2', 'Deploys from CI, v2']) {
    const again = await runAction(
      'register-agent',
      inputs({ name: 'ci-bot', description, state: 'listed', 'output-client-secret': 'true' }),
      gh.runtimeEnv,
    );
    assert.strictEqual(again.code, 0, again.stdout);
    assert.strictEqual(again.outputs['agent-id'], o['agent-id']);
    assert.strictEqual(again.outputs.did, o.did);
    assert.strictEqual(again.outputs.created, 'false');
    assert.strictEqual(again.outputs['client-secret'], undefined);
    [agent] = await agentsNamed('ci-bot');
    assert.strictEqual(agent.description, description);
  }
  assert.strictEqual((await agentsNamed('ci-bot')).length, 1);
  // Its actions are audited under the trust policy.
  const audit = await server.api('GET', '/v1/audit?action=agent.registered', tenant.key);
  const ev = audit.body.items.find((e) => e.target === o['agent-id']);
  assert.match(ev.actor, /^trust_policy:tp_/);
});

test('with a public key, no client secret ever exists', async () => {
  const { publicKey } = crypto.generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  const r = await runAction(
    'register-agent',
    inputs({ name: 'keyed-bot', 'public-key': JSON.stringify(jwk), 'output-client-secret': 'true' }),
    gh.runtimeEnv,
  );
  assert.strictEqual(r.code, 0, r.stdout);
  assert.strictEqual(r.outputs['client-secret'], undefined);
  assert.match(r.stdout, /no client secret: the agent brought its own key/);
  const [agent] = await agentsNamed('keyed-bot');
  assert.strictEqual(agent.did, r.outputs.did);
  const audit = await server.api('GET', '/v1/audit?action=agent.registered', tenant.key);
  const ev = audit.body.items.find((e) => e.target === agent.id);
  assert.strictEqual(ev.details.secret_issued, 'false');
  // The same key as a did:key is the same agent.
  const again = await runAction('register-agent', inputs({ name: 'keyed-bot', 'public-key': agent.did }), gh.runtimeEnv);
  assert.strictEqual(again.code, 0, again.stdout);
  assert.strictEqual(again.outputs['agent-id'], agent.id);
  // Another key is refused: an agent's key does not change.
  const other = crypto.generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });
  const refused = await runAction(
    'register-agent',
    inputs({ name: 'keyed-bot', 'public-key': JSON.stringify(other) }),
    gh.runtimeEnv,
  );
  assert.strictEqual(refused.code, 1);
  assert.match(refused.stdout, /::error::agent keyed-bot exists with another key/);
  // A private key is refused before anything is sent.
  const priv = crypto.generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  const leaked = await runAction(
    'register-agent',
    inputs({ name: 'leaky-bot', 'public-key': JSON.stringify(priv) }),
    gh.runtimeEnv,
  );
  assert.strictEqual(leaked.code, 1);
  assert.match(leaked.stdout, /::error::input `public-key` holds a private key/);
  assert.strictEqual((await agentsNamed('leaky-bot')).length, 0);
});

test('without `permissions: id-token: write` it says so', async () => {
  const r = await runAction('register-agent', inputs({ name: 'nope' }), {});
  assert.strictEqual(r.code, 1);
  assert.match(r.stdout, /::error::.*permissions: id-token: write/);
});

test('a workflow the policy does not match, or another audience, is refused', async () => {
  const saved = { ...gh.state.claims };
  gh.state.claims.repository_owner_id = '66';
  try {
    const r = await runAction('register-agent', inputs({ name: 'stranger' }), gh.runtimeEnv);
    assert.strictEqual(r.code, 1);
    assert.match(r.stdout, /::error::.*invalid_grant/);
  } finally {
    gh.state.claims = saved;
  }
  const r = await runAction(
    'register-agent',
    inputs({ name: 'stranger', audience: 'https://elsewhere.example' }),
    gh.runtimeEnv,
  );
  assert.strictEqual(r.code, 1);
  assert.match(r.stdout, /::error::.*invalid_grant/);
  assert.strictEqual((await agentsNamed('stranger')).length, 0);
});

test('after the issuer rotates its keys, re-runs still work', async () => {
  gh.rotate('gh-rotated');
  const r = await runAction('register-agent', inputs({ name: 'ci-bot' }), gh.runtimeEnv);
  assert.strictEqual(r.code, 0, r.stdout);
  assert.strictEqual(r.outputs.created, 'false');
});

test('bad inputs are clear errors', async () => {
  let r = await runAction('register-agent', inputs({ name: 'x', visibility: 'secret' }), gh.runtimeEnv);
  assert.strictEqual(r.code, 1);
  assert.match(r.stdout, /::error::input `visibility` is `private` or `public`/);
  r = await runAction('register-agent', inputs({ name: 'x', state: 'gone' }), gh.runtimeEnv);
  assert.match(r.stdout, /::error::input `state` is one of/);
  r = await runAction('register-agent', { url: server.base, name: 'x' }, gh.runtimeEnv);
  assert.match(r.stdout, /::error::input `tenant` is required/);
  r = await runAction('register-agent', inputs({ name: 'x', 'public-key': 'nonsense' }), gh.runtimeEnv);
  assert.match(r.stdout, /::error::input `public-key` is neither/);
});
