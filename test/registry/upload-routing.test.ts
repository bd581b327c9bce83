/**
 * Signed upload URLs and where uploads go: the upload edge (one PUT straight to storage, linked on first
 * use) and the upload service (uploads.only), in the core. The edge's CloudFront Functions have their own
 * tests (test/edge); the clients' view of it all is in test/e2e/large-layers.test.ts.
 */
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFauxqs, type S3Service } from '../../bin/local/s3-local.js';
import { StorageBackedMetadataStore } from '../../functions/metadata/storage-backed.js';
import type { UploadRouting } from '../../functions/registry/context.js';
import { Registry } from '../../functions/registry/registry.js';
import { UPLOAD_URL_PARAMETER, UploadUrlSigner } from '../../functions/registry/upload-urls.js';
import type { StorageDriver } from '../../functions/storage/driver.js';
import { MemoryDriver } from '../../functions/storage/memory.js';
import { S3Driver } from '../../functions/storage/s3.js';

const SECRET = 'a-test-secret-of-at-least-thirty-two-characters';
const hex = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');
const digestOf = (data: Uint8Array) => `sha256:${hex(data)}`;

/** The contract's format, computed here independently of the signer. */
function expectedUpload(repository: string, id: string, expires: number): string {
  const signature = createHmac('sha256', SECRET).update(`${repository}\n${id}\n${expires}`).digest('hex');
  return `${hex(SECRET).slice(0, 16)}.${expires}.${signature}`;
}

const call = (registry: Registry, method: string, path: string, body?: Uint8Array) =>
  registry.handle(new Request(new URL(path, 'http://registry.test'), { method, body }));

function registry(storage: StorageDriver, routing: Partial<UploadRouting>): Registry {
  return new Registry({
    storage,
    metadata: new StorageBackedMetadataStore(storage),
    uploads: {
      signer: new UploadUrlSigner(SECRET, 3600),
      edge: false,
      service: undefined,
      only: false,
      ...routing,
    },
  });
}

describe('UploadUrlSigner', () => {
  const signer = new UploadUrlSigner(SECRET, 600);
  const now = Date.UTC(2026, 10, 29, 12, 0, 0);
  const expires = now / 1000 + 600;

  it('signs repository, id and expiry in the documented format', () => {
    expect(signer.kid).toBe(hex(SECRET).slice(0, 16));
    expect(signer.sign('team/app', 'abc-123', now)).toBe(expectedUpload('team/app', 'abc-123', expires));
    expect(signer.signedPath('team/app', 'abc-123', now)).toBe(
      `/v2/team/app/blobs/uploads/abc-123?_upload=${expectedUpload('team/app', 'abc-123', expires)}`,
    );
  });

  it('accepts its URL until it expires, then calls it expired', () => {
    const value = signer.sign('app', 'id-1', now);
    expect(signer.check('app', 'id-1', value, now + 600_000)).toBe('valid');
    expect(signer.check('app', 'id-1', value, now + 601_000)).toBe('expired');
  });

  it('refuses a URL for another repository or upload, a changed expiry, another key or garbage', () => {
    const value = signer.sign('app', 'id-1', now);
    const [kid, , signature] = value.split('.');
    expect(signer.check('other', 'id-1', value, now)).toBe('invalid');
    expect(signer.check('app', 'id-2', value, now)).toBe('invalid');
    expect(signer.check('app', 'id-1', `${kid}.${expires + 3600}.${signature}`, now)).toBe('invalid');
    const otherKey = new UploadUrlSigner(`${SECRET}-rotated`, 600);
    expect(otherKey.check('app', 'id-1', value, now)).toBe('invalid');
    for (const garbage of [null, '', 'x.y.z', `${kid}.${expires}.${signature}0`]) {
      expect(signer.check('app', 'id-1', garbage, now)).toBe('invalid');
    }
  });

  it('refuses a short secret', () => {
    expect(() => new UploadUrlSigner('short', 60)).toThrow(/at least 32 characters/);
  });
});

