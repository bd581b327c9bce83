import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import type { ClientInfo } from '../auth/access.js';
import { errorFields, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { loggedPath, logRequest } from './access-log.js';
import type { RequestHandler } from './handler.js';

export interface LambdaAdapterOptions {
  log: Logger;
  /** One JSON line per request (distribution's log.accesslog.disabled turns it off). */
  accessLog: boolean;
  /** Headers added to every response (distribution's http.headers). */
  headers?: Record<string, string[]>;
  /** Told of every request once its result is ready, whether or not the access log is on. */
  metrics?: Metrics | undefined;
}

export type LambdaHandler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

/**
 * The most a synchronous invocation may answer: Lambda refuses a larger response payload (the JSON
 * result, with the body base64-encoded when binary), and API Gateway then answers 502 with no detail.
 */
export const MAX_RESPONSE_PAYLOAD_BYTES = 6 * 1024 * 1024;

/**
 * API Gateway HTTP API (payload format 2.0) events <-> Web Request/Response. Both bodies are whole
 * in memory, as API Gateway and Lambda buffer them anyway: request bodies arrive base64-encoded
 * when binary, and response bodies go back as UTF-8 text when textual, base64 otherwise. Blob
 * downloads are meant to be 307 redirects to the storage, never bytes through Lambda; a response
 * too large for Lambda becomes a clear 500 here rather than an opaque 502 from API Gateway.
 */
export function lambdaAdapter(handler: RequestHandler, options: LambdaAdapterOptions): LambdaHandler {
  return (event, context) => serve(handler, options, event, context);
}

/** An answer of the adapter's own, in the registry's error format, for requests that never reached it. */
export function errorResult(
  status: number,
  code: string,
  message: string,
  requestId: string,
): APIGatewayProxyStructuredResultV2 {
  const body = JSON.stringify({ errors: [{ code, message, detail: null }] });
  return {
    statusCode: status,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      'docker-distribution-api-version': 'registry/2.0',
      'x-request-id': requestId,
    },
    body,
    isBase64Encoded: false,
  };
}

/** What the access log says of an event, whatever shape it turns out to have. */
interface Summary {
  method: string | undefined;
  path: string | undefined;
  remote: string | undefined;
  userAgent: string | undefined;
}

async function serve(
  handler: RequestHandler,
  options: LambdaAdapterOptions,
  event: unknown,
  context: Context,
): Promise<APIGatewayProxyStructuredResultV2> {
  const started = performance.now();
  const requestId = context.awsRequestId;
  const summary = summarize(event);
  let bytesIn = 0;
  const client: ClientInfo = { address: summary.remote, requestId };
  let result: APIGatewayProxyStructuredResultV2 | undefined;
  try {
    let request: Request;
    try {
      ({ request, bytesIn } = toRequest(event));
    } catch (error) {
      // Events API Gateway would not send, and what WHATWG Request refuses (TRACE, bad header values).
      result = errorResult(400, 'UNSUPPORTED', `malformed request: ${(error as Error).message}`, requestId);
      return result;
    }
    const response = await handler.handle(request, client);
    const body = request.method === 'HEAD' ? await discard(response) : await readBody(response);
    const answer = body === undefined ? undefined : toResult(response, body, options, requestId);
    if (answer === undefined || payloadBytes(answer) > MAX_RESPONSE_PAYLOAD_BYTES) {
      // A blob streamed through Lambda: redirects are off, or the storage driver gives no URLs.
      const declared = response.headers.get('content-length');
      options.log.error('response too large for Lambda: blobs must be served by redirect', {
        requestId,
        method: request.method,
        path: summary.path === undefined ? undefined : loggedPath(summary.path),
        status: response.status,
        contentType: response.headers.get('content-type') ?? undefined,
        contentLength: declared === null ? body?.byteLength : Number(declared),
      });
      result = tooLarge(requestId);
      return result;
    }
    result = answer;
    return result;
  } catch (error) {
    options.log.error('request failed in the Lambda adapter', { requestId, ...errorFields(error) });
    result = errorResult(500, 'UNKNOWN', `internal error (request ${requestId})`, requestId);
    return result;
  } finally {
    const durationMs = performance.now() - started;
    const status = result?.statusCode ?? 500;
    const bytesOut = result ? bodyBytes(result) : 0;
    options.metrics?.request({
      route: client.route ?? 'unknown',
      method: summary.method ?? 'unknown',
      status,
      bytesIn,
      bytesOut,
      durationMs,
      blobBytesPushed: client.blobBytesPushed,
    });
    if (options.accessLog) {
      logRequest(options.log, {
        requestId,
        method: summary.method,
        path: summary.path,
        status,
        bytesIn,
        bytesOut,
        durationMs,
        remote: summary.remote,
        userAgent: summary.userAgent,
        user: client.user,
        route: client.route,
        repository: client.repository,
      });
    }
  }
}

