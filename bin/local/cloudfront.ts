/**
 * A local stand-in for the upload edge: the CloudFront distribution in front of the registry's HTTP API
 * with its two CloudFront Functions (functions/edge/), built from the same code CloudFront gets
 * (edgeFunctionCode). As CloudFront does, as AWS documents it:
 *
 * - two behaviors: upload URLs (viewer request and viewer response functions) and the
 *   default (viewer request function only);
 * - the functions run with cloudfront-js-2.0 semantics (cloudfront-functions.ts);
 * - a function that throws gets 503, one that returns what CloudFront refuses (a disallowed header added,
 *   a read-only header changed, the method changed) gets 502;
 *   https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/edge-function-restrictions-all.html
 *   https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/troubleshooting-response-errors.html
 * - a request the function sent to the bucket goes to the local S3, path style, signed with SigV4 as the
 *   origin access control signs it (payload hash: the x-amz-content-sha256 the function set), its body
 *   streamed; any other request goes to the API origin with every viewer header but Host
 *   (AllViewerExceptHostHeader) plus Via, X-Forwarded-For and X-Amz-Cf-Id, streamed both ways;
 * - the viewer response function runs only when the origin answers below 400.
 *
 * `stats` counts requests and body bytes per origin, so tests can see which way the bytes went.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  request as httpRequest,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';
import { edgeFunctionCode, type EdgeFunctionValues } from '../../functions/edge/code.js';
import {
  checkRequest,
  checkResponse,
  compileEdgeFunction,
  disallowed,
  type EdgeEvent,
  type EdgeFields,
  type EdgeFunctionOutcome,
  EdgeFunctionValidationError,
  type EdgeRequest,
  type EdgeResponse,
  isObject,
  MAX_URL_BYTES,
  type OriginUpdate,
  pathAndQuery,
  serializeQuery,
  values,
} from './cloudfront-functions.js';
import { Sha256 } from './aws-json.js';
import { parseAddr } from './free-port.js';

// ---------------------------------------------------------------------------------------------------
// The distribution.

export interface LocalEdgeS3 {
  /** http://host:port of the local S3, reached path style. */
  readonly endpoint: string;
  readonly bucket: string;
  readonly region: string;
  /** The keys SigV4 signs with, as the origin access control signs with the distribution's. */
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface LocalEdgeOptions {
  /** The HTTP API origin (the local API Gateway front): http://host:port. */
  readonly apiOrigin: string;
  /** The bucket the upload function sends blob PUTs to. */
  readonly s3: LocalEdgeS3;
  /** The KeyValueStore's entries, kid → upload URL secret; read at each request. */
  readonly keyValueStore: ReadonlyMap<string, string>;
  /** host:port to listen on; port 0 picks a free one. @default 127.0.0.1:0 */
  readonly addr?: string;
  /** Serve HTTPS with this certificate and key (PEM files), as CloudFront serves its domains. */
  readonly tls?: { readonly certificate: string; readonly key: string };
}

export interface OriginStats {
  /** Requests forwarded to the origin. */
  requests: number;
  /** Request body bytes forwarded to it. */
  bodyBytes: number;
}

export interface LocalEdge {
  /** http://host:port, or https:// with tls. */
  readonly url: string;
  /** host:port, as clients name the registry. */
  readonly host: string;
  /** Counts per origin, since the start. */
  readonly stats: { readonly s3: OriginStats; readonly api: OriginStats };
  stop(): Promise<void>;
}

/** The id the local upload function's KeyValueStore has. */
export const LOCAL_KEY_VALUE_STORE_ID = 'local-upload-url-secrets';

/** CloudFront's limit on the request line with its headers. */
const MAX_REQUEST_HEAD_BYTES = 20480;
// The upload behavior's path pattern, /v2/*/blobs/uploads/* (a `*` matches any characters, `/` too).
const UPLOAD_BEHAVIOR = /^\/v2\/.*\/blobs\/uploads\/.*$/s;
const DISTRIBUTION_ID = 'ELOCALEDGE';
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);

