/** Registry tokens: the built-in issuer, and the verifier's refusals (each with its own message). */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { CATALOG_SCOPE, repositoryScope } from '../../functions/auth/access.js';
import {
  DEFAULT_ALGORITHMS,
  SigningKey,
  TokenError,
  TokenIssuer,
  TokenVerifier,
} from '../../functions/auth/tokens.js';
import {
  claims,
  ecKey,
  hmacWithPublicKey,
  ISSUER,
  SERVICE,
  signToken,
  tamper,
  unsignedToken,
} from './fixtures.js';

const pemOf = (pair: { privateKey: KeyObject }, type: 'pkcs8' | 'sec1' | 'pkcs1' = 'pkcs8') =>
  pair.privateKey.export({ type, format: 'pem' }).toString();

let key: SigningKey;
let issuer: TokenIssuer;
let verifier: TokenVerifier;
const verifyOptions = { issuer: ISSUER, service: SERVICE, algorithms: DEFAULT_ALGORITHMS };

beforeAll(async () => {
  key = await SigningKey.fromPem(ecKey().pem);
  issuer = new TokenIssuer({
    key,
    issuer: ISSUER,
    service: SERVICE,
    lifetimeSeconds: 300,
    refreshLifetimeSeconds: 3600,
  });
  verifier = new TokenVerifier(verifyOptions, { keys: [key.publicKey] });
});

/** The message a verification fails with (TokenError only). */
async function refusal(token: string, by: TokenVerifier = verifier): Promise<string> {
  const error = await by.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TokenError);
  return (error as Error).message;
}

describe('SigningKey.fromPem', () => {
  it.each([
    ['EC P-256', () => pemOf(generateKeyPairSync('ec', { namedCurve: 'P-256' })), 'ES256'],
    ['EC P-256 in SEC1', () => pemOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'sec1'), 'ES256'],
    ['EC P-384', () => pemOf(generateKeyPairSync('ec', { namedCurve: 'P-384' })), 'ES384'],
    ['EC P-521', () => pemOf(generateKeyPairSync('ec', { namedCurve: 'P-521' })), 'ES512'],
    [
      'RSA 2048 in PKCS#1',
      () => pemOf(generateKeyPairSync('rsa', { modulusLength: 2048 }), 'pkcs1'),
      'RS256',
    ],
    ['Ed25519', () => pemOf(generateKeyPairSync('ed25519')), 'EdDSA'],
  ])('signs with a %s key as %s, and its tokens verify', async (_kind, pem, algorithm) => {
    const signing = await SigningKey.fromPem(pem());
    expect(signing.algorithm).toBe(algorithm);
    expect(signing.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const own = new TokenIssuer({ ...issuer.options, key: signing });
    const { token } = await own.accessToken('bob', []);
    expect(decodeProtectedHeader(token)).toEqual({ alg: algorithm, kid: signing.kid, typ: 'JWT' });
    const ownVerifier = new TokenVerifier(verifyOptions, { keys: [signing.publicKey] });
    expect(await ownVerifier.verify(token)).toEqual({ user: 'bob', access: [] });
  });

  it.each([
    [
      'RSA 1024',
      () => pemOf(generateKeyPairSync('rsa', { modulusLength: 1024 })),
      /a rsa key cannot sign tokens; use EC P-256/,
    ],
    [
      'EC secp256k1',
      () => pemOf(generateKeyPairSync('ec', { namedCurve: 'secp256k1' })),
      /a ec secp256k1 key cannot sign/,
    ],
    ['not a key', () => 'hello', /^token\.key: not a PEM private key/],
    [
      'a public key',
      () => ecKey().publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      /^token\.key: not a PEM private key/,
    ],
  ])('refuses %s, naming its source', async (_kind, pem, message) => {
    const error = await SigningKey.fromPem(pem(), 'token.key').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TokenError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toMatch(/^token\.key: /);
  });
});

