import type { MetadataStore } from '../metadata/store.js';
import type { Logger } from '../log.js';
import type { BlobStore } from './blob-store.js';
import type { RunningHash } from './digest.js';
import type { UploadUrlSigner } from './upload-urls.js';

export interface RegistryOptions {
  /** distribution's storage.delete.enabled: without it, DELETE answers 405 UNSUPPORTED. */
  deleteEnabled: boolean;
  /** distribution's storage.maintenance.readonly: pushes and deletes answer 405, pulls work. */
  readOnly: boolean;
  /** Answer blob GETs with a 307 to the driver's URL when it gives one (distribution's storage.redirect). */
  redirect: boolean;
  redirectExpirySeconds: number;
  /** How long an idle upload session lives (distribution's storage.maintenance.uploadpurging.age). */
  uploadTTLSeconds: number;
  /**
   * Persist each upload's running hash state in its session, so that a chunk landing on another
   * process continues the hash instead of re-reading the upload (needed on Lambda, and with storage
   * that cannot read an upload back before it completes, like S3 multipart).
   */
  persistHashState: boolean;
  /**
   * Whether a tag of a repository is immutable (the `immutability` configuration): once it exists,
   * a push may not move it to another manifest. Never, by default.
   */
  immutableTags: (repository: string, tag: string) => boolean;
}

export const DEFAULT_OPTIONS: RegistryOptions = {
  deleteEnabled: true,
  readOnly: false,
  redirect: true,
  redirectExpirySeconds: 20 * 60,
  uploadTTLSeconds: 7 * 24 * 3600,
  persistHashState: false,
  immutableTags: () => false,
};

/**
 * Where uploads go besides this registry's own API, for deployments whose front cannot carry large
 * request bodies (API Gateway and Lambda): see upload-urls.ts.
 */
export interface UploadRouting {
  /** Signs the upload URLs handed out; every mode below needs it. */
  signer: UploadUrlSigner;
  /**
   * The upload edge is in front: a new upload's Location is signed so that one PUT of the whole blob
   * can go straight to storage, and a blob stored that way is linked into its repository on first use.
   */
  edge: boolean;
  /** The upload service's base URL: a new upload's Location points there, signed. */
  service: string | undefined;
  /** This registry is the upload service: it serves signed upload URLs and nothing else. */
  only: boolean;
}

/** What every request handler works with. Built once per process; holds no per-request state. */
export interface Context {
  blobs: BlobStore;
  metadata: MetadataStore;
  options: RegistryOptions;
  log: Logger;
  /** Signed upload URLs, when uploads may go elsewhere; undefined: every upload stays on this API. */
  uploads: UploadRouting | undefined;
  /**
   * Running hashes of upload sessions this process served last, keyed by "id@offset", so that the
   * next chunk on the same process continues at native speed. A session continued elsewhere
   * re-derives its hash from the stored bytes; the cache is an optimisation, never the truth.
   */
  hashes: HashCache;
}

export class HashCache {
  private readonly entries = new Map<string, RunningHash>();

  constructor(private readonly capacity = 256) {}

  /** Removes and returns the hash of session id at offset, if this process has it. */
  take(id: string, offset: number): RunningHash | undefined {
    const key = `${id}@${offset}`;
    const hash = this.entries.get(key);
    this.entries.delete(key);
    return hash;
  }

  put(id: string, hash: RunningHash): void {
    if (this.entries.size >= this.capacity) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(`${id}@${hash.size}`, hash);
  }
}
