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
   * Re-putting a manifest replaces nothing but the tags (and the record's pushedAt). Registers the
   * repository. With options.keepTags, a tag already pointing at another digest is not moved: the put
   * throws TagExistsError and writes nothing.
   */
  putManifest(
    repository: string,
    manifest: ManifestRecord,
    tags: readonly string[],
    options?: PutManifestOptions,
  ): Promise<void>;
  getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined>;
  /** The manifest a tag points at, or undefined for an unknown tag. */
  getTag(repository: string, tag: string): Promise<ManifestRecord | undefined>;
  /**
   * Deletes a manifest record and every tag pointing at it, and returns those tags (sorted); undefined
   * if there was no such manifest.
   */
  deleteManifest(repository: string, digest: string): Promise<string[] | undefined>;
  /**
   * Deletes one tag (the manifest stays); false if there was no such tag. With digest, only if the tag
   * still points at that digest (false otherwise), so a tag moved meanwhile is left alone.
   */
  deleteTag(repository: string, tag: string, digest?: string): Promise<boolean>;
  /** Tags of a repository after `last`, at most `limit`; undefined if the repository is unknown. */
  listTags(repository: string, page: PageRequest): Promise<Page<string> | undefined>;
  /** Manifests in repository whose subject is the given digest (the referrers API), in digest order. */
  listReferrers(repository: string, subject: string): Promise<ManifestRecord[]>;

  // Whole-repository scans, for garbage collection and retention. Nothing for an unknown repository.
  /** Every manifest record of repository in digest order, with content when the store keeps it inline. */
  manifests(repository: string): AsyncIterable<ManifestRecord>;
  /** Every tag of repository in tag order, with the digest it points at and when it was put. */
  tagRecords(repository: string): AsyncIterable<TagRecord>;
  /** Every blob linked into repository, in digest order. */
  blobLinks(repository: string): AsyncIterable<BlobLink>;

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
  /** Every session of every repository, expired ones included (which getUpload hides), in no set order. */
  uploads(): AsyncIterable<UploadSession>;
}

export interface PutManifestOptions {
  /** Refuse (TagExistsError, nothing written) to move a tag that points at another digest. */
  keepTags?: boolean;
}

/** A putManifest with keepTags found a tag pointing at another manifest; nothing was written. */
export class TagExistsError extends Error {
  override name = 'TagExistsError';

  constructor(
    readonly tag: string,
    /** The digest the tag points at. */
    readonly digest: string,
  ) {
    super(`tag ${tag} already points at ${digest}`);
  }
}

export interface TagRecord {
  tag: string;
  /** The manifest the tag points at. */
  digest: string;
  /** ISO 8601 time the tag was last put (absent when the store cannot tell). */
  taggedAt?: string;
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
  /** ISO 8601 time of the manifest's last put (set by the registry; absent on records written before). */
  pushedAt?: string;
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
