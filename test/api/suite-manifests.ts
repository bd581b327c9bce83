/** Manifests: push, pull, validation, the manifest kinds, subjects, deletes and tags. */
import { describe, expect, it } from 'vitest';
import { type ImmutabilityRule, isImmutable } from '../../functions/maintenance/policies.js';
import {
  type Api,
  bodyOf,
  DOCKER_CONFIG,
  DOCKER_LAYER,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  encode,
  expectError,
  expectSameBytes,
  type MakeTarget,
  manifestBytes,
  manifestDescriptor,
  OCI_CONFIG,
  OCI_EMPTY,
  OCI_INDEX,
  OCI_LAYER,
  OCI_MANIFEST,
  pathOf,
  pushDescriptor,
  pushImage,
  pushManifest,
  putManifest,
  randomContent,
  sha256,
  sha512,
  streamed,
  useTarget,
} from './helpers.js';

const REPO = 'manifests/app';

/** A config and a layer in REPO, and an OCI image manifest naming them (not pushed). */
async function imageManifest(api: Api, repository = REPO): Promise<Record<string, unknown>> {
  const config = await pushDescriptor(
    api,
    repository,
    OCI_CONFIG,
    encode('{"architecture":"arm64","os":"linux"}'),
  );
  const layer = await pushDescriptor(api, repository, OCI_LAYER, randomContent(100));
  return { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] };
}

async function expectManifest(
  api: Api,
  reference: string,
  expected: { digest: string; bytes: Uint8Array },
  mediaType = OCI_MANIFEST,
): Promise<void> {
  const response = await api.request(`/v2/${REPO}/manifests/${reference}`, {
    headers: { Accept: mediaType },
  });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe(mediaType);
  expect(response.headers.get('docker-content-digest')).toBe(expected.digest);
  expectSameBytes(await bodyOf(response), expected.bytes);
}