type EdgeFunction = ReturnType<typeof compileEdgeFunction>;

/** The values the local edge builds its functions with: the local bucket under an AWS-like name. */
function localValues(s3: LocalEdgeS3): EdgeFunctionValues {
  return {
    bucketDomainName: `${s3.bucket}.s3.${s3.region}.amazonaws.com`,
    bucketRegion: s3.region,
    keyValueStoreId: LOCAL_KEY_VALUE_STORE_ID,
  };
}

/** Starts the local edge. */
export async function startLocalEdge(options: LocalEdgeOptions): Promise<LocalEdge> {
  const values = localValues(options.s3);
  const store = { id: LOCAL_KEY_VALUE_STORE_ID, entries: options.keyValueStore };
  const viewerRequest = compileEdgeFunction(edgeFunctionCode('upload-request', values), store);
  const viewerResponse = compileEdgeFunction(edgeFunctionCode('upload-response', values));
  const stats = { s3: { requests: 0, bodyBytes: 0 }, api: { requests: 0, bodyBytes: 0 } };
  const signer = new SignatureV4({
    service: 's3',
    region: options.s3.region,
    credentials: { accessKeyId: options.s3.accessKeyId, secretAccessKey: options.s3.secretAccessKey },
    sha256: Sha256,
    uriEscapePath: false,
  });
  const edge: Edge = {
    options,
    bucketDomainName: values.bucketDomainName,
    viewerRequest,
    viewerResponse,
    stats,
    signer,
    domainName: '',
  };

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    void serve(edge, req, res).catch((error: unknown) => {
      process.stderr.write(`local edge: ${String(error)}\n`);
      if (!res.headersSent) cloudFrontError(res, 502, 'Bad Gateway');
      else res.destroy();
    });
  };
  // Node refuses large heads itself at 16 KiB; CloudFront's limit is 20,480 bytes, checked in serve.
  const server: Server = options.tls
    ? createHttpsServer(
        {
          cert: await readFile(options.tls.certificate),
          key: await readFile(options.tls.key),
          maxHeaderSize: 64 * 1024,
        },
        listener,
      )
    : createServer({ maxHeaderSize: 64 * 1024 }, listener);
  const { host, port } = parseAddr(options.addr ?? '127.0.0.1:0');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const bound = (server.address() as AddressInfo).port;
  const hostPort = `${host.includes(':') ? `[${host}]` : host}:${bound}`;
  edge.domainName = hostPort;
  return {
    url: `${options.tls ? 'https' : 'http'}://${hostPort}`,
    host: hostPort,
    stats,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}

interface Edge {
  readonly options: LocalEdgeOptions;
  readonly bucketDomainName: string;
  readonly viewerRequest: EdgeFunction;
  readonly viewerResponse: EdgeFunction;
  readonly stats: LocalEdge['stats'];
  readonly signer: SignatureV4;
  domainName: string;
}

