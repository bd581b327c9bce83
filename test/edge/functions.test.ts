// The upload edge's CloudFront Functions (functions/edge/) as CloudFront gets them (edgeFunctionCode):
// their syntax against what cloudfront-js-2.0 documents, their size, and their behaviour run in the local
// edge's emulation of the runtime. Expected signatures are computed here with node:crypto, per the
// contract (kid = SHA-256(secret)[0..16], HMAC-SHA256 of `${name}\n${id}\n${expires}`).
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { parse } from 'acorn';
import { describe, expect, it } from 'vitest';
import {
  compileEdgeFunction,
  type EdgeEvent,
  type EdgeFields,
  type EdgeRequest,
} from '../../bin/local/cloudfront-functions.js';
import { edgeFunctionCode, MAX_FUNCTION_BYTES } from '../../functions/edge/code.js';

const VALUES = {
  bucketDomainName: 'registry-blobs.s3.eu-west-1.amazonaws.com',
  bucketRegion: 'eu-west-1',
  keyValueStoreId: '0a1b2c3d-4e5f-6789-abcd-ef0123456789',
};
const SECRET = randomBytes(32).toString('base64url');
const KID = createHash('sha256').update(SECRET, 'utf8').digest('hex').slice(0, 16);
const NAME = 'library/alpine';
const ID = 'f47ac10b-58cc-4372-a567-0e02b2c3d479';
const HEX = createHash('sha256').update('a blob').digest('hex');
const DIGEST = `sha256:${HEX}`;
const UPLOAD_URI = `/v2/${NAME}/blobs/uploads/${ID}`;

function signed(name = NAME, id = ID, expires = Math.floor(Date.now() / 1000) + 3600, secret = SECRET) {
  const kid = createHash('sha256').update(secret, 'utf8').digest('hex').slice(0, 16);
  const signature = createHmac('sha256', secret).update(`${name}\n${id}\n${expires}`).digest('hex');
  return `${kid}.${expires}.${signature}`;
}

function fieldsOf(values: Record<string, string>): EdgeFields {
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [name, { value }]));
}

function viewerRequest(
  method: string,
  uri: string,
  query: Record<string, string> = {},
  headers: Record<string, string> = {},
): EdgeEvent {
  return {
    version: '1.0',
    context: {
      distributionDomainName: 'd111111abcdef8.cloudfront.net',
      distributionId: 'EDFDVBD6EXAMPLE',
      eventType: 'viewer-request',
      requestId: 'test',
    },
    viewer: { ip: '198.51.100.11' },
    request: {
      method,
      uri,
      querystring: fieldsOf(query),
      headers: fieldsOf({ host: 'registry.example.com', ...headers }),
      cookies: {},
    },
  };
}

/** A signed single PUT of the blob, as containerd sends it. */
function blobPut(headers: Record<string, string> = {}, query: Record<string, string> = {}): EdgeEvent {
  return viewerRequest(
    'PUT',
    UPLOAD_URI,
    { _upload: signed(), digest: encodeURIComponent(DIGEST), ...query },
    { 'content-length': '6', 'content-type': 'application/octet-stream', ...headers },
  );
}

const runRequest = compileEdgeFunction(edgeFunctionCode('upload-request', VALUES), {
  id: VALUES.keyValueStoreId,
  entries: new Map([[KID, SECRET]]),
});
const runResponse = compileEdgeFunction(edgeFunctionCode('upload-response', VALUES));

interface GeneratedResponse {
  statusCode: number;
  headers: EdgeFields;
  body: { encoding: string; data: string };
}

async function refusal(event: EdgeEvent) {
  const { result, origin } = await runRequest(event);
  expect(origin).toBeUndefined();
  const response = result as GeneratedResponse;
  expect(response.headers['docker-distribution-api-version']?.value).toBe('registry/2.0');
  expect(response.headers['content-type']?.value).toMatch(/^application\/json/);
  expect(response.body.encoding).toBe('text');
  const body = JSON.parse(response.body.data) as { errors: { code: string; message: string }[] };
  expect(body.errors).toHaveLength(1);
  return { status: response.statusCode, code: body.errors[0]?.code, message: body.errors[0]?.message ?? '' };
}

