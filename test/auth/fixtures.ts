/**
 * Shared material for the auth tests: users and htpasswd lines, signing keys, hand-made tokens
 * (expired, unsigned, HMAC-confused), a self-signed certificate built with node:crypto alone, and a
 * registry composed from a real configuration file in a temporary directory.
 */
import { createHmac, generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { decodeJwt, type JWTPayload, SignJWT } from 'jose';
import { expect } from 'vitest';
import { type Composition, composeRegistry } from '../../functions/compose.js';
import { loadConfig } from '../../functions/config.js';
import { silentLogger } from '../../functions/log.js';

// Users and password files.

/**
 * A line written by Apache's `htpasswd -nbB -C 5 alice 'correct horse battery staple'` (2.4), kept
 * as it came out, with its password.
 */
export const HTPASSWD_B = {
  user: 'alice',
  password: 'correct horse battery staple',
  line: 'alice:$2y$05$uwYi6m0SJd1yHQqOw42vZ.a8JVSyi2weoqnYAbZDeGn8s9oKSNKAq',
};

/** Lines of the same password that htpasswd writes with its other options: each must be refused. */
export const WEAK_HTPASSWD: { option: string; kind: string; hash: string }[] = [
  { option: '-m', kind: 'MD5 (htpasswd -m)', hash: '$apr1$OEOnEVbz$IxDOq1hFScQwQ3p4/BRlH/' },
  { option: '-s', kind: 'SHA-1 (htpasswd -s)', hash: '{SHA}q/eq1kOINtvlJqojGr3i0O73TUI=' },
  { option: '-d', kind: 'DES crypt (htpasswd -d)', hash: 'iQPov2ULgzeys' },
  {
    option: '-2',
    kind: 'crypt(3) MD5/SHA (htpasswd -2/-5)',
    hash: '$5$fv2yzQBNnErvnbwZ$TRJ7GlCzpQZWNvfBDtId0Ssv344uIADlRCtdna7R5BA',
  },
  {
    option: '-5',
    kind: 'crypt(3) MD5/SHA (htpasswd -2/-5)',
    hash: '$6$7DyJnr/izXg/0PPd$wdgRAm1SndNiR/HS2cMTBrTWoBnm4K4/fw.QoD7xSvoXILvSTkD11XSH.BEB6e0.jKmKoleC/RaGkKqPYH4yR0',
  },
  { option: '-p', kind: 'an unrecognised hash', hash: 'correct horse battery staple' },
];

/** A bcrypt line made by bcryptjs: `$2b$` by default, `$2a$` (what older tools write) on request. */
export function bcryptLine(user: string, password: string, cost = 4, variant: '2a' | '2b' = '2b'): string {
  const salt = bcrypt.genSaltSync(cost).replace(/^\$2b\$/, `$${variant}$`);
  return `${user}:${bcrypt.hashSync(password, salt)}`;
}

/** The users of the API tests; their passwords never appear in any response. */
export const USERS = {
  alice: 'alice-Secret-1', // admins: everything, the catalog included
  bob: 'bob-Secret-2', // pull on team/*, and his own namespace
  carol: 'carol-Secret-3', // only her own namespace
} as const;
export type UserName = keyof typeof USERS;

export function htpasswdOf(users: Record<string, string> = USERS): string {
  return Object.entries(users)
    .map(([user, password]) => bcryptLine(user, password))
    .join('\n');
}

/** The access section the API tests share: admins, per-user namespaces, pull on team/*, public/* open. */
export const ACCESS_YAML = `access:
  groups:
    admins: [alice]
  rules:
    - repositories: ['**']
      groups: [admins]
      actions: ['*']
    - repositories: ['team/*']
      users: [bob]
      actions: [pull]
    - repositories: ['\${user}/**']
      users: ['*']
      actions: [pull, push, delete]
    - repositories: ['public/*']
      anonymous: true
      actions: [pull]
`;

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

export function basicFor(user: UserName): string {
  return basic(user, USERS[user]);
}

// Keys and tokens.

export function ecKey(): { pem: string; privateKey: KeyObject; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), privateKey, publicKey };
}

