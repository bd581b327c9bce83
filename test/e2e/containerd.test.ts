// containerd 1.6 / ctr (a containerd per suite) against the registry under test. ctr imports the OCI layout's
// blobs unchanged and pushes them as they are, so the registry must hold the source's manifest and index
// bytes exactly. Each pull goes to a fresh namespace; content is not shared between namespaces (see
// harness/clients.ts), so a pull really downloads every blob.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Containerd } from './harness/clients.js';
import type { ImageInfo } from './harness/images.js';
import { expectManifestDigest, expectMounted, setupSuite } from './harness/suite.js';

function allDigests(image: ImageInfo): string[] {
  return [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)];
}

describe('containerd', () => {
  let containerd: Containerd | undefined;
  const ctx = setupSuite('containerd', async () =>
    containerd === undefined ? '' : `--- containerd log (tail) ---\n${await containerd.logTail()}`,
  );
  const daemon = (): Containerd => {
    if (containerd === undefined) throw new Error('containerd was not started');
    return containerd;
  };

  beforeAll(async () => {
    containerd = await ctx.timings.time('start containerd', () => Containerd.start());
  });
  afterAll(async () => {
    await containerd?.stop();
  });

  it('pushes the multi-layer image and the registry serves the exact source manifest bytes', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    await timings.time('ctr import multi-layer layout', () =>
      daemon().importLayout('push', image.layout, `${registry.host}/ctr/multi`),
    );
    const mark = registry.mark();
    await timings.time('push multi-layer image (100 MiB layer)', () =>
      daemon().push('push', `${registry.host}/ctr/multi:v1`),
    );
    expect(registry.mountsSince(mark, 'ctr/multi'), 'a first push tries no mount').toEqual([]);
    expect(registry.uploadedBytesSince(mark, 'ctr/multi')).toBeGreaterThanOrEqual(images.bigFileBytes);
    await expectManifestDigest(registry, 'ctr/multi', 'v1', image.manifest.digest);
  });

  it('pulls the multi-layer image into a fresh namespace with identical blobs', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    const ref = `${registry.host}/ctr/multi:v1`;
    const mark = registry.mark();
    await timings.time('pull (and unpack) multi-layer image', () => daemon().pull('pull', ref));
    expect(registry.downloadedBlobBytesSince(mark, 'ctr/multi')).toBeGreaterThanOrEqual(images.bigFileBytes);
    expect((await daemon().target('pull', ref)).digest).toBe(image.manifest.digest);
    for (const digest of allDigests(image)) expect(await daemon().contentDigest('pull', digest)).toBe(digest);
  });

  it('pushes the multi-arch index and pulls all platforms back', async () => {
    const { registry, images, timings } = ctx;
    const index = images.multiArch;
    const ref = `${registry.host}/ctr/multi-arch:v1`;
    await daemon().importLayout('push', index.layout, `${registry.host}/ctr/multi-arch`, true);
    await timings.time('push multi-arch index', () => daemon().push('push', ref));
    await expectManifestDigest(registry, 'ctr/multi-arch', 'v1', index.index.digest);
    for (const image of index.images) {
      await expectManifestDigest(registry, 'ctr/multi-arch', image.manifest.digest, image.manifest.digest);
    }
    await timings.time('pull multi-arch index (--all-platforms)', () =>
      daemon().pull('pull-index', ref, true),
    );
    expect(await daemon().target('pull-index', ref)).toEqual({
      mediaType: index.index.mediaType,
      digest: index.index.digest,
    });
    for (const digest of [index.index.digest, ...index.images.flatMap(allDigests)]) {
      expect(await daemon().contentDigest('pull-index', digest)).toBe(digest);
    }
  });

  it('mounts the layers from the repository it pulled them from', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    const copy = `${registry.host}/ctr/multi-copy:v1`;
    await daemon().tag('pull', `${registry.host}/ctr/multi:v1`, copy);
    const mark = registry.mark();
    await timings.time('push multi-layer image to a second repository (mount)', () =>
      daemon().push('pull', copy),
    );
    expectMounted(
      registry,
      mark,
      'ctr/multi-copy',
      'ctr/multi',
      image.layers.map((l) => l.digest),
    );
    await expectManifestDigest(registry, 'ctr/multi-copy', 'v1', image.manifest.digest);
  });

  it('cannot pull a manifest after it is deleted', async () => {
    const { registry, images } = ctx;
    const image = images.multiLayer;
    expect(await registry.deleteManifest('ctr/multi-copy', image.manifest.digest)).toBe(202);
    const pull = await daemon().pull('after-delete', `${registry.host}/ctr/multi-copy:v1`, false, true);
    expect(pull.code, 'ctr pull of a deleted manifest').not.toBe(0);
    expect(pull.stderr).toMatch(/not found|manifest unknown/i);
  });
});
