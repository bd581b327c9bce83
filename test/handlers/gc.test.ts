/**
 * The garbage collection Lambda entry point as Lambda runs it: the module imported once per container
 * with REGISTRY_* variables in the environment (filesystem storage in a temporary directory here), then
 * invoked as EventBridge Scheduler invokes it. A run that reaches its deadline continues in an
 * asynchronous invocation of the function, which goes through the local Lambda's Invoke API
 * (bin/local/lambda.ts, SigV4 verified) and runs the same handler again.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Context } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type LocalLambda, startLocalLambda } from '../../bin/local/lambda.js';
import { loadConfig } from '../../functions/config.js';
import { gcOptions } from '../../functions/maintenance/job.js';
import type { TagRecord } from '../../functions/metadata/store.js';
import { StorageBackedMetadataStore } from '../../functions/metadata/storage-backed.js';
import { BlobStore } from '../../functions/registry/blob-store.js';
import { parseDigest } from '../../functions/registry/digest.js';
import { Registry } from '../../functions/registry/registry.js';
import { FilesystemDriver } from '../../functions/storage/filesystem.js';
import { type Api, pushBlob, pushImage, randomContent } from '../api/helpers.js';

type HandlerModule = typeof import('../../functions/handlers/gc.js');
type Summary = Awaited<ReturnType<HandlerModule['handler']>>;

const REGION = 'eu-west-1';
const ACCOUNT = '123456789012';
const FUNCTION = 'registry-gc';
const credentials = { accessKeyId: 'AKLOCALGC', secretAccessKey: randomBytes(20).toString('hex') };
/** Retention for ci/**: of the main-* tags, the most recent stays. */
const RETENTION = [{ repositories: ['ci/**'], rules: [{ tags: ['main-*'], keeplast: 1 }] }];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A Lambda context with remainingMs left, for the function the local Lambda runs. */
function context(lambda: LocalLambda, remainingMs: number, requestId = 'scheduled'): Context {
  const deadline = Date.now() + remainingMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: FUNCTION,
    functionVersion: '$LATEST',
    invokedFunctionArn: lambda.arn(FUNCTION),
    memoryLimitInMB: '1769',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${FUNCTION}`,
    logStreamName: 'test',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  } as Context;
}

describe('the garbage collection Lambda handler', () => {
  const saved = { ...process.env };
  let root: string;
  let lambda: LocalLambda;
  let handler: HandlerModule['handler'] | undefined;
  let api: Api;
  let blobs: BlobStore;
  let logLines: Record<string, unknown>[];

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'registry-gc-handler-'));
    for (const key of Object.keys(process.env)) {
      if (/^(AWS_|REGISTRY_|GC_)/.test(key)) Reflect.deleteProperty(process.env, key);
    }
    logLines = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((line: string | Uint8Array) => {
      for (const text of String(line).split('\n').filter(Boolean)) {
        logLines.push(JSON.parse(text) as Record<string, unknown>);
      }
      return true;
    });
    handler = undefined;
    lambda = await startLocalLambda({
      region: REGION,
      credentials,
      accountId: ACCOUNT,
      functions: [
        {
          name: FUNCTION,
          handler: (event, ctx) => {
            if (!handler) throw new Error('no handler loaded');
            return handler(event, ctx);
          },
          timeoutMs: 15 * 60_000,
          retryAttempts: 0,
        },
      ],
    });
    // The registry the images are pushed through: the same storage the function is configured with.
    const storage = new FilesystemDriver(root);
    blobs = new BlobStore(storage);
    const registry = new Registry({ storage, metadata: new StorageBackedMetadataStore(storage) });
    api = {
      request: (path, init) => registry.handle(new Request(`http://registry.test${path}`, init)),
      reopen: () => Promise.reject(new Error('not used')),
    };
    vi.resetModules();
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await lambda.close();
    for (const key of Object.keys(process.env)) {
      if (!(key in saved)) Reflect.deleteProperty(process.env, key);
    }
    Object.assign(process.env, saved);
    await rm(root, { recursive: true, force: true });
  });

  /** A fresh container: the module loaded anew with env, as Lambda does on a cold start. */
  async function coldStart(env: Record<string, string> = {}): Promise<HandlerModule['handler']> {
    Object.assign(process.env, {
      REGISTRY_STORAGE: 'filesystem',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root,
      REGISTRY_GC_GRACE: '0s',
      REGISTRY_RETENTION: JSON.stringify(RETENTION),
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_ENDPOINT_URL_LAMBDA: lambda.url,
      ...env,
    });
    handler = (await import('../../functions/handlers/gc.js')).handler;
    return handler;
  }

  /** app:v1 and a blob no manifest names; ci/builds with main-1, main-2 and main-3, in that order. */
  async function populate() {
    const app = await pushImage(api, 'app', { tag: 'v1' });
    const loose = await pushBlob(api, 'app', randomContent(1000));
    const builds = [];
    for (const tag of ['main-1', 'main-2', 'main-3']) {
      builds.push(await pushImage(api, 'ci/builds', { tag }));
      await sleep(5);
    }
    // Everything written is older than the run's start, and the grace period is 0s.
    await sleep(20);
    return { app, loose, builds };
  }

  const status = async (path: string) => (await api.request(path, { method: 'HEAD' })).status;
  const stored = async (digest: string) => (await blobs.size(parseDigest(digest))) !== undefined;
  const layerOf = (image: { manifest: Record<string, unknown> }) =>
    (image.manifest as { layers: { digest: string }[] }).layers[0]?.digest ?? '';

  it('pauses at its deadline and continues the run in an invocation of itself, through Invoke', async () => {
    const { app, loose, builds } = await populate();
    const gc = await coldStart();
    const { SAFETY_MARGIN_MS } = await import('../../functions/handlers/gc.js');

    // The clock jumps past the deadline once the first repository (app) is done: the run pauses there.
    const metadata = await import('../../functions/metadata/storage-backed.js');
    const realNow = Date.now.bind(Date);
    let shiftMs = 0;
    const tagRecords = Reflect.get(metadata.StorageBackedMetadataStore.prototype, 'tagRecords') as (
      this: StorageBackedMetadataStore,
      repository: string,
    ) => AsyncIterable<TagRecord>;
    vi.spyOn(metadata.StorageBackedMetadataStore.prototype, 'tagRecords').mockImplementation(async function* (
      this: StorageBackedMetadataStore,
      repository: string,
    ): AsyncGenerator<TagRecord> {
      yield* tagRecords.call(this, repository);
      if (repository === 'app') shiftMs = 60_000;
    });
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + shiftMs);

    // Lambda's remaining time: the run may go on for 30 s after the safety margin.
    const first = await gc({}, context(lambda, SAFETY_MARGIN_MS + 30_000));
    expect(first).toEqual({ done: false, run: expect.any(String) as string, continuedBy: 'invocation' });
    if (first.done) throw new Error('done at once');
    // Nothing of ci/builds is gone yet, nor any blob: the run stopped after app.
    expect(await status(`/v2/ci/builds/manifests/main-1`)).toBe(200);
    expect(await stored(loose.digest)).toBe(true);
    expect(logLines).toContainEqual(
      expect.objectContaining({
        msg: 'garbage collection paused',
        run: first.run,
        phase: 'repositories',
        cursor: 'app',
      }),
    );
    expect(logLines).toContainEqual(
      expect.objectContaining({
        msg: 'garbage collection continues in a new invocation',
        run: first.run,
        function: lambda.arn(FUNCTION),
        requestId: 'scheduled',
      }),
    );

    // The function invoked itself asynchronously with the run's id; the local Lambda ran it to the end.
    await lambda.idle();
    expect(lambda.invocations).toHaveLength(1);
    const [continuation] = lambda.invocations;
    expect(continuation).toMatchObject({
      functionName: FUNCTION,
      type: 'Event',
      event: { run: first.run },
      attempts: 1,
    });
    const outcome = continuation?.outcome;
    if (!outcome || !('result' in outcome))
      throw new Error(`the continuation failed: ${JSON.stringify(outcome)}`);
    const summary = outcome.result as Summary;
    expect(summary).toMatchObject({
      done: true,
      run: first.run,
      dryRun: false,
      repositories: 2,
      removed: { tags: 2, manifests: 2 },
    });
    if (!summary.done) throw new Error('not done');
    // Two images' manifest, config and layer (manifests are blobs too), and the loose blob.
    expect(summary.removed.blobs).toBe(7);

    // Retention kept the last main-* tag; app kept its image and lost the blob no manifest named.
    expect(await status('/v2/ci/builds/manifests/main-1')).toBe(404);
    expect(await status('/v2/ci/builds/manifests/main-2')).toBe(404);
    expect(await status('/v2/ci/builds/manifests/main-3')).toBe(200);
    expect(await status('/v2/app/manifests/v1')).toBe(200);
    expect(await stored(layerOf(app))).toBe(true);
    expect(await stored(layerOf(builds[2] ?? app))).toBe(true);
    expect(await stored(layerOf(builds[0] ?? app))).toBe(false);
    expect(await stored(loose.digest)).toBe(false);
    // The run's saved state is gone with it.
    const storage = new FilesystemDriver(root);
    await expect(storage.stat(`/gc/runs/${first.run}/state.json`)).rejects.toThrow();
  });

  it('runs to the end in one invocation when there is time, and removes nothing in a dry run', async () => {
    const { loose } = await populate();
    const gc = await coldStart();

    const dry = await gc({ dryRun: true }, context(lambda, 15 * 60_000));
    expect(dry).toMatchObject({
      done: true,
      dryRun: true,
      repositories: 2,
      removed: { tags: 2, manifests: 2 },
    });
    expect(await status('/v2/ci/builds/manifests/main-1')).toBe(200);
    expect(await stored(loose.digest)).toBe(true);

    const real = await gc({}, context(lambda, 15 * 60_000));
    expect(real).toMatchObject({ done: true, dryRun: false, removed: { tags: 2, manifests: 2, blobs: 7 } });
    expect(await status('/v2/ci/builds/manifests/main-1')).toBe(404);
    expect(await stored(loose.digest)).toBe(false);
    expect(lambda.invocations).toHaveLength(0);
  });

  it('makes every run a dry run with GC_DRY_RUN=true', async () => {
    const { loose } = await populate();
    const gc = await coldStart({ GC_DRY_RUN: 'true' });
    const summary = await gc({}, context(lambda, 15 * 60_000));
    expect(summary).toMatchObject({ done: true, dryRun: true, removed: { tags: 2 } });
    expect(await stored(loose.digest)).toBe(true);
    expect(await status('/v2/ci/builds/manifests/main-1')).toBe(200);
  });

  it('refuses to start with less time left than its safety margin, and events it does not know', async () => {
    const gc = await coldStart();
    const { SAFETY_MARGIN_MS } = await import('../../functions/handlers/gc.js');
    await expect(gc({}, context(lambda, SAFETY_MARGIN_MS))).rejects.toThrow(/raise the function's timeout/);
    await expect(gc({ run: 42 } as never, context(lambda, 15 * 60_000))).rejects.toThrow(
      /run must be a run id/,
    );
    await expect(gc({ dryRun: 'yes' } as never, context(lambda, 15 * 60_000))).rejects.toThrow(
      /dryRun must be true or false/,
    );
    await expect(gc({ run: '../../etc' }, context(lambda, 15 * 60_000))).rejects.toThrow(
      /not a garbage collection run id/,
    );
    expect(lambda.invocations).toHaveLength(0);
  });

  it('fails every invocation with the configuration error, logged, when the configuration is wrong', async () => {
    const gc = await coldStart({ REGISTRY_GC_GRACE: 'soon' });
    await expect(gc({}, context(lambda, 15 * 60_000, 'first'))).rejects.toThrow(/gc\.grace/);
    await expect(gc({}, context(lambda, 15 * 60_000, 'second'))).rejects.toThrow(/gc\.grace/);
    const errors = logLines.filter(
      (line) => line.msg === 'configuration error: garbage collection cannot start',
    );
    expect(errors.map((line) => line.requestId)).toEqual(['first', 'second']);
  });
});