async function serve(edge: Edge, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const refused = cloudFrontRefusal(req);
  if (refused) {
    refuse(req, res, refused.status, refused.reason);
    return;
  }
  const requestId = randomBytes(30).toString('base64url');
  const event = (eventType: EdgeEvent['context']['eventType']) => ({
    version: '1.0' as const,
    context: {
      distributionDomainName: edge.domainName,
      distributionId: DISTRIBUTION_ID,
      eventType,
      requestId,
    },
    viewer: { ip: req.socket.remoteAddress ?? '127.0.0.1' },
  });
  const original = viewerRequestObject(req);
  // CloudFront picks the behavior from the viewer's path, before any function runs.
  const uploadBehavior = UPLOAD_BEHAVIOR.test(original.uri);

  let outcome: EdgeFunctionOutcome;
  let request: EdgeRequest;
  try {
    outcome = await edge.viewerRequest({ ...event('viewer-request'), request: structuredClone(original) });
    if (!isObject(outcome.result)) throw new EdgeFunctionValidationError('the function returned no object');
    if ('statusCode' in outcome.result) {
      const response = checkResponse(outcome.result, {});
      await drained(req);
      writeGenerated(res, req.method, requestId, response);
      return;
    }
    request = checkRequest(outcome.result, original);
  } catch (error) {
    functionFailed(req, res, 'viewer request', error);
    return;
  }

  const upstream = outcome.origin
    ? await s3Request(edge, req, request, outcome.origin)
    : apiRequest(edge, req, request, requestId);
  if (upstream === undefined) {
    refuse(req, res, 502, 'Bad Gateway');
    return;
  }
  const originResponse = await forward(req, upstream.url, upstream.headers, upstream.stats);
  if (!uploadBehavior || (originResponse.statusCode ?? 502) >= 400) {
    res.writeHead(
      originResponse.statusCode ?? 502,
      originResponse.statusMessage,
      viewerHeaders(originResponse.headers, requestId),
    );
    originResponse.pipe(res);
    return;
  }

  const before = fields(
    originResponse.rawHeaders,
    (name) => name === 'set-cookie' || HOP_BY_HOP.has(name) || disallowed(name),
  );
  let response: EdgeResponse;
  try {
    // Which request a viewer response function sees is not documented; here, the one the viewer
    // request function returned (upload-response.js reads either).
    const { result } = await edge.viewerResponse({
      ...event('viewer-response'),
      request,
      response: {
        statusCode: originResponse.statusCode ?? 502,
        statusDescription: originResponse.statusMessage ?? '',
        headers: structuredClone(before),
        cookies: {},
      },
    });
    if (!isObject(result)) throw new EdgeFunctionValidationError('the function returned no object');
    response = checkResponse(result, before);
  } catch (error) {
    originResponse.resume();
    functionFailed(req, res, 'viewer response', error);
    return;
  }
  const cookies = originResponse.headers['set-cookie'];
  if (response.body !== undefined) {
    originResponse.resume();
    writeGenerated(res, req.method, requestId, response, cookies);
    return;
  }
  const headers = toHeaders(response.headers ?? {});
  if (cookies) headers['set-cookie'] = cookies;
  res.writeHead(response.statusCode, response.statusDescription ?? '', {
    ...headers,
    ...cloudFrontHeaders(requestId),
  });
  originResponse.pipe(res);
}

/** What CloudFront refuses before any function runs, as it refuses it. */
function cloudFrontRefusal(req: IncomingMessage): { status: number; reason: string } | undefined {
  const target = req.url ?? '/';
  if (Buffer.byteLength(target) > MAX_URL_BYTES) return { status: 414, reason: 'Request-URI Too Large' };
  const head = req.rawHeaders.reduce((sum, part) => sum + Buffer.byteLength(part) + 2, target.length);
  if (head > MAX_REQUEST_HEAD_BYTES) return { status: 494, reason: 'Request Header Too Large' };
  // "If a viewer GET request includes a body, CloudFront returns an HTTP status code 403".
  const length = req.headers['content-length'];
  const body = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
  if (req.method === 'GET' && body) return { status: 403, reason: 'Forbidden' };
  return undefined;
}

/** A function that threw gets 503 (execution error), one whose result fails validation 502. */
function functionFailed(req: IncomingMessage, res: ServerResponse, which: string, error: unknown): void {
  process.stderr.write(`local edge: the ${which} function: ${String(error)}\n`);
  if (error instanceof EdgeFunctionValidationError) refuse(req, res, 502, 'Bad Gateway');
  else refuse(req, res, 503, 'Service Unavailable');
}