/** The request the function passed on, checked to go on unchanged (but for X-Forwarded-Host) to the API. */
async function passedOn(event: EdgeEvent): Promise<void> {
  const before = structuredClone(event.request);
  const { result, origin } = await runRequest(event);
  expect(origin).toBeUndefined();
  const host = before.headers.host?.value ?? '';
  expect(result).toEqual({
    ...before,
    headers: { ...before.headers, 'x-forwarded-host': { value: host } },
  });
}

// ---------------------------------------------------------------------------------------------------
// What cloudfront-js-2.0 documents (functions-javascript-runtime-20.html): ES 5.1 plus const/let,
// async/await (async function declarations only: "async arguments and closures are not supported"),
// arrow functions, rest parameters, template literals, the ** operator; modules cloudfront and crypto;
// no eval/Function constructor, timers, network, file system.

interface Node {
  type: string;
  [key: string]: unknown;
}

const ALLOWED = new Set([
  'Program',
  'ImportDeclaration',
  'ImportDefaultSpecifier',
  'VariableDeclaration',
  'VariableDeclarator',
  'FunctionDeclaration',
  'FunctionExpression',
  'ArrowFunctionExpression',
  'RestElement',
  'BlockStatement',
  'ExpressionStatement',
  'EmptyStatement',
  'IfStatement',
  'ReturnStatement',
  'ForStatement',
  'ForInStatement',
  'WhileStatement',
  'DoWhileStatement',
  'TryStatement',
  'CatchClause',
  'ThrowStatement',
  'BreakStatement',
  'ContinueStatement',
  'SwitchStatement',
  'SwitchCase',
  'LabeledStatement',
  'Identifier',
  'Literal',
  'TemplateLiteral',
  'TemplateElement',
  'MemberExpression',
  'CallExpression',
  'NewExpression',
  'ObjectExpression',
  'Property',
  'ArrayExpression',
  'UnaryExpression',
  'UpdateExpression',
  'BinaryExpression',
  'LogicalExpression',
  'AssignmentExpression',
  'ConditionalExpression',
  'SequenceExpression',
  'AwaitExpression',
  'ThisExpression',
]);
const GLOBALS_MISSING = new Set([
  'require',
  'module',
  'exports',
  'process',
  'setTimeout',
  'setInterval',
  'setImmediate',
  'clearTimeout',
  'clearInterval',
  'queueMicrotask',
  'fetch',
  'XMLHttpRequest',
  'WebSocket',
  'eval',
  'Function',
]);

/** What in code the runtime does not document, as messages (empty: nothing). */
function unsupported(code: string): string[] {
  const problems: string[] = [];
  const visit = (node: Node, parent: Node | undefined, key: string): void => {
    if (!ALLOWED.has(node.type)) problems.push(node.type);
    if (node.type === 'ImportDeclaration') {
      const source = (node.source as { value: unknown }).value;
      if (source !== 'cloudfront' && source !== 'crypto') problems.push(`import '${String(source)}'`);
    }
    if (node.generator === true) problems.push('generator');
    if (node.async === true && !(node.type === 'FunctionDeclaration' && parent?.type === 'Program')) {
      problems.push('async closure');
    }
    if (node.optional === true) problems.push('optional chaining');
    if (
      node.type === 'Property' &&
      (node.shorthand === true || node.computed === true || node.kind !== 'init')
    )
      problems.push('shorthand, computed or accessor property');
    if (node.type === 'Property' && node.method === true) problems.push('method shorthand');
    if (node.type === 'LogicalExpression' && node.operator === '??') problems.push('??');
    if (node.type === 'AssignmentExpression' && /^(&&|\|\||\?\?)=$/.test(String(node.operator)))
      problems.push(String(node.operator));
    if (node.type === 'CatchClause' && node.param === null) problems.push('optional catch binding');
    if (node.type === 'Literal' && typeof node.value === 'bigint') problems.push('bigint');
    if (node.type === 'RestElement' && key !== 'params') problems.push('rest outside parameters');
    const isReference =
      node.type === 'Identifier' &&
      !(parent?.type === 'MemberExpression' && key === 'property' && parent.computed !== true) &&
      !(parent?.type === 'Property' && key === 'key');
    if (isReference && GLOBALS_MISSING.has(String(node.name))) problems.push(`global ${String(node.name)}`);
    for (const [childKey, child] of Object.entries(node)) {
      for (const item of Array.isArray(child) ? child : [child]) {
        if (typeof item === 'object' && item !== null && typeof (item as Node).type === 'string') {
          visit(item as Node, node, childKey);
        }
      }
    }
  };
  visit(parse(code, { ecmaVersion: 'latest', sourceType: 'module' }) as unknown as Node, undefined, '');
  return problems;
}

