// Storage lifecycle with real clients against the AWS deployment on one machine (dist/local-aws.mjs: the
// Lambda functions as deployed, behind the local API Gateway front, on fauxqs and DynamoDB Local): what
// lifecycle.test.ts checks against the standalone server. Tag immutability in the registry function,
// retention policies of every kind and upload expiry in the garbage collection function, which the test
// invokes when it needs a run (a synchronous Invoke at the local Lambda, as `aws lambda invoke` on AWS;
// the schedule, every hour, never comes), and read-only mode. Both functions are configured by the flags
// that give them the construct's settings (--immutability, --retention, --gc-grace), and by the REGISTRY_*
// variables the construct does not set (the upload age, read-only mode), as an operator sets them on the
// functions. skopeo pushes and pulls; the API is used directly only for what skopeo cannot do (a
// referrer, an abandoned upload), and the bucket is listed to see what storage still holds.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GcSummary } from '../../functions/handlers/gc.js';
import { Skopeo } from './harness/clients.js';
import { checkImmutability, pushRetentionScenario, RETENTION, sleep } from './harness/lifecycle.js';
import { CommandError, makeTempDir, removeTempDir } from './harness/exec.js';
import { type ImageInfo, verifyLayoutBlobs, writeRandomImage } from './harness/images.js';
import { allDigests, invokeGarbageCollection, localAwsDescription } from './harness/local-aws.js';
import { LOCAL_AWS_CREDENTIALS, RegistryUnderTest } from './harness/registry.js';

/** REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: how long an upload session lives unused. */
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const UPLOAD_AGE_MS = 5_000;

type Finished = Extract<GcSummary, { done: true }>;

