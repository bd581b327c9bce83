// Layers of any size on the AWS deployment's shape (node dist/local-aws.mjs with Ceph RGW as S3, which
// verifies SigV4 and refuses a body whose SHA-256 differs from the signed x-amz-content-sha256):
//
// - with the upload edge and the upload service (--edge --upload-service): ctr, docker (classic store),
//   podman and skopeo each push and pull an image with a 1 GiB layer (E2E_AWS_LARGE_LAYER_MIB), and the
//   Lambda handler takes none of the layer's bytes: its own access log lines are counted;
// - with the upload edge alone (--edge): ctr's one PUT goes through the real CloudFront Function code
//   straight to S3; a body that does not match its digest is refused by S3 and leaves no blob; a forged or
//   expired upload URL is refused at the edge; a PATCH client is told the limit and the options.
//
// Without either option, test/e2e/local-aws.test.ts checks that an 8 MiB layer fails fast with 413.
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Containerd, DockerDaemon, Podman, Skopeo } from './harness/clients.js';
import { removeTempDir, run, Timings } from './harness/exec.js';
import { verifyLayoutBlobs, writeRandomImage, type ImageInfo } from './harness/images.js';
import {
  allDigests,
  ESBUILD_ARGS,
  expectBlobRedirects,
  failureOf,
  layerDigests,
  layoutRefDigest,
  localAwsDescription,
  MIB,
} from './harness/local-aws.js';
import { REPO_ROOT, RegistryUnderTest } from './harness/registry.js';
import { expectManifestDigest, expectSameImageContent } from './harness/suite.js';

const LAYER_MIB = Number(process.env.E2E_AWS_LARGE_LAYER_MIB ?? 1024);
/** What the Lambda handler may take in all, for manifests: no layer's bytes fit in it. */
const FUNCTION_BYTES_LIMIT = 64 * 1024;

/** Upload bytes (PATCH and PUT bodies on upload URLs) each process took, by their own access logs. */
async function uploadBytes(registry: RegistryUnderTest): Promise<{ fn: number; service: number }> {
  const sum = async (source: 'function' | 'upload-service') =>
    (await registry.accessLines(source))
      .filter((l) => (l.method === 'PATCH' || l.method === 'PUT') && l.path.includes('/blobs/uploads/'))
      .reduce((total, l) => total + l.bytesIn, 0);
  return { fn: await sum('function'), service: await sum('upload-service') };
}

/** Every request body byte the Lambda handler took. */
async function functionBytes(registry: RegistryUnderTest): Promise<number> {
  return (await registry.accessLines('function')).reduce((total, l) => total + l.bytesIn, 0);
}

// Both suites start dist/local-aws.mjs, built once as `npm run local:aws` builds it, and push one
// image: a random layer of LAYER_MIB and a small one, written once.
let imagesDir: string | undefined;
let image: ImageInfo;

beforeAll(async () => {
  imagesDir = join(tmpdir(), `registry-e2e-large-${randomBytes(6).toString('hex')}`);
  await mkdir(imagesDir);
  const dir = imagesDir;
  const [built, written] = await Promise.allSettled([
    run('npx', ESBUILD_ARGS, { cwd: REPO_ROOT, timeoutMs: 120_000 }),
    writeRandomImage(join(dir, 'image'), 'large-image', [LAYER_MIB * MIB, 64 * 1024]),
  ]);
  if (written.status === 'fulfilled') image = written.value;
  for (const result of [built, written]) if (result.status === 'rejected') throw result.reason;
});

afterAll(async () => {
  await removeTempDir(imagesDir);
});

