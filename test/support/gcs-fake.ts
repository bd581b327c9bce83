/**
 * A small fake of Google Cloud Storage's JSON API, on node:http at 127.0.0.1 (port 0), holding objects in
 * a Map. It answers exactly the requests that @google-cloud/storage 7 sends for what GcsDriver does:
 *
 * - uploads: `POST /upload/storage/v1/b/:bucket/o` with uploadType=media, multipart (multipart/related:
 *   JSON metadata, then the media) or resumable (answers a session URI in Location), and the resumable
 *   session protocol on `PUT <session>`: `Content-Range: bytes a-b/*` (a chunk: at least 256 KiB, of
 *   which the largest multiple of 256 KiB is kept; 308 with `Range: bytes=0-n`), `bytes a-b/N` and
 *   `bytes a-*\/N|*` (final: 200 and the object), `bytes *\/*` (status: 308, or 200 once finalised),
 *   `bytes *\/N` (finalise); an X-Goog-Hash crc32c that does not match the bytes gets 400;
 * - `GET /storage/v1/b/:bucket/o/:object` (metadata), with alt=media (the bytes, with x-goog-hash, and
 *   206/416 for a Range); `GET /storage/v1/b/:bucket/o` (list: prefix, delimiter, startOffset,
 *   endOffset, pageToken, maxResults); `DELETE /storage/v1/b/:bucket/o/:object`;
 *   `POST …/o/:dest/compose` (1 to 32 sources, refusing more with 400, as GCS does);
 *   `POST …/o/:src/rewriteTo/b/:bucket/o/:dest` (a copy, done in one call);
 * - signed URLs: `GET|HEAD /:bucket/:object?X-Goog-Algorithm=GOOG4-RSA-SHA256&…`, verified by rebuilding
 *   the V4 canonical request (https://cloud.google.com/storage/docs/authentication/canonical-requests)
 *   from the request as received and checking the RSA-SHA256 signature against the PUBLIC half of the key
 *   the test made: a signature that does not match (another method, path, query or key) gets 403
 *   SignatureDoesNotMatch, an expired URL 400 ExpiredToken, as GCS answers.
 *
 * What it proves: that our driver drives the real SDK correctly against the documented JSON API (the
 * requests, their order, the resumable-session and compose rules above, checksums), and that the signed
 * URLs we hand out verify under the V4 algorithm, for the method they were made for. What it does not
 * prove: GCS's own behaviour beyond those rules (its error details, retries, rate limits and quotas,
 * consistency under concurrency, soft delete, storage classes), nor authentication: the SDK sends no token
 * to a custom endpoint and this fake checks none (only signed URLs are checked). One concession: the SDK
 * signs the host without its port, so the fake drops the port from the Host header it verifies against.
 */
