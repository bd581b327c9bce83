/** The API root, repository names, routing and the registry's modes (deletes disabled, read-only). */
import { describe, expect, it } from 'vitest';
import {
  bodyOf,
  encode,
  expectError,
  expectSameBytes,
  type MakeTarget,
  OCI_MANIFEST,
  pushBlob,
  pushImage,
  putManifest,
  startUpload,
  useTarget,
  withQuery,
} from './helpers.js';

export function describeRoot(makeTarget: MakeTarget): void {
  describe('API version check', () => {
    const api = useTarget(makeTarget);

    it('answers GET /v2/ with 200 and Docker-Distribution-API-Version: registry/2.0', async () => {
      const response = await api.request('/v2/');
      expect(response.status).toBe(200);
      expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
      await response.body?.cancel();
    });

    it('answers HEAD /v2/ with 200 and no body', async () => {
      // RFC 9110 9.3.2: a response to HEAD has no content, whichever layer would drop it.
      const response = await api.request('/v2/', { method: 'HEAD' });
      expect(response.status).toBe(200);
      expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
      expect((await bodyOf(response)).byteLength).toBe(0);
    });

    it('sends Docker-Distribution-API-Version on error responses too', async () => {
      for (const path of ['/v2/app/manifests/missing', '/v2/Upper/tags/list', '/v2/app/blobs/sha256:bad']) {
        const response = await api.request(path);
        expect(response.status).toBeGreaterThanOrEqual(400);
        expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
        await response.body?.cancel();
      }
      const unsupported = await api.request('/v2/app/manifests/v1', { method: 'PATCH' });
      expect(unsupported.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
      await unsupported.body?.cancel();
    });
  });
}

export function describeNamesAndRoutes(makeTarget: MakeTarget): void {
  describe('repository names and routes', () => {
    const api = useTarget(makeTarget);

    it.each([
      ['uppercase letters', 'Library/App'],
      ['an empty path component (a//b)', 'a//b'],
      ['256 characters', 'a'.repeat(256)],
      ['a trailing separator', 'app-'],
      ['a leading separator', '_app'],
    ])('answers a name with %s with 400 NAME_INVALID', async (_what, name) => {
      await expectError(await api.request(`/v2/${name}/tags/list`), 'NAME_INVALID', 400);
      await expectError(await api.request(`/v2/${name}/manifests/latest`), 'NAME_INVALID', 400);
      await expectError(
        await api.request(`/v2/${name}/blobs/uploads/`, { method: 'POST' }),
        'NAME_INVALID',
        400,
      );
    });

    it('accepts a name of 255 characters', async () => {
      await expectError(await api.request(`/v2/${'a'.repeat(255)}/tags/list`), 'NAME_UNKNOWN', 404);
    });

    it('serves nested names (a/b/c) like any other', async () => {
      const pushed = await pushImage(api, 'a/b/c', { tag: 'v1' });
      const response = await api.request('/v2/a/b/c/manifests/v1');
      expect(response.status).toBe(200);
      expectSameBytes(await bodyOf(response), pushed.bytes);
      const tags = await api.request('/v2/a/b/c/tags/list');
      expect(await tags.json()).toEqual({ name: 'a/b/c', tags: ['v1'] });
      // The parent is not a repository of its own.
      await expectError(await api.request('/v2/a/b/tags/list'), 'NAME_UNKNOWN', 404);
    });

    it('keeps names that look like API paths apart (a repository named x/tags)', async () => {
      const pushed = await pushImage(api, 'x/tags', { tag: 'v1' });
      const tags = await api.request('/v2/x/tags/tags/list');
      expect(await tags.json()).toEqual({ name: 'x/tags', tags: ['v1'] });
      const response = await api.request('/v2/x/tags/manifests/v1');
      expectSameBytes(await bodyOf(response), pushed.bytes);
    });

    it.each([['/v2/app/unknown/thing'], ['/v2/app/manifests/'], ['/v2/app'], ['/v3/']])(
      // Only the status: distribution answers unrouted paths with a plain-text 404, not an error body.
      'answers an unknown path (%s) with 404',
      async (path) => {
        const response = await api.request(path);
        expect(response.status).toBe(404);
        await response.body?.cancel();
      },
    );

    it.each([
      ['PATCH', '/v2/app/manifests/v1', ['GET', 'HEAD', 'PUT', 'DELETE']],
      ['POST', '/v2/app/tags/list', ['GET']],
      ['PUT', '/v2/app/blobs/uploads/', ['POST']],
      ['DELETE', '/v2/', ['GET', 'HEAD']],
    ])('answers %s on %s with 405 UNSUPPORTED and an Allow header', async (method, path, allowed) => {
      const response = await api.request(path, { method, body: encode('{}') });
      expect(response.status).toBe(405);
      const allow = (response.headers.get('allow') ?? '').split(',').map((entry) => entry.trim());
      expect(allow.sort()).toEqual([...allowed].sort());
      await expectError(response, 'UNSUPPORTED', 405);
    });
  });
}

export function describeModes(makeTarget: MakeTarget): void {
  describe('with deletes disabled', () => {
    const api = useTarget(makeTarget, { deleteEnabled: false });

    it('answers manifest and blob DELETEs with 405 UNSUPPORTED and keeps the content', async () => {
      const pushed = await pushImage(api, 'modes/app', { tag: 'v1' });
      const blob = await pushBlob(api, 'modes/app', encode('a blob'));
      for (const path of [
        '/v2/modes/app/manifests/v1',
        `/v2/modes/app/manifests/${pushed.digest}`,
        `/v2/modes/app/blobs/${blob.digest}`,
      ]) {
        await expectError(await api.request(path, { method: 'DELETE' }), 'UNSUPPORTED', 405);
        const head = await api.request(path, { method: 'HEAD' });
        expect(head.status).toBe(200);
      }
    });
  });

  describe('read-only', () => {
    const api = useTarget(makeTarget);

    it('answers pushes and deletes with 405 UNSUPPORTED while pulls keep working', async () => {
      const pushed = await pushImage(api, 'modes/app', { tag: 'v1' });
      const content = encode('seeded blob');
      const blob = await pushBlob(api, 'modes/app', content);
      const session = await startUpload(api, 'modes/app');
      const readOnly = await api.reopen({ readOnly: true });

      // Pushes.
      await expectError(
        await readOnly.request('/v2/modes/app/blobs/uploads/', { method: 'POST' }),
        'UNSUPPORTED',
        405,
      );
      await expectError(
        await readOnly.request(`/v2/modes/app/blobs/uploads/?digest=${blob.digest}`, {
          method: 'POST',
          body: content,
        }),
        'UNSUPPORTED',
        405,
      );
      await expectError(
        await readOnly.request(session, { method: 'PATCH', body: encode('more') }),
        'UNSUPPORTED',
        405,
      );
      await expectError(
        await readOnly.request(withQuery(session, { digest: blob.digest }), { method: 'PUT', body: content }),
        'UNSUPPORTED',
        405,
      );
      await expectError(await putManifest(readOnly, 'modes/app', 'v2', pushed.bytes), 'UNSUPPORTED', 405);
      // Deletes.
      for (const path of ['/v2/modes/app/manifests/v1', `/v2/modes/app/blobs/${blob.digest}`, session]) {
        await expectError(await readOnly.request(path, { method: 'DELETE' }), 'UNSUPPORTED', 405);
      }

      // Pulls.
      const manifest = await readOnly.request('/v2/modes/app/manifests/v1');
      expect(manifest.status).toBe(200);
      expect(manifest.headers.get('content-type')).toBe(OCI_MANIFEST);
      expectSameBytes(await bodyOf(manifest), pushed.bytes);
      const head = await readOnly.request(`/v2/modes/app/manifests/${pushed.digest}`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      const blobResponse = await readOnly.request(`/v2/modes/app/blobs/${blob.digest}`);
      expect(blobResponse.status).toBe(200);
      expectSameBytes(await bodyOf(blobResponse), content);
      expect((await readOnly.request(`/v2/modes/app/blobs/${blob.digest}`, { method: 'HEAD' })).status).toBe(
        200,
      );
      expect(await (await readOnly.request('/v2/modes/app/tags/list')).json()).toEqual({
        name: 'modes/app',
        tags: ['v1'],
      });
      expect(await (await readOnly.request('/v2/_catalog')).json()).toEqual({ repositories: ['modes/app'] });
      expect((await readOnly.request('/v2/')).status).toBe(200);

      // Nothing changed underneath.
      expect((await api.request('/v2/modes/app/manifests/v2')).status).toBe(404);
      expect((await api.request(session)).status).toBe(204);
    });

    it('refuses every write on every route with the error body, a message naming the mode and an Allow header', async () => {
      const pushed = await pushImage(api, 'modes/app', { tag: 'v1' });
      const content = encode('seeded blob');
      const blob = await pushBlob(api, 'modes/app', content);
      const session = await startUpload(api, 'modes/app');
      const readOnly = await api.reopen({ readOnly: true });

      const writes: [string, string, RequestInit['body'], string][] = [
        ['POST', '/v2/modes/app/blobs/uploads/', undefined, ''],
        ['POST', `/v2/modes/app/blobs/uploads/?digest=${blob.digest}`, content, ''],
        ['POST', `/v2/modes/copy/blobs/uploads/?mount=${blob.digest}&from=modes/app`, undefined, ''],
        ['PATCH', session, encode('more'), 'GET'],
        ['PUT', withQuery(session, { digest: blob.digest }), content, 'GET'],
        ['DELETE', session, undefined, 'GET'],
        ['PUT', '/v2/modes/app/manifests/v2', pushed.bytes, 'GET, HEAD'],
        ['PUT', `/v2/modes/app/manifests/${pushed.digest}`, pushed.bytes, 'GET, HEAD'],
        ['DELETE', '/v2/modes/app/manifests/v1', undefined, 'GET, HEAD'],
        ['DELETE', `/v2/modes/app/manifests/${pushed.digest}`, undefined, 'GET, HEAD'],
        ['DELETE', `/v2/modes/app/blobs/${blob.digest}`, undefined, 'GET, HEAD'],
      ];
      for (const [method, path, body, allow] of writes) {
        const headers = path.includes('/manifests/') ? { 'Content-Type': OCI_MANIFEST } : undefined;
        const response = await readOnly.request(path, { method, body, headers });
        expect(response.status, `${method} ${path}`).toBe(405);
        expect(response.headers.get('allow'), `${method} ${path}`).toBe(allow);
        expect(response.headers.get('content-type')).toMatch(/^application\/json/);
        expect(await response.json()).toEqual({
          errors: [
            {
              code: 'UNSUPPORTED',
              message: `the registry is in read-only mode for maintenance: ${method} refused, pulls only`,
              detail: null,
            },
          ],
        });
      }

      // Nothing changed underneath.
      expect((await api.request('/v2/modes/app/manifests/v1')).status).toBe(200);
      expect((await api.request(`/v2/modes/app/manifests/${pushed.digest}`)).status).toBe(200);
      expect((await api.request(`/v2/modes/app/blobs/${blob.digest}`, { method: 'HEAD' })).status).toBe(200);
      expect((await api.request(`/v2/modes/copy/blobs/${blob.digest}`, { method: 'HEAD' })).status).toBe(404);
      expect((await api.request(session)).status).toBe(204);
    });

    it('keeps serving referrers and upload status', async () => {
      const subject = await pushImage(api, 'modes/app', { tag: 'v1' });
      const referrer = await pushImage(api, 'modes/app', {
        fields: {
          artifactType: 'application/vnd.example.sbom.v1+json',
          subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.byteLength },
        },
      });
      const session = await startUpload(api, 'modes/app');
      const readOnly = await api.reopen({ readOnly: true });

      const response = await readOnly.request(`/v2/modes/app/referrers/${subject.digest}`);
      expect(response.status).toBe(200);
      const index = (await response.json()) as { manifests: { digest: string; artifactType?: string }[] };
      expect(index.manifests.map((descriptor) => descriptor.digest)).toEqual([referrer.digest]);
      expect(index.manifests[0]?.artifactType).toBe('application/vnd.example.sbom.v1+json');

      const status = await readOnly.request(session);
      expect(status.status).toBe(204);
      expect(status.headers.get('range')).toBe('0-0');
    });
  });
}
