/**
 * Garbage collection over the registry core: images pushed through the API, collectGarbage run, and
 * what is left checked through the API and in storage. Each case runs on the storage-backed metadata
 * store (memory and filesystem drivers) and on DynamoDB Local.
 */
import { mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { DeleteTableCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDynamoDbLocal, type DynamoDbLocal } from '../../bin/local/dynamodb-local.js';
import { silentLogger } from '../../functions/log.js';
import {
  collectGarbage,
  type GcOptions,
  type GcReport,
  storageUsage,
} from '../../functions/maintenance/gc.js';
import type { RetentionPolicy } from '../../functions/maintenance/policies.js';
import { createTable, DynamoDbMetadataStore } from '../../functions/metadata/dynamodb.js';
import { StorageBackedMetadataStore } from '../../functions/metadata/storage-backed.js';
import type { MetadataStore } from '../../functions/metadata/store.js';
import { BlobStore } from '../../functions/registry/blob-store.js';
import type { RegistryOptions } from '../../functions/registry/context.js';
import { parseDigest } from '../../functions/registry/digest.js';
import { Registry } from '../../functions/registry/registry.js';
import type { StorageDriver } from '../../functions/storage/driver.js';
import { FilesystemDriver } from '../../functions/storage/filesystem.js';
import { MemoryDriver } from '../../functions/storage/memory.js';
import {
  type Api,
  type PushedManifest,
  encode,
  manifestDescriptor,
  OCI_CONFIG,
  OCI_EMPTY,
  OCI_INDEX,
  OCI_MANIFEST,
  pushBlob,
  pushImage,
  pushManifest,
  putManifest,
  randomContent,
  sha256,
  startUpload,
} from '../api/helpers.js';

let dynamo: DynamoDbLocal | undefined;
beforeAll(async () => {
  dynamo = await startDynamoDbLocal();
});
afterAll(async () => {
  await dynamo?.stop();
});

interface Backend {
  storage: StorageDriver;
  metadata: MetadataStore;
  cleanup(): Promise<void>;
}

const BACKENDS: Record<string, () => Promise<Backend>> = {
  'storage-backed metadata, memory driver': () => {
    const storage = new MemoryDriver();
    return Promise.resolve({
      storage,
      metadata: new StorageBackedMetadataStore(storage),
      cleanup: () => Promise.resolve(),
    });
  },
  'storage-backed metadata, filesystem driver': async () => {
    const root = await mkdtemp(join(tmpdir(), 'gc-'));
    const storage = new FilesystemDriver(root);
    return {
      storage,
      metadata: new StorageBackedMetadataStore(storage),
      cleanup: () => rm(root, { recursive: true, force: true }),
    };
  },
  'DynamoDB metadata (DynamoDB Local), memory driver': async () => {
    if (dynamo === undefined) throw new Error('DynamoDB Local is not running');
    const client = dynamo.client();
    const table = `gc-${randomUUID()}`;
    await createTable(client, table);
    return {
      storage: new MemoryDriver(),
      metadata: new DynamoDbMetadataStore({ table, client }),
      cleanup: async () => {
        await client.send(new DeleteTableCommand({ TableName: table }));
      },
    };
  },
};

const DEFAULTS: GcOptions = {
  dryRun: false,
  deleteUntagged: false,
  graceMs: 0,
  retention: [],
  uploadAgeMs: undefined,
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(Object.keys(BACKENDS))('garbage collection (%s)', (name) => {
  let backend: Backend;
  let registry: Registry;
  let blobs: BlobStore;
  let api: Api;

  function makeApi(options: Partial<RegistryOptions> = {}): Api {
    registry = new Registry({ storage: backend.storage, metadata: backend.metadata, options });
    const target: Api = {
      request: (path, init) => registry.handle(new Request(`http://registry.test${path}`, init)),
      reopen: () => Promise.reject(new Error('not used')),
    };
    return target;
  }

  beforeEach(async () => {
    backend = await (BACKENDS[name] as () => Promise<Backend>)();
    blobs = new BlobStore(backend.storage);
    api = makeApi();
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  async function gc(options: Partial<GcOptions> = {}, metadata = backend.metadata): Promise<GcReport> {
    // With no grace, what was written before the run goes; a write in the run's first millisecond stays.
    await sleep(5);
    const result = await collectGarbage({ blobs, metadata, log: silentLogger }, { ...DEFAULTS, ...options });
    if (!result.done) throw new Error('the run paused');
    return result.report;
  }

  const stored = async (digest: string) => (await blobs.size(parseDigest(digest))) !== undefined;
  const status = async (path: string, method = 'HEAD') => (await api.request(path, { method })).status;
  const blobDigests = (image: { manifest: Record<string, unknown> }) => {
    const manifest = image.manifest as { config: { digest: string }; layers: { digest: string }[] };
    return [manifest.config.digest, ...manifest.layers.map((layer) => layer.digest)];
  };

  it('removes blobs no manifest names once past the grace period, and keeps referenced ones', async () => {
    const image = await pushImage(api, 'app', { tag: 'v1' });
    const loose = await pushBlob(api, 'app', randomContent(1000));

    const young = await gc({ graceMs: 3_600_000 });
    expect(young.removed.blobs).toBe(0);
    expect(await stored(loose.digest)).toBe(true);

    const report = await gc();
    expect(report.removed).toMatchObject({ blobs: 1, blobBytes: 1000, links: 1, manifests: 0, tags: 0 });
    expect(await stored(loose.digest)).toBe(false);
    expect(await status(`/v2/app/blobs/${loose.digest}`)).toBe(404);
    for (const digest of [...blobDigests(image), image.digest]) expect(await stored(digest)).toBe(true);
    expect(await status('/v2/app/manifests/v1', 'GET')).toBe(200);
    for (const digest of blobDigests(image)) expect(await status(`/v2/app/blobs/${digest}`, 'GET')).toBe(200);
  });

  it('reclaims a deleted manifest and the blobs only it named, and keeps blobs another image shares', async () => {
    const shared = await pushBlob(api, 'app', randomContent(500));
    const config = await pushBlob(api, 'app', encode('{"os":"linux"}'));
    const layer = (pushed: { digest: string; size: number }) => ({
      mediaType: 'application/vnd.oci.image.layer.v1.tar',
      ...pushed,
    });
    const first = await pushManifest(
      api,
      'app',
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, ...config },
        layers: [layer(shared)],
      },
      OCI_MANIFEST,
      'one',
    );
    const own = await pushBlob(api, 'app', randomContent(700));
    await pushManifest(
      api,
      'app',
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, ...config },
        layers: [layer(shared), layer(own)],
      },
      OCI_MANIFEST,
      'three',
    );
    expect(await status(`/v2/app/manifests/${first.digest}`, 'DELETE')).toBe(202);

    const report = await gc();
    expect(report.removed.blobs).toBe(1); // the deleted manifest's own bytes; its blobs are shared
    expect(await stored(first.digest)).toBe(false);
    expect(await stored(shared.digest)).toBe(true);
    expect(await stored(own.digest)).toBe(true);
  });

  it('keeps untagged manifests unless asked, then removes them with what only they name', async () => {
    const untagged = await pushImage(api, 'app');
    const tagged = await pushImage(api, 'app', { tag: 'latest' });

    expect((await gc()).removed.manifests).toBe(0);
    expect(await status(`/v2/app/manifests/${untagged.digest}`)).toBe(200);

    // Pushed just now: inside the grace period even with --delete-untagged.
    expect((await gc({ deleteUntagged: true, graceMs: 3_600_000 })).removed.manifests).toBe(0);

    const report = await gc({ deleteUntagged: true });
    expect(report.removed.manifests).toBe(1);
    expect(report.repositories.find((r) => r.repository === 'app')?.removedManifests).toEqual([
      untagged.digest,
    ]);
    expect(await status(`/v2/app/manifests/${untagged.digest}`)).toBe(404);
    for (const digest of blobDigests(untagged)) expect(await stored(digest)).toBe(false);
    expect(await status('/v2/app/manifests/latest')).toBe(200);
    for (const digest of blobDigests(tagged)) expect(await stored(digest)).toBe(true);
  });

  it("keeps a tagged index's children and a kept manifest's referrers; referrers of a removed manifest go with it", async () => {
    const amd64 = await pushImage(api, 'app');
    const arm64 = await pushImage(api, 'app');
    const index = await pushManifest(
      api,
      'app',
      {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [manifestDescriptor(amd64), manifestDescriptor(arm64)],
      },
      OCI_INDEX,
      'multi',
    );
    const doomed = await pushImage(api, 'app', { tag: 'old' });
    const signature = async (subject: PushedManifest) => {
      const empty = await pushBlob(api, 'app', encode('{}'));
      return pushImage(api, 'app', {
        fields: {
          artifactType: 'application/vnd.example.signature',
          config: { mediaType: OCI_EMPTY, ...empty },
          subject: manifestDescriptor(subject),
        },
      });
    };
    const indexSignature = await signature(index);
    const doomedSignature = await signature(doomed);
    expect(await status('/v2/app/manifests/old', 'DELETE')).toBe(202);

    const report = await gc({ deleteUntagged: true });
    expect(report.repositories.find((r) => r.repository === 'app')?.removedManifests.sort()).toEqual(
      [doomed.digest, doomedSignature.digest].sort(),
    );
    for (const kept of [index, amd64, arm64, indexSignature]) {
      expect(await status(`/v2/app/manifests/${kept.digest}`)).toBe(200);
    }
    const referrers = await api.request(`/v2/app/referrers/${index.digest}`);
    expect(((await referrers.json()) as { manifests: unknown[] }).manifests).toHaveLength(1);
  });

  it('applies retention: keeps the last N matching tags, expires old ones, never touches protected ones', async () => {
    const pushed: Record<string, string> = {};
    for (const tag of ['main-1', 'main-2', 'main-3', 'main-4', 'pr-1', 'latest', 'release-1']) {
      pushed[tag] = (await pushImage(api, 'ci/app', { tag })).digest;
      await sleep(15); // distinct tag times
    }
    const retention: RetentionPolicy[] = [
      {
        repositories: ['ci/**'],
        protect: ['latest', 'release-*'],
        rules: [
          { kind: 'tags', tags: ['main-*'], keepLast: 2, olderThanMs: undefined },
          { kind: 'tags', tags: ['pr-*', 'release-*', 'latest'], keepLast: undefined, olderThanMs: 1 },
        ],
      },
    ];
    const dry = await gc({ retention, dryRun: true });
    const app = dry.repositories.find((r) => r.repository === 'ci/app');
    expect(app?.removedTags).toEqual(['main-1', 'main-2', 'pr-1']);
    expect(await status('/v2/ci/app/manifests/main-1')).toBe(200);

    const report = await gc({ retention });
    expect(report.repositories.find((r) => r.repository === 'ci/app')?.removedTags).toEqual([
      'main-1',
      'main-2',
      'pr-1',
    ]);
    expect(report.removed.manifests).toBe(3);
    const tags = (await (await api.request('/v2/ci/app/tags/list')).json()) as { tags: string[] };
    expect(tags.tags).toEqual(['latest', 'main-3', 'main-4', 'release-1']);
    for (const tag of ['main-1', 'main-2', 'pr-1']) {
      expect(await status(`/v2/ci/app/manifests/${pushed[tag] as string}`)).toBe(404);
      expect(await stored(pushed[tag] as string)).toBe(false);
    }
    // The same report as the dry run announced.
    expect(report.removed).toMatchObject({
      tags: dry.removed.tags,
      manifests: dry.removed.manifests,
      blobs: dry.removed.blobs,
    });
  });

  it('leaves a manifest pushed within the grace period, with the tag retention would remove, to a later run', async () => {
    await pushImage(api, 'ci/app', { tag: 'main-1' });
    await sleep(15);
    await pushImage(api, 'ci/app', { tag: 'main-2' });
    const retention: RetentionPolicy[] = [
      {
        repositories: ['ci/**'],
        protect: [],
        rules: [{ kind: 'tags', tags: ['main-*'], keepLast: 1, olderThanMs: undefined }],
      },
    ];
    const young = await gc({ retention, graceMs: 3_600_000 });
    expect(young.removed).toMatchObject({ tags: 0, manifests: 0 });
    const tags = async () =>
      ((await (await api.request('/v2/ci/app/tags/list')).json()) as { tags: string[] }).tags;
    expect(await tags()).toEqual(['main-1', 'main-2']);
    expect((await gc({ retention })).removed).toMatchObject({ tags: 1, manifests: 1 });
    expect(await tags()).toEqual(['main-2']);
  });

  it('expires untagged manifests by age under a policy, and removes signature tags with their subject', async () => {
    const old = await pushImage(api, 'app', { tag: 'old' });
    const sigTag = `sha256-${old.digest.slice('sha256:'.length)}.sig`;
    await pushImage(api, 'app', { tag: sigTag });
    await status('/v2/app/manifests/old', 'DELETE');
    const orphan = await pushImage(api, 'app');
    const retention: RetentionPolicy[] = [
      { repositories: ['app'], protect: [], rules: [{ kind: 'untagged', olderThanMs: 3_600_000 }] },
    ];
    expect((await gc({ retention })).removed.manifests).toBe(0); // younger than the rule's age

    const report = await gc({
      retention: [{ ...(retention[0] as RetentionPolicy), rules: [{ kind: 'untagged', olderThanMs: 0 }] }],
    });
    const app = report.repositories.find((r) => r.repository === 'app');
    expect(app?.removedManifests).toContain(old.digest);
    expect(app?.removedManifests).toContain(orphan.digest);
    expect(app?.removedTags).toEqual([sigTag]);
    expect(await status(`/v2/app/manifests/${sigTag}`)).toBe(404);
  });

  it('reports per-repository usage with shared blobs counted once', async () => {
    const config = await pushBlob(api, 'app', encode('{"a":1}'));
    const layer = await pushBlob(api, 'app', randomContent(1000));
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
    };
    const one = await pushManifest(api, 'app', manifest, OCI_MANIFEST, 'one');
    const two = await pushManifest(api, 'app', { ...manifest, annotations: { b: '2' } }, OCI_MANIFEST, 'two');
    const usage = await storageUsage({ blobs, metadata: backend.metadata, log: silentLogger });
    expect(usage).toEqual([
      {
        repository: 'app',
        tags: 2,
        manifests: 2,
        blobs: 2,
        bytes: one.bytes.byteLength + two.bytes.byteLength + config.size + layer.size,
      },
    ]);
  });

  it('removes expired upload sessions and old upload bytes no session owns, and keeps open ones', async () => {
    api = makeApi({ uploadTTLSeconds: 1 });
    const expiring = await startUpload(api, 'app');
    const patch = (path: string) =>
      api.request(path, {
        method: 'PATCH',
        body: randomContent(100),
        headers: { 'Content-Type': 'application/octet-stream' },
      });
    expect((await patch(expiring)).status).toBe(202);
    await sleep(1100);
    api = makeApi({ uploadTTLSeconds: 3600 });
    const open = await startUpload(api, 'app');
    expect((await patch(open)).status).toBe(202);

    const report = await gc({ uploadAgeMs: 500 });
    expect(report.removed.uploads).toBe(1);
    expect(await status(expiring, 'GET')).toBe(404);
    expect(await status(open, 'GET')).toBe(204);
    expect((await patch(open)).status).toBe(202);
  });

  it('a dry run removes nothing and reports what a run removes', async () => {
    await pushImage(api, 'app', { tag: 'v1' });
    const untagged = await pushImage(api, 'app');
    const loose = await pushBlob(api, 'app', randomContent(123));
    const dry = await gc({ dryRun: true, deleteUntagged: true });
    expect(dry.dryRun).toBe(true);
    expect(dry.removed).toMatchObject({
      manifests: 1,
      blobs: 4,
      blobBytes: 123 + untagged.bytes.byteLength + sizes(untagged),
    });
    expect(await stored(loose.digest)).toBe(true);
    expect(await status(`/v2/app/manifests/${untagged.digest}`)).toBe(200);
    const real = await gc({ deleteUntagged: true });
    expect(real.removed).toEqual(dry.removed);
  });

  it('resumes a paused run from its saved state', async () => {
    await pushImage(api, 'a', { tag: 'v1' });
    await pushImage(api, 'b');
    const loose = await pushBlob(api, 'c', randomContent(10));
    const parts = { blobs, metadata: backend.metadata, log: silentLogger };
    await sleep(5);
    const paused = await collectGarbage(parts, { ...DEFAULTS, deleteUntagged: true, deadline: 0 });
    expect(paused.done).toBe(false);
    if (paused.done) return;
    expect(await stored(loose.digest)).toBe(true);
    const resumed = await collectGarbage(parts, { ...DEFAULTS, deadline: undefined }, paused.run);
    expect(resumed.done).toBe(true);
    if (!resumed.done) return;
    // The options it started with hold: untagged manifests in b went.
    expect(resumed.report.removed.manifests).toBe(1);
    expect(await stored(loose.digest)).toBe(false);
    await expect(backend.storage.list('/gc')).rejects.toThrow();
  });

  it('puts back a blob that a manifest push took while it was being removed', async () => {
    const layer = await pushBlob(api, 'app', randomContent(400));
    const config = await pushBlob(api, 'app', encode('{"os":"linux"}'));
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
    };
    // The one hook in these tests: the push lands between the walk and the unlink, a window too narrow
    // to hit by timing. The push marks the blobs and commits before garbage collection unlinks them.
    let push: Promise<Response> | undefined;
    const racing: MetadataStore = Object.create(backend.metadata) as MetadataStore;
    racing.unlinkBlob = async (repository, digest) => {
      await (push ??= putManifest(api, 'app', 'raced', manifest));
      return backend.metadata.unlinkBlob(repository, digest);
    };
    const report = await gc({}, racing);
    expect((await push)?.status).toBe(201);
    expect(report.rescued).toBe(2);
    expect(report.removed.blobs).toBe(0);
    expect(await status('/v2/app/manifests/raced', 'GET')).toBe(200);
    for (const digest of [layer.digest, config.digest]) {
      expect(await stored(digest)).toBe(true);
      expect(await status(`/v2/app/blobs/${digest}`, 'GET')).toBe(200);
    }
  });

  it('refuses a manifest naming a blob whose bytes are gone though its link is still there', async () => {
    // The state a push meets while garbage collection has set a blob's bytes aside: the link is read,
    // the bytes are not there. The manifest must be refused rather than commit a dangling reference.
    const layer = await pushBlob(api, 'app', randomContent(400));
    const { hex } = parseDigest(layer.digest);
    await backend.storage.delete(`/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`);
    expect(await status(`/v2/app/blobs/${layer.digest}`)).toBe(200);
    const response = await putManifest(api, 'app', 'late', {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, ...layer },
      layers: [],
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe(
      'MANIFEST_BLOB_UNKNOWN',
    );
  });
});

