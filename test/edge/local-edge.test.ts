// The local upload edge (bin/local/cloudfront.ts) in front of an in-test API origin, with the bucket in
// fauxqs (which stores what it gets, without checking signatures) or in an in-test stand-in for S3 that
// checks the SigV4 signature the way S3 and RGW do and shows when the first body bytes arrive.
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type LocalEdge, type LocalEdgeS3, startLocalEdge } from '../../bin/local/cloudfront.js';
import { listenOnLoopback } from '../../bin/local/free-port.js';
import { type S3Service, startFauxqs } from '../../bin/local/s3-local.js';

const SECRET = randomBytes(32).toString('base64url');
const KID = createHash('sha256').update(SECRET, 'utf8').digest('hex').slice(0, 16);
const NAME = 'library/alpine';
const ID = 'b6a7c1de-1f0a-4f53-9d0e-5c3a1f0e2b7d';
const BUCKET = 'registry';

function signedUploadPath(name = NAME, id = ID): string {
  const expires = Math.floor(Date.now() / 1000) + 600;
  const signature = createHmac('sha256', SECRET).update(`${name}\n${id}\n${expires}`).digest('hex');
  return `/v2/${name}/blobs/uploads/${id}?_upload=${KID}.${expires}.${signature}`;
}

interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bodyBytes: number;
}

/** An HTTP origin that records each request and answers with what `answer` says. */
async function startOrigin(
  answer: (received: Received) => { status: number; headers?: Record<string, string> },
) {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const entry: Received = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      bodyBytes: 0,
    };
    received.push(entry);
    req.on('data', (chunk: Buffer) => {
      entry.bodyBytes += chunk.byteLength;
    });
    req.on('end', () => {
      const { status, headers } = answer(entry);
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end('{"from":"origin"}');
    });
  });
  const port = await listenOnLoopback(server);
  return { url: `http://127.0.0.1:${port}`, received, stop: () => close(server) };
}

function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => {
    server.close(() => {
      resolve();
    });
  });
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request through the edge; the body comes from `send`, which may pace it. */
function exchange(
  url: string,
  method: string,
  headers: Record<string, string | number> = {},
  send: (write: (chunk: Buffer) => Promise<void>) => Promise<void> = () => Promise.resolve(),
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString() });
      });
    });
    req.on('error', reject);
    const write = (chunk: Buffer) =>
      new Promise<void>((done) => {
        if (req.write(chunk)) done();
        else req.once('drain', done);
      });
    send(write).then(
      () => req.end(),
      (error: unknown) => req.destroy(error as Error),
    );
  });
}

