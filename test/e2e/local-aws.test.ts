// The AWS deployment's shape on one machine (node dist/local-aws.mjs: a local API Gateway front with API
// Gateway's and Lambda's limits -> the real Lambda handler -> a one-node Ceph RGW as S3, which verifies
// presigned URLs, + DynamoDB Local) against the real clients, through the recording proxy. Blob GETs answer
// 307 to a presigned S3 URL that the clients follow, so no blob bytes go through the Lambda.
//
// A request whose Lambda event exceeds 6 MB (binary bodies are base64-encoded: about 4.4 MB of raw body) is
// refused with API Gateway's 413 before the function runs, and stock clients send a whole layer in one
// request (skopeo, podman, docker: one PATCH; containerd: one PUT). So the images here keep every layer
// under that limit (random data of 1, 2 and 3 MiB), and an image with an 8 MiB layer must fail fast with the
// 413 in the client's error, leaving no tag behind.
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Containerd, DockerDaemon, Podman, Skopeo } from './harness/clients.js';
import { removeTempDir, run, Timings } from './harness/exec.js';
import {
  verifyLayoutBlobs,
  writeRandomImage,
  writeRandomIndex,
  type ImageInfo,
  type IndexInfo,
} from './harness/images.js';
import {
  allDigests,
  ESBUILD_ARGS,
  expectBlobRedirects,
  failureOf,
  layerDigests,
  layoutRefDigest,
  MIB,
} from './harness/local-aws.js';
import { REPO_ROOT, RegistryUnderTest, sha256 } from './harness/registry.js';
import { expectManifestDigest, expectMounted, expectSameImageContent } from './harness/suite.js';

/** A push that API Gateway refuses must fail well before any client-side or integration timeout. */
const REFUSED_PUSH_MAX_MS = 15_000;