describe(`local AWS with the upload edge and the upload service: ${LAYER_MIB} MiB layers`, () => {
  const timings = new Timings('local-aws-large');
  let registry: RegistryUnderTest | undefined;
  let skopeo: Skopeo | undefined;
  let podman: Podman | undefined;
  let docker: DockerDaemon | undefined;
  let containerd: Containerd | undefined;

  const reg = (): RegistryUnderTest => {
    if (registry === undefined) throw new Error('the local AWS registry was not started');
    return registry;
  };
  const clients = () => {
    if (skopeo === undefined || podman === undefined || docker === undefined || containerd === undefined) {
      throw new Error('the clients were not set up');
    }
    return { skopeo, podman, docker, containerd };
  };

  beforeAll(async () => {
    const [started, ctr, dockerd, sk, pm] = await Promise.allSettled([
      timings.time('start local AWS with --edge --upload-service, in parallel', () =>
        RegistryUnderTest.start('local-aws', { s3: 'rgw', edge: true, uploadService: true }),
      ),
      timings.time('start containerd, in parallel', () => Containerd.start()),
      timings.time('start dockerd, in parallel', () => DockerDaemon.start()),
      Skopeo.create(),
      Podman.create(),
    ]);
    if (started.status === 'fulfilled') registry = started.value;
    if (ctr.status === 'fulfilled') containerd = ctr.value;
    if (dockerd.status === 'fulfilled') docker = dockerd.value;
    if (sk.status === 'fulfilled') skopeo = sk.value;
    if (pm.status === 'fulfilled') podman = pm.value;
    for (const result of [started, ctr, dockerd, sk, pm]) {
      if (result.status === 'rejected') throw result.reason;
    }
  });

  beforeEach(({ onTestFailed }) => {
    onTestFailed(async () => {
      if (registry !== undefined) console.error(await registry.diagnostics());
    });
  });

  afterAll(async () => {
    const results = await Promise.allSettled([
      registry?.stop(),
      containerd?.stop(),
      docker?.stop(),
      skopeo?.dispose(),
      podman?.dispose(),
    ]);
    console.log(timings.report());
    for (const result of results) if (result.status === 'rejected') throw result.reason;
  });

  /** Asserts that an upload's bytes went to the upload service, none to the function, and returns its count. */
  async function expectThroughUploadService(before: { fn: number; service: number }): Promise<void> {
    const after = await uploadBytes(reg());
    expect(after.fn - before.fn, 'upload bytes the Lambda handler took').toBe(0);
    expect(after.service - before.service, 'upload bytes the upload service took').toBeGreaterThanOrEqual(
      LAYER_MIB * MIB * 0.9, // compressed by docker and podman; random bytes hardly shrink
    );
  }

  it('skopeo pushes (one PATCH to the upload service) and pulls the image back, byte for byte', async () => {
    const { skopeo } = clients();
    const registry = reg();
    await skopeo.clearBlobCache();
    const before = await uploadBytes(registry);
    await timings.time(`skopeo push (${LAYER_MIB} MiB layer)`, () =>
      skopeo.copy(`oci:${image.layout}:${image.tag}`, `docker://${registry.host}/skopeo/large:v1`),
    );
    await expectThroughUploadService(before);
    await expectManifestDigest(registry, 'skopeo/large', 'v1', image.manifest.digest);

    const dest = join(skopeo.dir, 'pulled-large');
    const mark = registry.mark();
    await timings.time(`skopeo pull (${LAYER_MIB} MiB layer)`, () =>
      skopeo.copy(`docker://${registry.host}/skopeo/large:v1`, `oci:${dest}:v1`),
    );
    expect(await layoutRefDigest(dest)).toBe(image.manifest.digest);
    expect((await verifyLayoutBlobs(dest)).sort()).toEqual(allDigests(image).sort());
    await expectBlobRedirects(
      registry,
      mark,
      'skopeo/large',
      image.layers.map((l) => l.digest),
    );
  });

  it('containerd pushes (one PUT to the upload service) and pulls the image back', async () => {
    const { containerd } = clients();
    const registry = reg();
    const ref = `${registry.host}/ctr/large:v1`;
    await containerd.importLayout('push', image.layout, `${registry.host}/ctr/large`);
    const before = await uploadBytes(registry);
    await timings.time(`ctr push (${LAYER_MIB} MiB layer)`, () => containerd.push('push', ref));
    await expectThroughUploadService(before);
    await expectManifestDigest(registry, 'ctr/large', 'v1', image.manifest.digest);

    const mark = registry.mark();
    await timings.time(`ctr pull (${LAYER_MIB} MiB layer)`, () => containerd.pull('pull', ref));
    await expectBlobRedirects(
      registry,
      mark,
      'ctr/large',
      image.layers.map((l) => l.digest),
    );
    for (const digest of allDigests(image))
      expect(await containerd.contentDigest('pull', digest)).toBe(digest);
  });

  it('podman pushes and pulls the image back', async () => {
    const { podman } = clients();
    const registry = reg();
    const name = `${registry.host}/podman/large:v1`;
    await timings.time('podman load', () => podman.loadOci(image.layout, image.tag, name));
    const before = await uploadBytes(registry);
    const digest = await timings.time(`podman push (${LAYER_MIB} MiB layer)`, () =>
      podman.push(name, `docker://${name}`),
    );
    await expectThroughUploadService(before);
    const manifest = await expectManifestDigest(registry, 'podman/large', 'v1', digest);
    await expectSameImageContent(registry, 'podman/large', manifest, image);

    await podman.removeAllImages();
    const mark = registry.mark();
    await timings.time(`podman pull (${LAYER_MIB} MiB layer)`, () => podman.pull(name));
    await expectBlobRedirects(registry, mark, 'podman/large', layerDigests(manifest));
    expect((await podman.inspect(name)).RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
  });

  it('docker (classic store) pushes and pulls the image back', async () => {
    const { docker, skopeo } = clients();
    const registry = reg();
    const archive = join(skopeo.dir, 'large.docker.tar');
    await timings.time('docker-archive (skopeo) and docker load', async () => {
      await skopeo.copy(`oci:${image.layout}:${image.tag}`, `docker-archive:${archive}:e2e/large:v1`, {
        preserveDigests: false,
      });
      await docker.load(archive);
    });
    const ref = `${registry.host}/docker/large:v1`;
    await docker.tag('e2e/large:v1', ref);
    const before = await uploadBytes(registry);
    const pushed = await timings.time(`docker push (${LAYER_MIB} MiB layer)`, () => docker.push(ref));
    await expectThroughUploadService(before);
    const manifest = await expectManifestDigest(registry, 'docker/large', 'v1', pushed.digest);
    await expectSameImageContent(registry, 'docker/large', manifest, image);

    await docker.removeImages('e2e/large:v1', ref);
    const mark = registry.mark();
    await timings.time(`docker pull (${LAYER_MIB} MiB layer)`, () => docker.pull(ref));
    await expectBlobRedirects(registry, mark, 'docker/large', layerDigests(manifest));
    expect((await docker.inspect(ref)).RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
  });

  it('a body that does not match its digest leaves no blob; the Lambda handler took manifests only', async () => {
    const registry = reg();
    const expected = randomBytes(1024);
    const digest = `sha256:${createHash('sha256').update(expected).digest('hex')}`;
    const post = await fetch(`${registry.url}/v2/mismatch/blobs/uploads/`, { method: 'POST' });
    expect(post.status).toBe(202);
    const location = new URL(post.headers.get('location') ?? '');
    expect(location.origin, 'new uploads go to the upload service').not.toBe(new URL(registry.url).origin);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', body: randomBytes(1024) });
    expect(put.status).toBe(400);
    expect(await put.json()).toMatchObject({ errors: [{ code: 'DIGEST_INVALID' }] });
    expect((await fetch(`${registry.url}/v2/mismatch/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);

    expect(await functionBytes(registry), 'request body bytes the Lambda handler took, in all').toBeLessThan(
      FUNCTION_BYTES_LIMIT,
    );
  });
});

describe(`local AWS with the upload edge alone: one PUT of ${LAYER_MIB} MiB straight to S3`, () => {
  const timings = new Timings('local-aws-edge');
  let registry: RegistryUnderTest | undefined;
  let containerd: Containerd | undefined;
  let skopeo: Skopeo | undefined;

  const reg = (): RegistryUnderTest => {
    if (registry === undefined) throw new Error('the local AWS registry was not started');
    return registry;
  };

  beforeAll(async () => {
    const [started, ctr, sk] = await Promise.allSettled([
      timings.time('start local AWS with --edge, in parallel', () =>
        RegistryUnderTest.start('local-aws', { s3: 'rgw', edge: true }),
      ),
      timings.time('start containerd, in parallel', () => Containerd.start()),
      Skopeo.create(),
    ]);
    if (started.status === 'fulfilled') registry = started.value;
    if (ctr.status === 'fulfilled') containerd = ctr.value;
    if (sk.status === 'fulfilled') skopeo = sk.value;
    for (const result of [started, ctr, sk]) if (result.status === 'rejected') throw result.reason;
  });

  beforeEach(({ onTestFailed }) => {
    onTestFailed(async () => {
      if (registry !== undefined) console.error(await registry.diagnostics());
    });
  });

  afterAll(async () => {
    const results = await Promise.allSettled([registry?.stop(), containerd?.stop(), skopeo?.dispose()]);
    console.log(timings.report());
    for (const result of results) if (result.status === 'rejected') throw result.reason;
  });

  /** A new upload's signed URL, as the registry hands it out. */
  async function startUpload(repository: string): Promise<URL> {
    const post = await fetch(`${reg().url}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
    expect(post.status).toBe(202);
    const location = new URL(post.headers.get('location') ?? '', reg().url);
    expect(location.searchParams.get('_upload')).toMatch(/^[0-9a-f]{16}\.\d+\.[0-9a-f]{64}$/);
    return location;
  }

  it('containerd pushes a layer with one PUT that the Lambda handler never sees, and pulls it back', async () => {
    const ctr = containerd;
    if (ctr === undefined) throw new Error('containerd was not started');
    const registry = reg();
    const ref = `${registry.host}/ctr/edge:v1`;
    await ctr.importLayout('push', image.layout, `${registry.host}/ctr/edge`);
    const before = await uploadBytes(registry);
    const mark = registry.mark();
    await timings.time(`ctr push through the edge (${LAYER_MIB} MiB layer)`, () => ctr.push('push', ref));
    const large = image.layers[0];
    if (large === undefined) throw new Error('no layer');
    const puts = registry.since(mark).filter((e) => e.method === 'PUT' && e.url.includes('/blobs/uploads/'));
    // The edge answered for S3: 201 with the registry's headers, from the viewer-response function.
    expect(puts.find((e) => e.reqBytes === large.size)?.status, 'the PUT of the large layer').toBe(201);
    expect((await uploadBytes(registry)).fn - before.fn, 'upload bytes the Lambda handler took').toBe(0);
    await expectManifestDigest(registry, 'ctr/edge', 'v1', image.manifest.digest);

    const pullMark = registry.mark();
    await timings.time(`ctr pull (${LAYER_MIB} MiB layer)`, () => ctr.pull('pull', ref));
    await expectBlobRedirects(
      registry,
      pullMark,
      'ctr/edge',
      image.layers.map((l) => l.digest),
    );
    for (const digest of allDigests(image)) expect(await ctr.contentDigest('pull', digest)).toBe(digest);
  });

  it('a PUT whose body does not match its digest is refused by S3 and leaves no blob', async () => {
    const registry = reg();
    const expected = randomBytes(256 * 1024);
    const digest = `sha256:${createHash('sha256').update(expected).digest('hex')}`;
    const location = await startUpload('edge/mismatch');
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', body: randomBytes(256 * 1024) });
    // CloudFront runs no viewer-response function on an origin's 400: S3's own error reaches the client.
    expect(put.status).toBe(400);
    expect(await put.text()).toContain('XAmzContentSHA256Mismatch');
    // The session is still open, so a stored object would be linked by this HEAD: there is none.
    expect((await fetch(`${registry.url}/v2/edge/mismatch/blobs/${digest}`, { method: 'HEAD' })).status).toBe(
      404,
    );

    // The same URL with the right body succeeds, and the blob is linked on its first HEAD.
    const retry = await fetch(location, { method: 'PUT', body: expected });
    expect(retry.status).toBe(201);
    expect(retry.headers.get('docker-content-digest')).toBe(digest);
    const head = await fetch(`${registry.url}/v2/edge/mismatch/blobs/${digest}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(expected.byteLength));
  });

  it('refuses a forged or expired upload URL at the edge', async () => {
    const registry = reg();
    const blob = randomBytes(4096);
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const location = await startUpload('edge/forged');
    const upload = location.searchParams.get('_upload') ?? '';
    const [kid = '', expires = '', signature = ''] = upload.split('.');
    const id = location.pathname.split('/').pop() ?? '';

    const forged = new URL(location);
    forged.searchParams.set(
      '_upload',
      `${kid}.${expires}.${signature.replace(/^./, (c) => (c === '0' ? '1' : '0'))}`,
    );
    forged.searchParams.set('digest', digest);
    const refused = await fetch(forged, { method: 'PUT', body: blob });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ errors: [{ code: 'DENIED' }] });

    // An expired URL, signed with the deployment's own secret (from its Secrets Manager).
    const { secretsManager, uploadSecret } = await localAwsDescription(registry);
    const client = new SecretsManagerClient({
      endpoint: secretsManager,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const { SecretString: secret = '' } = await client.send(
      new GetSecretValueCommand({ SecretId: uploadSecret }),
    );
    client.destroy();
    const past = Math.floor(Date.now() / 1000) - 60;
    const pastSignature = createHmac('sha256', secret).update(`edge/forged\n${id}\n${past}`).digest('hex');
    const expired = new URL(location);
    expired.searchParams.set('_upload', `${kid}.${past}.${pastSignature}`);
    expired.searchParams.set('digest', digest);
    const late = await fetch(expired, { method: 'PUT', body: blob });
    expect(late.status).toBe(403);
    expect(JSON.stringify(await late.json())).toMatch(/expired/);

    expect((await fetch(`${registry.url}/v2/edge/forged/blobs/${digest}`, { method: 'HEAD' })).status).toBe(
      404,
    );
  });

  it('tells a PATCH client the limit and the options, quickly', async () => {
    const tool = skopeo;
    if (tool === undefined) throw new Error('skopeo was not set up');
    const registry = reg();
    await tool.clearBlobCache();
    const mark = registry.mark();
    const failed = await timings.time(`skopeo push of a ${LAYER_MIB} MiB layer (refused at the edge)`, () =>
      failureOf(tool.copy(`oci:${image.layout}:${image.tag}`, `docker://${registry.host}/skopeo/edge:v1`)),
    );
    console.log(`e2e [local-aws-edge]: skopeo's error:\n${failed.stderr.trim()}`);
    // skopeo prints the registry's error (SIZE_INVALID and its message), not the status: the proxy saw it.
    expect(failed.stderr).toMatch(/size invalid: .*4718592 bytes.*upload service/);
    const refused = registry.since(mark).filter((e) => e.method === 'PATCH' && e.status === 413);
    expect(refused.length, 'PATCHes refused with 413').toBeGreaterThan(0);
    expect(failed.ms).toBeLessThan(60_000);
    expect((await registry.getManifest('skopeo/edge', 'v1')).status).toBe(404);
  });
});
