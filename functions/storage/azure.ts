/**
 * AzureDriver: a StorageDriver over a container of Azure Blob Storage (or Azurite), with
 * @azure/storage-blob. The path "/a/b" is the block blob "<rootDirectory>/a/b". Modelled on distribution's
 * registry/storage/driver/azure, except that writers stage the blocks of a block blob rather than append
 * to an append blob (so a file written through a writer is readable only once committed, as with S3).
 *
 * - putContent is one Put Blob (atomic); getContent and reader are one Get Blob (with a Range), read as a
 *   pull-based stream; stat is a Get Blob Properties, or for a "directory" a one-blob listing below it;
 *   list is a listing by hierarchy with the delimiter "/"; walk is a flat listing, a page at a time (List
 *   Blobs has no start-after, so a walk resumed with startAfter pages through the names before it
 *   without yielding them); move is a Copy Blob (waited for) then a Delete Blob; delete removes one blob
 *   and every blob below the path, uncommitted ones (a writer's staged blocks) included; redirectURL is a
 *   read-only blob SAS (see redirectURL).
 *
 * Writers. A writer buffers up to a block (8 MiB) and stages each full buffer as the next block of the
 * file's block blob (Put Block); close() stages what is buffered as a last, smaller block (never an empty
 * one). Staged blocks are kept by Azure, unreadable, until a Put Block List commits them (or for a week),
 * so nothing else is stored: writer(path, true) reads the blob's uncommitted block list, in any process,
 * and resumes after it. Block ids are "block-NNNNNNNNN" (base64, all the same length as Azure requires)
 * with a sequence number, since the service does not list uncommitted blocks in a set order.
 *
 * Azure calls (B = blocks filled by the writes, one per 8 MiB written):
 * - writer(path, true): one Get Block List. A blob with uncommitted blocks resumes them; a committed
 *   blob without any is "committed": the writer has its size, close and commit leave it as it is (a
 *   retried final request), cancel deletes it, and a write is refused.
 * - writer(path, false): one Delete Blob (which also drops staged blocks).
 * - write: B Put Blocks. close: one Put Block if anything is buffered.
 * - commit: without any staged block, one Put Blob; otherwise a Put Block for the buffered tail and one
 *   Put Block List (content type application/octet-stream).
 * - cancel: one Delete Blob.
 *
 * Contract difference (as with S3): bytes a writer closed without committing are resumed by
 * writer(path, true), whose size counts them, but getContent, reader, stat and list see them only once
 * committed. delete removes them with the rest of a path, and does not report PathNotFoundError for a
 * path that holds only them.
 *
 * Limits: 50,000 blocks per blob, so a file written through a writer is at most about 390 GiB (fewer
 * when many small requests each close a small block); the block that would exceed it is refused with a
 * StorageError. Azure discards uncommitted blocks a week after the last Put Block: an upload left idle
 * longer starts over (as the registry's upload purging does after 168 h by default). Two processes
 * writing one path at the same time would overwrite each other's blocks; the registry writes an upload
 * from one request at a time.
 */
import {
  BlobSASPermissions,
  BlobServiceClient,
  generateBlobSASQueryParameters,
  RestError,
  SASProtocol,
  StorageSharedKeyCredential,
  type BlobSASSignatureValues,
  type BlockBlobClient,
  type ContainerClient,
  type StoragePipelineOptions,
  type UserDelegationKey,
} from '@azure/storage-blob';
import type { TokenCredential } from '@azure/identity';

import { CheckedDriver } from './checked.js';
import { InvalidOffsetError, isValidPath, PathNotFoundError, StorageError } from './driver.js';
import type { FileInfo, FileWriter, StorageDriver, WalkOptions } from './driver.js';
import { forEachLimited } from './limited.js';
import { azureOptionsFromParameters } from './azure-parameters.js';
import { ConfigError } from '../config.js';

export { azureOptionsFromParameters };

const NAME = 'azure';
const KiB = 1024;
const MiB = 1024 * KiB;
const MINUTE = 60_000;

