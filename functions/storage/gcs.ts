/**
 * GcsDriver: a StorageDriver over a Google Cloud Storage bucket, with @google-cloud/storage 7. The path
 * "/a/b" is the object "<rootDirectory>/a/b". Modelled on distribution's registry/storage/driver/gcs,
 * except for how appends resume.
 *
 * Writers (appends across requests and processes). Each writer streams what it is given into a hidden
 * "part" object of its own, through a resumable upload in chunks of chunkSize bytes:
 * "<rootDirectory>/~appends/a/b/0000000002" is the third part of the path "/a/b". "~" is outside the path
 * alphabet, so no registry path names a part and list never shows one. GCS makes an object of an upload
 * only once it is finalised, which close() does: a writer that dies mid-request leaves nothing that counts.
 * - writer(path, true) lists the parts: its size is their sum, and its part is numbered after the last.
 *   Without parts it reads the object's metadata: a missing path starts empty; on a committed file the
 *   writer has its size, close and commit leave the file as it is (a retried final request), cancel
 *   deletes it, and a write is refused ("commit: no later append is possible").
 * - writer(path, false) and cancel() delete the parts and the object.
 * - commit() composes the parts into the object, at most 32 per compose (GCS's limit): more parts are
 *   composed into intermediate objects beside the parts first, 32 at a time, as a tree. It then deletes
 *   the parts and intermediates. Without any part it stores an empty object.
 * Contract difference (as with S3): what a writer closed but did not commit is in parts, not at the path,
 * so it is readable only once committed (suite option readableWhenClosed: false).
 *
 * Other operations: putContent is one multipart upload (not resumable), so it is atomic; reader is a
 * media GET with a Range, streamed with backpressure; stat reads the object's metadata, or for a
 * "directory" lists one object below it; list is a paginated listing with delimiter "/"; walk is a
 * paginated listing without one (from startOffset when resuming), a page at a time; move is a
 * rewrite (copy) then a delete; delete removes one object, or every object below a prefix, and the parts
 * of writers of those paths. redirectURL signs a V4 URL: GET with the SDK's getSignedUrl, HEAD with
 * signedUrlV4 below (the SDK signs no HEAD). Signing needs a service account: with a key (keyfile or
 * credentials) it is local; with application default credentials on GCE/GKE the SDK asks the IAM
 * signBlob API, which needs the "Service Account Token Creator" role on that account.
 *
 * Costs and limits: a file written in P writes-then-closes costs P uploads, about P/31 composes and P
 * deletes at commit (temporary objects are billed for soft-delete retention where that is on). Resumable
 * sessions live a week, as does a writer's unfinished request. Composites carry a CRC32C, no MD5.
 *
 * The SDK lets the STORAGE_EMULATOR_HOST environment variable replace the JSON API's base URL, even over
 * an explicit endpoint: leave it unset (gcsDriverFromParameters refuses the two together).
 */
import { Storage, type Bucket, type File } from '@google-cloud/storage';
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';

import { CheckedDriver } from './checked.js';
import { InvalidOffsetError, isValidPath, PathNotFoundError, StorageError } from './driver.js';
import type { FileInfo, FileWriter, StorageDriver, WalkOptions } from './driver.js';
import { forEachLimited } from './limited.js';
import { gcsOptionsFromParameters } from './gcs-parameters.js';

export { gcsOptionsFromParameters };