describe('storage lifecycle (local AWS deployment)', () => {
  let registry: RegistryUnderTest | undefined;
  let skopeo: Skopeo | undefined;
  let bucket: { client: S3Client; name: string } | undefined;
  let work: string | undefined;
  const images: ImageInfo[] = [];
  const server = () => registry as RegistryUnderTest;
  const tool = () => skopeo as Skopeo;

  beforeAll(async () => {
    work = await makeTempDir('lifecycle-aws');
    for (let i = 0; i < 8; i++) {
      images.push(await writeRandomImage(join(work, `image-${i}`), `lifecycle aws ${i}`, [16 * 1024]));
    }
    skopeo = await Skopeo.create();
    registry = await RegistryUnderTest.start('local-aws', {
      // fauxqs: a second local-aws can share it (read-only mode, below).
      s3: 'fauxqs',
      immutability: [{ repositories: ['prod/**'], except: ['latest'] }],
      gc: {
        every: '1h',
        grace: '0s',
        retention: RETENTION,
      },
      env: { REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: `${UPLOAD_AGE_MS / 1000}s` },
    });
    const description = await localAwsDescription(registry);
    bucket = {
      name: description.bucket ?? '',
      // fauxqs checks no signature; the function's credentials all the same.
      client: new S3Client({
        endpoint: description.s3,
        region: description.region,
        forcePathStyle: true,
        credentials: LOCAL_AWS_CREDENTIALS,
      }),
    };
  });
  afterAll(async () => {
    bucket?.client.destroy();
    await registry?.stop();
    await skopeo?.dispose();
    await removeTempDir(work);
  });

  const push = (image: ImageInfo, ref: string) =>
    tool().copy(`oci:${image.layout}:${image.tag}`, `docker://${server().host}/${ref}`);

  async function pullAndVerify(ref: string, image: ImageInfo, from = server()): Promise<void> {
    const dest = join(tool().dir, `pulled-${from.directPort}-${ref.replace(/[/:@]/g, '-')}`);
    await tool().copy(`docker://${from.host}/${ref}`, `oci:${dest}:pulled`);
    expect((await verifyLayoutBlobs(dest)).sort()).toEqual(allDigests(image).sort());
  }

  /** A run of the garbage collection function, invoked now; it must finish within the invocation. */
  async function collect(dryRun = false): Promise<Finished> {
    const summary = await invokeGarbageCollection(server(), dryRun ? { dryRun } : {});
    expect(summary.done, JSON.stringify(summary)).toBe(true);
    return summary as Finished;
  }

  /** Every key of the bucket (the storage driver's paths, without a root directory). */
  async function bucketKeys(): Promise<string[]> {
    const { client, name } = bucket as { client: S3Client; name: string };
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: name, ...(token !== undefined && { ContinuationToken: token }) }),
      );
      for (const object of page.Contents ?? []) keys.push(object.Key ?? '');
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return keys;
  }

  /** Digests of every blob whose bytes the bucket holds. */
  async function storedBlobs(): Promise<Set<string>> {
    const digests = new Set<string>();
    for (const key of await bucketKeys()) {
      const match = /^blobs\/([a-z0-9]+)\/[0-9a-f]{2}\/([0-9a-f]+)\/data$/.exec(key);
      if (match) digests.add(`${match[1] ?? ''}:${match[2] ?? ''}`);
    }
    return digests;
  }

  /** The function log's lines about a run's repositories ("garbage collection repository"). */
  async function repositoryLines(run: string): Promise<Record<string, unknown>[]> {
    return (await readFile(server().logFile, 'utf8'))
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.msg === 'garbage collection repository' && entry.run === run);
  }

  const tagsOf = async (repository: string, from = server()) =>
    (
      (
        (await (await fetch(`${from.url}/v2/${repository}/tags/list`)).json()) as {
          tags: string[] | null;
        }
      ).tags ?? []
    ).sort();

  it('refuses to move an immutable tag, allows the same push again and the excepted tag to move', async () => {
    const [a, b] = images as [ImageInfo, ImageInfo];
    await checkImmutability(push, (ref, image) => pullAndVerify(ref, image), a, b);
  });

  it('applies each kind of retention rule, and removes a referrer with its subject', async () => {
    const scenario = await pushRetentionScenario(push, server().url, images.slice(2));
    const [m1, pr, untagged] = scenario.removedImages as [ImageInfo, ImageInfo, ImageInfo];
    const { 'main-2': m2, 'main-3': m3, latest } = scenario.kept;
    const gone = scenario.removedManifests;
    const signature = gone[3] as string;

    // A dry run reports in its result and in the function's log, and removes nothing.
    const dry = await collect(true);
    expect(dry).toMatchObject({ dryRun: true, removed: { tags: 2, manifests: 4 } });
    const lines = await repositoryLines(dry.run);
    const reported = lines.find((line) => line.repository === 'ci/app');
    expect(reported).toMatchObject({ dryRun: true });
    // The policy is for ci/** only.
    for (const other of lines.filter((line) => line !== reported)) {
      expect(other).toMatchObject({ removedTags: [], removedManifests: [] });
    }
    expect([...((reported?.removedTags as string[] | undefined) ?? [])].sort()).toEqual(['main-1', 'pr-7']);
    expect([...((reported?.removedManifests as string[] | undefined) ?? [])].sort()).toEqual(
      [...gone].sort(),
    );
    expect(await tagsOf('ci/app')).toEqual(['latest', 'main-1', 'main-2', 'main-3', 'pr-7']);
    for (const digest of gone)
      expect((await server().getManifest('ci/app', digest, 'HEAD')).status).toBe(200);
    const before = await storedBlobs();
    for (const digest of allDigests(m1)) expect(before.has(digest)).toBe(true);

    // Gone: 2 tags, 4 manifests, and 11 blobs: the 3 images' manifests, configs and layers, the
    // signature and its empty config. Nothing pushed meanwhile, so nothing is put back.
    const report = await collect();
    expect(report).toMatchObject({
      dryRun: false,
      removed: { tags: 2, manifests: 4, blobs: 11 },
      rescued: 0,
    });
    expect(await tagsOf('ci/app')).toEqual(['latest', 'main-2', 'main-3']);
    for (const digest of gone)
      expect((await server().getManifest('ci/app', digest, 'HEAD')).status).toBe(404);
    await pullAndVerify('ci/app:main-2', m2);
    await pullAndVerify('ci/app:main-3', m3);
    await pullAndVerify('ci/app:latest', latest);
    // Their blobs are gone from the bucket too; the kept images' stay.
    const stored = await storedBlobs();
    for (const image of [m1, pr, untagged]) {
      for (const digest of allDigests(image)) expect(stored.has(digest)).toBe(false);
    }
    expect(stored.has(signature)).toBe(false);
    for (const image of [m2, m3, latest]) {
      for (const digest of allDigests(image)) expect(stored.has(digest)).toBe(true);
    }
    // Nothing is left to remove.
    expect((await collect()).removed).toMatchObject({ tags: 0, manifests: 0, blobs: 0 });
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
    const patched = Date.now();
    const id = start.headers.get('docker-upload-uuid') ?? '';
    expect(id).not.toBe('');
    const ofUpload = (keys: string[]) => keys.filter((key) => key.includes(`uploads/${id}/`));
    expect(ofUpload(await bucketKeys())).not.toEqual([]);

    // Younger than the upload age: a run leaves it.
    const early = await collect();
    expect(Date.now() - patched).toBeLessThan(UPLOAD_AGE_MS);
    expect(early.removed.uploads).toBe(0);
    expect(ofUpload(await bucketKeys())).not.toEqual([]);

    await sleep(UPLOAD_AGE_MS + 500 - (Date.now() - patched));
    const late = await collect();
    expect(late.removed.uploads).toBe(1);
    expect(ofUpload(await bucketKeys())).toEqual([]);
    const status = await fetch(new URL(patch.headers.get('location') ?? '', server().url));
    expect(status.status).toBe(404);
  });

  it('serves pulls and refuses pushes and deletes in read-only mode, over the same storage', async () => {
    const image = images[0] as ImageInfo;
    await push(image, 'ro/app:v1');
    // On AWS an operator turns read-only mode on in the function's environment, and the function's new
    // containers serve the same bucket and table with it. Here: a second local-aws, whose function has
    // REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED, over this one's S3 and DynamoDB.
    const readOnly = await RegistryUnderTest.start('local-aws', {
      sharedWith: server(),
      env: { REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED: 'true' },
    });
    try {
      await pullAndVerify('ro/app:v1', image, readOnly);
      expect(await tagsOf('ro/app', readOnly)).toEqual(['v1']);
      const head = await readOnly.getManifest('ro/app', 'v1', 'HEAD');
      expect(head).toMatchObject({ status: 200, headerDigest: image.manifest.digest });
      // A blob's HEAD, through the redirect to the bucket as a client follows it.
      const blobHead = await fetch(`${readOnly.url}/v2/ro/app/blobs/${image.config.digest}`, {
        method: 'HEAD',
      });
      expect(blobHead.status).toBe(200);
      expect(blobHead.headers.get('content-length')).toBe(String(image.config.size));

      const refused = await tool()
        .copy(`oci:${(images[1] as ImageInfo).layout}:v1`, `docker://${readOnly.host}/ro/app:v2`)
        .catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(CommandError);
      // The upload's start refused: 405 UNSUPPORTED, as skopeo reports it.
      expect((refused as CommandError).result.stderr).toContain(
        'unsupported: the registry is in read-only mode for maintenance: POST refused, pulls only',
      );

      const refusal = async (response: Response, method: string) => {
        expect(response.status).toBe(405);
        const body = (await response.json()) as { errors: { code: string; message: string }[] };
        expect(body.errors[0]).toMatchObject({
          code: 'UNSUPPORTED',
          message: `the registry is in read-only mode for maintenance: ${method} refused, pulls only`,
        });
      };
      await refusal(await fetch(`${readOnly.url}/v2/ro/app/blobs/uploads/`, { method: 'POST' }), 'POST');
      await refusal(
        await fetch(`${readOnly.url}/v2/ro/app/manifests/v2`, {
          method: 'PUT',
          body: JSON.stringify({ schemaVersion: 2 }),
          headers: { 'Content-Type': OCI_MANIFEST },
        }),
        'PUT',
      );
      await refusal(
        await fetch(`${readOnly.url}/v2/ro/app/manifests/${image.manifest.digest}`, { method: 'DELETE' }),
        'DELETE',
      );
      expect(await tagsOf('ro/app', readOnly)).toEqual(['v1']);
    } finally {
      await readOnly.stop();
    }
    expect((await server().getManifest('ro/app', 'v1', 'HEAD')).status).toBe(200);
  });
});
