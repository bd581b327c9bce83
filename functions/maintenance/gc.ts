/**
 * Online garbage collection: retention policies, untagged manifests, expired uploads and blobs no
 * manifest references, removed while the registry keeps serving pushes and pulls.
 *
 * A run has three phases, each resumable from a cursor (so a run can span several Lambda invocations):
 *
 * 1. repositories: per repository, the tags its retention policy removes, then the manifests no tag
 *    reaches any longer (an index's children and referrers go with their parent or subject), then
 *    what it keeps: the digests every kept manifest names are live, registry-wide.
 * 2. uploads: sessions past their expiry, and upload bytes no session owns, older than the upload age.
 * 3. blobs: every stored blob that is not live, whose bytes and use marker are older than the grace
 *    period, is removed.
 *
 * Safety against concurrent pushes rests on the use marker (BlobStore.markUsed): a request that is
 * about to make a blob reachable marks it, then checks that it exists, then commits. Removing a blob
 * here reads its marker, unlinks it, moves its bytes aside, and reads its marker again: a marker that
 * changed means a request took it meanwhile, and the bytes and links go back. A request that marks
 * after that read finds the bytes or the link gone and fails cleanly, so no committed manifest ever
 * names a removed blob. Manifests are removed the same way (their digest is marked by pushes and by
 * indexes naming them), and put back with any tag given to them meanwhile.
 */
import type { Logger } from '../log.js';
import type { ManifestRecord, MetadataStore, TagRecord } from '../metadata/store.js';
import type { BlobStore, StoredBlob } from '../registry/blob-store.js';
import { type Digest, isDigest, parseDigest } from '../registry/digest.js';
import { parseManifest } from '../registry/manifest.js';
import { forEachLimited } from '../storage/limited.js';
import type { RetentionPolicy } from './policies.js';
import { retentionFor } from './retention.js';

export interface GcOptions {
  /** Report what would go, remove nothing. */
  dryRun: boolean;
  /** Remove manifests no tag reaches (after the grace period), as distribution's --delete-untagged. */
  deleteUntagged: boolean;
  /** Nothing written or marked more recently than this before the run started is removed. */
  graceMs: number;
  retention: readonly RetentionPolicy[];
  /** Remove upload sessions past expiry and upload bytes older than this; undefined: leave uploads. */
  uploadAgeMs: number | undefined;
  /** Stop at this time (ms since the epoch) with a resumable state (Lambda); undefined: run to the end. */
  deadline?: number | undefined;
}

export interface GcParts {
  blobs: BlobStore;
  metadata: MetadataStore;
  log: Logger;
}

/** What one repository holds, from its manifests' descriptors: blobs shared between images count once. */
export interface RepositoryUsage {
  repository: string;
  tags: number;
  manifests: number;
  blobs: number;
  /** Bytes of its manifests and of the distinct blobs they name. */
  bytes: number;
}

export interface RepositoryReport extends RepositoryUsage {
  /** Tags removed (or, in a dry run, to be removed) by retention or with a removed manifest. */
  removedTags: string[];
  removedManifests: string[];
  /** Bytes the repository no longer holds (its usage before the run less its usage after). */
  reclaimedBytes: number;
}

export interface GcReport {
  run: string;
  dryRun: boolean;
  startedAt: string;
  finishedAt: string;
  graceMs: number;
  repositories: RepositoryReport[];
  removed: {
    tags: number;
    manifests: number;
    blobs: number;
    /** Bytes of the blobs removed: what storage frees. */
    blobBytes: number;
    links: number;
    uploads: number;
    uploadBytes: number;
  };
  /** Blobs a concurrent push took while they were being removed, and which were put back. */
  rescued: number;
  kept: { blobs: number; blobBytes: number };
}

export type GcResult = { done: true; report: GcReport } | { done: false; run: string };

