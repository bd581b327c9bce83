// Storage lifecycle with real clients against the built server (dist/registry.mjs): retention policies
// of every kind applied by `npm run gc`'s program, tag immutability, read-only mode and upload expiry.
// skopeo pushes and pulls; the API is used directly only for what skopeo cannot do (a referrer, an
// abandoned upload).
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Skopeo } from './harness/clients.js';
import {
  checkImmutability,
  pushRetentionScenario,
  RETENTION,
  storedBlobsOnDisk,
} from './harness/lifecycle.js';
import { allDigests } from './harness/local-aws.js';
import { CommandError, makeTempDir, removeTempDir, run, startDaemon, waitFor } from './harness/exec.js';
import { type ImageInfo, verifyLayoutBlobs, writeRandomImage } from './harness/images.js';
import { freePort } from '../../bin/local/free-port.js';
import { REPO_ROOT, RegistryUnderTest } from './harness/registry.js';

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
        retention: RETENTION,
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
    await checkImmutability(push, pullAndVerify, a, b);
  });

  it('applies each kind of retention rule, and removes a referrer with its subject', async () => {
    const scenario = await pushRetentionScenario(push, server().url, images.slice(2));
    const [m1, pr, untagged] = scenario.removedImages as [ImageInfo, ImageInfo, ImageInfo];
    const { 'main-2': m2, 'main-3': m3, latest } = scenario.kept;
    const gone = scenario.removedManifests;
    const signature = gone[3] as string;

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
    const stored = await storedBlobsOnDisk(server().dataDir);
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
