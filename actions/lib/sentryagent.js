// Shared code of the SentryAgent GitHub Actions: inputs and outputs of the
// Actions runtime, the job's OpenID Connect token, and the token exchange
// with a SentryAgent server. Node's built-ins and `fetch` only: nothing to
// install, bundle or vendor.
'use strict';

const fs = require('node:fs');
const crypto = require('node:crypto');

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** An error whose message is for the workflow log as it is. */
class ActionError extends Error {}

/** The value of input `name` (trimmed), or `fallback` when empty. */
function input(name, { required = false, fallback = '' } = {}) {
  const key = `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
  const value = (process.env[key] || '').trim();
  if (!value && required) {
    throw new ActionError(`input \`${name}\` is required`);
  }
  return value || fallback;
}

/** A boolean input (`true`/`false`, `yes`/`no`, `1`/`0`). */
function booleanInput(name) {
  const v = input(name).toLowerCase();
  if (['', 'false', 'no', '0', 'off'].includes(v)) return false;
  if (['true', 'yes', '1', 'on'].includes(v)) return true;
  throw new ActionError(`input \`${name}\` must be true or false, not ${JSON.stringify(v)}`);
}

/** A list input: items separated by commas or new lines. */
function listInput(name) {
  return input(name)
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * Hides `value` in the workflow log from now on. Called before anything
 * else is printed about it.
 */
function mask(value) {
  if (typeof value === 'string' && value.length > 0) {
    process.stdout.write(`::add-mask::${value}\n`);
  }
}

/** Writes an output to `$GITHUB_OUTPUT` (multi-line safe). */
function setOutput(name, value) {
  const file = process.env.GITHUB_OUTPUT;
  if (!file) {
    throw new ActionError('GITHUB_OUTPUT is not set: this runs as a step of a GitHub Actions job');
  }
  const text = String(value);
  let delimiter;
  do {
    delimiter = `ghadelimiter_${crypto.randomUUID()}`;
  } while (text.includes(delimiter));
  fs.appendFileSync(file, `${name}<<${delimiter}\n${text}\n${delimiter}\n`);
}

function info(message) {
  process.stdout.write(`${message}\n`);
}

/** The server's base URL, without a trailing slash. */
function baseUrl(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw new ActionError(`input \`url\` is not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ActionError('input `url` must be an https URL');
  }
  return raw.replace(/\/+$/, '');
}

/**
 * The job's OpenID Connect ID token for `audience`, from the Actions
 * runtime. Masked before this returns.
 */
async function idToken(audience) {
  const requestUrl = process.env.ACTIONS_ID_TOKEN_REQUEST_URL;
  const requestToken = process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
  if (!requestUrl || !requestToken) {
    throw new ActionError(
      'this job cannot request an OpenID Connect token: give it `permissions: id-token: write` ' +
        '(ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set)',
    );
  }
  mask(requestToken);
  const url = new URL(requestUrl);
  url.searchParams.set('audience', audience);
  let res;
  try {
    res = await fetch(url, {
      headers: { authorization: `Bearer ${requestToken}`, accept: 'application/json' },
      redirect: 'error',
    });
  } catch (e) {
    throw new ActionError(`the Actions token service is unreachable: ${e.message}`);
  }
  const text = await res.text();
  if (!res.ok) {
    throw new ActionError(
      `the Actions token service refused the ID token request (HTTP ${res.status}); ` +
        'does the job have `permissions: id-token: write`?',
    );
  }
  let value;
  try {
    value = JSON.parse(text).value;
  } catch {
    value = undefined;
  }
  if (typeof value !== 'string' || value.split('.').length !== 3) {
    throw new ActionError('the Actions token service answered without an ID token');
  }
  mask(value);
  return value;
}

/** A JSON request to the server; `{status, body}`. */
async function request(method, url, { bearer, json, form } = {}) {
  const headers = { accept: 'application/json' };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  let body;
  if (json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body, redirect: 'error' });
  } catch (e) {
    throw new ActionError(`${method} ${new URL(url).pathname}: the server is unreachable: ${e.message}`);
  }
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  return { status: res.status, body: parsed };
}

/** The text of an error answer: an OAuth error or a problem document. */
function describe(body) {
  if (!body || typeof body !== 'object') return 'no details';
  if (body.error) return `${body.error}${body.error_description ? `: ${body.error_description}` : ''}`;
  if (body.title || body.detail) return [body.title, body.detail].filter(Boolean).join(': ');
  return 'no details';
}

/**
 * Exchanges the ID token at `<base>/oauth2/token` for a token of `target`
 * (`{client_id}` or `{tenant}`); the answer's access token is masked before
 * this returns.
 */
async function exchange(base, subjectToken, target, scope) {
  const form = {
    grant_type: TOKEN_EXCHANGE,
    subject_token: subjectToken,
    subject_token_type: ID_TOKEN_TYPE,
    requested_token_type: ACCESS_TOKEN_TYPE,
    ...target,
  };
  if (scope) form.scope = scope;
  const { status, body } = await request('POST', `${base}/oauth2/token`, { form });
  if (status === 200 && body && typeof body.access_token === 'string') {
    mask(body.access_token);
    return body;
  }
  if (body && body.error === 'invalid_grant') {
    throw new ActionError(
      'the IdP refused the token exchange (invalid_grant): no trust policy of the tenant accepts ' +
        "this job's token (check the policy's issuer, audience and conditions against the " +
        "workflow; the tenant's audit trail records why as token.exchange_failed)",
    );
  }
  throw new ActionError(`the token exchange failed (HTTP ${status}): ${describe(body)}`);
}

/** Runs an action's `main`, turning failures into `::error::` and exit 1. */
function run(main) {
  main().catch((e) => {
    const message = e instanceof ActionError ? e.message : `unexpected failure: ${e && e.stack ? e.stack : e}`;
    process.stdout.write(`::error::${message.replace(/\r?\n/g, ' ')}\n`);
    process.exitCode = 1;
  });
}

// did:key of an Ed25519 public key: `did:key:z` + base58btc(0xed 0x01 + key).
const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base58(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = '';
  while (n > 0n) {
    out = BASE58[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (const b of bytes) {
    if (b !== 0) break;
    out = `1${out}`;
  }
  return out;
}

/**
 * The agent key of input `public-key`: a `did:key` (Ed25519), or an
 * Ed25519 public JWK as JSON. Returns `{did, jwk}` (one of them as given,
 * `did` always).
 */
function publicKey(raw) {
  if (raw.startsWith('did:key:')) {
    return { did: raw, jwk: null };
  }
  let jwk;
  try {
    jwk = JSON.parse(raw);
  } catch {
    throw new ActionError('input `public-key` is neither a did:key nor an Ed25519 public JWK (JSON)');
  }
  if (!jwk || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new ActionError('input `public-key` must be an Ed25519 public JWK ({"kty":"OKP","crv":"Ed25519","x":...})');
  }
  if (jwk.d !== undefined) {
    throw new ActionError('input `public-key` holds a private key (`d`): give the public key only');
  }
  const x = Buffer.from(jwk.x, 'base64url');
  if (x.length !== 32) {
    throw new ActionError('input `public-key`: `x` is not 32 bytes');
  }
  const did = `did:key:z${base58(Buffer.concat([Buffer.from([0xed, 0x01]), x]))}`;
  return { did, jwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x } };
}

module.exports = {
  ActionError,
  booleanInput,
  baseUrl,
  describe,
  exchange,
  idToken,
  info,
  input,
  listInput,
  mask,
  publicKey,
  request,
  run,
  setOutput,
};
