/**
 * Where a verifier finds an external issuer's keys: certificates (rootcertbundle), a JWKS document,
 * and a JWKS URL served here by a node:http server on 127.0.0.1.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repositoryScope } from '../../functions/auth/access.js';
import {
  certificateKeys,
  DEFAULT_ALGORITHMS,
  jwksUrl,
  parseJwks,
  TokenError,
  TokenVerifier,
} from '../../functions/auth/tokens.js';
import { claims, ecKey, ISSUER, SERVICE, selfSignedCertificate, signToken } from './fixtures.js';

const options = { issuer: ISSUER, service: SERVICE, algorithms: DEFAULT_ALGORITHMS };
const issuerKey = ecKey();
const otherKey = ecKey();
const stranger = ecKey();
const access = [repositoryScope('team/app', 'pull')];

describe('rootcertbundle', () => {
  const bundle = selfSignedCertificate(issuerKey, 'token-issuer') + selfSignedCertificate(otherKey, 'next');

  it('trusts the key of every certificate in the bundle', async () => {
    expect(new X509Certificate(selfSignedCertificate(issuerKey, 'x')).subject).toBe('CN=x');
    const keys = certificateKeys(bundle, 'bundle.pem');
    expect(keys).toHaveLength(2);
    const verifier = new TokenVerifier(options, { keys });
    // Issuers name their keys in their own way (libtrust ids here): the verifier tries each key.
    const kid = 'ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP';
    for (const key of [issuerKey, otherKey]) {
      const token = await signToken(key.privateKey, claims({ sub: 'bob', access }), { kid });
      expect(await verifier.verify(token)).toEqual({ user: 'bob', access });
    }
    await expect(verifier.verify(await signToken(stranger.privateKey, claims()))).rejects.toThrow(
      'token signature invalid',
    );
  });

  it('also trusts bare PEM public keys, beside certificates', async () => {
    const pem = issuerKey.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const keys = certificateKeys(pem + selfSignedCertificate(otherKey, 'next'), 'keys.pem');
    expect(keys).toHaveLength(2);
    const verifier = new TokenVerifier(options, { keys });
    const token = await signToken(issuerKey.privateKey, claims({ sub: 'bob', access }));
    expect(await verifier.verify(token)).toEqual({ user: 'bob', access });
  });

  it('refuses a bundle without a certificate, naming it', () => {
    expect(() => certificateKeys('-----BEGIN PRIVATE KEY-----\n...', 'bundle.pem')).toThrow(
      new TokenError('bundle.pem: no PEM certificate or public key found'),
    );
  });
});

async function jwksOf(...keys: { publicKey: import('node:crypto').KeyObject }[]) {
  return {
    keys: await Promise.all(
      keys.map(async (key, index) => ({
        ...(await exportJWK(key.publicKey)),
        kid: `key-${index}`,
        alg: 'ES256',
        use: 'sig',
      })),
    ),
  };
}

describe('a JWKS document', () => {
  it('verifies tokens by the key their kid names, and refuses an unknown kid', async () => {
    const jwks = parseJwks(JSON.stringify(await jwksOf(issuerKey, otherKey)));
    const verifier = new TokenVerifier(options, { keys: [], jwks });
    const token = await signToken(otherKey.privateKey, claims({ access }), { kid: 'key-1' });
    expect(await verifier.verify(token)).toEqual({ user: 'alice', access });
    const wrongKid = await signToken(stranger.privateKey, claims(), { kid: 'key-9' });
    await expect(verifier.verify(wrongKid)).rejects.toThrow(new TokenError('token signed by an unknown key'));
    const forged = await signToken(stranger.privateKey, claims(), { kid: 'key-0' });
    await expect(verifier.verify(forged)).rejects.toThrow(new TokenError('token signature invalid'));
  });

  it('is refused when it is not JSON or not a key set', () => {
    expect(() => parseJwks('keys:')).toThrow(new TokenError('not JSON'));
    expect(() => parseJwks('{"keys": {}}')).toThrow(new TokenError('not a JWKS: expected {"keys": [...]}'));
    expect(() => parseJwks('null')).toThrow('not a JWKS');
  });
});

describe('a JWKS URL', () => {
  let server: Server;
  let url: string;
  let fetches = 0;
  let jwks: unknown;

  beforeAll(async () => {
    jwks = await jwksOf(issuerKey);
    server = createServer((req, res) => {
      fetches += 1;
      if (req.url !== '/.well-known/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(jwks));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('fetches the keys once, then verifies from its cache', async () => {
    const verifier = new TokenVerifier(options, {
      keys: [],
      jwksUrl: jwksUrl(`${url}/.well-known/jwks.json`),
    });
    const before = fetches;
    const token = await signToken(issuerKey.privateKey, claims({ sub: 'bob', access }), { kid: 'key-0' });
    expect(await verifier.verify(token)).toEqual({ user: 'bob', access });
    expect(await verifier.verify(token)).toEqual({ user: 'bob', access });
    expect(fetches - before).toBe(1);
    const unknown = await signToken(stranger.privateKey, claims(), { kid: 'key-7' });
    await expect(verifier.verify(unknown)).rejects.toThrow(new TokenError('token signed by an unknown key'));
  });

  it('refuses tokens it cannot verify when the URL does not serve keys', async () => {
    const verifier = new TokenVerifier(options, { keys: [], jwksUrl: jwksUrl(`${url}/missing`) });
    const token = await signToken(issuerKey.privateKey, claims(), { kid: 'key-0' });
    const error = await verifier.verify(token).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TokenError);
    expect((error as Error).message).toMatch(/^token not verifiable \(ERR_/);
  });

  it('must be https, or http to this host only', () => {
    expect(jwksUrl('https://auth.example.com/jwks').href).toBe('https://auth.example.com/jwks');
    expect(jwksUrl('http://localhost:8080/jwks').host).toBe('localhost:8080');
    expect(jwksUrl('http://[::1]:8080/jwks').hostname).toBe('[::1]');
    expect(() => jwksUrl('http://auth.example.com/jwks')).toThrow(
      new TokenError('a JWKS URL must be https, got http://auth.example.com'),
    );
    expect(() => jwksUrl('ftp://127.0.0.1/jwks')).toThrow('a JWKS URL must be https');
  });
});

describe('several key sources together', () => {
  it('tries the static keys, then the key set', async () => {
    const verifier = new TokenVerifier(options, {
      keys: certificateKeys(selfSignedCertificate(otherKey, 'static'), 'bundle'),
      jwks: await jwksOf(issuerKey),
    });
    const fromSet = await signToken(issuerKey.privateKey, claims({ access }), { kid: 'key-0' });
    const fromCertificate = await signToken(otherKey.privateKey, claims({ access }));
    expect((await verifier.verify(fromSet)).access).toEqual(access);
    expect((await verifier.verify(fromCertificate)).access).toEqual(access);
    // A claim failure is final: it is not retried (and reported as a key problem) with the next key.
    const expired = await signToken(
      otherKey.privateKey,
      claims({ exp: Math.floor(Date.now() / 1000) - 600 }),
    );
    await expect(verifier.verify(expired)).rejects.toThrow(new TokenError('token expired'));
  });
});