const NAME = 'gcs';
const KiB = 1024;
const MiB = 1024 * KiB;
/** Resumable upload chunks (all but the last) are multiples of this, GCS's rule. */
export const CHUNK_GRANULARITY = 256 * KiB;
/** The chunk size of a writer's upload when not configured: distribution's default. */
export const DEFAULT_CHUNK_SIZE = 16 * MiB;
/** GCS's limit on the sources of one compose. */
export const MAX_COMPOSE_SOURCES = 32;
const DEFAULT_REDIRECT_EXPIRY = 20 * 60;
/** V4 signed URLs last at most 7 days. */
const MAX_SIGNED_URL_EXPIRY = 7 * 24 * 60 * 60;
/** How many deletes or composes run at once. */
const CONCURRENCY = 8;
const CONTENT_TYPE = 'application/octet-stream';
/** Where writers' parts live, below the root: a segment no registry path can contain. */
const PARTS_PREFIX = '~appends';
/** A part's name below its path's part prefix; intermediates of a commit are named "~compose-…". */
const PART = /^\d{10}$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export interface GcsDriverOptions {
  bucket: string;
  /** A service-account (or other credential) JSON key file; without it or credentials, application default credentials. */
  keyFilename?: string;
  /** A service account's key, inline. */
  credentials?: { client_email: string; private_key: string };
  /** The project of the credentials (only used by the SDK for requests that need one). */
  projectId?: string;
  /** The JSON API's base URL (http://127.0.0.1:4443 for a local fake); Google's when undefined. */
  endpoint?: string;
  /** A prefix below which every path is stored ("registry" stores "/a" as "registry/a"). */
  rootDirectory?: string;
  /** The chunk size of writers' resumable uploads: a multiple of 256 KiB (16 MiB). */
  chunkSize?: number;
  /** How long signed URLs stay valid when the caller does not say (20 minutes). */
  redirectExpirySeconds?: number;
}

/** The options of a request of the SDK's JSON API client, as its interceptors see them. */
type RequestOptions = ReturnType<Storage['interceptors'][number]['request']>;

interface Part {
  name: string;
  size: number;
}

class GcsBackend implements StorageDriver {
  readonly name = NAME;
  readonly storage: Storage;
  readonly bucket: Bucket;
  readonly chunkSize: number;
  readonly #root: string;
  readonly #redirectExpiry: number;

