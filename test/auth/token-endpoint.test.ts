/**
 * The built-in token endpoint (/auth/token) of a composed registry: the token spec's GET, the OAuth2
 * POST form with password and refresh-token grants, what a token grants, and each refusal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accessOf,
  type AuthRegistry,
  basic,
  basicFor,
  bcryptLine,
  ecKey,
  type ErrorBody,
  expectNoSecret,
  expectRegistryError,
  SERVICE,
  tokenRegistry,
  USERS,
} from './fixtures.js';

interface TokenBody {
  token: string;
  access_token: string;
  token_type: string;
  expires_in: number;
  issued_at: string;
  scope: string;
  refresh_token?: string;
}

const key = ecKey();
const lines = {
  alice: bcryptLine('alice', USERS.alice),
  bob: bcryptLine('bob', USERS.bob),
  carol: bcryptLine('carol', USERS.carol),
};
const htpasswd = (entries: Record<string, string>) => Object.values(entries).join('\n');

let registry: AuthRegistry;
beforeAll(async () => {
  registry = await tokenRegistry({ key: key.pem, htpasswd: htpasswd(lines) });
});
afterAll(async () => {
  await registry.close();
});

function get(query: Record<string, string | string[]>, authorization?: string, on = registry) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) for (const v of [value].flat()) params.append(name, v);
  return on.request(`/auth/token?${params.toString()}`, { headers: authorization ? { authorization } : {} });
}

function post(form: Record<string, string | string[]>, on = registry, contentType?: string) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(form)) for (const v of [value].flat()) params.append(name, v);
  return on.request('/auth/token', {
    method: 'POST',
    body: params.toString(),
    headers: { 'content-type': contentType ?? 'application/x-www-form-urlencoded; charset=utf-8' },
  });
}

async function granted(response: Response): Promise<TokenBody> {
  const text = await response.text();
  expect(response.status, text).toBe(200);
  expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
  expect(Number(response.headers.get('content-length'))).toBe(Buffer.byteLength(text));
  expect(response.headers.get('cache-control')).toBe('no-store');
  const body = JSON.parse(text) as TokenBody;
  expect(body.access_token).toBe(body.token);
  expect(body.token_type).toBe('Bearer');
  expect(body.expires_in).toBe(300);
  expect(Math.abs(Date.parse(body.issued_at) - Date.now())).toBeLessThan(5_000);
  return body;
}

/** The registry error code the token endpoint pairs with each OAuth2 error. */
const REGISTRY_CODE: Record<string, string> = {
  invalid_client: 'UNAUTHORIZED',
  invalid_grant: 'UNAUTHORIZED',
  invalid_request: 'UNSUPPORTED',
  invalid_scope: 'UNSUPPORTED',
  slow_down: 'TOOMANYREQUESTS',
};

/** An OAuth-shaped error: the registry's errors body plus error and error_description. */
async function oauthError(response: Response, status: number, error: string, secrets: string[] = []) {
  const body = await expectRegistryError(response, status, REGISTRY_CODE[error] ?? error, secrets);
  expect(body.error).toBe(error);
  expect(body.error_description).toBe(body.errors[0]?.message);
  expect(response.headers.get('cache-control')).toBe('no-store');
  return body;
}