describe('gcOptions', () => {
  it('takes gc.grace, gc.deleteuntagged, retention and the upload age from the configuration', async () => {
    const { config } = await loadConfig({
      env: {
        REGISTRY_GC_GRACE: '30m',
        REGISTRY_GC_DELETEUNTAGGED: 'true',
        REGISTRY_RETENTION: JSON.stringify(RETENTION),
        REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: '48h',
      },
    });
    expect(gcOptions(config)).toEqual({
      dryRun: false,
      deleteUntagged: true,
      graceMs: 30 * 60_000,
      retention: [
        {
          repositories: ['ci/**'],
          protect: [],
          rules: [{ kind: 'tags', tags: ['main-*'], keepLast: 1, olderThanMs: undefined }],
        },
      ],
      uploadAgeMs: 48 * 3_600_000,
    });
    expect(
      gcOptions(config, { dryRun: true, deleteUntagged: false, graceMs: 0, deadline: 1234 }),
    ).toMatchObject({
      dryRun: true,
      deleteUntagged: false,
      graceMs: 0,
      deadline: 1234,
    });
  });

  it('leaves uploads alone when upload purging is disabled, and uses the defaults without a gc section', async () => {
    const { config } = await loadConfig({
      env: { REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED: 'false' },
    });
    const options = gcOptions(config);
    expect(options).toEqual({
      dryRun: false,
      deleteUntagged: false,
      graceMs: 3_600_000,
      retention: [],
      uploadAgeMs: undefined,
    });
    expect('deadline' in options).toBe(false);
  });
});