/** Where runs keep their state and set blobs aside while removing them; outside the blob tree. */
const GC_ROOT = '/gc';
/** Calls in flight at once against storage and metadata. */
const CONCURRENCY = 16;
/** Blobs walked before the removals among them are started. */
const BATCH = 256;
/** Repositories read per catalog page. */
const PAGE = 100;
/** A run whose state nothing touched for this long is abandoned; the next run cleans up after it. */
const ABANDONED_AFTER_MS = 6 * 3_600_000;

/** The resumable state of a run, saved under /gc/runs/<run>/state.json when a deadline stops it. */
interface GcState {
  run: string;
  options: Omit<GcOptions, 'deadline' | 'retention'>;
  /** ms since the epoch; everything is judged against this, however long the run takes. */
  startedAt: number;
  phase: 'repositories' | 'uploads' | 'blobs';
  /** The last repository finished (phase 1) or the last blob walked (phase 3). */
  cursor: string | undefined;
  /** Digests that must stay: named by a kept manifest, or a kept manifest itself. */
  live: string[];
  /** Per digest, the repositories linking it whose manifests do not name it: unlinked with the blob. */
  unreferencedLinks: Record<string, { repository: string; size: number }[]>;
  repositories: RepositoryReport[];
  removed: GcReport['removed'];
  rescued: number;
  kept: GcReport['kept'];
}

/**
 * Runs garbage collection, or continues the saved run `resume`. Returns the report when the run is
 * done, or the run id to continue with when the deadline came first.
 */
export async function collectGarbage(parts: GcParts, options: GcOptions, resume?: string): Promise<GcResult> {
  if (resume === undefined) await recoverAbandonedRuns(parts);
  const state = resume === undefined ? newState(options) : await loadState(parts, resume);
  const run = new GcRun(parts, options, state);
  return run.execute();
}

/** Per-repository usage without changing anything: the repositories phase of a dry run. */
export async function storageUsage(
  parts: GcParts,
  repositories?: readonly string[],
): Promise<RepositoryUsage[]> {
  const options: GcOptions = {
    dryRun: true,
    deleteUntagged: false,
    graceMs: 0,
    retention: [],
    uploadAgeMs: undefined,
  };
  const run = new GcRun(parts, options, newState(options));
  const names = repositories ?? (await allRepositories(parts.metadata));
  const usage: RepositoryUsage[] = [];
  for (const name of names) {
    const report = await run.collectRepository(name);
    usage.push({
      repository: report.repository,
      tags: report.tags,
      manifests: report.manifests,
      blobs: report.blobs,
      bytes: report.bytes,
    });
  }
  return usage;
}

function newState(options: GcOptions): GcState {
  const startedAt = Date.now();
  return {
    run: `${new Date(startedAt).toISOString().replace(/[:.]/g, '-')}-${Math.random().toString(36).slice(2, 8)}`,
    options: {
      dryRun: options.dryRun,
      deleteUntagged: options.deleteUntagged,
      graceMs: options.graceMs,
      uploadAgeMs: options.uploadAgeMs,
    },
    startedAt,
    phase: 'repositories',
    cursor: undefined,
    live: [],
    unreferencedLinks: {},
    repositories: [],
    removed: { tags: 0, manifests: 0, blobs: 0, blobBytes: 0, links: 0, uploads: 0, uploadBytes: 0 },
    rescued: 0,
    kept: { blobs: 0, blobBytes: 0 },
  };
}

function statePath(run: string): string {
  return `${GC_ROOT}/runs/${run}/state.json`;
}

async function loadState(parts: GcParts, run: string): Promise<GcState> {
  if (!/^[A-Za-z0-9._-]+$/.test(run)) throw new Error(`${run} is not a garbage collection run id`);
  const bytes = await parts.blobs.driver.getContent(statePath(run));
  return JSON.parse(new TextDecoder().decode(bytes)) as GcState;
}

/**
 * Runs that stopped without finishing (a crash, a chained invocation that never came) and were not
 * touched for ABANDONED_AFTER_MS: blobs they had set aside go back where they were (a later run judges
 * them again), then their state goes.
 */
