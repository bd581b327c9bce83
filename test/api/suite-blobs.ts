/** Blob reads (HEAD, GET, ranges), repository scoping and deletes. */
import { describe, expect, it } from 'vitest';
import {
  bodyOf,
  encode,
  expectError,
  expectSameBytes,
  getBlob,
  type MakeTarget,
  pushBlob,
  sha256,
  useTarget,
} from './helpers.js';

const REPO = 'blobs/app';
const CONTENT = encode('0123456789abcdef');

export function describeBlobs(makeTarget: MakeTarget): void {
  describe('blobs', () => {
    const api = useTarget(makeTarget);
    const digest = sha256(CONTENT);
    const path = `/v2/${REPO}/blobs/${digest}`;
    const size = CONTENT.byteLength;

    it('answers HEAD with 200, Content-Length and Docker-Content-Digest, and no body', async () => {
      await pushBlob(api, REPO, CONTENT);
      const response = await api.request(path, { method: 'HEAD' });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-length')).toBe(String(size));
      expect(response.headers.get('docker-content-digest')).toBe(digest);
      expect((await bodyOf(response)).byteLength).toBe(0);
    });

    it('answers GET with the bytes (directly, or through a redirect to storage)', async () => {
      await pushBlob(api, REPO, CONTENT);
      const { response } = await getBlob(api, REPO, digest);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-length')).toBe(String(size));
      expectSameBytes(await bodyOf(response), CONTENT);
    });

    it.each([
      ['a closed range', 'bytes=1-3', 1, 3],
      ['a suffix range', 'bytes=-2', size - 2, size - 1],
      ['an open range', 'bytes=2-', 2, size - 1],
      ['a range ending past the blob', 'bytes=10-99', 10, size - 1],
    ])('answers %s with 206 and Content-Range', async (_what, range, start, end) => {
      await pushBlob(api, REPO, CONTENT);
      const response = await api.request(path, { headers: { Range: range } });
      expect(response.status).toBe(206);
      expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/${size}`);
      expect(response.headers.get('content-length')).toBe(String(end - start + 1));
      expectSameBytes(await bodyOf(response), CONTENT.slice(start, end + 1));
    });

    it.each([['bytes=16-'], ['bytes=100-200']])(
      'answers an unsatisfiable range (%s) with 416 and Content-Range bytes */size',
      async (range) => {
        await pushBlob(api, REPO, CONTENT);
        const response = await api.request(path, { headers: { Range: range } });
        expect(response.status).toBe(416);
        expect(response.headers.get('content-range')).toBe(`bytes */${size}`);
        await response.body?.cancel();
      },
    );

    it('scopes blobs to repositories: a blob pushed to one is 404 BLOB_UNKNOWN in another', async () => {
      await pushBlob(api, REPO, CONTENT);
      await pushBlob(api, 'blobs/other', encode('other content'));
      await expectError(await api.request(`/v2/blobs/other/blobs/${digest}`), 'BLOB_UNKNOWN', 404);
      const head = await api.request(`/v2/blobs/other/blobs/${digest}`, { method: 'HEAD' });
      expect(head.status).toBe(404);
      expect((await bodyOf(head)).byteLength).toBe(0);
    });

    it('answers an unknown digest with 404 BLOB_UNKNOWN', async () => {
      await pushBlob(api, REPO, encode('something'));
      await expectError(await api.request(path), 'BLOB_UNKNOWN', 404);
    });

    it('answers a malformed digest in the path with 400 DIGEST_INVALID', async () => {
      await expectError(await api.request(`/v2/${REPO}/blobs/sha256:nothex`), 'DIGEST_INVALID', 400);
    });

    it('deletes a blob with 202, after which it is 404 BLOB_UNKNOWN', async () => {
      await pushBlob(api, REPO, CONTENT);
      const deleted = await api.request(path, { method: 'DELETE' });
      expect(deleted.status).toBe(202);
      await expectError(await api.request(path), 'BLOB_UNKNOWN', 404);
      expect((await api.request(path, { method: 'HEAD' })).status).toBe(404);
      await expectError(await api.request(path, { method: 'DELETE' }), 'BLOB_UNKNOWN', 404);
    });

    it('keeps a deleted blob readable in the other repositories that have it', async () => {
      await pushBlob(api, REPO, CONTENT);
      await pushBlob(api, 'blobs/other', CONTENT);
      expect((await api.request(path, { method: 'DELETE' })).status).toBe(202);
      const other = await api.request(`/v2/blobs/other/blobs/${digest}`);
      expect(other.status).toBe(200);
      expectSameBytes(await bodyOf(other), CONTENT);
    });

    it('answers DELETE with 405 UNSUPPORTED when deletes are disabled', async () => {
      await pushBlob(api, REPO, CONTENT);
      const noDeletes = await api.reopen({ deleteEnabled: false });
      await expectError(await noDeletes.request(path, { method: 'DELETE' }), 'UNSUPPORTED', 405);
      expect((await api.request(path, { method: 'HEAD' })).status).toBe(200);
    });
  });
}
