/**
 * A MetadataStore kept as small files in any StorageDriver, so that filesystem and object-store
 * deployments need no database. The layout follows distribution's `repositories/<name>/...` tree:
 *
 *   /repositories/<name>/_layers/<alg>/<hex>/link                      JSON BlobLink
 *   /repositories/<name>/_manifests/revisions/<alg>/<hex>/record       JSON ManifestRecord (never with content)
 *   /repositories/<name>/_manifests/tags/<tag>/current                 the tagged digest, as text; its
 *                                                                      modTime is the tag's taggedAt
 *   /repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>            marker: manifest <alg>:<hex> has subject <alg>:<hex>
 *   /repositories/<name>/_uploads/<id>/session                         JSON UploadSession
 *
 * Repository name components start with a lowercase letter or digit, so the `_`-prefixed directories
 * never collide with a nested repository such as `a/b` (stored under /repositories/a/b/).
 *
 * Every file is written whole with putContent, which drivers make atomic, so a reader sees an old or
 * a new file, never a part. Operations that touch several files are ordered so that a crash between
 * two writes leaves a state readers already handle (see putManifest and deleteManifest); they are not
 * transactions, which the interface's "all or none" for putManifest would need a database for.
 *
 * The scans (manifests, tagRecords, blobLinks, uploads) list directories and read their files a few
 * at a time; an entry deleted while a scan runs is skipped.
 */
import { PathNotFoundError, type FileInfo, type StorageDriver } from '../storage/driver.js';
import {
  TagExistsError,
  type BlobLink,
  type ManifestRecord,
  type MetadataStore,
  type Page,
  type PageRequest,
  type PutManifestOptions,
  type TagRecord,
  type UploadSession,
} from './store.js';

const ROOT = '/repositories';
/** A directory holding one of these is a repository (distribution's catalog rule). */
const REPOSITORY_MARKERS = new Set(['_layers', '_manifests']);

/**
 * Digest algorithms must map onto path segments and be recoverable from a `<alg>-<hex>` marker name:
 * no `+` (not a path character) and no `-` (the separator). sha256 and sha512 qualify.
 */
const ALGORITHM = /^[a-z0-9]+(?:[._][a-z0-9]+)*$/;
const ENCODED = /^[A-Za-z0-9_-]+$/;

/** How many files a scan reads at once (it still yields them in listing order). */
const SCAN_CONCURRENCY = 16;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Pending upload updates per driver object and session path. Keyed by driver rather than by store so
 * that two stores over the same driver in one process still serialize their compare-and-sets.
 */
const updateQueues = new WeakMap<StorageDriver, Map<string, Promise<void>>>();

export class StorageBackedMetadataStore implements MetadataStore {
  constructor(private readonly driver: StorageDriver) {}

  // Blob links.

  async linkBlob(repository: string, link: BlobLink): Promise<void> {
    const stored: BlobLink = { digest: link.digest, size: link.size };
    await this.writeJson(`${paths(repository).layerDir(link.digest)}/link`, stored);
  }

  getBlobLink(repository: string, digest: string): Promise<BlobLink | undefined> {
    return this.readJson<BlobLink>(`${paths(repository).layerDir(digest)}/link`);
  }

  unlinkBlob(repository: string, digest: string): Promise<boolean> {
    return this.deleteIfPresent(paths(repository).layerDir(digest));
  }

  // Manifests and tags.

  /**
   * Writes the record, then the referrers marker, then the tags. Each later file points at the record,
   * so writing the record first means a crash (or a failed write) part-way can at worst leave the
   * record untagged, or tagged by only some of `tags`: never a tag or marker pointing at a missing
   * record. Putting the manifest again completes the job. Each tag is one putContent, so a reader of a
   * tag being moved sees the old or the new digest.
   *
   * With keepTags every tag is read before anything is written, and a tag naming another digest stops
   * the put. Like every multi-file change here that is not atomic across processes: a tag moved by a
   * concurrent put between the check and the write is overwritten.
   */
  async putManifest(
    repository: string,
    manifest: ManifestRecord,
    tags: readonly string[],
    options?: PutManifestOptions,
  ): Promise<void> {
    if (options?.keepTags === true) {
      const unique = [...new Set(tags)];
      const current = await Promise.all(unique.map((tag) => this.readText(paths(repository).tagPath(tag))));
      unique.forEach((tag, index) => {
        const digest = current[index];
        if (digest !== undefined && digest !== manifest.digest) throw new TagExistsError(tag, digest);
      });
    }
    await this.writeJson(paths(repository).recordPath(manifest.digest), storedRecord(manifest));
    if (manifest.subject !== undefined) {
      await this.driver.putContent(
        paths(repository).referrerPath(manifest.subject, manifest.digest),
        encoder.encode(manifest.digest),
      );
    }
    const digest = encoder.encode(manifest.digest);
    await Promise.all(tags.map((tag) => this.driver.putContent(paths(repository).tagPath(tag), digest)));
  }

  getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    return this.readJson<ManifestRecord>(paths(repository).recordPath(digest));
  }

  /** A tag whose record is missing (only possible while a delete races a put) reads as unknown. */
  async getTag(repository: string, tag: string): Promise<ManifestRecord | undefined> {
    const digest = await this.readText(paths(repository).tagPath(tag));
    return digest === undefined ? undefined : this.getManifest(repository, digest);
  }

  /**
   * Deletes the tags pointing at the manifest, then its referrers marker, then the record: the reverse
   * of putManifest, so a crash part-way leaves a record with fewer tags, never a dangling tag. Finding
   * the tags means reading every tag of the repository; a tag moved onto this digest by a concurrent
   * put after that scan is left dangling, and getTag then reads it as unknown.
   */
  async deleteManifest(repository: string, digest: string): Promise<string[] | undefined> {
    const record = await this.getManifest(repository, digest);
    if (record === undefined) return undefined;
    const tags = await this.childNames(paths(repository).tagsDir());
    const deleted = await Promise.all(
      tags.map(async (tag) => {
        if ((await this.readText(paths(repository).tagPath(tag))) !== digest) return undefined;
        return (await this.deleteIfPresent(paths(repository).tagDir(tag))) ? tag : undefined;
      }),
    );
    if (record.subject !== undefined) {
      await this.deleteIfPresent(paths(repository).referrerPath(record.subject, digest));
    }
    if (!(await this.deleteIfPresent(paths(repository).recordDir(digest)))) return undefined;
    return deleted.filter((tag): tag is string => tag !== undefined).sort(compareCodePoints);
  }

  /** With digest this is read-compare-delete: a tag moved by another process in between can still go. */
  async deleteTag(repository: string, tag: string, digest?: string): Promise<boolean> {
    const current = await this.readText(paths(repository).tagPath(tag));
    if (current === undefined || (digest !== undefined && current !== digest)) return false;
    return this.deleteIfPresent(paths(repository).tagDir(tag));
  }

  async listTags(repository: string, page: PageRequest): Promise<Page<string> | undefined> {
    const tags = await this.childNames(paths(repository).tagsDir());
    if (tags.length === 0 && !(await this.repositoryExists(repository))) return undefined;
    return paginate(tags, page);
  }

  async listReferrers(repository: string, subject: string): Promise<ManifestRecord[]> {
    const markers = await this.childNames(paths(repository).referrersDir(subject));
    const records = await Promise.all(
      markers.map((marker) => this.getManifest(repository, digestFromMarker(marker))),
    );
    // A marker without its record belongs to a manifest being deleted right now: skip it.
    return records
      .filter((record): record is ManifestRecord => record !== undefined)
      .sort((a, b) => compareCodePoints(a.digest, b.digest));
  }

  // Scans.

  async *manifests(repository: string): AsyncIterable<ManifestRecord> {
    for await (const digests of this.digestsBelow(paths(repository).revisionsDir())) {
      yield* readInOrder(digests, (digest) => this.getManifest(repository, digest));
    }
  }

  /** taggedAt is the modTime of the tag's file, read after its content: never older than the digest read. */
  async *tagRecords(repository: string): AsyncIterable<TagRecord> {
    const tags = await this.childNames(paths(repository).tagsDir());
    yield* readInOrder(tags, async (tag): Promise<TagRecord | undefined> => {
      const path = paths(repository).tagPath(tag);
      const digest = await this.readText(path);
      if (digest === undefined) return undefined;
      const info = await this.statIfPresent(path);
      return info === undefined ? undefined : { tag, digest, taggedAt: info.modTime.toISOString() };
    });
  }

  async *blobLinks(repository: string): AsyncIterable<BlobLink> {
    for await (const digests of this.digestsBelow(paths(repository).layersDir())) {
      yield* readInOrder(digests, (digest) => this.getBlobLink(repository, digest));
    }
  }

  /**
   * The digests stored as `<alg>/<hex>` directories below dir, one sorted list per algorithm, the
   * algorithms in the order of their `<alg>:` prefixes, so that all of it is in digest order.
   */
  private async *digestsBelow(dir: string): AsyncGenerator<string[]> {
    const algorithms = (await this.childNames(dir))
      .filter((algorithm) => ALGORITHM.test(algorithm))
      .sort((a, b) => compareCodePoints(`${a}:`, `${b}:`));
    for (const algorithm of algorithms) {
      const encoded = await this.childNames(`${dir}/${algorithm}`);
      yield encoded.filter((hex) => ENCODED.test(hex)).map((hex) => `${algorithm}:${hex}`);
    }
  }

  // Catalog.

  /** Walks the whole tree, as distribution does; a driver offers no sorted scan that could start at `last`. */
  async listRepositories(page: PageRequest): Promise<Page<string>> {
    // The walk yields `a/b` (below `a`) before `a-b`, which sorts earlier: sort the whole list.
    const names = await this.findRepositories(ROOT, '');
    return paginate(names.sort(compareCodePoints), page);
  }

  private async findRepositories(dir: string, name: string): Promise<string[]> {
    const children = await this.childNames(dir);
    const nested = await Promise.all(
      children
        .filter((child) => !child.startsWith('_'))
        .map((child) => this.findRepositories(`${dir}/${child}`, name === '' ? child : `${name}/${child}`)),
    );
    const isRepository = name !== '' && children.some((child) => REPOSITORY_MARKERS.has(child));
    return [...(isRepository ? [name] : []), ...nested.flat()];
  }

  private async repositoryExists(repository: string): Promise<boolean> {
    for (const marker of REPOSITORY_MARKERS) {
      try {
        await this.driver.stat(`${ROOT}/${repository}/${marker}`);
        return true;
      } catch (error) {
        if (!(error instanceof PathNotFoundError)) throw error;
      }
    }
    return false;
  }

  // Upload sessions.

  async createUpload(session: UploadSession): Promise<void> {
    await this.writeJson(paths(session.repository).uploadPath(session.id), storedSession(session));
  }

  async getUpload(repository: string, id: string): Promise<UploadSession | undefined> {
    const session = await this.readJson<UploadSession>(paths(repository).uploadPath(id));
    return session === undefined || isExpired(session) ? undefined : session;
  }

  /**
   * A storage driver has no conditional write, so this is read-compare-write. Within one process the
   * updates of a session are serialized (see updateQueues), so two concurrent updates expecting the
   * same offset cannot both succeed. Across processes sharing the storage it is best effort: two
   * processes can both read the old offset and both write, the later write winning; that needs two
   * requests for the same upload racing in different processes, which a well-behaved client never sends.
   */
  updateUpload(session: UploadSession, expectedOffset: number): Promise<boolean> {
    const path = paths(session.repository).uploadPath(session.id);
    return this.serialized(path, async () => {
      const current = await this.getUpload(session.repository, session.id);
      if (current === undefined || current.offset !== expectedOffset) return false;
      await this.writeJson(path, storedSession(session));
      return true;
    });
  }

  async deleteUpload(repository: string, id: string): Promise<void> {
    await this.deleteIfPresent(paths(repository).uploadDir(id));
  }

  /** Walks the repository tree as listRepositories does, reading the sessions in each `_uploads`. */
  uploads(): AsyncIterable<UploadSession> {
    return this.uploadsBelow(ROOT);
  }

  private async *uploadsBelow(dir: string): AsyncGenerator<UploadSession> {
    const children = await this.childNames(dir);
    if (dir !== ROOT && children.includes('_uploads')) {
      const ids = await this.childNames(`${dir}/_uploads`);
      yield* readInOrder(ids, (id) => this.readJson<UploadSession>(`${dir}/_uploads/${id}/session`));
    }
    for (const child of children) {
      if (!child.startsWith('_')) yield* this.uploadsBelow(`${dir}/${child}`);
    }
  }

  /** Runs task after every earlier task queued under key (for this driver) has settled. */
  private async serialized<T>(key: string, task: () => Promise<T>): Promise<T> {
    let queues = updateQueues.get(this.driver);
    if (queues === undefined) {
      queues = new Map();
      updateQueues.set(this.driver, queues);
    }
    const result = (queues.get(key) ?? Promise.resolve()).then(task);
    // The queue continues whether this task succeeds or fails.
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    queues.set(key, settled);
    try {
      return await result;
    } finally {
      if (queues.get(key) === settled) queues.delete(key);
    }
  }

  // Files. PathNotFoundError means "absent"; every other error propagates.

  private async readText(path: string): Promise<string | undefined> {
    try {
      return decoder.decode(await this.driver.getContent(path));
    } catch (error) {
      if (error instanceof PathNotFoundError) return undefined;
      throw error;
    }
  }

  private async readJson<T>(path: string): Promise<T | undefined> {
    const text = await this.readText(path);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  private async statIfPresent(path: string): Promise<FileInfo | undefined> {
    try {
      return await this.driver.stat(path);
    } catch (error) {
      if (error instanceof PathNotFoundError) return undefined;
      throw error;
    }
  }

  private async writeJson(path: string, value: object): Promise<void> {
    await this.driver.putContent(path, encoder.encode(JSON.stringify(value)));
  }

  /** Deletes a file or directory; false if it was not there. */
  private async deleteIfPresent(path: string): Promise<boolean> {
    try {
      await this.driver.delete(path);
      return true;
    } catch (error) {
      if (error instanceof PathNotFoundError) return false;
      throw error;
    }
  }

  /** Sorted names of the children of dir; none if it does not exist (drivers differ on empty directories). */
  private async childNames(dir: string): Promise<string[]> {
    try {
      const paths = await this.driver.list(dir);
      return paths.map((path) => path.slice(path.lastIndexOf('/') + 1)).sort(compareCodePoints);
    } catch (error) {
      if (error instanceof PathNotFoundError) return [];
      throw error;
    }
  }
}