async function recoverAbandonedRuns(parts: GcParts): Promise<void> {
  const { blobs, log } = parts;
  const runs = new Map<string, { newest: number; aside: string[] }>();
  for await (const file of blobs.driver.walk(`${GC_ROOT}/runs`)) {
    const [, , , run = '', kind, name] = file.path.split('/');
    const entry = runs.get(run) ?? runs.set(run, { newest: 0, aside: [] }).get(run);
    if (entry === undefined) continue;
    entry.newest = Math.max(entry.newest, file.modTime.getTime());
    if (kind === 'removing' && name !== undefined) entry.aside.push(file.path);
  }
  for (const [run, { newest, aside }] of runs) {
    if (newest > Date.now() - ABANDONED_AFTER_MS) continue;
    for (const path of aside) {
      const name = path.slice(path.lastIndexOf('/') + 1);
      const digest = name.replace('-', ':');
      if (isDigest(digest)) await blobs.moveBack(path, parseDigest(digest));
    }
    await blobs.driver.delete(`${GC_ROOT}/runs/${run}`).catch(() => undefined);
    log.warn('garbage collection cleaned up after an abandoned run', { run, restored: aside.length });
  }
}

async function allRepositories(metadata: MetadataStore): Promise<string[]> {
  const names: string[] = [];
  let last: string | undefined;
  for (;;) {
    const page = await metadata.listRepositories({ last, limit: PAGE });
    names.push(...page.items);
    if (!page.more || page.items.length === 0) return names;
    last = page.items.at(-1);
  }
}

class DeadlineReached extends Error {}

class GcRun {
  private readonly live: Set<string>;
  private readonly options: GcOptions;
  /** Bytes and markers older than this are old enough to remove. */
  private readonly cutoff: number;

  constructor(
    private readonly parts: GcParts,
    options: GcOptions,
    private readonly state: GcState,
  ) {
    // A resumed run keeps the options it started with; only the deadline and policies come anew.
    this.options = { ...options, ...state.options };
    this.live = new Set(state.live);
    this.cutoff = state.startedAt - this.options.graceMs;
  }

  /**
   * Whether a time (a file's, a mark's) is before the cutoff. Some stores give times in whole seconds
   * (StorageDriver.timeResolutionMs): a time counts as the latest it may stand for, so that two
   * readings of one mark never look equal across a new mark.
   */
  private isOld(time: Date | undefined): boolean {
    if (time === undefined) return true;
    const resolution = this.parts.blobs.driver.timeResolutionMs ?? 1;
    return time.getTime() + resolution - 1 < this.cutoff;
  }

  async execute(): Promise<GcResult> {
    const { log } = this.parts;
    try {
      if (this.state.phase === 'repositories') {
        await this.repositoriesPhase();
        this.state.phase = 'uploads';
        this.state.cursor = undefined;
      }
      if (this.state.phase === 'uploads') {
        await this.uploadsPhase();
        this.state.phase = 'blobs';
        this.state.cursor = undefined;
      }
      await this.blobsPhase();
    } catch (error) {
      if (!(error instanceof DeadlineReached)) throw error;
      this.state.live = [...this.live];
      await this.parts.blobs.driver.putContent(
        statePath(this.state.run),
        new TextEncoder().encode(JSON.stringify(this.state)),
      );
      log.info('garbage collection paused', {
        run: this.state.run,
        phase: this.state.phase,
        cursor: this.state.cursor,
      });
      return { done: false, run: this.state.run };
    }
    await this.cleanUp();
    const report: GcReport = {
      run: this.state.run,
      dryRun: this.options.dryRun,
      startedAt: new Date(this.state.startedAt).toISOString(),
      finishedAt: new Date().toISOString(),
      graceMs: this.options.graceMs,
      repositories: this.state.repositories,
      removed: this.state.removed,
      rescued: this.state.rescued,
      kept: this.state.kept,
    };
    log.info('garbage collection finished', { ...report, repositories: report.repositories.length });
    return { done: true, report };
  }

