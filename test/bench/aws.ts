/**
 * The AWS deployment measured on one machine: the Lambda bundle, its cold initialisation, the AWS calls
 * each registry operation makes, and what a million pulls cost at list prices.
 *
 * 1. The Lambda bundle, made with esbuild's JS API with the options RegistryFunction gives NodejsFunction
 *    (lib/registry-function.ts): its size, gzip size, biggest parts, and what must not be in it.
 * 2. Cold initialisation: fauxqs (S3) and DynamoDB Local started once; then fresh `node` processes, each
 *    with the Lambda's environment (as bin/local-aws.ts and the stack set it), that import the bundle
 *    and invoke `handler` with API Gateway v2 events: the import, the first GET /v2/, the first manifest
 *    GET by tag.
 * 3. AWS calls per operation: the handler run in this process, with S3Client.prototype.send,
 *    DynamoDBClient.prototype.send and DynamoDBDocumentClient.prototype.send wrapped to count commands
 *    (presigning is not a call and is not counted) and to ask DynamoDB for the capacity each one consumed.
 * 4. Cost of a million pulls of a 3-layer image, from those counts and the warm durations measured here.
 *
 * Usage (from the repository root):
 *   npx esbuild test/bench/aws.ts --bundle --platform=node --target=node20 --format=esm \
 *     --packages=external --log-level=warning --outfile=dist/bench-aws.mjs && node dist/bench-aws.mjs
 * Options: --runs 5 (cold starts per variant), --requests 200 (warm invocations per operation).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { DynamoDBClient, GetItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { build } from 'esbuild';
import { startDynamoDbLocal } from '../../bin/local/dynamodb-local.js';
import { startFauxqs } from '../../bin/local/s3-local.js';
import { createTable } from '../../functions/metadata/dynamodb.js';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    requests: { type: 'string', default: '200' },
  },
});
const RUNS = Number(args.runs);
const REQUESTS = Number(args.requests);

// This file runs bundled as dist/bench-aws.mjs: the repository root is one level up.
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The Lambda entry: REGISTRY_HANDLER_ENTRY of lib/registry-function.ts (not imported: it loads the CDK). */
const HANDLER_ENTRY = join(ROOT, 'functions', 'handlers', 'registry.ts');
/** The banner RegistryFunction gives esbuild: CommonJS dependencies still call require() for built-ins. */
const BANNER =
  "import { createRequire as topLevelCreateRequire } from 'node:module'; const require = topLevelCreateRequire(import.meta.url);";
const BUNDLE_TARGET_BYTES = 1_000_000;

const BUCKET = 'registry';
const TABLE = 'registry';
const REPOSITORY = 'bench/app';
const TAG = 'v1';
const LAYER_BYTES = [256 * 1024, 512 * 1024, 768 * 1024];
const HOST = 'bench.execute-api.us-east-1.amazonaws.com';
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const ACCEPT = [
  MANIFEST_TYPE,
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

/**
 * us-east-1 on-demand list prices, in USD. Dated by the latest change among them: DynamoDB on-demand
 * throughput was halved on 2024-11-01; the others are older. Re-check before relying on them.
 */
const PRICES = {
  date: '2024-11-01',
  /** API Gateway HTTP API, per request (first 300 million a month; billed per 512 KB, all small here). */
  apiGatewayRequest: 1.0 / 1e6,
  /** Lambda, arm64, per GB-second (first 7.5 billion GB-seconds a month) and per request. */
  lambdaGbSecond: 0.0000133334,
  lambdaRequest: 0.2 / 1e6,
  /**
   * DynamoDB on-demand: per read request unit (a strongly consistent read of up to 4 KB) and per write
   * request unit (a write of up to 1 KB; a transactional write takes 2 per KB).
   */
  dynamodbRRU: 0.125 / 1e6,
  dynamodbWRU: 0.625 / 1e6,
  /** S3 Standard: GET, HEAD and other reads; PUT, COPY, POST, LIST (DELETE and abort are free). */
  s3Get: 0.0004 / 1000,
  s3Put: 0.005 / 1000,
  /** CloudWatch Logs ingestion, per GB (shown beside the total, not in it). */
  logsIngestedGB: 0.5,
};
const LAMBDA_MEMORY_GB = 1024 / 1024;
const S3_PUT_TIER = new Set([
  'PutObject',
  'CopyObject',
  'ListObjectsV2',
  'ListObjects',
  'ListMultipartUploads',
  'ListParts',
  'CreateMultipartUpload',
  'UploadPart',
  'UploadPartCopy',
  'CompleteMultipartUpload',
]);
const S3_FREE = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);
const DYNAMODB_READS = new Set(['GetItem', 'Query', 'Scan', 'BatchGetItem', 'TransactGetItems']);

// Counting AWS calls.

/** The AWS calls of one invocation: commands by name, and the capacity DynamoDB said they consumed. */
interface Calls {
  s3: Map<string, number>;
  dynamodb: Map<string, number>;
  rru: number;
  wru: number;
  /** DynamoDB calls whose response carried no ConsumedCapacity (failed conditional writes, for one). */
  unmetered: number;
}

