// The peer of the HTTP load test: oidc-provider 9 issuing EdDSA (Ed25519)
// JWT access tokens by the client_credentials grant, on loopback only.
//
//   PEER_PORT=9400 PEER_CLIENT_ID=bench PEER_CLIENT_SECRET=... node server.mjs
//
// One client authenticates with client_secret_basic; every token is for the
// resource `urn:sentryagent:loadtest` (the default resource), whose access
// tokens are JWTs signed with the provider's only key, an Ed25519 OKP key
// generated at start. Prints "listening <url>" once ready.

import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number.parseInt(process.env.PEER_PORT ?? '9400', 10);
const clientId = process.env.PEER_CLIENT_ID ?? 'loadtest';
const clientSecret = process.env.PEER_CLIENT_SECRET;
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`PEER_PORT must be a TCP port, not ${process.env.PEER_PORT}`);
  process.exit(2);
}
if (!clientSecret || clientSecret.length < 32) {
  console.error('PEER_CLIENT_SECRET must be set (at least 32 characters)');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const resource = 'urn:sentryagent:loadtest';

const { privateKey } = generateKeyPairSync('ed25519');
const jwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: 'loadtest-ed25519',
  alg: 'EdDSA',
  use: 'sig',
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'api',
    },
  ],
  jwks: { keys: [jwk] },
  scopes: ['api'],
  // The provider's only key is Ed25519: every signature it makes is EdDSA.
  clientDefaults: { id_token_signed_response_alg: 'EdDSA' },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'api',
          audience: resource,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'EdDSA' } },
        };
      },
    },
  },
});

// Only the token endpoint matters here; oidc-provider logs nothing per
// request by itself.
provider.on('server_error', (_ctx, err) => {
  console.error('server_error', err);
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
