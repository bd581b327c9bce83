/**
 * The GCS driver against a protocol fake of GCS's JSON API (test/support/gcs-fake.ts), driven by the real
 * @google-cloud/storage SDK through its apiEndpoint: the shared conformance suite, signed URLs (verified by
 * the fake against the public half of a key made here), the compose tree above 32 parts, and the
 * `storage.gcs` parameters. A guard refuses any connection or DNS lookup that is not for loopback while
 * these tests run, and the last check fails if one was even attempted: nothing reaches Google.
 *
 * The fake proves that the driver drives the real SDK correctly against the documented JSON API and that
 * its signed URLs verify under the V4 algorithm; it does not prove GCS's own behaviour (see the fake).
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import dns from 'node:dns';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';

import { Storage } from '@google-cloud/storage';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { ConfigError } from '../../functions/config.js';
import { PathNotFoundError, StorageError } from '../../functions/storage/driver.js';
import {
  GcsDriver,
  gcsDriverFromParameters,
  gcsOptionsFromParameters,
  signedUrlV4,
  type GcsDriverOptions,
} from '../../functions/storage/gcs.js';
import { GcsFake } from '../support/gcs-fake.js';
import { describeStorageDriver } from './driver-suite.js';

const KiB = 1024;
const BUCKET = 'registry-test';
const CLIENT_EMAIL = 'registry@test-project.iam.gserviceaccount.com';

function serviceAccountKey(): { privateKey: string; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicKey };
}

const key = serviceAccountKey();
let fake: GcsFake | undefined;
const connections = loopbackGuard();
let emulatorHost: string | undefined;

function running(): GcsFake {
  if (fake === undefined) throw new Error('the GCS fake is not running');
  return fake;
}

function driverOptions(options: Partial<GcsDriverOptions> = {}): GcsDriverOptions {
  return {
    bucket: BUCKET,
    endpoint: running().endpoint,
    credentials: { client_email: CLIENT_EMAIL, private_key: key.privateKey },
    ...options,
  };
}

beforeAll(async () => {
  // The SDK would send JSON API requests there instead of to apiEndpoint.
  emulatorHost = process.env.STORAGE_EMULATOR_HOST;
  delete process.env.STORAGE_EMULATOR_HOST;
  connections.install();
  fake = await GcsFake.start({
    buckets: [BUCKET],
    signer: { publicKey: key.publicKey, clientEmail: CLIENT_EMAIL },
  });
});

afterAll(async () => {
  try {
    // Everything the suite and the tests wrote was deleted, writers' parts and intermediates included.
    expect([...running().objects(BUCKET).keys()], 'objects left in the bucket').toEqual([]);
    // The SDK authenticated no request: it fetched no token (which would have gone to Google).
    expect(running().requests.filter((request) => request.authorization !== undefined)).toEqual([]);
  } finally {
    await fake?.stop();
    connections.restore();
    if (emulatorHost !== undefined) process.env.STORAGE_EMULATOR_HOST = emulatorHost;
  }
  expect(connections.refused, 'connections attempted beyond 127.0.0.1').toEqual([]);
});

describe('GcsDriver on a GCS protocol fake', () => {
  // Chunks of 256 KiB, GCS's smallest, so that the suite's larger writes take many resumable requests.
  describeStorageDriver(
    'gcs (protocol fake)',
    () =>
      Promise.resolve({
        driver: new GcsDriver(driverOptions({ rootDirectory: 'root', chunkSize: 256 * KiB })),
        cleanup: () => Promise.resolve(),
      }),
    { sharedAcrossInstances: true, readableWhenClosed: false },
  );

  describe('signed URLs', () => {
    const path = '/signed/blob';
    const content = new TextEncoder().encode('signed content');
    let driver: GcsDriver;

    beforeAll(async () => {
      driver = new GcsDriver(driverOptions());
      await driver.putContent(path, content);
    });

    afterAll(async () => {
      await driver.delete('/signed');
    });

    afterEach(() => {
      vi.useRealTimers();
    });

    it('serves a GET URL to GET and a HEAD URL to HEAD, each for its own method only', async () => {
      const get = await driver.redirectURL(path, { method: 'GET' });
      const head = await driver.redirectURL(path, { method: 'HEAD' });
      if (get === undefined || head === undefined) throw new Error('expected signed URLs');
      expect(new URL(get).searchParams.get('X-Goog-Expires')).toBe('1200'); // 20 minutes unless told
      const got = await fetch(get);
      expect(got.status).toBe(200);
      expect(new Uint8Array(await got.arrayBuffer())).toEqual(content);
      const headed = await fetch(head, { method: 'HEAD' });
      expect(headed.status).toBe(200);
      expect(headed.headers.get('content-length')).toBe(String(content.length));
      expect((await fetch(get, { method: 'HEAD' })).status).toBe(403);
      expect((await fetch(head)).status).toBe(403);
    });

    it('refuses a tampered URL with 403', async () => {
      const url = await driver.redirectURL(path, { method: 'GET', expiresInSeconds: 60 });
      if (url === undefined) throw new Error('expected a signed URL');
      await driver.putContent('/signed/other', content);
      const signature = new URL(url).searchParams.get('X-Goog-Signature') ?? '';
      const flipped = `${signature.slice(0, -1)}${signature.endsWith('0') ? '1' : '0'}`;
      const tampered = [
        url.replace('/signed/blob?', '/signed/other?'),
        url.replace('X-Goog-Expires=60', 'X-Goog-Expires=600'),
        url.replace(signature, flipped),
      ];
      for (const changed of tampered) {
        expect(changed).not.toBe(url);
        const response = await fetch(changed);
        expect(response.status, changed).toBe(403);
        expect(await response.text()).toContain('SignatureDoesNotMatch');
      }
      // Signed with a key the bucket does not know (the same account name).
      const stranger = new GcsDriver(
        driverOptions({
          credentials: { client_email: CLIENT_EMAIL, private_key: serviceAccountKey().privateKey },
        }),
      );
      const forged = await stranger.redirectURL(path, { method: 'GET' });
      expect((await fetch(forged ?? '')).status).toBe(403);
    });

    it('refuses an expired URL with 400 ExpiredToken', async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(Date.now() - 3600_000);
      const get = await driver.redirectURL(path, { method: 'GET', expiresInSeconds: 600 });
      const head = await driver.redirectURL(path, { method: 'HEAD', expiresInSeconds: 600 });
      vi.useRealTimers();
      const response = await fetch(get ?? '');
      expect(response.status).toBe(400);
      expect(await response.text()).toContain('ExpiredToken');
      expect((await fetch(head ?? '', { method: 'HEAD' })).status).toBe(400);
    });

    it('signs HEAD as the SDK signs GET: for GET, both give the same URL, byte for byte', async () => {
      const storage = new Storage({
        apiEndpoint: running().endpoint,
        credentials: { client_email: CLIENT_EMAIL, private_key: key.privateKey },
      });
      const now = new Date(Math.floor(Date.now() / 1000) * 1000);
      const object = 'root/dir/a-b_c.d~e';
      const [sdk] = await storage
        .bucket(BUCKET)
        .file(object)
        .getSignedUrl({ version: 'v4', action: 'read', accessibleAt: now, expires: now.getTime() + 300_000 });
      const ours = await signedUrlV4(storage, {
        method: 'GET',
        bucket: BUCKET,
        object,
        expiresInSeconds: 300,
        now,
      });
      expect(ours).toBe(sdk);
    });
  });

  describe('writers', () => {
    it('commits more than 32 parts through a tree of composes, leaving no part behind', async () => {
      const driver = new GcsDriver(driverOptions());
      const path = '/tree/blob';
      const pieces = Array.from({ length: 70 }, (_, index) => new TextEncoder().encode(`part ${index};`));
      for (const piece of pieces) {
        const writer = await driver.writer(path, true);
        await writer.write(piece);
        await writer.close();
      }
      const composesBefore = composeRequests();
      const writer = await driver.writer(path, true);
      const total = pieces.reduce((sum, piece) => sum + piece.length, 0);
      expect(writer.size).toBe(total);
      await writer.commit();
      expect(writer.size).toBe(total);
      expect(new TextDecoder().decode(await driver.getContent(path))).toBe(
        pieces.map((piece) => new TextDecoder().decode(piece)).join(''),
      );
      // 70 parts: three composes of 32, 32 and 6 into intermediates, then one of those three.
      expect(composeRequests() - composesBefore).toBe(4);
      const objects = running().objects(BUCKET);
      expect([...objects.keys()].filter((name) => name.includes('~appends'))).toEqual([]);
      expect(objects.get('tree/blob')?.componentCount).toBe(70);
      await driver.delete('/tree');
    });

    it('is needed: the fake refuses a compose of 33 sources, as GCS does', async () => {
      const storage = new Storage({ apiEndpoint: running().endpoint });
      const bucket = storage.bucket(BUCKET);
      const sources = Array.from({ length: 33 }, (_, index) => bucket.file(`compose-limit/${index}`));
      await Promise.all(sources.map((file) => file.save(Buffer.from('x'), { resumable: false })));
      const refused = await bucket.combine(sources, bucket.file('compose-limit/all')).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toMatchObject({ code: 400 });
      expect((refused as Error).message).toMatch(/exceeds the maximum \(32\)/);
      await Promise.all(sources.map((file) => file.delete()));
    });

    it('streams a part with the default chunk size in one final request', async () => {
      const driver = new GcsDriver(driverOptions());
      const path = '/default-chunk/blob';
      const content = new Uint8Array(1024 * KiB + 5).map((_, index) => index % 251);
      const before = running().requests.length;
      const writer = await driver.writer(path, false);
      for (let offset = 0; offset < content.length; offset += 64 * KiB) {
        await writer.write(content.subarray(offset, offset + 64 * KiB));
      }
      await writer.commit();
      const puts = running()
        .requests.slice(before)
        .filter((request) => request.method === 'PUT');
      expect(puts).toHaveLength(1);
      expect(Buffer.compare(await driver.getContent(path), content)).toBe(0);
      await driver.delete('/default-chunk');
    });

    it('puts content with one multipart upload, a single request', async () => {
      const driver = new GcsDriver(driverOptions());
      const before = running().requests.length;
      await driver.putContent('/single/blob', new Uint8Array(512 * KiB).fill(7));
      expect(
        running()
          .requests.slice(before)
          .map(({ method, url }) => `${method} ${url}`),
      ).toEqual([
        expect.stringMatching(/^POST \/upload\/storage\/v1\/b\/registry-test\/o\?.*uploadType=multipart/),
      ]);
      await driver.delete('/single');
    });

    it('checks a whole read against the stored CRC32C', async () => {
      const driver = new GcsDriver(driverOptions());
      await driver.putContent('/corrupt/blob', new TextEncoder().encode('original'));
      const stored = running().objects(BUCKET).get('corrupt/blob');
      if (stored === undefined) throw new Error('not stored');
      stored.data = Buffer.from('tampered'); // Same length, and the CRC32C of the original.
      await expect(driver.getContent('/corrupt/blob')).rejects.toBeInstanceOf(StorageError);
      await driver.delete('/corrupt');
      await expect(driver.stat('/corrupt/blob')).rejects.toBeInstanceOf(PathNotFoundError);
    });
  });
});

describe('gcsDriverFromParameters (storage.gcs)', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'gcs-parameters-'));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  afterEach(() => {
    vi.unstubAllEnvs();
  });

  function keyFile(name: string, content: unknown): string {
    const path = join(dir, name);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }

  function configError(parameters: Record<string, unknown>): string {
    try {
      gcsOptionsFromParameters(parameters);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error('expected a ConfigError');
  }

  it('maps distribution keys, and endpoint, to options', () => {
    expect(
      gcsOptionsFromParameters({
        bucket: 'my-bucket',
        credentials: {
          type: 'service_account',
          project_id: 'my-project',
          private_key_id: 'abc',
          private_key: key.privateKey,
          client_email: CLIENT_EMAIL,
          client_id: '1',
          auth_uri: 'https://accounts.google.com/o/oauth2/auth',
          token_uri: 'https://oauth2.googleapis.com/token',
        },
        rootdirectory: '/registry',
        chunksize: 5 * 1024 * 1024,
        endpoint: 'http://127.0.0.1:4443',
        useragent: 'ignored',
        maxconcurrency: 50,
      }),
    ).toEqual({
      bucket: 'my-bucket',
      credentials: { client_email: CLIENT_EMAIL, private_key: key.privateKey },
      projectId: 'my-project',
      rootDirectory: '/registry',
      chunkSize: 5 * 1024 * 1024,
      endpoint: 'http://127.0.0.1:4443',
    });
    expect(gcsOptionsFromParameters({ bucket: 'b.example.com', chunksize: '262144' })).toEqual({
      bucket: 'b.example.com',
      chunkSize: 262144,
    });
  });

  it('leaves credentials to application default credentials without keyfile or credentials', () => {
    const options = gcsOptionsFromParameters({ bucket: 'my-bucket' });
    expect(options).toEqual({ bucket: 'my-bucket' });
    const driver = gcsDriverFromParameters({ bucket: 'my-bucket' }); // Makes no request until used.
    expect(driver).toBeInstanceOf(GcsDriver);
    expect(driver.name).toBe('gcs');
  });

  it('works with a keyfile: stores, reads and signs with its key', async () => {
    const keyfile = keyFile('key.json', {
      type: 'service_account',
      project_id: 'test-project',
      client_email: CLIENT_EMAIL,
      private_key: key.privateKey,
    });
    expect(gcsOptionsFromParameters({ bucket: BUCKET, keyfile })).toEqual({
      bucket: BUCKET,
      keyFilename: keyfile,
    });
    const driver = gcsDriverFromParameters({ bucket: BUCKET, keyfile, endpoint: running().endpoint });
    const content = new TextEncoder().encode('from a keyfile');
    await driver.putContent('/keyfile/blob', content);
    expect(await driver.getContent('/keyfile/blob')).toEqual(content);
    const url = await driver.redirectURL('/keyfile/blob', { method: 'GET' });
    const response = await fetch(url ?? '');
    expect(response.status).toBe(200);
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(content);
    await driver.delete('/keyfile');
  });

  it('names the key that is missing or invalid', () => {
    const account = { client_email: CLIENT_EMAIL, private_key: key.privateKey };
    expect(configError({})).toBe('storage.gcs.bucket: required');
    expect(configError({ bucket: '' })).toBe('storage.gcs.bucket: required');
    expect(configError({ bucket: ['b'] })).toMatch(/^storage\.gcs\.bucket: expected a string/);
    for (const bucket of ['Upper', 'ab', '-leading', 'trailing-', 'a'.repeat(64), 'a..b']) {
      expect(configError({ bucket })).toMatch(/^storage\.gcs\.bucket: invalid bucket name/);
    }
    expect(configError({ bucket: 'b-1', bucketname: 'x' })).toBe('storage.gcs.bucketname: unknown parameter');
    expect(configError({ bucket: 'b-1', keyfile: join(dir, 'missing.json') })).toMatch(
      /^storage\.gcs\.keyfile: cannot read .*missing\.json/,
    );
    expect(configError({ bucket: 'b-1', keyfile: keyFile('bad.json', 'not json') })).toMatch(
      /^storage\.gcs\.keyfile: cannot read .*: not JSON/,
    );
    expect(configError({ bucket: 'b-1', keyfile: keyFile('untyped.json', { a: 1 }) })).toMatch(
      /^storage\.gcs\.keyfile: .* is not a credential JSON file/,
    );
    expect(
      configError({
        bucket: 'b-1',
        keyfile: keyFile('partial.json', { type: 'service_account', client_email: 'x' }),
      }),
    ).toMatch(/^storage\.gcs\.keyfile: .* without client_email and private_key/);
    const keyfile = keyFile('good.json', { type: 'service_account', ...account });
    expect(configError({ bucket: 'b-1', keyfile, credentials: account })).toMatch(
      /^storage\.gcs\.credentials: give keyfile or credentials, not both/,
    );
    expect(configError({ bucket: 'b-1', credentials: 'a string' })).toMatch(
      /^storage\.gcs\.credentials: expected a map/,
    );
    expect(configError({ bucket: 'b-1', credentials: { private_key: key.privateKey } })).toBe(
      'storage.gcs.credentials.client_email: required',
    );
    expect(configError({ bucket: 'b-1', credentials: { client_email: CLIENT_EMAIL } })).toBe(
      'storage.gcs.credentials.private_key: required',
    );
    expect(configError({ bucket: 'b-1', credentials: { ...account, private_key: 'nope' } })).toBe(
      'storage.gcs.credentials.private_key: expected a PEM private key',
    );
    expect(configError({ bucket: 'b-1', credentials: { ...account, type: 'authorized_user' } })).toMatch(
      /^storage\.gcs\.credentials\.type: expected service_account/,
    );
    expect(configError({ bucket: 'b-1', endpoint: 'not a url' })).toMatch(
      /^storage\.gcs\.endpoint: expected an http/,
    );
    expect(configError({ bucket: 'b-1', endpoint: 'ftp://127.0.0.1' })).toMatch(/^storage\.gcs\.endpoint: /);
    expect(configError({ bucket: 'b-1', rootdirectory: 'a\nb' })).toMatch(/^storage\.gcs\.rootdirectory: /);
    for (const chunksize of [0, 1000, 262145, -262144, 'big', 1.5]) {
      expect(configError({ bucket: 'b-1', chunksize })).toMatch(/^storage\.gcs\.chunksize: /);
    }
  });

  it('refuses an endpoint while STORAGE_EMULATOR_HOST is set, which the SDK would prefer', () => {
    vi.stubEnv('STORAGE_EMULATOR_HOST', 'http://127.0.0.1:9023');
    expect(configError({ bucket: 'b-1', endpoint: 'http://127.0.0.1:4443' })).toMatch(
      /^storage\.gcs\.endpoint: .*STORAGE_EMULATOR_HOST/,
    );
  });
});

describe('the loopback guard of these tests', () => {
  // Addresses from TEST-NET-1 (RFC 5737) and names under .invalid (RFC 2606): should the guard fail, these
  // reach nothing.
  it('refuses connections and lookups beyond 127.0.0.1, however they are made', async () => {
    const before = connections.refused.length;
    expect(() => net.connect(443, 'storage.googleapis.invalid')).toThrow(/beyond loopback/);
    expect(() => tls.connect({ host: '192.0.2.1', port: 443 })).toThrow(/beyond loopback/);
    // By address (no DNS) through Node's HTTP agent, as gcp-metadata asks the metadata server.
    await expect(
      new Promise((resolve, reject) => {
        http.get('http://192.0.2.1/computeMetadata/v1/', resolve).on('error', reject);
      }),
    ).rejects.toThrow(/beyond loopback/);
    await expect(fetch('https://storage.googleapis.invalid/')).rejects.toThrow();
    await expect(dns.promises.lookup('www.googleapis.invalid')).rejects.toThrow(/beyond loopback/);
    await expect(
      new Promise((resolve, reject) => {
        dns.lookup('metadata.google.invalid', (error, address) => {
          if (error) reject(error);
          else resolve(address);
        });
      }),
    ).rejects.toThrow(/beyond loopback/);
    // These were this test's own: take them back, so that the final check counts only the driver's.
    expect(connections.refused.splice(before)).toHaveLength(6);
  });
});

function composeRequests(): number {
  return running().requests.filter(
    (request) => request.method === 'POST' && /\/compose(\?|$)/.test(request.url),
  ).length;
}

/**
 * Refuses, and records, every TCP connection (net.Socket's connect, which net.connect, tls.connect, HTTP
 * agents and fetch all go through) and every DNS lookup for a host that is not loopback, while installed.
 */
