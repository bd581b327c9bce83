// podman 4.3 (own --root/--runroot/--tmpdir, vfs storage, isolated blob-info cache) against the registry under
// test. podman recompresses layers on push, so its manifest differs from the source layout's; the checks are
// that the registry serves exactly the digest podman reports, the config blob is the source's, and every
// layer blob in the registry decompresses to the source's diff ID.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Podman } from './harness/clients.js';
import { expectManifestDigest, expectMounted, expectSameImageContent, setupSuite } from './harness/suite.js';

interface IndexJson {
  manifests: { digest: string; platform?: { architecture: string; os: string } }[];
}

describe('podman', () => {
  const ctx = setupSuite('podman');
  let podman: Podman | undefined;
  const tool = (): Podman => {
    if (podman === undefined) throw new Error('podman was not set up');
    return podman;
  };
  let pushedDigest = '';

  beforeAll(async () => {
    podman = await Podman.create();
  });
  afterAll(async () => {
    await podman?.dispose();
  });

  it('pushes the multi-layer image (cold); the registry serves the digest podman reports', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    const name = `${registry.host}/podman/multi:v1`;
    await timings.time('load multi-layer image from the OCI layout', () =>
      tool().loadOci(image.layout, image.tag, name),
    );
    const mark = registry.mark();
    pushedDigest = await timings.time('push multi-layer image (100 MiB layer)', () =>
      tool().push(name, `docker://${name}`),
    );
    expect(registry.mountsSince(mark, 'podman/multi'), 'a cold push tries no mount').toEqual([]);
    const manifest = await expectManifestDigest(registry, 'podman/multi', 'v1', pushedDigest);
    await expectSameImageContent(registry, 'podman/multi', manifest, image);
  });

  it('pulls the multi-layer image back into empty storage', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    const ref = `${registry.host}/podman/multi:v1`;
    await tool().removeAllImages();
    const mark = registry.mark();
    await timings.time('pull multi-layer image', () => tool().pull(ref));
    expect(registry.downloadedBlobBytesSince(mark, 'podman/multi')).toBeGreaterThanOrEqual(
      images.bigFileBytes,
    );
    const pulled = await tool().inspect(ref);
    expect(`sha256:${pulled.Id}`).toBe(image.config.digest);
    expect(pulled.Digest).toBe(pushedDigest);
    expect(pulled.RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
  });

  it('pushes the multi-arch index (podman manifest push --all) and pulls the arm64 image from it', async () => {
    const { registry, images, timings } = ctx;
    const index = images.multiArch;
    const digest = await timings.time('push multi-arch index (manifest push --all)', () =>
      tool().pushManifestList(
        'e2e-multi-arch',
        index.images.map((image) => `oci:${image.layout}:${image.tag}`),
        `docker://${registry.host}/podman/multi-arch:v1`,
      ),
    );
    const pushed = (await expectManifestDigest(
      registry,
      'podman/multi-arch',
      'v1',
      digest,
    )) as unknown as IndexJson;
    // podman writes its own index, but the per-platform manifests are the source's, byte for byte.
    expect(pushed.manifests.map((m) => [m.digest, m.platform?.architecture])).toEqual(
      index.images.map((image) => [image.manifest.digest, image.platform.architecture]),
    );
    for (const image of index.images) {
      await expectManifestDigest(registry, 'podman/multi-arch', image.manifest.digest, image.manifest.digest);
    }
    const arm64 = index.images.find((image) => image.platform.architecture === 'arm64');
    if (arm64 === undefined) throw new Error('no arm64 image');
    await timings.time('pull arm64 image from the index', () =>
      tool().pull(`${registry.host}/podman/multi-arch:v1`, ['--arch', 'arm64']),
    );
    const pulled = await tool().inspect(`${registry.host}/podman/multi-arch:v1`);
    expect(pulled.Architecture).toBe('arm64');
    expect(`sha256:${pulled.Id}`).toBe(arm64.config.digest);
    expect(pulled.RootFS.Layers).toEqual(arm64.layers.map((l) => l.diffId));
  });

  it('mounts the layers from the first repository when pushing to a second one', async () => {
    const { registry, timings } = ctx;
    const source = `${registry.host}/podman/multi:v1`;
    const mark = registry.mark();
    const digest = await timings.time('push multi-layer image to a second repository (mount)', () =>
      tool().push(source, `docker://${registry.host}/podman/multi-copy:v1`),
    );
    const manifest = (await expectManifestDigest(registry, 'podman/multi-copy', 'v1', digest)) as unknown as {
      layers: { digest: string }[];
    };
    expectMounted(
      registry,
      mark,
      'podman/multi-copy',
      'podman/multi',
      manifest.layers.map((l) => l.digest),
    );
  });

  it('cannot pull a manifest after it is deleted', async () => {
    const { registry } = ctx;
    const head = await registry.getManifest('podman/multi-copy', 'v1', 'HEAD');
    expect(head.status).toBe(200);
    expect(await registry.deleteManifest('podman/multi-copy', head.headerDigest)).toBe(202);
    await tool().removeAllImages();
    const pull = await tool().pull(`${registry.host}/podman/multi-copy:v1`, [], true);
    expect(pull.code, 'podman pull of a deleted manifest').not.toBe(0);
    expect(pull.stderr).toMatch(/manifest unknown|not found/i);
    const byDigest = await tool().pull(`${registry.host}/podman/multi-copy@${head.headerDigest}`, [], true);
    expect(byDigest.code, 'podman pull of a deleted manifest by digest').not.toBe(0);
  });
});
