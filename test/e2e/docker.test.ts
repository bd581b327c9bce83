// docker 20.10 (a dockerd per suite, vfs storage) against the registry under test. dockerd has no base images
// here: the source image is loaded from a docker-archive that skopeo makes from the OCI layout. docker
// recompresses layers on push, so the checks are that the registry serves exactly the digest docker prints,
// the config blob is the source's, and every layer blob decompresses to the source's diff ID.
//
// docker 20.10 cannot push a multi-arch index (only `docker manifest push` of lists of images already in a
// registry, an experimental CLI feature), so here skopeo pushes the index and docker pulls from it.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerDaemon, Skopeo } from './harness/clients.js';
import { MEDIA } from './harness/images.js';
import { expectManifestDigest, expectMounted, expectSameImageContent, setupSuite } from './harness/suite.js';

describe('docker', () => {
  let docker: DockerDaemon | undefined;
  let skopeo: Skopeo | undefined;
  const ctx = setupSuite('docker', async () =>
    docker === undefined ? '' : `--- dockerd log (tail) ---\n${await docker.logTail()}`,
  );
  const daemon = (): DockerDaemon => {
    if (docker === undefined) throw new Error('dockerd was not started');
    return docker;
  };
  let pushedDigest = '';

  beforeAll(async () => {
    skopeo = await Skopeo.create();
    docker = await ctx.timings.time('start dockerd', () => DockerDaemon.start());
  });
  afterAll(async () => {
    await docker?.stop();
    await skopeo?.dispose();
  });

  it('pushes the multi-layer image; the registry serves the digest docker prints', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    const tool = skopeo;
    if (tool === undefined) throw new Error('skopeo was not set up');
    const archive = join(tool.dir, 'multi-layer.docker.tar');
    await timings.time('make docker-archive (skopeo)', () =>
      tool.copy(`oci:${image.layout}:${image.tag}`, `docker-archive:${archive}:e2e/multi:v1`, {
        preserveDigests: false,
      }),
    );
    await timings.time('docker load multi-layer image', () => daemon().load(archive));
    const ref = `${registry.host}/docker/multi:v1`;
    await daemon().tag('e2e/multi:v1', ref);
    const mark = registry.mark();
    const pushed = await timings.time('push multi-layer image (100 MiB layer)', () => daemon().push(ref));
    pushedDigest = pushed.digest;
    expect(registry.mountsSince(mark, 'docker/multi'), 'a first push tries no mount').toEqual([]);
    const manifest = await expectManifestDigest(registry, 'docker/multi', 'v1', pushed.digest);
    expect(manifest.mediaType).toBe(MEDIA.dockerManifest);
    expect((await registry.getManifest('docker/multi', 'v1')).body.length).toBe(pushed.size);
    await expectSameImageContent(registry, 'docker/multi', manifest, image);
  });

  it('pulls the multi-layer image back after removing it locally', async () => {
    const { registry, images, timings } = ctx;
    const image = images.multiLayer;
    const ref = `${registry.host}/docker/multi:v1`;
    await daemon().removeImages('e2e/multi:v1', ref);
    const mark = registry.mark();
    await timings.time('pull multi-layer image', () => daemon().pull(ref));
    expect(registry.downloadedBlobBytesSince(mark, 'docker/multi')).toBeGreaterThanOrEqual(
      images.bigFileBytes,
    );
    const pulled = await daemon().inspect(ref);
    expect(pulled.Id).toBe(image.config.digest);
    expect(pulled.RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
    expect(pulled.RepoDigests).toContain(`${registry.host}/docker/multi@${pushedDigest}`);
  });

  it('pulls the amd64 and arm64 images from a multi-arch index (pushed by skopeo)', async () => {
    const { registry, images, timings } = ctx;
    const index = images.multiArch;
    if (skopeo === undefined) throw new Error('skopeo was not set up');
    const ref = `${registry.host}/docker/multi-arch:v1`;
    await skopeo.copy(`oci:${index.layout}:${index.tag}`, `docker://${ref}`, { all: true });
    await expectManifestDigest(registry, 'docker/multi-arch', 'v1', index.index.digest);
    for (const image of index.images) {
      const arch = image.platform.architecture;
      await timings.time(`pull ${arch} image from the index`, () =>
        daemon().pull(ref, ['--platform', `linux/${arch}`]),
      );
      const pulled = await daemon().inspect(ref);
      expect(pulled.Architecture).toBe(arch);
      expect(pulled.Id).toBe(image.config.digest);
      expect(pulled.RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
      expect(pulled.RepoDigests).toContain(`${registry.host}/docker/multi-arch@${index.index.digest}`);
      await daemon().removeImages(ref);
    }
  });

  it('mounts the layers from the repository it pulled them from', async () => {
    const { registry, timings } = ctx;
    const copy = `${registry.host}/docker/multi-copy:v1`;
    await daemon().tag(`${registry.host}/docker/multi:v1`, copy);
    const mark = registry.mark();
    const pushed = await timings.time('push multi-layer image to a second repository (mount)', () =>
      daemon().push(copy),
    );
    expect(pushed.digest, 'same manifest in the second repository').toBe(pushedDigest);
    const manifest = (await expectManifestDigest(
      registry,
      'docker/multi-copy',
      'v1',
      pushed.digest,
    )) as unknown as {
      layers: { digest: string }[];
    };
    expectMounted(
      registry,
      mark,
      'docker/multi-copy',
      'docker/multi',
      manifest.layers.map((l) => l.digest),
    );
  });

  it('cannot pull a manifest after it is deleted', async () => {
    const { registry } = ctx;
    const copy = `${registry.host}/docker/multi-copy:v1`;
    expect(await registry.deleteManifest('docker/multi-copy', pushedDigest)).toBe(202);
    await daemon().removeImages(copy);
    const pull = await daemon().pull(copy, [], true);
    expect(pull.code, 'docker pull of a deleted manifest').not.toBe(0);
    expect(pull.stderr).toMatch(/manifest unknown|not found/i);
  });
});