export const ISSUER = 'test-issuer';
export const SERVICE = 'registry.test';

/** Claims of a valid access token from ISSUER for SERVICE; overrides replace them (undefined removes). */
export function claims(overrides: JWTPayload = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  const base: JWTPayload = {
    iss: ISSUER,
    aud: SERVICE,
    sub: 'alice',
    iat: now,
    nbf: now,
    exp: now + 300,
    jti: randomUUID(),
    access: [],
  };
  const merged: Record<string, unknown> = { ...base, ...overrides };
  return Object.fromEntries(Object.entries(merged).filter(([, value]) => value !== undefined));
}

/** A token signed with privateKey as ES256 (or what alg says), with exactly the given payload. */
export function signToken(
  privateKey: KeyObject,
  payload: JWTPayload,
  header: { alg?: string; kid?: string } = {},
): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'JWT', ...header }).sign(privateKey);
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** An unsecured JWT (`alg: none`, empty signature), built by hand as an attacker would. */
export function unsignedToken(payload: JWTPayload): string {
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(payload)}.`;
}

/** The algorithm-confusion attack: HS256 "signed" with the bytes of the verifier's public key. */
export function hmacWithPublicKey(publicKey: KeyObject, payload: JWTPayload): string {
  const input = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(payload)}`;
  const secret = publicKey.export({ type: 'spki', format: 'pem' });
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** token with one character of its payload (or signature) changed, keeping it well-formed. */
export function tamper(token: string, part: 'payload' | 'signature'): string {
  const [header = '', payload = '', signature = ''] = token.split('.');
  if (part === 'payload') {
    const decoded = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    return `${header}.${b64url({ ...decoded, sub: 'mallory' })}.${signature}`;
  }
  const flipped = signature.startsWith('A') ? `B${signature.slice(1)}` : `A${signature.slice(1)}`;
  return `${header}.${payload}.${flipped}`;
}

export function accessOf(token: string): unknown {
  return decodeJwt(token).access;
}

// A self-signed certificate, with node:crypto only (DER built by hand; no openssl needed).

function der(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const length =
    body.length < 0x80
      ? [body.length]
      : body.length < 0x100
        ? [0x81, body.length]
        : [0x82, body.length >> 8, body.length & 0xff];
  return Buffer.concat([Buffer.from([tag, ...length]), body]);
}
const sequence = (...contents: Buffer[]) => der(0x30, ...contents);
const ECDSA_WITH_SHA256 = sequence(der(0x06, Buffer.from('2a8648ce3d040302', 'hex')));
const commonName = (cn: string) =>
  sequence(der(0x31, sequence(der(0x06, Buffer.from('550403', 'hex')), der(0x0c, Buffer.from(cn)))));
const utcTime = (date: Date) =>
  der(0x17, Buffer.from(`${date.toISOString().slice(2, 19).replace(/[-T:]/g, '')}Z`));