import { createHash, randomBytes, verify, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** GCS's limit on the sources of one compose request. */
export const MAX_COMPOSE_SOURCES = 32;
/** Resumable chunks but the last must be multiples of this. */
export const UPLOAD_CHUNK_GRANULARITY = 256 * 1024;
const MAX_SIGNED_URL_EXPIRY = 7 * 24 * 60 * 60;

export interface FakeObject {
  name: string;
  data: Buffer;
  generation: number;
  updated: Date;
  contentType: string;
  /** User metadata (x-goog-meta-*). */
  metadata?: Record<string, string>;
  /** The number of non-composite objects it was composed of; absent for an upload. */
  componentCount?: number;
  /** Base64 CRC32C and MD5 of data, computed when stored (composites have no MD5). */
  crc32c: string;
  md5: string | undefined;
}

/** One request as received, for tests that look at what the SDK sent. */
export interface RecordedRequest {
  method: string;
  url: string;
  authorization: string | undefined;
}

interface Session {
  bucket: string;
  name: string;
  contentType: string;
  metadata: Record<string, string> | undefined;
  received: Buffer[];
  length: number;
  finished: FakeObject | undefined;
}

export interface GcsFakeOptions {
  /** The buckets that exist; requests for any other get 404. */
  buckets: readonly string[];
  /** The public key signed URLs must verify with, and the service account they must name. */
  signer: { publicKey: KeyObject; clientEmail: string };
}

export class GcsFake {
  readonly requests: RecordedRequest[] = [];
  readonly #buckets = new Map<string, Map<string, FakeObject>>();
  readonly #sessions = new Map<string, Session>();
  readonly #server: Server;
  readonly #signer: GcsFakeOptions['signer'];
  #generation = 1_700_000_000_000_000;
  #endpoint = '';

  private constructor(options: GcsFakeOptions) {
    for (const bucket of options.buckets) this.#buckets.set(bucket, new Map());
    this.#signer = options.signer;
    this.#server = createServer((request, response) => {
      this.#handle(request, response).catch((error: unknown) => {
        if (!response.headersSent) sendError(response, 500, 'backendError', String(error));
        else response.destroy();
      });
    });
  }

  static async start(options: GcsFakeOptions): Promise<GcsFake> {
    const fake = new GcsFake(options);
    await new Promise<void>((resolve, reject) => {
      fake.#server.once('error', reject);
      fake.#server.listen(0, '127.0.0.1', () => {
        resolve();
      });
    });
    fake.#endpoint = `http://127.0.0.1:${(fake.#server.address() as AddressInfo).port}`;
    return fake;
  }

  /** The base URL to give the SDK as apiEndpoint. */
  get endpoint(): string {
    return this.#endpoint;
  }

  /** The objects of a bucket, by name (live: tests may look, and change them). */
  objects(bucket: string): Map<string, FakeObject> {
    const objects = this.#buckets.get(bucket);
    if (objects === undefined) throw new Error(`no bucket ${bucket}`);
    return objects;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) =>
      this.#server.close(() => {
        resolve();
      }),
    );
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    response.on('error', () => undefined); // A client that hangs up mid-response (a cancelled read).
    const method = request.method ?? 'GET';
    const rawUrl = request.url ?? '/';
    this.requests.push({ method, url: rawUrl, authorization: request.headers.authorization });
    const body = await readBody(request);
    const url = new URL(rawUrl, 'http://fake');
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);

    if (url.searchParams.has('X-Goog-Algorithm')) {
      this.#signedRequest(request, response, method, url, rawUrl);
      return;
    }
    if (
      segments[0] === 'upload' &&
      segments[1] === 'storage' &&
      segments[2] === 'v1' &&
      segments[3] === 'b'
    ) {
      const bucket = segments[4] ?? '';
      if (!this.#bucketExists(bucket, response)) return;
      if (method === 'POST' && segments.length === 6 && segments[5] === 'o') {
        this.#startUpload(request, response, bucket, url, body);
        return;
      }
      const session = this.#sessions.get(url.searchParams.get('upload_id') ?? '');
      if (session === undefined) {
        sendError(response, 404, 'notFound', 'No such upload session');
        return;
      }
      if (method === 'PUT') this.#continueUpload(request, response, session, body);
      else if (method === 'DELETE') {
        this.#sessions.delete(url.searchParams.get('upload_id') ?? '');
        response.writeHead(499).end();
      } else sendError(response, 405, 'methodNotAllowed', `${method} on an upload session`);
      return;
    }
    if (segments[0] !== 'storage' || segments[1] !== 'v1' || segments[2] !== 'b' || segments[4] !== 'o') {
      sendError(response, 404, 'notFound', `Not Found: ${method} ${url.pathname}`);
      return;
    }
    const bucket = segments[3] ?? '';
    if (!this.#bucketExists(bucket, response)) return;
    const objects = this.objects(bucket);
    const name = segments[5];
    if (name === undefined) {
      if (method === 'GET') sendJson(response, 200, this.#list(bucket, url.searchParams));
      else sendError(response, 405, 'methodNotAllowed', `${method} on a bucket's objects`);
      return;
    }
    if (segments.length === 7 && segments[6] === 'compose' && method === 'POST') {
      this.#compose(response, bucket, name, body);
      return;
    }
    if (segments.length === 11 && segments[6] === 'rewriteTo' && segments[7] === 'b' && method === 'POST') {
      this.#rewrite(response, bucket, name, segments[8] ?? '', segments[10] ?? '');
      return;
    }
    if (segments.length !== 6) {
      sendError(response, 404, 'notFound', `Not Found: ${method} ${url.pathname}`);
      return;
    }
    const object = objects.get(name);
    if (object === undefined) {
      sendError(response, 404, 'notFound', `No such object: ${bucket}/${name}`);
      return;
    }
    if (method === 'DELETE') {
      objects.delete(name);
      response.writeHead(204).end();
    } else if (method === 'GET' && url.searchParams.get('alt') === 'media') {
      sendMedia(request, response, object, true);
    } else if (method === 'GET') {
      sendJson(response, 200, resource(bucket, object));
    } else {
      sendError(response, 405, 'methodNotAllowed', `${method} on an object`);
    }
  }

  #bucketExists(bucket: string, response: ServerResponse): boolean {
    if (this.#buckets.has(bucket)) return true;
    sendError(response, 404, 'notFound', 'The specified bucket does not exist.');
    return false;
  }

  #store(
    bucket: string,
    name: string,
    data: Buffer,
    contentType: string,
    extra: Pick<Partial<FakeObject>, 'metadata' | 'componentCount'> = {},
  ): FakeObject {
    const object: FakeObject = {
      name,
      data,
      contentType,
      generation: this.#generation++,
      updated: new Date(),
      crc32c: crc32cBase64(data),
      md5: extra.componentCount === undefined ? createHash('md5').update(data).digest('base64') : undefined,
      ...extra,
    };
    this.objects(bucket).set(name, object);
    return object;
  }

  #startUpload(
    request: IncomingMessage,
    response: ServerResponse,
    bucket: string,
    url: URL,
    body: Buffer,
  ): void {
    const uploadType = url.searchParams.get('uploadType');
    if (uploadType === 'media') {
      const name = url.searchParams.get('name') ?? '';
      if (name === '') {
        sendError(response, 400, 'required', 'Required: name');
        return;
      }
      const contentType = request.headers['content-type'] ?? 'application/octet-stream';
      sendJson(response, 200, resource(bucket, this.#store(bucket, name, body, contentType)));
      return;
    }
    if (uploadType === 'multipart') {
      const parts = parseMultipart(request.headers['content-type'] ?? '', body);
      const [metadataPart, mediaPart] = parts ?? [];
      if (metadataPart === undefined || mediaPart === undefined || parts?.length !== 2) {
        sendError(response, 400, 'invalid', 'Expected a multipart/related body of metadata and media');
        return;
      }
      const metadata = parseJsonObject(metadataPart.body);
      const name = url.searchParams.get('name') ?? stringField(metadata, 'name') ?? '';
      if (name === '') {
        sendError(response, 400, 'required', 'Required: name');
        return;
      }
      const contentType =
        stringField(metadata, 'contentType') ??
        mediaPart.headers['content-type'] ??
        'application/octet-stream';
      if (!hashMatches(request.headers['x-goog-hash'], mediaPart.body)) {
        sendError(response, 400, 'invalid', 'Provided CRC32C does not match the data');
        return;
      }
      const object = this.#store(bucket, name, mediaPart.body, contentType, userMetadata(metadata));
      sendJson(response, 200, resource(bucket, object));
      return;
    }
    if (uploadType === 'resumable') {
      const metadata = body.length === 0 ? {} : parseJsonObject(body);
      const name = url.searchParams.get('name') ?? stringField(metadata, 'name') ?? '';
      if (name === '') {
        sendError(response, 400, 'required', 'Required: name');
        return;
      }
      const id = randomBytes(12).toString('hex');
      const header = request.headers['x-upload-content-type'];
      this.#sessions.set(id, {
        bucket,
        name,
        contentType:
          (typeof header === 'string' ? header : undefined) ??
          stringField(metadata, 'contentType') ??
          'application/octet-stream',
        metadata: userMetadata(metadata).metadata,
        received: [],
        length: 0,
        finished: undefined,
      });
      const location = new URL(`${this.#endpoint}/upload/storage/v1/b/${bucket}/o`);
      location.searchParams.set('uploadType', 'resumable');
      location.searchParams.set('name', name);
      location.searchParams.set('upload_id', id);
      response.writeHead(200, { Location: location.href, 'Content-Length': 0 }).end();
      return;
    }
    sendError(response, 400, 'invalid', `Invalid uploadType ${JSON.stringify(uploadType)}`);
  }

  /** One PUT of the resumable session protocol (see the module comment). */
  #continueUpload(request: IncomingMessage, response: ServerResponse, session: Session, body: Buffer): void {
    const range = request.headers['content-range'] ?? '';
    const match = /^bytes (?:\*|(\d+)-(-?\d+|\*))\/(\d+|\*)$/.exec(range);
    if (match === null) {
      sendError(response, 400, 'invalid', `Invalid Content-Range ${range}`);
      return;
    }
    const [, first, last, total] = match;
    if (session.finished !== undefined) {
      sendJson(response, 200, resource(session.bucket, session.finished));
      return;
    }
    const persisted = (): void => {
      response
        .writeHead(308, {
          ...(session.length > 0 && { Range: `bytes=0-${session.length - 1}` }),
          'Content-Length': 0,
        })
        .end();
    };
    if (first === undefined) {
      // A status query (bytes */*), or the end of an upload whose bytes were all sent (bytes */N).
      if (body.length > 0) {
        sendError(response, 400, 'invalid', 'A status query carries no bytes');
        return;
      }
      if (total === '*') {
        persisted();
        return;
      }
      this.#finishUpload(request, response, session, Number(total));
      return;
    }
    const start = Number(first);
    if (start > session.length) {
      sendError(response, 400, 'invalid', `Chunk starts at ${start}, ${session.length} bytes persisted`);
      return;
    }
    if (last !== '*' && Number(last) - start + 1 !== body.length) {
      sendError(response, 400, 'invalid', `Content-Range ${range} for ${body.length} bytes`);
      return;
    }
    // Bytes the client sends again (it may not know what was persisted) are skipped.
    const fresh = body.subarray(session.length - start);
    const endsUpload = last === '*' || (total !== '*' && Number(last) + 1 === Number(total));
    if (!endsUpload) {
      // A chunk before the last: only whole multiples of 256 KiB are persisted.
      if (body.length < UPLOAD_CHUNK_GRANULARITY) {
        sendError(
          response,
          400,
          'invalid',
          `Invalid request. The number of bytes uploaded is required to be equal or greater than ` +
            `${UPLOAD_CHUNK_GRANULARITY}, except for the final request. The received request contained ` +
            `${body.length} bytes, which does not meet this requirement.`,
        );
        return;
      }
      const kept = Math.floor((start + body.length) / UPLOAD_CHUNK_GRANULARITY) * UPLOAD_CHUNK_GRANULARITY;
      session.received.push(fresh.subarray(0, Math.max(0, kept - session.length)));
      session.length = Math.max(session.length, kept);
      persisted();
      return;
    }
    session.received.push(fresh);
    session.length += fresh.length;
    this.#finishUpload(request, response, session, total === '*' ? session.length : Number(total));
  }

  #finishUpload(request: IncomingMessage, response: ServerResponse, session: Session, total: number): void {
    if (total !== session.length) {
      sendError(response, 400, 'invalid', `Upload of ${total} bytes ends after ${session.length}`);
      return;
    }
    const data = Buffer.concat(session.received);
    if (!hashMatches(request.headers['x-goog-hash'], data)) {
      sendError(response, 400, 'invalid', 'Provided CRC32C does not match the data');
      return;
    }
    session.finished = this.#store(session.bucket, session.name, data, session.contentType, {
      ...(session.metadata && { metadata: session.metadata }),
    });
    session.received = [];
    sendJson(response, 200, resource(session.bucket, session.finished));
  }

  #list(bucket: string, query: URLSearchParams): Record<string, unknown> {
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') ?? '';
    const maxResults = Math.min(Number(query.get('maxResults') ?? 1000) || 1000, 1000);
    const after = query.has('pageToken')
      ? Buffer.from(query.get('pageToken') ?? '', 'base64url').toString()
      : undefined;
    // Names from startOffset (inclusive) and before endOffset (exclusive), compared as bytes.
    const startOffset = query.get('startOffset') ?? '';
    const endOffset = query.get('endOffset') ?? '';
    const inRange = (name: string): boolean =>
      Buffer.compare(Buffer.from(name), Buffer.from(startOffset)) >= 0 &&
      (endOffset === '' || Buffer.compare(Buffer.from(name), Buffer.from(endOffset)) < 0);
    // Objects and prefixes form one name-ordered sequence, which pages cut at maxResults entries.
    const entries = new Map<string, FakeObject | undefined>();
    for (const [name, object] of this.objects(bucket)) {
      if (!name.startsWith(prefix) || !inRange(name)) continue;
      const cut = delimiter === '' ? -1 : name.indexOf(delimiter, prefix.length);
      if (cut === -1) entries.set(name, object);
      else entries.set(name.slice(0, cut + delimiter.length), undefined);
    }
    const ordered = [...entries.keys()]
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
      .filter((name) => after === undefined || Buffer.compare(Buffer.from(name), Buffer.from(after)) > 0);
    const page = ordered.slice(0, maxResults);
    const items = page.flatMap((name) => {
      const object = entries.get(name);
      return object === undefined ? [] : [resource(bucket, object)];
    });
    const prefixes = page.filter((name) => entries.get(name) === undefined);
    const last = page.at(-1);
    return {
      kind: 'storage#objects',
      ...(items.length > 0 && { items }),
      ...(prefixes.length > 0 && { prefixes }),
      ...(ordered.length > page.length &&
        last !== undefined && { nextPageToken: Buffer.from(last).toString('base64url') }),
    };
  }

  #compose(response: ServerResponse, bucket: string, destination: string, body: Buffer): void {
    const request = parseJsonObject(body);
    const sources = Array.isArray(request.sourceObjects) ? (request.sourceObjects as unknown[]) : [];
    if (sources.length === 0) {
      sendError(response, 400, 'required', 'Required: sourceObjects');
      return;
    }
    if (sources.length > MAX_COMPOSE_SOURCES) {
      sendError(
        response,
        400,
        'invalid',
        `The number of source components provided (${sources.length}) exceeds the maximum (${MAX_COMPOSE_SOURCES})`,
      );
      return;
    }
    const objects = this.objects(bucket);
    const found: FakeObject[] = [];
    for (const source of sources) {
      const name = typeof source === 'object' && source !== null ? stringField(source, 'name') : undefined;
      const object = name === undefined ? undefined : objects.get(name);
      if (object === undefined) {
        sendError(response, 404, 'notFound', `Object ${bucket}/${String(name)} not found`);
        return;
      }
      const generation = (source as Record<string, unknown>).generation;
      if (generation !== undefined && Number(generation) !== object.generation) {
        sendError(
          response,
          404,
          'notFound',
          `Object ${bucket}/${name} generation ${JSON.stringify(generation)}`,
        );
        return;
      }
      found.push(object);
    }
    const target =
      typeof request.destination === 'object' && request.destination !== null
        ? (request.destination as Record<string, unknown>)
        : {};
    const object = this.#store(
      bucket,
      destination,
      Buffer.concat(found.map((source) => source.data)),
      stringField(target, 'contentType') ?? 'application/octet-stream',
      { componentCount: found.reduce((count, source) => count + (source.componentCount ?? 1), 0) },
    );
    sendJson(response, 200, resource(bucket, object));
  }

  #rewrite(response: ServerResponse, bucket: string, source: string, toBucket: string, dest: string): void {
    const object = this.objects(bucket).get(source);
    if (object === undefined) {
      sendError(response, 404, 'notFound', `No such object: ${bucket}/${source}`);
      return;
    }
    if (!this.#bucketExists(toBucket, response)) return;
    const copy = this.#store(toBucket, dest, object.data, object.contentType, {
      ...(object.metadata && { metadata: { ...object.metadata } }),
      ...(object.componentCount !== undefined && { componentCount: object.componentCount }),
    });
    sendJson(response, 200, {
      kind: 'storage#rewriteResponse',
      totalBytesRewritten: String(copy.data.length),
      objectSize: String(copy.data.length),
      done: true,
      resource: resource(toBucket, copy),
    });
  }

  /** A request by signed URL (XML API style): verified, then served. */
  #signedRequest(
    request: IncomingMessage,
    response: ServerResponse,
    method: string,
    url: URL,
    rawUrl: string,
  ): void {
    const refusal = this.#verifySignature(request, method, url, rawUrl);
    if (refusal !== undefined) {
      sendXmlError(response, refusal.status, refusal.code, refusal.message, method);
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      sendXmlError(response, 405, 'MethodNotAllowed', 'Only GET and HEAD are served here', method);
      return;
    }
    const [bucket, ...rest] = url.pathname.slice(1).split('/').map(decodeURIComponent);
    const object = this.#buckets.get(bucket ?? '')?.get(rest.join('/'));
    if (object === undefined) {
      sendXmlError(response, 404, 'NoSuchKey', 'The specified key does not exist.', method);
      return;
    }
    sendMedia(request, response, object, method === 'GET');
  }

  /** Why a signed request is refused (status, XML error code), or undefined if it verifies. */
  #verifySignature(
    request: IncomingMessage,
    method: string,
    url: URL,
    rawUrl: string,
  ): { status: number; code: string; message: string } | undefined {
    const query = url.searchParams;
    const invalid = (message: string): { status: number; code: string; message: string } => ({
      status: 400,
      code: 'AuthenticationRequired',
      message,
    });
    if (query.get('X-Goog-Algorithm') !== 'GOOG4-RSA-SHA256') return invalid('Unsupported X-Goog-Algorithm');
    const date = query.get('X-Goog-Date') ?? '';
    const expires = Number(query.get('X-Goog-Expires'));
    const signature = query.get('X-Goog-Signature') ?? '';
    const signedHeaders = query.get('X-Goog-SignedHeaders') ?? '';
    const [email, ...scope] = (query.get('X-Goog-Credential') ?? '').split('/');
    const dated = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(date);
    if (dated === null) return invalid('Invalid X-Goog-Date');
    if (!Number.isInteger(expires) || expires < 1 || expires > MAX_SIGNED_URL_EXPIRY) {
      return invalid('Invalid X-Goog-Expires');
    }
    if (scope.join('/') !== `${date.slice(0, 8)}/auto/storage/goog4_request`) {
      return invalid('Invalid credential scope');
    }
    if (!/^[0-9a-f]+$/.test(signature) || !signedHeaders.split(';').includes('host')) {
      return invalid('Invalid X-Goog-Signature or X-Goog-SignedHeaders');
    }
    const [, year, month, day, hour, minute, second] = dated.map(Number);
    const signedAt = Date.UTC(year ?? 0, (month ?? 1) - 1, day, hour, minute, second);
    if (Date.now() > signedAt + expires * 1000) {
      return { status: 400, code: 'ExpiredToken', message: 'Invalid argument. Request has expired.' };
    }
    // The canonical request, rebuilt from what was received (path and query as sent, minus the signature).
    const path = rawUrl.slice(0, rawUrl.includes('?') ? rawUrl.indexOf('?') : undefined);
    const canonicalQuery = [...query.entries()]
      .filter(([key]) => key !== 'X-Goog-Signature')
      .map(([key, value]) => [rfc3986(key), rfc3986(value)] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, value]) => `${key}=${value}`)
      .join('&');
    const headerValue = (header: string): string => {
      const value =
        header === 'host' ? (request.headers.host ?? '').replace(/:\d+$/, '') : request.headers[header];
      return (Array.isArray(value) ? value.join(',') : (value ?? '')).trim().replace(/\s+/g, ' ');
    };
    const canonicalHeaders = signedHeaders
      .split(';')
      .map((header) => `${header}:${headerValue(header)}\n`)
      .join('');
    const canonicalRequest = [
      method,
      path,
      canonicalQuery,
      canonicalHeaders,
      signedHeaders,
      'UNSIGNED-PAYLOAD',
    ].join('\n');
    const stringToSign = [
      'GOOG4-RSA-SHA256',
      date,
      scope.join('/'),
      createHash('sha256').update(canonicalRequest).digest('hex'),
    ].join('\n');
    const valid =
      email === this.#signer.clientEmail &&
      verify('RSA-SHA256', Buffer.from(stringToSign), this.#signer.publicKey, Buffer.from(signature, 'hex'));
    if (!valid) {
      return {
        status: 403,
        code: 'SignatureDoesNotMatch',
        message: 'The request signature we calculated does not match the signature you provided.',
      };
    }
    return undefined;
  }
}