function loopbackGuard(): { install(): void; restore(): void; refused: string[] } {
  const refused: string[] = [];
  const isLoopback = (host: unknown): boolean =>
    host === undefined ||
    host === null ||
    host === 'localhost' ||
    host === '::1' ||
    (typeof host === 'string' && /^127\./.test(host));
  const refuse = (what: string, host: unknown): Error => {
    refused.push(`${what} ${String(host)}`);
    return new Error(`refused ${what} to ${String(host)}: beyond loopback`);
  };
  /** The host a Socket#connect call is for (undefined for a local socket path, or the default localhost). */
  const hostOf = (args: unknown[]): unknown => {
    // net.connect passes its arguments normalised, as one array.
    const [first, second] = Array.isArray(args[0]) ? (args[0] as unknown[]) : args;
    if (typeof first === 'object' && first !== null) {
      // As net decides: a non-empty path is a local socket (HTTP agents pass path: null).
      const options = first as { host?: unknown; path?: unknown };
      return typeof options.path === 'string' && options.path !== '' ? undefined : options.host;
    }
    return typeof first === 'number' && typeof second === 'string' ? second : undefined;
  };
  type Call = (this: unknown, ...args: unknown[]) => unknown;
  const socket = net.Socket.prototype as unknown as Record<'connect', Call>;
  const lookups = dns as unknown as Record<'lookup', Call>;
  const promisedLookups = dns.promises as unknown as Record<'lookup', Call>;
  const original = {
    connect: socket.connect,
    lookup: lookups.lookup,
    promisedLookup: promisedLookups.lookup,
  };
  return {
    refused,
    install() {
      socket.connect = function (...args) {
        const host = hostOf(args);
        if (!isLoopback(host)) throw refuse('connection', host);
        return original.connect.apply(this, args);
      };
      lookups.lookup = function (host, ...rest) {
        if (isLoopback(host)) return original.lookup.call(this, host, ...rest);
        const callback = rest.at(-1);
        const error = refuse('DNS lookup', host);
        if (typeof callback === 'function') {
          process.nextTick(() => {
            (callback as (error: Error) => void)(error);
          });
        }
        return undefined;
      };
      promisedLookups.lookup = function (host, ...rest) {
        if (isLoopback(host)) return original.promisedLookup.call(this, host, ...rest);
        return Promise.reject(refuse('DNS lookup', host));
      };
    },
    restore() {
      socket.connect = original.connect;
      lookups.lookup = original.lookup;
      promisedLookups.lookup = original.promisedLookup;
    },
  };
}
