/**
 * Token mode with the built-in issuer, through the composed registry: challenges, refused tokens
 * (each 401 invalid_token), scopes that do not cover the request (403 insufficient_scope), anonymous
 * pulls, mounts, and how a path realm becomes an absolute URL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode, randomContent, sha256 } from '../api/helpers.js';
import {
  type AuthRegistry,
  basicFor,
  challengeOf,
  claims,
  composeFromYaml,
  ecKey,
  expectRegistryError,
  hmacWithPublicKey,
  ISSUER,
  SERVICE,
  signToken,
  tamper,
  tokenRegistry,
  type UserName,
  unsignedToken,
} from './fixtures.js';

const key = ecKey();
let registry: AuthRegistry;
beforeAll(async () => {
  registry = await tokenRegistry({ key: key.pem });
});
afterAll(async () => {
  await registry.close();
});

const REALM = 'http://registry.test/auth/token';

/** A token from the built-in endpoint for user (anonymous when undefined) asking for scopes. */
async function tokenFor(user: UserName | undefined, ...scopes: string[]): Promise<string> {
  const query = new URLSearchParams({ service: SERVICE });
  for (const scope of scopes) query.append('scope', scope);
  const response = await registry.request(`/auth/token?${query.toString()}`, {
    headers: user ? { authorization: basicFor(user) } : {},
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { token: string }).token;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function seedBlob(repository: string): Promise<string> {
  const content = randomContent(64);
  const digest = sha256(content);
  const token = await tokenFor('alice', `repository:${repository}:pull,push`);
  const response = await registry.request(`/v2/${repository}/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    body: content,
    headers: bearer(token),
  });
  expect(response.status).toBe(201);
  return digest;
}

describe('the version check /v2/ in token mode', () => {
  it('answers 401 with a Bearer challenge naming realm and service, and no scope', async () => {
    const response = await registry.request('/v2/');
    expect(response.headers.get('www-authenticate')).toBe(`Bearer realm="${REALM}",service="${SERVICE}"`);
    await expectRegistryError(response, 401, 'UNAUTHORIZED');
  });

  it('answers 200 with any valid token, even one granting nothing', async () => {
    const response = await registry.request('/v2/', { headers: bearer(await tokenFor('carol')) });
    expect(response.status).toBe(200);
  });

  it('refuses basic credentials, asking for a token', async () => {
    const response = await registry.request('/v2/', { headers: { authorization: basicFor('alice') } });
    expect(challengeOf(response).scheme).toBe('Bearer');
    const body = await expectRegistryError(response, 401, 'UNAUTHORIZED');
    expect(body.errors[0]?.message).toBe('this registry takes bearer tokens');
  });
});

describe('refused tokens', () => {
  const now = () => Math.floor(Date.now() / 1000);
  const pullTeamApp = { sub: 'alice', access: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] };
  const cases: [string, () => Promise<string> | string, string][] = [
    [
      'expired',
      () => signToken(key.privateKey, claims({ ...pullTeamApp, exp: now() - 120 })),
      'token expired',
    ],
    [
      'not yet valid',
      () => signToken(key.privateKey, claims({ ...pullTeamApp, nbf: now() + 600 })),
      'token not yet valid',
    ],
    [
      'tampered',
      async () => tamper(await signToken(key.privateKey, claims(pullTeamApp)), 'payload'),
      'token signature invalid',
    ],
    ['unsigned (alg none)', () => unsignedToken(claims(pullTeamApp)), 'token signing algorithm not accepted'],
    [
      'HMAC-signed with the public key',
      () => hmacWithPublicKey(key.publicKey, claims(pullTeamApp)),
      'token signing algorithm not accepted',
    ],
    [
      'for another audience',
      () => signToken(key.privateKey, claims({ ...pullTeamApp, aud: 'elsewhere' })),
      'token audience is not this registry',
    ],
    [
      'from another issuer',
      () => signToken(key.privateKey, claims({ ...pullTeamApp, iss: 'mallory' })),
      'token issuer not accepted',
    ],
    [
      'signed by an unknown key',
      () => signToken(ecKey().privateKey, claims(pullTeamApp)),
      'token signature invalid',
    ],
    [
      'a refresh token',
      () => signToken(key.privateKey, claims({ ...pullTeamApp, token_use: 'refresh', pwd: 'x' })),
      'not an access token',
    ],
  ];

  it.each(cases)(
    'answers 401 invalid_token to a token %s, without repeating it',
    async (_what, make, message) => {
      const token = await make();
      const response = await registry.request('/v2/team/app/tags/list', { headers: bearer(token) });
      expect(challengeOf(response)).toEqual({
        scheme: 'Bearer',
        params: { realm: REALM, service: SERVICE, scope: 'repository:team/app:pull', error: 'invalid_token' },
      });
      const body = await expectRegistryError(response, 401, 'UNAUTHORIZED', [token]);
      expect(body.errors[0]?.message).toBe(`invalid token: ${message}`);
    },
  );
});

describe('scopes in token mode', () => {
  it('asks for the repository scope when no token comes', async () => {
    const response = await registry.request('/v2/team/app/manifests/latest', { method: 'HEAD' });
    expect(response.status).toBe(401);
    expect(challengeOf(response).params).toEqual({
      realm: REALM,
      service: SERVICE,
      scope: 'repository:team/app:pull',
    });
  });

  it("answers 403 insufficient_scope naming B's scope to a token for A", async () => {
    const token = await tokenFor('alice', 'repository:team/a:pull');
    const ok = await registry.request('/v2/team/a/tags/list', { headers: bearer(token) });
    // Allowed through to the registry, which does not know the repository.
    await expectRegistryError(ok, 404, 'NAME_UNKNOWN');
    const response = await registry.request('/v2/team/b/tags/list', { headers: bearer(token) });
    expect(challengeOf(response).params).toEqual({
      realm: REALM,
      service: SERVICE,
      scope: 'repository:team/b:pull',
      error: 'insufficient_scope',
    });
    const body = await expectRegistryError(response, 403, 'DENIED', [token]);
    expect(body.errors[0]?.message).toBe(
      'requested access to the resource is denied: alice may not pull on team/b',
    );
  });

  it('refuses a push (upload and manifest) with a pull-only token', async () => {
    const token = await tokenFor('alice', 'repository:team/app:pull');
    const upload = await registry.request('/v2/team/app/blobs/uploads/', {
      method: 'POST',
      headers: bearer(token),
    });
    expect(challengeOf(upload).params.scope).toBe('repository:team/app:pull,push');
    expect(challengeOf(upload).params.error).toBe('insufficient_scope');
    await expectRegistryError(upload, 403, 'DENIED');
    const manifest = await registry.request('/v2/team/app/manifests/v1', {
      method: 'PUT',
      body: encode('{}'),
      headers: { ...bearer(token), 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    await expectRegistryError(manifest, 403, 'DENIED');
    const pushToken = await tokenFor('alice', 'repository:team/app:pull,push');
    const allowed = await registry.request('/v2/team/app/blobs/uploads/', {
      method: 'POST',
      headers: bearer(pushToken),
    });
    expect(allowed.status).toBe(202);
  });

  it('answers the catalog without its scope with 403 to a user and 401 anonymously', async () => {
    const bobToken = await tokenFor('bob', 'registry:catalog:*');
    const bob = await registry.request('/v2/_catalog', { headers: bearer(bobToken) });
    expect(challengeOf(bob).params.scope).toBe('registry:catalog:*');
    await expectRegistryError(bob, 403, 'DENIED');
    const anonymous = await registry.request('/v2/_catalog');
    expect(challengeOf(anonymous).params).toEqual({
      realm: REALM,
      service: SERVICE,
      scope: 'registry:catalog:*',
    });
    await expectRegistryError(anonymous, 401, 'UNAUTHORIZED');
    const alice = await registry.request('/v2/_catalog', {
      headers: bearer(await tokenFor('alice', 'registry:catalog:*')),
    });
    expect(alice.status).toBe(200);
  });

  it('lets token-less requests pull public/* only, and never push', async () => {
    const digest = await seedBlob('public/base');
    const pull = await registry.request(`/v2/public/base/blobs/${digest}`);
    expect(pull.status).toBe(200);
    const push = await registry.request('/v2/public/base/blobs/uploads/', { method: 'POST' });
    expect(challengeOf(push).params.scope).toBe('repository:public/base:pull,push');
    await expectRegistryError(push, 401, 'UNAUTHORIZED');
    const hidden = await registry.request('/v2/team/app/tags/list');
    await expectRegistryError(hidden, 401, 'UNAUTHORIZED');
  });

  it('answers 401 (not 403) to an anonymous token that lacks the scope', async () => {
    const token = await tokenFor(undefined, 'repository:team/app:pull');
    const response = await registry.request('/v2/team/app/tags/list', { headers: bearer(token) });
    expect(challengeOf(response).params.error).toBe('insufficient_scope');
    await expectRegistryError(response, 401, 'UNAUTHORIZED');
  });

  it('mounts with pull on the source in the token (201), and starts an upload without it (202)', async () => {
    const digest = await seedBlob('team/app');
    const bobToken = await tokenFor('bob', 'repository:bob/copy:pull,push', 'repository:team/app:pull');
    const mounted = await registry.request(`/v2/bob/copy/blobs/uploads/?mount=${digest}&from=team/app`, {
      method: 'POST',
      headers: bearer(bobToken),
    });
    expect(mounted.status).toBe(201);
    expect(mounted.headers.get('docker-content-digest')).toBe(digest);
    const carolToken = await tokenFor('carol', 'repository:carol/copy:pull,push', 'repository:team/app:pull');
    const fallback = await registry.request(`/v2/carol/copy/blobs/uploads/?mount=${digest}&from=team/app`, {
      method: 'POST',
      headers: bearer(carolToken),
    });
    expect(fallback.status).toBe(202);
    const head = await registry.request(`/v2/carol/copy/blobs/${digest}`, {
      method: 'HEAD',
      headers: bearer(carolToken),
    });
    expect(head.status).toBe(404);
  });
});

describe('the realm in challenges', () => {
  it("resolves a path realm against the request's origin", async () => {
    const response = await registry.request('/v2/', { origin: 'https://registry.example.com:5443' });
    expect(challengeOf(response).params.realm).toBe('https://registry.example.com:5443/auth/token');
  });

  it('resolves it against http.host when configured, and serves the endpoint on its path', async () => {
    const hosted = await tokenRegistry({ extra: 'http: {host: "https://public.example.com"}\n' });
    try {
      const response = await hosted.request('/v2/', { origin: 'http://10.0.0.5:5000' });
      expect(challengeOf(response).params.realm).toBe('https://public.example.com/auth/token');
      const token = await hosted.request(`/auth/token?service=${SERVICE}`, {
        origin: 'http://10.0.0.5:5000',
      });
      expect(token.status).toBe(200);
    } finally {
      await hosted.close();
    }
  });

  it('keeps an absolute realm as it is', async () => {
    const absolute = await composeFromYaml(
      `version: 0.1\nstorage: {inmemory: {}}\nauth:\n  token:\n    realm: https://auth.example.com/token\n` +
        `    service: ${SERVICE}\n    issuer: ${ISSUER}\n    signingkey: $DIR/key.pem\n    htpasswd: $DIR/htpasswd\n`,
      { 'key.pem': key.pem, htpasswd: '' },
    );
    try {
      const response = await absolute.request('/v2/team/app/tags/list');
      expect(challengeOf(response).params.realm).toBe('https://auth.example.com/token');
    } finally {
      await absolute.close();
    }
  });
});