describe('upload Locations', () => {
  it('with the edge: a new upload is signed; answers after a PATCH point back at the API, unsigned', async () => {
    const edge = registry(new MemoryDriver(), { edge: true });
    const post = await call(edge, 'POST', '/v2/app/blobs/uploads/');
    expect(post.status).toBe(202);
    const location = post.headers.get('location') ?? '';
    const id = post.headers.get('docker-upload-uuid') ?? '';
    const signed = new URL(location, 'http://registry.test');
    expect(signed.pathname).toBe(`/v2/app/blobs/uploads/${id}`);
    expect(
      new UploadUrlSigner(SECRET, 1).check('app', id, signed.searchParams.get(UPLOAD_URL_PARAMETER)),
    ).toBe('valid');

    // The API serves the signed URL as any other (the signature is for the edge).
    const patch = await call(edge, 'PATCH', location, new Uint8Array([1, 2, 3]));
    expect(patch.status).toBe(202);
    expect(patch.headers.get('location')).toBe(`/v2/app/blobs/uploads/${id}`);
    const status = await call(edge, 'GET', location);
    expect(status.headers.get('location')).toBe(`/v2/app/blobs/uploads/${id}`);
  });

  it('with the upload service: a new upload points at it, signed', async () => {
    const api = registry(new MemoryDriver(), { service: 'https://uploads.example.com/' });
    const post = await call(api, 'POST', '/v2/team/app/blobs/uploads/');
    const id = post.headers.get('docker-upload-uuid') ?? '';
    const location = new URL(post.headers.get('location') ?? '');
    expect(location.origin).toBe('https://uploads.example.com');
    expect(location.pathname).toBe(`/v2/team/app/blobs/uploads/${id}`);
    expect(location.searchParams.get(UPLOAD_URL_PARAMETER)).toMatch(/^[0-9a-f]{16}\.\d+\.[0-9a-f]{64}$/);
  });

  it('without routing: unchanged, and monolithic uploads and mounts answer as before', async () => {
    const plain = new Registry({
      storage: new MemoryDriver(),
      metadata: new StorageBackedMetadataStore(new MemoryDriver()),
    });
    const post = await call(plain, 'POST', '/v2/app/blobs/uploads/');
    expect(post.headers.get('location')).toBe(
      `/v2/app/blobs/uploads/${post.headers.get('docker-upload-uuid') ?? ''}`,
    );
    const edge = registry(new MemoryDriver(), { edge: true });
    const blob = randomBytes(100);
    const monolithic = await call(edge, 'POST', `/v2/app/blobs/uploads/?digest=${digestOf(blob)}`, blob);
    expect(monolithic.status).toBe(201);
    expect(monolithic.headers.get('location')).toBe(`/v2/app/blobs/${digestOf(blob)}`);
  });
});

describe('the upload service (uploads.only)', () => {
  // The API and the upload service share storage and metadata, as they share the bucket and table.
  const storage = new MemoryDriver();
  const metadata = new StorageBackedMetadataStore(storage);
  const signer = new UploadUrlSigner(SECRET, 3600);
  const api = new Registry({
    storage,
    metadata,
    uploads: { signer, edge: false, service: 'http://uploads.test', only: false },
  });
  const service = new Registry({
    storage,
    metadata,
    uploads: { signer, edge: false, service: undefined, only: true },
  });

  async function start(name = 'app'): Promise<{ url: URL; id: string }> {
    const post = await call(api, 'POST', `/v2/${name}/blobs/uploads/`);
    return {
      url: new URL(post.headers.get('location') ?? ''),
      id: post.headers.get('docker-upload-uuid') ?? '',
    };
  }

  it('takes a chunked upload on a signed URL, keeps signing its Locations, and finishes it for the API', async () => {
    const { url } = await start();
    const blob = randomBytes(3000);
    const patch = await call(service, 'PATCH', url.pathname + url.search, blob.subarray(0, 1000));
    expect(patch.status).toBe(202);
    expect(patch.headers.get('range')).toBe('0-999');
    const next = new URL(patch.headers.get('location') ?? '', url);
    expect(next.searchParams.get(UPLOAD_URL_PARAMETER)).not.toBeNull();
    const patch2 = await call(service, 'PATCH', next.pathname + next.search, blob.subarray(1000));
    const last = new URL(patch2.headers.get('location') ?? '', url);
    last.searchParams.set('digest', digestOf(blob));
    const put = await call(service, 'PUT', last.pathname + last.search);
    expect(put.status).toBe(201);
    expect(put.headers.get('docker-content-digest')).toBe(digestOf(blob));

    const head = await call(api, 'HEAD', `/v2/app/blobs/${digestOf(blob)}`);
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('3000');
  });

  it('refuses unsigned, forged, misdirected and expired upload URLs with 403', async () => {
    const { url, id } = await start();
    const unsigned = await call(service, 'PATCH', url.pathname, randomBytes(10));
    expect(unsigned.status).toBe(403);
    expect(await unsigned.json()).toMatchObject({ errors: [{ code: 'DENIED' }] });

    const value = url.searchParams.get(UPLOAD_URL_PARAMETER) ?? '';
    const forged = value.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
    expect((await call(service, 'PATCH', `${url.pathname}?_upload=${forged}`, randomBytes(10))).status).toBe(
      403,
    );
    // The signature is for one repository's upload: not for another's.
    const other = await start('other');
    expect(
      (await call(service, 'PATCH', `${other.url.pathname}?_upload=${value}`, randomBytes(10))).status,
    ).toBe(403);
    const expires = Math.floor(Date.now() / 1000) - 1;
    const expired = await call(
      service,
      'PATCH',
      `${url.pathname}?_upload=${expectedUpload('app', id, expires)}`,
    );
    expect(expired.status).toBe(403);
    expect(((await expired.json()) as { errors: { message: string }[] }).errors[0]?.message).toMatch(
      /expired/,
    );
  });

  it('serves nothing but upload sessions and the version check', async () => {
    expect((await call(service, 'GET', '/v2/')).status).toBe(200);
    for (const [method, path] of [
      ['POST', '/v2/app/blobs/uploads/'],
      ['GET', '/v2/app/tags/list'],
      ['GET', '/v2/_catalog'],
      ['GET', `/v2/app/manifests/latest`],
      ['HEAD', `/v2/app/blobs/${digestOf(new Uint8Array())}`],
    ] as const) {
      const response = await call(service, method, path);
      expect(response.status, `${method} ${path}`).toBe(404);
    }
  });
});

