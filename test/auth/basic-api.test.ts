/**
 * htpasswd mode through the composed registry (a real configuration file, loadConfig, composeRegistry):
 * challenges, refusals, access rules, throttling and cross-repository mounts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encode, randomContent, sha256 } from '../api/helpers.js';
import { type AuthRegistry, basic, basicFor, basicRegistry, expectRegistryError, USERS } from './fixtures.js';

let registry: AuthRegistry;
beforeEach(async () => {
  registry = await basicRegistry();
});
afterEach(async () => {
  await registry.close();
});

const BASIC_CHALLENGE = 'Basic realm="Registry", charset="UTF-8"';

/** A blob pushed by alice (who may do anything) into repository; its digest. */
async function seedBlob(repository: string): Promise<string> {
  const content = randomContent(64);
  const digest = sha256(content);
  const response = await registry.request(`/v2/${repository}/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    body: content,
    headers: { authorization: basicFor('alice') },
  });
  expect(response.status).toBe(201);
  return digest;
}

describe('the version check /v2/', () => {
  it('answers 401 with the Basic challenge without credentials', async () => {
    const response = await registry.request('/v2/');
    expect(response.headers.get('www-authenticate')).toBe(BASIC_CHALLENGE);
    expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    const body = await expectRegistryError(response, 401, 'UNAUTHORIZED');
    expect(body.errors[0]?.message).toBe('authentication required');
  });

  it('answers 200 with good credentials, for any user', async () => {
    for (const user of ['alice', 'bob', 'carol'] as const) {
      const response = await registry.request('/v2/', { headers: { authorization: basicFor(user) } });
      expect(response.status).toBe(200);
      expect(await response.text()).toBe('{}');
    }
  });

  it('refuses a wrong password and an unknown user alike, repeating neither', async () => {
    const wrong = await registry.request('/v2/', { headers: { authorization: basic('bob', 'guess-1') } });
    const unknown = await registry.request('/v2/', {
      headers: { authorization: basic('nobody', 'guess-1') },
    });
    expect(wrong.headers.get('www-authenticate')).toBe(BASIC_CHALLENGE);
    expect(unknown.headers.get('www-authenticate')).toBe(BASIC_CHALLENGE);
    const wrongBody = await expectRegistryError(wrong, 401, 'UNAUTHORIZED', [
      'guess-1',
      basic('bob', 'guess-1'),
    ]);
    const unknownBody = await expectRegistryError(unknown, 401, 'UNAUTHORIZED', ['guess-1', 'nobody']);
    expect(unknownBody).toEqual(wrongBody);
    expect(wrongBody.errors[0]?.message).toBe('invalid username or password');
  });

  it('refuses malformed basic credentials and bearer tokens with the Basic challenge', async () => {
    for (const authorization of ['Basic', 'Basic %%%', 'Bearer abc.def.ghi', 'Digest x']) {
      const response = await registry.request('/v2/', { headers: { authorization } });
      expect(response.headers.get('www-authenticate')).toBe(BASIC_CHALLENGE);
      await expectRegistryError(response, 401, 'UNAUTHORIZED', ['abc.def.ghi']);
    }
  });
});

describe('access rules in htpasswd mode', () => {
  it('lets a user pull where a rule allows it, and answers 403 DENIED for a push there', async () => {
    const digest = await seedBlob('team/app');
    const pull = await registry.request(`/v2/team/app/blobs/${digest}`, {
      headers: { authorization: basicFor('bob') },
    });
    expect(pull.status).toBe(200);
    const push = await registry.request('/v2/team/app/blobs/uploads/', {
      method: 'POST',
      headers: { authorization: basicFor('bob') },
    });
    const body = await expectRegistryError(push, 403, 'DENIED');
    expect(body.errors[0]?.message).toBe(
      'requested access to the resource is denied: bob may not push on team/app',
    );
    expect(push.headers.get('www-authenticate')).toBeNull();
    const other = await registry.request(`/v2/team/app/blobs/${digest}`, {
      headers: { authorization: basicFor('carol') },
    });
    await expectRegistryError(other, 403, 'DENIED');
  });

  it("lets each user push to their own namespace and not to another's", async () => {
    const own = await registry.request('/v2/carol/tools/blobs/uploads/', {
      method: 'POST',
      headers: { authorization: basicFor('carol') },
    });
    expect(own.status).toBe(202);
    const manifest = await registry.request('/v2/bob/tools/manifests/latest', {
      method: 'PUT',
      body: encode('{}'),
      headers: {
        authorization: basicFor('carol'),
        'content-type': 'application/vnd.oci.image.manifest.v1+json',
      },
    });
    await expectRegistryError(manifest, 403, 'DENIED');
  });

  it('lists the catalog for a user with the catalog action only: 403 for others, 401 anonymously', async () => {
    await seedBlob('team/app');
    const alice = await registry.request('/v2/_catalog', { headers: { authorization: basicFor('alice') } });
    expect(alice.status).toBe(200);
    const bob = await registry.request('/v2/_catalog', { headers: { authorization: basicFor('bob') } });
    const body = await expectRegistryError(bob, 403, 'DENIED');
    expect(body.errors[0]?.message).toContain('bob may not registry:catalog:*');
    const anonymous = await registry.request('/v2/_catalog');
    expect(anonymous.headers.get('www-authenticate')).toBe(BASIC_CHALLENGE);
    await expectRegistryError(anonymous, 401, 'UNAUTHORIZED');
  });

  it('lets anonymous requests pull public/* only, and never push', async () => {
    const digest = await seedBlob('public/base');
    const hidden = await seedBlob('team/app');
    expect((await registry.request(`/v2/public/base/blobs/${digest}`)).status).toBe(200);
    expect((await registry.request('/v2/public/base/tags/list')).status).toBe(200);
    await expectRegistryError(await registry.request(`/v2/team/app/blobs/${hidden}`), 401, 'UNAUTHORIZED');
    // One path component only: public/* does not cover public/a/b.
    await expectRegistryError(await registry.request(`/v2/public/a/b/blobs/${digest}`), 401, 'UNAUTHORIZED');
    const push = await registry.request('/v2/public/base/blobs/uploads/', { method: 'POST' });
    expect(push.headers.get('www-authenticate')).toBe(BASIC_CHALLENGE);
    await expectRegistryError(push, 401, 'UNAUTHORIZED');
    const remove = await registry.request(`/v2/public/base/blobs/${digest}`, { method: 'DELETE' });
    await expectRegistryError(remove, 401, 'UNAUTHORIZED');
  });

  it('takes empty basic credentials (Og==, what skopeo and podman send without a login) as anonymous', async () => {
    const digest = await seedBlob('public/empty');
    const hidden = await seedBlob('team/empty');
    const empty = { authorization: 'Basic Og==' };
    expect((await registry.request(`/v2/public/empty/blobs/${digest}`, { headers: empty })).status).toBe(200);
    const refused = await registry.request(`/v2/team/empty/blobs/${hidden}`, { headers: empty });
    expect(refused.headers.get('www-authenticate')).toBe(BASIC_CHALLENGE);
    await expectRegistryError(refused, 401, 'UNAUTHORIZED');
  });
});

describe('failed-login throttling', () => {
  it('answers 429 with Retry-After after ten failures for a user, even to the right password', async () => {
    for (let i = 0; i < 10; i++) {
      const response = await registry.request('/v2/', {
        headers: { authorization: basic('bob', `guess-${i}`) },
      });
      expect(response.status).toBe(401);
    }
    const right = await registry.request('/v2/', { headers: { authorization: basicFor('bob') } });
    const body = await expectRegistryError(right, 429, 'TOOMANYREQUESTS', [USERS.bob]);
    const wait = Number(right.headers.get('retry-after'));
    expect(wait).toBeGreaterThan(290);
    expect(wait).toBeLessThanOrEqual(300);
    expect(body.errors[0]?.message).toBe(`too many failed logins; try again in ${wait} s`);
    // From another address too: the count is the user's.
    const elsewhere = await registry.request('/v2/', {
      headers: { authorization: basicFor('bob') },
      client: '198.51.100.7',
    });
    expect(elsewhere.status).toBe(429);
    // Other users, from the same address, are not affected.
    const alice = await registry.request('/v2/', { headers: { authorization: basicFor('alice') } });
    expect(alice.status).toBe(200);
  });

  it('throttles an address after thirty failures across users, and no other address', async () => {
    for (let i = 0; i < 30; i++) {
      const response = await registry.request('/v2/', {
        headers: { authorization: basic(`user-${i}`, `guess-${i}`) },
        client: '203.0.113.9',
      });
      expect(response.status).toBe(401);
    }
    const fromThere = await registry.request('/v2/', {
      headers: { authorization: basicFor('carol') },
      client: '203.0.113.9',
    });
    await expectRegistryError(fromThere, 429, 'TOOMANYREQUESTS');
    expect(Number(fromThere.headers.get('retry-after'))).toBeGreaterThan(0);
    const fromElsewhere = await registry.request('/v2/', {
      headers: { authorization: basicFor('carol') },
      client: '203.0.113.10',
    });
    expect(fromElsewhere.status).toBe(200);
  });
});

describe('cross-repository mounts', () => {
  it('mount (201) with pull on the source, and fall back to an upload (202) without it', async () => {
    const digest = await seedBlob('team/app');
    const mounted = await registry.request(`/v2/bob/copy/blobs/uploads/?mount=${digest}&from=team/app`, {
      method: 'POST',
      headers: { authorization: basicFor('bob') },
    });
    expect(mounted.status).toBe(201);
    expect(mounted.headers.get('location')).toBe(`/v2/bob/copy/blobs/${digest}`);
    expect(mounted.headers.get('docker-content-digest')).toBe(digest);
    const head = await registry.request(`/v2/bob/copy/blobs/${digest}`, {
      method: 'HEAD',
      headers: { authorization: basicFor('bob') },
    });
    expect(head.status).toBe(200);

    const fallback = await registry.request(`/v2/carol/copy/blobs/uploads/?mount=${digest}&from=team/app`, {
      method: 'POST',
      headers: { authorization: basicFor('carol') },
    });
    expect(fallback.status).toBe(202);
    expect(fallback.headers.get('location')).toMatch(/^\/v2\/carol\/copy\/blobs\/uploads\/[0-9a-f-]{36}/);
    const notThere = await registry.request(`/v2/carol/copy/blobs/${digest}`, {
      method: 'HEAD',
      headers: { authorization: basicFor('carol') },
    });
    expect(notThere.status).toBe(404);
  });
});