describe('TokenIssuer and TokenVerifier', () => {
  it('round-trips an access token with its user, scopes and standard claims', async () => {
    const access = [repositoryScope('team/app', 'pull', 'push'), CATALOG_SCOPE];
    const issued = await issuer.accessToken('bob', access);
    expect(issued.expiresIn).toBe(300);
    expect(issued.issuedAt.getTime() % 1000).toBe(0);
    const payload = decodeJwt(issued.token);
    expect(payload).toMatchObject({ iss: ISSUER, aud: SERVICE, sub: 'bob', access });
    expect(payload.iat).toBe(issued.issuedAt.getTime() / 1000);
    expect(payload.nbf).toBe(payload.iat);
    expect(payload.exp).toBe((payload.iat ?? 0) + 300);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(await verifier.verify(issued.token)).toEqual({ user: 'bob', access });
  });

  it('reads an empty subject as an anonymous token', async () => {
    const { token } = await issuer.accessToken(undefined, [repositoryScope('public/x', 'pull')]);
    expect(decodeJwt(token).sub).toBe('');
    expect(await verifier.verify(token)).toEqual({
      user: undefined,
      access: [repositoryScope('public/x', 'pull')],
    });
  });

  it('tolerates a minute of clock difference on exp and nbf', async () => {
    const now = Math.floor(Date.now() / 1000);
    const late = await signToken(key.privateKey, claims({ exp: now - 30 }));
    const early = await signToken(key.privateKey, claims({ nbf: now + 30 }));
    expect((await verifier.verify(late)).user).toBe('alice');
    expect((await verifier.verify(early)).user).toBe('alice');
  });

  it.each([
    ['expired', { exp: -120, iat: -600, nbf: -600 }, 'token expired'],
    ['not yet valid', { nbf: 120 }, 'token not yet valid'],
    ['without expiry', { exp: undefined }, 'token has no expiry'],
    ['for another audience', { aud: 'other.registry' }, 'token audience is not this registry'],
    ['from another issuer', { iss: 'someone-else' }, 'token issuer not accepted'],
  ])('refuses a token %s', async (_what, overrides: Record<string, unknown>, message) => {
    const now = Math.floor(Date.now() / 1000);
    const relative = Object.fromEntries(
      Object.entries(overrides).map(([k, v]) => [k, typeof v === 'number' ? now + v : v]),
    );
    expect(await refusal(await signToken(key.privateKey, claims(relative)))).toBe(message);
  });

  it('refuses a token whose payload or signature was changed', async () => {
    const { token } = await issuer.accessToken('bob', [repositoryScope('bob/x', 'pull')]);
    expect(await refusal(tamper(token, 'payload'))).toBe('token signature invalid');
    expect(await refusal(tamper(token, 'signature'))).toBe('token signature invalid');
  });

  it('refuses alg none and an HMAC made with the public key, even when HS256 is configured', async () => {
    const payload = claims({ access: [repositoryScope('team/app', '*')] });
    expect(await refusal(unsignedToken(payload))).toBe('token signing algorithm not accepted');
    const confused = hmacWithPublicKey(key.publicKey, payload);
    expect(await refusal(confused)).toBe('token signing algorithm not accepted');
    const careless = new TokenVerifier(
      { ...verifyOptions, algorithms: [...DEFAULT_ALGORITHMS, 'HS256', 'none'] },
      { keys: [key.publicKey] },
    );
    await expect(careless.verify(confused)).rejects.toBeInstanceOf(TokenError);
    await expect(careless.verify(unsignedToken(payload))).rejects.toBeInstanceOf(TokenError);
  });

  it('refuses a token signed by a key it does not know, whatever key id it names', async () => {
    const stranger = ecKey();
    expect(await refusal(await signToken(stranger.privateKey, claims()))).toBe('token signature invalid');
    expect(await refusal(await signToken(stranger.privateKey, claims(), { kid: key.kid }))).toBe(
      'token signature invalid',
    );
  });

  it.each([
    ['a string', 'repository:team/app:pull'],
    ['actions as a string', [{ type: 'repository', name: 'team/app', actions: 'pull' }]],
    ['a missing name', [{ type: 'repository', actions: ['pull'] }]],
    ['a non-string action', [{ type: 'repository', name: 'a', actions: [1] }]],
    ['a null entry', [null]],
  ])('refuses an access claim with %s', async (_what, access) => {
    const token = await signToken(key.privateKey, claims({ access }));
    expect(await refusal(token)).toBe('malformed access claim');
  });

  it('reads a token without an access claim as granting nothing', async () => {
    const token = await signToken(key.privateKey, claims({ access: undefined }));
    expect(await verifier.verify(token)).toEqual({ user: 'alice', access: [] });
  });

  it('refuses what is not a JWT', async () => {
    expect(await refusal('not-a-token')).toBe('malformed token');
    expect(await refusal('a.b.c')).toBe('malformed token');
  });
});

describe('refresh tokens', () => {
  it('carry the user and the password fingerprint, and are never access tokens', async () => {
    const refresh = await issuer.refreshToken('bob', 'fp-123');
    expect(decodeJwt(refresh)).toMatchObject({ sub: 'bob', token_use: 'refresh', pwd: 'fp-123' });
    expect((decodeJwt(refresh).exp ?? 0) - (decodeJwt(refresh).iat ?? 0)).toBe(3600);
    expect(await issuer.verifyRefreshToken(refresh)).toEqual({ user: 'bob', fingerprint: 'fp-123' });
    expect(await refusal(refresh)).toBe('not an access token');
  });

  it('are refused when they are access tokens, or signed by another key', async () => {
    const { token } = await issuer.accessToken('bob', []);
    await expect(issuer.verifyRefreshToken(token)).rejects.toThrow('not a refresh token');
    const other = new TokenIssuer({ ...issuer.options, key: await SigningKey.fromPem(ecKey().pem) });
    await expect(issuer.verifyRefreshToken(await other.refreshToken('bob', 'fp'))).rejects.toThrow(
      'token signature invalid',
    );
    const expired = await signToken(
      key.privateKey,
      claims({ sub: 'bob', token_use: 'refresh', pwd: 'fp', exp: Math.floor(Date.now() / 1000) - 3600 }),
    );
    await expect(issuer.verifyRefreshToken(expired)).rejects.toThrow('token expired');
  });
});
