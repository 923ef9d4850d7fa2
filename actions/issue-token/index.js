// The `issue-token` action: the job's GitHub ID token, exchanged for an
// agent's access token. See action.yml and docs/github-actions.md.
'use strict';

const sa = require('../lib/sentryagent.js');

async function main() {
  const base = sa.baseUrl(sa.input('url', { required: true }));
  const audience = sa.input('audience', { fallback: base });
  const agentId = sa.input('agent-id', { required: true });
  const scope = sa.input('scope');
  const subject = await sa.idToken(audience);
  const token = await sa.exchange(base, subject, { client_id: agentId }, scope);
  sa.setOutput('access-token', token.access_token);
  sa.setOutput('expires-in', String(token.expires_in));
  sa.info(
    `issued an access token for agent ${agentId}, valid ${token.expires_in} s` +
      (token.scope ? `, scope: ${token.scope}` : ''),
  );
}

sa.run(main);
