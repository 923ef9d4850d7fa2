// The `register-agent` action: the job's GitHub ID token, exchanged for a
// management token of the tenant, which creates the agent or updates the
// one with the same name. See action.yml and docs/github-actions.md.
'use strict';

const sa = require('../lib/sentryagent.js');

const STATES = ['draft', 'active', 'deployed', 'listed', 'paused'];

async function main() {
  const base = sa.baseUrl(sa.input('url', { required: true }));
  const audience = sa.input('audience', { fallback: base });
  const tenant = sa.input('tenant', { required: true });
  const name = sa.input('name', { required: true });
  const description = sa.input('description');
  const capabilities = sa.listInput('capabilities');
  const visibility = sa.input('visibility');
  const state = sa.input('state');
  const key = sa.input('public-key') ? sa.publicKey(sa.input('public-key')) : null;
  const wantSecret = sa.booleanInput('output-client-secret');
  if (visibility && !['private', 'public'].includes(visibility)) {
    throw new sa.ActionError('input `visibility` is `private` or `public`');
  }
  if (state && !STATES.includes(state)) {
    throw new sa.ActionError(`input \`state\` is one of ${STATES.join(', ')}`);
  }

  const subject = await sa.idToken(audience);
  const mgmt = (await sa.exchange(base, subject, { tenant }, 'agents_write')).access_token;
  const agents = `${base}/v1/agents`;
  const found = await sa.request('GET', `${agents}?name=${encodeURIComponent(name)}`, { bearer: mgmt });
  if (found.status !== 200) {
    throw new sa.ActionError(`looking up agent ${name} failed (HTTP ${found.status}): ${sa.describe(found.body)}`);
  }
  let agent = found.body.items[0];
  let created = false;
  let secret = null;
  if (agent) {
    if (key && agent.did !== key.did) {
      throw new sa.ActionError(
        `agent ${name} exists with another key (${agent.did}); an agent's key does not change: ` +
          'register the new key under another name, or retire the agent first',
      );
    }
    const patch = {};
    if (description) patch.description = description;
    if (capabilities.length) patch.capabilities = capabilities;
    if (visibility) patch.visibility = visibility;
    if (Object.keys(patch).length) {
      const r = await sa.request('PATCH', `${agents}/${agent.id}`, { bearer: mgmt, json: patch });
      if (r.status !== 200) {
        throw new sa.ActionError(`updating agent ${name} failed (HTTP ${r.status}): ${sa.describe(r.body)}`);
      }
      agent = r.body;
    }
  } else {
    const body = { name, description, capabilities };
    if (visibility) body.visibility = visibility;
    if (state === 'draft' || state === 'active') body.state = state;
    if (key) {
      if (key.jwk) body.public_jwk = key.jwk;
      else body.did = key.did;
      body.issue_client_secret = false;
    }
    const r = await sa.request('POST', agents, { bearer: mgmt, json: body });
    if (r.status !== 201) {
      throw new sa.ActionError(`creating agent ${name} failed (HTTP ${r.status}): ${sa.describe(r.body)}`);
    }
    // What is shown once is masked before anything else is printed.
    secret = r.body.client_secret || null;
    sa.mask(secret);
    if (r.body.private_jwk) sa.mask(r.body.private_jwk.d);
    const { client_secret: _s, private_jwk: _k, client_id: _c, ...stored } = r.body;
    agent = stored;
    created = true;
  }
  if (state && agent.state !== state) {
    const r = await sa.request('POST', `${agents}/${agent.id}/lifecycle`, { bearer: mgmt, json: { state } });
    if (r.status !== 200) {
      throw new sa.ActionError(
        `moving agent ${name} from ${agent.state} to ${state} failed (HTTP ${r.status}): ${sa.describe(r.body)}`,
      );
    }
    agent = r.body;
  }
  sa.setOutput('agent-id', agent.id);
  sa.setOutput('client-id', agent.id);
  sa.setOutput('did', agent.did);
  sa.setOutput('created', String(created));
  if (wantSecret && secret) {
    sa.setOutput('client-secret', secret);
  }
  sa.info(`${created ? 'created' : 'updated'} agent ${name} (${agent.id}), state ${agent.state}`);
  if (wantSecret && !secret) {
    sa.info(
      created
        ? 'no client secret: the agent brought its own key'
        : 'no client secret output: the agent existed (a secret is shown only when it is created)',
    );
  }
}

sa.run(main);