function noCalls(): Calls {
  return { s3: new Map(), dynamodb: new Map(), rru: 0, wru: 0, unmetered: 0 };
}

let calls = noCalls();

interface SentCommand {
  input?: unknown;
  /** lib-dynamodb commands wrap the DynamoDB command they send. */
  clientCommand?: object;
}
type Send = (this: unknown, command: SentCommand, ...rest: unknown[]) => Promise<unknown>;

/**
 * Wraps send on a client class's prototype (shadowing the inherited smithy Client.send) to count each
 * command by its API name. A DynamoDBDocumentClient sends through its own middleware stack, not through
 * DynamoDBClient.send, so no command is counted twice.
 */
function countSends(prototype: object, service: 's3' | 'dynamodb'): void {
  const original = Reflect.get(prototype, 'send') as Send;
  const send: Send = async function (command, ...rest) {
    const name = (command.clientCommand ?? command).constructor.name.replace(/Command$/, '');
    const counts = calls[service];
    counts.set(name, (counts.get(name) ?? 0) + 1);
    if (service === 's3') return original.call(this, command, ...rest);
    // Only adds ConsumedCapacity to the response; the request is otherwise the store's own.
    if (isRecord(command.input)) command.input.ReturnConsumedCapacity ??= 'TOTAL';
    const output = await original.call(this, command, ...rest).catch((error: unknown) => {
      calls.unmetered++;
      throw error;
    });
    const units = capacityUnits(output);
    if (units === undefined) calls.unmetered++;
    else if (DYNAMODB_READS.has(name)) calls.rru += units;
    else calls.wru += units;
    return output;
  };
  Reflect.set(prototype, 'send', send);
}

function capacityUnits(output: unknown): number | undefined {
  if (!isRecord(output) || output.ConsumedCapacity === undefined) return undefined;
  const list: unknown[] = Array.isArray(output.ConsumedCapacity)
    ? output.ConsumedCapacity
    : [output.ConsumedCapacity];
  let units = 0;
  for (const each of list) if (isRecord(each)) units += Number(each.CapacityUnits ?? 0);
  return units;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// API Gateway events.

function apiEvent(
  method: string,
  target: string,
  body?: { bytes: Uint8Array; contentType: string },
): APIGatewayProxyEventV2 {
  const url = new URL(target, `https://${HOST}`);
  const headers: Record<string, string> = { host: HOST, 'user-agent': 'bench-aws', accept: ACCEPT };
  const textual = body?.contentType.endsWith('+json') ?? false;
  if (body) {
    headers['content-type'] = body.contentType;
    headers['content-length'] = String(body.bytes.byteLength);
  }
  const now = new Date();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    ...(url.search ? { queryStringParameters: Object.fromEntries(url.searchParams) } : {}),
    requestContext: {
      accountId: '000000000000',
      apiId: 'bench',
      domainName: HOST,
      domainPrefix: 'bench',
      http: {
        method,
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: 'bench-aws',
      },
      requestId: randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    ...(body ? { body: Buffer.from(body.bytes).toString(textual ? 'utf8' : 'base64') } : {}),
    isBase64Encoded: body !== undefined && !textual,
  };
}

function lambdaContext(): Context {
  const context: Omit<Context, 'done' | 'fail' | 'succeed'> = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'registry',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:registry',
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: '/aws/lambda/registry',
    logStreamName: 'bench',
    getRemainingTimeInMillis: () => 30_000,
  };
  return context as Context;
}

/** The function's environment as the stack sets it (lib/serverless-registry.ts), with local endpoints. */
function lambdaEnvironment(s3Endpoint: string, dynamodbEndpoint: string): Record<string, string> {
  return {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
    NODE_OPTIONS: '--enable-source-maps',
    REGISTRY_STORAGE: 's3',
    REGISTRY_STORAGE_S3_BUCKET: BUCKET,
    REGISTRY_STORAGE_S3_REGION: 'us-east-1',
    REGISTRY_STORAGE_DELETE_ENABLED: 'true',
    REGISTRY_METADATA: 'dynamodb',
    REGISTRY_METADATA_DYNAMODB_TABLE: TABLE,
    REGISTRY_LOG_LEVEL: 'info',
    REGISTRY_STORAGE_S3_REGIONENDPOINT: s3Endpoint,
    REGISTRY_STORAGE_S3_FORCEPATHSTYLE: 'true',
    REGISTRY_STORAGE_S3_ACCESSKEY: 'fauxqs',
    REGISTRY_STORAGE_S3_SECRETKEY: 'fauxqs',
    REGISTRY_METADATA_DYNAMODB_ENDPOINT: dynamodbEndpoint,
  };
}

// 1. The bundle.

interface BundleReport {
  file: string;
  jsBytes: number;
  gzipBytes: number;
  mapBytes: number;
  modules: number;
  parts: [string, number][];
  builtins: string[];
  checks: { what: string; ok: boolean }[];
}

