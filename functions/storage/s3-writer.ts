/**
 * The writers of S3Driver (s3.ts), the format of the state they store, and the bucket operations they use.
 *
 * Writers (appends across requests and processes). S3 multipart parts must be at least 5 MiB except the
 * last one, while a blob upload arrives in chunks of any size, each in its own request (Lambda
 * invocation). A writer buffers at most one part (PART_SIZE, 5 MiB) in memory and uploads each full
 * buffer as the next part of a multipart upload of the file's key, created with the first part. What
 * does not fill a part when the writer is closed is kept, with the upload id and the list of parts
 * (number order, ETag and size), in one hidden "state" object: "<rootDirectory>/~appends/a/b" for the
 * path "/a/b". Its body is one line of JSON (the state) followed by the tail bytes. "~" is outside the
 * path alphabet, so no registry path names it, and list never shows it.
 *
 * S3 calls (P = parts filled by the writes, about one per 5 MiB written):
 * - writer(path, true): one GetObject of the state (at most 5 MiB of tail); without state, one
 *   HeadObject: a missing path starts empty; on a committed file, the writer has its size, close and
 *   commit leave it as it is (a retried final request) and cancel deletes it, but a write is refused
 *   ("commit: no later append is possible").
 * - writer(path, false): ListMultipartUploads of the key and an abort per upload found, one DeleteObjects
 *   (the file and its state).
 * - write: P UploadParts (plus one CreateMultipartUpload for the file's first part).
 * - close: one PutObject of the state (none when nothing was written).
 * - commit: without a part, one PutObject of the file; otherwise one UploadPart (the tail, as the last
 *   part) and one CompleteMultipartUpload (with the ETags from the state, no ListParts). Then one
 *   DeleteObject of the state, if one was stored.
 * - cancel: ListMultipartUploads of the key, an abort per upload, one DeleteObjects (file and state).
 *
 * Contract difference: the bytes of a writer that was closed but not committed are in an incomplete
 * multipart upload, which S3 cannot read. They are resumed by writer(path, true) (whose size counts
 * them) but are readable at the path only once committed: getContent, reader and stat report
 * PathNotFoundError until then. delete removes them with the rest of a path (deleting a directory aborts
 * every upload below it: those ListMultipartUploads lists, and those named by the writer states it deletes,
 * read first), and does not report PathNotFoundError for a path that holds nothing else. walk, like list,
 * does not show them.
 *
 * Limits: 10,000 parts of 5 MiB, so a file written through a writer is at most 48.8 GiB (putContent and
 * move are not limited so). A crash between creating a multipart upload and storing the state leaves an
 * upload no state refers to: writer(path, false), cancel and delete abort every upload of the key they
 * find; a bucket lifecycle rule aborting incomplete multipart uploads after a day or two covers the rest.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';

import { StorageError } from './driver.js';
import type { FileWriter } from './driver.js';
import { forEachLimited } from './limited.js';

export const NAME = 's3';
const KiB = 1024;
export const MiB = 1024 * KiB;

/** The size of every multipart part a writer uploads but the last: S3's minimum part size. */
export const PART_SIZE = 5 * MiB;
/** S3's limit on the parts of a multipart upload. */
export const MAX_PARTS = 10_000;
/** How many aborts or part copies run at once. */
export const CONCURRENCY = 8;
const STATE_VERSION = 1;
/** How much of a state object stateUploadId reads: enough for its version and upload id. */
const STATE_PEEK = 4 * KiB;
const CONTENT_TYPE = 'application/octet-stream';

/** What a writer stores when closed: the multipart upload so far. The tail bytes follow it in the object. */
interface WriterState {
  v: typeof STATE_VERSION;
  /** The multipart upload of the file's key, once a part was uploaded. */
  uploadId?: string;
  /** The uploaded parts, numbered from 1 in order: [ETag, size]. */
  parts: [string, number][];
  /** The number of tail bytes after the JSON line. */
  tail: number;
}

