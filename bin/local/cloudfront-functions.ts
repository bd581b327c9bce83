/**
 * CloudFront Functions on one machine, for the local edge (cloudfront.ts) and the functions' tests: a
 * function's code compiled in node:vm with cloudfront-js-2.0 semantics, the event object, the
 * `cloudfront` module (cf.kvs(id).get, cf.updateRequestOrigin) and the `crypto` module (createHash,
 * createHmac), no other module, no eval or Function constructor, no timers, network or file system;
 * and CloudFront's checks of what a function returns (disallowed and read-only headers, the method).
 * https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/functions-javascript-runtime-20.html
 * https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/edge-function-restrictions-all.html
 */
import { createHash, createHmac } from 'node:crypto';
import { Script, createContext } from 'node:vm';
import { parse } from 'acorn';

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

export function disallowed(header: string): boolean {
  return DISALLOWED_HEADERS.has(header) || DISALLOWED_PREFIXES.some((prefix) => header.startsWith(prefix));
}

export function isObject(value: unknown): value is Record<string, unknown> {
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
export function checkResponse(value: Record<string, unknown>, before: EdgeFields): EdgeResponse {
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
export function checkRequest(value: Record<string, unknown>, before: EdgeRequest): EdgeRequest {
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

/** CloudFront's limit on a URL. */
export const MAX_URL_BYTES = 8192;

/** Every value of each field, the multiValue array winning when there is one. */
export function values(field: EdgeValue): string[] {
  return field.multiValue ? field.multiValue.map((item) => item.value) : [field.value];
}

export function serializeQuery(querystring: EdgeFields): string {
  return Object.entries(querystring)
    .flatMap(([name, field]) => values(field).map((value) => (value === '' ? name : `${name}=${value}`)))
    .join('&');
}

export function pathAndQuery(request: EdgeRequest): string {
  const query = serializeQuery(request.querystring);
  return query ? `${request.uri}?${query}` : request.uri;
}
