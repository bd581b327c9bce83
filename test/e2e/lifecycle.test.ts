// Storage lifecycle with real clients against the built server (dist/registry.mjs): retention policies
// of every kind applied by `npm run gc`'s program, tag immutability, read-only mode and upload expiry.
// skopeo pushes and pulls; the API is used directly only for what skopeo cannot do (a referrer, an
// abandoned upload).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Skopeo } from './harness/clients.js';
import { CommandError, makeTempDir, removeTempDir, run, startDaemon, waitFor } from './harness/exec.js';
import { type ImageInfo, verifyLayoutBlobs, writeRandomImage } from './harness/images.js';
import { freePort } from '../../bin/local/free-port.js';
import { REPO_ROOT, RegistryUnderTest } from './harness/registry.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';

function allDigests(image: ImageInfo): string[] {
  return [image.manifest.digest, image.config.digest, ...image.layers.map((layer) => layer.digest)];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('storage lifecycle (standalone server)', () => {
  let registry: RegistryUnderTest | undefined;
  let skopeo: Skopeo | undefined;
  let work: string | undefined;
  const images: ImageInfo[] = [];
  const server = () => registry as RegistryUnderTest;
  const tool = () => skopeo as Skopeo;

  beforeAll(async () => {
    work = await makeTempDir('lifecycle');
    for (let i = 0; i < 8; i++) {
      images.push(await writeRandomImage(join(work, `image-${i}`), `lifecycle ${i}`, [16 * 1024]));
    }
    skopeo = await Skopeo.create();
    registry = await RegistryUnderTest.start('ours', {
      config: {
        storage: {
          delete: { enabled: true },
          maintenance: { uploadpurging: { enabled: true, age: '3s', interval: '1s' } },
        },
        retention: [
          {
            repositories: ['ci/**'],
            protect: ['latest'],
            rules: [
              { tags: ['main-*'], keeplast: 2 },
              { tags: ['pr-*'], olderthan: '2s' },
              { untagged: true, olderthan: '2s' },
            ],
          },
        ],
        immutability: [{ repositories: ['prod/**'], except: ['latest'] }],
      },
    });
  });
  afterAll(async () => {
    await registry?.stop();
    await skopeo?.dispose();
    await removeTempDir(work);
  });

  const push = (image: ImageInfo, ref: string) =>
    tool().copy(`oci:${image.layout}:${image.tag}`, `docker://${server().host}/${ref}`);

  async function pullAndVerify(ref: string, image: ImageInfo): Promise<void> {
    const dest = join(tool().dir, `pulled-${ref.replace(/[/:@]/g, '-')}`);
    await tool().copy(`docker://${server().host}/${ref}`, `oci:${dest}:pulled`);
    expect((await verifyLayoutBlobs(dest)).sort()).toEqual(allDigests(image).sort());
  }

  async function collect(...args: string[]): Promise<{ removed: Record<string, number> }> {
    const result = await run(
      process.execPath,
      [
        join(REPO_ROOT, 'dist', 'gc.mjs'),
        'gc',
        '--json',
        '--grace',
        '0s',
        ...args,
        join(server().dir, 'config.yml'),
      ],
      {
        env: { ...process.env, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: server().dataDir },
        timeoutMs: 60_000,
      },
    );
    return JSON.parse(result.stdout) as { removed: Record<string, number> };
  }

  const tagsOf = async (repository: string) =>
    (
      (
        (await (await fetch(`${server().url}/v2/${repository}/tags/list`)).json()) as {
          tags: string[] | null;
        }
      ).tags ?? []
    ).sort();

  it('refuses to move an immutable tag, allows the same push again and the excepted tag to move', async () => {
    const [a, b] = images as [ImageInfo, ImageInfo];
    await push(a, 'prod/api:v1.0.0');
    await push(a, 'prod/api:v1.0.0'); // a retried CI job
    const refused = await push(b, 'prod/api:v1.0.0').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(CommandError);
    expect((refused as CommandError).message).toContain(
      `tag v1.0.0 in repository prod/api is immutable: it already points at ${a.manifest.digest}`,
    );
    await pullAndVerify('prod/api:v1.0.0', a);

    await push(a, 'prod/api:latest');
    await push(b, 'prod/api:latest');
    await pullAndVerify('prod/api:latest', b);
    // Outside the rule's repositories, tags move as usual.
    await push(a, 'dev/api:v1.0.0');
    await push(b, 'dev/api:v1.0.0');
    await pullAndVerify('dev/api:v1.0.0', b);
  });

  it('applies each kind of retention rule, and removes a referrer with its subject', async () => {
    const [m1, m2, m3, pr, latest, untagged] = images.slice(2) as [
      ImageInfo,
      ImageInfo,
      ImageInfo,
      ImageInfo,
      ImageInfo,
      ImageInfo,
    ];
    await push(pr, 'ci/app:pr-7');
    await push(untagged, 'ci/app:tmp');
    expect((await fetch(`${server().url}/v2/ci/app/manifests/tmp`, { method: 'DELETE' })).status).toBe(202);
    await sleep(2_500); // pr-7 and the untagged manifest are now older than the rules' 2s
    for (const [image, tag] of [
      [m1, 'main-1'],
      [m2, 'main-2'],
      [m3, 'main-3'],
      [latest, 'latest'],
    ] as const) {
      await push(image, `ci/app:${tag}`);
      await sleep(20);
    }
    // A signature of main-1, through the referrers API (skopeo cannot push one).
    const signature = await pushReferrer(server().url, 'ci/app', m1.manifest);

    const dry = await run(
      process.execPath,
      [
        join(REPO_ROOT, 'dist', 'gc.mjs'),
        'gc',
        '--dry-run',
        '--grace',
        '0s',
        join(server().dir, 'config.yml'),
      ],
      { env: { ...process.env, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: server().dataDir } },
    );
    expect(dry.stdout).toContain('would remove tag ci/app:main-1');
    expect(dry.stdout).toContain('would remove tag ci/app:pr-7');
    expect(dry.stdout).toContain(`would remove manifest ci/app@${untagged.manifest.digest}`);
    expect(dry.stdout).toContain(`would remove manifest ci/app@${signature}`);
    expect(await tagsOf('ci/app')).toEqual(['latest', 'main-1', 'main-2', 'main-3', 'pr-7']);

    const report = await collect();
    expect(report.removed).toMatchObject({ tags: 2, manifests: 4 });
    expect(await tagsOf('ci/app')).toEqual(['latest', 'main-2', 'main-3']);
    for (const gone of [m1.manifest.digest, pr.manifest.digest, untagged.manifest.digest, signature]) {
      expect((await server().getManifest('ci/app', gone, 'HEAD')).status).toBe(404);
    }
    await pullAndVerify('ci/app:main-2', m2);
    await pullAndVerify('ci/app:main-3', m3);
    await pullAndVerify('ci/app:latest', latest);
    // Their blobs are gone from storage too.
    const stored = await storedBlobs(server().dataDir);
    for (const image of [m1, pr, untagged]) {
      for (const digest of allDigests(image)) expect(stored.has(digest)).toBe(false);
    }
  });

  it('expires an abandoned upload: the session and its bytes', async () => {
    const start = await fetch(`${server().url}/v2/uploads/abandoned/blobs/uploads/`, { method: 'POST' });
    expect(start.status).toBe(202);
    const location = new URL(start.headers.get('location') ?? '', server().url);
    const patch = await fetch(location, {
      method: 'PATCH',
      body: new Uint8Array(4096),
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    expect(patch.status).toBe(202);
    const uploads = join(server().dataDir, 'uploads');
    expect((await readdir(uploads)).length).toBe(1);
    // uploadpurging: age 3s, interval 1s: the server's own purger removes it.
    await waitFor(
      'the upload purger to remove the abandoned upload',
      async () => {
        return !existsSync(uploads) || (await readdir(uploads)).length === 0;
      },
      15_000,
      () => Promise.resolve(server().diagnostics()),
    );
    const status = await fetch(new URL(patch.headers.get('location') ?? '', server().url));
    expect(status.status).toBe(404);
  });

  it('serves pulls and refuses pushes and deletes in read-only mode, over the same storage', async () => {
    const image = images[0] as ImageInfo;
    await push(image, 'ro/app:v1');
    const port = await freePort();
    const readOnly = startDaemon(
      'read-only registry',
      process.execPath,
      ['--enable-source-maps', join(REPO_ROOT, 'dist', 'registry.mjs')],
      join(server().dir, 'read-only.log'),
      {
        ...process.env,
        REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: server().dataDir,
        REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED: 'true',
      },
    );
    try {
      const url = `http://127.0.0.1:${port}`;
      await waitFor(
        'the read-only registry to listen',
        async () => {
          return (await fetch(`${url}/v2/`).catch(() => undefined))?.status === 200;
        },
        30_000,
        () => readOnly.tail(),
      );
      const dest = join(tool().dir, 'pulled-read-only');
      await tool().copy(`docker://127.0.0.1:${port}/ro/app:v1`, `oci:${dest}:v1`);
      expect((await verifyLayoutBlobs(dest)).sort()).toEqual(allDigests(image).sort());

      const refused = await tool()
        .copy(`oci:${(images[1] as ImageInfo).layout}:v1`, `docker://127.0.0.1:${port}/ro/app:v2`)
        .catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(CommandError);
      const deleted = await fetch(`${url}/v2/ro/app/manifests/${image.manifest.digest}`, {
        method: 'DELETE',
      });
      expect(deleted.status).toBe(405);
      const body = (await deleted.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]).toMatchObject({
        code: 'UNSUPPORTED',
        message: 'the registry is in read-only mode for maintenance: DELETE refused, pulls only',
      });
      expect((await server().getManifest('ro/app', 'v1', 'HEAD')).status).toBe(200);
    } finally {
      await readOnly.stop();
    }
  });
});

/** Digests of every blob whose bytes the filesystem storage under root holds. */
async function storedBlobs(root: string): Promise<Set<string>> {
  const digests = new Set<string>();
  const base = join(root, 'blobs', 'sha256');
  if (!existsSync(base)) return digests;
  for (const prefix of await readdir(base)) {
    for (const hex of await readdir(join(base, prefix))) {
      if (existsSync(join(base, prefix, hex, 'data'))) digests.add(`sha256:${hex}`);
    }
  }
  return digests;
}

/** Pushes an artifact manifest whose subject is the given manifest; answers its digest. */
async function pushReferrer(
  url: string,
  repository: string,
  subject: { digest: string; size: number; mediaType: string },
): Promise<string> {
  const empty = Buffer.from('{}');
  const emptyDigest = `sha256:${createHash('sha256').update(empty).digest('hex')}`;
  const upload = await fetch(`${url}/v2/${repository}/blobs/uploads/?digest=${emptyDigest}`, {
    method: 'POST',
    body: empty,
    headers: { 'Content-Type': 'application/octet-stream' },
  });
  expect(upload.status).toBe(201);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: 'application/vnd.example.signature',
      config: { mediaType: OCI_EMPTY, digest: emptyDigest, size: 2 },
      layers: [{ mediaType: OCI_EMPTY, digest: emptyDigest, size: 2 }],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    }),
  );
  const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  const put = await fetch(`${url}/v2/${repository}/manifests/${digest}`, {
    method: 'PUT',
    body: manifest,
    headers: { 'Content-Type': OCI_MANIFEST },
  });
  expect(put.status).toBe(201);
  return digest;
}