  private checkDeadline(): void {
    if (this.options.deadline !== undefined && Date.now() >= this.options.deadline)
      throw new DeadlineReached();
  }

  /** Removes the run's saved state and anything it set aside. */
  private async cleanUp(): Promise<void> {
    try {
      await this.parts.blobs.driver.delete(`${GC_ROOT}/runs/${this.state.run}`);
    } catch {
      // Nothing was saved: the run finished within one invocation.
    }
  }

  // Phase 1.

  private async repositoriesPhase(): Promise<void> {
    for (;;) {
      const page = await this.parts.metadata.listRepositories({ last: this.state.cursor, limit: PAGE });
      for (const name of page.items) {
        this.checkDeadline();
        const report = await this.collectRepository(name);
        this.state.repositories.push(report);
        this.state.removed.tags += report.removedTags.length;
        this.state.removed.manifests += report.removedManifests.length;
        // One line per repository: its accounting, and what went (or would go).
        this.parts.log.info('garbage collection repository', {
          run: this.state.run,
          dryRun: this.options.dryRun,
          ...report,
        });
        this.state.cursor = name;
      }
      if (!page.more || page.items.length === 0) return;
    }
  }

  /** Applies retention and untagged removal to one repository and records what it keeps. */
  async collectRepository(repository: string): Promise<RepositoryReport> {
    const { metadata } = this.parts;
    const now = Date.now();
    const records: ManifestRecord[] = [];
    for await (const record of metadata.manifests(repository)) records.push(record);
    const manifests = new Map<string, Loaded>();
    await forEachLimited(records, CONCURRENCY, async (record) => {
      manifests.set(record.digest, { record, ...(await this.references(repository, record)) });
    });
    const tags: TagRecord[] = [];
    for await (const tag of metadata.tagRecords(repository)) tags.push(tag);
    const before = usageOf(repository, manifests, tags, new Set(manifests.keys()));

    const policy = retentionFor(this.options.retention, repository);
    const removeTags = new Map<string, TagRecord>();
    if (policy) for (const tag of policy.expiredTags(tags, now)) removeTags.set(tag.tag, tag);
    const untaggedAtStart = new Set(manifests.keys());
    for (const tag of tags) untaggedAtStart.delete(tag.digest);

    // Decide which manifests go, then the tags that name a removed manifest (cosign's sha256-<hex>.sig
    // and the referrers tag schema), which may free more manifests; a manifest a push marked within
    // the grace period stays, with its tags and what it reaches: repeat until nothing changes.
    const reachedAtStart = this.reachable(
      manifests,
      tags.map((tag) => tag.digest),
    );
    const young = new Set<string>();
    const checked = new Set<string>();
    let remove: Set<string>;
    for (;;) {
      const reached = this.reachable(
        manifests,
        tags.filter((tag) => !removeTags.has(tag.tag)).map((tag) => tag.digest),
      );
      const candidates = new Set<string>();
      for (const [digest, loaded] of manifests) {
        if (reached.has(digest) || young.has(digest)) continue;
        // It lost every tag that reached it (itself, a parent index or its subject) to retention.
        if (reachedAtStart.has(digest)) {
          candidates.add(digest);
          continue;
        }
        const pushed = loaded.record.pushedAt === undefined ? 0 : Date.parse(loaded.record.pushedAt);
        const rule = policy?.untaggedOlderThanMs;
        if (
          pushed < this.cutoff &&
          (this.options.deleteUntagged || (rule !== undefined && pushed < now - rule))
        ) {
          candidates.add(digest);
        }
      }
      // Whatever stays keeps everything it reaches (a young index being pushed keeps its children).
      const staying = this.reachable(
        manifests,
        [...manifests.keys()].filter((digest) => !candidates.has(digest)),
      );
      remove = new Set([...candidates].filter((digest) => !staying.has(digest)));
      let more = false;
      for (const tag of tags) {
        if (removeTags.has(tag.tag) || policy?.isProtected(tag.tag)) continue;
        const named = digestNamedByTag(tag.tag);
        if (named !== undefined && remove.has(named)) {
          removeTags.set(tag.tag, tag);
          more = true;
        }
      }
      const unchecked = [...remove].filter((digest) => !checked.has(digest));
      await forEachLimited(unchecked, CONCURRENCY, async (digest) => {
        checked.add(digest);
        const marked = await this.parts.blobs.markedAt(parseDigest(digest));
        if (!this.isOld(marked)) young.add(digest);
      });
      for (const tag of tags) {
        if (young.has(tag.digest) && removeTags.delete(tag.tag)) more = true;
      }
      if (unchecked.some((digest) => young.has(digest))) more = true;
      if (!more) break;
    }

    const removed = new Set<string>();
    if (this.options.dryRun) {
      for (const digest of remove) removed.add(digest);
    } else {
      await forEachLimited([...removeTags.values()], CONCURRENCY, async (tag) => {
        await metadata.deleteTag(repository, tag.tag, tag.digest);
      });
      // Parents before children, so that no index is ever left naming a missing manifest.
      const children = new Set([...manifests.values()].flatMap((loaded) => loaded.children));
      const order = [...remove].sort((a, b) => Number(children.has(a)) - Number(children.has(b)));
      for (const digest of order) {
        if (await this.removeManifest(repository, manifests.get(digest) as Loaded)) removed.add(digest);
      }
    }
    // Tags pointing at a removed manifest went with it.
    const removedTags = tags
      .filter((tag) => removeTags.has(tag.tag) || removed.has(tag.digest))
      .map((tag) => tag.tag);

    const keptManifests = new Set([...manifests.keys()].filter((digest) => !removed.has(digest)));
    const keptTags = tags.filter((tag) => !removedTags.includes(tag.tag));
    const referenced = new Set<string>();
    for (const digest of keptManifests) {
      this.live.add(digest);
      referenced.add(digest);
      for (const ref of (manifests.get(digest) as Loaded).references) {
        this.live.add(ref.digest);
        referenced.add(ref.digest);
      }
    }
    for await (const link of metadata.blobLinks(repository)) {
      if (referenced.has(link.digest)) continue;
      (this.state.unreferencedLinks[link.digest] ??= []).push({ repository, size: link.size });
    }
    const after = usageOf(repository, manifests, keptTags, keptManifests);
    return {
      ...after,
      removedTags: removedTags.sort(),
      removedManifests: [...removed].sort(),
      reclaimedBytes: before.bytes - after.bytes,
    };
  }

