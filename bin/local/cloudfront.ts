/**
 * A local stand-in for the upload edge: the CloudFront distribution in front of the registry's HTTP API
 * with its two CloudFront Functions (functions/edge/), built from the same code CloudFront gets
 * (edgeFunctionCode). As CloudFront does, as AWS documents it:
 *
 * - two behaviors: upload URLs (viewer request and viewer response functions) and the
 *   default (viewer request function only);
 * - the functions run with cloudfront-js-2.0 semantics in node:vm: the event object, the `cloudfront`
 *   module (cf.kvs(id).get, cf.updateRequestOrigin) and the `crypto` module (createHash, createHmac),
 *   no other module, no eval or Function constructor, no timers, network or file system;
 *   https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/functions-javascript-runtime-20.html
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
import { createHash, createHmac, randomBytes } from 'node:crypto';
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
import { Script, createContext } from 'node:vm';
import { SignatureV4 } from '@smithy/signature-v4';
import { parse } from 'acorn';
import { edgeFunctionCode, type EdgeFunctionValues } from '../../functions/edge/code.js';
import { parseAddr } from './free-port.js';

// ---------------------------------------------------------------------------------------------------
// The CloudFront Functions event (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/functions-event-structure.html)

export interface EdgeValue {
  value: string;
  multiValue?: { value: string }[];
}
export type EdgeFields = Record<string, EdgeValue>;

export interface EdgeRequest {
  method: string;
  uri: string;
  querystring: EdgeFields;
  headers: EdgeFields;
  cookies: EdgeFields;
}

export interface EdgeResponse {
  statusCode: number;
  statusDescription?: string;
  headers?: EdgeFields;
  cookies?: Record<string, EdgeValue & { attributes?: string }>;
  body?: string | { encoding: 'text' | 'base64'; data: string };
}

export interface EdgeEvent {
  version: '1.0';
  context: {
    distributionDomainName: string;
    distributionId: string;
    eventType: 'viewer-request' | 'viewer-response';
    requestId: string;
  };
  viewer: { ip: string };
  request: EdgeRequest;
  response?: EdgeResponse;
}

/** What cf.updateRequestOrigin was given. */
export interface OriginUpdate {
  domainName: string;
  originAccessControlConfig?: {
    enabled: boolean;
    region: string;
    signingBehavior: string;
    signingProtocol: string;
    originType: string;
  };
}

export interface EdgeFunctionOutcome {
  /** What the handler returned (a request or a response object). */
  result: unknown;
  /** The origin the function chose, if it called cf.updateRequestOrigin. */
  origin?: OriginUpdate;
}

/** A KeyValueStore as a function sees it: its id, and its entries (read at each get). */
export interface LocalKeyValueStore {
  readonly id: string;
  readonly entries: ReadonlyMap<string, string>;
}

/** Thrown when a function's result fails CloudFront's validation (CloudFront answers 502). */
export class EdgeFunctionValidationError extends Error {
  override readonly name = 'EdgeFunctionValidationError';
}

type Digest = ReturnType<typeof createHash> | ReturnType<typeof createHmac>;

const MODULES = new Set(['cloudfront', 'crypto']);
const HASHES = new Set(['md5', 'sha1', 'sha256']);
const DIGEST_ENCODINGS = new Set(['hex', 'base64', 'base64url']);

/**
 * Loads a function's code (an ES module importing at most `cloudfront` and `crypto`) as
 * cloudfront-js-2.0 would, and gives a way to run its handler. Throws when the code imports anything
 * else or exports anything. Each run gets a fresh context, as each CloudFront invocation does.
 */