describe('the local edge in front of an API origin and fauxqs', () => {
  let s3: S3Service;
  let api: Awaited<ReturnType<typeof startOrigin>>;
  let edge: LocalEdge;
  let bucket: LocalEdgeS3;
  let status = 200;

  beforeAll(async () => {
    s3 = await startFauxqs();
    await s3.createBucket(BUCKET);
    api = await startOrigin(() => ({ status }));
    bucket = {
      endpoint: s3.endpoint,
      bucket: BUCKET,
      region: s3.region,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
    };
    edge = await startLocalEdge({ apiOrigin: api.url, s3: bucket, keyValueStore: new Map([[KID, SECRET]]) });
  });

  afterAll(async () => {
    await edge.stop();
    await api.stop();
    await s3.stop();
  });

  afterEach(() => {
    status = 200;
  });

  it('stores a signed single PUT at the blob key with its metadata, and answers 201', async () => {
    const blob = randomBytes(1024 * 1024 + 7);
    const hex = createHash('sha256').update(blob).digest('hex');
    const before = { ...edge.stats.s3 };
    const apiRequests = api.received.length;
    const answer = await exchange(
      `${edge.url}${signedUploadPath()}&digest=sha256%3A${hex}`,
      'PUT',
      { 'content-length': blob.byteLength, 'content-type': 'application/octet-stream' },
      (write) => write(blob),
    );
    expect(answer.status).toBe(201);
    expect(answer.headers.location).toBe(`/v2/${NAME}/blobs/sha256:${hex}`);
    expect(answer.headers['docker-content-digest']).toBe(`sha256:${hex}`);
    expect(edge.stats.s3.requests - before.requests).toBe(1);
    expect(edge.stats.s3.bodyBytes - before.bodyBytes).toBe(blob.byteLength);
    expect(api.received.length).toBe(apiRequests);

    const client = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    try {
      const object = await client.send(
        new GetObjectCommand({ Bucket: BUCKET, Key: `blobs/sha256/${hex.slice(0, 2)}/${hex}/data` }),
      );
      const stored = Buffer.from((await object.Body?.transformToByteArray()) ?? []);
      expect(createHash('sha256').update(stored).digest('hex')).toBe(hex);
      expect(object.Metadata).toEqual({ 'registry-repository': NAME, 'registry-upload': ID });
    } finally {
      client.destroy();
    }
  });

  it('sends other requests to the API origin with the viewer headers but Host, and what CloudFront adds', async () => {
    const before = { ...edge.stats.api };
    const answer = await exchange(`${edge.url}/v2/${NAME}/tags/list?n=10`, 'GET', {
      authorization: 'Bearer token',
      cookie: 'a=1; b=2',
    });
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('{"from":"origin"}');
    const received = api.received.at(-1);
    expect(received?.url).toBe(`/v2/${NAME}/tags/list?n=10`);
    expect(received?.headers.host).toBe(new URL(api.url).host);
    expect(received?.headers['x-forwarded-host']).toBe(edge.host);
    expect(received?.headers.authorization).toBe('Bearer token');
    expect(received?.headers.cookie).toBe('a=1; b=2');
    expect(received?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(received?.headers.via).toMatch(/cloudfront\.net \(CloudFront\)$/);
    expect(received?.headers['x-amz-cf-id']).toBeTruthy();
    expect(edge.stats.api.requests - before.requests).toBe(1);
  });

  it('streams a chunk of a PATCH to the API origin and its answer back', async () => {
    status = 202;
    const before = { ...edge.stats.api };
    const s3Requests = edge.stats.s3.requests;
    const chunk = randomBytes(3 * 1024 * 1024);
    const answer = await exchange(
      `${edge.url}${signedUploadPath()}`,
      'PATCH',
      { 'content-length': chunk.byteLength, 'content-range': `0-${chunk.byteLength - 1}` },
      (write) => write(chunk),
    );
    expect(answer.status).toBe(202);
    expect(api.received.at(-1)?.bodyBytes).toBe(chunk.byteLength);
    expect(edge.stats.api.bodyBytes - before.bodyBytes).toBe(chunk.byteLength);
    expect(edge.stats.s3.requests).toBe(s3Requests);
  });

  it('runs the viewer response function on the upload behavior only', async () => {
    // A PUT the API answers 200 on the upload path becomes 201; on the default behavior it stays 200.
    const hex = createHash('sha256').update('x').digest('hex');
    const upload = await exchange(`${edge.url}/v2/${NAME}/blobs/uploads/${ID}?digest=sha256:${hex}`, 'PUT', {
      'content-length': 0,
    });
    expect(upload.status).toBe(201);
    expect(upload.headers.location).toBe(`/v2/${NAME}/blobs/sha256:${hex}`);
    const manifest = await exchange(`${edge.url}/v2/${NAME}/manifests/latest?digest=sha256:${hex}`, 'PUT', {
      'content-length': 0,
    });
    expect(manifest.status).toBe(200);
    expect(manifest.headers.location).toBeUndefined();
  });

  it('answers a forged upload URL at the edge, with nothing forwarded', async () => {
    const before = { s3: edge.stats.s3.requests, api: edge.stats.api.requests };
    const forged = signedUploadPath().replace(/.$/, (c) => (c === '0' ? '1' : '0'));
    const answer = await exchange(
      `${edge.url}${forged}&digest=sha256:${'0'.repeat(64)}`,
      'PUT',
      { 'content-length': 4 },
      (write) => write(Buffer.from('blob')),
    );
    expect(answer.status).toBe(403);
    expect(answer.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(JSON.parse(answer.body)).toMatchObject({ errors: [{ code: 'DENIED' }] });
    expect({ s3: edge.stats.s3.requests, api: edge.stats.api.requests }).toEqual(before);
  });

  it('refuses a URL over 8,192 bytes as CloudFront does', async () => {
    const answer = await exchange(`${edge.url}/v2/?q=${'a'.repeat(8200)}`, 'GET');
    expect(answer.status).toBe(414);
  });

  it('passes an S3 error through untouched (no viewer response function at 400 and over)', async () => {
    const missing = await startLocalEdge({
      apiOrigin: api.url,
      s3: { ...bucket, bucket: 'no-such-bucket' },
      keyValueStore: new Map([[KID, SECRET]]),
    });
    try {
      const hex = createHash('sha256').update('blob').digest('hex');
      const answer = await exchange(
        `${missing.url}${signedUploadPath()}&digest=sha256:${hex}`,
        'PUT',
        { 'content-length': 4 },
        (write) => write(Buffer.from('blob')),
      );
      expect(answer.status).toBe(404);
      expect(answer.body).toMatch(/NoSuchBucket/);
      expect(answer.headers['docker-content-digest']).toBeUndefined();
      expect(missing.stats.s3.requests).toBe(1);
    } finally {
      await missing.stop();
    }
  });
});

/**
 * Checks an AWS SigV4 Authorization header the way S3 and RGW do, from the request as received:
 * canonical request over the signed headers, with x-amz-content-sha256 as the payload hash.
 */
function sigV4Valid(
  method: string,
  url: string,
  headers: IncomingHttpHeaders,
  credentials: { accessKeyId: string; secretAccessKey: string },
): boolean {
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(
      String(headers.authorization),
    );
  if (!match || match[1] !== credentials.accessKeyId) return false;
  const [, , date = '', region = '', signedHeaders = '', signature = ''] = match;
  const { pathname, searchParams } = new URL(url, 'http://x');
  const query = [...searchParams].sort().map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  const canonicalHeaders = signedHeaders
    .split(';')
    .map((name) => `${name}:${String(headers[name]).trim()}\n`)
    .join('');
  const canonical = [
    method,
    pathname,
    query.join('&'),
    canonicalHeaders,
    signedHeaders,
    String(headers['x-amz-content-sha256']),
  ].join('\n');
  const scope = `${date}/${region}/s3/aws4_request`;
  const toSign = [
    'AWS4-HMAC-SHA256',
    String(headers['x-amz-date']),
    scope,
    createHash('sha256').update(canonical).digest('hex'),
  ].join('\n');
  let key: Buffer = Buffer.from(`AWS4${credentials.secretAccessKey}`);
  for (const part of [date, region, 's3', 'aws4_request'])
    key = createHmac('sha256', key).update(part).digest();
  return createHmac('sha256', key).update(toSign).digest('hex') === signature;
}

describe('the local edge towards S3: signing and streaming', () => {
  const credentials = { accessKeyId: 'AKIDLOCALEDGE', secretAccessKey: randomBytes(20).toString('hex') };
  let fakeS3: Server;
  let api: Awaited<ReturnType<typeof startOrigin>>;
  let edge: LocalEdge;
  let firstBytes: () => void = () => undefined;
  const arrived: {
    headers: IncomingHttpHeaders;
    method: string;
    url: string;
    bytes: number;
    sha256: string;
  }[] = [];

  beforeAll(async () => {
    // Answers 200 like S3 once the body is in; calls firstBytes when the first body bytes arrive.
    fakeS3 = createServer((req, res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        if (bytes === 0) firstBytes();
        bytes += chunk.byteLength;
        hash.update(chunk);
      });
      req.on('end', () => {
        arrived.push({
          headers: req.headers,
          method: req.method ?? '',
          url: req.url ?? '',
          bytes,
          sha256: hash.digest('hex'),
        });
        res.writeHead(200, { etag: '"x"', 'content-length': 0 });
        res.end();
      });
    });
    const port = await listenOnLoopback(fakeS3);
    api = await startOrigin(() => ({ status: 500 }));
    edge = await startLocalEdge({
      apiOrigin: api.url,
      s3: { endpoint: `http://127.0.0.1:${port}`, bucket: BUCKET, region: 'eu-west-1', ...credentials },
      keyValueStore: new Map([[KID, SECRET]]),
    });
  });

  afterAll(async () => {
    await edge.stop();
    await api.stop();
    await close(fakeS3);
  });

  it('streams a 64 MiB blob to S3: the first bytes arrive before the client has sent the rest', async () => {
    const block = randomBytes(1024 * 1024);
    const mib = 64;
    const hash = createHash('sha256');
    for (let i = 0; i < mib; i++) hash.update(block);
    const hex = hash.digest('hex');
    const reached = new Promise<void>((resolve) => {
      firstBytes = resolve;
    });
    const answer = await exchange(
      `${edge.url}${signedUploadPath()}&digest=sha256:${hex}`,
      'PUT',
      { 'content-length': mib * block.byteLength },
      async (write) => {
        await write(block);
        // A buffering edge would never pass this point: nothing reaches S3 before the body is complete.
        await reached;
        for (let i = 1; i < mib; i++) await write(block);
      },
    );
    expect(answer.status).toBe(201);
    const stored = arrived.at(-1);
    expect(stored?.bytes).toBe(mib * block.byteLength);
    expect(stored?.sha256).toBe(hex);
    expect(stored?.url).toBe(`/${BUCKET}/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`);
    expect(edge.stats.s3.bodyBytes).toBe(mib * block.byteLength);
    expect(api.received).toHaveLength(0);
  });

  it('signs with SigV4 over host, length, date, payload hash and metadata, the hash being the digest', async () => {
    const blob = Buffer.from('a small blob');
    const hex = createHash('sha256').update(blob).digest('hex');
    const answer = await exchange(
      `${edge.url}${signedUploadPath()}&digest=sha256:${hex}`,
      'PUT',
      { 'content-length': blob.byteLength, authorization: 'Bearer client-token' },
      (write) => write(blob),
    );
    expect(answer.status).toBe(201);
    const stored = arrived.at(-1);
    if (!stored) throw new Error('nothing reached S3');
    expect(stored.headers['x-amz-content-sha256']).toBe(hex);
    const signedHeaders = /SignedHeaders=([^,]+)/.exec(String(stored.headers.authorization))?.[1]?.split(';');
    expect(signedHeaders).toEqual(
      expect.arrayContaining([
        'content-length',
        'host',
        'x-amz-content-sha256',
        'x-amz-date',
        'x-amz-meta-registry-repository',
        'x-amz-meta-registry-upload',
      ]),
    );
    expect(sigV4Valid(stored.method, stored.url, stored.headers, credentials)).toBe(true);
    const otherKey = { ...credentials, secretAccessKey: 'not-the-key' };
    expect(sigV4Valid(stored.method, stored.url, stored.headers, otherKey)).toBe(false);
  });
});