  /** Every manifest reachable from roots: an index's children, and referrers of what is reached. */
  private reachable(manifests: Map<string, Loaded>, roots: readonly string[]): Set<string> {
    const referrers = new Map<string, string[]>();
    for (const [digest, loaded] of manifests) {
      const subject = loaded.record.subject;
      if (subject !== undefined)
        (referrers.get(subject) ?? referrers.set(subject, []).get(subject))?.push(digest);
    }
    const seen = new Set<string>();
    const stack = roots.filter((digest) => manifests.has(digest));
    while (stack.length > 0) {
      const digest = stack.pop() as string;
      if (seen.has(digest)) continue;
      seen.add(digest);
      const loaded = manifests.get(digest) as Loaded;
      for (const child of loaded.children) if (manifests.has(child)) stack.push(child);
      for (const referrer of referrers.get(digest) ?? []) stack.push(referrer);
    }
    return seen;
  }

  /** What a stored manifest names: blobs and children, from its bytes. */
  private async references(
    repository: string,
    record: ManifestRecord,
  ): Promise<{ references: { digest: string; size: number }[]; children: string[] }> {
    const content = record.content ?? (await this.parts.blobs.getContent(parseDigest(record.digest)));
    // It was validated when pushed: a failure here is damage, and stops the run rather than guess.
    let parsed;
    try {
      parsed = parseManifest(content, record.mediaType);
    } catch (error) {
      throw new Error(
        `manifest ${record.digest} in ${repository} cannot be parsed (${(error as Error).message}): ` +
          'garbage collection stops rather than remove what it might reference',
      );
    }
    return {
      references: [...parsed.blobs, ...parsed.manifests].map(({ digest, size }) => ({ digest, size })),
      children: parsed.manifests.map((child) => child.digest),
    };
  }