  constructor(options: GcsDriverOptions) {
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!(Number.isSafeInteger(chunkSize) && chunkSize > 0 && chunkSize % CHUNK_GRANULARITY === 0)) {
      throw new StorageError(
        NAME,
        `chunkSize: expected a positive multiple of ${CHUNK_GRANULARITY}, got ${chunkSize}`,
      );
    }
    const expiry = options.redirectExpirySeconds;
    if (expiry !== undefined && !(Number.isSafeInteger(expiry) && expiry > 0)) {
      throw new StorageError(NAME, `redirectExpirySeconds: expected a positive integer, got ${expiry}`);
    }
    this.storage = new Storage({
      ...(options.endpoint !== undefined && { apiEndpoint: options.endpoint }),
      ...(options.keyFilename !== undefined && { keyFilename: options.keyFilename }),
      ...(options.credentials !== undefined && { credentials: options.credentials }),
      ...(options.projectId !== undefined && { projectId: options.projectId }),
    });
    // On a failed or cancelled download the SDK destroys the keep-alive agent it shares among all its
    // requests, failing every other request in flight. Without "forever" its requests use Node's global
    // agent (keep-alive too), which it leaves alone.
    this.storage.interceptors.push({
      request: (request) => ({ ...(request as RequestOptions), forever: false }),
    });
    this.bucket = this.storage.bucket(options.bucket);
    this.chunkSize = chunkSize;
    const root = (options.rootDirectory ?? '').replace(/^\/+|\/+$/g, '');
    this.#root = root === '' ? '' : `${root}/`;
    this.#redirectExpiry = expiry ?? DEFAULT_REDIRECT_EXPIRY;
  }

  async getContent(path: string): Promise<Uint8Array> {
    try {
      const [content] = await this.#file(path).download();
      return new Uint8Array(content); // A copy that owns its memory (not a view of a pooled Buffer).
    } catch (error) {
      throw translate(error, path);
    }
  }

  async putContent(path: string, content: Uint8Array): Promise<void> {
    await this.putObject(this.#key(path), content);
  }

  async reader(path: string, offset = 0, length?: number): Promise<ReadableStream<Uint8Array>> {
    if (length === 0) {
      // A Range cannot ask for nothing: check that offset is within the file, and give nothing.
      if (offset > (await this.#metadata(path)).size) throw new InvalidOffsetError(NAME, path, offset);
      return emptyStream();
    }
    // Without a range the SDK checks the whole object's CRC32C as it streams.
    const range =
      offset === 0 && length === undefined
        ? {}
        : { start: offset, ...(length !== undefined && { end: offset + length - 1 }) };
    const body = this.#file(path).createReadStream(range);
    try {
      return await pullStream(body);
    } catch (error) {
      if (statusOf(error) !== 416) throw translate(error, path);
    }
    // 416: offset is at or past the end (or the file is empty).
    const { size } = await this.#metadata(path);
    if (offset !== size) throw new InvalidOffsetError(NAME, path, offset);
    return emptyStream();
  }

  async writer(path: string, append: boolean): Promise<FileWriter> {
    const key = this.#key(path);
    const { parts, others } = await this.#parts(path);
    if (!append) {
      await this.deleteObjects([key, ...parts.map(({ name }) => name), ...others]);
      return new GcsWriter(this, key, this.#partsPrefix(path), [], []);
    }
    if (parts.length > 0) return new GcsWriter(this, key, this.#partsPrefix(path), parts, others);
    let committed: number | undefined;
    try {
      committed = (await this.#metadata(path)).size;
    } catch (error) {
      if (!(error instanceof PathNotFoundError)) throw error;
    }
    return new GcsWriter(this, key, this.#partsPrefix(path), [], others, committed);
  }

  async stat(path: string): Promise<FileInfo> {
    try {
      const { size, modTime, metadata } = await this.#metadata(path);
      return { path, size, modTime, isDir: false, ...(metadata && { metadata }) };
    } catch (error) {
      if (!(error instanceof PathNotFoundError)) throw error;
    }
    const [files] = await this.bucket
      .getFiles({ prefix: `${this.#key(path)}/`, maxResults: 1, autoPaginate: false })
      .catch((error: unknown) => {
        throw translate(error, path);
      });
    const first = files[0];
    if (first === undefined) throw new PathNotFoundError(NAME, path);
    return { path, size: 0, modTime: dateOf(first.metadata.updated), isDir: true };
  }

  async list(path: string): Promise<string[]> {
    const prefix = path === '/' ? this.#root : `${this.#key(path)}/`;
    const base = path === '/' ? '' : path;
    const children = new Set<string>();
    const add = (name: string): void => {
      if (SEGMENT.test(name) && name !== '.' && name !== '..') children.add(`${base}/${name}`);
    };
    await this.#listPages(prefix, '/', path, (files, prefixes) => {
      for (const file of files) add(file.name.slice(prefix.length));
      for (const below of prefixes) add(below.slice(prefix.length, -1));
    });
    if (children.size === 0) throw new PathNotFoundError(NAME, path);
    return [...children].sort();
  }

  async *walk(path: string, { startAfter }: WalkOptions = {}): AsyncIterable<FileInfo> {
    const prefix = path === '/' ? this.#root : `${this.#key(path)}/`;
    // startOffset is inclusive: startAfter itself, if it is an object, is left out below.
    const startOffset = startAfter === undefined ? undefined : this.#key(startAfter);
    for await (const { files } of this.#pages(prefix, undefined, path, startOffset)) {
      const found: FileInfo[] = [];
      for (const file of files) {
        const filePath = `/${file.name.slice(this.#root.length)}`;
        // Writers' parts and a commit's intermediates ("~appends/…", when walking "/") are no paths.
        if (!isValidPath(filePath) || (startAfter !== undefined && filePath <= startAfter)) continue;
        found.push({
          path: filePath,
          size: Number(file.metadata.size ?? 0),
          modTime: dateOf(file.metadata.updated),
          isDir: false,
        });
      }
      yield* found;
    }
  }

  async move(source: string, dest: string): Promise<void> {
    if (source === dest) {
      await this.#metadata(source);
      return;
    }
    try {
      await this.#file(source).copy(this.#file(dest));
    } catch (error) {
      throw translate(error, source);
    }
    await this.deleteObject(this.#key(source));
  }

  async delete(path: string): Promise<void> {
    const below: string[] = [];
    const collect = (files: File[]): void => {
      for (const file of files) below.push(file.name);
    };
    await Promise.all([
      this.#listPages(`${this.#key(path)}/`, undefined, path, collect),
      this.#listPages(this.#partsPrefix(path), undefined, path, collect),
    ]);
    const [isFile] = await Promise.all([this.deleteObject(this.#key(path)), this.deleteObjects(below)]);
    if (!isFile && below.length === 0) throw new PathNotFoundError(NAME, path);
  }

  async redirectURL(
    path: string,
    options: { method: 'GET' | 'HEAD'; expiresInSeconds?: number },
  ): Promise<string | undefined> {
    const expiresInSeconds = options.expiresInSeconds ?? this.#redirectExpiry;
    if (expiresInSeconds > MAX_SIGNED_URL_EXPIRY) {
      throw new StorageError(
        NAME,
        `signed URLs last at most ${MAX_SIGNED_URL_EXPIRY} s, not ${expiresInSeconds}`,
      );
    }
    if (options.method === 'HEAD') {
      return signedUrlV4(this.storage, {
        method: 'HEAD',
        bucket: this.bucket.name,
        object: this.#key(path),
        expiresInSeconds,
      });
    }
    const [url] = await this.#file(path).getSignedUrl({
      version: 'v4',
      action: 'read',
      expires: Date.now() + expiresInSeconds * 1000,
    });
    return url;
  }

  // Operations the writer uses.

  /** Stores content as the object name in one request (a multipart upload, not resumable): atomic. */
  async putObject(name: string, content: Uint8Array): Promise<void> {
    try {
      // Buffer.from copies: the caller may change its bytes once this returns.
      await this.bucket
        .file(name)
        .save(Buffer.from(content), { resumable: false, contentType: CONTENT_TYPE });
    } catch (error) {
      throw translate(error, name);
    }
  }

  /** Deletes an object; gives whether it existed. */
  async deleteObject(name: string): Promise<boolean> {
    try {
      await this.bucket.file(name).delete();
      return true;
    } catch (error) {
      if (statusOf(error) === 404 && !isBucketMissing(error)) return false;
      throw translate(error, name);
    }
  }

  /** Deletes objects (missing ones are fine). */
  async deleteObjects(names: readonly string[]): Promise<void> {
    await forEachLimited(names, CONCURRENCY, async (name) => {
      await this.deleteObject(name);
    });
  }

  /** Composes sources, in order, into destination (at most MAX_COMPOSE_SOURCES). */
  async compose(sources: readonly string[], destination: string): Promise<void> {
    const target = this.bucket.file(destination);
    target.metadata.contentType = CONTENT_TYPE;
    try {
      await this.bucket.combine(
        sources.map((name) => this.bucket.file(name)),
        target,
      );
    } catch (error) {
      throw translate(error, destination);
    }
  }

  // Helpers.

  #key(path: string): string {
    return this.#root + path.slice(1);
  }

  #file(path: string): File {
    return this.bucket.file(this.#key(path));
  }

  /** The prefix of the parts of path's writers (and of those of every path below it). */
  #partsPrefix(path: string): string {
    return `${this.#root}${PARTS_PREFIX}${path}/`;
  }

  async #metadata(
    path: string,
  ): Promise<{ size: number; modTime: Date; metadata: Record<string, string> | undefined }> {
    try {
      const [metadata] = await this.#file(path).getMetadata();
      const custom = Object.entries(metadata.metadata ?? {}).filter(
        (entry): entry is [string, string] => typeof entry[1] === 'string',
      );
      return {
        size: Number(metadata.size ?? 0),
        modTime: dateOf(metadata.updated),
        metadata: custom.length > 0 ? Object.fromEntries(custom) : undefined,
      };
    } catch (error) {
      throw translate(error, path);
    }
  }

  /** The parts of path's writers, in order, and any other objects beside them (a commit's intermediates). */
  async #parts(path: string): Promise<{ parts: Part[]; others: string[] }> {
    const prefix = this.#partsPrefix(path);
    const parts: Part[] = [];
    const others: string[] = [];
    await this.#listPages(prefix, '/', path, (files) => {
      for (const file of files) {
        if (PART.test(file.name.slice(prefix.length))) {
          parts.push({ name: file.name, size: Number(file.metadata.size ?? 0) });
        } else {
          others.push(file.name);
        }
      }
    });
    parts.sort((a, b) => (a.name < b.name ? -1 : 1));
    return { parts, others };
  }

  /** Lists prefix page by page (with delimiter: the objects directly below, and the prefixes further down). */
  async #listPages(
    prefix: string,
    delimiter: string | undefined,
    path: string,
    page: (files: File[], prefixes: string[]) => void,
  ): Promise<void> {
    for await (const { files, prefixes } of this.#pages(prefix, delimiter, path)) page(files, prefixes);
  }

  /**
   * The pages of a listing of prefix, in name order, each fetched when the previous one is consumed; from
   * startOffset (inclusive) when given.
   */
  async *#pages(
    prefix: string,
    delimiter: string | undefined,
    path: string,
    startOffset?: string,
  ): AsyncGenerator<{ files: File[]; prefixes: string[] }> {
    let pageToken: string | undefined;
    do {
      let files: File[];
      let response: unknown;
      try {
        [files, , response] = await this.bucket.getFiles({
          prefix,
          ...(delimiter !== undefined && { delimiter }),
          ...(startOffset !== undefined && { startOffset }),
          autoPaginate: false,
          maxResults: 1000,
          ...(pageToken !== undefined && { pageToken }),
        });
      } catch (error) {
        throw translate(error, path);
      }
      const { prefixes, nextPageToken } = listing(response);
      yield { files, prefixes };
      pageToken = nextPageToken;
    } while (pageToken !== undefined);
  }
}