function toRequest(event: unknown): { request: Request; bytesIn: number } {
  if (!isRecord(event)) throw new Error('the event is not an object');
  const context = event.requestContext;
  if (!isRecord(context) || !isRecord(context.http)) {
    throw new Error('the event has no requestContext.http (is it an API Gateway v2 event?)');
  }
  const method = context.http.method;
  if (typeof method !== 'string' || method === '') throw new Error('requestContext.http.method is missing');
  const { rawPath, rawQueryString } = event;
  if (typeof rawPath !== 'string' || !/^\/[^?#]*$/.test(rawPath)) {
    throw new Error('rawPath is missing or not a path');
  }
  if (rawQueryString !== undefined && (typeof rawQueryString !== 'string' || rawQueryString.includes('#'))) {
    throw new Error('rawQueryString is not a query string');
  }
  const eventHeaders = event.headers ?? {};
  if (!isRecord(eventHeaders)) throw new Error('headers is not an object');
  const eventCookies = event.cookies ?? [];
  if (!isStringArray(eventCookies)) throw new Error('cookies is not a list of strings');

  // API Gateway joins repeated headers with commas and moves Cookie headers into cookies.
  const headers = new Headers();
  for (const [name, value] of Object.entries(eventHeaders)) {
    if (typeof value === 'string') headers.append(name, value);
  }
  const cookies = [headers.get('cookie'), ...eventCookies].filter((cookie) => cookie !== null);
  if (cookies.length > 0) headers.set('cookie', cookies.join('; '));

  // Behind the upload edge, API Gateway sees CloudFront's origin request, whose Host is the API's own:
  // the edge's viewer-request function passes the name the client used as X-Forwarded-Host, so that
  // URLs built from the request (the token realm) name the registry's address.
  const forwardedHost = headers.get('x-forwarded-host')?.split(',')[0]?.trim();
  const host = [forwardedHost, headers.get('host'), context.domainName].find(
    (name): name is string => typeof name === 'string' && /^[A-Za-z0-9.:[\]-]+$/.test(name),
  );
  if (host === undefined) throw new Error('the event has neither a valid Host header nor a domainName');
  // rawPath and rawQueryString as the client sent them: the decoded path would turn %2F into a separator.
  // API Gateway serves HTTPS only and says so in X-Forwarded-Proto; a local front may say http.
  const scheme = headers.get('x-forwarded-proto') === 'http' ? 'http' : 'https';
  const url = `${scheme}://${host}${rawPath}${rawQueryString ? `?${rawQueryString}` : ''}`;

  const upper = method.toUpperCase();
  const body = upper === 'GET' || upper === 'HEAD' ? null : eventBody(event.body, event.isBase64Encoded);
  if (body !== null) {
    // The body is whole: say its size, as a chunked request's framing no longer applies.
    headers.delete('transfer-encoding');
    headers.set('content-length', String(body.byteLength));
  }
  return { request: new Request(url, { method, headers, body }), bytesIn: body?.byteLength ?? 0 };
}

/** Standard, padded base64, as API Gateway sends it (a plain character class: linear on a 6 MB body). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function eventBody(body: unknown, isBase64Encoded: unknown): Uint8Array | null {
  if (body === undefined || body === null || body === '') return null;
  if (typeof body !== 'string') throw new Error('body is not a string');
  if (isBase64Encoded !== true) return Buffer.from(body, 'utf8');
  // Buffer.from skips characters that are not base64, which would hand the registry other bytes.
  if (body.length % 4 !== 0 || !BASE64.test(body)) throw new Error('body is not valid base64');
  const bytes = Buffer.from(body, 'base64');
  return bytes.byteLength === 0 ? null : bytes;
}

/**
 * The response body's bytes, or undefined when it cannot fit in a Lambda response. A body announced
 * too large is never read, and no body is read past the limit, so a blob is not pulled into memory.
 */
async function readBody(response: Response): Promise<Uint8Array | undefined> {
  if (!response.body) return new Uint8Array(0);
  const declared = Number(response.headers.get('content-length') ?? 0);
  const binary = !isTextual(response.headers.get('content-type'));
  if ((binary ? base64Length(declared) : declared) > MAX_RESPONSE_PAYLOAD_BYTES) {
    await response.body.cancel();
    return undefined;
  }
  // Binary bytes grow by a third in base64; text that turns out not to be UTF-8 is caught after.
  const cap = binary ? Math.floor(MAX_RESPONSE_PAYLOAD_BYTES / 4) * 3 : MAX_RESPONSE_PAYLOAD_BYTES;
  const parts: Uint8Array[] = [];
  let size = 0;
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > cap) {
      await reader.cancel();
      return undefined;
    }
    parts.push(value);
  }
  return Buffer.concat(parts, size);
}

