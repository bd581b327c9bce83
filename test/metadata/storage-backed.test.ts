import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StorageBackedMetadataStore } from '../../functions/metadata/storage-backed.js';
import { FilesystemDriver } from '../../functions/storage/filesystem.js';
import { MemoryDriver } from '../../functions/storage/memory.js';
import { describeMetadataStore } from './store-suite.js';

async function temporaryRoot(): Promise<{ root: string; remove: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'metadata-store-'));
  return { root, remove: () => rm(root, { recursive: true, force: true }) };
}

describeMetadataStore('storage-backed over the memory driver', () =>
  Promise.resolve({
    store: new StorageBackedMetadataStore(new MemoryDriver()),
    cleanup: () => Promise.resolve(),
  }),
);

describeMetadataStore('storage-backed over the filesystem driver', async () => {
  const { root, remove } = await temporaryRoot();
  return { store: new StorageBackedMetadataStore(new FilesystemDriver(root)), cleanup: remove };
});

describe('storage-backed metadata store sharing a filesystem root', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  });

  it('shows a second instance (another process) everything the first wrote', async () => {
    const { root, remove } = await temporaryRoot();
    cleanups.push(remove);
    const writer = new StorageBackedMetadataStore(new FilesystemDriver(root));
    const reader = new StorageBackedMetadataStore(new FilesystemDriver(root));

    const link = { digest: `sha256:${'1'.repeat(64)}`, size: 10 };
    const subject = {
      digest: `sha256:${'2'.repeat(64)}`,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      size: 500,
    };
    const referrer = {
      digest: `sha256:${'3'.repeat(64)}`,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      size: 300,
      subject: subject.digest,
      artifactType: 'application/vnd.example.sbom',
      annotations: { 'org.example': 'yes' },
    };
    const session = {
      id: '5a3c0f56-2b1e-4d7a-9c61-8f0e2d4b7a19',
      repository: 'shared/app',
      offset: 0,
      sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      startedAt: new Date().toISOString(),
      expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    };
    await writer.linkBlob('shared/app', link);
    await writer.putManifest('shared/app', subject, ['latest', 'v1']);
    await writer.putManifest('shared/app', referrer, []);
    await writer.linkBlob('shared/app/nested', link);
    await writer.createUpload(session);

    expect(await reader.getBlobLink('shared/app', link.digest)).toEqual(link);
    expect(await reader.getManifest('shared/app', subject.digest)).toEqual(subject);
    expect(await reader.getTag('shared/app', 'v1')).toEqual(subject);
    expect(await reader.listTags('shared/app', { limit: 10 })).toEqual({
      items: ['latest', 'v1'],
      more: false,
    });
    expect(await reader.listReferrers('shared/app', subject.digest)).toEqual([referrer]);
    expect(await reader.listRepositories({ limit: 10 })).toEqual({
      items: ['shared/app', 'shared/app/nested'],
      more: false,
    });
    expect(await reader.getUpload('shared/app', session.id)).toEqual(session);

    // Changes go both ways: the second instance continues the upload and deletes the manifest.
    const moved = { ...session, offset: 5 };
    expect(await reader.updateUpload(moved, 0)).toBe(true);
    expect(await writer.updateUpload({ ...session, offset: 9 }, 0)).toBe(false);
    expect(await writer.getUpload('shared/app', session.id)).toEqual(moved);
    expect(await reader.deleteManifest('shared/app', subject.digest)).toEqual(['latest', 'v1']);
    expect(await writer.getTag('shared/app', 'latest')).toBeUndefined();
    expect(await writer.listTags('shared/app', { limit: 10 })).toEqual({ items: [], more: false });
  });
});
