/**
 * The Lambda adapter, driven with API Gateway HTTP API (payload format 2.0) events built from a real
 * event's JSON, over a registry on the memory driver: what goes in (paths, queries, headers, cookies,
 * base64 bodies) reaches the core intact, and what comes out fits what API Gateway expects.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { beforeEach, describe, expect, it } from 'vitest';
import { lambdaContext } from '../../bin/local/api-gateway.js';
import {
  lambdaAdapter,
  type LambdaHandler,
  MAX_RESPONSE_PAYLOAD_BYTES,
} from '../../functions/http/lambda.js';
import type { ClientInfo } from '../../functions/auth/access.js';
import { loggedPath } from '../../functions/http/access-log.js';
import type { RequestHandler } from '../../functions/http/handler.js';
import type { Logger } from '../../functions/log.js';
import { EmbeddedMetrics } from '../../functions/metrics/emf.js';
import { StorageBackedMetadataStore } from '../../functions/metadata/storage-backed.js';
import { Registry } from '../../functions/registry/registry.js';
import { MemoryDriver } from '../../functions/storage/memory.js';
import { parseEmf } from '../support/emf.js';

const FIXTURE = JSON.parse(
  readFileSync(new URL('./fixtures/apigw-v2-get.json', import.meta.url), 'utf8'),
) as APIGatewayProxyEventV2;
const HOST = FIXTURE.requestContext.domainName;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';

interface EventInit {
  headers?: Record<string, string>;
  /** Bytes go base64-encoded, as API Gateway sends binary bodies; a string goes as text. */
  body?: Uint8Array | string;
  cookies?: string[];
}

/** The fixture, turned into another request as API Gateway would have sent it. */
function apiEvent(method: string, target: string, init: EventInit = {}): APIGatewayProxyEventV2 {
  const event = structuredClone(FIXTURE);
  const split = target.indexOf('?');
  const rawPath = split < 0 ? target : target.slice(0, split);
  const rawQueryString = split < 0 ? '' : target.slice(split + 1);
  event.rawPath = rawPath;
  event.rawQueryString = rawQueryString;
  event.requestContext.http.method = method;
  event.requestContext.http.path = rawPath;
  if (rawQueryString !== '') {
    const parameters: Record<string, string> = {};
    for (const [key, value] of new URLSearchParams(rawQueryString)) {
      parameters[key] = parameters[key] === undefined ? value : `${parameters[key]},${value}`;
    }
    event.queryStringParameters = parameters;
  }
  for (const [name, value] of Object.entries(init.headers ?? {})) event.headers[name.toLowerCase()] = value;
  if (init.body !== undefined) {
    const binary = typeof init.body !== 'string';
    event.body = typeof init.body === 'string' ? init.body : Buffer.from(init.body).toString('base64');
    event.isBase64Encoded = binary;
    event.headers['content-length'] = String(Buffer.byteLength(init.body));
  }
  if (init.cookies) event.cookies = init.cookies;
  return event;
}

interface LogLine {
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

function recordingLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: string) =>
    (message: string, fields: Record<string, unknown> = {}) => {
      lines.push({ level, message, fields });
    };
  return { log: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') }, lines };
}

/** The bytes a client receives from a result. */
function bytesOf(result: APIGatewayProxyStructuredResultV2): Buffer {
  return Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8');
}

function header(result: APIGatewayProxyStructuredResultV2, name: string): string | undefined {
  const value = result.headers?.[name.toLowerCase()];
  return value === undefined ? undefined : String(value);
}