function sizes(image: { manifest: Record<string, unknown> }): number {
  const manifest = image.manifest as { config: { size: number }; layers: { size: number }[] };
  return manifest.config.size + manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
}

describe('garbage collection after an abandoned run (filesystem driver)', () => {
  it('puts back the blobs an abandoned run had set aside, judges them again, and removes its state', async () => {
    const root = await mkdtemp(join(tmpdir(), 'gc-abandoned-'));
    try {
      const storage = new FilesystemDriver(root);
      const blobs = new BlobStore(storage);
      const content = randomContent(64);
      const digest = parseDigest(sha256(content));
      const aside = `/gc/runs/crashed/removing/sha256-${digest.hex}`;
      await storage.putContent(aside, content);
      await storage.putContent('/gc/runs/crashed/state.json', encode('{}'));
      await storage.putContent('/gc/runs/recent/state.json', encode('{}'));
      const old = new Date(Date.now() - 7 * 3_600_000);
      for (const file of [aside, '/gc/runs/crashed/state.json']) await utimes(join(root, file), old, old);

      // A push took the blob while the run had it aside: the run's put-back never came.
      await blobs.markUsed([digest]);
      const unused = randomContent(32);
      const unusedDigest = parseDigest(sha256(unused));
      const unusedAside = `/gc/runs/crashed/removing/sha256-${unusedDigest.hex}`;
      await storage.putContent(unusedAside, unused);
      await utimes(join(root, unusedAside), old, old);

      const metadata = new StorageBackedMetadataStore(storage);
      const result = await collectGarbage(
        { blobs, metadata, log: silentLogger },
        { ...DEFAULTS, graceMs: 3_600_000 },
      );
      expect(result.done).toBe(true);
      expect(await blobs.getContent(digest)).toEqual(content);
      // Put back too, then judged again as any blob: unused for longer than the grace period, it goes.
      expect(await blobs.size(unusedDigest)).toBeUndefined();
      expect(await storage.list('/gc/runs')).toEqual(['/gc/runs/recent']);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