async function discard(response: Response): Promise<Uint8Array> {
  await response.body?.cancel();
  return new Uint8Array(0);
}

function toResult(
  response: Response,
  body: Uint8Array,
  options: LambdaAdapterOptions,
  requestId: string,
): APIGatewayProxyStructuredResultV2 {
  const headers: Record<string, string> = {};
  for (const [name, values] of Object.entries(options.headers ?? {})) {
    headers[name.toLowerCase()] = values.join(', ');
  }
  // Repeated headers come joined with commas (Headers does that), except Set-Cookie, which has its own list.
  response.headers.forEach((value, name) => {
    if (name !== 'set-cookie') headers[name] = value;
  });
  headers['x-request-id'] = requestId;
  const cookies = response.headers.getSetCookie();
  return {
    statusCode: response.status,
    headers,
    ...(cookies.length > 0 ? { cookies } : {}),
    ...encodeBody(body, response.headers.get('content-type')),
  };
}

// Keeps a byte order mark: the bytes of a manifest are its digest.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Textual content goes back as text (readable in logs and tests); anything else, or text that is not UTF-8, as base64. */
function encodeBody(
  body: Uint8Array,
  contentType: string | null,
): { body: string; isBase64Encoded: boolean } {
  if (body.byteLength === 0) return { body: '', isBase64Encoded: false };
  if (isTextual(contentType)) {
    try {
      return { body: UTF8.decode(body), isBase64Encoded: false };
    } catch {
      // Not UTF-8 after all: base64 keeps every byte.
    }
  }
  return {
    body: Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64'),
    isBase64Encoded: true,
  };
}

/** text/*, JSON and XML, including the registry's +json media types (manifests, indexes, errors). */
function isTextual(contentType: string | null): boolean {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  return (
    type.startsWith('text/') ||
    /^application\/(?:json|xml|javascript|x-www-form-urlencoded)$/.test(type) ||
    /^[a-z0-9!#$&^_.-]+\/[a-z0-9!#$&^_.+-]+\+(?:json|xml)$/.test(type)
  );
}

function base64Length(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

/** The bytes of the body a result carries, as the client receives them. */
function bodyBytes(result: APIGatewayProxyStructuredResultV2): number {
  const body = result.body ?? '';
  if (!result.isBase64Encoded) return Buffer.byteLength(body);
  return (body.length / 4) * 3 - (body.endsWith('==') ? 2 : body.endsWith('=') ? 1 : 0);
}

/** The size of the result as Lambda measures it: the serialized JSON. */
function payloadBytes(result: APIGatewayProxyStructuredResultV2): number {
  return Buffer.byteLength(JSON.stringify(result));
}

function tooLarge(requestId: string): APIGatewayProxyStructuredResultV2 {
  return errorResult(
    500,
    'UNKNOWN',
    `the response body is too large for a Lambda response (${MAX_RESPONSE_PAYLOAD_BYTES} bytes, base64 ` +
      'included): blobs must be served by redirect; keep storage.redirect enabled, with a storage driver ' +
      'that gives presigned URLs (s3)',
    requestId,
  );
}

function summarize(event: unknown): Summary {
  const record = isRecord(event) ? event : {};
  const http = isRecord(record.requestContext) ? record.requestContext.http : undefined;
  const headers = isRecord(record.headers) ? record.headers : {};
  const path =
    typeof record.rawPath === 'string'
      ? `${record.rawPath}${typeof record.rawQueryString === 'string' && record.rawQueryString !== '' ? `?${record.rawQueryString}` : ''}`
      : undefined;
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  return {
    method: isRecord(http) ? text(http.method) : undefined,
    path,
    remote: isRecord(http) ? text(http.sourceIp) : undefined,
    userAgent: text(headers['user-agent']) ?? (isRecord(http) ? text(http.userAgent) : undefined),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((each) => typeof each === 'string');
}
