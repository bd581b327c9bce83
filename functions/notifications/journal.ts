import type { BlobLink, ManifestRecord, MetadataStore } from '../metadata/store.js';
import type { BlobStore } from '../registry/blob-store.js';
import type { Digest } from '../registry/digest.js';

/** A change one request made to a repository, as the metadata store committed it. */
export type Commit =
  | { kind: 'manifest'; repository: string; record: ManifestRecord; tag: string | undefined }
  | { kind: 'manifest-deleted'; repository: string; digest: string; tags: string[] }
  | { kind: 'tag-deleted'; repository: string; tag: string }
  /** A blob linked into repository: an upload finished, or (with from) a mount from another repository. */
  | { kind: 'blob'; repository: string; link: BlobLink; from: string | undefined }
  | { kind: 'blob-deleted'; repository: string; digest: string };

/**
 * What one request did to the registry's stores: the changes it committed, in order, and what it
 * read. Built by decorating the stores for that one request (see Registry.handle), so that events
 * come from what happened in storage, after it happened, and no request handler reports anything:
 * a write is recorded only once the store's call returned.
 */
export class Journal {
  readonly commits: Commit[] = [];
  private readonly manifests = new Map<string, ManifestRecord>();
  private readonly links = new Map<string, BlobLink>();
  private readonly contents = new Map<string, Uint8Array>();

  /** Bytes of the blobs this request finished uploading (links made other than mounts). */
  blobBytesPushed(): number {
    let bytes = 0;
    for (const commit of this.commits) {
      if (commit.kind === 'blob' && commit.from === undefined) bytes += commit.link.size;
    }
    return bytes;
  }

  /** A manifest this request read from repository, by digest. */
  manifestRead(repository: string, digest: string): ManifestRecord | undefined {
    return this.manifests.get(`${repository}@${digest}`);
  }

  /** A blob link this request read (or made) in repository. */
  linkRead(repository: string, digest: string): BlobLink | undefined {
    return this.links.get(`${repository}@${digest}`);
  }

  /** Manifest bytes this request had in hand, from the record or from blob storage. */
  content(record: ManifestRecord): Uint8Array | undefined {
    return record.content ?? this.contents.get(record.digest);
  }

  /** The metadata store, recording for this journal. */
  metadata(store: MetadataStore): MetadataStore {
    const readManifest = (repository: string, record: ManifestRecord | undefined) => {
      if (record) this.manifests.set(`${repository}@${record.digest}`, record);
      return record;
    };
    const readLink = (repository: string, link: BlobLink | undefined) => {
      if (link) this.links.set(`${repository}@${link.digest}`, link);
      return link;
    };
    return {
      linkBlob: async (repository, link) => {
        await store.linkBlob(repository, link);
        // A mount reads the blob's link in the repository it comes from, then links it here.
        const from = [...this.links.entries()].find(
          ([key, read]) => read.digest === link.digest && key !== `${repository}@${link.digest}`,
        )?.[0];
        readLink(repository, link);
        this.commits.push({
          kind: 'blob',
          repository,
          link,
          from: from?.slice(0, from.length - link.digest.length - 1),
        });
      },
      getBlobLink: async (repository, digest) =>
        readLink(repository, await store.getBlobLink(repository, digest)),
      unlinkBlob: async (repository, digest) => {
        const unlinked = await store.unlinkBlob(repository, digest);
        if (unlinked) this.commits.push({ kind: 'blob-deleted', repository, digest });
        return unlinked;
      },
      putManifest: async (repository, record, tags, options) => {
        await store.putManifest(repository, record, tags, options);
        // The registry tags at most one tag per request: the reference of a PUT by tag.
        this.commits.push({ kind: 'manifest', repository, record, tag: tags[0] });
      },
      getManifest: async (repository, digest) =>
        readManifest(repository, await store.getManifest(repository, digest)),
      getTag: async (repository, tag) => readManifest(repository, await store.getTag(repository, tag)),
      deleteManifest: async (repository, digest) => {
        const tags = await store.deleteManifest(repository, digest);
        if (tags) this.commits.push({ kind: 'manifest-deleted', repository, digest, tags });
        return tags;
      },
      deleteTag: async (repository, tag, digest) => {
        const deleted = await store.deleteTag(repository, tag, digest);
        if (deleted) this.commits.push({ kind: 'tag-deleted', repository, tag });
        return deleted;
      },
      listTags: (repository, page) => store.listTags(repository, page),
      listReferrers: (repository, subject) => store.listReferrers(repository, subject),
      listRepositories: (page) => store.listRepositories(page),
      // Scans (garbage collection): nothing to record.
      manifests: (repository) => store.manifests(repository),
      tagRecords: (repository) => store.tagRecords(repository),
      blobLinks: (repository) => store.blobLinks(repository),
      createUpload: (session) => store.createUpload(session),
      getUpload: (repository, id) => store.getUpload(repository, id),
      updateUpload: (session, expectedOffset) => store.updateUpload(session, expectedOffset),
      deleteUpload: (repository, id) => store.deleteUpload(repository, id),
      uploads: () => store.uploads(),
    };
  }

  /** The blob store, keeping the manifest bytes this request read (for the events' subject and references). */
  blobs(store: BlobStore): BlobStore {
    const recording = Object.create(store) as BlobStore;
    recording.getContent = async (digest: Digest) => {
      const content = await store.getContent(digest);
      this.contents.set(digest.value, content);
      return content;
    };
    return recording;
  }
}
