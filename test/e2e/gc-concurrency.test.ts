// Garbage collection and retention while pushes go on, against the built server (dist/registry.mjs)
// on the filesystem: skopeo pushes image after image while `npm run gc`'s program runs again and again
// against the same storage. Afterwards every tag that should survive is pulled and every blob checked
// byte for byte (by digest), and the storage holds exactly the blobs the surviving images name.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Skopeo } from './harness/clients.js';
import { storedBlobsOnDisk } from './harness/lifecycle.js';
import { allDigests } from './harness/local-aws.js';
import { makeTempDir, removeTempDir, run } from './harness/exec.js';
import { type ImageInfo, verifyLayoutBlobs, writeRandomImage } from './harness/images.js';
import { REPO_ROOT, RegistryUnderTest } from './harness/registry.js';

const GRACE = '4s';
const GRACE_MS = 4_000;
const BUILDS = 18;
const KEEP_LAST = 3;

describe('garbage collection while pushing (standalone server)', () => {
  let registry: RegistryUnderTest | undefined;
  let skopeo: Skopeo | undefined;
  let work: string | undefined;
  const images: ImageInfo[] = [];

  beforeAll(async () => {
    work = await makeTempDir('gc-concurrency');
    for (let i = 0; i < BUILDS; i++) {
      images.push(
        await writeRandomImage(join(work, `image-${i}`), `gc concurrency ${i}`, [48 * 1024, 8 * 1024]),
      );
    }
    skopeo = await Skopeo.create();
    registry = await RegistryUnderTest.start('ours', {
      config: {
        gc: { grace: GRACE },
        retention: [
          {
            repositories: ['conc/**'],
            protect: ['keep-*'],
            rules: [{ tags: ['build-*'], keeplast: KEEP_LAST }],
          },
        ],
      },
    });
  });
  afterAll(async () => {
    await registry?.stop();
    await skopeo?.dispose();
    await removeTempDir(work);
  });

  /** One run of the gc program against the registry's storage, as an operator would start it. */
  async function collect(...args: string[]): Promise<Record<string, unknown>> {
    const server = registry as RegistryUnderTest;
    const result = await run(
      process.execPath,
      [join(REPO_ROOT, 'dist', 'gc.mjs'), 'gc', '--json', ...args, join(server.dir, 'config.yml')],
      {
        env: { ...process.env, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: server.dataDir },
        timeoutMs: 120_000,
      },
    );
    return JSON.parse(result.stdout) as Record<string, unknown>;
  }

  it('loses nothing referenced and reclaims everything else', async () => {
    const server = registry as RegistryUnderTest;
    const tool = skopeo as Skopeo;
    const push = (image: ImageInfo, ref: string) =>
      tool.copy(`oci:${image.layout}:${image.tag}`, `docker://${server.host}/${ref}`);

    // One pusher of builds (so their tag order is known), one of protected tags and untagged images.
    const state = { pushing: true };
    const builds = (async () => {
      for (let i = 0; i < BUILDS; i++) await push(images[i] as ImageInfo, `conc/app:build-${i}`);
    })();
    const others = (async () => {
      for (let i = 0; i < BUILDS; i += 4) {
        await push(images[i] as ImageInfo, `conc/app:keep-${i}`);
        // Pushed, then untagged: --delete-untagged takes it once past the grace period.
        await push(images[i + 1] as ImageInfo, `conc/scratch:tmp-${i}`);
        const untag = await fetch(`${server.url}/v2/conc/scratch/manifests/tmp-${i}`, { method: 'DELETE' });
        expect(untag.status).toBe(202);
      }
    })();
    const pushes = Promise.all([builds, others]).finally(() => {
      state.pushing = false;
    });
    let runs = 0;
    const removed = { tags: 0, manifests: 0, blobs: 0 };
    while (state.pushing) {
      const report = (await collect('--delete-untagged')) as { removed: typeof removed };
      runs++;
      removed.tags += report.removed.tags;
      removed.manifests += report.removed.manifests;
      removed.blobs += report.removed.blobs;
    }
    await pushes;
    expect(runs, 'garbage collection runs during the pushes').toBeGreaterThanOrEqual(3);
    expect(removed.tags, 'retention removed tags while pushes went on').toBeGreaterThan(0);
    expect(removed.manifests, 'and the manifests they left untagged').toBeGreaterThan(0);
    expect(removed.blobs, 'and blobs past the grace period').toBeGreaterThan(0);

    // Once nothing is in flight and the grace period has passed, one more run reclaims the rest.
    await new Promise((resolve) => setTimeout(resolve, GRACE_MS + 500));
    await collect('--delete-untagged');

    const expectedTags = [
      ...Array.from({ length: KEEP_LAST }, (_, k) => `build-${BUILDS - KEEP_LAST + k}`),
      ...Array.from({ length: Math.ceil(BUILDS / 4) }, (_, k) => `keep-${k * 4}`),
    ].sort();
    const tags = (await (await fetch(`${server.url}/v2/conc/app/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags.sort()).toEqual(expectedTags);
    const scratch = (await (await fetch(`${server.url}/v2/conc/scratch/tags/list`)).json()) as {
      tags: string[] | null;
    };
    expect(scratch.tags ?? []).toEqual([]);

    const surviving = new Set<string>();
    for (const tag of expectedTags) {
      const image = images[Number(tag.split('-')[1])] as ImageInfo;
      const dest = join(tool.dir, `pulled-${tag}`);
      await tool.copy(`docker://${server.host}/conc/app:${tag}`, `oci:${dest}:${tag}`);
      // verifyLayoutBlobs re-hashes every pulled blob file against its digest: byte for byte.
      expect((await verifyLayoutBlobs(dest)).sort()).toEqual(allDigests(image).sort());
      for (const digest of allDigests(image)) surviving.add(digest);
    }
    const stored = await storedBlobsOnDisk(server.dataDir);
    expect([...stored].sort(), 'storage holds exactly the blobs of the surviving images').toEqual(
      [...surviving].sort(),
    );
  });
});