/**
 * An S3 bucket's client, and the object and multipart upload operations of writers (S3Backend, in s3.ts,
 * adds the rest of the driver).
 */
export class S3Bucket {
  readonly client: S3Client;
  readonly bucket: string;

  constructor(client: S3Client, bucket: string) {
    this.client = client;
    this.bucket = bucket;
  }

  // Operations the writer uses.

  async createUpload(key: string): Promise<string> {
    const response = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: CONTENT_TYPE }),
    );
    if (response.UploadId === undefined) throw new StorageError(NAME, `no upload id for ${key}`);
    return response.UploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string> {
    const response = await this.client.send(
      new UploadPartCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: body,
        ContentLength: body.length,
      }),
    );
    if (response.ETag === undefined) throw new StorageError(NAME, `no ETag for part ${partNumber} of ${key}`);
    return response.ETag;
  }

  async completeUpload(key: string, uploadId: string, etags: readonly string[]): Promise<void> {
    await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) },
      }),
    );
  }

  /** Aborts a multipart upload; one that is already gone (completed or aborted) is fine. */
  async abort(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
      );
    } catch (error) {
      if (!(error instanceof S3ServiceException && error.name === 'NoSuchUpload')) throw error;
    }
  }

  /** Stores a writer's state and tail in the state object. */
  async storeState(stateKey: string, state: WriterState, tail: Uint8Array): Promise<void> {
    const line = new TextEncoder().encode(`${JSON.stringify(state)}\n`);
    const body = new Uint8Array(line.length + tail.length);
    body.set(line);
    body.set(tail, line.length);
    await this.put(stateKey, body);
  }

  /** Aborts every multipart upload of key (and knownUploadId), and deletes the file and its writer state. */
  async discardWrites(key: string, stateKey: string, knownUploadId: string | undefined): Promise<void> {
    const ids = new Set((await this.uploadsOf(key, false)).map(({ uploadId }) => uploadId));
    if (knownUploadId !== undefined) ids.add(knownUploadId);
    await forEachLimited([...ids], CONCURRENCY, (uploadId) => this.abort(key, uploadId));
    await this.deleteKeys([key, stateKey]);
  }

  /** Deletes one key; a key that does not exist is fine. */
  async deleteKey(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  /** Deletes keys (at most 1000) with one DeleteObjects; keys that do not exist are fine. */
  async deleteKeys(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    const response = await this.client.send(
      new DeleteObjectsCommand({
        Bucket: this.bucket,
        Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
      }),
    );
    const failed = response.Errors?.[0];
    if (failed !== undefined) {
      throw new StorageError(
        NAME,
        `delete ${failed.Key ?? '?'}: ${failed.Code ?? 'error'} ${failed.Message ?? ''}`.trim(),
      );
    }
  }

  protected async put(key: string, body: Uint8Array): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: body.length,
        ContentType: CONTENT_TYPE,
      }),
    );
  }

  /** A writer's stored state and tail, or undefined if none is stored. */
  protected async loadState(stateKey: string): Promise<{ state: WriterState; tail: Uint8Array } | undefined> {
    let body: Uint8Array;
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: stateKey }));
      body = (await response.Body?.transformToByteArray()) ?? new Uint8Array(0);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    const newline = body.indexOf(0x0a);
    let state: unknown;
    try {
      state = JSON.parse(new TextDecoder().decode(body.subarray(0, newline)));
    } catch {
      state = undefined;
    }
    const tail = body.subarray(newline + 1);
    if (newline === -1 || !isWriterState(state) || state.tail !== tail.length) {
      throw new StorageError(NAME, `the writer state ${stateKey} is damaged`);
    }
    return { state, tail };
  }

  /**
   * The multipart upload a stored writer state names, or undefined (no state, or no part uploaded yet).
   * Reads only the start of the state object (a ranged GetObject): the JSON line begins with v and
   * uploadId (see close), so the id is there even when the list of parts is long.
   */
  protected async stateUploadId(stateKey: string): Promise<string | undefined> {
    let start: string;
    try {
      const response = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: stateKey, Range: `bytes=0-${STATE_PEEK - 1}` }),
      );
      start = (await response.Body?.transformToString()) ?? '';
    } catch (error) {
      if (isNotFound(error)) return undefined; // Committed or cancelled meanwhile.
      throw error;
    }
    const line = start.split('\n', 1)[0] ?? '';
    const match = /"uploadId":("(?:[^"\\]|\\.)*")/.exec(line);
    if (match?.[1] === undefined) return undefined;
    const uploadId: unknown = JSON.parse(match[1]);
    return typeof uploadId === 'string' && uploadId !== '' ? uploadId : undefined;
  }

  /** The multipart uploads of key (and, with below, of every key below key + "/"). */
  protected async uploadsOf(key: string, below: boolean): Promise<{ key: string; uploadId: string }[]> {
    const uploads: { key: string; uploadId: string }[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          Prefix: key,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      for (const upload of page.Uploads ?? []) {
        const found = upload.Key;
        if (found === undefined || upload.UploadId === undefined) continue;
        if (found === key || (below && found.startsWith(`${key}/`))) {
          uploads.push({ key: found, uploadId: upload.UploadId });
        }
      }
      if (page.IsTruncated !== true || (page.NextKeyMarker ?? '') === '') return uploads;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }
}

