/**
 * The Lambda entry point as Lambda runs it: the module imported once per container with REGISTRY_*
 * variables in the environment, then invoked with API Gateway v2 events.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIGatewayProxyEventV2, ScheduledEvent } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { lambdaContext } from '../../bin/local/api-gateway.js';
import { type EmfLine, parseEmf } from '../support/emf.js';

// The real composition, watched: how many times the handler builds a registry, and with what.
vi.mock('../../functions/compose.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../functions/compose.js')>();
  return { ...actual, composeRegistry: vi.fn(actual.composeRegistry) };
});

type HandlerModule = typeof import('../../functions/handlers/registry.js');
type ComposeModule = typeof import('../../functions/compose.js');

const FIXTURE = JSON.parse(
  readFileSync(new URL('../http/fixtures/apigw-v2-get.json', import.meta.url), 'utf8'),
) as APIGatewayProxyEventV2;

function apiEvent(method: string, target: string, body?: Uint8Array): APIGatewayProxyEventV2 {
  const event = structuredClone(FIXTURE);
  const [rawPath = '', rawQueryString = ''] = target.split('?', 2);
  event.rawPath = rawPath;
  event.rawQueryString = rawQueryString;
  event.requestContext.http.method = method;
  event.requestContext.http.path = rawPath;
  if (body) {
    event.body = Buffer.from(body).toString('base64');
    event.isBase64Encoded = true;
    event.headers['content-type'] = 'application/octet-stream';
    event.headers['content-length'] = String(body.byteLength);
  }
  return event;
}

/** What an EventBridge rule with a schedule sends by default (its input left as the matched event). */
const SCHEDULED_EVENT: ScheduledEvent = {
  version: '0',
  id: '53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa',
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '123456789012',
  time: '2025-10-08T16:53:06Z',
  region: 'us-east-1',
  resources: ['arn:aws:events:us-east-1:123456789012:rule/registry-health'],
  detail: {},
};