/** The JSON resource of an object, as the API describes it. */
function resource(bucket: string, object: FakeObject): Record<string, unknown> {
  return {
    kind: 'storage#object',
    id: `${bucket}/${object.name}/${object.generation}`,
    name: object.name,
    bucket,
    generation: String(object.generation),
    metageneration: '1',
    contentType: object.contentType,
    size: String(object.data.length),
    crc32c: object.crc32c,
    // Composite objects have no MD5 (GCS keeps only the CRC32C of a composition).
    ...(object.md5 !== undefined && { md5Hash: object.md5 }),
    ...(object.componentCount !== undefined && { componentCount: object.componentCount }),
    etag: `C${object.generation}`,
    storageClass: 'STANDARD',
    timeCreated: object.updated.toISOString(),
    updated: object.updated.toISOString(),
    ...(object.metadata && { metadata: object.metadata }),
  };
}

/** An object's bytes (or, for HEAD, only its headers), honouring a Range header. */
function sendMedia(
  request: IncomingMessage,
  response: ServerResponse,
  object: FakeObject,
  withBody: boolean,
): void {
  const size = object.data.length;
  const hashes = [`crc32c=${object.crc32c}`];
  if (object.md5 !== undefined) hashes.push(`md5=${object.md5}`);
  const headers = {
    'Content-Type': object.contentType,
    'x-goog-hash': hashes.join(','),
    'x-goog-stored-content-encoding': 'identity',
    'x-goog-stored-content-length': String(size),
    'x-goog-generation': String(object.generation),
    'Last-Modified': object.updated.toUTCString(),
    'Accept-Ranges': 'bytes',
  };
  const range = request.headers.range;
  if (range === undefined) {
    response.writeHead(200, { ...headers, 'Content-Length': size });
    response.end(withBody ? object.data : undefined);
    return;
  }
  const match = /^bytes=(\d*)-(\d*)$/.exec(range);
  let start: number;
  let end: number;
  if (match === null || (match[1] === '' && match[2] === '')) {
    response.writeHead(200, { ...headers, 'Content-Length': size });
    response.end(withBody ? object.data : undefined);
    return;
  } else if (match[1] === '') {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  if (start >= size || end < start) {
    sendError(response, 416, 'requestedRangeNotSatisfiable', 'Request range not satisfiable');
    return;
  }
  response.writeHead(206, {
    ...headers,
    'Content-Length': end - start + 1,
    'Content-Range': `bytes ${start}-${end}/${size}`,
  });
  response.end(withBody ? object.data.subarray(start, end + 1) : undefined);
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'Content-Type': 'application/json; charset=UTF-8',
    'Content-Length': Buffer.byteLength(text),
  });
  response.end(text);
}