async function bundleLambda(dir: string): Promise<BundleReport> {
  const file = join(dir, 'index.mjs');
  // What NodejsFunction runs for RegistryFunction: esbuild --bundle <entry> --target=node22 --platform=node
  // --format=esm --minify --sourcemap --sources-content=false --banner:js=... --main-fields=module,main,
  // with no --external (bundleAwsSDK), from the project root.
  const result = await build({
    entryPoints: [HANDLER_ENTRY],
    absWorkingDir: ROOT,
    bundle: true,
    target: 'node22',
    platform: 'node',
    format: 'esm',
    outfile: file,
    minify: true,
    sourcemap: true,
    sourcesContent: false,
    banner: { js: BANNER },
    mainFields: ['module', 'main'],
    metafile: true,
    logLevel: 'warning',
  });
  const js = await readFile(file);
  const text = js.toString('utf8');
  const mapBytes = (await readFile(`${file}.map`)).byteLength;
  const output = Object.values(result.metafile.outputs).find((out) => out.entryPoint !== undefined);
  if (output === undefined) throw new Error('esbuild wrote no entry point output');
  const inputs = Object.keys(output.inputs);

  const parts = new Map<string, number>();
  for (const [path, { bytesInOutput }] of Object.entries(output.inputs)) {
    const name = packageOf(path);
    parts.set(name, (parts.get(name) ?? 0) + bytesInOutput);
  }
  const builtins = [...new Set(output.imports.filter((i) => i.external).map((i) => i.path))].sort();
  const has = (pattern: RegExp) => inputs.some((path) => pattern.test(path));
  const checks = [
    {
      what: `minified JS under ${BUNDLE_TARGET_BYTES.toLocaleString('en-US')} bytes`,
      ok: js.byteLength < BUNDLE_TARGET_BYTES,
    },
    {
      what: 'no Azure SDK (no node_modules/@azure/* input, no "blob.core.windows.net" in the JS)',
      ok: !has(/node_modules\/@azure\//) && !text.includes('blob.core.windows.net'),
    },
    {
      what: 'no Google SDK (no @google-cloud/*, google-auth-library, gaxios input, no "storage.googleapis.com")',
      ok:
        !has(/node_modules\/(@google-cloud\/|google-auth-library\/|gaxios\/)/) &&
        !text.includes('storage.googleapis.com'),
    },
    {
      what: 'no HTTP server (no "createServer", "createSecureServer" in the JS; functions/http/node.ts, bin/ not bundled)',
      ok:
        !/createServer|createSecureServer/.test(text) &&
        !has(/^functions\/http\/node\.ts$/) &&
        !has(/^bin\//),
    },
    {
      what: 'no CDK (aws-cdk-lib, constructs) and no test code',
      ok: !has(/node_modules\/(aws-cdk-lib|constructs)\//) && !has(/^(test|lib)\//),
    },
  ];
  return {
    file,
    jsBytes: js.byteLength,
    gzipBytes: gzipSync(js, { level: 9 }).byteLength,
    mapBytes,
    modules: inputs.length,
    parts: [...parts.entries()].sort((a, b) => b[1] - a[1]),
    builtins,
    checks,
  };
}

/** "node_modules/@aws-sdk/client-s3/dist-es/..." -> "@aws-sdk/client-s3"; "functions/..." -> "functions/". */
function packageOf(path: string): string {
  const match = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (match?.[1] !== undefined) return match[1];
  return `${path.split('/')[0] ?? path}/`;
}

// 2. Cold initialisation.

/** Run by each fresh process: import the bundle, then the first invocations, timed. */
const CHILD_SCRIPT = `const started = performance.now();
const { bundle, events } = JSON.parse(process.argv[2]);
const context = () => ({
  awsRequestId: crypto.randomUUID(),
  functionName: 'registry',
  memoryLimitInMB: '1024',
  getRemainingTimeInMillis: () => 30000,
});
const t0 = performance.now();
const { handler } = await import(bundle);
const importMs = performance.now() - t0;
const times = [];
for (const event of events) {
  const t = performance.now();
  const result = await handler(event, context());
  times.push([performance.now() - t, result.statusCode]);
}
// The last line: the function writes its metric lines to stdout before it.
process.stdout.write('\\n' + JSON.stringify({ nodeStartMs: started, importMs, times }) + '\\n');
process.exit(0);
`;

interface ColdRun {
  nodeStartMs: number;
  importMs: number;
  times: [number, number][];
}

async function coldStart(
  script: string,
  bundleFile: string,
  env: Record<string, string>,
  events: APIGatewayProxyEventV2[],
): Promise<ColdRun> {
  const argument = JSON.stringify({ bundle: pathToFileURL(bundleFile).href, events });
  const child = spawn(process.execPath, [script, argument], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`cold start process exited with ${code}:\n${stderr}`);
  const run = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as ColdRun;
  const statuses = run.times.map(([, status]) => status).join(',');
  if (statuses !== '200,200,200') throw new Error(`cold start answered ${statuses}:\n${stderr}`);
  return run;
}

// 3. Calls per operation.

type Handler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

interface Invocation {
  result: APIGatewayProxyStructuredResultV2;
  ms: number;
  calls: Calls;
  logBytes: number;
}

/** One invocation in this process; the registry's log lines are counted and kept from the console. */
async function invoke(handler: Handler, event: APIGatewayProxyEventV2): Promise<Invocation> {
  const write = process.stderr.write.bind(process.stderr);
  let logBytes = 0;
  const lines: string[] = [];
  process.stderr.write = (chunk: string | Uint8Array) => {
    logBytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
    lines.push(String(chunk));
    return true;
  };
  calls = noCalls();
  const start = performance.now();
  try {
    const result = await handler(event, lambdaContext());
    const ms = performance.now() - start;
    if ((result.statusCode ?? 200) >= 500) write(lines.join(''));
    return { result, ms, calls, logBytes };
  } finally {
    process.stderr.write = write;
    calls = noCalls();
  }
}

function expectStatus(what: string, invocation: Invocation, status: number): Invocation {
  if (invocation.result.statusCode !== status) {
    throw new Error(
      `${what}: expected ${status}, got ${invocation.result.statusCode}: ${invocation.result.body}`,
    );
  }
  return invocation;
}

function locationOf(invocation: Invocation): string {
  const location = invocation.result.headers?.location;
  if (typeof location !== 'string') throw new Error('no Location header');
  return location;
}

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Adds the counts of b into a. */
function addCalls(a: Calls, b: Calls): Calls {
  for (const service of ['s3', 'dynamodb'] as const) {
    for (const [name, count] of b[service]) a[service].set(name, (a[service].get(name) ?? 0) + count);
  }
  a.rru += b.rru;
  a.wru += b.wru;
  a.unmetered += b.unmetered;
  return a;
}

interface PushReport {
  /** The requests of one blob (the last layer: past the repository's first-time catalog write). */
  blobSteps: { label: string; invocation: Invocation }[];
  manifestPut: Invocation;
  total: Calls;
  requests: number;
  /** The Lambda milliseconds the push's requests would be billed (each rounded up). */
  billedMs: number;
  manifestDigest: string;
  layerDigests: string[];
}

/**
 * Pushes a 3-layer image as skopeo does: for each layer, then the config, HEAD (404), POST, one PATCH and
 * PUT ?digest=; then the manifest by tag.
 */
async function pushImage(handler: Handler): Promise<PushReport> {
  const total = noCalls();
  let requests = 0;
  let billedMs = 0;
  const step = async (label: string, event: APIGatewayProxyEventV2, status: number) => {
    const invocation = expectStatus(label, await invoke(handler, event), status);
    addCalls(total, invocation.calls);
    requests++;
    billedMs += Math.ceil(invocation.ms);
    return invocation;
  };
  const pushBlob = async (bytes: Uint8Array) => {
    const digest = sha256(bytes);
    const base = `/v2/${REPOSITORY}/blobs`;
    const head = await step('blob HEAD', apiEvent('HEAD', `${base}/${digest}`), 404);
    const post = await step('POST upload', apiEvent('POST', `${base}/uploads/`), 202);
    const patch = await step(
      'PATCH',
      apiEvent('PATCH', locationOf(post), { bytes, contentType: 'application/octet-stream' }),
      202,
    );
    const put = new URL(locationOf(patch), `https://${HOST}`);
    put.searchParams.set('digest', digest);
    const done = await step('PUT ?digest', apiEvent('PUT', `${put.pathname}${put.search}`), 201);
    const blobSteps = [
      { label: 'blob HEAD (404)', invocation: head },
      { label: 'POST /blobs/uploads/', invocation: post },
      { label: `PATCH (one chunk, ${bytes.byteLength >> 10} KiB)`, invocation: patch },
      { label: 'PUT ?digest=', invocation: done },
    ];
    return { digest, blobSteps };
  };

  const layerBytes = LAYER_BYTES.map((size) => randomBytes(size));
  const layerDigests: string[] = [];
  let blobSteps: { label: string; invocation: Invocation }[] = [];
  for (const bytes of layerBytes) {
    const pushed = await pushBlob(bytes);
    layerDigests.push(pushed.digest);
    blobSteps = pushed.blobSteps;
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: layerDigests },
      config: { Cmd: ['/bin/sh'] },
    }),
  );
  const pushedConfig = await pushBlob(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST_TYPE,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: pushedConfig.digest,
        size: config.byteLength,
      },
      layers: layerBytes.map((bytes, index) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: layerDigests[index],
        size: bytes.byteLength,
      })),
    }),
  );
  const manifestPut = await step(
    'manifest PUT',
    apiEvent('PUT', `/v2/${REPOSITORY}/manifests/${TAG}`, { bytes: manifest, contentType: MANIFEST_TYPE }),
    201,
  );
  return {
    blobSteps,
    manifestPut,
    total,
    requests,
    billedMs,
    manifestDigest: sha256(manifest),
    layerDigests,
  };
}

