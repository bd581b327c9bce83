import { createPrivateKey, createPublicKey, type KeyObject, randomUUID, X509Certificate } from 'node:crypto';
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  exportJWK,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
  SignJWT,
} from 'jose';
import type { Scope } from './access.js';

/**
 * Docker registry tokens (the token spec distribution implements): JWTs whose `access` claim lists the
 * scopes granted, for one service (`aud`) from one issuer (`iss`), short-lived. Refresh tokens (what
 * `docker login` keeps as its identity token) are JWTs of the same issuer marked `token_use: refresh`,
 * never accepted as access tokens, and bound to the user's password hash so a new password revokes them.
 */

/** Why a token was refused; the message is safe to return to the client (it never holds the token). */
export class TokenError extends Error {
  override readonly name = 'TokenError';
}

export interface TokenClaims {
  /** The token's subject; undefined for an anonymous token. */
  user: string | undefined;
  access: Scope[];
}

/** The algorithms distribution accepts by default; never a symmetric one for a public key. */
export const DEFAULT_ALGORITHMS = [
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'EdDSA',
];

/** How much clock difference between the issuer and this registry is tolerated. */
const CLOCK_TOLERANCE_S = 60;

/** A private key that signs tokens, with the algorithm its type implies and a key id (its RFC 7638 thumbprint). */
export class SigningKey {
  private constructor(
    readonly privateKey: KeyObject,
    readonly publicKey: KeyObject,
    readonly algorithm: string,
    readonly kid: string,
  ) {}

  /** From a PEM private key (PKCS#8 or SEC1/PKCS#1): EC P-256 signs ES256, P-384 ES384, P-521 ES512, RSA RS256, Ed25519 EdDSA. */
  static async fromPem(pem: string, source = 'signing key'): Promise<SigningKey> {
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(pem);
    } catch (error) {
      throw new TokenError(`${source}: not a PEM private key (${(error as Error).message})`);
    }
    const algorithm = algorithmOf(privateKey, source);
    const publicKey = createPublicKey(privateKey);
    const kid = await calculateJwkThumbprint(await exportJWK(publicKey));
    return new SigningKey(privateKey, publicKey, algorithm, kid);
  }
}

function algorithmOf(key: KeyObject, source: string): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType === 'ec') {
    const byCurve: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };
    const algorithm = curve === undefined ? undefined : byCurve[curve];
    if (algorithm) return algorithm;
  }
  if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048)
    return 'RS256';
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  throw new TokenError(
    `${source}: a ${key.asymmetricKeyType ?? 'symmetric'}${curve ? ` ${curve}` : ''} key cannot sign tokens; ` +
      'use EC P-256 (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256), RSA >= 2048 or Ed25519',
  );
}

export interface IssuerOptions {
  key: SigningKey;
  issuer: string;
  service: string;
  lifetimeSeconds: number;
  refreshLifetimeSeconds: number;
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  issuedAt: Date;
}

export class TokenIssuer {
  constructor(readonly options: IssuerOptions) {}

  async accessToken(user: string | undefined, access: Scope[]): Promise<IssuedToken> {
    const issuedAt = new Date(Math.floor(Date.now() / 1000) * 1000);
    const token = await this.sign(
      { access: access.map(({ type, name, actions }) => ({ type, name, actions })) },
      user ?? '',
      issuedAt,
      this.options.lifetimeSeconds,
    );
    return { token, expiresIn: this.options.lifetimeSeconds, issuedAt };
  }

  /** A refresh token for user, bound to fingerprint (of their password hash). */
  refreshToken(user: string, fingerprint: string): Promise<string> {
    return this.sign(
      { token_use: 'refresh', pwd: fingerprint },
      user,
      new Date(),
      this.options.refreshLifetimeSeconds,
    );
  }

  /** The user and password fingerprint of a refresh token this issuer signed. */
  async verifyRefreshToken(token: string): Promise<{ user: string; fingerprint: string }> {
    const payload = await verifyJwt(token, [this.options.key.publicKey], this.verifyOptions());
    if (payload.token_use !== 'refresh' || typeof payload.pwd !== 'string' || !payload.sub) {
      throw new TokenError('not a refresh token');
    }
    return { user: payload.sub, fingerprint: payload.pwd };
  }

  /** What a TokenVerifier needs to accept this issuer's tokens. */
  verifyOptions(): VerifyOptions {
    return {
      issuer: this.options.issuer,
      service: this.options.service,
      algorithms: [this.options.key.algorithm],
    };
  }

  private sign(
    claims: JWTPayload,
    subject: string,
    issuedAt: Date,
    lifetimeSeconds: number,
  ): Promise<string> {
    const { key, issuer, service } = this.options;
    const now = Math.floor(issuedAt.getTime() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: key.algorithm, kid: key.kid, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(service)
      .setSubject(subject)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + lifetimeSeconds)
      .setJti(randomUUID())
      .sign(key.privateKey);
  }
}

export interface VerifyOptions {
  issuer: string;
  service: string;
  algorithms: string[];
}

export interface VerifierKeys {
  /** Public keys: the built-in issuer's, and those of rootcertbundle's certificates. */
  keys: KeyObject[];
  /** A JWKS document (distribution's `jwks` file). */
  jwks?: JSONWebKeySet | undefined;
  /** A JWKS URL, fetched when a token names a key id not yet seen (and cached). */
  jwksUrl?: URL | undefined;
}

