/**
 * S3Driver: a StorageDriver over an S3 bucket (AWS S3, or an S3-compatible store such as Ceph RGW), with
 * @aws-sdk/client-s3 v3. The path "/a/b" is the key "<rootDirectory>/a/b". Modelled on distribution's
 * registry/storage/driver/s3-aws, except for how appends resume (s3-writer.ts).
 *
 * - putContent is one PutObject (atomic); reader is a GetObject with a Range; stat is a HeadObject, or for
 *   a "directory" a one-key ListObjectsV2 below it; list is a paginated ListObjectsV2 with Delimiter "/";
 *   walk is a paginated ListObjectsV2 without a delimiter (StartAfter for startAfter), a page at a time;
 *   move is CopyObject (UploadPartCopy in parts above 5 GiB, S3's CopyObject limit) then DeleteObject;
 *   delete removes one object, or every object below a prefix with DeleteObjects batches of 1000;
 *   redirectURL presigns a GET or HEAD (20 minutes unless told otherwise).
 */
import {
  CopyObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Readable } from 'node:stream';

import { CheckedDriver } from './checked.js';
import { InvalidOffsetError, isValidPath, PathNotFoundError, StorageError } from './driver.js';
import type { FileInfo, FileWriter, StorageDriver, WalkOptions } from './driver.js';
import { s3OptionsFromParameters } from './s3-parameters.js';
import {
  CONCURRENCY,
  isNotFound,
  MAX_PARTS,
  MiB,
  NAME,
  PART_SIZE,
  S3Bucket,
  S3Writer,
  statusOf,
} from './s3-writer.js';
import { forEachLimited } from './limited.js';

export { PART_SIZE, s3OptionsFromParameters };

const GiB = 1024 * MiB;

/** The largest object CopyObject copies in one request; larger ones are copied in parts. */
const COPY_OBJECT_LIMIT = 5 * GiB;
const DEFAULT_COPY_PART_SIZE = 128 * MiB;
const DEFAULT_REDIRECT_EXPIRY = 20 * 60;
/** Where writer state lives, below the root: a segment no registry path can contain. */
const STATE_PREFIX = '~appends';
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export interface S3DriverOptions {
  bucket: string;
  region: string;
  /** An S3-compatible endpoint (http://127.0.0.1:7480); AWS's regional endpoint when undefined. */
  endpoint?: string;
  /** Addresses buckets as http://endpoint/bucket/key rather than http://bucket.endpoint/key. */
  forcePathStyle?: boolean;
  /** Static credentials; without them the SDK's default provider chain applies (a Lambda's role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** A key prefix below which every path is stored ("registry" stores "/a" as "registry/a"). */
  rootDirectory?: string;
  /** How long presigned URLs stay valid when the caller does not say (20 minutes). */
  redirectExpirySeconds?: number;
  /** Objects larger than this are moved with a multipart UploadPartCopy (5 GiB, at most 5 GiB). */
  multipartCopyThresholdBytes?: number;
  /** The part size of a multipart copy (128 MiB; raised so that a copy needs at most 10,000 parts). */
  multipartCopyPartBytes?: number;
}

class S3Backend extends S3Bucket implements StorageDriver {
  readonly name = NAME;
  /** HeadObject's Last-Modified is an HTTP date: whole seconds. */
  readonly timeResolutionMs = 1000;
  readonly #root: string;
  readonly #redirectExpiry: number;
  readonly #copyThreshold: number;
  readonly #copyPartSize: number;

  constructor(options: S3DriverOptions) {
    for (const [name, value] of Object.entries({
      redirectExpirySeconds: options.redirectExpirySeconds,
      multipartCopyThresholdBytes: options.multipartCopyThresholdBytes,
      multipartCopyPartBytes: options.multipartCopyPartBytes,
    })) {
      if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
        throw new StorageError(NAME, `${name}: expected a positive integer, got ${value}`);
      }
    }
    super(
      new S3Client({
        region: options.region,
        endpoint: options.endpoint,
        forcePathStyle: options.forcePathStyle,
        credentials: options.credentials,
        // Checksums only where the API requires them: the SDK's default (checksum trailers in aws-chunked
        // bodies) is not understood by every S3-compatible store (Ceph RGW); harmless on AWS.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      }),
      options.bucket,
    );
    const root = (options.rootDirectory ?? '').replace(/^\/+|\/+$/g, '');
    this.#root = root === '' ? '' : `${root}/`;
    this.#redirectExpiry = options.redirectExpirySeconds ?? DEFAULT_REDIRECT_EXPIRY;
    this.#copyThreshold = Math.min(
      options.multipartCopyThresholdBytes ?? COPY_OBJECT_LIMIT,
      COPY_OBJECT_LIMIT,
    );
    this.#copyPartSize = options.multipartCopyPartBytes ?? DEFAULT_COPY_PART_SIZE;
    this.client.middlewareStack.add(
      (next) => async (args) => {
        try {
          return await next(args);
        } catch (error) {
          throw named(error);
        }
      },
      { step: 'initialize', name: 'storageErrorMessages' },
    );
  }

