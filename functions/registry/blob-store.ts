import { type FileInfo, type FileWriter, PathNotFoundError, type StorageDriver } from '../storage/driver.js';
import { type Digest, isDigest, parseDigest } from './digest.js';

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

  /**
   * Records that a request is about to make the blob reachable (link it, or commit a manifest naming
   * it): an empty marker whose time garbage collection reads before and after removing a blob, so that
   * a blob marked meanwhile is put back (see functions/maintenance/gc.ts). Callers mark first and check
   * that the bytes exist afterwards.
   */
  async markUsed(digests: readonly Digest[]): Promise<void> {
    await Promise.all(digests.map((digest) => this.driver.putContent(markerPath(digest), EMPTY)));
  }

  /** When the blob was last marked used, or undefined if never (or its marker was removed). */
  async markedAt(digest: Digest): Promise<Date | undefined> {
    try {
      return (await this.driver.stat(markerPath(digest))).modTime;
    } catch (error) {
      if (error instanceof PathNotFoundError) return undefined;
      throw error;
    }
  }

  /**
   * Every stored blob in path order, with its bytes' and its marker's file info (either may be
   * missing: a marker outlives the blob it marked until collected). From after the blob `startAfter`.
   */
  async *walk(startAfter?: Digest): AsyncGenerator<StoredBlob> {
    let current: StoredBlob | undefined;
    const options = startAfter === undefined ? {} : { startAfter: `${blobDir(startAfter)}/~` };
    for await (const file of this.driver.walk('/blobs', options)) {
      const match = BLOB_FILE.exec(file.path);
      if (!match) continue;
      const [, algorithm = '', hex = '', name] = match;
      if (current?.digest.value !== `${algorithm}:${hex}`) {
        if (current) yield current;
        current = undefined;
        // Anything not named by a valid digest was not put there by the registry: left alone.
        if (!isDigest(`${algorithm}:${hex}`)) continue;
        current = { digest: parseDigest(`${algorithm}:${hex}`) };
      }
      if (name === 'data') current.data = file;
      else current.marker = file;
    }
    if (current) yield current;
  }

  /** Removes a blob's marker; harmless when there is none. */
  async deleteMarker(digest: Digest): Promise<void> {
    try {
      await this.driver.delete(markerPath(digest));
    } catch (error) {
      if (!(error instanceof PathNotFoundError)) throw error;
    }
  }

  /** Moves a blob's bytes to path (outside the blob tree) or back; false when the source is gone. */
  async moveOut(digest: Digest, path: string): Promise<boolean> {
    return this.moveIfPresent(blobPath(digest), path);
  }

  async moveBack(path: string, digest: Digest): Promise<boolean> {
    return this.moveIfPresent(path, blobPath(digest));
  }

  private async moveIfPresent(source: string, dest: string): Promise<boolean> {
    try {
      await this.driver.move(source, dest);
      return true;
    } catch (error) {
      if (error instanceof PathNotFoundError) return false;
      throw error;
    }
  }

  /** Upload ids whose bytes are stored, with the newest time any of their files was written. */
  async *walkUploads(): AsyncGenerator<{ id: string; modTime: Date; size: number }> {
    let current: { id: string; modTime: Date; size: number } | undefined;
    for await (const file of this.driver.walk('/uploads')) {
      const id = file.path.split('/')[2] ?? '';
      if (current?.id !== id) {
        if (current) yield current;
        current = { id, modTime: file.modTime, size: 0 };
      }
      current.size += file.size;
      if (file.modTime > current.modTime) current.modTime = file.modTime;
    }
    if (current) yield current;
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

/** A blob directory's files, as walk finds them. */
export interface StoredBlob {
  digest: Digest;
  data?: FileInfo;
  marker?: FileInfo;
}

const EMPTY = new Uint8Array(0);
const BLOB_FILE = /^\/blobs\/([a-z0-9]+(?:[._][a-z0-9]+)*)\/[0-9a-f]{2}\/([0-9a-f]+)\/(data|used)$/;

function blobDir(digest: Digest): string {
  return `/blobs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
}

function blobPath(digest: Digest): string {
  return `${blobDir(digest)}/data`;
}

function markerPath(digest: Digest): string {
  return `${blobDir(digest)}/used`;
}

function uploadPath(uploadId: string): string {
  return `/uploads/${uploadId}/data`;
}