/**
 * A writer: buffers up to PART_SIZE bytes, uploads each full buffer as the next part, and on close stores
 * the state and the bytes that did not fill a part (see the module comment). The wrapper (CheckedWriter)
 * runs its calls one at a time and refuses them once it is finished.
 */
export class S3Writer implements FileWriter {
  #uploadId: string | undefined;
  readonly #etags: string[] = [];
  readonly #sizes: number[] = [];
  #partBytes = 0;
  #buffer: Uint8Array;
  #buffered = 0;
  /** Whether a state object exists for this path (loaded by this writer). */
  readonly #stateStored: boolean;
  /** Whether anything was written since the writer was opened. */
  #changed = false;
  /** The size of the committed file this writer was opened on, to which nothing can be appended. */
  readonly #committed: number | undefined;

  constructor(
    private readonly backend: S3Bucket,
    private readonly key: string,
    private readonly stateKey: string,
    stored: { state: WriterState; tail: Uint8Array } | undefined,
    committed?: number,
  ) {
    this.#committed = committed;
    this.#stateStored = stored !== undefined;
    this.#buffer = new Uint8Array(0);
    if (stored === undefined) return;
    this.#uploadId = stored.state.uploadId;
    for (const [etag, size] of stored.state.parts) {
      this.#etags.push(etag);
      this.#sizes.push(size);
      this.#partBytes += size;
    }
    this.#reserve(stored.tail.length);
    this.#buffer.set(stored.tail);
    this.#buffered = stored.tail.length;
  }