/** The request object CloudFront hands a viewer request function: values as the viewer sent them. */
function viewerRequestObject(req: IncomingMessage): EdgeRequest {
  const target = req.url ?? '/';
  const mark = target.indexOf('?');
  const query = mark < 0 ? '' : target.slice(mark + 1);
  const querystring: EdgeFields = {};
  for (const part of query.split('&')) {
    if (part === '') continue;
    const equals = part.indexOf('=');
    add(querystring, equals < 0 ? part : part.slice(0, equals), equals < 0 ? '' : part.slice(equals + 1));
  }
  const cookies: EdgeFields = {};
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if ((req.rawHeaders[i] ?? '').toLowerCase() !== 'cookie') continue;
    for (const cookie of (req.rawHeaders[i + 1] ?? '').split(/;\s*/)) {
      const equals = cookie.indexOf('=');
      if (equals > 0) add(cookies, cookie.slice(0, equals), cookie.slice(equals + 1));
    }
  }
  return {
    method: req.method ?? 'GET',
    uri: mark < 0 ? target : target.slice(0, mark),
    querystring,
    headers: fields(req.rawHeaders, (name) => name === 'cookie' || disallowed(name)),
    cookies,
  };
}

/** Header fields from raw headers (names lowercase, repeats in multiValue), without the skipped ones. */
function fields(rawHeaders: string[], skip: (name: string) => boolean): EdgeFields {
  const result: EdgeFields = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] ?? '').toLowerCase();
    if (!skip(name)) add(result, name, rawHeaders[i + 1] ?? '');
  }
  return result;
}

function add(target: EdgeFields, name: string, value: string): void {
  const existing = target[name];
  if (!existing) {
    target[name] = { value };
    return;
  }
  existing.multiValue ??= [{ value: existing.value }];
  existing.multiValue.push({ value });
}

function toHeaders(headers: EdgeFields): OutgoingHttpHeaders {
  const result: OutgoingHttpHeaders = {};
  for (const [name, field] of Object.entries(headers)) {
    const all = values(field);
    result[name] = all.length === 1 ? all[0] : all;
  }
  return result;
}

interface Upstream {
  url: URL;
  headers: OutgoingHttpHeaders;
  stats: OriginStats;
}

/** The request to the API origin: every viewer header but Host, and what CloudFront adds. */
function apiRequest(edge: Edge, req: IncomingMessage, request: EdgeRequest, requestId: string): Upstream {
  const ip = req.socket.remoteAddress ?? '127.0.0.1';
  const headers = toHeaders(request.headers);
  delete headers.host;
  const cookies = Object.entries(request.cookies).flatMap(([name, field]) =>
    values(field).map((value) => `${name}=${value}`),
  );
  if (cookies.length > 0) headers.cookie = cookies.join('; ');
  if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
  const forwardedFor = request.headers['x-forwarded-for']?.value;
  headers['x-forwarded-for'] = forwardedFor ? `${forwardedFor}, ${ip}` : ip;
  headers.via = `${req.httpVersion} ${DISTRIBUTION_ID.toLowerCase()}.cloudfront.net (CloudFront)`;
  headers['x-amz-cf-id'] = requestId;
  return { url: new URL(pathAndQuery(request), edge.options.apiOrigin), headers, stats: edge.stats.api };
}

/**
 * The request to the bucket, signed as the origin access control signs it: SigV4 over the headers S3
 * acts on, with the payload hash the function set in x-amz-content-sha256 (S3, and RGW, refuse a body
 * whose SHA-256 differs). Undefined when the function chose an origin this edge does not have.
 */
async function s3Request(
  edge: Edge,
  req: IncomingMessage,
  request: EdgeRequest,
  origin: OriginUpdate,
): Promise<Upstream | undefined> {
  const oac = origin.originAccessControlConfig;
  if (origin.domainName !== edge.bucketDomainName || !oac?.enabled || oac.originType !== 's3') {
    process.stderr.write(`local edge: no S3 origin ${origin.domainName} with origin access control\n`);
    return undefined;
  }
  const s3 = edge.options.s3;
  const endpoint = new URL(s3.endpoint);
  const headers: Record<string, string> = { host: endpoint.host };
  for (const [name, field] of Object.entries(request.headers)) {
    if (name === 'content-type' || name === 'x-amz-content-sha256' || name.startsWith('x-amz-meta-')) {
      headers[name] = field.value;
    }
  }
  headers['x-amz-content-sha256'] ??= 'UNSIGNED-PAYLOAD';
  const length = req.headers['content-length'];
  if (length !== undefined) headers['content-length'] = length;
  const query = serializeQuery(request.querystring);
  const signed = await edge.signer.sign({
    method: request.method,
    protocol: endpoint.protocol,
    hostname: endpoint.hostname,
    port: endpoint.port ? Number(endpoint.port) : undefined,
    path: `/${s3.bucket}${request.uri}`,
    query: Object.fromEntries(new URLSearchParams(query)),
    headers,
  });
  const url = new URL(`/${s3.bucket}${request.uri}${query ? `?${query}` : ''}`, endpoint);
  return { url, headers: signed.headers, stats: edge.stats.s3 };
}

