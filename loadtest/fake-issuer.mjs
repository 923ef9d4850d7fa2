// A fake OpenID Connect issuer for loadtest/exchange.sh: discovery and a
// JWKS on 127.0.0.1 with one RSA (2048-bit, RS256) and one P-256 (ES256)
// key, and one subject token signed by each, shaped like a GitHub Actions
// ID token. Node's built-ins only.
//
//   ISSUER_PORT=<port> ISSUER_AUDIENCE=<aud> ISSUER_TOKENS=<file> node fake-issuer.mjs
//
// Writes `RS256 <token>` and `ES256 <token>` lines to ISSUER_TOKENS once it
// listens (valid for two hours from now: the load runs reuse them), and
// serves until stopped.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const port = Number(process.env.ISSUER_PORT);
const audience = process.env.ISSUER_AUDIENCE;
const tokensFile = process.env.ISSUER_TOKENS;
if (!Number.isInteger(port) || port <= 0 || port > 65535 || !audience || !tokensFile) {
  console.error('fake-issuer: set ISSUER_PORT, ISSUER_AUDIENCE and ISSUER_TOKENS');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keys = [
  { kid: 'load-rsa', alg: 'RS256', pair: rsa },
  { kid: 'load-ec', alg: 'ES256', pair: ec },
];
const jwks = {
  keys: keys.map(({ kid, alg, pair }) => ({
    ...pair.publicKey.export({ format: 'jwk' }),
    kid,
    alg,
    use: 'sig',
  })),
};

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function sign({ kid, alg, pair }) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer,
    aud: audience,
    sub: 'repo:octo-org/octo-agent:ref:refs/heads/main',
    ref: 'refs/heads/main',
    repository: 'octo-org/octo-agent',
    repository_id: '74',
    repository_owner: 'octo-org',
    repository_owner_id: '65',
    run_id: '8123456789',
    workflow_ref: 'octo-org/octo-agent/.github/workflows/deploy.yml@refs/heads/main',
    event_name: 'push',
    jti: crypto.randomUUID(),
    nbf: now - 5,
    iat: now,
    exp: now + 7200,
  };
  const input = `${b64url(JSON.stringify({ typ: 'JWT', alg, kid }))}.${b64url(JSON.stringify(claims))}`;
  const signature =
    alg === 'RS256'
      ? crypto.sign('sha256', Buffer.from(input), pair.privateKey)
      : crypto.sign('sha256', Buffer.from(input), { key: pair.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64url(signature)}`;
}

const server = http.createServer((req, res) => {
  const json = (status, body, headers = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  if (req.url === '/.well-known/openid-configuration') {
    return json(200, { issuer, jwks_uri: `${issuer}/.well-known/jwks` });
  }
  if (req.url === '/.well-known/jwks') {
    return json(200, jwks, { 'cache-control': 'max-age=86400' });
  }
  return json(404, { message: 'not found' });
});

server.listen(port, '127.0.0.1', () => {
  fs.writeFileSync(tokensFile, keys.map((k) => `${k.alg} ${sign(k)}`).join('\n') + '\n');
  console.log(`fake issuer on ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
