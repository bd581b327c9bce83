/** What the suites against the local AWS deployment (dist/local-aws.mjs) share. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { expect } from 'vitest';
import type { GcEvent, GcSummary } from '../../../functions/handlers/gc.js';
import { CommandError } from './exec.js';
import type { ImageInfo } from './images.js';
import { LOCAL_AWS_CREDENTIALS, LOCAL_AWS_LISTENING, type RegistryUnderTest } from './registry.js';

export const MIB = 1024 * 1024;

/** The esbuild command of `npm run local:aws`. */
export const ESBUILD_ARGS = [
  'esbuild',
  'bin/local-aws.ts',
  '--bundle',
  '--platform=node',
  '--target=node20',
  '--format=esm',
  '--packages=external',
  '--sourcemap',
  '--log-level=warning',
  '--outfile=dist/local-aws.mjs',
];

export function allDigests(image: ImageInfo): string[] {
  return [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)];
}

export function layerDigests(manifest: Record<string, unknown>): string[] {
  return (manifest as unknown as { layers: { digest: string }[] }).layers.map((l) => l.digest);
}

export async function layoutRefDigest(layout: string): Promise<string | undefined> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  return index.manifests[0]?.digest;
}

/** The listening line dist/local-aws.mjs logs: endpoints, bucket, table, secrets. */
export async function localAwsDescription(registry: RegistryUnderTest): Promise<Record<string, string>> {
  const line = (await readFile(registry.logFile, 'utf8'))
    .split('\n')
    .find((l) => l.includes(LOCAL_AWS_LISTENING));
  if (line === undefined) throw new Error(`no listening line in ${registry.logFile}`);
  return JSON.parse(line) as Record<string, string>;
}

/** The output of a client command that had to fail (its error in `stderr`), and how long it took. */
export async function failureOf(
  command: Promise<unknown>,
): Promise<{ stderr: string; output: string; ms: number }> {
  const started = performance.now();
  try {
    await command;
  } catch (err) {
    const ms = performance.now() - started;
    if (!(err instanceof CommandError)) throw err;
    const { stderr, stdout } = err.result;
    return { stderr, output: `${stderr}\n${stdout}`, ms };
  }
  throw new Error('the command succeeded, but it had to fail');
}

/**
 * Asserts that every blob GET of `repo` since `mark` was answered 307 with a presigned URL of the S3
 * bucket (no blob bytes through the Lambda), that `digests` were among them, and returns the locations.
 */
export async function expectBlobRedirects(
  registry: RegistryUnderTest,
  mark: number,
  repo: string,
  digests: readonly string[],
): Promise<Map<string, string>> {
  const { s3: endpoint, bucket } = await localAwsDescription(registry);
  const gets = registry
    .since(mark)
    .filter((e) => e.method === 'GET' && e.url.startsWith(`/v2/${repo}/blobs/sha256:`));
  const locations = new Map<string, string>();
  for (const e of gets) {
    expect(e.status, `GET ${e.url}`).toBe(307);
    const location = e.res.location ?? '';
    expect(location, `Location of GET ${e.url}`).toMatch(
      new RegExp(`^${(endpoint ?? '').replace(/[.]/g, '\\.')}/${bucket ?? ''}/.*[?&]X-Amz-Signature=`),
    );
    locations.set(e.url.slice(`/v2/${repo}/blobs/`.length), location);
  }
  for (const digest of digests) expect([...locations.keys()], `blob GETs of ${repo}`).toContain(digest);
  expect(registry.downloadedBlobBytesSince(mark, repo), 'blob bytes served through the Lambda').toBe(0);
  return locations;
}

/**
 * Runs the garbage collection function of a local-aws started with StartOptions.gc now, as an operator
 * does on AWS (`aws lambda invoke`): a synchronous Invoke (RequestResponse) of the function its
 * listening line names, at the local Lambda's endpoint, signed with the function's credentials.
 * Returns the function's result; throws with its error when the invocation failed.
 */
export async function invokeGarbageCollection(
  registry: RegistryUnderTest,
  event: GcEvent = {},
): Promise<GcSummary> {
  const { lambda: endpoint, gcFunction, region } = await localAwsDescription(registry);
  if (endpoint === undefined || gcFunction === undefined) {
    throw new Error('e2e: this local-aws runs no garbage collection function (StartOptions.gc)');
  }
  const client = new LambdaClient({ endpoint, region, credentials: LOCAL_AWS_CREDENTIALS, maxAttempts: 1 });
  try {
    const result = await client.send(
      new InvokeCommand({
        FunctionName: gcFunction,
        InvocationType: 'RequestResponse',
        Payload: new TextEncoder().encode(JSON.stringify(event)),
      }),
    );
    const payload = new TextDecoder().decode(result.Payload);
    if (result.StatusCode !== 200 || result.FunctionError !== undefined) {
      throw new Error(
        `e2e: the garbage collection function failed (${String(result.StatusCode)} ${result.FunctionError ?? ''}): ${payload}`,
      );
    }
    return JSON.parse(payload) as GcSummary;
  } finally {
    client.destroy();
  }
}