/** The size of every block a writer stages but the last of each close(). */
export const BLOCK_SIZE = 8 * MiB;
/** Azure's limits: committed blocks per blob, and the size of one block (since version 2019-12-12). */
export const MAX_BLOCKS = 50_000;
const MAX_BLOCK_SIZE = 4000 * MiB;
const CONTENT_TYPE = 'application/octet-stream';
const DEFAULT_REDIRECT_EXPIRY = 20 * 60;
/** A SAS (and a user delegation key) starts this far in the past, for clocks running behind ours. */
const CLOCK_SKEW = 5 * MINUTE;
/** How long a user delegation key is asked for, and how long before its end it is renewed (as distribution). */
const DELEGATION_KEY_LIFETIME = 48 * 60 * MINUTE;
const DELEGATION_KEY_RENEWAL = 30 * MINUTE;
/**
 * The version redirect SAS are signed in. Pinned, rather than the SDK's newest (2026-04-06, whose
 * user delegation string-to-sign has two more fields), so that the signature format does not change with
 * SDK upgrades and Azurite 3.35 (the emulator distribution tests against too) verifies it; Azure accepts
 * SAS of earlier versions.
 */
const SAS_VERSION = '2025-11-05';
const COPY_POLL_INTERVAL = 1000;
/** How many deletions run at once when a directory is deleted. */
const CONCURRENCY = 16;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
/** A block id before base64: fixed length, with a sequence number (at most 999,999,999 blocks). */
const BLOCK_ID = /^block-(\d{9})$/;

/** How the driver reaches the storage account and authenticates. */
export type AzureAccount =
  /**
   * A connection string: AccountName and AccountKey (shared key), a SharedAccessSignature (redirects
   * are then off: the SAS would be handed out), or Azurite's. Its endpoint may be http.
   */
  | { connectionString: string }
  /** An account key: requests and redirect SAS are signed with it. */
  | { serviceURL: string; accountName: string; accountKey: string }
  /** A Microsoft Entra ID credential: redirect SAS are signed with a user delegation key. */
  | { serviceURL: string; accountName: string; credential: TokenCredential };

export interface AzureDriverOptions {
  /** The blob container, which must exist. */
  container: string;
  account: AzureAccount;
  /** A blob name prefix below which every path is stored ("registry" stores "/a" as "registry/a"). */
  rootDirectory?: string;
  /** How long redirect SAS stay valid when the caller does not say (20 minutes). */
  redirectExpirySeconds?: number;
  /** The size of the blocks writers stage (8 MiB, at most 4000 MiB); a writer buffers one in memory. */
  blockSizeBytes?: number;
  /** The most blocks a writer stages for one file: Azure's limit, 50,000; lower only to reach it in tests. */
  maxBlocks?: number;
  /** Options for the SDK's pipeline: retries, proxy, keep-alive, user agent, its HTTP client. */
  clientOptions?: StoragePipelineOptions;
}

/** What signs redirect SAS: the account key, a user delegation key, or nothing (no redirects). */
type Signer =
  | { kind: 'sharedKey'; credential: StorageSharedKeyCredential }
  | { kind: 'delegation'; accountName: string }
  | { kind: 'none' };

class AzureBackend implements StorageDriver {
  readonly name = NAME;
  /** Last-Modified is an HTTP date: whole seconds. */
  readonly timeResolutionMs = 1000;
  readonly service: BlobServiceClient;
  readonly container: ContainerClient;
  readonly blockSize: number;
  readonly maxBlocks: number;
  readonly #root: string;
  readonly #redirectExpiry: number;
  readonly #signer: Signer;
  readonly #protocol: SASProtocol;
  #delegationKey: { key: Promise<UserDelegationKey>; expiresOn: number } | undefined;