  /**
   * Removes a manifest and its tags, unless a push marked it (an index naming it, or a push of it)
   * within the grace period; puts it back, with any tag given to it meanwhile, when a push marks it
   * while it goes. True when it is gone.
   */
  private async removeManifest(repository: string, loaded: Loaded): Promise<boolean> {
    const { blobs, metadata, log } = this.parts;
    const digest = parseDigest(loaded.record.digest);
    const markedBefore = await blobs.markedAt(digest);
    if (!this.isOld(markedBefore)) return false;
    const content = loaded.record.content ?? (await blobs.getContent(digest));
    const tags = await metadata.deleteManifest(repository, digest.value);
    if (tags === undefined) return true;
    if (tags.length === 0 && sameTime(markedBefore, await blobs.markedAt(digest))) return true;
    await metadata.putManifest(repository, { ...loaded.record, content }, tags);
    this.state.rescued++;
    log.info('garbage collection put back a manifest a push took meanwhile', {
      run: this.state.run,
      repository,
      digest: digest.value,
      tags,
    });
    return false;
  }

  // Phase 2.

  private async uploadsPhase(): Promise<void> {
    const age = this.options.uploadAgeMs;
    if (age === undefined) return;
    const purged = await purgeUploads(this.parts, age, this.options.dryRun);
    this.state.removed.uploads += purged.sessions;
    this.state.removed.uploadBytes += purged.bytes;
  }

  // Phase 3.

  private async blobsPhase(): Promise<void> {
    const { blobs } = this.parts;
    const startAfter = this.state.cursor === undefined ? undefined : parseDigest(this.state.cursor);
    let batch: StoredBlob[] = [];
    const flush = async () => {
      await forEachLimited(batch, CONCURRENCY, (blob) => this.collectBlob(blob));
      this.state.cursor = batch.at(-1)?.digest.value ?? this.state.cursor;
      batch = [];
      this.checkDeadline();
    };
    for await (const blob of blobs.walk(startAfter)) {
      batch.push(blob);
      if (batch.length >= BATCH) await flush();
    }
    await flush();
  }

  private async collectBlob(blob: StoredBlob): Promise<void> {
    const { digest, data, marker } = blob;
    const old = (time: Date | undefined) => this.isOld(time);
    if (data === undefined) {
      // A marker left by a blob already removed (or one whose push failed): tidy it once old.
      if (!this.options.dryRun && old(marker?.modTime)) await this.parts.blobs.deleteMarker(digest);
      return;
    }
    if (this.live.has(digest.value) || !old(data.modTime) || !old(marker?.modTime)) {
      this.state.kept.blobs++;
      this.state.kept.blobBytes += data.size;
      return;
    }
    const links = this.state.unreferencedLinks[digest.value] ?? [];
    if (this.options.dryRun || (await this.removeBlob(digest, links))) {
      this.state.removed.blobs++;
      this.state.removed.blobBytes += data.size;
      this.state.removed.links += links.length;
    } else {
      this.state.kept.blobs++;
      this.state.kept.blobBytes += data.size;
    }
  }