/**
 * A writer: streams its writes into its own part object through a resumable upload, finalised by close
 * (see the module comment). The wrapper (CheckedWriter) runs its calls one at a time and refuses them once
 * it is finished.
 */
class GcsWriter implements FileWriter {
  readonly #parts: Part[];
  /** Objects beside the parts that are not parts (intermediates of an interrupted commit). */
  readonly #others: string[];
  /** Bytes in the parts, closed by earlier writers (and by this one, once it finishes its upload). */
  #closedBytes: number;
  #upload: PartUpload | undefined;
  /** The size of the committed file this writer was opened on, to which nothing can be appended. */
  readonly #committed: number | undefined;

  constructor(
    private readonly backend: GcsBackend,
    private readonly key: string,
    private readonly partsPrefix: string,
    parts: Part[],
    others: string[],
    committed?: number,
  ) {
    this.#parts = parts;
    this.#others = others;
    this.#closedBytes = parts.reduce((total, part) => total + part.size, 0);
    this.#committed = committed;
  }

  get size(): number {
    return this.#committed ?? this.#closedBytes + (this.#upload?.written ?? 0);
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.#committed !== undefined && chunk.length > 0) {
      throw new StorageError(NAME, `${this.key} was committed: nothing can be appended to it`);
    }
    if (chunk.length === 0) return;
    if (this.#upload === undefined) {
      const last = this.#parts.at(-1);
      const number = last === undefined ? 0 : Number(last.name.slice(this.partsPrefix.length)) + 1;
      const name = `${this.partsPrefix}${String(number).padStart(10, '0')}`;
      this.#upload = new PartUpload(this.backend.bucket.file(name), this.backend.chunkSize);
    }
    await this.#upload.write(chunk);
  }

  async close(): Promise<void> {
    await this.#finishUpload();
  }

  async commit(): Promise<void> {
    if (this.#committed !== undefined) return; // Committed again (a retried final request): it stays.
    await this.#finishUpload();
    const parts = this.#parts.map(({ name }) => name);
    if (parts.length === 0) {
      await this.backend.putObject(this.key, new Uint8Array(0));
      await this.backend.deleteObjects(this.#others);
    } else {
      await this.#composeTree(parts);
    }
  }

  async cancel(): Promise<void> {
    this.#upload?.abort();
    this.#upload = undefined;
    await this.backend.deleteObjects([this.key, ...this.#parts.map(({ name }) => name), ...this.#others]);
  }

  /** Finalises this writer's part, if it wrote one, and counts it among the parts. */
  async #finishUpload(): Promise<void> {
    const upload = this.#upload;
    if (upload === undefined) return;
    const size = await upload.end();
    if (size !== upload.written) {
      throw new StorageError(NAME, `${upload.name}: stored ${size} bytes of ${upload.written} written`);
    }
    this.#parts.push({ name: upload.name, size });
    this.#closedBytes += size;
    this.#upload = undefined;
  }

  /**
   * Composes the parts into the file: in rounds of composes of 32 into intermediates while more than 32
   * remain, then into the file. Deletes parts and intermediates afterwards.
   */
  async #composeTree(parts: string[]): Promise<void> {
    const intermediates: string[] = [];
    let sources = parts;
    for (let round = 0; sources.length > MAX_COMPOSE_SOURCES; round++) {
      const groups: string[][] = [];
      for (let index = 0; index < sources.length; index += MAX_COMPOSE_SOURCES) {
        groups.push(sources.slice(index, index + MAX_COMPOSE_SOURCES));
      }
      const next = groups.map((group, index) =>
        group.length === 1 ? (group[0] as string) : `${this.partsPrefix}~compose-${round}-${index}`,
      );
      await forEachLimited(
        groups.map((group, index) => ({ group, target: next[index] as string })),
        CONCURRENCY,
        async ({ group, target }) => {
          if (group.length > 1) {
            intermediates.push(target);
            await this.backend.compose(group, target);
          }
        },
      );
      sources = next;
    }
    await this.backend.compose(sources, this.key);
    await this.backend.deleteObjects([...parts, ...intermediates, ...this.#others]);
  }
}

/** One resumable upload into a part object, fed chunk by chunk with the stream's backpressure. */
class PartUpload {
  readonly name: string;
  /** Bytes handed to the upload so far. */
  written = 0;
  readonly #stream: Writable;
  readonly #file: File;
  #error: unknown;

  constructor(file: File, chunkSize: number) {
    this.name = file.name;
    this.#file = file;
    this.#stream = file.createWriteStream({ resumable: true, chunkSize, contentType: CONTENT_TYPE });
    this.#stream.on('error', (error) => {
      this.#error ??= error;
    });
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.#throwIfFailed();
    this.written += chunk.length;
    // A copy: the stream holds on to chunks until they are sent, and the caller may reuse its buffer.
    if (!this.#stream.write(Buffer.from(chunk))) await drained(this.#stream);
    this.#throwIfFailed();
  }

  /** Finalises the upload; gives the size of the part stored. */
  async end(): Promise<number> {
    this.#throwIfFailed();
    this.#stream.end();
    try {
      await finished(this.#stream);
    } catch (error) {
      throw translate(this.#error ?? error, this.name);
    }
    return Number(this.#file.metadata.size ?? this.written);
  }

  abort(): void {
    this.#stream.destroy();
  }

  #throwIfFailed(): void {
    if (this.#error !== undefined) throw translate(this.#error, this.name);
  }
}

/**
 * A V4 signed URL for method on an object, made exactly as the SDK's getSignedUrl makes one for GET,
 * which it cannot do for HEAD (https://cloud.google.com/storage/docs/access-control/signing-urls-manually):
 * canonical request = method, resource path, sorted query, the host header (the endpoint's host name),
 * and UNSIGNED-PAYLOAD; its SHA-256 is signed (RSA-SHA256) by the storage's auth client, locally with a
 * key, or by the IAM signBlob API with application default credentials.
 */
export async function signedUrlV4(
  storage: Storage,
  request: { method: string; bucket: string; object: string; expiresInSeconds: number; now?: Date },
): Promise<string> {
  const endpoint = new URL(storage.apiEndpoint);
  const now = request.now ?? new Date();
  const timestamp = now.toISOString().replace(/[-:]|\.\d{3}/g, ''); // 20260101T120000Z
  const scope = `${timestamp.slice(0, 8)}/auto/storage/goog4_request`;
  const { client_email: email } = await storage.authClient.getCredentials();
  if (email === undefined || email === '') {
    throw new StorageError(NAME, 'signing a URL needs a service account (client_email)');
  }
  const resourcePath = `/${request.bucket}/${request.object.split('/').map(rfc3986).join('/')}`;
  const query = [
    ['X-Goog-Algorithm', 'GOOG4-RSA-SHA256'],
    ['X-Goog-Credential', `${email}/${scope}`],
    ['X-Goog-Date', timestamp],
    ['X-Goog-Expires', String(request.expiresInSeconds)],
    ['X-Goog-SignedHeaders', 'host'],
  ]
    .map(([key, value]) => [rfc3986(key ?? ''), rfc3986(value ?? '')] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`)
    .join('&');
  const canonicalRequest = [
    request.method,
    resourcePath,
    query,
    `host:${endpoint.hostname}\n`,
    'host',
    'UNSIGNED-PAYLOAD',
  ].join('\n');
  const stringToSign = [
    'GOOG4-RSA-SHA256',
    timestamp,
    scope,
    createHash('sha256').update(canonicalRequest).digest('hex'),
  ].join('\n');
  const signature = Buffer.from(await storage.authClient.sign(stringToSign), 'base64').toString('hex');
  const url = new URL(endpoint.href);
  url.pathname = resourcePath;
  url.search = `${query}&X-Goog-Signature=${signature}`;
  return url.href;
}

/**
 * The one place backend errors become driver errors: a 404 about an object is PathNotFoundError for path;
 * StorageErrors stay as they are; anything else becomes a StorageError naming the HTTP status.
 */
function translate(error: unknown, path: string): StorageError {
  if (error instanceof StorageError) return error;
  const status = statusOf(error);
  if (status === 404 && !isBucketMissing(error)) return new PathNotFoundError(NAME, path);
  const message = error instanceof Error ? error.message : String(error);
  return new StorageError(NAME, `${path}: ${status === undefined ? '' : `HTTP ${status}: `}${message}`, {
    cause: error,
  });
}

/** The HTTP status an SDK error carries (ApiError.code, or a gaxios error's response status). */
function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, status, response } = error as {
    code?: unknown;
    status?: unknown;
    response?: { status?: unknown };
  };
  for (const value of [code, status, response?.status]) if (typeof value === 'number') return value;
  return undefined;
}

function isBucketMissing(error: unknown): boolean {
  return error instanceof Error && /bucket does not exist/i.test(error.message);
}

/** The prefixes and next page token of a raw object listing. */
function listing(response: unknown): { prefixes: string[]; nextPageToken: string | undefined } {
  const { prefixes, nextPageToken } = (typeof response === 'object' && response !== null ? response : {}) as {
    prefixes?: unknown;
    nextPageToken?: unknown;
  };
  return {
    prefixes: Array.isArray(prefixes)
      ? prefixes.filter((prefix): prefix is string => typeof prefix === 'string')
      : [],
    nextPageToken: typeof nextPageToken === 'string' && nextPageToken !== '' ? nextPageToken : undefined,
  };
}

function dateOf(value: unknown): Date {
  const date = typeof value === 'string' ? new Date(value) : new Date(NaN);
  return Number.isNaN(date.getTime()) ? new Date() : date;
}

/** Encodes as V4 signing does: everything but A-Z a-z 0-9 - . _ ~ percent-encoded. */
function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.close();
    },
  });
}

/**
 * A media download as a pull-based Web stream of Uint8Arrays: one chunk read per pull, so a slow consumer
 * holds the download back; cancelling destroys it. Waits for the first chunk (or the end), so that a
 * refused request (404, 416) rejects here rather than in the stream.
 */
async function pullStream(body: Readable): Promise<ReadableStream<Uint8Array>> {
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let first: IteratorResult<Buffer>;
  try {
    first = await iterator.next();
  } catch (error) {
    body.destroy();
    throw error;
  }
  let pending: IteratorResult<Buffer> | undefined = first;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = pending ?? (await iterator.next());
        pending = undefined;
        if (next.done === true) {
          controller.close();
          return;
        }
        const chunk = next.value;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      },
      cancel() {
        body.destroy();
      },
    },
    { highWaterMark: 0 },
  );
}

/** Resolves once stream drains; rejects if it fails or closes first. */
function drained(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (error?: Error): void => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onDrain = (): void => {
      settle();
    };
    const onError = (error: Error): void => {
      settle(error);
    };
    const onClose = (): void => {
      settle(stream.errored ?? new Error('the upload stream closed'));
    };
    stream.on('drain', onDrain);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}

/** A StorageDriver ("gcs") over a GCS bucket; see the module comment for its layout and costs. */
export class GcsDriver extends CheckedDriver {
  constructor(options: GcsDriverOptions) {
    super(new GcsBackend(options));
  }
}

/**
 * A GcsDriver from distribution's `storage.gcs` parameters: bucket (required), keyfile or credentials
 * (neither: application default credentials), rootdirectory, chunksize; plus this registry's own endpoint
 * (not in distribution). Unknown keys and invalid values are ConfigErrors naming the key.
 */
export function gcsDriverFromParameters(parameters: Record<string, unknown>): GcsDriver {
  return new GcsDriver(gcsOptionsFromParameters(parameters));
}