export function compileEdgeFunction(
  code: string,
  keyValueStore?: LocalKeyValueStore,
): (event: EdgeEvent) => Promise<EdgeFunctionOutcome> {
  const program = parse(code, { ecmaVersion: 'latest', sourceType: 'module' });
  const names: string[] = [];
  const modules: string[] = [];
  let body = '';
  let from = 0;
  for (const node of program.body) {
    if (node.type === 'ImportDeclaration') {
      const source = String(node.source.value);
      const specifier = node.specifiers[0];
      if (!MODULES.has(source)) throw new Error(`cloudfront-js-2.0 has no module '${source}'`);
      if (node.specifiers.length !== 1 || specifier?.type !== 'ImportDefaultSpecifier') {
        throw new Error(`import the '${source}' module as its default export`);
      }
      names.push(specifier.local.name);
      modules.push(source);
      body += code.slice(from, node.start);
      from = node.end;
    } else if (node.type.startsWith('Export')) {
      throw new Error('a CloudFront function exports nothing: it defines handler');
    }
  }
  body += code.slice(from);
  // The module's body as a function of its imports; it gives back its handler.
  const script = new Script(`(function (${names.join(', ')}) {'use strict';\n${body}\nreturn handler;\n})`);

  return async (event) => {
    let origin: OriginUpdate | undefined;
    const cloudfront = {
      kvs(id?: string) {
        // "This fails if the key value store is not associated with the function" (AWS's examples).
        if (!keyValueStore || (id !== undefined && id !== keyValueStore.id)) {
          throw new Error(`no key value store ${String(id)} is associated with this function`);
        }
        return keyValueStoreHandle(keyValueStore);
      },
      updateRequestOrigin(update: OriginUpdate) {
        if (event.context.eventType !== 'viewer-request') {
          throw new Error('updateRequestOrigin works in viewer request functions only');
        }
        if (typeof update.domainName !== 'string' || update.domainName === '') {
          throw new Error('updateRequestOrigin needs a domainName');
        }
        origin = JSON.parse(JSON.stringify(update)) as OriginUpdate;
      },
    };
    const imports = modules.map((module) => (module === 'cloudfront' ? cloudfront : CRYPTO));
    // No eval, no Function constructor; console.log is the one console method.
    const context = createContext(
      {
        console: { log: (...args: unknown[]) => process.stderr.write(`edge function: ${args.join(' ')}\n`) },
      },
      { codeGeneration: { strings: false, wasm: false } },
    );
    // CloudFront's compute utilization limit is not emulated: the handler runs as long as it takes.
    const load = script.runInContext(context) as (...modules: unknown[]) => unknown;
    const handler = load(...imports);
    if (typeof handler !== 'function') throw new Error('the function defines no handler');
    const result: unknown = await (handler as (event: EdgeEvent) => unknown)(event);
    return { result, ...(origin ? { origin } : {}) };
  };
}

function keyValueStoreHandle(store: LocalKeyValueStore) {
  return {
    get(key: string, options?: { format?: 'string' | 'json' | 'bytes' }): Promise<unknown> {
      const value = store.entries.get(key);
      if (value === undefined) return Promise.reject(new Error(`Key ${key} not found`));
      const format = options?.format ?? 'string';
      if (format === 'json') return Promise.resolve(JSON.parse(value));
      return Promise.resolve(format === 'bytes' ? Buffer.from(value) : value);
    },
    exists(key: string): Promise<boolean> {
      return Promise.resolve(store.entries.has(key));
    },
  };
}

/** The crypto module of cloudfront-js-2.0: hashes and HMACs with md5, sha1 or sha256. */
const CRYPTO = {
  createHash: (algorithm: string) => digester(algorithm, () => createHash(algorithm)),
  createHmac: (algorithm: string, key: string) => digester(algorithm, () => createHmac(algorithm, key)),
};

function digester(algorithm: string, make: () => Digest) {
  if (!HASHES.has(algorithm)) throw new Error(`crypto: unsupported algorithm ${algorithm}`);
  const hash = make();
  const handle = {
    update(data: string | Uint8Array) {
      hash.update(data);
      return handle;
    },
    // Runtime 2.0: a Buffer without an encoding.
    digest(encoding?: string) {
      if (encoding === undefined) return hash.digest();
      if (!DIGEST_ENCODINGS.has(encoding)) throw new Error(`crypto: unsupported encoding ${encoding}`);
      return hash.digest(encoding as 'hex' | 'base64' | 'base64url');
    },
  };
  return handle;
}

// ---------------------------------------------------------------------------------------------------
// Validation of what a function returns.

/** Not exposed to functions, and a function may not add them (502). */
const DISALLOWED_HEADERS = new Set([
  'connection',
  'expect',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'trailer',
  'upgrade',
  'x-amzn-auth',
  'x-amzn-errortype',
  'x-amzn-fle-profile',
  'x-amzn-header-count',
  'x-amzn-header-order',
  'x-amzn-lambda-integration-tag',
  'x-amzn-requestid',
  'x-cache',
  'x-forwarded-proto',
  'x-real-ip',
]);
const DISALLOWED_PREFIXES = ['x-accel-', 'x-amz-cf-', 'x-amzn-cf-', 'x-edge-'];
const READ_ONLY_REQUEST_HEADERS = ['content-length', 'host', 'transfer-encoding', 'via'];
const READ_ONLY_RESPONSE_HEADERS = ['warning', 'via'];