describe('blobs stored by the upload edge (S3 object metadata), on fauxqs', () => {
  let s3: S3Service;
  let client: S3Client;
  let bucket: string;
  let edge: Registry;

  beforeAll(async () => {
    s3 = await startFauxqs();
    bucket = `edge-${randomUUID().slice(0, 8)}`;
    await s3.createBucket(bucket);
    const options = { endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: s3 };
    client = new S3Client({
      ...options,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    const storage = new S3Driver({
      bucket,
      ...options,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    edge = registry(storage, { edge: true });
  });
  afterAll(async () => {
    client.destroy();
    await s3.stop();
  });

  /** What the edge does for a PUT on a signed URL: the whole blob at its key, with who uploaded it. */
  async function edgePut(blob: Uint8Array, repository: string, upload: string): Promise<string> {
    const digest = hex(blob);
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `blobs/sha256/${digest.slice(0, 2)}/${digest}/data`,
        Body: blob,
        Metadata: { 'registry-repository': repository, 'registry-upload': upload },
      }),
    );
    return `sha256:${digest}`;
  }

  const startUpload = async (name: string) =>
    (await call(edge, 'POST', `/v2/${name}/blobs/uploads/`)).headers.get('docker-upload-uuid') ?? '';

  it('links the blob into its repository on the first HEAD, once, and finishes the session', async () => {
    const id = await startUpload('app');
    const blob = randomBytes(2048);
    const digest = await edgePut(blob, 'app', id);
    const head = await call(edge, 'HEAD', `/v2/app/blobs/${digest}`);
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('2048');
    expect((await call(edge, 'GET', `/v2/app/blobs/uploads/${id}`)).status).toBe(404);
    // Still linked after the session is gone.
    expect((await call(edge, 'HEAD', `/v2/app/blobs/${digest}`)).status).toBe(200);
  });

  it('links on a manifest PUT that names the blob', async () => {
    const id = await startUpload('app');
    const layer = randomBytes(512);
    const layerDigest = await edgePut(layer, 'app', id);
    const config = new TextEncoder().encode('{}');
    const configDigest = digestOf(config);
    expect((await call(edge, 'POST', `/v2/app/blobs/uploads/?digest=${configDigest}`, config)).status).toBe(
      201,
    );
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: 2 },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: 512 }],
    });
    const put = await edge.handle(
      new Request('http://registry.test/v2/app/manifests/v1', {
        method: 'PUT',
        body: manifest,
        headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      }),
    );
    expect(put.status).toBe(201);
  });

  it('links nothing for another repository, an unknown or cancelled session, or without the edge', async () => {
    const id = await startUpload('app');
    const blob = randomBytes(300);
    const digest = await edgePut(blob, 'app', id);
    // Another repository cannot claim bytes it never uploaded, whatever it knows of the digest.
    expect((await call(edge, 'HEAD', `/v2/other/blobs/${digest}`)).status).toBe(404);
    const unknown = await edgePut(randomBytes(300), 'app', randomUUID());
    expect((await call(edge, 'HEAD', `/v2/app/blobs/${unknown}`)).status).toBe(404);
    const cancelledId = await startUpload('app');
    const cancelled = await edgePut(randomBytes(300), 'app', cancelledId);
    expect((await call(edge, 'DELETE', `/v2/app/blobs/uploads/${cancelledId}`)).status).toBe(204);
    expect((await call(edge, 'HEAD', `/v2/app/blobs/${cancelled}`)).status).toBe(404);

    const withoutEdge = registry(
      new S3Driver({
        bucket,
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: true,
        credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      }),
      { edge: false },
    );
    expect((await call(withoutEdge, 'HEAD', `/v2/app/blobs/${digest}`)).status).toBe(404);
    // The session it came from is still open, so the edge registry links it.
    expect((await call(edge, 'HEAD', `/v2/app/blobs/${digest}`)).status).toBe(200);
  });
});