/** A JSON API error, in the shape GCS sends. */
function sendError(response: ServerResponse, status: number, reason: string, message: string): void {
  sendJson(response, status, {
    error: { code: status, message, errors: [{ message, domain: 'global', reason }] },
  });
}

/** An XML API error (signed URLs are served by the XML API). */
function sendXmlError(
  response: ServerResponse,
  status: number,
  code: string,
  message: string,
  method: string,
): void {
  const text = `<?xml version='1.0' encoding='UTF-8'?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  response.writeHead(status, {
    'Content-Type': 'application/xml; charset=UTF-8',
    'Content-Length': Buffer.byteLength(text),
  });
  response.end(method === 'HEAD' ? undefined : text);
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The parts of a multipart/related body: their headers (lower-cased names) and bytes. */
function parseMultipart(
  contentType: string,
  body: Buffer,
): { headers: Record<string, string>; body: Buffer }[] | undefined {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (!contentType.startsWith('multipart/related') || boundary === undefined) return undefined;
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: { headers: Record<string, string>; body: Buffer }[] = [];
  let at = body.indexOf(delimiter);
  while (at !== -1) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') return parts; // The closing delimiter.
    const next = body.indexOf(delimiter, start);
    if (next === -1) return undefined;
    // Each part: CRLF, headers, CRLF CRLF, bytes, CRLF (before the next delimiter).
    const part = body.subarray(start + 2, next - 2);
    const split = part.indexOf('\r\n\r\n');
    if (split === -1) return undefined;
    const headers: Record<string, string> = {};
    for (const line of part.subarray(0, split).toString().split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    parts.push({ headers, body: part.subarray(split + 4) });
    at = next;
  }
  return undefined;
}

function parseJsonObject(body: Buffer): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(body.toString());
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function stringField(object: object, key: string): string | undefined {
  const value = (object as Record<string, unknown>)[key];
  return typeof value === 'string' ? value : undefined;
}

function userMetadata(metadata: Record<string, unknown>): { metadata?: Record<string, string> } {
  const given = metadata.metadata;
  if (typeof given !== 'object' || given === null) return {};
  const entries = Object.entries(given).filter(
    (entry): entry is [string, string] => typeof entry[1] === 'string',
  );
  return entries.length === 0 ? {} : { metadata: Object.fromEntries(entries) };
}

/** Whether an X-Goog-Hash header's crc32c (if it has one) is that of data. */
function hashMatches(header: string | string[] | undefined, data: Buffer): boolean {
  const value = Array.isArray(header) ? header.join(',') : (header ?? '');
  const given = /(?:^|,)\s*crc32c=([^,]+)/.exec(value)?.[1];
  return given === undefined || given === crc32cBase64(data);
}

/** Encodes as the V4 canonical form does: everything but A-Z a-z 0-9 - . _ ~ percent-encoded. */
function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let index = 0; index < 256; index++) {
    let crc = index;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    table[index] = crc >>> 0;
  }
  return table;
})();

/** CRC32C (Castagnoli) of data, big-endian and base64-encoded, as GCS reports it. */
export function crc32cBase64(data: Uint8Array): string {
  let crc = 0xffffffff;
  for (const byte of data) crc = (CRC32C_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return bytes.toString('base64');
}
