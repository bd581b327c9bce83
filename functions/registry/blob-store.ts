import { type FileWriter, PathNotFoundError, type StorageDriver } from '../storage/driver.js';
import type { Digest } from './digest.js';

/**
 * Blob bytes on a StorageDriver: each blob once per registry at a content-addressed path, and each
 * upload's bytes at a private path until the upload is committed by a move. Which repository may
 * serve which blob is the MetadataStore's business, not this one's.
 */
export class BlobStore {
  constructor(readonly driver: StorageDriver) {}

  /** Size of a stored blob, or undefined if its bytes are not stored. */
  async size(digest: Digest): Promise<number | undefined> {
    try {
      return (await this.driver.stat(blobPath(digest))).size;
    } catch (error) {
      if (error instanceof PathNotFoundError) return undefined;
      throw error;
    }
  }

  /**
   * Who stored a blob's bytes directly, bypassing the registry (the upload edge records the repository
   * and upload id as the object's metadata), or undefined when the bytes are not stored or say nothing.
   */
  async directUpload(
    digest: Digest,
  ): Promise<{ size: number; repository: string; upload: string } | undefined> {
    let info;
    try {
      info = await this.driver.stat(blobPath(digest));
    } catch (error) {
      if (error instanceof PathNotFoundError) return undefined;
      throw error;
    }
    const repository = info.metadata?.[DIRECT_UPLOAD_REPOSITORY];
    const upload = info.metadata?.[DIRECT_UPLOAD_ID];
    if (info.isDir || repository === undefined || upload === undefined) return undefined;
    return { size: info.size, repository, upload };
  }

  getContent(digest: Digest): Promise<Uint8Array> {
    return this.driver.getContent(blobPath(digest));
  }

  /** Stores small content (a manifest) under its digest; a no-op when it is already there. */
  async putContent(digest: Digest, content: Uint8Array): Promise<void> {
    if ((await this.size(digest)) === content.byteLength) return;
    await this.driver.putContent(blobPath(digest), content);
  }

  reader(digest: Digest, offset?: number, length?: number): Promise<ReadableStream<Uint8Array>> {
    return this.driver.reader(blobPath(digest), offset, length);
  }

  redirectURL(
    digest: Digest,
    method: 'GET' | 'HEAD',
    expiresInSeconds?: number,
  ): Promise<string | undefined> {
    return this.driver.redirectURL(blobPath(digest), { method, expiresInSeconds });
  }

  uploadWriter(uploadId: string, append: boolean): Promise<FileWriter> {
    return this.driver.writer(uploadPath(uploadId), append);
  }

  uploadReader(uploadId: string, offset?: number, length?: number): Promise<ReadableStream<Uint8Array>> {
    return this.driver.reader(uploadPath(uploadId), offset, length);
  }

  /**
   * Makes an upload's size bytes the blob with the given digest (already verified by the caller).
   * When the blob is already stored, its bytes are identical by definition and the upload is dropped.
   * An empty upload may have no bytes stored at all (no request ever carried a body).
   */
  async commitUpload(uploadId: string, digest: Digest, size: number): Promise<void> {
    if ((await this.size(digest)) === undefined) {
      if (size === 0) await this.driver.putContent(blobPath(digest), new Uint8Array(0));
      else await this.driver.move(uploadPath(uploadId), blobPath(digest));
    }
    await this.deleteUpload(uploadId);
  }

  /** Removes an upload's bytes; harmless when there are none. */
  async deleteUpload(uploadId: string): Promise<void> {
    try {
      await this.driver.delete(`/uploads/${uploadId}`);
    } catch (error) {
      if (!(error instanceof PathNotFoundError)) throw error;
    }
  }
}

/** The metadata keys (x-amz-meta-registry-repository, ...) the upload edge writes with a blob. */
export const DIRECT_UPLOAD_REPOSITORY = 'registry-repository';
export const DIRECT_UPLOAD_ID = 'registry-upload';

function blobPath(digest: Digest): string {
  return `/blobs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}/data`;
}

function uploadPath(uploadId: string): string {
  return `/uploads/${uploadId}/data`;
}
