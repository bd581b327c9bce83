// The standalone server on Azure Blob Storage (Azurite, from npm): skopeo pushes an image, then skopeo
// and containerd pull it back, following the registry's redirects to Azurite (a read-only SAS URL per
// blob, which Azurite verifies), and every digest is compared.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Containerd, Skopeo } from './harness/clients.js';
import { makeTempDir, removeTempDir } from './harness/exec.js';
import { type ImageInfo, verifyLayoutBlobs, writeRandomImage } from './harness/images.js';
import { allDigests, layoutRefDigest } from './harness/local-aws.js';
import { RegistryUnderTest } from './harness/registry.js';
import { expectManifestDigest } from './harness/suite.js';

describe('the standalone server on Azure Blob Storage (Azurite)', () => {
  let registry: RegistryUnderTest;
  let skopeo: Skopeo;
  let containerd: Containerd;
  let dir: string;
  let image: ImageInfo;

  beforeAll(async () => {
    registry = await RegistryUnderTest.start('ours', { storage: 'azurite' });
    [skopeo, containerd] = await Promise.all([Skopeo.create(), Containerd.start()]);
    dir = await makeTempDir('azure-e2e');
    image = await writeRandomImage(join(dir, 'image'), 'azure e2e', [3 * 1024 * 1024, 1024 * 1024, 200_000]);
  }, 300_000);
  afterAll(async () => {
    await containerd.stop();
    await skopeo.dispose();
    await registry.stop();
    await removeTempDir(dir);
  });

  /** Every blob GET of repo since mark answered 307 to a SAS URL of Azurite's container; their digests. */
  function redirectedBlobs(mark: number, repo: string): string[] {
    const gets = registry
      .since(mark)
      .filter((e) => e.method === 'GET' && e.url.startsWith(`/v2/${repo}/blobs/sha256:`));
    for (const e of gets) {
      expect(e.status, `GET ${e.url}`).toBe(307);
      expect(e.res.location, `Location of GET ${e.url}`).toMatch(
        /^http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/registry\/.*[?&]sp=r&.*sig=/,
      );
    }
    expect(registry.downloadedBlobBytesSince(mark, repo), 'blob bytes the registry served itself').toBe(0);
    return gets.map((e) => e.url.slice(`/v2/${repo}/blobs/`.length));
  }

  it('skopeo pushes the image', async () => {
    await skopeo.copy(`oci:${image.layout}:${image.tag}`, `docker://${registry.host}/azure/app:v1`);
    await expectManifestDigest(registry, 'azure/app', 'v1', image.manifest.digest);
  });

  it('skopeo pulls it back through redirects to Azurite, with identical blobs', async () => {
    const mark = registry.mark();
    const dest = join(dir, 'pulled');
    await skopeo.copy(`docker://${registry.host}/azure/app:v1`, `oci:${dest}:v1`);
    expect(await layoutRefDigest(dest)).toBe(image.manifest.digest);
    expect((await verifyLayoutBlobs(dest)).sort()).toEqual(allDigests(image).sort());
    expect(redirectedBlobs(mark, 'azure/app').sort()).toEqual(
      [image.config.digest, ...image.layers.map((l) => l.digest)].sort(),
    );
  });

  it('containerd pulls it through the same redirects, with identical content', async () => {
    const mark = registry.mark();
    const ref = `${registry.host}/azure/app:v1`;
    await containerd.pull('azure', ref);
    expect((await containerd.target('azure', ref)).digest).toBe(image.manifest.digest);
    for (const digest of allDigests(image))
      expect(await containerd.contentDigest('azure', digest)).toBe(digest);
    expect(redirectedBlobs(mark, 'azure/app').length).toBeGreaterThanOrEqual(image.layers.length);
  });
});