describe('GET /auth/token', () => {
  it('grants the intersection of the scopes asked for and the rules: push on a pull-only repository gives pull', async () => {
    const body = await granted(
      await get({ service: SERVICE, scope: 'repository:team/app:pull,push' }, basicFor('bob')),
    );
    expect(body.scope).toBe('repository:team/app:pull');
    expect(accessOf(body.token)).toEqual([{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
    expect(body.refresh_token).toBeUndefined();
    const push = await registry.request('/v2/team/app/blobs/uploads/', {
      method: 'POST',
      headers: { authorization: `Bearer ${body.token}` },
    });
    expect(push.status).toBe(403);
  });

  it('does not grant the catalog without the catalog rule, and grants it with one', async () => {
    const bob = await granted(await get({ service: SERVICE, scope: 'registry:catalog:*' }, basicFor('bob')));
    expect(bob.scope).toBe('');
    expect(accessOf(bob.token)).toEqual([]);
    const alice = await granted(
      await get({ service: SERVICE, scope: 'registry:catalog:*' }, basicFor('alice')),
    );
    expect(accessOf(alice.token)).toEqual([{ type: 'registry', name: 'catalog', actions: ['*'] }]);
  });

  it('reads several scope parameters, and several scopes in one, and works without service', async () => {
    const body = await granted(
      await get(
        { scope: ['repository:bob/a:pull repository:bob/b:push,delete', 'repository:carol/x:pull'] },
        basicFor('bob'),
      ),
    );
    expect(body.scope).toBe('repository:bob/a:pull repository:bob/b:push,delete');
  });

  it('gives an anonymous token what the anonymous rules allow, and nothing more', async () => {
    const body = await granted(
      await get({
        service: SERVICE,
        scope: ['repository:public/base:pull,push', 'repository:team/app:pull'],
      }),
    );
    expect(body.scope).toBe('repository:public/base:pull');
    expect(body.refresh_token).toBeUndefined();
    const offline = await granted(await get({ service: SERVICE, offline_token: 'true' }));
    expect(offline.refresh_token).toBeUndefined();
  });

  it('gives a refresh token with offline_token=true', async () => {
    const body = await granted(await get({ service: SERVICE, offline_token: 'true' }, basicFor('carol')));
    expect(body.refresh_token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  it('refuses a wrong password and an unknown user alike: 401 invalid_client with a Basic challenge', async () => {
    const wrong = await get({ service: SERVICE }, basic('bob', 'guess-77'));
    const unknown = await get({ service: SERVICE }, basic('ghost', 'guess-77'));
    for (const response of [wrong, unknown]) {
      expect(response.headers.get('www-authenticate')).toBe(`Basic realm="${SERVICE}"`);
    }
    const a = await oauthError(wrong, 401, 'invalid_client', ['guess-77']);
    const b = await oauthError(unknown, 401, 'invalid_client', ['guess-77']);
    expect(a).toEqual(b);
    expect(a.errors[0]).toEqual({
      code: 'UNAUTHORIZED',
      message: 'invalid username or password',
      detail: null,
    });
  });

  it('refuses an unknown service, too many scopes and a malformed scope with 400', async () => {
    const service = await oauthError(await get({ service: 'other.registry' }), 400, 'invalid_request');
    expect(service.errors[0]?.message).toBe('unknown service "other.registry"; this is registry.test');
    const many = Array.from({ length: 33 }, (_, i) => `repository:bob/r${i}:pull`);
    const tooMany = await oauthError(
      await get({ service: SERVICE, scope: many }, basicFor('bob')),
      400,
      'invalid_request',
    );
    expect(tooMany.errors[0]?.message).toBe('at most 32 scopes may be asked for at once');
    expect((await get({ scope: many.slice(0, 32) }, basicFor('bob'))).status).toBe(200);
    const malformed = await oauthError(await get({ scope: 'repository:bob/a' }), 400, 'invalid_scope');
    expect(malformed.errors[0]?.message).toBe(
      'malformed scope "repository:bob/a": expected type:name:actions',
    );
  });

  it('answers 405 with Allow to other methods', async () => {
    const response = await registry.request('/auth/token', { method: 'PUT', body: 'x' });
    expect(response.headers.get('allow')).toBe('GET, POST');
    const body = await expectRegistryError(response, 405, 'UNSUPPORTED');
    expect(body.errors[0]?.message).toBe('PUT is not supported on the token endpoint');
  });
});

describe('POST /auth/token', () => {
  it('issues a token for the password grant, with a refresh token for access_type=offline', async () => {
    const form = { grant_type: 'password', username: 'bob', password: USERS.bob, service: SERVICE };
    const plain = await granted(
      await post({ ...form, scope: 'repository:team/app:pull,push', client_id: 'docker' }),
    );
    expect(plain.scope).toBe('repository:team/app:pull');
    expect(plain.refresh_token).toBeUndefined();
    const offline = await granted(await post({ ...form, access_type: 'offline' }));
    expect(typeof offline.refresh_token).toBe('string');
  });

  it('refuses a wrong password with 400 invalid_grant, and missing fields with invalid_request', async () => {
    const wrong = await post({ grant_type: 'password', username: 'bob', password: 'guess-88' });
    const body = await oauthError(wrong, 400, 'invalid_grant', ['guess-88']);
    expect(body.errors[0]?.code).toBe('UNAUTHORIZED');
    await oauthError(await post({ grant_type: 'password', password: 'x' }), 400, 'invalid_request');
    const grant = await oauthError(await post({ grant_type: 'client_credentials' }), 400, 'invalid_request');
    expect(grant.errors[0]?.message).toBe(
      'grant_type must be password or refresh_token, got "client_credentials"',
    );
    await oauthError(await post({ username: 'bob', password: USERS.bob }), 400, 'invalid_request');
  });

  it('refuses a body that is not a form', async () => {
    const json = await post({ grant_type: 'password' }, registry, 'application/json');
    const body = await oauthError(json, 400, 'invalid_request');
    expect(body.errors[0]?.message).toBe(
      'the token request must be an application/x-www-form-urlencoded form',
    );
  });

  it('trades a refresh token for a new access token, granted by the current rules', async () => {
    const { refresh_token: refresh } = await granted(await get({ offline_token: 'true' }, basicFor('bob')));
    expect(refresh).toBeDefined();
    const body = await granted(
      await post({
        grant_type: 'refresh_token',
        refresh_token: refresh ?? '',
        scope: 'repository:bob/x:push',
      }),
    );
    expect(body.scope).toBe('repository:bob/x:push');
    expect(body.refresh_token).toBeUndefined();
    const used = await registry.request('/v2/bob/x/blobs/uploads/', {
      method: 'POST',
      headers: { authorization: `Bearer ${body.token}` },
    });
    // The token holds push but not pull, and an upload needs both.
    expect(used.status).toBe(403);
  });

  it('refuses a bad refresh token with 400 invalid_grant, and an access token in its place', async () => {
    const garbage = await oauthError(
      await post({ grant_type: 'refresh_token', refresh_token: 'a.b.c' }),
      400,
      'invalid_grant',
      ['a.b.c'],
    );
    expect(garbage.errors[0]?.message).toMatch(
      /^invalid refresh token \(token not verifiable \(ERR_JWS_INVALID\)\); log in again$/,
    );
    const { token } = await granted(await get({}, basicFor('bob')));
    const access = await oauthError(
      await post({ grant_type: 'refresh_token', refresh_token: token }),
      400,
      'invalid_grant',
      [token],
    );
    expect(access.errors[0]?.message).toBe('invalid refresh token (not a refresh token); log in again');
    await oauthError(await post({ grant_type: 'refresh_token' }), 400, 'invalid_request');
  });

  it('revokes refresh tokens when the user’s htpasswd entry changes, and only theirs', async () => {
    const refreshOf = async (user: 'alice' | 'bob') =>
      (await granted(await get({ offline_token: 'true' }, basicFor(user)))).refresh_token ?? '';
    const [alice, bob] = [await refreshOf('alice'), await refreshOf('bob')];
    const changed = await tokenRegistry({
      key: key.pem,
      htpasswd: htpasswd({ ...lines, bob: bcryptLine('bob', 'a-new-password') }),
    });
    try {
      const revoked = await oauthError(
        await post({ grant_type: 'refresh_token', refresh_token: bob }, changed),
        400,
        'invalid_grant',
        [bob],
      );
      expect(revoked.errors[0]?.message).toBe('invalid refresh token (revoked); log in again');
      await granted(await post({ grant_type: 'refresh_token', refresh_token: alice }, changed));
    } finally {
      await changed.close();
    }
    // A user removed from the file loses theirs too.
    const removed = await tokenRegistry({ key: key.pem, htpasswd: htpasswd({ alice: lines.alice }) });
    try {
      await oauthError(
        await post({ grant_type: 'refresh_token', refresh_token: bob }, removed),
        400,
        'invalid_grant',
      );
    } finally {
      await removed.close();
    }
  });
});

describe('failed logins on the token endpoint', () => {
  it('answers 429 with Retry-After after ten failures, to the right password as well', async () => {
    const fresh = await tokenRegistry({ key: key.pem, htpasswd: htpasswd(lines) });
    try {
      for (let i = 0; i < 10; i++) {
        const response = await post(
          { grant_type: 'password', username: 'carol', password: `guess-${i}` },
          fresh,
        );
        expect(response.status).toBe(400);
      }
      const right = await get({ service: SERVICE }, basicFor('carol'), fresh);
      const body: ErrorBody = await oauthError(right, 429, 'slow_down', [USERS.carol]);
      expect(body.errors[0]?.code).toBe('TOOMANYREQUESTS');
      expect(Number(right.headers.get('retry-after'))).toBeGreaterThan(290);
      expectNoSecret(JSON.stringify(body), ['guess-9']);
      const other = await get({ service: SERVICE }, basicFor('alice'), fresh);
      expect(other.status).toBe(200);
    } finally {
      await fresh.close();
    }
  });
});