  constructor(options: AzureDriverOptions) {
    for (const [name, value, max] of [
      ['redirectExpirySeconds', options.redirectExpirySeconds, Number.MAX_SAFE_INTEGER],
      ['blockSizeBytes', options.blockSizeBytes, MAX_BLOCK_SIZE],
      ['maxBlocks', options.maxBlocks, MAX_BLOCKS],
    ] as const) {
      if (value !== undefined && !(Number.isSafeInteger(value) && value > 0 && value <= max)) {
        throw new StorageError(NAME, `${name}: expected a positive integer up to ${max}, got ${value}`);
      }
    }
    const { account, clientOptions } = options;
    if ('connectionString' in account) {
      this.service = BlobServiceClient.fromConnectionString(account.connectionString, clientOptions);
      const credential = this.service.credential;
      this.#signer =
        credential instanceof StorageSharedKeyCredential
          ? { kind: 'sharedKey', credential }
          : { kind: 'none' };
    } else if ('accountKey' in account) {
      const credential = new StorageSharedKeyCredential(account.accountName, account.accountKey);
      this.service = new BlobServiceClient(account.serviceURL, credential, clientOptions);
      this.#signer = { kind: 'sharedKey', credential };
    } else {
      this.service = new BlobServiceClient(account.serviceURL, account.credential, clientOptions);
      this.#signer = { kind: 'delegation', accountName: account.accountName };
    }
    this.container = this.service.getContainerClient(options.container);
    this.#protocol = this.service.url.startsWith('https:') ? SASProtocol.Https : SASProtocol.HttpsAndHttp;
    const root = (options.rootDirectory ?? '').replace(/^\/+|\/+$/g, '');
    this.#root = root === '' ? '' : `${root}/`;
    this.#redirectExpiry = options.redirectExpirySeconds ?? DEFAULT_REDIRECT_EXPIRY;
    this.blockSize = options.blockSizeBytes ?? BLOCK_SIZE;
    this.maxBlocks = options.maxBlocks ?? MAX_BLOCKS;
  }

  async getContent(path: string): Promise<Uint8Array> {
    try {
      // One Get Blob (not downloadToBuffer, which reads the size first and then ranges): atomic.
      const response = await this.#blob(path).download(0);
      return await readAll(response.readableStreamBody);
    } catch (error) {
      throw failure(error, path);
    }
  }