interface ReadOperation {
  label: string;
  /** The invocation whose calls are reported (every later one made the same). */
  counted: Invocation;
  medianMs: number;
  p90Ms: number;
  logBytes: number;
}

interface Read {
  label: string;
  event: () => APIGatewayProxyEventV2;
  status: number;
}

/**
 * Each read counted once (after one to warm up), then invoked REQUESTS times more, the reads taking
 * turns so that the machine's load and the JIT's warming fall on all of them alike. Every invocation
 * must make the same calls as the counted one.
 */
async function measureReads<K extends string>(
  handler: Handler,
  reads: Record<K, Read>,
): Promise<Record<K, ReadOperation>> {
  const entries = Object.entries(reads) as [K, Read][];
  const counted = new Map<K, Invocation>();
  const times = new Map<K, number[]>();
  for (const [key, { label, event, status }] of entries) {
    expectStatus(label, await invoke(handler, event()), status);
    counted.set(key, expectStatus(label, await invoke(handler, event()), status));
    times.set(key, []);
  }
  for (let i = 0; i < REQUESTS; i++) {
    for (const [key, { label, event, status }] of entries) {
      const invocation = expectStatus(label, await invoke(handler, event()), status);
      const reference = counted.get(key) ?? invocation;
      for (const service of ['s3', 'dynamodb'] as const) {
        if (formatCalls(invocation.calls[service]) !== formatCalls(reference.calls[service])) {
          throw new Error(`${label}: the ${service} calls changed from one request to the next`);
        }
      }
      times.get(key)?.push(invocation.ms);
    }
  }
  const result = {} as Record<K, ReadOperation>;
  for (const [key, { label }] of entries) {
    const invocation = counted.get(key);
    if (invocation === undefined) throw new Error(`${label}: not measured`);
    const values = times.get(key) ?? [];
    result[key] = {
      label,
      counted: invocation,
      medianMs: percentile(values, 0.5),
      p90Ms: percentile(values, 0.9),
      logBytes: invocation.logBytes,
    };
  }
  return result;
}