describe('Lambda handler', () => {
  const saved = { ...process.env };
  let root: string;
  let logLines: Record<string, unknown>[];
  let emfLines: EmfLine[];

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'registry-handler-'));
    for (const key of Object.keys(process.env)) {
      if (key.startsWith('REGISTRY_')) Reflect.deleteProperty(process.env, key);
    }
    logLines = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((line: string | Uint8Array) => {
      for (const text of String(line).split('\n').filter(Boolean)) {
        logLines.push(JSON.parse(text) as Record<string, unknown>);
      }
      return true;
    });
    // Metrics go to stdout, one embedded-metric-format line each.
    emfLines = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((line: string | Uint8Array) => {
      emfLines.push(parseEmf(String(line)));
      return true;
    });
    vi.resetModules();
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    for (const key of Object.keys(process.env)) {
      if (!(key in saved)) Reflect.deleteProperty(process.env, key);
    }
    Object.assign(process.env, saved);
    await rm(root, { recursive: true, force: true });
  });

  /** A fresh container: the modules loaded anew, as Lambda does on a cold start, with env. */
  async function coldStart(
    env: Record<string, string>,
    before?: (compose: ComposeModule) => void,
  ): Promise<{ handler: HandlerModule['handler']; compose: ComposeModule }> {
    Object.assign(process.env, env);
    const compose = await import('../../functions/compose.js');
    vi.mocked(compose.composeRegistry).mockClear();
    before?.(compose);
    const { handler } = await import('../../functions/handlers/registry.js');
    return { handler, compose };
  }

  it('builds the registry once from REGISTRY_* variables and serves every invocation with it', async () => {
    const { handler, compose } = await coldStart({
      REGISTRY_STORAGE: 'filesystem',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root,
    });

    const root200 = await handler(apiEvent('GET', '/v2/'), lambdaContext('first'));
    expect(root200.statusCode).toBe(200);
    expect(root200.headers?.['x-request-id']).toBe('first');

    const content = randomBytes(2048);
    const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
    const pushed = await handler(
      apiEvent('POST', `/v2/lambda/app/blobs/uploads/?digest=${digest}`, content),
      lambdaContext('second'),
    );
    expect(pushed.statusCode).toBe(201);
    const pulled = await handler(apiEvent('GET', `/v2/lambda/app/blobs/${digest}`), lambdaContext('third'));
    expect(pulled.statusCode).toBe(200);
    expect(pulled.isBase64Encoded).toBe(true);
    expect(Buffer.compare(Buffer.from(pulled.body ?? '', 'base64'), content)).toBe(0);

    // One registry for the container, composed with the Lambda's own options.
    const composeRegistry = vi.mocked(compose.composeRegistry);
    expect(composeRegistry).toHaveBeenCalledTimes(1);
    expect(composeRegistry.mock.calls[0]?.[0].storage.driver).toEqual({
      type: 'filesystem',
      rootDirectory: root,
    });
    expect(composeRegistry.mock.calls[0]?.[2]).toEqual({ persistHashState: true });
    // The bytes went to the configured directory.
    expect((await readdir(root)).length).toBeGreaterThan(0);
    // One access-log line per invocation, with Lambda's request id.
    const requests = logLines.filter((line) => line.msg === 'request');
    expect(requests.map((line) => [line.requestId, line.status])).toEqual([
      ['first', 200],
      ['second', 201],
      ['third', 200],
    ]);
  });

  it('writes one EMF line per invocation in the configured namespace, and composes for Lambda', async () => {
    const { handler, compose } = await coldStart({
      REGISTRY_STORAGE: 'filesystem',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root,
      REGISTRY_METRICS_NAMESPACE: 'Registry/Test',
    });
    await handler(apiEvent('GET', '/v2/'), lambdaContext('first'));
    await handler(apiEvent('GET', '/v2/lambda/app/tags/list'), lambdaContext('second'));
    await handler(apiEvent('GET', '/elsewhere'), lambdaContext('third'));

    expect(emfLines.map((line) => [line.Route, line.Status, line.Requests])).toEqual([
      ['base', '200', 1],
      ['tags', '404', 1],
      ['unknown', '404', 1],
    ]);
    expect(emfLines.map((line) => line._aws.CloudWatchMetrics[0]?.Namespace)).toEqual([
      'Registry/Test',
      'Registry/Test',
      'Registry/Test',
    ]);
    // Events are delivered before an invocation returns: a frozen container delivers nothing.
    const runtime = vi.mocked(compose.composeRegistry).mock.calls[0]?.[3];
    expect(runtime?.deliverInBackground).toBe(false);
    expect(runtime?.metrics?.constructor.name).toBe('EmbeddedMetrics');
    // The access log names the route and repository too.
    expect(logLines.find((line) => line.requestId === 'second')).toMatchObject({
      msg: 'request',
      route: 'tags',
      repository: 'lambda/app',
    });
  });

  it('writes no metrics without a namespace: CloudWatch bills custom metrics', async () => {
    const { handler } = await coldStart({
      REGISTRY_STORAGE: 'filesystem',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root,
    });
    expect((await handler(apiEvent('GET', '/v2/'), lambdaContext('plain'))).statusCode).toBe(200);
    // (Whatever the check finds: see below for why an empty root fails it in this harness.)
    await handler(SCHEDULED_EVENT, lambdaContext('scheduled'));
    expect(emfLines).toEqual([]);
    expect(logLines.find((line) => line.requestId === 'plain')).toMatchObject({
      msg: 'request',
      status: 200,
    });
  });

  it('answers the scheduled health check with {} and Healthy 1 while storage answers', async () => {
    const { handler } = await coldStart({
      REGISTRY_STORAGE: 'filesystem',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root,
      REGISTRY_METRICS_NAMESPACE: 'Registry/Test',
    });
    // Storage with something in it. (An empty root is covered in test/health.test.ts: here the watched
    // composition loads the storage classes apart from the handler's modules, so instanceof fails.)
    const content = randomBytes(100);
    const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
    await handler(apiEvent('POST', `/v2/app/blobs/uploads/?digest=${digest}`, content), lambdaContext());
    emfLines.length = 0;
    logLines.length = 0;

    expect(await handler(SCHEDULED_EVENT, lambdaContext('scheduled'))).toEqual({});
    expect(emfLines).toHaveLength(1);
    expect(emfLines[0]?._aws.CloudWatchMetrics).toEqual([
      { Namespace: 'Registry/Test', Dimensions: [[]], Metrics: [{ Name: 'Healthy', Unit: 'Count' }] },
    ]);
    expect(emfLines[0]).toMatchObject({ Healthy: 1, Failing: {} });
    // It is no HTTP request: no access-log line, no errors.
    expect(logLines.filter((line) => line.msg === 'request' || line.level === 'error')).toEqual([]);
  });

  it('answers the scheduled health check with the failing checks, Healthy 0 and an error log', async () => {
    const { handler } = await coldStart({
      REGISTRY_STORAGE: 'filesystem',
      // A root no file system can resolve: storage that fails for any user, root included.
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(root, 'x'.repeat(300)),
      REGISTRY_METRICS_NAMESPACE: 'Registry/Test',
    });
    const failing = await handler(SCHEDULED_EVENT, lambdaContext('unhealthy'));
    expect(Object.keys(failing)).toEqual(['storagedriver_filesystem']);
    expect(failing.storagedriver_filesystem).toMatch(/ENAMETOOLONG/);
    expect(emfLines[0]).toMatchObject({ Healthy: 0, Failing: failing });
    expect(logLines.find((line) => line.level === 'error')).toMatchObject({
      msg: 'health check failed',
      requestId: 'unhealthy',
      failing,
    });
  });

  it('answers every invocation with a 500 naming the configuration error, and logs it each time', async () => {
    const { handler, compose } = await coldStart({
      REGISTRY_STORAGE: 'filesystem',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root,
      REGISTRY_STORAGE_DELETE_ENABLED: 'maybe',
    });

    for (const requestId of ['one', 'two']) {
      const result = await handler(apiEvent('GET', '/v2/'), lambdaContext(requestId));
      expect(result.statusCode).toBe(500);
      expect(result.headers?.['docker-distribution-api-version']).toBe('registry/2.0');
      expect(result.headers?.['x-request-id']).toBe(requestId);
      const body = JSON.parse(result.body ?? '') as { errors: { code: string; message: string }[] };
      expect(body.errors[0]?.code).toBe('UNKNOWN');
      expect(body.errors[0]?.message).toBe(
        'configuration error: storage.delete.enabled: expected a boolean, got "maybe" ' +
          '(from environment variable REGISTRY_STORAGE_DELETE_ENABLED)',
      );
    }
    const errors = logLines.filter((line) => line.level === 'error');
    expect(errors.map((line) => line.requestId)).toEqual(['one', 'two']);
    expect(errors[0]).toMatchObject({
      msg: 'configuration error: the registry cannot start',
      error: expect.stringContaining('storage.delete.enabled') as unknown,
    });
    expect(vi.mocked(compose.composeRegistry)).not.toHaveBeenCalled();
  });

  it('answers 500 when composing fails for another reason, and tries again on the next invocation', async () => {
    const { handler, compose } = await coldStart(
      { REGISTRY_STORAGE: 'filesystem', REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root },
      ({ composeRegistry }) => {
        vi.mocked(composeRegistry).mockRejectedValueOnce(new Error('EMFILE: too many open files'));
      },
    );

    const failed = await handler(apiEvent('GET', '/v2/'), lambdaContext('cold'));
    expect(failed.statusCode).toBe(500);
    const body = JSON.parse(failed.body ?? '') as { errors: { message: string }[] };
    // The cause goes to the log, not to the client.
    expect(body.errors[0]?.message).toBe('the registry failed to start (request cold)');
    expect(logLines.find((line) => line.level === 'error')).toMatchObject({
      requestId: 'cold',
      error: 'EMFILE: too many open files',
    });

    const recovered = await handler(apiEvent('GET', '/v2/'), lambdaContext('warm'));
    expect(recovered.statusCode).toBe(200);
    expect(vi.mocked(compose.composeRegistry)).toHaveBeenCalledTimes(2);
  });
});