/** A PEM X.509 v3 certificate for key (EC), self-signed, valid for a day. */
export function selfSignedCertificate(
  key: { privateKey: KeyObject; publicKey: KeyObject },
  cn: string,
): string {
  const now = Date.now();
  const tbs = sequence(
    der(0xa0, der(0x02, Buffer.from([2]))),
    der(0x02, Buffer.from([0x01, ...Buffer.from(randomUUID().replace(/-/g, '').slice(0, 14), 'hex')])),
    ECDSA_WITH_SHA256,
    commonName(cn),
    sequence(utcTime(new Date(now - 60_000)), utcTime(new Date(now + 86_400_000))),
    commonName(cn),
    key.publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, key.privateKey);
  const certificate = sequence(tbs, ECDSA_WITH_SHA256, der(0x03, Buffer.from([0]), signature));
  const lines = certificate.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

// A registry composed from a configuration file.

export interface AuthRegistry extends Composition {
  /** The temporary directory holding the configuration, htpasswd and key files. */
  dir: string;
  /** Sends a request to the composition's handler (the token endpoint in front of the registry). */
  request(path: string, init?: RequestInit & { client?: string; origin?: string }): Promise<Response>;
  close(): Promise<void>;
}

/**
 * Writes files (name to content) and config.yml into a new temporary directory, `$DIR` in either
 * replaced by the directory, then loads the configuration as the server does and composes it.
 */
export async function composeFromYaml(
  yaml: string,
  files: Record<string, string> = {},
  env: Record<string, string> = {},
): Promise<AuthRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'registry-auth-'));
  try {
    for (const [name, content] of Object.entries(files)) {
      await writeFile(join(dir, name), content.replaceAll('$DIR', dir));
    }
    await writeFile(join(dir, 'config.yml'), yaml.replaceAll('$DIR', dir));
    const { config } = await loadConfig({ path: join(dir, 'config.yml'), env });
    const composition = await composeRegistry(config, silentLogger);
    return {
      ...composition,
      dir,
      request(path, init = {}) {
        const { client = '192.0.2.1', origin = 'http://registry.test', ...rest } = init;
        const headers = new Headers(rest.headers);
        const body = rest.body;
        if ((typeof body === 'string' || body instanceof Uint8Array) && !headers.has('content-length')) {
          headers.set(
            'content-length',
            String(typeof body === 'string' ? Buffer.byteLength(body) : body.length),
          );
        }
        return composition.handler.handle(new Request(`${origin}${path}`, { ...rest, headers }), {
          address: client,
        });
      },
      close: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

export const STORAGE_YAML = 'version: 0.1\nstorage: {inmemory: {}}\nlog: {accesslog: {disabled: true}}\n';

/** htpasswd mode: realm "Registry", the users above, the shared access rules. */
export function basicRegistry(): Promise<AuthRegistry> {
  return composeFromYaml(
    `${STORAGE_YAML}auth:\n  htpasswd: {realm: Registry, path: $DIR/htpasswd}\n${ACCESS_YAML}`,
    { htpasswd: htpasswdOf() },
  );
}

/** Token mode with the built-in issuer at /auth/token, the users above and the shared access rules. */
export async function tokenRegistry(
  options: { key?: string; htpasswd?: string; extra?: string; access?: string } = {},
): Promise<AuthRegistry> {
  return composeFromYaml(
    `${STORAGE_YAML}${options.extra ?? ''}auth:
  token:
    realm: /auth/token
    service: ${SERVICE}
    issuer: ${ISSUER}
    signingkey: $DIR/token.key
    htpasswd: $DIR/htpasswd
${options.access ?? ACCESS_YAML}`,
    { 'token.key': options.key ?? ecKey().pem, htpasswd: options.htpasswd ?? htpasswdOf() },
  );
}

// Assertions.

export interface ErrorBody {
  errors: { code: string; message: string; detail: unknown }[];
  error?: string;
  error_description?: string;
}

/** Asserts a registry error response (status, code) and answers its body, checked to hold no secret. */
export async function expectRegistryError(
  response: Response,
  status: number,
  code: string,
  secrets: string[] = [],
): Promise<ErrorBody> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = JSON.parse(text) as ErrorBody;
  expect(body.errors.map((error) => error.code)).toEqual([code]);
  expectNoSecret(text, secrets);
  return body;
}

/** Asserts text holds none of the passwords, tokens or Authorization values given. */
export function expectNoSecret(text: string, secrets: string[]): void {
  for (const secret of [...secrets, ...Object.values(USERS)]) {
    expect(text).not.toContain(secret);
    if (secret.length > 40) expect(text).not.toContain(secret.slice(-40));
  }
}

/** The parameters of a WWW-Authenticate challenge, with its scheme. */
export function challengeOf(response: Response): { scheme: string; params: Record<string, string> } {
  const header = response.headers.get('www-authenticate') ?? '';
  const scheme = header.split(' ')[0] ?? '';
  const params: Record<string, string> = {};
  for (const match of header.slice(scheme.length).matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) {
    params[match[1] ?? ''] = (match[2] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme, params };
}