  get size(): number {
    return this.#committed ?? this.#partBytes + this.#buffered;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.#committed !== undefined && chunk.length > 0) {
      throw new StorageError(NAME, `${this.key} was committed: nothing can be appended to it`);
    }
    for (let offset = 0; offset < chunk.length;) {
      if (this.#buffered === PART_SIZE) await this.#flush();
      const taken = Math.min(PART_SIZE - this.#buffered, chunk.length - offset);
      this.#reserve(this.#buffered + taken);
      this.#buffer.set(chunk.subarray(offset, offset + taken), this.#buffered);
      this.#buffered += taken;
      offset += taken;
      this.#changed = true;
    }
    if (this.#buffered === PART_SIZE) await this.#flush();
  }

  async close(): Promise<void> {
    if (!this.#changed) return;
    await this.backend.storeState(
      this.stateKey,
      {
        // v and uploadId first: S3Bucket.stateUploadId reads only the start of the state.
        v: STATE_VERSION,
        uploadId: this.#uploadId,
        parts: this.#etags.map((etag, index) => [etag, this.#sizes[index] ?? 0]),
        tail: this.#buffered,
      },
      this.#buffer.subarray(0, this.#buffered),
    );
    this.#release();
  }

  async commit(): Promise<void> {
    if (this.#committed !== undefined) return; // Committed again (a retried final request): it stays.
    const uploadId = this.#uploadId;
    if (uploadId === undefined) {
      // Less than a part in all: one PutObject.
      await this.#putWhole();
    } else {
      // The tail is the last part, which may be small (or, for an otherwise empty upload, empty).
      if (this.#buffered > 0 || this.#etags.length === 0) await this.#flush();
      await this.backend.completeUpload(this.key, uploadId, this.#etags);
    }
    if (this.#stateStored) await this.backend.deleteKey(this.stateKey);
    this.#release();
  }

  async cancel(): Promise<void> {
    await this.backend.discardWrites(this.key, this.stateKey, this.#uploadId);
    this.#release();
  }

  async #putWhole(): Promise<void> {
    await this.backend.client.send(
      new PutObjectCommand({
        Bucket: this.backend.bucket,
        Key: this.key,
        Body: this.#buffer.subarray(0, this.#buffered),
        ContentLength: this.#buffered,
        ContentType: CONTENT_TYPE,
      }),
    );
  }

  /** Uploads the buffer as the next part (creating the multipart upload with the first one) and empties it. */
  async #flush(): Promise<void> {
    const partNumber = this.#etags.length + 1;
    if (partNumber > MAX_PARTS) {
      throw new StorageError(
        NAME,
        `${this.key}: a file written through a writer is limited to ${MAX_PARTS} parts of ${PART_SIZE} bytes`,
      );
    }
    this.#uploadId ??= await this.backend.createUpload(this.key);
    const body = this.#buffer.subarray(0, this.#buffered);
    const etag = await this.backend.uploadPart(this.key, this.#uploadId, partNumber, body);
    this.#etags.push(etag);
    this.#sizes.push(body.length);
    this.#partBytes += body.length;
    this.#buffered = 0;
  }

  /** Grows the buffer (geometrically, up to PART_SIZE) to hold at least needed bytes. */
  #reserve(needed: number): void {
    if (needed <= this.#buffer.length) return;
    const grown = new Uint8Array(Math.min(PART_SIZE, Math.max(needed, this.#buffer.length * 2, 64 * KiB)));
    grown.set(this.#buffer.subarray(0, this.#buffered));
    this.#buffer = grown;
  }

  #release(): void {
    this.#buffer = new Uint8Array(0);
    this.#buffered = 0;
  }
}

function isWriterState(value: unknown): value is WriterState {
  if (typeof value !== 'object' || value === null) return false;
  const state = value as Record<string, unknown>;
  return (
    state.v === STATE_VERSION &&
    (state.uploadId === undefined || typeof state.uploadId === 'string') &&
    Array.isArray(state.parts) &&
    state.parts.every(
      (part: unknown) =>
        Array.isArray(part) &&
        part.length === 2 &&
        typeof part[0] === 'string' &&
        Number.isSafeInteger(part[1]) &&
        (part[1] as number) >= 0,
    ) &&
    (state.parts.length === 0 || typeof state.uploadId === 'string') &&
    Number.isSafeInteger(state.tail) &&
    (state.tail as number) >= 0
  );
}

export function statusOf(error: unknown): number | undefined {
  return error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
}

/** Whether error says that the key does not exist (NoSuchKey, or a 404 that is not about the bucket or an upload). */
export function isNotFound(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  if (error.name === 'NoSuchKey' || error.name === 'NotFound') return true;
  return statusOf(error) === 404 && error.name !== 'NoSuchBucket' && error.name !== 'NoSuchUpload';
}