export function describeManifests(makeTarget: MakeTarget): void {
  describe('manifests', () => {
    const api = useTarget(makeTarget);

    it('accepts an OCI image manifest by tag: 201, Location by digest, Docker-Content-Digest of the exact bytes', async () => {
      const bytes = manifestBytes(await imageManifest(api));
      const digest = sha256(bytes);
      const response = await putManifest(api, REPO, 'v1', bytes);
      expect(response.status).toBe(201);
      expect(response.headers.get('docker-content-digest')).toBe(digest);
      expect(pathOf(response.headers.get('location'))).toBe(`/v2/${REPO}/manifests/${digest}`);
    });

    it('serves the exact bytes by tag and by digest, with Content-Type and Docker-Content-Digest', async () => {
      const pushed = await pushImage(api, REPO, { tag: 'v1' });
      await expectManifest(api, 'v1', pushed);
      await expectManifest(api, pushed.digest, pushed);
    });

    it('answers HEAD with Content-Length, Content-Type, Docker-Content-Digest and no body', async () => {
      const pushed = await pushImage(api, REPO, { tag: 'v1' });
      for (const reference of ['v1', pushed.digest]) {
        const response = await api.request(`/v2/${REPO}/manifests/${reference}`, { method: 'HEAD' });
        expect(response.status).toBe(200);
        expect(response.headers.get('content-length')).toBe(String(pushed.bytes.byteLength));
        expect(response.headers.get('content-type')).toBe(OCI_MANIFEST);
        expect(response.headers.get('docker-content-digest')).toBe(pushed.digest);
        expect((await bodyOf(response)).byteLength).toBe(0);
      }
    });

    it('accepts a PUT by digest when the digest matches the bytes', async () => {
      const bytes = manifestBytes(await imageManifest(api));
      const digest = sha256(bytes);
      const response = await putManifest(api, REPO, digest, bytes);
      expect(response.status).toBe(201);
      expect(response.headers.get('docker-content-digest')).toBe(digest);
      expect(pathOf(response.headers.get('location'))).toBe(`/v2/${REPO}/manifests/${digest}`);
      await expectManifest(api, digest, { digest, bytes });
    });

    it('accepts a PUT by a sha512 digest and serves the manifest by it', async () => {
      const bytes = manifestBytes(await imageManifest(api));
      const digest = sha512(bytes);
      const response = await putManifest(api, REPO, digest, bytes);
      expect(response.status).toBe(201);
      expect(response.headers.get('docker-content-digest')).toBe(digest);
      await expectManifest(api, digest, { digest, bytes });
    });

    it('answers a PUT by a digest that does not match the bytes with 400 DIGEST_INVALID', async () => {
      const bytes = manifestBytes(await imageManifest(api));
      const other = sha256(encode('not the manifest'));
      await expectError(await putManifest(api, REPO, other, bytes), 'DIGEST_INVALID', 400);
      await expectError(await api.request(`/v2/${REPO}/manifests/${other}`), 'MANIFEST_UNKNOWN', 404);
    });

    it('answers a manifest naming a layer the repository lacks with 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const manifest = await imageManifest(api);
      const missing = { mediaType: OCI_LAYER, digest: sha256(encode('never pushed')), size: 12 };
      await expectError(
        await putManifest(api, REPO, 'v1', { ...manifest, layers: [missing] }),
        'MANIFEST_BLOB_UNKNOWN',
        400,
      );
    });

    it('answers a manifest whose layer is only in another repository with 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const manifest = await imageManifest(api, 'manifests/elsewhere');
      await expectError(await putManifest(api, REPO, 'v1', manifest), 'MANIFEST_BLOB_UNKNOWN', 400);
    });

    it('answers a manifest giving a layer the wrong size with 400 MANIFEST_INVALID', async () => {
      const layer = await pushDescriptor(api, REPO, OCI_LAYER, randomContent(100));
      const manifest = await imageManifest(api);
      await expectError(
        await putManifest(api, REPO, 'v1', { ...manifest, layers: [{ ...layer, size: 99 }] }),
        'MANIFEST_INVALID',
        400,
      );
    });

    it.each<[string, (manifest: Record<string, unknown>) => { body: Uint8Array; contentType: string }]>([
      ['invalid JSON', () => ({ body: encode('{"schemaVersion": 2, '), contentType: OCI_MANIFEST })],
      [
        'schemaVersion 3',
        (manifest) => ({ body: manifestBytes({ ...manifest, schemaVersion: 3 }), contentType: OCI_MANIFEST }),
      ],
      [
        'a Content-Type disagreeing with the mediaType in the body',
        (manifest) => ({ body: manifestBytes(manifest), contentType: DOCKER_MANIFEST }),
      ],
      [
        'schema 1 (signed)',
        () => ({
          body: manifestBytes({
            schemaVersion: 1,
            name: REPO,
            tag: 'v1',
            architecture: 'amd64',
            fsLayers: [{ blobSum: sha256(encode('layer')) }],
            history: [{ v1Compatibility: '{}' }],
            signatures: [],
          }),
          contentType: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
        }),
      ],
      [
        'a body with "schemaVersion": 1 under a generic Content-Type',
        (manifest) => ({
          body: manifestBytes({ ...manifest, schemaVersion: 1 }),
          contentType: 'application/json',
        }),
      ],
      ['a JSON array', () => ({ body: encode('[]'), contentType: OCI_MANIFEST })],
      [
        'layers that are not an array',
        (manifest) => ({ body: manifestBytes({ ...manifest, layers: {} }), contentType: OCI_MANIFEST }),
      ],
    ])('answers %s with 400 MANIFEST_INVALID', async (_what, make) => {
      const { body, contentType } = make(await imageManifest(api));
      await expectError(await putManifest(api, REPO, 'v1', body, contentType), 'MANIFEST_INVALID', 400);
      await expectError(await api.request(`/v2/${REPO}/manifests/v1`), 'MANIFEST_UNKNOWN', 404);
    });

    it('answers a manifest over 4 MiB with 413', async () => {
      const manifest = await imageManifest(api);
      const body = manifestBytes({ ...manifest, annotations: { padding: 'x'.repeat(4 * 1024 * 1024) } });
      const response = await putManifest(api, REPO, 'v1', body);
      expect(response.status).toBe(413);
      await response.body?.cancel();
    });

    it('answers a streamed manifest over 4 MiB (no Content-Length) with 413', async () => {
      const manifest = await imageManifest(api);
      const body = manifestBytes({ ...manifest, annotations: { padding: 'x'.repeat(4 * 1024 * 1024) } });
      const response = await api.request(`/v2/${REPO}/manifests/v1`, {
        method: 'PUT',
        headers: { 'Content-Type': OCI_MANIFEST },
        ...streamed(body),
      });
      expect(response.status).toBe(413);
      await response.body?.cancel();
    });

    it('accepts a Docker schema 2 manifest and a Docker manifest list of it', async () => {
      const config = await pushDescriptor(
        api,
        REPO,
        DOCKER_CONFIG,
        encode('{"architecture":"amd64","os":"linux"}'),
      );
      const layer = await pushDescriptor(api, REPO, DOCKER_LAYER, randomContent(64));
      const image = await pushManifest(
        api,
        REPO,
        { schemaVersion: 2, mediaType: DOCKER_MANIFEST, config, layers: [layer] },
        DOCKER_MANIFEST,
        'amd64',
      );
      await expectManifest(api, 'amd64', image, DOCKER_MANIFEST);

      const list = await pushManifest(
        api,
        REPO,
        {
          schemaVersion: 2,
          mediaType: DOCKER_MANIFEST_LIST,
          manifests: [
            {
              ...manifestDescriptor(image, DOCKER_MANIFEST),
              platform: { architecture: 'amd64', os: 'linux' },
            },
          ],
        },
        DOCKER_MANIFEST_LIST,
        'latest',
      );
      await expectManifest(api, 'latest', list, DOCKER_MANIFEST_LIST);
      await expectManifest(api, list.digest, list, DOCKER_MANIFEST_LIST);
    });

    it('answers an OCI index naming a manifest the repository lacks with 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const image = await imageManifest(api);
      const bytes = manifestBytes(image);
      const index = {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_MANIFEST, digest: sha256(bytes), size: bytes.byteLength }],
      };
      await expectError(
        await putManifest(api, REPO, 'multi', index, OCI_INDEX),
        'MANIFEST_BLOB_UNKNOWN',
        400,
      );
    });

    it('accepts an OCI index whose manifests are present', async () => {
      const amd64 = await pushImage(api, REPO);
      const arm64 = await pushImage(api, REPO);
      const index = await pushManifest(
        api,
        REPO,
        {
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [
            { ...manifestDescriptor(amd64), platform: { architecture: 'amd64', os: 'linux' } },
            { ...manifestDescriptor(arm64), platform: { architecture: 'arm64', os: 'linux' } },
          ],
        },
        OCI_INDEX,
        'multi',
      );
      await expectManifest(api, 'multi', index, OCI_INDEX);
    });

    it('accepts an OCI artifact manifest with artifactType and the empty config', async () => {
      const empty = await pushDescriptor(api, REPO, OCI_EMPTY, encode('{}'));
      expect(empty.digest).toBe('sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
      const layer = await pushDescriptor(api, REPO, 'application/vnd.example.data.v1', randomContent(50));
      const artifact = await pushManifest(
        api,
        REPO,
        {
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'application/vnd.example.artifact.v1',
          config: empty,
          layers: [layer],
        },
        OCI_MANIFEST,
        'artifact',
      );
      await expectManifest(api, 'artifact', artifact);
    });

    it('answers a manifest with a subject with 201 and OCI-Subject, though the subject does not exist', async () => {
      const subject = {
        mediaType: OCI_MANIFEST,
        digest: sha256(encode('a manifest never pushed')),
        size: 123,
      };
      const bytes = manifestBytes({ ...(await imageManifest(api)), subject });
      const response = await putManifest(api, REPO, sha256(bytes), bytes);
      expect(response.status).toBe(201);
      expect(response.headers.get('oci-subject')).toBe(subject.digest);
      expect(response.headers.get('docker-content-digest')).toBe(sha256(bytes));
    });

    it('deletes a tag with 202: the tag is gone, the manifest stays by digest', async () => {
      const pushed = await pushImage(api, REPO, { tag: 'v1' });
      expect((await api.request(`/v2/${REPO}/manifests/v1`, { method: 'DELETE' })).status).toBe(202);
      await expectError(await api.request(`/v2/${REPO}/manifests/v1`), 'MANIFEST_UNKNOWN', 404);
      await expectManifest(api, pushed.digest, pushed);
    });

    it('deletes a manifest by digest with 202: the manifest and its tags are gone', async () => {
      const pushed = await pushImage(api, REPO, { tag: 'v1' });
      await putManifest(api, REPO, 'v1-alias', pushed.bytes);
      const kept = await pushImage(api, REPO, { tag: 'kept' });

      expect((await api.request(`/v2/${REPO}/manifests/${pushed.digest}`, { method: 'DELETE' })).status).toBe(
        202,
      );
      for (const reference of [pushed.digest, 'v1', 'v1-alias']) {
        await expectError(await api.request(`/v2/${REPO}/manifests/${reference}`), 'MANIFEST_UNKNOWN', 404);
      }
      await expectError(
        await api.request(`/v2/${REPO}/manifests/${pushed.digest}`, { method: 'DELETE' }),
        'MANIFEST_UNKNOWN',
        404,
      );
      await expectManifest(api, 'kept', kept);
      const tags = await api.request(`/v2/${REPO}/tags/list`);
      expect(((await tags.json()) as { tags: string[] }).tags).toEqual(['kept']);
    });

    it('scopes manifests to repositories: one pushed to one is 404 MANIFEST_UNKNOWN in another', async () => {
      const pushed = await pushImage(api, REPO, { tag: 'v1' });
      await pushImage(api, 'manifests/other', { tag: 'other' });
      for (const reference of ['v1', pushed.digest]) {
        await expectError(
          await api.request(`/v2/manifests/other/manifests/${reference}`),
          'MANIFEST_UNKNOWN',
          404,
        );
      }
    });

    it('answers an unknown tag or digest with 404 MANIFEST_UNKNOWN', async () => {
      await pushImage(api, REPO, { tag: 'v1' });
      const unknown = sha256(encode('unknown'));
      for (const reference of ['v2', unknown]) {
        await expectError(await api.request(`/v2/${REPO}/manifests/${reference}`), 'MANIFEST_UNKNOWN', 404);
        const head = await api.request(`/v2/${REPO}/manifests/${reference}`, { method: 'HEAD' });
        expect(head.status).toBe(404);
        expect((await bodyOf(head)).byteLength).toBe(0);
        await expectError(
          await api.request(`/v2/${REPO}/manifests/${reference}`, { method: 'DELETE' }),
          'MANIFEST_UNKNOWN',
          404,
        );
      }
    });

    it.each([
      ['starting with "-"', '-bad'],
      ['129 characters long', `a${'b'.repeat(128)}`],
      ['with a character outside the grammar', 'v1+build'],
      // The spec says only 400; distribution answers TAG_INVALID, others MANIFEST_INVALID: any error code will do.
    ])('refuses a tag %s with 400', async (_what, tag) => {
      const response = await putManifest(api, REPO, tag, await imageManifest(api));
      expect(response.status).toBe(400);
      const body = (await response.json()) as { errors: unknown[] };
      expect(body.errors.length).toBeGreaterThan(0);
    });

    it('accepts a tag of 128 characters', async () => {
      const tag = `A${'b'.repeat(127)}`;
      const pushed = await pushImage(api, REPO, { tag });
      await expectManifest(api, tag, pushed);
    });

    it('points a retagged tag at the new manifest, keeping the old one by digest', async () => {
      const first = await pushImage(api, REPO, { tag: 'latest' });
      const second = await pushImage(api, REPO, { tag: 'latest' });
      expect(second.digest).not.toBe(first.digest);
      await expectManifest(api, 'latest', second);
      await expectManifest(api, first.digest, first);
    });

    it('accepts the same manifest again under another tag', async () => {
      const pushed = await pushImage(api, REPO, { tag: 'v1' });
      const again = await putManifest(api, REPO, 'stable', pushed.bytes);
      expect(again.status).toBe(201);
      expect(again.headers.get('docker-content-digest')).toBe(pushed.digest);
      await expectManifest(api, 'stable', pushed);
      await expectManifest(api, 'v1', pushed);
    });
  });

  describe('immutable tags', () => {
    // As `immutability: [{repositories: ['manifests/**'], except: ['latest', 'dev-*']}]` configures.
    const rules: ImmutabilityRule[] = [
      { repositories: ['manifests/**'], tags: ['*'], except: ['latest', 'dev-*'] },
    ];
    const api = useTarget(makeTarget, {
      immutableTags: (repository, tag) => isImmutable(rules, repository, tag),
    });

    /** The digest a tag of repository points at (HEAD), or undefined when it points at none. */
    const taggedDigest = async (tag: string, repository = REPO) => {
      const response = await api.request(`/v2/${repository}/manifests/${tag}`, { method: 'HEAD' });
      return response.status === 200 ? response.headers.get('docker-content-digest') : undefined;
    };

    it('accepts the first push of a tag, and the same manifest again', async () => {
      const pushed = await pushImage(api, REPO, { tag: 'v1' });
      const again = await putManifest(api, REPO, 'v1', pushed.bytes);
      expect(again.status).toBe(201);
      expect(again.headers.get('docker-content-digest')).toBe(pushed.digest);
      await expectManifest(api, 'v1', pushed);
    });

    it('refuses to move the tag to another manifest with 403 DENIED, leaving the tag as it was', async () => {
      const first = await pushImage(api, REPO, { tag: 'v1' });
      const other = manifestBytes(await imageManifest(api));
      const response = await putManifest(api, REPO, 'v1', other);
      expect(response.status).toBe(403);
      expect(response.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await response.json()).toEqual({
        errors: [
          {
            code: 'DENIED',
            message:
              `tag v1 in repository ${REPO} is immutable: it already points at ${first.digest}; ` +
              'push a new tag instead',
            detail: { tag: 'v1', digest: first.digest },
          },
        ],
      });
      await expectManifest(api, 'v1', first);
      // Nothing of the refused push was recorded.
      await expectError(await api.request(`/v2/${REPO}/manifests/${sha256(other)}`), 'MANIFEST_UNKNOWN', 404);
      const tags = await api.request(`/v2/${REPO}/tags/list`);
      expect(((await tags.json()) as { tags: string[] }).tags).toEqual(['v1']);
    });

    it('moves an excepted tag freely', async () => {
      await pushImage(api, REPO, { tag: 'latest' });
      const second = await pushImage(api, REPO, { tag: 'latest' });
      await expectManifest(api, 'latest', second);
      await pushImage(api, REPO, { tag: 'dev-1' });
      const dev = await pushImage(api, REPO, { tag: 'dev-1' });
      expect(await taggedDigest('dev-1')).toBe(dev.digest);
    });

    it('moves a tag of a repository no rule names freely', async () => {
      await pushImage(api, 'mutable/app', { tag: 'v1' });
      const second = await pushImage(api, 'mutable/app', { tag: 'v1' });
      expect(await taggedDigest('v1', 'mutable/app')).toBe(second.digest);
    });

    it('takes pushes by digest as usual, without touching the tag', async () => {
      const first = await pushImage(api, REPO, { tag: 'v1' });
      const byDigest = await pushImage(api, REPO);
      await expectManifest(api, byDigest.digest, byDigest);
      await expectManifest(api, 'v1', first);
    });

    it('lets a tag be deleted, and then pushed anew to another manifest', async () => {
      await pushImage(api, REPO, { tag: 'v1' });
      expect((await api.request(`/v2/${REPO}/manifests/v1`, { method: 'DELETE' })).status).toBe(202);
      const second = await pushImage(api, REPO, { tag: 'v1' });
      await expectManifest(api, 'v1', second);
    });
  });
}