/** Verifies access tokens: signature by a trusted key, issuer, audience, time claims and the access claim. */
export class TokenVerifier {
  private readonly keys: Promise<{ kid: string; key: KeyObject }[]>;
  private readonly sets: JWTVerifyGetKey[] = [];

  constructor(
    private readonly options: VerifyOptions,
    source: VerifierKeys,
  ) {
    this.keys = Promise.all(
      source.keys.map(async (key) => ({ key, kid: await calculateJwkThumbprint(await exportJWK(key)) })),
    );
    if (source.jwks) this.sets.push(createLocalJWKSet(source.jwks));
    if (source.jwksUrl) this.sets.push(createRemoteJWKSet(source.jwksUrl, { timeoutDuration: 5000 }));
  }

  async verify(token: string): Promise<TokenClaims> {
    const { kid } = headerOf(token);
    const keys = await this.keys;
    // A key id picks its key; without a match (distribution-style issuers name keys otherwise) every key is tried.
    const named = keys.filter((k) => k.kid === kid);
    const candidates = [...(named.length > 0 ? named : keys).map((k) => k.key), ...this.sets];
    const payload = await verifyJwt(token, candidates, this.options);
    if (payload.token_use !== undefined) throw new TokenError('not an access token');
    return { user: payload.sub || undefined, access: accessClaim(payload.access) };
  }
}

/** Public keys of the certificates (distribution's rootcertbundle) and bare public keys in a PEM bundle. */
export function certificateKeys(pem: string, source: string): KeyObject[] {
  const blocks = pem.match(/-----BEGIN (CERTIFICATE|PUBLIC KEY)-----[\s\S]+?-----END \1-----/g) ?? [];
  if (blocks.length === 0) throw new TokenError(`${source}: no PEM certificate or public key found`);
  return blocks.map((block) =>
    block.startsWith('-----BEGIN CERTIFICATE')
      ? new X509Certificate(block).publicKey
      : createPublicKey(block),
  );
}

/** A JWKS document (distribution's `jwks` file). */
export function parseJwks(text: string): JSONWebKeySet {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TokenError('not JSON');
  }
  if (typeof value !== 'object' || value === null || !Array.isArray((value as JSONWebKeySet).keys)) {
    throw new TokenError('not a JWKS: expected {"keys": [...]}');
  }
  return value as JSONWebKeySet;
}

/** A JWKS URL: https, or plain http only to this host (keys fetched in clear could be anyone's). */
export function jwksUrl(text: string): URL {
  const url = new URL(text);
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new TokenError(`a JWKS URL must be https, got ${url.protocol}//${url.host}`);
  }
  return url;
}

function headerOf(token: string): { kid: string | undefined } {
  try {
    const header = decodeProtectedHeader(token);
    return { kid: header.kid };
  } catch {
    throw new TokenError('malformed token');
  }
}

async function verifyJwt(
  token: string,
  candidates: (KeyObject | JWTVerifyGetKey)[],
  options: VerifyOptions,
): Promise<JWTPayload> {
  let refusal: TokenError = new TokenError('no key to verify the token with');
  for (const key of candidates) {
    try {
      const verifyOptions = {
        issuer: options.issuer,
        audience: options.service,
        algorithms: options.algorithms,
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ['exp'],
      };
      const { payload } =
        typeof key === 'function'
          ? await jwtVerify(token, key, verifyOptions)
          : await jwtVerify(token, key, verifyOptions);
      return payload;
    } catch (error) {
      refusal = refusalOf(error);
      // Only a signature (or key) mismatch is worth trying the next key for: claims are the same for all.
      if (!isKeyMismatch(error)) throw refusal;
    }
  }
  throw refusal;
}

function isKeyMismatch(error: unknown): boolean {
  return (
    error instanceof errors.JWSSignatureVerificationFailed ||
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSMultipleMatchingKeys ||
    error instanceof errors.JOSENotSupported ||
    error instanceof TypeError
  );
}

function refusalOf(error: unknown): TokenError {
  if (error instanceof errors.JWTExpired) return new TokenError('token expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    const reasons: Record<string, string> = {
      nbf: 'token not yet valid',
      iss: 'token issuer not accepted',
      aud: 'token audience is not this registry',
      exp: 'token has no expiry',
    };
    return new TokenError(reasons[error.claim] ?? `token claim ${error.claim} invalid`);
  }
  if (error instanceof errors.JOSEAlgNotAllowed)
    return new TokenError('token signing algorithm not accepted');
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return new TokenError('token signature invalid');
  if (error instanceof errors.JWKSNoMatchingKey) return new TokenError('token signed by an unknown key');
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JOSEError) {
    return new TokenError(`token not verifiable (${error.code})`);
  }
  return new TokenError('token not verifiable');
}

function accessClaim(claim: unknown): Scope[] {
  if (claim === undefined) return [];
  const valid =
    Array.isArray(claim) &&
    claim.every(
      (entry: unknown) =>
        typeof entry === 'object' &&
        entry !== null &&
        typeof (entry as Scope).type === 'string' &&
        typeof (entry as Scope).name === 'string' &&
        Array.isArray((entry as Scope).actions) &&
        (entry as Scope).actions.every((action) => typeof action === 'string'),
    );
  if (!valid) throw new TokenError('malformed access claim');
  return (claim as Scope[]).map(({ type, name, actions }) => ({ type, name, actions }));
}
