// Per-file setup shared by the client suites: the registry under test, the test images, failure diagnostics
// (registry log + HTTP exchanges + daemon logs), timings, and the protocol-level assertions.
import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import { Timings } from './exec.js';
import { testImages, type Descriptor, type ImageInfo, type TestImages } from './images.js';
import { RegistryUnderTest } from './registry.js';

export interface SuiteContext {
  registry: RegistryUnderTest;
  images: TestImages;
  timings: Timings;
}

/**
 * Registers beforeAll/afterAll/beforeEach hooks that start the registry under test (E2E_REGISTRY) and load
 * the test images; the returned object is filled in by beforeAll. `diagnostics` adds client daemon logs to
 * failure reports.
 */
export function setupSuite(
  name: string,
  diagnostics: () => Promise<string> = () => Promise.resolve(''),
): SuiteContext {
  const ctx = { timings: new Timings(name) } as SuiteContext;
  let started = false;
  beforeAll(async () => {
    ctx.images = await ctx.timings.time('test images (build or verify cache)', () => testImages());
    ctx.registry = await ctx.timings.time('start registry', () => RegistryUnderTest.start());
    started = true;
    console.log(`e2e [${name}]: registry under test: ${ctx.registry.kind} at ${ctx.registry.url}`);
  });
  beforeEach(({ onTestFailed }) => {
    onTestFailed(async () => {
      if (!started) return;
      console.error(
        `e2e [${name}] failure diagnostics\n${await ctx.registry.diagnostics()}\n${await diagnostics()}`,
      );
    });
  });
  afterAll(async () => {
    if (started) await ctx.registry.stop();
    console.log(ctx.timings.report());
  });
  return ctx;
}

/**
 * Asserts that the registry serves `repo:ref` and that HEAD and GET both report `digest`, which is also the
 * sha256 of the bytes GET returns. Returns the parsed manifest.
 */
export async function expectManifestDigest(
  registry: RegistryUnderTest,
  repo: string,
  ref: string,
  digest: string,
): Promise<Record<string, unknown>> {
  const head = await registry.getManifest(repo, ref, 'HEAD');
  expect(head.status, `HEAD /v2/${repo}/manifests/${ref}`).toBe(200);
  expect(head.headerDigest, `HEAD /v2/${repo}/manifests/${ref} Docker-Content-Digest`).toBe(digest);
  const get = await registry.getManifest(repo, ref);
  expect(get.status, `GET /v2/${repo}/manifests/${ref}`).toBe(200);
  expect(get.bodyDigest, `sha256 of the bytes of GET /v2/${repo}/manifests/${ref}`).toBe(digest);
  expect(get.headerDigest, `GET /v2/${repo}/manifests/${ref} Docker-Content-Digest`).toBe(digest);
  const manifest = JSON.parse(get.body.toString('utf8')) as Record<string, unknown>;
  expect(get.contentType.split(';')[0]).toBe(manifest.mediaType);
  return manifest;
}

interface ManifestJson {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

/**
 * Checks a manifest a client pushed (possibly recompressing the layers): same config blob as the source,
 * and every layer blob in the registry hashes to its digest and decompresses to the source's diff ID.
 */
export async function expectSameImageContent(
  registry: RegistryUnderTest,
  repo: string,
  manifest: Record<string, unknown>,
  source: ImageInfo,
): Promise<void> {
  const { config, layers } = manifest as unknown as ManifestJson;
  expect(config.digest, 'config blob digest').toBe(source.config.digest);
  expect(layers).toHaveLength(source.layers.length);
  for (const [i, layer] of layers.entries()) {
    const blob = await registry.blob(repo, layer.digest, true);
    expect(blob, `layer ${i + 1} of ${repo}`).toEqual({
      status: 200,
      digest: layer.digest,
      size: layer.size,
      diffId: source.layers[i]?.diffId,
    });
  }
}

/** Asserts that every digest was mounted into `repo` from `from` with a 201, and no big upload happened. */
export function expectMounted(
  registry: RegistryUnderTest,
  mark: number,
  repo: string,
  from: string,
  digests: readonly string[],
): void {
  const mounts = registry.mountsSince(mark, repo);
  for (const digest of digests) {
    expect(
      mounts,
      `a POST /v2/${repo}/blobs/uploads/?mount=${digest}&from=${from} answered 201`,
    ).toContainEqual({
      digest,
      from,
      status: 201,
    });
  }
  expect(registry.uploadedBytesSince(mark, repo), `blob bytes uploaded into ${repo}`).toBeLessThan(64 * 1024);
}
