/**
 * What the storage lifecycle suites share on both runtimes (lifecycle.test.ts on the standalone
 * server, lifecycle-aws.test.ts on the local AWS emulation): the scenarios, pushed with skopeo, and
 * what they check of a registry whatever its storage.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { CommandError } from './exec.js';
import type { ImageInfo } from './images.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Digests of every blob whose bytes the filesystem storage under root holds. */
export async function storedBlobsOnDisk(root: string): Promise<Set<string>> {
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

/** Pushes image to ref (repository:tag) of the registry under test. */
export type Push = (image: ImageInfo, ref: string) => Promise<unknown>;
/** Pulls ref and checks every blob against image's, byte for byte. */
export type PullAndVerify = (ref: string, image: ImageInfo) => Promise<void>;

/**
 * With `immutability: [{repositories: ["prod/**"], except: ["latest"]}]`: an immutable tag refuses
 * another manifest (DENIED, as skopeo reports it) and takes the same one again; the excepted tag and
 * other repositories' tags move.
 */
export async function checkImmutability(
  push: Push,
  pullAndVerify: PullAndVerify,
  a: ImageInfo,
  b: ImageInfo,
) {
  await push(a, 'prod/api:v1.0.0');
  await push(a, 'prod/api:v1.0.0'); // a retried CI job
  const refused = await push(b, 'prod/api:v1.0.0').catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(CommandError);
  expect((refused as CommandError).result.stderr).toContain(
    `denied: tag v1.0.0 in repository prod/api is immutable: it already points at ${a.manifest.digest}`,
  );
  await pullAndVerify('prod/api:v1.0.0', a);

  await push(a, 'prod/api:latest');
  await push(b, 'prod/api:latest');
  await pullAndVerify('prod/api:latest', b);
  // Outside the rule's repositories, tags move as usual.
  await push(a, 'dev/api:v1.0.0');
  await push(b, 'dev/api:v1.0.0');
  await pullAndVerify('dev/api:v1.0.0', b);
}

/** The retention policy the retention scenario is written for. */
export const RETENTION = [
  {
    repositories: ['ci/**'],
    protect: ['latest'],
    rules: [
      { tags: ['main-*'], keeplast: 2 },
      { tags: ['pr-*'], olderthan: '2s' },
      { untagged: true, olderthan: '2s' },
    ],
  },
];

export interface RetentionScenario {
  /** The images that must survive, by tag. */
  kept: Record<'main-2' | 'main-3' | 'latest', ImageInfo>;
  /** The images that must go, manifests and blobs. */
  removedImages: ImageInfo[];
  /** The manifests that must go: those images' and main-1's signature. */
  removedManifests: string[];
}

/**
 * Pushes ci/app under RETENTION: pr-7 and an untagged image older than the rules' 2s, then main-1..3
 * and latest, and a signature of main-1 through the referrers API (skopeo cannot push one). A run
 * must then remove main-1 (beyond keeplast 2) with its signature, pr-7 and the untagged image.
 */
export async function pushRetentionScenario(
  push: Push,
  url: string,
  images: ImageInfo[],
): Promise<RetentionScenario> {
  const [m1, m2, m3, pr, latest, untagged] = images as [
    ImageInfo,
    ImageInfo,
    ImageInfo,
    ImageInfo,
    ImageInfo,
    ImageInfo,
  ];
  await push(pr, 'ci/app:pr-7');
  await push(untagged, 'ci/app:tmp');
  expect((await fetch(`${url}/v2/ci/app/manifests/tmp`, { method: 'DELETE' })).status).toBe(202);
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
  const signature = await pushReferrer(url, 'ci/app', m1.manifest);
  // Stores that give times in whole seconds (S3) make what was written in the last second before a
  // run recent, even with no grace period.
  await sleep(1_500);
  return {
    kept: { 'main-2': m2, 'main-3': m3, latest },
    removedImages: [m1, pr, untagged],
    removedManifests: [m1.manifest.digest, pr.manifest.digest, untagged.manifest.digest, signature],
  };
}

/** Pushes an artifact manifest whose subject is the given manifest; answers its digest. */
export async function pushReferrer(
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