  async getContent(path: string): Promise<Uint8Array> {
    const key = this.#key(path);
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (response.Body === undefined) return new Uint8Array(0);
      return await response.Body.transformToByteArray();
    } catch (error) {
      throw notFound(error, path);
    }
  }

  async putContent(path: string, content: Uint8Array): Promise<void> {
    await this.put(this.#key(path), content);
  }

  async reader(path: string, offset = 0, length?: number): Promise<ReadableStream<Uint8Array>> {
    const key = this.#key(path);
    if (length === 0) {
      // A Range cannot ask for nothing: check that offset is within the file, and give nothing.
      const size = (await this.#head(key, path)).size;
      if (offset > size) throw new InvalidOffsetError(NAME, path, offset);
      return emptyStream();
    }
    const range =
      offset === 0 && length === undefined
        ? undefined
        : `bytes=${offset}-${length === undefined ? '' : offset + length - 1}`;
    try {
      const response = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range }),
      );
      return bodyStream(response.Body);
    } catch (error) {
      if (statusOf(error) !== 416) throw notFound(error, path);
    }
    // 416: offset is at or past the end (or the file is empty).
    const size = (await this.#head(key, path)).size;
    if (offset !== size) throw new InvalidOffsetError(NAME, path, offset);
    return emptyStream();
  }

  async writer(path: string, append: boolean): Promise<FileWriter> {
    const key = this.#key(path);
    const stateKey = this.#stateKey(path);
    if (!append) {
      await this.discardWrites(key, stateKey, undefined);
      return new S3Writer(this, key, stateKey, undefined);
    }
    const stored = await this.loadState(stateKey);
    if (stored !== undefined) return new S3Writer(this, key, stateKey, stored);
    let committed: number | undefined;
    try {
      committed = (await this.#head(key, path)).size;
    } catch (error) {
      if (!(error instanceof PathNotFoundError)) throw error;
    }
    return new S3Writer(this, key, stateKey, undefined, committed);
  }

  async stat(path: string): Promise<FileInfo> {
    const key = this.#key(path);
    try {
      const { size, modTime, metadata } = await this.#head(key, path);
      return { path, size, modTime, isDir: false, ...(metadata && { metadata }) };
    } catch (error) {
      if (!(error instanceof PathNotFoundError)) throw error;
    }
    const response = await this.client.send(
      new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${key}/`, MaxKeys: 1 }),
    );
    const first = response.Contents?.[0];
    if (first === undefined) throw new PathNotFoundError(NAME, path);
    return { path, size: 0, modTime: first.LastModified ?? new Date(), isDir: true };
  }

  async list(path: string): Promise<string[]> {
    const prefix = path === '/' ? this.#root : `${this.#key(path)}/`;
    const base = path === '/' ? '' : path;
    const children = new Set<string>();
    const add = (name: string): void => {
      if (SEGMENT.test(name) && name !== '.' && name !== '..') children.add(`${base}/${name}`);
    };
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          Delimiter: '/',
          ContinuationToken: token,
        }),
      );
      for (const object of page.Contents ?? []) add((object.Key ?? '').slice(prefix.length));
      for (const common of page.CommonPrefixes ?? []) add((common.Prefix ?? '').slice(prefix.length, -1));
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    if (children.size === 0) throw new PathNotFoundError(NAME, path);
    return [...children].sort();
  }

  async *walk(path: string, { startAfter }: WalkOptions = {}): AsyncIterable<FileInfo> {
    const prefix = path === '/' ? this.#root : `${this.#key(path)}/`;
    let token: string | undefined;
    let first = true;
    while (first || token !== undefined) {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          // Without a delimiter: every key below, in UTF-8 binary order. StartAfter only on the first
          // request; the continuation token carries on from there.
          ...(first && startAfter !== undefined && { StartAfter: this.#key(startAfter) }),
          ContinuationToken: token,
        }),
      );
      first = false;
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      const files: FileInfo[] = [];
      for (const { Key, Size, LastModified } of page.Contents ?? []) {
        if (Key === undefined) continue;
        // Writers' state ("~appends/…", below the root when walking "/") and keys no path names.
        const found = `/${Key.slice(this.#root.length)}`;
        if (!isValidPath(found) || (startAfter !== undefined && found <= startAfter)) continue;
        files.push({ path: found, size: Size ?? 0, modTime: LastModified ?? new Date(), isDir: false });
      }
      // S3 lists in binary order, which is code point order for these keys; some S3-compatible stores
      // order a page otherwise (by locale), so each page is put in order again.
      files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      yield* files;
    }
  }

  async move(source: string, dest: string): Promise<void> {
    const from = this.#key(source);
    const { size } = await this.#head(from, source);
    if (source === dest) return;
    const to = this.#key(dest);
    if (size > this.#copyThreshold) {
      await this.#multipartCopy(from, to, size);
    } else {
      try {
        await this.client.send(
          new CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource: this.#copySource(from) }),
        );
      } catch (error) {
        throw notFound(error, source);
      }
    }
    await this.deleteKey(from);
  }

  async delete(path: string): Promise<void> {
    const key = this.#key(path);
    const stateKey = this.#stateKey(path);
    const [isFile, listed] = await Promise.all([this.#exists(key), this.uploadsOf(key, true)]);
    // The uploads to abort, by id: those listed, and those the writer states being deleted name (which
    // the listing may miss: a store without ListMultipartUploads, or one that lists late).
    const uploads = new Map(listed.map(({ key: uploadKey, uploadId }) => [uploadId, uploadKey]));
    const [below, states] = await Promise.all([
      this.#deleteListed(`${key}/`, () => true),
      this.#deleteListed(
        stateKey,
        (found) => found === stateKey || found.startsWith(`${stateKey}/`),
        (found) =>
          forEachLimited(found, CONCURRENCY, async (foundState) => {
            const uploadId = await this.stateUploadId(foundState);
            if (uploadId !== undefined) uploads.set(uploadId, this.#keyOfState(foundState));
          }),
      ),
    ]);
    if (isFile) await this.deleteKey(key);
    await forEachLimited([...uploads], CONCURRENCY, ([uploadId, uploadKey]) =>
      this.abort(uploadKey, uploadId),
    );
    if (!isFile && below === 0 && states === 0 && uploads.size === 0) {
      throw new PathNotFoundError(NAME, path);
    }
  }

  async redirectURL(
    path: string,
    options: { method: 'GET' | 'HEAD'; expiresInSeconds?: number },
  ): Promise<string | undefined> {
    const input = { Bucket: this.bucket, Key: this.#key(path) };
    const expiresIn = options.expiresInSeconds ?? this.#redirectExpiry;
    return options.method === 'HEAD'
      ? getSignedUrl(this.client, new HeadObjectCommand(input), { expiresIn })
      : getSignedUrl(this.client, new GetObjectCommand(input), { expiresIn });
  }

  // Helpers.

  #key(path: string): string {
    return this.#root + path.slice(1);
  }

  #stateKey(path: string): string {
    return `${this.#root}${STATE_PREFIX}${path}`;
  }

  /** The key of the file whose writer state is at stateKey. */
  #keyOfState(stateKey: string): string {
    return this.#key(stateKey.slice(`${this.#root}${STATE_PREFIX}`.length));
  }

  #copySource(key: string): string {
    return `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  async #head(
    key: string,
    path: string,
  ): Promise<{ size: number; modTime: Date; metadata: Record<string, string> | undefined }> {
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return {
        size: response.ContentLength ?? 0,
        modTime: response.LastModified ?? new Date(),
        metadata:
          response.Metadata && Object.keys(response.Metadata).length > 0 ? response.Metadata : undefined,
      };
    } catch (error) {
      throw notFound(error, path);
    }
  }

  async #exists(key: string): Promise<boolean> {
    try {
      await this.#head(key, key);
      return true;
    } catch (error) {
      if (error instanceof PathNotFoundError) return false;
      throw error;
    }
  }

  /**
   * Deletes, page by page, the objects listed below prefix that match (after handing them to beforeDelete,
   * if given); gives how many.
   */
  async #deleteListed(
    prefix: string,
    matches: (key: string) => boolean,
    beforeDelete?: (keys: string[]) => Promise<void>,
  ): Promise<number> {
    let deleted = 0;
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, StartAfter: startAfter }),
      );
      const keys = (page.Contents ?? []).flatMap(({ Key }) => (Key === undefined ? [] : [Key]));
      const matching = keys.filter(matches);
      if (beforeDelete !== undefined && matching.length > 0) await beforeDelete(matching);
      await this.deleteKeys(matching);
      deleted += matching.length;
      const last = keys.at(-1);
      if (page.IsTruncated !== true || last === undefined) return deleted;
      startAfter = last;
    }
  }

  /** Copies an object of size bytes from one key to another with a multipart UploadPartCopy. */
  async #multipartCopy(from: string, to: string, size: number): Promise<void> {
    const partSize = Math.min(
      COPY_OBJECT_LIMIT,
      Math.max(this.#copyPartSize, PART_SIZE, Math.ceil(size / MAX_PARTS)),
    );
    const ranges: { start: number; end: number }[] = [];
    for (let start = 0; start < size; start += partSize) {
      ranges.push({ start, end: Math.min(size, start + partSize) - 1 });
    }
    const uploadId = await this.createUpload(to);
    try {
      const etags: string[] = new Array<string>(ranges.length).fill('');
      await forEachLimited(
        ranges.map((range, index) => ({ ...range, index })),
        CONCURRENCY,
        async ({ start, end, index }) => {
          const response = await this.client.send(
            new UploadPartCopyCommand({
              Bucket: this.bucket,
              Key: to,
              UploadId: uploadId,
              PartNumber: index + 1,
              CopySource: this.#copySource(from),
              CopySourceRange: `bytes=${start}-${end}`,
            }),
          );
          const etag = response.CopyPartResult?.ETag;
          if (etag === undefined)
            throw new StorageError(NAME, `no ETag for copied part ${index + 1} of ${to}`);
          etags[index] = etag;
        },
      );
      await this.completeUpload(to, uploadId, etags);
    } catch (error) {
      await this.abort(to, uploadId).catch(() => undefined);
      throw error;
    }
  }
}

/**
 * error with its S3 error code and HTTP status in its message ("SignatureDoesNotMatch (HTTP 403)"): some
 * stores (Ceph RGW) send no message, which the SDK reports as "UnknownError".
 */
function named(error: unknown): unknown {
  if (error instanceof S3ServiceException && !error.message.startsWith(error.name)) {
    const status = error.$metadata.httpStatusCode;
    const detail = error.message === '' || error.message === 'UnknownError' ? '' : `: ${error.message}`;
    error.message = `${error.name}${status === undefined ? '' : ` (HTTP ${status})`}${detail}`;
  }
  return error;
}

/** A PathNotFoundError for path if error says the key does not exist; otherwise error unchanged. */
function notFound(error: unknown, path: string): unknown {
  return isNotFound(error) ? new PathNotFoundError(NAME, path) : error;
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.close();
    },
  });
}

/**
 * A GetObject body as a pull-based Web stream of Uint8Arrays: one chunk read from the socket per pull,
 * so a slow consumer holds the download back; cancelling destroys the connection.
 */
function bodyStream(body: unknown): ReadableStream<Uint8Array> {
  if (body === undefined) return emptyStream();
  if (!(body instanceof Readable)) {
    const web = (body as { transformToWebStream?: () => ReadableStream<Uint8Array> }).transformToWebStream;
    if (web === undefined) throw new StorageError(NAME, 'unexpected GetObject body');
    return web.call(body);
  }
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await iterator.next();
        if (next.done === true) {
          controller.close();
          return;
        }
        const chunk = next.value;
        controller.enqueue(
          typeof chunk === 'string'
            ? new TextEncoder().encode(chunk)
            : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
        );
      },
      cancel() {
        body.destroy();
      },
    },
    { highWaterMark: 0 },
  );
}

/** A StorageDriver ("s3") over an S3 bucket; see the module comment for its layout and costs. */
export class S3Driver extends CheckedDriver {
  readonly #backend: S3Backend;

  constructor(options: S3DriverOptions) {
    const backend = new S3Backend(options);
    super(backend);
    this.#backend = backend;
  }

  /** Closes the client's connections; the driver is unusable afterwards. */
  destroy(): void {
    this.#backend.client.destroy();
  }
}

/**
 * An S3Driver from distribution's `storage.s3` parameters: bucket (required), region (AWS_REGION when
 * absent; us-east-1 with a regionendpoint), regionendpoint, forcepathstyle, accesskey and secretkey
 * (both or neither: without them the SDK's default credential chain applies), rootdirectory. The other
 * keys distribution knows are accepted and ignored; unknown keys and invalid values are ConfigErrors
 * naming the key.
 */
export function s3DriverFromParameters(parameters: Record<string, unknown>): S3Driver {
  return new S3Driver(s3OptionsFromParameters(parameters));
}
