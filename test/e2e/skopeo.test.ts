// skopeo 1.9 against the registry under test (E2E_REGISTRY; see harness/registry.ts). skopeo copies OCI
// layouts with --preserve-digests, so the registry must hold the source's manifest bytes exactly.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Skopeo } from './harness/clients.js';
import { verifyLayoutBlobs, type ImageInfo } from './harness/images.js';
import { sha256 } from './harness/registry.js';
import { expectManifestDigest, expectMounted, setupSuite } from './harness/suite.js';

function allDigests(image: ImageInfo): string[] {
  return [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)];
}

async function layoutRefDigest(layout: string): Promise<string | undefined> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  return index.manifests[0]?.digest;
}

describe('skopeo', () => {
  const ctx = setupSuite('skopeo');
  let skopeo: Skopeo | undefined;
  const tool = (): Skopeo => {
    if (skopeo === undefined) throw new Error('skopeo was not set up');
    return skopeo;
  };

  beforeAll(async () => {
    skopeo = await Skopeo.create();
  });
  afterAll(async () => {
    await skopeo?.dispose();
  });

  it('pushes the multi-layer image (cold) and the registry serves the exact source manifest bytes', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    await tool().clearBlobCache();
    const mark = registry.mark();
    await timings.time('push multi-layer image (100 MiB layer)', () =>
      tool().copy(`oci:${image.layout}:${image.tag}`, `docker://${registry.host}/skopeo/multi:v1`),
    );
    expect(registry.mountsSince(mark, 'skopeo/multi'), 'a cold push tries no mount').toEqual([]);
    expect(registry.uploadedBytesSince(mark, 'skopeo/multi')).toBeGreaterThanOrEqual(images.bigFileBytes);
    await expectManifestDigest(registry, 'skopeo/multi', 'v1', image.manifest.digest);
    const raw = await tool().inspectRaw(`docker://${registry.host}/skopeo/multi:v1`);
    expect(sha256(raw), 'sha256 of skopeo inspect --raw').toBe(image.manifest.digest);
  });

  it('pulls the multi-layer image back with identical blobs', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    const dest = join(tool().dir, 'pulled-multi');
    await timings.time('pull multi-layer image', () =>
      tool().copy(`docker://${registry.host}/skopeo/multi:v1`, `oci:${dest}:v1`),
    );
    expect(await layoutRefDigest(dest)).toBe(image.manifest.digest);
    expect((await verifyLayoutBlobs(dest)).sort()).toEqual(allDigests(image).sort());
  });

  it('copies the multi-arch index with --all, both ways', async () => {
    const { registry, images, timings } = ctx;
    const index = images.multiArch;
    await timings.time('push multi-arch index (--all)', () =>
      tool().copy(`oci:${index.layout}:${index.tag}`, `docker://${registry.host}/skopeo/multi-arch:v1`, {
        all: true,
      }),
    );
    await expectManifestDigest(registry, 'skopeo/multi-arch', 'v1', index.index.digest);
    for (const image of index.images) {
      await expectManifestDigest(registry, 'skopeo/multi-arch', image.manifest.digest, image.manifest.digest);
    }
    const dest = join(tool().dir, 'pulled-multi-arch');
    await timings.time('pull multi-arch index (--all)', () =>
      tool().copy(`docker://${registry.host}/skopeo/multi-arch:v1`, `oci:${dest}:v1`, { all: true }),
    );
    expect(await layoutRefDigest(dest)).toBe(index.index.digest);
    expect((await verifyLayoutBlobs(dest)).sort()).toEqual(
      [index.index.digest, ...index.images.flatMap(allDigests)].sort(),
    );
  });

  it('mounts the layers from another repository when its blob-info cache knows them', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    // The cache is warm from the push and pull of skopeo/multi above.
    const mark = registry.mark();
    await timings.time('push multi-layer image to a second repository (mount)', () =>
      tool().copy(`oci:${image.layout}:${image.tag}`, `docker://${registry.host}/skopeo/multi-copy:v1`),
    );
    expectMounted(
      registry,
      mark,
      'skopeo/multi-copy',
      'skopeo/multi',
      image.layers.map((l) => l.digest),
    );
    await expectManifestDigest(registry, 'skopeo/multi-copy', 'v1', image.manifest.digest);
  });

  it('deletes a manifest (skopeo delete); pulls then fail, the other repository is untouched', async () => {
    const { registry, images } = ctx;
    const image = images.multiLayer;
    await tool().delete(`docker://${registry.host}/skopeo/multi-copy:v1`);
    expect((await registry.getManifest('skopeo/multi-copy', image.manifest.digest, 'HEAD')).status).toBe(404);
    expect((await registry.getManifest('skopeo/multi-copy', 'v1')).status).toBe(404);
    await expect(
      tool().copy(`docker://${registry.host}/skopeo/multi-copy:v1`, `oci:${join(tool().dir, 'deleted')}:v1`),
    ).rejects.toThrow(/manifest unknown|not found|404/i);
    await expectManifestDigest(registry, 'skopeo/multi', 'v1', image.manifest.digest);
  });
});