  async putContent(path: string, content: Uint8Array): Promise<void> {
    try {
      await this.#blob(path).upload(content, content.length, {
        blobHTTPHeaders: { blobContentType: CONTENT_TYPE },
      });
    } catch (error) {
      throw failure(error, path);
    }
  }

  async reader(path: string, offset = 0, length?: number): Promise<ReadableStream<Uint8Array>> {
    const blob = this.#blob(path);
    if (length === 0) {
      // A Range cannot ask for nothing: check that offset is within the file, and give nothing.
      if (offset > (await this.#properties(path)).size) throw new InvalidOffsetError(NAME, path, offset);
      return emptyStream();
    }
    try {
      const response = await blob.download(offset, length);
      return bodyStream(response.readableStreamBody);
    } catch (error) {
      if (statusOf(error) !== 416) throw failure(error, path);
    }
    // 416: offset is at or past the end. (At the end, Azure answers 416, Azurite 200 with nothing.)
    if (offset !== (await this.#properties(path)).size) throw new InvalidOffsetError(NAME, path, offset);
    return emptyStream();
  }

  async writer(path: string, append: boolean): Promise<FileWriter> {
    const blob = this.#blob(path);
    try {
      if (!append) {
        await deleteBlob(blob);
        return new AzureWriter(this, blob, []);
      }
      const list = await blob.getBlockList('all').catch((error: unknown) => {
        if (isNotFound(error)) return undefined;
        throw error;
      });
      if (list === undefined) return new AzureWriter(this, blob, []);
      const staged = (list.uncommittedBlocks ?? []).map(({ name, size }): StagedBlock => {
        const sequence = blockSequence(name);
        if (sequence === undefined) {
          throw new StorageError(
            NAME,
            `${path}: the blob has uncommitted blocks this driver did not stage; write it with append false`,
          );
        }
        return { id: name, sequence, size };
      });
      if (staged.length === 0) return new AzureWriter(this, blob, [], list.blobContentLength ?? 0);
      // The service lists uncommitted blocks in the order they were staged, not by id.
      return new AzureWriter(
        this,
        blob,
        staged.sort((a, b) => a.sequence - b.sequence),
      );
    } catch (error) {
      throw failure(error, path);
    }
  }

  async stat(path: string): Promise<FileInfo> {
    try {
      const { size, modTime, metadata } = await this.#properties(path);
      return { path, size, modTime, isDir: false, ...(metadata && { metadata }) };
    } catch (error) {
      if (!(error instanceof PathNotFoundError)) throw error;
    }
    try {
      // Listings may give empty pages with a continuation: read on until a blob or the end.
      const pages = this.container
        .listBlobsFlat({ prefix: `${this.#key(path)}/` })
        .byPage({ maxPageSize: 1 });
      for await (const page of pages) {
        const first = page.segment.blobItems[0];
        if (first !== undefined)
          return { path, size: 0, modTime: first.properties.lastModified, isDir: true };
      }
    } catch (error) {
      throw failure(error, path);
    }
    throw new PathNotFoundError(NAME, path);
  }

  async list(path: string): Promise<string[]> {
    const prefix = path === '/' ? this.#root : `${this.#key(path)}/`;
    const base = path === '/' ? '' : path;
    const children = new Set<string>();
    const add = (name: string): void => {
      if (SEGMENT.test(name) && name !== '.' && name !== '..') children.add(`${base}/${name}`);
    };
    try {
      const pages = this.container
        .listBlobsByHierarchy('/', prefix === '' ? {} : { prefix })
        .byPage({ maxPageSize: 5000 });
      for await (const page of pages) {
        for (const { name } of page.segment.blobPrefixes ?? []) add(name.slice(prefix.length, -1));
        for (const { name } of page.segment.blobItems) add(name.slice(prefix.length));
      }
    } catch (error) {
      throw failure(error, path);
    }
    if (children.size === 0) throw new PathNotFoundError(NAME, path);
    return [...children].sort();
  }

  async *walk(path: string, { startAfter }: WalkOptions = {}): AsyncIterable<FileInfo> {
    const prefix = path === '/' ? this.#root : `${this.#key(path)}/`;
    try {
      // Committed blobs only (a writer's staged blocks are not listed), in name order, a page at a time.
      const pages = this.container
        .listBlobsFlat(prefix === '' ? {} : { prefix })
        .byPage({ maxPageSize: 5000 });
      for await (const page of pages) {
        const files: FileInfo[] = [];
        for (const { name, properties } of page.segment.blobItems) {
          const found = `/${name.slice(this.#root.length)}`;
          if (!isValidPath(found) || (startAfter !== undefined && found <= startAfter)) continue;
          files.push({
            path: found,
            size: properties.contentLength ?? 0,
            modTime: properties.lastModified,
            isDir: false,
          });
        }
        yield* files;
      }
    } catch (error) {
      throw failure(error, path);
    }
  }

  async move(source: string, dest: string): Promise<void> {
    if (source === dest) {
      await this.#properties(source);
      return;
    }
    const from = this.#blob(source);
    try {
      // Within one account the copy is authorised by the destination's credential and usually done at
      // once; a pending one is polled until it ends. It replaces dest, and drops blocks staged there.
      const poller = await this.#blob(dest).beginCopyFromURL(from.url, { intervalInMs: COPY_POLL_INTERVAL });
      const result = await poller.pollUntilDone();
      if (result.copyStatus !== undefined && result.copyStatus !== 'success') {
        throw new StorageError(NAME, `copy of ${source} to ${dest} ended ${result.copyStatus}`);
      }
    } catch (error) {
      throw failure(error, source);
    }
    try {
      await deleteBlob(from);
    } catch (error) {
      throw failure(error, source);
    }
  }

  async delete(path: string): Promise<void> {
    const key = this.#key(path);
    let found = 0;
    try {
      // Below the path first, so that what is left after a failure is still found under the path.
      const pages = this.container
        .listBlobsFlat({ prefix: `${key}/`, includeUncommitedBlobs: true })
        .byPage({ maxPageSize: 5000 });
      for await (const page of pages) {
        const names = page.segment.blobItems.map(({ name }) => name);
        await forEachLimited(names, CONCURRENCY, async (name) => {
          if (await deleteBlob(this.container.getBlockBlobClient(name))) found++;
        });
      }
      if (await deleteBlob(this.#blob(path))) found++;
    } catch (error) {
      throw failure(error, path);
    }
    if (found === 0) throw new PathNotFoundError(NAME, path);
  }

  /**
   * A read-only SAS URL of the blob (`sp=r`, good for GET and HEAD), from 5 minutes ago (for clock skew)
   * until the expiry; HTTPS only when the service is. It is signed with the account key when the driver
   * has one, else with a user delegation key (Entra ID credentials); with a SAS connection string the
   * driver does not redirect (undefined).
   */
  async redirectURL(
    path: string,
    options: { method: 'GET' | 'HEAD'; expiresInSeconds?: number },
  ): Promise<string | undefined> {
    const signer = this.#signer;
    if (signer.kind === 'none') return undefined;
    const now = Date.now();
    const values: BlobSASSignatureValues = {
      containerName: this.container.containerName,
      blobName: this.#key(path),
      permissions: BlobSASPermissions.parse('r'),
      startsOn: new Date(now - CLOCK_SKEW),
      expiresOn: new Date(now + (options.expiresInSeconds ?? this.#redirectExpiry) * 1000),
      protocol: this.#protocol,
      version: SAS_VERSION,
    };
    let sas: string;
    try {
      sas =
        signer.kind === 'sharedKey'
          ? generateBlobSASQueryParameters(values, signer.credential).toString()
          : generateBlobSASQueryParameters(
              values,
              await this.#userDelegationKey(values.expiresOn?.getTime() ?? now),
              signer.accountName,
            ).toString();
    } catch (error) {
      throw failure(error, path);
    }
    return `${this.#blob(path).url}?${sas}`;
  }

  // Helpers.

  #key(path: string): string {
    return this.#root + path.slice(1);
  }

  #blob(path: string): BlockBlobClient {
    return this.container.getBlockBlobClient(this.#key(path));
  }

  async #properties(
    path: string,
  ): Promise<{ size: number; modTime: Date; metadata: Record<string, string> | undefined }> {
    try {
      const properties = await this.#blob(path).getProperties();
      const metadata = properties.metadata;
      return {
        size: properties.contentLength ?? 0,
        modTime: properties.lastModified ?? new Date(),
        metadata: metadata && Object.keys(metadata).length > 0 ? metadata : undefined,
      };
    } catch (error) {
      throw failure(error, path);
    }
  }

  /**
   * A user delegation key valid at least until expiresOn: kept for 48 hours (or until expiresOn, if
   * later) and renewed when less than 30 minutes of it are left, as distribution does.
   */
  #userDelegationKey(expiresOn: number): Promise<UserDelegationKey> {
    const now = Date.now();
    const cached = this.#delegationKey;
    if (
      cached !== undefined &&
      cached.expiresOn - now >= DELEGATION_KEY_RENEWAL &&
      cached.expiresOn >= expiresOn
    ) {
      return cached.key;
    }
    const keyExpiresOn = Math.max(now + DELEGATION_KEY_LIFETIME, expiresOn);
    const key = this.service
      .getUserDelegationKey(new Date(now - CLOCK_SKEW), new Date(keyExpiresOn))
      .then((response): UserDelegationKey => response);
    this.#delegationKey = { key, expiresOn: keyExpiresOn };
    key.catch(() => {
      if (this.#delegationKey?.key === key) this.#delegationKey = undefined;
    });
    return key;
  }
}

interface StagedBlock {
  id: string;
  sequence: number;
  size: number;
}

/**
 * A writer: buffers up to a block, stages each full buffer as the next block, and on close stages the rest
 * (see the module comment). The wrapper (CheckedWriter) runs its calls one at a time and refuses them once
 * it is finished.
 */
class AzureWriter implements FileWriter {
  readonly #blocks: StagedBlock[];
  #stagedBytes: number;
  #buffer = new Uint8Array(0);
  #buffered = 0;
  /** The size of the committed file this writer was opened on, to which nothing can be appended. */
  readonly #committed: number | undefined;

  constructor(
    private readonly backend: AzureBackend,
    private readonly blob: BlockBlobClient,
    staged: StagedBlock[],
    committed?: number,
  ) {
    this.#blocks = staged;
    this.#stagedBytes = staged.reduce((total, block) => total + block.size, 0);
    this.#committed = committed;
  }

  get size(): number {
    return this.#committed ?? this.#stagedBytes + this.#buffered;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.#committed !== undefined && chunk.length > 0) {
      throw new StorageError(NAME, `${this.blob.name} was committed: nothing can be appended to it`);
    }
    const blockSize = this.backend.blockSize;
    for (let offset = 0; offset < chunk.length;) {
      const taken = Math.min(blockSize - this.#buffered, chunk.length - offset);
      this.#reserve(this.#buffered + taken);
      this.#buffer.set(chunk.subarray(offset, offset + taken), this.#buffered);
      this.#buffered += taken;
      offset += taken;
      if (this.#buffered === blockSize) await this.#stage();
    }
  }

  async close(): Promise<void> {
    if (this.#buffered > 0) await this.#stage();
    this.#release();
  }

  async commit(): Promise<void> {
    if (this.#committed !== undefined) return; // Committed again (a retried final request): it stays.
    if (this.#blocks.length === 0) {
      // Less than a block in all: one Put Blob.
      await this.blob.upload(this.#buffer.subarray(0, this.#buffered), this.#buffered, {
        blobHTTPHeaders: { blobContentType: CONTENT_TYPE },
      });
    } else {
      if (this.#buffered > 0) await this.#stage();
      await this.blob.commitBlockList(
        this.#blocks.map(({ id }) => id),
        { blobHTTPHeaders: { blobContentType: CONTENT_TYPE } },
      );
    }
    this.#release();
  }

  async cancel(): Promise<void> {
    await deleteBlob(this.blob);
    this.#release();
  }

  /** Stages the buffer as the next block and empties it. */
  async #stage(): Promise<void> {
    if (this.#blocks.length >= this.backend.maxBlocks) {
      throw new StorageError(
        NAME,
        `${this.blob.name}: a file written through a writer is limited to ${this.backend.maxBlocks} blocks`,
      );
    }
    const sequence = (this.#blocks.at(-1)?.sequence ?? -1) + 1;
    const id = blockId(sequence);
    const body = this.#buffer.subarray(0, this.#buffered);
    await this.blob.stageBlock(id, body, body.length);
    this.#blocks.push({ id, sequence, size: body.length });
    this.#stagedBytes += body.length;
    this.#buffered = 0;
  }

  /** Grows the buffer (geometrically, up to a block) to hold at least needed bytes. */
  #reserve(needed: number): void {
    if (needed <= this.#buffer.length) return;
    const size = Math.min(this.backend.blockSize, Math.max(needed, this.#buffer.length * 2, 64 * KiB));
    const grown = new Uint8Array(size);
    grown.set(this.#buffer.subarray(0, this.#buffered));
    this.#buffer = grown;
  }

  #release(): void {
    this.#buffer = new Uint8Array(0);
    this.#buffered = 0;
  }
}

function blockId(sequence: number): string {
  return Buffer.from(`block-${String(sequence).padStart(9, '0')}`, 'latin1').toString('base64');
}

/** The sequence number of a block id this driver made, or undefined. */
function blockSequence(id: string): number | undefined {
  const match = BLOCK_ID.exec(Buffer.from(id, 'base64').toString('latin1'));
  if (match?.[1] === undefined) return undefined;
  const sequence = Number(match[1]);
  return blockId(sequence) === id ? sequence : undefined;
}

/** Deletes a blob, committed or with staged blocks only; false if there was none. */
async function deleteBlob(blob: BlockBlobClient): Promise<boolean> {
  try {
    await blob.delete({ deleteSnapshots: 'include' });
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

function statusOf(error: unknown): number | undefined {
  return error instanceof RestError ? error.statusCode : undefined;
}

/** The service's error code (from the body, or for a HEAD from the x-ms-error-code header). */
function errorCode(error: RestError): string | undefined {
  const details = error.details as { errorCode?: unknown } | undefined;
  return error.code ?? (typeof details?.errorCode === 'string' ? details.errorCode : undefined);
}

/** Whether error says that the blob does not exist (a 404 that is not about the container). */
function isNotFound(error: unknown): boolean {
  if (!(error instanceof RestError) || error.statusCode !== 404) return false;
  return errorCode(error) !== 'ContainerNotFound';
}

/**
 * The driver's error for an error of the SDK: a PathNotFoundError for path if the blob does not exist;
 * for other service errors a StorageError naming the error code and HTTP status (and, for refused
 * credentials, what to check); anything else unchanged (CheckedDriver wraps it).
 */
function failure(error: unknown, path: string): unknown {
  if (error instanceof StorageError || !(error instanceof RestError)) return error;
  if (isNotFound(error)) return new PathNotFoundError(NAME, path);
  const status = error.statusCode;
  const code = errorCode(error) ?? 'error';
  const where = `${code}${status === undefined ? '' : ` (HTTP ${status})`}`;
  let message: string;
  if (status === 403 || status === 401) {
    message = `${path}: access refused, ${where}: check the account name and key, the SAS or the credentials, and their permissions on the container`;
  } else if (code === 'ContainerNotFound') {
    message = `${path}: the container does not exist, ${where}`;
  } else {
    const detail = error.message.split('\n')[0]?.trim() ?? '';
    message = `${path}: ${where}${detail === '' || detail === code ? '' : `: ${detail}`}`;
  }
  return new StorageError(NAME, message, { cause: error });
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.close();
    },
  });
}

function asBytes(chunk: Buffer | string): Uint8Array {
  return typeof chunk === 'string'
    ? new TextEncoder().encode(chunk)
    : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/**
 * A Get Blob body as a pull-based Web stream of Uint8Arrays: one chunk read from the socket per pull, so a
 * slow consumer holds the download back; cancelling destroys the connection.
 */
function bodyStream(body: NodeJS.ReadableStream | undefined): ReadableStream<Uint8Array> {
  if (body === undefined) return emptyStream();
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await iterator.next();
        if (next.done === true) controller.close();
        else controller.enqueue(asBytes(next.value));
      },
      async cancel() {
        await iterator.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}

async function readAll(body: NodeJS.ReadableStream | undefined): Promise<Uint8Array> {
  if (body === undefined) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer | string>) {
    const bytes = asBytes(chunk);
    chunks.push(bytes);
    size += bytes.length;
  }
  const content = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    content.set(chunk, offset);
    offset += chunk.length;
  }
  return content;
}

/** A StorageDriver ("azure") over an Azure Blob Storage container; see the module comment. */
export class AzureDriver extends CheckedDriver {
  constructor(options: AzureDriverOptions) {
    super(new AzureBackend(options));
  }
}

/**
 * An AzureDriver from distribution's `storage.azure` parameters (see azure-parameters.ts): container
 * (required), and the account as a connectionstring, or accountname with an accountkey or
 * credentials.type client_secret / default_credentials; realm, serviceurl, rootdirectory. Asynchronous
 * because Entra ID credentials load @azure/identity on demand. Invalid parameters are ConfigErrors
 * naming the key.
 */
export async function azureDriverFromParameters(parameters: Record<string, unknown>): Promise<AzureDriver> {
  const options = await azureOptionsFromParameters(parameters);
  try {
    return new AzureDriver(options);
  } catch (error) {
    // The SDK refuses what our checks of a connection string let through (an unknown endpoint form).
    if (!('connectionString' in options.account) || error instanceof StorageError) throw error;
    throw new ConfigError(`storage.azure.connectionstring: ${(error as Error).message}`);
  }
}