/** The files of one repository (see the layout at the top). */
function paths(repository: string) {
  const dir = `${ROOT}/${repository}`;
  const recordDir = (digest: string) => `${dir}/_manifests/revisions/${digestPath(digest)}`;
  const tagsDir = () => `${dir}/_manifests/tags`;
  const tagDir = (tag: string) => `${tagsDir()}/${tag}`;
  const referrersDir = (subject: string) => `${dir}/_referrers/${digestPath(subject)}`;
  const uploadDir = (id: string) => `${dir}/_uploads/${id}`;
  return {
    layersDir: () => `${dir}/_layers`,
    layerDir: (digest: string) => `${dir}/_layers/${digestPath(digest)}`,
    revisionsDir: () => `${dir}/_manifests/revisions`,
    recordDir,
    recordPath: (digest: string) => `${recordDir(digest)}/record`,
    tagsDir,
    tagDir,
    tagPath: (tag: string) => `${tagDir(tag)}/current`,
    referrersDir,
    referrerPath: (subject: string, digest: string) =>
      `${referrersDir(subject)}/${digestParts(digest).join('-')}`,
    uploadDir,
    uploadPath: (id: string) => `${uploadDir(id)}/session`,
  };
}

function digestParts(digest: string): [algorithm: string, encoded: string] {
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon);
  const encoded = digest.slice(colon + 1);
  if (colon < 0 || !ALGORITHM.test(algorithm) || !ENCODED.test(encoded)) {
    throw new Error(`digest cannot be stored as a path: ${JSON.stringify(digest)}`);
  }
  return [algorithm, encoded];
}