function sha256(content: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(content).digest('hex')}`;
}

function expectAdapterError(result: APIGatewayProxyStructuredResultV2, status: number, code: string): string {
  expect(result.statusCode).toBe(status);
  expect(header(result, 'content-type')).toMatch(/^application\/json/);
  expect(header(result, 'docker-distribution-api-version')).toBe('registry/2.0');
  expect(result.isBase64Encoded).toBe(false);
  const body = JSON.parse(result.body ?? '') as {
    errors: { code: string; message: string; detail: unknown }[];
  };
  expect(body.errors).toHaveLength(1);
  expect(body.errors[0]?.code).toBe(code);
  expect(body.errors[0]?.detail).toBeNull();
  expect(header(result, 'content-length')).toBe(String(Buffer.byteLength(result.body ?? '')));
  return body.errors[0]?.message ?? '';
}

/** A handler that remembers the last Request it was given and answers with respond. */
function recordingHandler(respond: (request: Request) => Response | Promise<Response>) {
  const seen: Request[] = [];
  const handler: RequestHandler = {
    async handle(request) {
      seen.push(request);
      return respond(request);
    },
  };
  return { handler, seen };
}

describe('lambda adapter over the registry', () => {
  let storage: MemoryDriver;
  let registry: Registry;
  let lines: LogLine[];
  let invoke: LambdaHandler;

  beforeEach(() => {
    storage = new MemoryDriver();
    registry = new Registry({ storage, metadata: new StorageBackedMetadataStore(storage) });
    const recorded = recordingLogger();
    lines = recorded.lines;
    invoke = lambdaAdapter(registry, { log: recorded.log, accessLog: true });
  });

  /** Pushes content monolithically through the adapter, as a client behind API Gateway does. */
  async function pushBlob(repository: string, content: Uint8Array): Promise<string> {
    const digest = sha256(content);
    const result = await invoke(
      apiEvent('POST', `/v2/${repository}/blobs/uploads/?digest=${digest}`, {
        headers: { 'content-type': 'application/octet-stream' },
        body: content,
      }),
      lambdaContext(),
    );
    expect(result.statusCode).toBe(201);
    return digest;
  }

  async function pushManifest(repository: string, tag: string): Promise<string> {
    const config = new TextEncoder().encode('{"architecture":"arm64","os":"linux"}');
    const layer = randomBytes(300);
    const manifest = JSON.stringify(
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: {
          mediaType: OCI_CONFIG,
          digest: await pushBlob(repository, config),
          size: config.byteLength,
        },
        layers: [
          {
            mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
            digest: await pushBlob(repository, layer),
            size: layer.byteLength,
          },
        ],
      },
      null,
      3,
    );
    const result = await invoke(
      apiEvent('PUT', `/v2/${repository}/manifests/${tag}`, {
        headers: { 'content-type': OCI_MANIFEST },
        body: manifest,
      }),
      lambdaContext(),
    );
    expect(result.statusCode).toBe(201);
    return manifest;
  }

  it('answers the real GET /v2/ event with 200, its request id and one access-log line', async () => {
    const result = await invoke(FIXTURE, lambdaContext('c0ffee00-1111-4222-8333-444455556666'));

    expect(result.statusCode).toBe(200);
    expect(result.body).toBe('{}');
    expect(result.isBase64Encoded).toBe(false);
    expect(header(result, 'content-type')).toBe('application/json');
    expect(header(result, 'content-length')).toBe('2');
    expect(header(result, 'docker-distribution-api-version')).toBe('registry/2.0');
    expect(header(result, 'x-request-id')).toBe('c0ffee00-1111-4222-8333-444455556666');
    expect(result.cookies).toBeUndefined();

    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'info',
      message: 'request',
      fields: {
        requestId: 'c0ffee00-1111-4222-8333-444455556666',
        method: 'GET',
        path: '/v2/',
        status: 200,
        bytesIn: 0,
        bytesOut: 2,
        remote: '203.0.113.24',
        userAgent: 'containerd/v2.0.4',
      },
    });
    expect(lines[0]?.fields.durationMs).toBeTypeOf('number');
  });

  it('takes a monolithic blob push with a base64 body and serves its bytes back base64-encoded', async () => {
    // Random bytes are not UTF-8: any text decoding on the way would change them.
    const content = randomBytes(64 * 1024 + 5);
    const digest = sha256(content);
    const pushed = await invoke(
      apiEvent('POST', `/v2/lambda/app/blobs/uploads/?digest=${digest}`, {
        headers: { 'content-type': 'application/octet-stream' },
        body: content,
      }),
      lambdaContext(),
    );
    expect(pushed.statusCode).toBe(201);
    expect(header(pushed, 'location')).toBe(`/v2/lambda/app/blobs/${digest}`);
    expect(header(pushed, 'docker-content-digest')).toBe(digest);
    expect(lines.at(-1)?.fields).toMatchObject({ method: 'POST', status: 201, bytesIn: content.byteLength });

    const pulled = await invoke(apiEvent('GET', `/v2/lambda/app/blobs/${digest}`), lambdaContext());
    expect(pulled.statusCode).toBe(200);
    expect(pulled.isBase64Encoded).toBe(true);
    expect(header(pulled, 'content-type')).toBe('application/octet-stream');
    expect(header(pulled, 'content-length')).toBe(String(content.byteLength));
    expect(header(pulled, 'docker-content-digest')).toBe(digest);
    expect(Buffer.compare(bytesOf(pulled), content)).toBe(0);
    expect(lines.at(-1)?.fields).toMatchObject({ status: 200, bytesIn: 0, bytesOut: content.byteLength });
  });

  it('takes a chunked upload: POST, PATCH with a base64 body, PUT with the digest', async () => {
    const content = randomBytes(3000);
    const digest = sha256(content);
    const started = await invoke(apiEvent('POST', '/v2/lambda/chunked/blobs/uploads/'), lambdaContext());
    expect(started.statusCode).toBe(202);
    const location = header(started, 'location') ?? '';
    const patched = await invoke(
      apiEvent('PATCH', location, {
        headers: { 'content-type': 'application/octet-stream', 'content-range': '0-2999' },
        body: content,
      }),
      lambdaContext(),
    );
    expect(patched.statusCode).toBe(202);
    expect(header(patched, 'range')).toBe('0-2999');
    const finished = await invoke(
      apiEvent('PUT', `${header(patched, 'location') ?? ''}?digest=${digest}`),
      lambdaContext(),
    );
    expect(finished.statusCode).toBe(201);
    const pulled = await invoke(apiEvent('GET', `/v2/lambda/chunked/blobs/${digest}`), lambdaContext());
    expect(Buffer.compare(bytesOf(pulled), content)).toBe(0);
  });

  it('takes a manifest PUT as text and serves it back as the same text', async () => {
    const manifest = await pushManifest('lambda/app', 'v1');
    const pulled = await invoke(
      apiEvent('GET', '/v2/lambda/app/manifests/v1', { headers: { accept: OCI_MANIFEST } }),
      lambdaContext(),
    );
    expect(pulled.statusCode).toBe(200);
    expect(pulled.isBase64Encoded).toBe(false);
    expect(pulled.body).toBe(manifest);
    expect(header(pulled, 'content-type')).toBe(OCI_MANIFEST);
    expect(header(pulled, 'content-length')).toBe(String(Buffer.byteLength(manifest)));
    expect(header(pulled, 'docker-content-digest')).toBe(sha256(manifest));
  });

  it('keeps every byte of a manifest served as text, a byte order mark included', async () => {
    const config = await pushBlob('lambda/bom', new TextEncoder().encode('{}'));
    const text = `\uFEFF${JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config, size: 2 },
      layers: [],
      annotations: { note: 'héllo ✓' },
    })}`;
    const bytes = Buffer.from(text, 'utf8');
    // Sent base64 this time: API Gateway encodes what it does not take for text.
    const put = await invoke(
      apiEvent('PUT', '/v2/lambda/bom/manifests/v1', {
        headers: { 'content-type': OCI_MANIFEST },
        body: bytes,
      }),
      lambdaContext(),
    );
    expect(put.statusCode).toBe(201);
    expect(header(put, 'docker-content-digest')).toBe(sha256(bytes));

    const pulled = await invoke(apiEvent('GET', '/v2/lambda/bom/manifests/v1'), lambdaContext());
    expect(pulled.isBase64Encoded).toBe(false);
    expect(Buffer.compare(bytesOf(pulled), bytes)).toBe(0);
  });

  it('hands the core the raw path and query string, encoded characters intact', async () => {
    for (const name of ['a/b', 'a/c', 'a/d']) await pushBlob(name, new TextEncoder().encode(name));
    const { handler, seen } = recordingHandler((request) => registry.handle(request));
    const recorded = lambdaAdapter(handler, { log: recordingLogger().log, accessLog: false });

    const page = await recorded(apiEvent('GET', '/v2/_catalog?n=1&last=a%2Fb'), lambdaContext());
    expect(seen[0]?.url).toBe(`https://${HOST}/v2/_catalog?n=1&last=a%2Fb`);
    expect(page.statusCode).toBe(200);
    expect(JSON.parse(page.body ?? '')).toEqual({ repositories: ['a/c'] });
    expect(header(page, 'link')).toBe('</v2/_catalog?n=1&last=a%2Fc>; rel="next"');

    // %2F and %3F in the path stay what they are; a decoded path would move the route or the query.
    await recorded(apiEvent('GET', '/v2/a%2Fb/tags/list?x=%26%3D%23'), lambdaContext());
    const url = new URL(seen[1]?.url ?? '');
    expect(url.pathname).toBe('/v2/a%2Fb/tags/list');
    expect(url.search).toBe('?x=%26%3D%23');
    expect(url.searchParams.get('x')).toBe('&=#');
  });

  it('builds the URL from the Host header, falling back to the domain name', async () => {
    const { handler, seen } = recordingHandler(() => new Response(null, { status: 204 }));
    const recorded = lambdaAdapter(handler, { log: recordingLogger().log, accessLog: false });
    await recorded(apiEvent('GET', '/v2/', { headers: { host: 'registry.example.com' } }), lambdaContext());
    const noHost = apiEvent('GET', '/v2/');
    delete noHost.headers.host;
    await recorded(noHost, lambdaContext());
    // A Host that is not a host name must not become part of the path.
    await recorded(apiEvent('GET', '/v2/', { headers: { host: 'evil.example/v2/x?' } }), lambdaContext());
    expect(seen.map((request) => request.url)).toEqual([
      'https://registry.example.com/v2/',
      `https://${HOST}/v2/`,
      `https://${HOST}/v2/`,
    ]);
  });

  it('builds the URL from X-Forwarded-Host behind the upload edge, whose origin requests carry the API host', async () => {
    const { handler, seen } = recordingHandler(() => new Response(null, { status: 204 }));
    const recorded = lambdaAdapter(handler, { log: recordingLogger().log, accessLog: false });
    const headers = { host: 'abc.execute-api.us-east-1.amazonaws.com' };
    await recorded(
      apiEvent('GET', '/v2/', { headers: { ...headers, 'x-forwarded-host': 'registry.example.com' } }),
      lambdaContext(),
    );
    await recorded(
      apiEvent('GET', '/v2/', {
        headers: { ...headers, 'x-forwarded-host': 'bad/host, registry.example.com' },
      }),
      lambdaContext(),
    );
    expect(seen.map((request) => request.url)).toEqual([
      'https://registry.example.com/v2/',
      'https://abc.execute-api.us-east-1.amazonaws.com/v2/',
    ]);
  });

  it('passes repeated headers joined with commas, and joins repeated response headers', async () => {
    const manifest = await pushManifest('lambda/accept', 'v1');
    const accept = `application/vnd.docker.distribution.manifest.v2+json,${OCI_MANIFEST}`;
    const { handler, seen } = recordingHandler(async (request) => {
      const response = await registry.handle(request);
      response.headers.append('Vary', 'Accept');
      response.headers.append('Vary', 'Authorization');
      return response;
    });
    const recorded = lambdaAdapter(handler, { log: recordingLogger().log, accessLog: false });

    const pulled = await recorded(
      apiEvent('GET', '/v2/lambda/accept/manifests/v1', { headers: { accept } }),
      lambdaContext(),
    );
    expect(seen[0]?.headers.get('accept')).toBe(accept);
    expect(pulled.statusCode).toBe(200);
    expect(pulled.body).toBe(manifest);
    expect(header(pulled, 'vary')).toBe('Accept, Authorization');
  });

  it('puts cookies back into a Cookie header and Set-Cookie headers into cookies', async () => {
    const { handler, seen } = recordingHandler(() => {
      const headers = new Headers({ 'Content-Type': 'text/plain', 'Content-Length': '2' });
      headers.append('Set-Cookie', 'session=abc; Path=/; Secure; HttpOnly');
      headers.append('Set-Cookie', 'theme=dark; Path=/');
      return new Response('ok', { status: 200, headers });
    });
    const recorded = lambdaAdapter(handler, { log: recordingLogger().log, accessLog: false });

    const result = await recorded(
      apiEvent('GET', '/v2/', { cookies: ['session=abc', 'theme=light'] }),
      lambdaContext(),
    );
    expect(seen[0]?.headers.get('cookie')).toBe('session=abc; theme=light');
    expect(result.cookies).toEqual(['session=abc; Path=/; Secure; HttpOnly', 'theme=dark; Path=/']);
    expect(header(result, 'set-cookie')).toBeUndefined();
    expect(result.body).toBe('ok');
  });

  it('gives the core no body for GET and HEAD, and the decoded bytes with their length otherwise', async () => {
    const { handler, seen } = recordingHandler(() => new Response(null, { status: 204 }));
    const recorded = lambdaAdapter(handler, { log: recordingLogger().log, accessLog: false });
    const withBody = (method: string) => {
      const event = apiEvent(method, '/v2/x/blobs/uploads/', { body: new Uint8Array([1, 2, 3]) });
      delete event.headers['content-length'];
      event.headers['transfer-encoding'] = 'chunked';
      return event;
    };
    await recorded(withBody('GET'), lambdaContext());
    await recorded(withBody('HEAD'), lambdaContext());
    await recorded(withBody('PATCH'), lambdaContext());
    expect(seen.map((request) => request.body === null)).toEqual([true, true, false]);
    const patch = seen[2];
    expect(patch?.headers.get('content-length')).toBe('3');
    expect(patch?.headers.get('transfer-encoding')).toBeNull();
    expect(new Uint8Array((await patch?.arrayBuffer()) ?? new ArrayBuffer(0))).toEqual(
      new Uint8Array([1, 2, 3]),
    );
  });

  it('answers HEAD with the headers of a GET and no body', async () => {
    const content = randomBytes(1000);
    const digest = await pushBlob('lambda/head', content);
    const result = await invoke(apiEvent('HEAD', `/v2/lambda/head/blobs/${digest}`), lambdaContext());
    expect(result.statusCode).toBe(200);
    expect(result.body).toBe('');
    expect(result.isBase64Encoded).toBe(false);
    expect(header(result, 'content-length')).toBe('1000');
    expect(header(result, 'docker-content-digest')).toBe(digest);

    const missing = await invoke(apiEvent('HEAD', '/v2/lambda/head/manifests/nope'), lambdaContext());
    expect(missing.statusCode).toBe(404);
    expect(missing.body).toBe('');
  });

  it('sends the registry errors as JSON text', async () => {
    const result = await invoke(apiEvent('GET', '/v2/lambda/none/manifests/v1'), lambdaContext());
    expect(result.statusCode).toBe(404);
    expect(result.isBase64Encoded).toBe(false);
    expect(header(result, 'content-type')).toMatch(/^application\/json/);
    expect(JSON.parse(result.body ?? '')).toEqual({
      errors: [
        { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown to registry', detail: { reference: 'v1' } },
      ],
    });
  });

  it('sends text that is not UTF-8 as base64, byte for byte', async () => {
    const latin1 = Buffer.from('caf\xe9', 'latin1');
    const { handler } = recordingHandler(
      () => new Response(latin1, { headers: { 'Content-Type': 'text/plain; charset=iso-8859-1' } }),
    );
    const result = await lambdaAdapter(handler, { log: recordingLogger().log, accessLog: false })(
      apiEvent('GET', '/v2/'),
      lambdaContext(),
    );
    expect(result.isBase64Encoded).toBe(true);
    expect(Buffer.compare(bytesOf(result), latin1)).toBe(0);
  });

  it('adds the configured headers, which the registry may override', async () => {
    const withHeaders = lambdaAdapter(registry, {
      log: recordingLogger().log,
      accessLog: false,
      headers: { 'X-Content-Type-Options': ['nosniff'], 'Content-Type': ['text/html'] },
    });
    const result = await withHeaders(apiEvent('GET', '/v2/'), lambdaContext());
    expect(header(result, 'x-content-type-options')).toBe('nosniff');
    expect(header(result, 'content-type')).toBe('application/json');
  });

  const malformed: [string, (event: Record<string, unknown>) => unknown][] = [
    ['not an object', () => 'GET /v2/'],
    ['an empty object', () => ({})],
    ['no requestContext.http', (event) => ({ ...event, requestContext: { requestId: 'x' } })],
    ['a non-string rawPath', (event) => ({ ...event, rawPath: 42 })],
    ['a rawPath that is not a path', (event) => ({ ...event, rawPath: 'v2/' })],
    ['a rawPath with a fragment', (event) => ({ ...event, rawPath: '/v2/#x' })],
    ['a non-string rawQueryString', (event) => ({ ...event, rawQueryString: ['n=1'] })],
    ['headers that are not an object', (event) => ({ ...event, headers: 'host: x' })],
    ['cookies that are not strings', (event) => ({ ...event, cookies: [1, 2] })],
    [
      'a header value with a line break',
      (event) => ({ ...event, headers: { host: HOST, 'x-a': 'a\r\nb: c' } }),
    ],
    [
      'neither a Host header nor a domainName',
      (event) => ({ ...event, headers: {}, requestContext: { http: { method: 'GET' } } }),
    ],
  ];

  it.each(malformed)('answers an event with %s with a 400 error body', async (_what, change) => {
    const { handler, seen } = recordingHandler(() => new Response(null, { status: 204 }));
    const recorded = recordingLogger();
    const event = change(structuredClone(FIXTURE) as unknown as Record<string, unknown>);
    const result = await lambdaAdapter(handler, { log: recorded.log, accessLog: true })(
      event as APIGatewayProxyEventV2,
      lambdaContext('bad-event'),
    );
    expect(expectAdapterError(result, 400, 'UNSUPPORTED')).toMatch(/^malformed request: /);
    expect(header(result, 'x-request-id')).toBe('bad-event');
    expect(seen).toHaveLength(0);
    expect(recorded.lines.at(-1)?.fields).toMatchObject({ requestId: 'bad-event', status: 400 });
  });

  it.each([
    ['characters outside the alphabet', 'AAEC!!==', true],
    ['a length that is not a multiple of 4', 'AAECAw', true],
    ['padding in the middle', 'AA==AAEC', true],
    ['a body that is not a string', { data: 'AAEC' }, true],
    ['the method TRACE', 'AAEC', 'TRACE'],
  ])('answers a PATCH with %s with a 400 error body', async (_what, body, method) => {
    const event = apiEvent(typeof method === 'string' ? method : 'PATCH', '/v2/x/blobs/uploads/abc');
    Object.assign(event, { body, isBase64Encoded: true });
    const result = await invoke(event, lambdaContext());
    expectAdapterError(result, 400, 'UNSUPPORTED');
  });

  it('serves a 4 MiB blob, whose base64 still fits in a Lambda response', async () => {
    const content = randomBytes(4 * 1024 * 1024);
    const digest = sha256(content);
    expect((await registry.handle(monolithicPush('lambda/fits', content))).status).toBe(201);
    const result = await invoke(apiEvent('GET', `/v2/lambda/fits/blobs/${digest}`), lambdaContext());
    expect(result.statusCode).toBe(200);
    expect(result.isBase64Encoded).toBe(true);
    expect(sha256(bytesOf(result))).toBe(digest);
  });

  it('refuses with a clear 500 a blob too large for a Lambda response, and logs it', async () => {
    // Pushed past the adapter: API Gateway would refuse this body too.
    const content = randomBytes(5 * 1024 * 1024);
    const digest = sha256(content);
    expect((await registry.handle(monolithicPush('lambda/large', content))).status).toBe(201);

    const result = await invoke(
      apiEvent('GET', `/v2/lambda/large/blobs/${digest}`),
      lambdaContext('too-big'),
    );
    const message = expectAdapterError(result, 500, 'UNKNOWN');
    expect(message).toMatch(/too large for a Lambda response/);
    expect(message).toMatch(/must be served by redirect/);
    expect(header(result, 'x-request-id')).toBe('too-big');
    expect(lines.find((line) => line.level === 'error')).toMatchObject({
      message: 'response too large for Lambda: blobs must be served by redirect',
      fields: { requestId: 'too-big', status: 200, contentLength: content.byteLength },
    });
    expect(lines.at(-1)).toMatchObject({ message: 'request', fields: { requestId: 'too-big', status: 500 } });
  });

  it('never reads a body announced too large, and stops reading one that turns out too large', async () => {
    let pulls = 0;
    const endless = () =>
      new ReadableStream<Uint8Array>({
        pull(controller) {
          pulls += 1;
          controller.enqueue(new Uint8Array(1024 * 1024).fill(0x61));
        },
      });
    const announced = recordingHandler(
      () => new Response(endless(), { headers: { 'Content-Length': String(5 * 1024 * 1024) } }),
    );
    const first = await lambdaAdapter(announced.handler, { log: recordingLogger().log, accessLog: false })(
      apiEvent('GET', '/v2/'),
      lambdaContext(),
    );
    expectAdapterError(first, 500, 'UNKNOWN');
    expect(pulls).toBeLessThanOrEqual(1);

    pulls = 0;
    const unannounced = recordingHandler(
      () => new Response(endless(), { headers: { 'Content-Type': 'text/plain' } }),
    );
    const second = await lambdaAdapter(unannounced.handler, { log: recordingLogger().log, accessLog: false })(
      apiEvent('GET', '/v2/'),
      lambdaContext(),
    );
    expectAdapterError(second, 500, 'UNKNOWN');
    expect(pulls).toBeLessThanOrEqual(Math.ceil(MAX_RESPONSE_PAYLOAD_BYTES / (1024 * 1024)) + 2);
  });

  it('answers 500 with the request id when the handler throws, and logs the error', async () => {
    const recorded = recordingLogger();
    const failing = lambdaAdapter(
      {
        handle: () => Promise.reject(new Error('storage exploded')),
      },
      { log: recorded.log, accessLog: true },
    );
    const result = await failing(apiEvent('GET', '/v2/'), lambdaContext('req-500'));
    expect(expectAdapterError(result, 500, 'UNKNOWN')).toBe('internal error (request req-500)');
    expect(recorded.lines[0]).toMatchObject({
      level: 'error',
      fields: { requestId: 'req-500', error: 'storage exploded' },
    });
    expect(recorded.lines[1]?.fields).toMatchObject({ requestId: 'req-500', status: 500 });
  });

  it('writes one EMF line per request, by route and status, with the access log off', async () => {
    const emf: string[] = [];
    const metrics = new EmbeddedMetrics('Registry', (line) => {
      emf.push(line);
    });
    const measured = lambdaAdapter(registry, { log: recordingLogger().log, accessLog: false, metrics });
    const content = randomBytes(3000);
    const digest = sha256(content);
    const pushed = await measured(
      apiEvent('POST', `/v2/lambda/emf/blobs/uploads/?digest=${digest}`, { body: content }),
      lambdaContext(),
    );
    expect(pushed.statusCode).toBe(201);
    expect(
      (await measured(apiEvent('GET', `/v2/lambda/emf/blobs/${digest}`), lambdaContext())).statusCode,
    ).toBe(200);
    expect(
      (await measured(apiEvent('HEAD', `/v2/lambda/emf/blobs/${digest}`), lambdaContext())).statusCode,
    ).toBe(200);
    await measured(apiEvent('GET', '/v2/lambda/emf/manifests/v1'), lambdaContext());
    await measured({ ...FIXTURE, rawPath: 'not a path' }, lambdaContext());

    const lines = emf.map(parseEmf);
    expect(
      lines.map(({ Route, Status, BytesIn, BytesOut, BlobBytesPushed }) => ({
        Route,
        Status,
        BytesIn,
        BytesOut,
        BlobBytesPushed,
      })),
    ).toEqual([
      { Route: 'blob_upload', Status: '201', BytesIn: 3000, BytesOut: 0, BlobBytesPushed: 3000 },
      { Route: 'blob', Status: '200', BytesIn: 0, BytesOut: 3000, BlobBytesPushed: undefined },
      { Route: 'blob', Status: '200', BytesIn: 0, BytesOut: 0, BlobBytesPushed: undefined },
      {
        Route: 'manifest',
        Status: '404',
        BytesIn: 0,
        BytesOut: expect.any(Number) as number,
        BlobBytesPushed: undefined,
      },
      // A malformed event never reaches the registry, which names routes.
      {
        Route: 'unknown',
        Status: '400',
        BytesIn: 0,
        BytesOut: expect.any(Number) as number,
        BlobBytesPushed: undefined,
      },
    ]);
    expect(lines.map((line) => [line.ClientErrors, line.Errors])).toEqual([
      [0, 0],
      [0, 0],
      [0, 0],
      [1, 0],
      [1, 0],
    ]);
  });

  it('gives the registry the request id before it handles the request, and logs its route and repository', async () => {
    const clients: ClientInfo[] = [];
    const recorded = recordingLogger();
    const watched = lambdaAdapter(
      {
        handle(request, client = {}) {
          clients.push({ ...client });
          return registry.handle(request, client);
        },
      },
      { log: recorded.log, accessLog: true },
    );
    await watched(apiEvent('GET', '/v2/lambda/logged/manifests/v1'), lambdaContext('req-route'));
    expect(clients[0]?.requestId).toBe('req-route');
    expect(recorded.lines.at(-1)?.fields).toMatchObject({
      requestId: 'req-route',
      status: 404,
      route: 'manifest',
      repository: 'lambda/logged',
    });
  });

  it('leaves the signature of a signed upload URL out of the access log', async () => {
    const { handler } = recordingHandler(() => new Response(null, { status: 204 }));
    const recorded = recordingLogger();
    const signature = 'f'.repeat(64);
    await lambdaAdapter(handler, { log: recorded.log, accessLog: true })(
      apiEvent('PATCH', `/v2/x/blobs/uploads/abc?n=1&_upload=0123456789abcdef.1700000000.${signature}`),
      lambdaContext(),
    );
    expect(recorded.lines.at(-1)?.fields.path).toBe(
      '/v2/x/blobs/uploads/abc?n=1&_upload=0123456789abcdef.1700000000.redacted',
    );
    expect(JSON.stringify(recorded.lines)).not.toContain(signature);
    // The parameter as the registry reads it, whatever its spelling or shape.
    expect(loggedPath(`/v2/x/blobs/uploads/abc?%5Fupload=a.b.${signature}&last=1`)).toBe(
      '/v2/x/blobs/uploads/abc?%5Fupload=a.b.redacted&last=1',
    );
    expect(loggedPath(`/v2/x/blobs/uploads/abc?_upload=${signature}`)).toBe(
      '/v2/x/blobs/uploads/abc?_upload=redacted',
    );
    expect(loggedPath('/v2/_catalog?n=10&last=a')).toBe('/v2/_catalog?n=10&last=a');
    expect(loggedPath('/v2/')).toBe('/v2/');
  });

  it('writes no access log when it is disabled', async () => {
    const recorded = recordingLogger();
    await lambdaAdapter(registry, { log: recorded.log, accessLog: false })(FIXTURE, lambdaContext());
    expect(recorded.lines).toHaveLength(0);
  });
});

function monolithicPush(repository: string, content: Uint8Array): Request {
  return new Request(`https://${HOST}/v2/${repository}/blobs/uploads/?digest=${sha256(content)}`, {
    method: 'POST',
    body: content,
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(content.byteLength) },
  });
}
