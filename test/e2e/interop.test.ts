// Interoperability through the registry under test: what one client pushes, another pulls intact.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Containerd, DockerDaemon, Podman, Skopeo } from './harness/clients.js';
import { blobPath, diffIdOfGzip, verifyLayoutBlobs } from './harness/images.js';
import { expectManifestDigest, setupSuite } from './harness/suite.js';

interface ManifestJson {
  config: { digest: string };
  layers: { digest: string }[];
  manifests?: { digest: string }[];
}

describe('interop', () => {
  let skopeo: Skopeo | undefined;
  let podman: Podman | undefined;
  let docker: DockerDaemon | undefined;
  let containerd: Containerd | undefined;
  const ctx = setupSuite('interop', async () => {
    const logs: string[] = [];
    if (docker !== undefined) logs.push(`--- dockerd log (tail) ---\n${await docker.logTail()}`);
    if (containerd !== undefined) logs.push(`--- containerd log (tail) ---\n${await containerd.logTail()}`);
    return logs.join('\n');
  });
  const clients = (): { skopeo: Skopeo; podman: Podman; docker: DockerDaemon; containerd: Containerd } => {
    if (skopeo === undefined || podman === undefined || docker === undefined || containerd === undefined) {
      throw new Error('the clients were not set up');
    }
    return { skopeo, podman, docker, containerd };
  };

  beforeAll(async () => {
    skopeo = await Skopeo.create();
    podman = await Podman.create();
    docker = await ctx.timings.time('start dockerd', () => DockerDaemon.start());
    containerd = await ctx.timings.time('start containerd', () => Containerd.start());
  });
  afterAll(async () => {
    await containerd?.stop();
    await docker?.stop();
    await podman?.dispose();
    await skopeo?.dispose();
  });

  it('an image pushed by docker is pulled intact by skopeo and containerd', async () => {
    const { registry, images, timings } = ctx;
    const c = clients();
    const image = images.multiLayer;
    const archive = join(c.skopeo.dir, 'multi-layer.docker.tar');
    await c.skopeo.copy(`oci:${image.layout}:${image.tag}`, `docker-archive:${archive}:e2e/multi:v1`, {
      preserveDigests: false,
    });
    await c.docker.load(archive);
    const ref = `${registry.host}/interop/from-docker:v1`;
    await c.docker.tag('e2e/multi:v1', ref);
    const { digest } = await timings.time('docker push multi-layer image', () => c.docker.push(ref));
    const manifest = (await expectManifestDigest(
      registry,
      'interop/from-docker',
      'v1',
      digest,
    )) as unknown as ManifestJson;

    const dest = join(c.skopeo.dir, 'from-docker');
    await timings.time('skopeo pull of the docker-pushed image', () =>
      c.skopeo.copy(`docker://${ref}`, `oci:${dest}:v1`),
    );
    const index = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as ManifestJson;
    expect(index.manifests?.[0]?.digest).toBe(digest);
    expect((await verifyLayoutBlobs(dest)).sort()).toEqual(
      [digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)].sort(),
    );
    expect(manifest.config.digest).toBe(image.config.digest);
    const diffIds: string[] = [];
    for (const layer of manifest.layers) diffIds.push(await diffIdOfGzip(blobPath(dest, layer.digest)));
    expect(diffIds).toEqual(image.layers.map((l) => l.diffId));

    await timings.time('ctr pull of the docker-pushed image', () => c.containerd.pull('from-docker', ref));
    expect((await c.containerd.target('from-docker', ref)).digest).toBe(digest);
    for (const blob of [digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
      expect(await c.containerd.contentDigest('from-docker', blob)).toBe(blob);
    }
  });

  it('an image pushed by containerd is pulled intact by podman', async () => {
    const { registry, images, timings } = ctx;
    const c = clients();
    const image = images.small;
    const ref = `${registry.host}/interop/from-ctr:v1`;
    await c.containerd.importLayout('interop', image.layout, `${registry.host}/interop/from-ctr`);
    await timings.time('ctr push small image', () => c.containerd.push('interop', ref));
    await expectManifestDigest(registry, 'interop/from-ctr', 'v1', image.manifest.digest);
    await timings.time('podman pull of the ctr-pushed image', () => c.podman.pull(ref));
    const pulled = await c.podman.inspect(ref);
    expect(pulled.Digest).toBe(image.manifest.digest);
    expect(`sha256:${pulled.Id}`).toBe(image.config.digest);
    expect(pulled.RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
  });

  it('an image pushed by podman is pulled intact by docker', async () => {
    const { registry, images, timings } = ctx;
    const c = clients();
    const image = images.small;
    const ref = `${registry.host}/interop/from-podman:v1`;
    await c.podman.loadOci(image.layout, image.tag, ref);
    const digest = await timings.time('podman push small image', () => c.podman.push(ref, `docker://${ref}`));
    await expectManifestDigest(registry, 'interop/from-podman', 'v1', digest);
    await timings.time('docker pull of the podman-pushed image', () => c.docker.pull(ref));
    const pulled = await c.docker.inspect(ref);
    expect(pulled.Id).toBe(image.config.digest);
    expect(pulled.RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
    expect(pulled.RepoDigests).toContain(`${registry.host}/interop/from-podman@${digest}`);
  });

  it('an index pushed by podman is pulled by containerd (all platforms) and docker (arm64)', async () => {
    const { registry, images, timings } = ctx;
    const c = clients();
    const source = images.multiArch;
    const ref = `${registry.host}/interop/index-from-podman:v1`;
    const digest = await timings.time('podman manifest push --all', () =>
      c.podman.pushManifestList(
        'interop-list',
        source.images.map((image) => `oci:${image.layout}:${image.tag}`),
        `docker://${ref}`,
      ),
    );
    await expectManifestDigest(registry, 'interop/index-from-podman', 'v1', digest);

    await timings.time('ctr pull --all-platforms of the podman-pushed index', () =>
      c.containerd.pull('index-from-podman', ref, true),
    );
    expect((await c.containerd.target('index-from-podman', ref)).digest).toBe(digest);
    for (const image of source.images) {
      for (const blob of [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)]) {
        expect(await c.containerd.contentDigest('index-from-podman', blob)).toBe(blob);
      }
    }

    const arm64 = source.images.find((image) => image.platform.architecture === 'arm64');
    if (arm64 === undefined) throw new Error('no arm64 image');
    await timings.time('docker pull arm64 of the podman-pushed index', () =>
      c.docker.pull(ref, ['--platform', 'linux/arm64']),
    );
    const pulled = await c.docker.inspect(ref);
    expect(pulled.Architecture).toBe('arm64');
    expect(pulled.Id).toBe(arm64.config.digest);
    expect(pulled.RootFS.Layers).toEqual(arm64.layers.map((l) => l.diffId));
  });
});