/** Sends the viewer's request, its body streamed, and gives the origin's response (not yet read). */
function forward(
  req: IncomingMessage,
  url: URL,
  headers: OutgoingHttpHeaders,
  stats: OriginStats,
): Promise<IncomingMessage> {
  stats.requests++;
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const upstream = send(url, { method: req.method, headers }, resolve);
    upstream.on('error', reject);
    req.on('data', (chunk: Buffer) => {
      stats.bodyBytes += chunk.byteLength;
    });
    req.on('error', (error) => upstream.destroy(error));
    req.pipe(upstream);
  });
}

/** The origin's headers as the viewer gets them: without hop-by-hop ones, with CloudFront's added. */
function viewerHeaders(headers: IncomingHttpHeaders, requestId: string): OutgoingHttpHeaders {
  const result: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (!HOP_BY_HOP.has(name)) result[name] = value;
  return { ...result, ...cloudFrontHeaders(requestId) };
}

function cloudFrontHeaders(requestId: string): OutgoingHttpHeaders {
  return {
    via: `1.1 ${DISTRIBUTION_ID.toLowerCase()}.cloudfront.net (CloudFront)`,
    'x-cache': 'Miss from cloudfront',
    'x-amz-cf-id': requestId,
  };
}

/** A response a function generated (or whose body it replaced). */
function writeGenerated(
  res: ServerResponse,
  method: string | undefined,
  requestId: string,
  response: EdgeResponse,
  cookies?: string[],
): void {
  const body =
    response.body === undefined
      ? Buffer.alloc(0)
      : typeof response.body === 'string'
        ? Buffer.from(response.body)
        : Buffer.from(response.body.data, response.body.encoding === 'base64' ? 'base64' : 'utf8');
  const headers = toHeaders(response.headers ?? {});
  const setCookies = [
    ...(cookies ?? []),
    ...Object.entries(response.cookies ?? {}).map(
      ([name, cookie]) => `${name}=${cookie.value}${cookie.attributes ? `; ${cookie.attributes}` : ''}`,
    ),
  ];
  if (setCookies.length > 0) headers['set-cookie'] = setCookies;
  headers['content-length'] = body.byteLength;
  res.writeHead(response.statusCode, response.statusDescription ?? '', {
    ...headers,
    ...cloudFrontHeaders(requestId),
  });
  res.end(method === 'HEAD' ? undefined : body);
}

/**
 * Reads and drops the viewer's body before an answer that does not need it. Answering first would be
 * quicker, but closing the connection on a client still sending (Node does when a request is unread)
 * can reset it before the client reads the answer, and the client would report a broken connection
 * instead of the registry's error.
 */
async function drained(req: IncomingMessage): Promise<void> {
  if (req.readableEnded) return;
  req.resume();
  await new Promise<void>((resolve) => {
    req.once('end', resolve);
    req.once('close', resolve);
  });
}

/** CloudFront's own refusal; the viewer's body is drained. */
function refuse(req: IncomingMessage, res: ServerResponse, status: number, reason: string): void {
  req.resume();
  cloudFrontError(res, status, reason);
}

function cloudFrontError(res: ServerResponse, status: number, reason: string): void {
  const body = `<HTML><BODY><H1>${status} ${reason}</H1>The request could not be satisfied.</BODY></HTML>\n`;
  res.writeHead(status, reason, {
    'content-type': 'text/html',
    'content-length': Buffer.byteLength(body),
    'x-cache': 'Error from cloudfront',
  });
  res.end(body);
}