describe('local AWS deployment (API Gateway -> Lambda -> Ceph RGW + DynamoDB Local)', () => {
  const timings = new Timings('local-aws');
  let registry: RegistryUnderTest | undefined;
  let skopeo: Skopeo | undefined;
  let podman: Podman | undefined;
  let docker: DockerDaemon | undefined;
  let containerd: Containerd | undefined;
  let imagesDir: string | undefined;
  let image: ImageInfo;
  let index: IndexInfo;
  let tooBig: ImageInfo;
  let stopped = false;

  const reg = (): RegistryUnderTest => {
    if (registry === undefined) throw new Error('the local AWS registry was not started');
    return registry;
  };
  const clients = (): { skopeo: Skopeo; podman: Podman; docker: DockerDaemon; containerd: Containerd } => {
    if (skopeo === undefined || podman === undefined || docker === undefined || containerd === undefined) {
      throw new Error('the clients were not set up');
    }
    return { skopeo, podman, docker, containerd };
  };

  beforeAll(async () => {
    await timings.time('build dist/local-aws.mjs (esbuild)', () =>
      run('npx', ESBUILD_ARGS, { cwd: REPO_ROOT, timeoutMs: 120_000 }),
    );
    // Lowercase only: podman names an image loaded from an OCI layout after the layout's path.
    imagesDir = join(tmpdir(), `registry-e2e-local-aws-images-${randomBytes(6).toString('hex')}`);
    await mkdir(imagesDir);
    const dir = imagesDir;
    // The services start in parallel: Ceph and DynamoDB Local take most of the time.
    const [started, ctr, dockerd, sk, pm, built] = await Promise.allSettled([
      timings.time('start local AWS (Ceph RGW, DynamoDB Local), in parallel', () =>
        RegistryUnderTest.start('local-aws', { s3: 'rgw' }),
      ),
      timings.time('start containerd, in parallel', () => Containerd.start()),
      timings.time('start dockerd, in parallel', () => DockerDaemon.start()),
      Skopeo.create(),
      Podman.create(),
      timings.time('build test images, in parallel', async () => ({
        image: await writeRandomImage(join(dir, 'image'), 'local-aws-image', [1 * MIB, 2 * MIB, 3 * MIB]),
        index: await writeRandomIndex(join(dir, 'index'), 'local-aws-index', ['amd64', 'arm64'], [64 * 1024]),
        tooBig: await writeRandomImage(join(dir, 'too-big'), 'local-aws-too-big', [8 * MIB]),
      })),
    ]);
    if (started.status === 'fulfilled') registry = started.value;
    if (ctr.status === 'fulfilled') containerd = ctr.value;
    if (dockerd.status === 'fulfilled') docker = dockerd.value;
    if (sk.status === 'fulfilled') skopeo = sk.value;
    if (pm.status === 'fulfilled') podman = pm.value;
    if (built.status === 'fulfilled') ({ image, index, tooBig } = built.value);
    for (const result of [started, ctr, dockerd, sk, pm, built]) {
      if (result.status === 'rejected') throw result.reason;
    }
    console.log(`e2e [local-aws]: registry under test: ${reg().kind} at ${reg().url}`);
  });

  beforeEach(({ onTestFailed }) => {
    onTestFailed(async () => {
      const logs: string[] = [];
      if (registry !== undefined) logs.push(await registry.diagnostics());
      if (containerd !== undefined) logs.push(`--- containerd log (tail) ---\n${await containerd.logTail()}`);
      if (docker !== undefined) logs.push(`--- dockerd log (tail) ---\n${await docker.logTail()}`);
      console.error(`e2e [local-aws] failure diagnostics\n${logs.join('\n')}`);
    });
  });

  afterAll(async () => {
    const results = await Promise.allSettled([
      stopped ? Promise.resolve() : registry?.stop(),
      containerd?.stop(),
      docker?.stop(),
      skopeo?.dispose(),
      podman?.dispose(),
      removeTempDir(imagesDir),
    ]);
    console.log(timings.report());
    if (!stopped && registry !== undefined && registry.leftoverProcesses.length > 0) {
      throw new Error(
        `local-aws left processes running after SIGTERM (killed): ${JSON.stringify(registry.leftoverProcesses)}`,
      );
    }
    for (const result of results) if (result.status === 'rejected') throw result.reason;
  });

  it('skopeo pushes the 3-layer image; the registry serves the exact source manifest bytes', async () => {
    const { skopeo } = clients();
    const registry = reg();
    await skopeo.clearBlobCache();
    const mark = registry.mark();
    await timings.time('skopeo push 3-layer image (1+2+3 MiB)', () =>
      skopeo.copy(`oci:${image.layout}:${image.tag}`, `docker://${registry.host}/skopeo/image:v1`),
    );
    expect(registry.mountsSince(mark, 'skopeo/image'), 'a cold push tries no mount').toEqual([]);
    expect(registry.uploadedBytesSince(mark, 'skopeo/image')).toBeGreaterThanOrEqual(6 * MIB);
    await expectManifestDigest(registry, 'skopeo/image', 'v1', image.manifest.digest);
    const raw = await skopeo.inspectRaw(`docker://${registry.host}/skopeo/image:v1`);
    expect(sha256(raw), 'sha256 of skopeo inspect --raw').toBe(image.manifest.digest);
  });

  it('skopeo pulls it back with identical blobs, downloaded from S3 through 307 redirects', async () => {
    const { skopeo } = clients();
    const registry = reg();
    const dest = join(skopeo.dir, 'pulled-image');
    const mark = registry.mark();
    await timings.time('skopeo pull 3-layer image', () =>
      skopeo.copy(`docker://${registry.host}/skopeo/image:v1`, `oci:${dest}:v1`),
    );
    expect(await layoutRefDigest(dest)).toBe(image.manifest.digest);
    expect((await verifyLayoutBlobs(dest)).sort()).toEqual(allDigests(image).sort());
    const locations = await expectBlobRedirects(reg(), mark, 'skopeo/image', [
      image.config.digest,
      ...image.layers.map((l) => l.digest),
    ]);

    // The presigned URL serves the blob's bytes, and the S3 checks its signature.
    const layer = image.layers[2];
    if (layer === undefined) throw new Error('no third layer');
    const location = locations.get(layer.digest) ?? '';
    const res = await fetch(location, { signal: AbortSignal.timeout(30_000) });
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(res.status, `GET ${location}`).toBe(200);
    expect(sha256(bytes)).toBe(layer.digest);
    const url = new URL(location);
    const signature = url.searchParams.get('X-Amz-Signature') ?? '';
    url.searchParams.set(
      'X-Amz-Signature',
      `${signature.slice(0, -1)}${signature.endsWith('0') ? '1' : '0'}`,
    );
    const forged = await fetch(url, { signal: AbortSignal.timeout(30_000) });
    await forged.arrayBuffer();
    expect(forged.status, 'GET of the presigned URL with a wrong signature').toBe(403);
  });

  it('skopeo copies the multi-arch index with --all, both ways', async () => {
    const { skopeo } = clients();
    const registry = reg();
    await timings.time('skopeo push multi-arch index (--all)', () =>
      skopeo.copy(`oci:${index.layout}:${index.tag}`, `docker://${registry.host}/skopeo/index:v1`, {
        all: true,
      }),
    );
    await expectManifestDigest(registry, 'skopeo/index', 'v1', index.index.digest);
    for (const platform of index.images) {
      await expectManifestDigest(
        registry,
        'skopeo/index',
        platform.manifest.digest,
        platform.manifest.digest,
      );
    }
    const dest = join(skopeo.dir, 'pulled-index');
    const mark = registry.mark();
    await timings.time('skopeo pull multi-arch index (--all)', () =>
      skopeo.copy(`docker://${registry.host}/skopeo/index:v1`, `oci:${dest}:v1`, { all: true }),
    );
    expect(await layoutRefDigest(dest)).toBe(index.index.digest);
    expect((await verifyLayoutBlobs(dest)).sort()).toEqual(
      [index.index.digest, ...index.images.flatMap(allDigests)].sort(),
    );
    await expectBlobRedirects(
      reg(),
      mark,
      'skopeo/index',
      index.images.flatMap((i) => [i.config.digest, ...i.layers.map((l) => l.digest)]),
    );
  });

  it('skopeo mounts the layers into another repository (warm blob-info cache): 201', async () => {
    const { skopeo } = clients();
    const registry = reg();
    // The cache is warm from the push and pull of skopeo/image above.
    const mark = registry.mark();
    await timings.time('skopeo push to a second repository (mount)', () =>
      skopeo.copy(`oci:${image.layout}:${image.tag}`, `docker://${registry.host}/skopeo/image-copy:v1`),
    );
    expectMounted(
      registry,
      mark,
      'skopeo/image-copy',
      'skopeo/image',
      image.layers.map((l) => l.digest),
    );
    await expectManifestDigest(registry, 'skopeo/image-copy', 'v1', image.manifest.digest);
  });

  it('containerd pushes the image and pulls it back into a fresh namespace', async () => {
    const { containerd } = clients();
    const registry = reg();
    const ref = `${registry.host}/ctr/image:v1`;
    await containerd.importLayout('push', image.layout, `${registry.host}/ctr/image`);
    const mark = registry.mark();
    await timings.time('ctr push 3-layer image', () => containerd.push('push', ref));
    expect(registry.uploadedBytesSince(mark, 'ctr/image')).toBeGreaterThanOrEqual(6 * MIB);
    await expectManifestDigest(registry, 'ctr/image', 'v1', image.manifest.digest);

    const pullMark = registry.mark();
    await timings.time('ctr pull 3-layer image (fresh namespace)', () => containerd.pull('pull', ref));
    await expectBlobRedirects(reg(), pullMark, 'ctr/image', [
      image.config.digest,
      ...image.layers.map((l) => l.digest),
    ]);
    expect((await containerd.target('pull', ref)).digest).toBe(image.manifest.digest);
    for (const digest of allDigests(image))
      expect(await containerd.contentDigest('pull', digest)).toBe(digest);
  });

  it('containerd pulls the image skopeo pushed', async () => {
    const { containerd } = clients();
    const registry = reg();
    const ref = `${registry.host}/skopeo/image:v1`;
    const mark = registry.mark();
    await timings.time('ctr pull of the skopeo-pushed image', () => containerd.pull('from-skopeo', ref));
    await expectBlobRedirects(reg(), mark, 'skopeo/image', [
      image.config.digest,
      ...image.layers.map((l) => l.digest),
    ]);
    expect((await containerd.target('from-skopeo', ref)).digest).toBe(image.manifest.digest);
    for (const digest of allDigests(image)) {
      expect(await containerd.contentDigest('from-skopeo', digest)).toBe(digest);
    }
  });

  it('podman pushes the image and pulls it back into empty storage', async () => {
    const { podman } = clients();
    const registry = reg();
    const name = `${registry.host}/podman/image:v1`;
    await timings.time('podman load from the OCI layout', () =>
      podman.loadOci(image.layout, image.tag, name),
    );
    const digest = await timings.time('podman push 3-layer image', () =>
      podman.push(name, `docker://${name}`),
    );
    const manifest = await expectManifestDigest(registry, 'podman/image', 'v1', digest);
    await expectSameImageContent(registry, 'podman/image', manifest, image);

    await podman.removeAllImages();
    const mark = registry.mark();
    await timings.time('podman pull 3-layer image', () => podman.pull(name));
    // podman recompressed the layers: its manifest names other layer digests than the source's.
    await expectBlobRedirects(reg(), mark, 'podman/image', [image.config.digest, ...layerDigests(manifest)]);
    const pulled = await podman.inspect(name);
    expect(pulled.Digest).toBe(digest);
    expect(`sha256:${pulled.Id}`).toBe(image.config.digest);
    expect(pulled.RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
  });

  it('docker pushes the image and pulls it back after removing it locally', async () => {
    const { docker, skopeo } = clients();
    const registry = reg();
    const archive = join(skopeo.dir, 'image.docker.tar');
    await timings.time('make docker-archive (skopeo) and docker load', async () => {
      await skopeo.copy(`oci:${image.layout}:${image.tag}`, `docker-archive:${archive}:e2e/local-aws:v1`, {
        preserveDigests: false,
      });
      await docker.load(archive);
    });
    const ref = `${registry.host}/docker/image:v1`;
    await docker.tag('e2e/local-aws:v1', ref);
    const pushed = await timings.time('docker push 3-layer image', () => docker.push(ref));
    const manifest = await expectManifestDigest(registry, 'docker/image', 'v1', pushed.digest);
    await expectSameImageContent(registry, 'docker/image', manifest, image);

    await docker.removeImages('e2e/local-aws:v1', ref);
    const mark = registry.mark();
    await timings.time('docker pull 3-layer image', () => docker.pull(ref));
    // docker recompressed the layers: its manifest names other layer digests than the source's.
    await expectBlobRedirects(reg(), mark, 'docker/image', [image.config.digest, ...layerDigests(manifest)]);
    const pulled = await docker.inspect(ref);
    expect(pulled.Id).toBe(image.config.digest);
    expect(pulled.RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
    expect(pulled.RepoDigests).toContain(`${registry.host}/docker/image@${pushed.digest}`);
  });

  it('deletes a manifest by digest (HTTP DELETE): 202, then pulls fail; the source repository is untouched', async () => {
    const { skopeo } = clients();
    const registry = reg();
    expect(await registry.deleteManifest('skopeo/image-copy', image.manifest.digest)).toBe(202);
    expect((await registry.getManifest('skopeo/image-copy', image.manifest.digest, 'HEAD')).status).toBe(404);
    expect((await registry.getManifest('skopeo/image-copy', 'v1')).status).toBe(404);
    const { output } = await failureOf(
      skopeo.copy(`docker://${registry.host}/skopeo/image-copy:v1`, `oci:${join(skopeo.dir, 'deleted')}:v1`),
    );
    expect(output).toMatch(/manifest unknown|not found|404/i);
    await expectManifestDigest(registry, 'skopeo/image', 'v1', image.manifest.digest);
  });

  it('refuses an 8 MiB layer with 413 quickly (skopeo PATCH, containerd PUT), leaving no tag behind', async () => {
    const { skopeo, containerd } = clients();
    const registry = reg();
    const layer = tooBig.layers[0];
    if (layer === undefined) throw new Error('no layer');
    expect(layer.size).toBeGreaterThan(8 * MIB);

    const mark = registry.mark();
    const bySkopeo = await timings.time('skopeo push of an 8 MiB layer (refused)', () =>
      failureOf(
        skopeo.copy(`oci:${tooBig.layout}:${tooBig.tag}`, `docker://${registry.host}/skopeo/too-big:v1`),
      ),
    );
    console.log(`e2e [local-aws]: skopeo's error for the 8 MiB layer:\n${bySkopeo.stderr.trim()}`);
    expect(bySkopeo.ms, 'skopeo push of the 8 MiB layer: ms until it failed').toBeLessThan(
      REFUSED_PUSH_MAX_MS,
    );
    expect(bySkopeo.stderr).toMatch(/413/);
    expect(bySkopeo.stderr, "API Gateway's body surfaces").toContain('Request Entity Too Large');
    const refused = registry
      .since(mark)
      .filter((e) => e.status === 413)
      .map((e) => ({ method: e.method, repo: e.url.split('/blobs/')[0], reqBytes: e.reqBytes }));
    expect(refused).toContainEqual({ method: 'PATCH', repo: '/v2/skopeo/too-big', reqBytes: layer.size });
    expect((await registry.getManifest('skopeo/too-big', 'v1')).status).toBe(404);

    const ref = `${registry.host}/ctr/too-big:v1`;
    await containerd.importLayout('too-big', tooBig.layout, `${registry.host}/ctr/too-big`);
    const ctrMark = registry.mark();
    const byCtr = await timings.time('ctr push of an 8 MiB layer (refused)', () =>
      failureOf(containerd.push('too-big', ref)),
    );
    console.log(`e2e [local-aws]: ctr's error for the 8 MiB layer:\n${byCtr.stderr.trim()}`);
    expect(byCtr.ms, 'ctr push of the 8 MiB layer: ms until it failed').toBeLessThan(REFUSED_PUSH_MAX_MS);
    expect(byCtr.stderr).toMatch(/413/);
    expect(
      registry
        .since(ctrMark)
        .filter((e) => e.status === 413)
        .map((e) => ({ method: e.method, repo: e.url.split('/blobs/')[0] })),
    ).toContainEqual({ method: 'PUT', repo: '/v2/ctr/too-big' });
    expect((await registry.getManifest('ctr/too-big', 'v1')).status).toBe(404);
  });

  it('stops on SIGTERM, leaving no Ceph or java process behind', async () => {
    const registry = reg();
    const names = registry.childProcesses.map((p) => p.name);
    for (const name of ['ceph-mon', 'ceph-osd', 'radosgw', 'java']) {
      expect(names, 'processes local-aws had started').toContain(name);
    }
    const started = performance.now();
    stopped = true;
    await timings.time('stop local AWS (SIGTERM)', () => registry.stop());
    expect(registry.leftoverProcesses, 'processes still running after SIGTERM (then killed)').toEqual([]);
    expect(performance.now() - started).toBeLessThan(20_000);
  });
});
