/**
 * The MetadataStore: everything the registry knows about repositories besides blob bytes: which
 * blobs a repository may serve, its manifests and tags, the referrers index, upload sessions and the
 * catalog. Implementations: storage-backed (small files through any StorageDriver, so filesystem,
 * Azure and GCS deployments need no database) and DynamoDB. All pass test/metadata/store-suite.ts.
 *
 * Names and digests given to a store are already validated by the registry (repository name
 * grammar, "algorithm:hex" digests, tag grammar). Listings are in lexical (code point) order.
 */
export interface MetadataStore {
  // Repository-blob links: a blob is served from a repository only if it is linked there.
  /** Links a blob (already stored) into repository; linking twice is harmless. Registers the repository. */
  linkBlob(repository: string, link: BlobLink): Promise<void>;
  getBlobLink(repository: string, digest: string): Promise<BlobLink | undefined>;
  /** Removes the link; false if there was none. */
  unlinkBlob(repository: string, digest: string): Promise<boolean>;

  // Manifests and tags.
  /**
   * Records a manifest (its bytes are already stored) and points each of tags at it, atomically:
   * afterwards the record and all the tags are visible, or (on error) none of the changes are.
   * Re-putting a manifest replaces nothing but the tags. Registers the repository.
   */
  putManifest(repository: string, manifest: ManifestRecord, tags: readonly string[]): Promise<void>;
  getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined>;
  /** The manifest a tag points at, or undefined for an unknown tag. */
  getTag(repository: string, tag: string): Promise<ManifestRecord | undefined>;
  /**
   * Deletes a manifest record and every tag pointing at it, and returns those tags (sorted); undefined
   * if there was no such manifest.
   */
  deleteManifest(repository: string, digest: string): Promise<string[] | undefined>;
  /** Deletes one tag (the manifest stays); false if there was no such tag. */
  deleteTag(repository: string, tag: string): Promise<boolean>;
  /** Tags of a repository after `last`, at most `limit`; undefined if the repository is unknown. */
  listTags(repository: string, page: PageRequest): Promise<Page<string> | undefined>;
  /** Manifests in repository whose subject is the given digest (the referrers API), in digest order. */
  listReferrers(repository: string, subject: string): Promise<ManifestRecord[]>;

  /** Repository names after `last`, at most `limit`. A repository exists once a blob or manifest was put in it. */
  listRepositories(page: PageRequest): Promise<Page<string>>;

  // Upload sessions: persisted so that any process can continue an upload.
  createUpload(session: UploadSession): Promise<void>;
  /** The session, or undefined if unknown or expired. */
  getUpload(repository: string, id: string): Promise<UploadSession | undefined>;
  /**
   * Replaces a session only if its stored offset still equals expectedOffset (a compare-and-set that
   * refuses a stale or concurrent update); false when the session is gone or moved on.
   */
  updateUpload(session: UploadSession, expectedOffset: number): Promise<boolean>;
  /** Forgets a session; harmless if it is already gone. */
  deleteUpload(repository: string, id: string): Promise<void>;
}

export interface BlobLink {
  digest: string;
  size: number;
}

export interface ManifestRecord {
  digest: string;
  mediaType: string;
  size: number;
  /** Digest of the manifest's subject (OCI 1.1), for the referrers API. */
  subject?: string;
  /** The manifest's artifactType, or for an image manifest without one its config's media type. */
  artifactType?: string;
  annotations?: Record<string, string>;
  /** The manifest bytes, when the store keeps them inline (small manifests in DynamoDB). */
  content?: Uint8Array;
}

export interface UploadSession {
  id: string;
  repository: string;
  /** Bytes received so far. */
  offset: number;
  /** Hex SHA-256 of the bytes [0, offset): lets any process finish an upload without re-reading it. */
  sha256: string;
  /** The running SHA-256's serialized state at offset, when the registry persists it (Lambda). */
  hashState?: string;
  /** ISO 8601 times. */
  startedAt: string;
  expiresAt: string;
}

export interface PageRequest {
  /** Only entries strictly after this one, in lexical order. */
  last?: string;
  /** At most this many entries. */
  limit: number;
}

export interface Page<T> {
  items: T[];
  /** True when more entries follow the last one returned. */
  more: boolean;
}