function disallowed(header: string): boolean {
  return DISALLOWED_HEADERS.has(header) || DISALLOWED_PREFIXES.some((prefix) => header.startsWith(prefix));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function checkFields(fields: unknown, what: string, lowercase: boolean): EdgeFields {
  if (fields === undefined) return {};
  if (!isObject(fields)) throw new EdgeFunctionValidationError(`${what} is not an object`);
  for (const [name, field] of Object.entries(fields)) {
    if (lowercase && name !== name.toLowerCase()) {
      throw new EdgeFunctionValidationError(`${what}: header name ${name} is not lowercase`);
    }
    if (!isObject(field) || typeof field.value !== 'string') {
      throw new EdgeFunctionValidationError(`${what}.${name} has no string value`);
    }
  }
  return fields as EdgeFields;
}

function checkHeaders(
  headers: unknown,
  before: EdgeFields,
  readOnly: readonly string[],
  what: string,
): EdgeFields {
  const checked = checkFields(headers, what, true);
  for (const name of Object.keys(checked)) {
    if (disallowed(name)) throw new EdgeFunctionValidationError(`${what}: disallowed header ${name}`);
  }
  for (const name of readOnly) {
    if (JSON.stringify(checked[name]) !== JSON.stringify(before[name])) {
      throw new EdgeFunctionValidationError(`${what}: read-only header ${name} changed`);
    }
  }
  return checked;
}

/** A response a function generated or modified, as CloudFront validates it. */
function checkResponse(value: Record<string, unknown>, before: EdgeFields): EdgeResponse {
  const status = value.statusCode;
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) {
    throw new EdgeFunctionValidationError(`statusCode ${String(status)} is not an HTTP status`);
  }
  const body = value.body;
  const validBody =
    body === undefined ||
    typeof body === 'string' ||
    (isObject(body) &&
      (body.encoding === 'text' || body.encoding === 'base64') &&
      typeof body.data === 'string');
  if (!validBody) throw new EdgeFunctionValidationError('body is neither a string nor {encoding, data}');
  return {
    ...(value as unknown as EdgeResponse),
    headers: checkHeaders(value.headers, before, READ_ONLY_RESPONSE_HEADERS, 'response headers'),
    cookies: checkFields(value.cookies, 'response cookies', false),
  };
}

/** A request a viewer request function returned, as CloudFront validates it. */
function checkRequest(value: Record<string, unknown>, before: EdgeRequest): EdgeRequest {
  if (value.method !== before.method) throw new EdgeFunctionValidationError('the method is read-only');
  if (typeof value.uri !== 'string' || !value.uri.startsWith('/')) {
    throw new EdgeFunctionValidationError('the uri must begin with /');
  }
  const request: EdgeRequest = {
    method: before.method,
    uri: value.uri,
    querystring: checkFields(value.querystring, 'querystring', false),
    headers: checkHeaders(value.headers, before.headers, READ_ONLY_REQUEST_HEADERS, 'request headers'),
    cookies: checkFields(value.cookies, 'cookies', false),
  };
  if (/[\s#]/.test(serializeQuery(request.querystring))) {
    throw new EdgeFunctionValidationError('the query string has spaces, control characters or #');
  }
  if (pathAndQuery(request).length >= MAX_URL_BYTES) {
    throw new EdgeFunctionValidationError(`the URI is ${MAX_URL_BYTES} characters or more`);
  }
  return request;
}

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

/** CloudFront's limits: the URL, and the request line with its headers. */
const MAX_URL_BYTES = 8192;
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

/** Every value of each field, the multiValue array winning when there is one. */
function values(field: EdgeValue): string[] {
  return field.multiValue ? field.multiValue.map((item) => item.value) : [field.value];
}

function toHeaders(headers: EdgeFields): OutgoingHttpHeaders {
  const result: OutgoingHttpHeaders = {};
  for (const [name, field] of Object.entries(headers)) {
    const all = values(field);
    result[name] = all.length === 1 ? all[0] : all;
  }
  return result;
}

function serializeQuery(querystring: EdgeFields): string {
  return Object.entries(querystring)
    .flatMap(([name, field]) => values(field).map((value) => (value === '' ? name : `${name}=${value}`)))
    .join('&');
}

function pathAndQuery(request: EdgeRequest): string {
  const query = serializeQuery(request.querystring);
  return query ? `${request.uri}?${query}` : request.uri;
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

type SourceData = string | ArrayBuffer | ArrayBufferView;

/** SHA-256 for @smithy/signature-v4 (a hash, or an HMAC when given a key). */
class Sha256 {
  readonly #hash: Digest;
  constructor(secret?: SourceData) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.#hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.#hash.digest()));
  }
}

function bytes(data: SourceData): string | Uint8Array {
  if (typeof data === 'string') return data;
  return ArrayBuffer.isView(data)
    ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    : new Uint8Array(data);
}
