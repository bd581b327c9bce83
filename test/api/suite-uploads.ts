/** Blob uploads (POST, PATCH, PUT, GET and DELETE of a session) and cross-repository mounts. */
import { describe, expect, it } from 'vitest';
import {
  type Api,
  bodyOf,
  EMPTY_DIGEST,
  encode,
  expectError,
  expectSameBytes,
  getBlob,
  type MakeTarget,
  pathOf,
  pushBlob,
  randomContent,
  sha256,
  sha512,
  startUpload,
  streamed,
  useTarget,
  withQuery,
} from './helpers.js';

const REPO = 'uploads/app';

async function blobBytes(api: Api, repository: string, digest: string): Promise<Uint8Array> {
  const { response } = await getBlob(api, repository, digest);
  expect(response.status).toBe(200);
  return bodyOf(response);
}

/** PATCHes one chunk with Content-Range start-end and asserts 202 with the session's progress. */
async function patchChunk(api: Api, location: string, chunk: Uint8Array, start: number): Promise<string> {
  const end = start + chunk.byteLength - 1;
  const response = await api.request(location, {
    method: 'PATCH',
    body: chunk,
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${end}` },
  });
  expect(response.status).toBe(202);
  expect(response.headers.get('range')).toBe(`0-${end}`);
  expect(response.headers.get('docker-upload-uuid')).toBeTruthy();
  return pathOf(response.headers.get('location'));
}

async function finish(api: Api, location: string, digest: string, body?: Uint8Array): Promise<Response> {
  return api.request(withQuery(location, { digest }), {
    method: 'PUT',
    ...(body === undefined ? {} : { body, headers: { 'Content-Type': 'application/octet-stream' } }),
  });
}

function expectBlobCreated(response: Response, repository: string, digest: string): void {
  expect(response.status).toBe(201);
  expect(response.headers.get('docker-content-digest')).toBe(digest);
  expect(pathOf(response.headers.get('location'))).toBe(`/v2/${repository}/blobs/${digest}`);
}

export function describeUploads(makeTarget: MakeTarget): void {
  describe('blob uploads', () => {
    const api = useTarget(makeTarget);

    it('accepts a monolithic upload: POST ?digest= with the bytes answers 201', async () => {
      const content = encode('a monolithic blob');
      const digest = sha256(content);
      const response = await api.request(`/v2/${REPO}/blobs/uploads/?digest=${digest}`, {
        method: 'POST',
        body: content,
        headers: { 'Content-Type': 'application/octet-stream' },
      });
      expectBlobCreated(response, REPO, digest);
      expectSameBytes(await blobBytes(api, REPO, digest), content);
    });

    it('starts a session with POST (202, Location, Range 0-0, Docker-Upload-UUID) and finishes it with a PUT carrying the bytes', async () => {
      const started = await api.request(`/v2/${REPO}/blobs/uploads/`, { method: 'POST' });
      expect(started.status).toBe(202);
      const location = pathOf(started.headers.get('location'));
      const uuid = started.headers.get('docker-upload-uuid');
      expect(uuid).toBeTruthy();
      expect(location).toContain(`/v2/${REPO}/blobs/uploads/`);
      expect(location).toContain(uuid ?? '');
      // distribution answers an empty session with "0-0" too.
      expect(started.headers.get('range')).toBe('0-0');

      const content = encode('put in one go');
      const digest = sha256(content);
      expectBlobCreated(await finish(api, location, digest, content), REPO, digest);
      expectSameBytes(await blobBytes(api, REPO, digest), content);
    });

    it('takes a streamed PATCH without Content-Range, then a PUT without a body', async () => {
      const content = randomContent(200 * 1024 + 7);
      const digest = sha256(content);
      const location = await startUpload(api, REPO);

      const patched = await api.request(location, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream' },
        ...streamed(content, 16 * 1024),
      });
      expect(patched.status).toBe(202);
      expect(patched.headers.get('range')).toBe(`0-${content.byteLength - 1}`);
      expect(patched.headers.get('docker-upload-uuid')).toBeTruthy();
      // Not a blob until the PUT.
      expect((await api.request(`/v2/${REPO}/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);

      expectBlobCreated(await finish(api, pathOf(patched.headers.get('location')), digest), REPO, digest);
      expectSameBytes(await blobBytes(api, REPO, digest), content);
    });

    it('takes chunked PATCHes with Content-Range, answering 202 and Range 0-(n-1) after each', async () => {
      const content = randomContent(3000);
      const digest = sha256(content);
      let location = await startUpload(api, REPO);
      for (const [start, end] of [
        [0, 1000],
        [1000, 1001],
        [1001, 3000],
      ] as const) {
        location = await patchChunk(api, location, content.slice(start, end), start);
      }
      expectBlobCreated(await finish(api, location, digest), REPO, digest);
      expectSameBytes(await blobBytes(api, REPO, digest), content);
    });

    it('refuses an out-of-order chunk with 416, the current Range and Location, and keeps the session', async () => {
      const content = randomContent(30);
      const digest = sha256(content);
      let location = await startUpload(api, REPO);
      location = await patchChunk(api, location, content.slice(0, 10), 0);

      const skipped = await api.request(location, {
        method: 'PATCH',
        body: content.slice(20, 30),
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': '20-29' },
      });
      expect(skipped.status).toBe(416);
      expect(skipped.headers.get('range')).toBe('0-9');
      expect(pathOf(skipped.headers.get('location'))).toBe(location);
      await skipped.body?.cancel();

      const status = await api.request(location);
      expect(status.status).toBe(204);
      expect(status.headers.get('range')).toBe('0-9');

      location = await patchChunk(api, location, content.slice(10, 30), 10);
      expectBlobCreated(await finish(api, location, digest), REPO, digest);
      expectSameBytes(await blobBytes(api, REPO, digest), content);
    });

    it('refuses a chunk whose Content-Length disagrees with its Content-Range with 416', async () => {
      const location = await startUpload(api, REPO);
      const response = await api.request(location, {
        method: 'PATCH',
        body: randomContent(5),
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': '0-9' },
      });
      expect(response.status).toBe(416);
      await response.body?.cancel();
    });

    it('refuses a streamed chunk (no Content-Length) that ends before its Content-Range with 416', async () => {
      const location = await startUpload(api, REPO);
      const response = await api.request(location, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': '0-9' },
        ...streamed(randomContent(5)),
      });
      expect(response.status).toBe(416);
      await response.body?.cancel();
    });

    it('answers a PUT with the wrong digest with 400 DIGEST_INVALID and forgets the session', async () => {
      const content = encode('the real bytes');
      const location = await startUpload(api, REPO);
      const wrong = sha256(encode('other bytes'));
      await expectError(await finish(api, location, wrong, content), 'DIGEST_INVALID', 400);
      await expectError(await api.request(location), 'BLOB_UPLOAD_UNKNOWN', 404);
      expect((await api.request(`/v2/${REPO}/blobs/${wrong}`, { method: 'HEAD' })).status).toBe(404);
      expect((await api.request(`/v2/${REPO}/blobs/${sha256(content)}`, { method: 'HEAD' })).status).toBe(
        404,
      );
    });

    it('answers a PUT without a digest with 400 DIGEST_INVALID', async () => {
      const location = await startUpload(api, REPO);
      const response = await api.request(location, { method: 'PUT', body: encode('bytes') });
      await expectError(response, 'DIGEST_INVALID', 400);
    });

    it('accepts a sha512 digest and serves the blob by it', async () => {
      const content = encode('hashed with sha512');
      const digest = sha512(content);
      const location = await startUpload(api, REPO);
      expectBlobCreated(await finish(api, location, digest, content), REPO, digest);
      expectSameBytes(await blobBytes(api, REPO, digest), content);
    });

    it.each([
      ['an unsupported algorithm', `md5:${'0'.repeat(32)}`],
      ['a digest without an algorithm', '0'.repeat(64)],
      ['a short sha256', 'sha256:abc'],
      ['non-hex sha256', `sha256:${'g'.repeat(64)}`],
      ['an empty hex part', 'sha256:'],
    ])('answers 400 DIGEST_INVALID for %s', async (_what, digest) => {
      const location = await startUpload(api, REPO);
      await expectError(await finish(api, location, digest, encode('x')), 'DIGEST_INVALID', 400);
      const monolithic = await api.request(
        `/v2/${REPO}/blobs/uploads/?digest=${encodeURIComponent(digest)}`,
        {
          method: 'POST',
          body: encode('x'),
        },
      );
      await expectError(monolithic, 'DIGEST_INVALID', 400);
    });

    it('reports a session with GET: 204, Range, Location and Docker-Upload-UUID', async () => {
      const location = await startUpload(api, REPO);
      await patchChunk(api, location, randomContent(42), 0);
      const response = await api.request(location);
      expect(response.status).toBe(204);
      expect(response.headers.get('range')).toBe('0-41');
      expect(pathOf(response.headers.get('location'))).toBe(location);
      expect(response.headers.get('docker-upload-uuid')).toBeTruthy();
      expect(response.headers.get('content-length') ?? '0').toBe('0');
    });

    it('cancels a session with DELETE (204), after which it is 404 BLOB_UPLOAD_UNKNOWN', async () => {
      const location = await startUpload(api, REPO);
      await patchChunk(api, location, randomContent(10), 0);
      expect((await api.request(location, { method: 'DELETE' })).status).toBe(204);
      await expectError(await api.request(location), 'BLOB_UPLOAD_UNKNOWN', 404);
      await expectError(
        await api.request(location, { method: 'PATCH', body: randomContent(3) }),
        'BLOB_UPLOAD_UNKNOWN',
        404,
      );
      await expectError(await api.request(location, { method: 'DELETE' }), 'BLOB_UPLOAD_UNKNOWN', 404);
    });

    it.each([
      ['an unknown id', '5a3c0f56-2b1e-4d7a-9c61-8f0e2d4b7a19'],
      ['an id with strange characters', 'x%20y%3B%22%3C%3E*'],
      ['an id with an encoded slash', '..%2F..%2Fetc'],
      ['an overlong id', 'a'.repeat(300)],
    ])('answers 404 BLOB_UPLOAD_UNKNOWN for %s', async (_what, id) => {
      const location = `/v2/${REPO}/blobs/uploads/${id}`;
      await expectError(await api.request(location), 'BLOB_UPLOAD_UNKNOWN', 404);
      await expectError(
        await api.request(location, { method: 'PATCH', body: randomContent(3) }),
        'BLOB_UPLOAD_UNKNOWN',
        404,
      );
      await expectError(
        await api.request(withQuery(location, { digest: EMPTY_DIGEST }), { method: 'PUT' }),
        'BLOB_UPLOAD_UNKNOWN',
        404,
      );
      await expectError(await api.request(location, { method: 'DELETE' }), 'BLOB_UPLOAD_UNKNOWN', 404);
    });

    it('does not continue a session through another repository', async () => {
      const location = await startUpload(api, REPO);
      const elsewhere = location.replace(`/v2/${REPO}/`, '/v2/other/app/');
      await expectError(await api.request(elsewhere), 'BLOB_UPLOAD_UNKNOWN', 404);
    });

    it('uploads an empty blob monolithically (POST ?digest= without a body)', async () => {
      // What clients send for a zero-byte blob: no body at all (Content-Length: 0 over HTTP).
      const response = await api.request(`/v2/${REPO}/blobs/uploads/?digest=${EMPTY_DIGEST}`, {
        method: 'POST',
      });
      expectBlobCreated(response, REPO, EMPTY_DIGEST);
      const head = await api.request(`/v2/${REPO}/blobs/${EMPTY_DIGEST}`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe('0');
      expect((await blobBytes(api, REPO, EMPTY_DIGEST)).byteLength).toBe(0);
    });

    it('uploads an empty blob through a session (POST, then PUT without a body)', async () => {
      const location = await startUpload(api, REPO);
      expectBlobCreated(await finish(api, location, EMPTY_DIGEST), REPO, EMPTY_DIGEST);
      expect((await blobBytes(api, REPO, EMPTY_DIGEST)).byteLength).toBe(0);
    });

    it('round-trips a 5 MiB blob byte for byte', async () => {
      const content = randomContent(5 * 1024 * 1024);
      const digest = sha256(content);
      let location = await startUpload(api, REPO);
      location = await patchChunk(api, location, content.slice(0, 2 * 1024 * 1024), 0);
      const rest = content.slice(2 * 1024 * 1024);
      expectBlobCreated(await finish(api, location, digest, rest), REPO, digest);

      const head = await api.request(`/v2/${REPO}/blobs/${digest}`, { method: 'HEAD' });
      expect(head.headers.get('content-length')).toBe(String(content.byteLength));
      expectSameBytes(await blobBytes(api, REPO, digest), content);
    });
  });

  describe('cross-repository blob mount', () => {
    const api = useTarget(makeTarget);

    it('mounts a blob from another repository with 201, Location and Docker-Content-Digest', async () => {
      const content = encode('mount me');
      const { digest } = await pushBlob(api, 'mount/source', content);
      const response = await api.request(
        `/v2/mount/target/blobs/uploads/?mount=${digest}&from=mount/source`,
        {
          method: 'POST',
        },
      );
      expectBlobCreated(response, 'mount/target', digest);
      expectSameBytes(await blobBytes(api, 'mount/target', digest), content);
    });

    it.each([
      ['a repository that does not have the blob', 'mount/empty'],
      ['an invalid repository name', 'Not/A/Valid//Name'],
      // As distribution does: a mount that cannot be done is not an error, but an ordinary upload session.
    ])('falls back to a new upload session (202) when mounting from %s', async (_what, from) => {
      const content = encode('only in source');
      const { digest } = await pushBlob(api, 'mount/source', content);
      await pushBlob(api, 'mount/empty', encode('something else'));
      const response = await api.request(
        `/v2/mount/target/blobs/uploads/?mount=${digest}&from=${encodeURIComponent(from)}`,
        { method: 'POST' },
      );
      expect(response.status).toBe(202);
      expect(response.headers.get('docker-upload-uuid')).toBeTruthy();
      const location = pathOf(response.headers.get('location'));
      expect(location).toContain('/v2/mount/target/blobs/uploads/');
      expect((await api.request(`/v2/mount/target/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);

      // The session is a real one: the client uploads the blob instead.
      expectBlobCreated(await finish(api, location, digest, content), 'mount/target', digest);
    });
  });
}
