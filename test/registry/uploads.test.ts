import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StorageBackedMetadataStore } from '../../functions/metadata/storage-backed.js';
import { Registry } from '../../functions/registry/registry.js';
import type { StorageDriver } from '../../functions/storage/driver.js';
import { MemoryDriver } from '../../functions/storage/memory.js';

const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Records which paths are read through reader(), so a test can tell whether an upload was read back. */
function recordingReads(driver: StorageDriver): { driver: StorageDriver; reads: string[] } {
  const reads: string[] = [];
  const recording = new Proxy(driver, {
    get(target, property: keyof StorageDriver) {
      if (property === 'reader') {
        return (path: string, offset?: number, length?: number) => {
          reads.push(path);
          return target.reader(path, offset, length);
        };
      }
      // eslint-disable-next-line @typescript-eslint/unbound-method -- bound to target below
      const value = target[property];
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { driver: recording, reads };
}

/** Two registries over one storage: two processes, or two Lambda containers. */
function twoProcesses(persistHashState: boolean) {
  const storage = recordingReads(new MemoryDriver());
  const make = () =>
    new Registry({
      storage: storage.driver,
      metadata: new StorageBackedMetadataStore(storage.driver),
      options: { persistHashState },
    });
  return { a: make(), b: make(), reads: storage.reads };
}

const call = (
  registry: Registry,
  method: string,
  path: string,
  body?: Uint8Array,
  headers?: Record<string, string>,
) => registry.handle(new Request(`http://registry.test${path}`, { method, body, headers }));

async function chunkedUpload(first: Registry, second: Registry, blob: Uint8Array) {
  const post = await call(first, 'POST', '/v2/app/blobs/uploads/');
  const location = post.headers.get('location') ?? '';
  const half = blob.byteLength >> 1;
  const patch1 = await call(first, 'PATCH', location, blob.subarray(0, half), {
    'Content-Range': `0-${half - 1}`,
  });
  expect(patch1.status).toBe(202);
  const patch2 = await call(second, 'PATCH', location, blob.subarray(half), {
    'Content-Range': `${half}-${blob.byteLength - 1}`,
  });
  expect(patch2.status).toBe(202);
  return call(first, 'PUT', `${location}?digest=${sha256(blob)}`);
}

describe('upload hash state', () => {
  it('with persisted state, a chunk on another process continues the hash without reading the upload back', async () => {
    const { a, b, reads } = twoProcesses(true);
    const blob = randomBytes(300_000);
    expect((await chunkedUpload(a, b, blob)).status).toBe(201);
    expect(reads.filter((path) => path.startsWith('/uploads/'))).toEqual([]);
    const get = await call(a, 'GET', `/v2/app/blobs/${sha256(blob)}`);
    expect(sha256(new Uint8Array(await get.arrayBuffer()))).toBe(sha256(blob));
  });

  it('without persisted state, a chunk on another process re-derives the hash from the stored bytes once', async () => {
    const { a, b, reads } = twoProcesses(false);
    const blob = randomBytes(300_000);
    expect((await chunkedUpload(a, b, blob)).status).toBe(201);
    expect(reads.filter((path) => path.startsWith('/uploads/'))).toHaveLength(1);
  });

  it('refuses to continue an upload whose stored bytes no longer match its session, and forgets it', async () => {
    const storage = new MemoryDriver();
    const make = () => new Registry({ storage, metadata: new StorageBackedMetadataStore(storage) });
    const [a, b] = [make(), make()];
    const post = await call(a, 'POST', '/v2/app/blobs/uploads/');
    const location = post.headers.get('location') ?? '';
    const id = location.split('/').at(-1) ?? '';
    await call(a, 'PATCH', location, randomBytes(1000));
    // Same size, other bytes: as if the stored upload were corrupted between two requests.
    await storage.putContent(`/uploads/${id}/data`, randomBytes(1000));
    const patch = await call(b, 'PATCH', location, randomBytes(10));
    expect(patch.status).toBe(416);
    expect(((await patch.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe(
      'BLOB_UPLOAD_INVALID',
    );
    expect((await call(a, 'GET', location)).status).toBe(404);
  });
});