function digestPath(digest: string): string {
  return digestParts(digest).join('/');
}

/** The algorithm has no `-` (see ALGORITHM), so the first `-` of a marker name separates it from the hex. */
function digestFromMarker(marker: string): string {
  const dash = marker.indexOf('-');
  return `${marker.slice(0, dash)}:${marker.slice(dash + 1)}`;
}

/** The record without inline content: this store keeps manifest bytes in blob storage only. */
function storedRecord(manifest: ManifestRecord): ManifestRecord {
  const { digest, mediaType, size, subject, artifactType, annotations, pushedAt } = manifest;
  return { digest, mediaType, size, subject, artifactType, annotations, pushedAt };
}

function storedSession(session: UploadSession): UploadSession {
  const { id, repository, offset, sha256, hashState, startedAt, expiresAt } = session;
  return { id, repository, offset, sha256, hashState, startedAt, expiresAt };
}

function isExpired(session: UploadSession): boolean {
  return Date.parse(session.expiresAt) < Date.now();
}

function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * read applied to each item, SCAN_CONCURRENCY at a time, the results yielded in the items' order;
 * undefined results (files gone meanwhile) are skipped.
 */
async function* readInOrder<T, R>(
  items: readonly T[],
  read: (item: T) => Promise<R | undefined>,
): AsyncGenerator<R> {
  for (let start = 0; start < items.length; start += SCAN_CONCURRENCY) {
    const results = await Promise.all(items.slice(start, start + SCAN_CONCURRENCY).map(read));
    for (const result of results) if (result !== undefined) yield result;
  }
}

/** Entries strictly after page.last, at most page.limit of them, from a list sorted by code point. */
function paginate(sorted: readonly string[], page: PageRequest): Page<string> {
  const { last } = page;
  const after = last === undefined ? sorted : sorted.filter((entry) => entry > last);
  return { items: after.slice(0, page.limit), more: after.length > page.limit };
}