describe('the shipped functions, against the cloudfront-js-2.0 feature list', () => {
  it('the syntax check refuses what the runtime does not document', () => {
    expect(unsupported('class A {}')).toContain('ClassDeclaration');
    expect(unsupported('function* g() {}')).toContain('generator');
    expect(unsupported('for (const x of [1]) {}')).toContain('ForOfStatement');
    expect(unsupported('const { a } = {};')).toContain('ObjectPattern');
    expect(unsupported('const a = [...[1]];')).toContain('SpreadElement');
    expect(unsupported('const a = {}; a?.b;')).toContain('optional chaining');
    expect(unsupported('const a = 1; const b = { a };')).toContain(
      'shorthand, computed or accessor property',
    );
    expect(unsupported("import fs from 'fs';")).toContain("import 'fs'");
    expect(unsupported("const fs = require('fs');")).toContain('global require');
    expect(unsupported('setTimeout(() => 1, 1);')).toContain('global setTimeout');
    expect(unsupported('async function f() { const g = async () => 1; }')).toContain('async closure');
    expect(unsupported('try {} catch {}')).toContain('optional catch binding');
    expect(unsupported('export function handler() {}')).toContain('ExportNamedDeclaration');
  });

  for (const name of ['upload-request', 'upload-response'] as const) {
    it(`${name} uses only documented syntax, modules and globals`, () => {
      expect(unsupported(edgeFunctionCode(name, VALUES))).toEqual([]);
    });

    it(`${name} defines handler and is under CloudFront's 10 KB`, () => {
      const code = edgeFunctionCode(name, VALUES);
      expect(code).toMatch(/function handler\(event\)/);
      expect(Buffer.byteLength(code)).toBeLessThan(MAX_FUNCTION_BYTES);
      expect(code).not.toMatch(/\/\*|\/\/ /); // comments stripped
    });
  }

  it('fills in the deploy-time values as text, so CDK tokens survive', () => {
    const code = edgeFunctionCode('upload-request', {
      bucketDomainName: '${Token[TOKEN.101]}',
      bucketRegion: '${Token[AWS.Region.7]}',
      keyValueStoreId: '${Token[TOKEN.102]}',
    });
    expect(code).toContain('"${Token[TOKEN.101]}"');
    expect(code).toContain('"${Token[AWS.Region.7]}"');
    expect(code).toContain('"${Token[TOKEN.102]}"');
    expect(code).not.toMatch(/__[A-Z_]+__/);
  });

  it('refuses a value that would break out of its string, and code over 10 KB', () => {
    expect(() => edgeFunctionCode('upload-request', { ...VALUES, bucketRegion: "eu'; evil(); '" })).toThrow(
      /cannot go into its code/,
    );
    expect(() =>
      edgeFunctionCode('upload-request', { ...VALUES, bucketDomainName: `${'a'.repeat(10_000)}.example` }),
    ).toThrow(/at most 10240/);
  });

  it('the emulated runtime refuses modules cloudfront-js-2.0 does not have', () => {
    expect(() =>
      compileEdgeFunction("import fs from 'fs'; function handler(e) { return e.request; }"),
    ).toThrow(/no module 'fs'/);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('upload-request (viewer request)', () => {
  it('sends a signed single PUT of a sha256 blob to S3 at the blob key, with its metadata', async () => {
    const { result, origin } = await runRequest(
      blobPut({
        authorization: 'Bearer token',
        'x-amz-storage-class': 'GLACIER',
        'user-agent': 'containerd',
      }),
    );
    const request = result as EdgeRequest;
    expect(request.method).toBe('PUT');
    expect(request.uri).toBe(`/blobs/sha256/${HEX.slice(0, 2)}/${HEX}/data`);
    expect(request.querystring).toEqual({});
    expect(request.headers).toEqual(
      fieldsOf({
        host: 'registry.example.com',
        'x-forwarded-host': 'registry.example.com',
        'content-length': '6',
        'content-type': 'application/octet-stream',
        'user-agent': 'containerd',
        'x-amz-content-sha256': HEX,
        'x-amz-meta-registry-repository': NAME,
        'x-amz-meta-registry-upload': ID,
      }),
    );
    expect(origin).toEqual({
      domainName: VALUES.bucketDomainName,
      originAccessControlConfig: {
        enabled: true,
        region: VALUES.bucketRegion,
        signingBehavior: 'always',
        signingProtocol: 'sigv4',
        originType: 's3',
      },
    });
  });

  it('takes the digest parameter percent-encoded or not', async () => {
    const { origin } = await runRequest(blobPut({}, { digest: DIGEST }));
    expect(origin?.domainName).toBe(VALUES.bucketDomainName);
  });

  it('refuses a forged signature with 403 DENIED', async () => {
    const forged = signed().replace(/.$/, (c) => (c === '0' ? '1' : '0'));
    expect(await refusal(blobPut({}, { _upload: forged }))).toMatchObject({ status: 403, code: 'DENIED' });
  });

  it('refuses a signature made for another repository or another upload', async () => {
    const other = await refusal(blobPut({}, { _upload: signed('library/busybox') }));
    expect(other).toMatchObject({ status: 403, code: 'DENIED' });
    const otherId = await refusal(blobPut({}, { _upload: signed(NAME, 'another-upload') }));
    expect(otherId).toMatchObject({ status: 403, code: 'DENIED' });
  });

  it('refuses a URL signed with a secret the key value store does not hold', async () => {
    const unknown = signed(NAME, ID, undefined, randomBytes(32).toString('hex'));
    expect(await refusal(blobPut({}, { _upload: unknown }))).toMatchObject({ status: 403, code: 'DENIED' });
  });

  it('refuses an expired URL, saying so', async () => {
    const expired = signed(NAME, ID, Math.floor(Date.now() / 1000) - 1);
    const result = await refusal(blobPut({}, { _upload: expired }));
    expect(result).toMatchObject({ status: 403, code: 'DENIED' });
    expect(result.message).toMatch(/expired/);
  });

  it('refuses a malformed _upload value', async () => {
    expect(await refusal(blobPut({}, { _upload: `${KID}.1.abc` }))).toMatchObject({
      status: 403,
      code: 'DENIED',
    });
  });

  it('passes on to the API what S3 cannot take in one PUT: sha512, an empty body, no length, a range', async () => {
    await passedOn(blobPut({}, { digest: `sha512:${'ab'.repeat(64)}` }));
    await passedOn(blobPut({ 'content-length': '0' }));
    const chunked = blobPut({ 'transfer-encoding': 'chunked' });
    delete chunked.request.headers['content-length'];
    await passedOn(chunked);
    await passedOn(blobPut({ 'content-range': '0-5' }));
  });

  it('passes on upload requests that are not a signed single PUT', async () => {
    await passedOn(viewerRequest('PUT', UPLOAD_URI, { digest: DIGEST }, { 'content-length': '6' }));
    await passedOn(viewerRequest('PATCH', UPLOAD_URI, { _upload: signed() }, { 'content-length': '6' }));
    await passedOn(viewerRequest('PUT', `/v2/${NAME}/manifests/latest`, {}, { 'content-length': '6' }));
  });

  it('refuses a single PUT over 5 GiB with 413 SIZE_INVALID naming the upload service', async () => {
    const result = await refusal(blobPut({ 'content-length': String(5 * 1024 ** 3 + 1) }));
    expect(result).toMatchObject({ status: 413, code: 'SIZE_INVALID' });
    expect(result.message).toMatch(/upload service/);
    const { origin } = await runRequest(blobPut({ 'content-length': String(5 * 1024 ** 3) }));
    expect(origin).toBeDefined();
  });

  it('refuses a body the API cannot take (over 4,718,592 bytes) with 413 naming the options', async () => {
    const patch = viewerRequest('PATCH', UPLOAD_URI, { _upload: signed() }, { 'content-length': '4718593' });
    const result = await refusal(patch);
    expect(result).toMatchObject({ status: 413, code: 'SIZE_INVALID' });
    expect(result.message).toMatch(/4718592/);
    expect(result.message).toMatch(/upload edge/);
    expect(result.message).toMatch(/upload service/);
    const unsignedPut = viewerRequest('PUT', UPLOAD_URI, { digest: DIGEST }, { 'content-length': '4718593' });
    expect(await refusal(unsignedPut)).toMatchObject({ status: 413 });
    await passedOn(
      viewerRequest('PATCH', UPLOAD_URI, { _upload: signed() }, { 'content-length': '4718592' }),
    );
  });

  it("copies the viewer's Host into X-Forwarded-Host, over any the client sent", async () => {
    const { result } = await runRequest(
      viewerRequest('GET', '/v2/', {}, { host: 'r.example.com', 'x-forwarded-host': 'evil.example' }),
    );
    expect((result as EdgeRequest).headers['x-forwarded-host']).toEqual({ value: 'r.example.com' });
  });
});

describe('upload-response (viewer response)', () => {
  function viewerResponse(request: EdgeRequest, statusCode: number): EdgeEvent {
    return {
      ...viewerRequest(request.method, request.uri),
      context: { ...viewerRequest('GET', '/').context, eventType: 'viewer-response' },
      request,
      response: {
        statusCode,
        statusDescription: 'OK',
        headers: fieldsOf({ etag: `"${HEX}"`, 'content-length': '0' }),
        cookies: {},
      },
    };
  }

  async function respond(request: EdgeRequest, statusCode: number) {
    const { result } = await runResponse(viewerResponse(request, statusCode));
    return result as { statusCode: number; statusDescription: string; headers: EdgeFields };
  }

  it("turns S3's 200 into the registry's 201, seeing the request as the viewer sent it", async () => {
    const response = await respond(blobPut().request, 200);
    expect(response.statusCode).toBe(201);
    expect(response.statusDescription).toBe('Created');
    expect(response.headers.location?.value).toBe(`/v2/${NAME}/blobs/${DIGEST}`);
    expect(response.headers['docker-content-digest']?.value).toBe(DIGEST);
    expect(response.headers['docker-distribution-api-version']?.value).toBe('registry/2.0');
    expect(response.headers.etag?.value).toBe(`"${HEX}"`);
  });

  it('or as the viewer request function rewrote it', async () => {
    const { result } = await runRequest(blobPut());
    const response = await respond(result as EdgeRequest, 200);
    expect(response.statusCode).toBe(201);
    expect(response.headers.location?.value).toBe(`/v2/${NAME}/blobs/${DIGEST}`);
    expect(response.headers['docker-content-digest']?.value).toBe(DIGEST);
  });

  it('leaves other responses alone', async () => {
    const put = blobPut().request;
    for (const status of [201, 202, 204, 307]) {
      const response = await respond(put, status);
      expect(response.statusCode).toBe(status);
      expect(response.headers.location).toBeUndefined();
    }
    const patch = await respond({ ...put, method: 'PATCH' }, 200);
    expect(patch.statusCode).toBe(200);
    const get = await respond(viewerRequest('GET', `/v2/${NAME}/blobs/uploads/${ID}`).request, 200);
    expect(get.statusCode).toBe(200);
    expect(get.headers.location).toBeUndefined();
  });
});