  /** The removal protocol described at the top of this file; false when the blob was put back. */
  private async removeBlob(
    digest: Digest,
    links: readonly { repository: string; size: number }[],
  ): Promise<boolean> {
    const { blobs, metadata, log } = this.parts;
    // Read the mark again, as it will be read after the move (the walk's listing may give its time at
    // another precision than a stat): marked since the walk, the blob stays.
    const markedBefore = await blobs.markedAt(digest);
    if (!this.isOld(markedBefore)) return false;
    for (const link of links) await metadata.unlinkBlob(link.repository, digest.value);
    const aside = `${GC_ROOT}/runs/${this.state.run}/removing/${digest.algorithm}-${digest.hex}`;
    const moved = await blobs.moveOut(digest, aside);
    if (sameTime(markedBefore, await blobs.markedAt(digest))) {
      if (moved) await blobs.driver.delete(aside);
      await blobs.deleteMarker(digest);
      return moved;
    }
    if (moved && !(await blobs.moveBack(aside, digest))) {
      log.error('garbage collection could not put back a blob a push took meanwhile', {
        run: this.state.run,
        digest: digest.value,
        aside,
      });
    }
    for (const link of links)
      await metadata.linkBlob(link.repository, { digest: digest.value, size: link.size });
    this.state.rescued++;
    log.info('garbage collection put back a blob a push took meanwhile', {
      run: this.state.run,
      digest: digest.value,
    });
    return false;
  }
}

/**
 * Removes upload sessions past their expiry, with their bytes, and upload bytes no open session owns
 * that were last written longer than ageMs ago (left by a crash, or by a session DynamoDB's TTL removed).
 * The standalone server runs this every storage.maintenance.uploadpurging.interval.
 */
export async function purgeUploads(
  parts: GcParts,
  ageMs: number,
  dryRun: boolean,
): Promise<{ sessions: number; bytes: number }> {
  const { blobs, metadata } = parts;
  const now = Date.now();
  const open = new Set<string>();
  const expired: { repository: string; id: string }[] = [];
  for await (const session of metadata.uploads()) {
    if (Date.parse(session.expiresAt) < now) expired.push({ repository: session.repository, id: session.id });
    else open.add(session.id);
  }
  // Listed after the sessions: bytes of a session started since are young, and stay.
  const orphans: { id: string; size: number }[] = [];
  for await (const upload of blobs.walkUploads()) {
    if (!open.has(upload.id) && upload.modTime.getTime() < now - ageMs) orphans.push(upload);
  }
  const bytes = orphans.reduce((sum, upload) => sum + upload.size, 0);
  if (!dryRun) {
    await forEachLimited(expired, CONCURRENCY, async (session) => {
      await metadata.deleteUpload(session.repository, session.id);
      await blobs.deleteUpload(session.id);
    });
    await forEachLimited(orphans, CONCURRENCY, (upload) => blobs.deleteUpload(upload.id));
  }
  if (expired.length > 0 || orphans.length > 0) {
    parts.log.info('upload purge', { dryRun, sessions: expired.length, orphans: orphans.length, bytes });
  }
  return { sessions: expired.length, bytes };
}

interface Loaded {
  record: ManifestRecord;
  references: { digest: string; size: number }[];
  children: string[];
}

function sameTime(a: Date | undefined, b: Date | undefined): boolean {
  return a?.getTime() === b?.getTime();
}

/** The digest a tag such as `sha256-<hex>` or `sha256-<hex>.sig` names, if it is of that form. */
function digestNamedByTag(tag: string): string | undefined {
  const match = /^([a-z0-9]+)-([0-9a-f]{64,128})(?:\.[A-Za-z0-9_.-]*)?$/.exec(tag);
  if (!match) return undefined;
  const digest = `${match[1]}:${match[2]}`;
  return isDigest(digest) ? digest : undefined;
}

function usageOf(
  repository: string,
  manifests: Map<string, Loaded>,
  tags: readonly TagRecord[],
  kept: ReadonlySet<string>,
): RepositoryUsage {
  const blobs = new Map<string, number>();
  let bytes = 0;
  for (const digest of kept) {
    const loaded = manifests.get(digest) as Loaded;
    bytes += loaded.record.size;
    for (const ref of loaded.references) if (!manifests.has(ref.digest)) blobs.set(ref.digest, ref.size);
  }
  for (const size of blobs.values()) bytes += size;
  return { repository, tags: tags.length, manifests: kept.size, blobs: blobs.size, bytes };
}