/** The size DynamoDB bills for an item: attribute names plus values (numbers approximated). */
function itemBytes(item: Record<string, AttributeValue>): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(item)) {
    bytes += Buffer.byteLength(name);
    if (value.S !== undefined) bytes += Buffer.byteLength(value.S);
    else if (value.B !== undefined) bytes += value.B.byteLength;
    else if (value.N !== undefined) bytes += Math.ceil(value.N.replace(/[-.]/g, '').length / 2) + 1;
    else bytes += 1;
  }
  return bytes;
}

// Formatting.

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const index = (sorted.length - 1) * p;
  const low = Math.floor(index);
  const high = Math.ceil(index);
  return (sorted[low] ?? NaN) + ((sorted[high] ?? NaN) - (sorted[low] ?? NaN)) * (index - low);
}

function formatCalls(counts: Map<string, number>): string {
  if (counts.size === 0) return '–';
  return [...counts.entries()]
    .sort((a, b) => a[0].localeCompare(b[0]))
    .map(([name, count]) => `${name} ×${count}`)
    .join(', ');
}

function total(counts: Map<string, number>): number {
  let sum = 0;
  for (const count of counts.values()) sum += count;
  return sum;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function usd(amount: number): string {
  if (amount === 0) return '$0';
  return amount >= 0.01 ? `$${amount.toFixed(2)}` : `$${amount.toPrecision(3)}`;
}

function ms(value: number): string {
  return value.toFixed(1);
}

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

// 4. Cost.

interface RequestCost {
  apiGateway: number;
  lambdaRequest: number;
  lambdaDuration: number;
  dynamodb: number;
  s3ByLambda: number;
}

/** The cost of requests through API Gateway and the Lambda, with their AWS calls and billed duration. */
function requestsCost(requests: number, billedMs: number, made: Calls): RequestCost {
  let s3 = 0;
  for (const [name, count] of made.s3) {
    if (S3_PUT_TIER.has(name)) s3 += count * PRICES.s3Put;
    else if (!S3_FREE.has(name)) s3 += count * PRICES.s3Get;
  }
  return {
    apiGateway: requests * PRICES.apiGatewayRequest,
    lambdaRequest: requests * PRICES.lambdaRequest,
    lambdaDuration: (billedMs / 1000) * LAMBDA_MEMORY_GB * PRICES.lambdaGbSecond,
    dynamodb: made.rru * PRICES.dynamodbRRU + made.wru * PRICES.dynamodbWRU,
    s3ByLambda: s3,
  };
}

/** The cost of one read: its calls, and its median warm duration as billed (rounded up to a millisecond). */
function requestCost(operation: ReadOperation): RequestCost {
  return requestsCost(1, Math.ceil(operation.medianMs), operation.counted.calls);
}

function sumCosts(parts: [RequestCost, number][]): RequestCost {
  const sum: RequestCost = { apiGateway: 0, lambdaRequest: 0, lambdaDuration: 0, dynamodb: 0, s3ByLambda: 0 };
  for (const [cost, times] of parts) {
    for (const key of Object.keys(sum) as (keyof RequestCost)[]) sum[key] += cost[key] * times;
  }
  return sum;
}

function costOf(cost: RequestCost): number {
  return cost.apiGateway + cost.lambdaRequest + cost.lambdaDuration + cost.dynamodb + cost.s3ByLambda;
}

// Main.

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-aws-'));
  const stops: (() => Promise<void>)[] = [];
  const log = (line: string) => process.stderr.write(`${line}\n`);
  try {
    log('bundling the Lambda...');
    const bundle = await bundleLambda(dir);

    log('starting fauxqs and DynamoDB Local...');
    const s3 = await startFauxqs();
    stops.push(() => s3.stop());
    const dynamodb = await startDynamoDbLocal();
    stops.push(() => dynamodb.stop());
    await s3.createBucket(BUCKET);
    await createTable(dynamodb.client(), TABLE);
    const env = lambdaEnvironment(s3.endpoint, dynamodb.endpoint);

    // 3. In this process, counted. The handler reads its environment when its module loads, as on Lambda.
    countSends(S3Client.prototype, 's3');
    countSends(DynamoDBClient.prototype, 'dynamodb');
    countSends(DynamoDBDocumentClient.prototype, 'dynamodb');
    // Node options are the process's own; this one is taken as it is.
    const inProcessEnv = Object.fromEntries(Object.entries(env).filter(([name]) => name !== 'NODE_OPTIONS'));
    Object.assign(process.env, inProcessEnv);
    const { handler } = await import('../../functions/handlers/registry.js');

    log('pushing a 3-layer image...');
    const push = await pushImage(handler);
    const manifestPath = `/v2/${REPOSITORY}/manifests/${TAG}`;
    const layer = push.layerDigests[0] ?? '';
    const blobPath = `/v2/${REPOSITORY}/blobs/${layer}`;

    // The pulled bytes are the pushed bytes: the manifest from the Lambda, a layer from S3 by the redirect.
    const pulled = expectStatus('manifest GET', await invoke(handler, apiEvent('GET', manifestPath)), 200);
    if (sha256(Buffer.from(pulled.result.body ?? '', 'utf8')) !== push.manifestDigest) {
      throw new Error('the manifest pulled is not the manifest pushed');
    }
    const redirect = expectStatus('blob GET', await invoke(handler, apiEvent('GET', blobPath)), 307);
    const fromS3 = await fetch(locationOf(redirect));
    if (sha256(new Uint8Array(await fromS3.arrayBuffer())) !== layer) {
      throw new Error(`the layer behind the redirect is not the layer pushed (HTTP ${fromS3.status})`);
    }

    log(`measuring reads (${REQUESTS} warm invocations each)...`);
    const reads = await measureReads(handler, {
      manifestGet: { label: 'manifest GET by tag', event: () => apiEvent('GET', manifestPath), status: 200 },
      manifestHead: {
        label: 'manifest HEAD by tag',
        event: () => apiEvent('HEAD', manifestPath),
        status: 200,
      },
      manifestGetByDigest: {
        label: 'manifest GET by digest',
        event: () => apiEvent('GET', `/v2/${REPOSITORY}/manifests/${push.manifestDigest}`),
        status: 200,
      },
      blobGet: {
        label: 'blob GET (307 to a presigned S3 URL)',
        event: () => apiEvent('GET', blobPath),
        status: 307,
      },
      blobHead: { label: 'blob HEAD', event: () => apiEvent('HEAD', blobPath), status: 200 },
    });

    // The tag item a pull by tag reads, as DynamoDB sizes it.
    const raw = dynamodb.client();
    const tagItem = await raw.send(
      new GetItemCommand({
        TableName: TABLE,
        Key: { pk: { S: `repo#${REPOSITORY}` }, sk: { S: `tag#${TAG}` } },
        ConsistentRead: true,
      }),
    );
    const tagItemBytes = itemBytes(tagItem.Item ?? {});
    // DynamoDB Local under-reports transactions; AWS bills 2 WRU per KB of each item a transaction writes.
    // The manifest PUT's transaction wrote the record and the tag item: priced so.
    const recordItem = await raw.send(
      new GetItemCommand({
        TableName: TABLE,
        Key: { pk: { S: `repo#${REPOSITORY}` }, sk: { S: `manifest#${push.manifestDigest}` } },
        ConsistentRead: true,
      }),
    );
    const transactionWRU = [itemBytes(recordItem.Item ?? {}), tagItemBytes].reduce(
      (units, bytes) => units + 2 * Math.ceil(bytes / 1024),
      0,
    );
    push.total.wru += transactionWRU - push.manifestPut.calls.wru;
    push.manifestPut.calls.wru = transactionWRU;

    // 2. Fresh processes with the bundle.
    const script = join(dir, 'cold.mjs');
    await writeFile(script, CHILD_SCRIPT);
    const coldEvents = [
      apiEvent('GET', '/v2/'),
      apiEvent('GET', manifestPath),
      apiEvent('GET', manifestPath),
    ];
    const variants = [
      { name: 'as deployed (NODE_OPTIONS=--enable-source-maps)', env },
      { name: 'without --enable-source-maps', env: inProcessEnv },
    ];
    // The variants take turns, so a change in the machine's load falls on both alike.
    log(`cold starts: ${RUNS} processes per variant...`);
    const cold: ColdRun[][] = variants.map(() => []);
    for (let i = 0; i < RUNS; i++) {
      for (const [index, variant] of variants.entries()) {
        cold[index]?.push(await coldStart(script, bundle.file, variant.env, coldEvents));
      }
    }

    // Output.
    const out: string[] = [];
    out.push(
      `\nnode ${process.version}, ${RUNS} cold starts per variant, ${REQUESTS} warm invocations per operation, ` +
        `fauxqs + DynamoDB Local on 127.0.0.1`,
    );

    out.push('\n### Lambda bundle (esbuild, as NodejsFunction builds it)\n');
    const largest = bundle.parts
      .slice(0, 6)
      .map(([name, bytes]) => `${name} ${kib(bytes)}`)
      .join(', ');
    out.push(
      table(
        ['measure', 'value'],
        [
          ['index.mjs, minified', `${bundle.jsBytes.toLocaleString('en-US')} bytes (${kib(bundle.jsBytes)})`],
          [
            'index.mjs, gzip -9',
            `${bundle.gzipBytes.toLocaleString('en-US')} bytes (${kib(bundle.gzipBytes)})`,
          ],
          ['index.mjs.map (mappings only, no sources)', kib(bundle.mapBytes)],
          ['source files bundled', String(bundle.modules)],
          ['largest parts (bytes in the output)', largest],
          ['Node built-ins imported', bundle.builtins.join(', ')],
          ...bundle.checks.map((check) => [`check: ${check.what}`, check.ok ? 'pass' : '**FAIL**']),
        ],
      ),
    );

    out.push(
      '\n### Cold initialisation (fresh node process, bundle imported, first invocations; median of runs, min–max)\n',
    );
    const coldRow = (label: string, pick: (run: ColdRun) => number) => [
      label,
      ...cold.map((runs) => {
        const values = runs.map(pick);
        return `${ms(percentile(values, 0.5))} (${ms(Math.min(...values))}–${ms(Math.max(...values))})`;
      }),
    ];
    const at = (run: ColdRun, index: number) => run.times[index]?.[0] ?? NaN;
    out.push(
      table(
        ['phase, ms', ...variants.map((variant) => variant.name)],
        [
          coldRow('node start, until the script runs', (run) => run.nodeStartMs),
          coldRow(
            '(a) import of the bundle (with the start-up done before it settles)',
            (run) => run.importMs,
          ),
          coldRow('(b) first invocation, GET /v2/', (run) => at(run, 0)),
          coldRow(`(c) first GET /v2/${REPOSITORY}/manifests/${TAG}`, (run) => at(run, 1)),
          coldRow('(a) + (b) + (c)', (run) => run.importMs + at(run, 0) + at(run, 1)),
          coldRow('for comparison: the second manifest GET (warm)', (run) => at(run, 2)),
        ],
      ),
    );

    out.push(
      '\n### AWS calls per operation (one request through the handler; S3 and DynamoDB commands by API name)\n',
    );
    const readRows = Object.values(reads).map((read) => [
      read.label,
      String(read.counted.result.statusCode),
      formatCalls(read.counted.calls.s3),
      formatCalls(read.counted.calls.dynamodb),
      `${read.counted.calls.rru} / ${read.counted.calls.wru}`,
      `${ms(read.medianMs)} (p90 ${ms(read.p90Ms)})`,
    ]);
    const pushRows = [
      ...push.blobSteps.map(({ label, invocation }) => [
        `push, per blob: ${label}`,
        String(invocation.result.statusCode),
        formatCalls(invocation.calls.s3),
        formatCalls(invocation.calls.dynamodb),
        `${invocation.calls.rru} / ${invocation.calls.wru}`,
        ms(invocation.ms),
      ]),
      [
        'push: manifest PUT (by tag)',
        String(push.manifestPut.result.statusCode),
        formatCalls(push.manifestPut.calls.s3),
        formatCalls(push.manifestPut.calls.dynamodb),
        `${push.manifestPut.calls.rru} / ${push.manifestPut.calls.wru}`,
        ms(push.manifestPut.ms),
      ],
      [
        `**push of the whole image** (3 layers + config + manifest: ${push.requests} requests)`,
        '',
        `${total(push.total.s3)}: ${formatCalls(push.total.s3)}`,
        `${total(push.total.dynamodb)}: ${formatCalls(push.total.dynamodb)}`,
        `${push.total.rru} / ${push.total.wru}`,
        '',
      ],
    ];
    out.push(
      table(
        [
          'operation',
          'status',
          'S3 calls',
          'DynamoDB calls',
          'DynamoDB RRU / WRU',
          'Lambda ms (reads: warm median; push: one request)',
        ],
        [...readRows, ...pushRows],
      ),
    );
    const unmetered =
      push.total.unmetered + Object.values(reads).reduce((n, r) => n + r.counted.calls.unmetered, 0);

    // Cost of a pull: the manifest by tag, then every blob the manifest lists (3 layers and the config).
    const blobsPerPull = LAYER_BYTES.length + 1;
    const manifestCost = requestCost(reads.manifestGet);
    const blobCost = requestCost(reads.blobGet);
    const pull = sumCosts([
      [manifestCost, 1],
      [blobCost, blobsPerPull],
    ]);
    const s3ByClient = blobsPerPull * PRICES.s3Get;
    const pullTotal = costOf(pull) + s3ByClient;
    const containerd = sumCosts([
      [requestCost(reads.manifestHead), 1],
      [requestCost(reads.manifestGetByDigest), 1],
      [blobCost, blobsPerPull],
    ]);
    const containerdTotal = costOf(containerd) + s3ByClient;
    const logBytesPerPull = reads.manifestGet.logBytes + blobsPerPull * reads.blobGet.logBytes;
    const million = 1e6;
    const rru = reads.manifestGet.counted.calls.rru + blobsPerPull * reads.blobGet.counted.calls.rru;
    const lambdaMs = Math.ceil(reads.manifestGet.medianMs) + blobsPerPull * Math.ceil(reads.blobGet.medianMs);
    const s3ByLambda =
      total(reads.manifestGet.counted.calls.s3) + blobsPerPull * total(reads.blobGet.counted.calls.s3);

    out.push(
      `\n### Cost of 1 million pulls of the 3-layer image (us-east-1 on-demand list prices of ${PRICES.date})\n`,
    );
    const perMillion = (amount: number) => usd(amount * million);
    out.push(
      table(
        ['component', 'per pull', 'per million pulls'],
        [
          ['API Gateway HTTP API', `${1 + blobsPerPull} requests`, perMillion(pull.apiGateway)],
          ['Lambda requests', `${1 + blobsPerPull} invocations`, perMillion(pull.lambdaRequest)],
          [
            'Lambda duration, 1024 MB arm64',
            `${lambdaMs} ms billed (manifest ${Math.ceil(reads.manifestGet.medianMs)} + ${blobsPerPull} × blob ${Math.ceil(reads.blobGet.medianMs)})`,
            perMillion(pull.lambdaDuration),
          ],
          ['DynamoDB reads', `${rru} RRU (strongly consistent GetItem)`, perMillion(pull.dynamodb)],
          ['S3 requests by the Lambda', `${s3ByLambda} (presigning is local)`, perMillion(pull.s3ByLambda)],
          ['S3 GETs by the client (presigned URLs)', `${blobsPerPull} GETs`, perMillion(s3ByClient)],
          ['**total**', '', `**${perMillion(pullTotal)}**`],
          [
            'total, containerd-style pull',
            'HEAD by tag, GET by digest, then the blobs',
            perMillion(containerdTotal),
          ],
          ['idle', 'no requests', '$0 a month'],
          [
            'for comparison: 1 million pushes of such an image',
            `${push.requests} requests, ${push.billedMs} ms billed (one push), S3 and DynamoDB calls as above`,
            perMillion(costOf(requestsCost(push.requests, push.billedMs, push.total))),
          ],
          [
            'not in the total: CloudWatch Logs ingestion',
            `${logBytesPerPull} bytes of access log lines`,
            perMillion((logBytesPerPull / 1e9) * PRICES.logsIngestedGB),
          ],
        ],
      ),
    );
    out.push(`
Assumptions:

- A pull is 1 manifest GET by tag and ${blobsPerPull} blob GETs (the 3 layers and the config blob), each
  answered by the Lambda with a 307 to a presigned S3 URL that the client then GETs from S3 directly.
- Lambda duration: the median warm duration measured here, in this process, rounded up to the next
  millisecond as Lambda bills it; a deployed function (1024 MB is about 0.6 vCPU, with DynamoDB a network
  hop away) is likely slower. Cold starts are not priced: Lambda bills the init phase too, but at a
  steady load a container serves many requests per init.
- DynamoDB: reads are strongly consistent (ConsistentRead: true in functions/metadata/dynamodb.ts);
  the tag item a pull by tag reads is ${tagItemBytes} bytes (manifest content inline), under 4 KB, so 1 RRU.
  RRU / WRU above are the ConsumedCapacity DynamoDB Local returned${unmetered > 0 ? ` (${unmetered} calls reported none)` : ''},
  except TransactWriteItems, which Local under-reports: 2 WRU per KB of each item, as AWS bills it.
- S3: GET and HEAD at the GET rate; PUT, COPY, POST and LIST at the PUT rate; DELETE and abort free.
- Excluded: data transfer out (S3 to the internet, per GB, the largest item for real layers), storage
  (S3 and DynamoDB per GB-month, which idle does pay), CloudWatch Logs (shown apart; Lambda's own
  START/REPORT records come on top), free tiers and volume tiers.
- Idle costs nothing in requests: no provisioned concurrency, DynamoDB on demand, no NAT or VPC endpoints.`);
    process.stdout.write(`${out.join('\n')}\n`);
    if (bundle.checks.some((check) => !check.ok)) process.exitCode = 1;
    raw.destroy();
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
// The registry's SDK clients keep sockets to the stopped services; nothing more is to be done.
process.exit();
