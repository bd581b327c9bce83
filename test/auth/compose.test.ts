/**
 * composeRegistry's auth wiring: key material it refuses (each a ConfigError naming the key, never
 * the secret), and an external token issuer trusted through rootcertbundle or a JWKS file.
 */
import { generateKeyPairSync } from 'node:crypto';
import { exportJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/config.js';
import {
  type AuthRegistry,
  challengeOf,
  claims,
  composeFromYaml,
  ecKey,
  HTPASSWD_B,
  ISSUER,
  SERVICE,
  selfSignedCertificate,
  signToken,
  STORAGE_YAML,
  WEAK_HTPASSWD,
} from './fixtures.js';

const tokenAuth = (fields: string) =>
  `${STORAGE_YAML}auth:\n  token:\n    service: ${SERVICE}\n    issuer: ${ISSUER}\n${fields}`;
const builtIn = (realm = '/auth/token') =>
  tokenAuth(`    realm: ${realm}\n    signingkey: $DIR/key.pem\n    htpasswd: $DIR/htpasswd\n`);

/** The ConfigError composing yaml with files fails with (after checking it is one). */
async function refusal(yaml: string, files: Record<string, string>): Promise<string> {
  const error = await composeFromYaml(yaml, files).then(
    async (registry) => {
      await registry.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return (error as Error).message;
}

const md5 = WEAK_HTPASSWD[0]?.hash ?? '';

describe('key material composeRegistry refuses', () => {
  it('a signing key that is not a PEM private key, or cannot sign, or is missing', async () => {
    const htpasswd = HTPASSWD_B.line;
    expect(await refusal(builtIn(), { 'key.pem': 'not a key', htpasswd })).toMatch(
      /^auth\.token\.signingkey: not a PEM private key/,
    );
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    const message = await refusal(builtIn(), { 'key.pem': weak, htpasswd });
    expect(message).toMatch(/^auth\.token\.signingkey: a rsa key cannot sign tokens; use EC P-256/);
    expect(message).not.toContain('PRIVATE KEY');
    expect(await refusal(builtIn(), { htpasswd })).toMatch(
      /^auth\.token\.signingkey: cannot read .*key\.pem: ENOENT$/,
    );
  });

  it('a weak htpasswd entry, naming the key, the line and the user but not the hash', async () => {
    const token = await refusal(builtIn(), { 'key.pem': ecKey().pem, htpasswd: `alice:${md5}\n` });
    expect(token).toMatch(
      /^auth\.token\.htpasswd: \/.*\/htpasswd line 1 \(user "alice"\): MD5 \(htpasswd -m\) is refused/,
    );
    expect(token).not.toContain(md5);
    const basic = await refusal(`${STORAGE_YAML}auth:\n  htpasswd: {realm: r, path: $DIR/htpasswd}\n`, {
      htpasswd: `${HTPASSWD_B.line}\nbob:${md5}\n`,
    });
    expect(basic).toMatch(/^auth\.htpasswd\.path: .*line 2 \(user "bob"\): MD5/);
  });

  it('a realm under /v2/, where the registry answers', async () => {
    const files = { 'key.pem': ecKey().pem, htpasswd: HTPASSWD_B.line };
    expect(await refusal(builtIn('/v2/token'), files)).toBe(
      'auth.token.realm: the token endpoint cannot be under /v2/ (got /v2/token)',
    );
    expect(await refusal(builtIn('https://registry.example.com/v2'), files)).toContain(
      'cannot be under /v2/',
    );
  });

  it('a rootcertbundle without a certificate, a JWKS file that is not one, a JWKS URL in clear', async () => {
    const realm = '    realm: https://auth.example.com/token\n';
    expect(
      await refusal(tokenAuth(`${realm}    rootcertbundle: $DIR/certs.pem\n`), { 'certs.pem': 'nothing' }),
    ).toMatch(/^auth\.token\.rootcertbundle: \/.*certs\.pem: no PEM certificate or public key found$/);
    expect(await refusal(tokenAuth(`${realm}    jwks: $DIR/jwks.json\n`), { 'jwks.json': '[' })).toBe(
      'auth.token.jwks: not JSON',
    );
    expect(await refusal(tokenAuth(`${realm}    jwks: http://auth.example.com/jwks\n`), {})).toBe(
      'auth.token.jwks: a JWKS URL must be https, got http://auth.example.com',
    );
  });
});

/** An external issuer's registry: tokens verified, none issued here, anonymous pulls of public/*. */
async function external(keyLine: string, files: Record<string, string>): Promise<AuthRegistry> {
  return composeFromYaml(
    tokenAuth(`    realm: https://auth.example.com/token\n${keyLine}`) +
      "access:\n  rules:\n    - {repositories: ['public/*'], anonymous: true, actions: [pull]}\n",
    files,
  );
}

describe('an external token issuer', () => {
  const issuerKey = ecKey();
  const access = [{ type: 'repository', name: 'team/app', actions: ['pull'] }];

  it('is trusted through rootcertbundle, and no token endpoint is served here', async () => {
    const registry = await external('    rootcertbundle: $DIR/certs.pem\n', {
      'certs.pem': selfSignedCertificate(issuerKey, 'auth.example.com'),
    });
    try {
      const token = await signToken(issuerKey.privateKey, claims({ sub: 'bob', access }));
      const pull = await registry.request('/v2/team/app/tags/list', {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(pull.status).toBe(404);
      const foreign = await signToken(ecKey().privateKey, claims({ sub: 'bob', access }));
      const refused = await registry.request('/v2/team/app/tags/list', {
        headers: { authorization: `Bearer ${foreign}` },
      });
      expect(refused.status).toBe(401);
      expect(challengeOf(refused).params.error).toBe('invalid_token');
      expect((await registry.request('/v2/public/x/tags/list')).status).toBe(404);
      expect((await registry.request('/v2/team/app/tags/list')).status).toBe(401);
      const endpoint = await registry.request(`/auth/token?service=${SERVICE}`);
      expect(endpoint.status).toBe(404);
    } finally {
      await registry.close();
    }
  });

  it('is trusted through a JWKS file, by key id', async () => {
    const jwk = { ...(await exportJWK(issuerKey.publicKey)), kid: 'issuer-1', alg: 'ES256' };
    const registry = await external('    jwks: $DIR/jwks.json\n', {
      'jwks.json': JSON.stringify({ keys: [jwk] }),
    });
    try {
      const token = await signToken(issuerKey.privateKey, claims({ access }), { kid: 'issuer-1' });
      const pull = await registry.request('/v2/team/app/tags/list', {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(pull.status).toBe(404);
      const push = await registry.request('/v2/team/app/blobs/uploads/', {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
      });
      expect(push.status).toBe(403);
    } finally {
      await registry.close();
    }
  });
});
