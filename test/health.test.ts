/**
 * Health checks over real parts: the filesystem driver and the storage-backed metadata store, a
 * filesystem root that cannot be reached, a DynamoDB store whose endpoint does not answer; the
 * background monitor's threshold; and /debug/health's answers.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../functions/config.js';
import { checkHealth, HealthMonitor, healthResponse, healthTargets } from '../functions/health.js';
import { DynamoDbMetadataStore } from '../functions/metadata/dynamodb.js';
import { StorageBackedMetadataStore } from '../functions/metadata/storage-backed.js';
import { FilesystemDriver } from '../functions/storage/filesystem.js';
import type { StorageDriver } from '../functions/storage/driver.js';
import { freePort } from './support/registry-process.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'registry-health-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A root the filesystem cannot even resolve (a name longer than any file system allows): storage that
 * fails whoever runs the test, where an unreadable directory would not fail for root.
 */
const unreachableRoot = () => join(dir, 'x'.repeat(300), 'root');

function filesystem(root: string) {
  const driver = new FilesystemDriver(root);
  return { storage: { driver, type: 'filesystem' }, metadata: undefined };
}

describe('checkHealth', () => {
  it('passes on an empty filesystem root, whose not-found answer counts as an answer', async () => {
    expect(await checkHealth(filesystem(join(dir, 'empty')))).toEqual({});
  });

  it('passes once the registry has stored something, with the metadata store checked too', async () => {
    const driver = new FilesystemDriver(join(dir, 'used'));
    const store = new StorageBackedMetadataStore(driver);
    await store.linkBlob('library/app', { digest: `sha256:${'a'.repeat(64)}`, size: 1 });
    const targets = { storage: { driver, type: 'filesystem' }, metadata: { store, type: 'storage' } };
    expect(await checkHealth(targets)).toEqual({});
  });

  it('reports storage that cannot answer as storagedriver_<type>, with the driver’s error', async () => {
    const failing = await checkHealth(filesystem(unreachableRoot()));
    expect(Object.keys(failing)).toEqual(['storagedriver_filesystem']);
    expect(failing.storagedriver_filesystem).toMatch(/^filesystem: list \/: ENAMETOOLONG/);
  });

  it('reports a DynamoDB metadata store that does not answer as metadata_dynamodb', async () => {
    const client = new DynamoDBClient({
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${await freePort()}`,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
    const store = new DynamoDbMetadataStore({ table: 'registry', client });
    const failing = await checkHealth({
      storage: { driver: new FilesystemDriver(join(dir, 'dynamo')), type: 'filesystem' },
      metadata: { store, type: 'dynamodb' },
    });
    expect(Object.keys(failing)).toEqual(['metadata_dynamodb']);
    expect(failing.metadata_dynamodb).toMatch(/ECONNREFUSED/);
    client.destroy();
  });

  it('reports a check that does not answer in time', async () => {
    // A driver that never answers: no real driver can be made to hang on demand.
    const hanging = {
      name: 'hanging',
      list: () => new Promise<string[]>(() => undefined),
    } as Partial<StorageDriver> as StorageDriver;
    const started = performance.now();
    const failing = await checkHealth({ storage: { driver: hanging, type: 'hanging' } }, 50);
    expect(failing).toEqual({ storagedriver_hanging: 'no answer within 50 ms' });
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('names the checks after the configuration, leaving metadata kept in storage to the storage check', async () => {
    const { config } = await loadConfig({ env: { REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: dir } });
    const driver = new FilesystemDriver(dir);
    const store = new StorageBackedMetadataStore(driver);
    expect(healthTargets(config, { storage: driver, metadata: store })).toEqual({
      storage: { driver, type: 'filesystem' },
      metadata: undefined,
    });
    const dynamodb = {
      ...config,
      metadata: { type: 'dynamodb', table: 't', region: undefined, endpoint: undefined },
    };
    expect(healthTargets(dynamodb as typeof config, { storage: driver, metadata: store }).metadata).toEqual({
      store,
      type: 'dynamodb',
    });
  });
});

describe('HealthMonitor', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reports a check only after threshold failures in a row, and clears it on one success', async () => {
    vi.useFakeTimers();
    const results: Record<string, string>[] = [
      { storagedriver_s3: 'timeout' },
      { storagedriver_s3: 'timeout' },
      { storagedriver_s3: 'still down' },
      {},
      { storagedriver_s3: 'timeout' },
      { storagedriver_s3: 'timeout' },
    ];
    let calls = 0;
    const monitor = new HealthMonitor(() => Promise.resolve(results[calls++] ?? {}), {
      intervalMs: 1000,
      threshold: 2,
    });
    const after = async (ms: number) => {
      await vi.advanceTimersByTimeAsync(ms);
      return monitor.status();
    };

    expect(await after(0)).toEqual({}); // 1 failure
    expect(await after(999)).toEqual({});
    expect(await after(1)).toEqual({ storagedriver_s3: 'timeout' }); // 2 in a row
    expect(await after(1000)).toEqual({ storagedriver_s3: 'still down' }); // the latest error
    expect(await after(1000)).toEqual({}); // one success clears it
    expect(await after(1000)).toEqual({}); // the count starts again
    expect(await after(1000)).toEqual({ storagedriver_s3: 'timeout' });
    expect(calls).toBe(6);

    monitor.stop();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls).toBe(6);
  });

  it('waits for a slow check before scheduling the next, so that checks never overlap', async () => {
    vi.useFakeTimers();
    let running = 0;
    let most = 0;
    const monitor = new HealthMonitor(
      async () => {
        most = Math.max(most, ++running);
        await new Promise((resolve) => setTimeout(resolve, 2500));
        running -= 1;
        return {};
      },
      { intervalMs: 1000, threshold: 1 },
    );
    await vi.advanceTimersByTimeAsync(10_000);
    monitor.stop();
    expect(most).toBe(1);
  });

  it('watches real storage: unreachable storage fails /debug/health with the check’s name', async () => {
    const monitor = new HealthMonitor(() => checkHealth(filesystem(unreachableRoot())), {
      intervalMs: 10,
      threshold: 3,
    });
    try {
      await expect.poll(() => Object.keys(monitor.status())).toEqual(['storagedriver_filesystem']);
      const response = healthResponse(monitor.status());
      expect(response.status).toBe(503);
      expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
      const body = (await response.json()) as Record<string, string>;
      expect(body.storagedriver_filesystem).toMatch(/ENAMETOOLONG/);
    } finally {
      monitor.stop();
    }
  });
});

describe('healthResponse', () => {
  it('answers 200 with {} when nothing fails', async () => {
    const response = healthResponse({});
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(response.headers.get('content-length')).toBe('2');
    expect(await response.text()).toBe('{}');
  });

  it('answers 503 with the failing checks', async () => {
    const response = healthResponse({ storagedriver_s3: 'Access Denied', metadata_dynamodb: 'timeout' });
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      storagedriver_s3: 'Access Denied',
      metadata_dynamodb: 'timeout',
    });
  });
});
