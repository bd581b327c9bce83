/**
 * The one conformance suite for MetadataStore implementations. It tests only the interface's contract,
 * and it may run against a shared store (a real DynamoDB table): every test works in repositories
 * under its own random prefix, and catalog assertions only look at the test's own names.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  TagExistsError,
  type ManifestRecord,
  type MetadataStore,
  type Page,
  type UploadSession,
} from '../../functions/metadata/store.js';

export interface MetadataStoreFixture {
  store: MetadataStore;
  cleanup(): Promise<void>;
}

const IMAGE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** A fresh lowercase name component, so concurrent runs against one store never meet. */
function uniqueComponent(): string {
  return `t${randomBytes(6).toString('hex')}`;
}

function uniqueRepository(): string {
  return `test/${uniqueComponent()}/app`;
}

function randomDigest(): string {
  return `sha256:${createHash('sha256').update(randomBytes(16)).digest('hex')}`;
}

function randomSha512(): string {
  return `sha512:${createHash('sha512').update(randomBytes(16)).digest('hex')}`;
}

function manifest(fields: Partial<ManifestRecord> = {}): ManifestRecord {
  return { digest: randomDigest(), mediaType: IMAGE_MANIFEST, size: 1234, ...fields };
}

/** Stores may inline manifest bytes; the suite compares everything else. */
function withoutContent(record: ManifestRecord | undefined): ManifestRecord | undefined {
  if (record === undefined) return undefined;
  const copy = { ...record };
  delete copy.content;
  return copy;
}

function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byDigest<T extends { digest: string }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => compareCodePoints(a.digest, b.digest));
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Clock slack for times a store takes from elsewhere (a file's modTime; coarse filesystem timestamps). */
const CLOCK_SLACK_MS = 2_000;

/**
 * A time 0.1 to 1.1 s ahead and 1 ms past a whole second. A session expiring then reads as expired
 * from then on, while a store deriving a whole-second TTL from it (DynamoDB: ttl = ceil(seconds),
 * which DynamoDB Local enforces within moments) still holds it until the next second: after
 * waitUntilPast(time) there is almost a second to look at an expired session the store still has.
 */
export function expiryPastWholeSecond(): number {
  return (Math.floor((Date.now() + 100) / 1000) + 1) * 1000 + 1;
}

export async function waitUntilPast(time: number): Promise<void> {
  await sleep(Math.max(0, time + 5 - Date.now()));
}

/** A fresh, empty upload session of repository, expiring in an hour; fields override. */
export function uploadSession(repository: string, fields: Partial<UploadSession> = {}): UploadSession {
  const now = Date.now();
  return {
    id: randomUUID(),
    repository,
    offset: 0,
    sha256: EMPTY_SHA256,
    startedAt: new Date(now).toISOString(),
    expiresAt: new Date(now + 60 * 60 * 1000).toISOString(),
    ...fields,
  };
}

export function describeMetadataStore(name: string, makeStore: () => Promise<MetadataStoreFixture>): void {
  describe(`MetadataStore contract: ${name}`, () => {
    let fixture: MetadataStoreFixture | undefined;
    const store = (): MetadataStore => {
      if (fixture === undefined) throw new Error('store not created');
      return fixture.store;
    };

    beforeAll(async () => {
      fixture = await makeStore();
    });
    afterAll(async () => {
      await fixture?.cleanup();
    });

    /** Every tag of a repository, following pages of the given size. */
    async function allTags(repository: string, limit: number): Promise<string[]> {
      const tags: string[] = [];
      let last: string | undefined;
      for (;;) {
        const page = await store().listTags(repository, { last, limit });
        if (page === undefined) throw new Error(`unknown repository ${repository}`);
        expect(page.items.length).toBeLessThanOrEqual(limit);
        tags.push(...page.items);
        if (!page.more) return tags;
        last = page.items.at(-1);
      }
    }

    describe('blob links', () => {
      it('returns a linked blob and nothing for a blob never linked', async () => {
        const repository = uniqueRepository();
        const link = { digest: randomDigest(), size: 42 };
        await store().linkBlob(repository, link);
        expect(await store().getBlobLink(repository, link.digest)).toEqual(link);
        expect(await store().getBlobLink(repository, randomDigest())).toBeUndefined();
      });

      it('treats linking the same blob twice as harmless', async () => {
        const repository = uniqueRepository();
        const link = { digest: randomDigest(), size: 7 };
        await store().linkBlob(repository, link);
        await store().linkBlob(repository, link);
        expect(await store().getBlobLink(repository, link.digest)).toEqual(link);
        expect(await store().unlinkBlob(repository, link.digest)).toBe(true);
        expect(await store().getBlobLink(repository, link.digest)).toBeUndefined();
      });

      it('unlinks a blob once and reports false when there is no link', async () => {
        const repository = uniqueRepository();
        const link = { digest: randomDigest(), size: 1 };
        await store().linkBlob(repository, link);
        expect(await store().unlinkBlob(repository, link.digest)).toBe(true);
        expect(await store().unlinkBlob(repository, link.digest)).toBe(false);
        expect(await store().unlinkBlob(repository, randomDigest())).toBe(false);
      });

      it('keeps links per repository', async () => {
        const [a, b] = [uniqueRepository(), uniqueRepository()];
        const link = { digest: randomDigest(), size: 3 };
        await store().linkBlob(a, link);
        expect(await store().getBlobLink(b, link.digest)).toBeUndefined();
        expect(await store().unlinkBlob(b, link.digest)).toBe(false);
        expect(await store().getBlobLink(a, link.digest)).toEqual(link);
      });
    });

    describe('manifests and tags', () => {
      it('finds a manifest by digest and by each of its tags', async () => {
        const repository = uniqueRepository();
        const record = manifest({ artifactType: 'application/vnd.example+json', annotations: { a: 'b' } });
        await store().putManifest(repository, record, ['latest', 'v1']);
        expect(withoutContent(await store().getManifest(repository, record.digest))).toEqual(record);
        expect(withoutContent(await store().getTag(repository, 'latest'))).toEqual(record);
        expect(withoutContent(await store().getTag(repository, 'v1'))).toEqual(record);
        expect(await store().getManifest(repository, randomDigest())).toBeUndefined();
      });

      it('moves a tag to the manifest put last, leaving the earlier manifest and its other tags', async () => {
        const repository = uniqueRepository();
        const first = manifest();
        const second = manifest();
        await store().putManifest(repository, first, ['latest', 'v1']);
        await store().putManifest(repository, second, ['latest']);
        expect((await store().getTag(repository, 'latest'))?.digest).toBe(second.digest);
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(first.digest);
        expect(withoutContent(await store().getManifest(repository, first.digest))).toEqual(first);
      });

      it('adds tags when a manifest is put again, keeping its earlier tags', async () => {
        const repository = uniqueRepository();
        const record = manifest();
        await store().putManifest(repository, record, ['v1']);
        await store().putManifest(repository, record, ['v2']);
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(record.digest);
        expect((await store().getTag(repository, 'v2'))?.digest).toBe(record.digest);
      });

      it('keeps a manifest put without tags, reachable by digest only', async () => {
        const repository = uniqueRepository();
        const record = manifest();
        await store().putManifest(repository, record, []);
        expect(withoutContent(await store().getManifest(repository, record.digest))).toEqual(record);
        expect(await store().listTags(repository, { limit: 10 })).toEqual({ items: [], more: false });
      });

      it('reads an unknown tag or repository as undefined', async () => {
        const repository = uniqueRepository();
        await store().putManifest(repository, manifest(), ['latest']);
        expect(await store().getTag(repository, 'other')).toBeUndefined();
        expect(await store().getTag(uniqueRepository(), 'latest')).toBeUndefined();
        expect(await store().getManifest(uniqueRepository(), randomDigest())).toBeUndefined();
      });

      it('deletes a tag but not the manifest it pointed at', async () => {
        const repository = uniqueRepository();
        const record = manifest();
        await store().putManifest(repository, record, ['latest', 'v1']);
        expect(await store().deleteTag(repository, 'latest')).toBe(true);
        expect(await store().getTag(repository, 'latest')).toBeUndefined();
        expect(await store().deleteTag(repository, 'latest')).toBe(false);
        expect(await store().deleteTag(repository, 'never')).toBe(false);
        expect(withoutContent(await store().getManifest(repository, record.digest))).toEqual(record);
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(record.digest);
        expect(await allTags(repository, 10)).toEqual(['v1']);
      });

      it('deletes a manifest with every tag pointing at it, leaving tags of other manifests', async () => {
        const repository = uniqueRepository();
        const doomed = manifest();
        const kept = manifest();
        await store().putManifest(repository, doomed, ['b', 'a']);
        await store().putManifest(repository, kept, ['c']);
        expect(await store().deleteManifest(repository, doomed.digest)).toEqual(['a', 'b']);
        expect(await store().getManifest(repository, doomed.digest)).toBeUndefined();
        expect(await store().getTag(repository, 'a')).toBeUndefined();
        expect(await store().getTag(repository, 'b')).toBeUndefined();
        expect((await store().getTag(repository, 'c'))?.digest).toBe(kept.digest);
        expect(await allTags(repository, 10)).toEqual(['c']);
        expect(await store().deleteManifest(repository, doomed.digest)).toBeUndefined();
      });

      it('reports undefined when deleting an unknown manifest', async () => {
        const repository = uniqueRepository();
        await store().putManifest(repository, manifest(), ['latest']);
        expect(await store().deleteManifest(repository, randomDigest())).toBeUndefined();
        expect(await store().deleteManifest(uniqueRepository(), randomDigest())).toBeUndefined();
      });
    });

    describe('tag listing', () => {
      const sorted = ['1.0', '1.0-rc', 'A', '_x', 'a', 'b', 'latest'];

      async function repositoryWithTags(): Promise<string> {
        const repository = uniqueRepository();
        await store().putManifest(repository, manifest(), ['latest', 'a', '1.0-rc', '_x']);
        await store().putManifest(repository, manifest(), ['b', 'A', '1.0']);
        return repository;
      }

      it('lists tags in code point order', async () => {
        const repository = await repositoryWithTags();
        expect(await store().listTags(repository, { limit: 100 })).toEqual({ items: sorted, more: false });
      });

      it('pages tags with limit and last, telling whether more follow', async () => {
        const repository = await repositoryWithTags();
        expect(await store().listTags(repository, { limit: 3 })).toEqual({
          items: ['1.0', '1.0-rc', 'A'],
          more: true,
        });
        expect(await store().listTags(repository, { last: 'A', limit: 2 })).toEqual({
          items: ['_x', 'a'],
          more: true,
        });
        expect(await store().listTags(repository, { last: 'a', limit: 2 })).toEqual({
          items: ['b', 'latest'],
          more: false,
        });
        expect(await store().listTags(repository, { last: 'latest', limit: 2 })).toEqual({
          items: [],
          more: false,
        });
        // `last` need not be a tag: listing resumes after where it would sort.
        expect(await store().listTags(repository, { last: '1.0-', limit: 1 })).toEqual({
          items: ['1.0-rc'],
          more: true,
        });
        for (const limit of [1, 2, 3, 7]) expect(await allTags(repository, limit)).toEqual(sorted);
      });

      it('returns undefined for an unknown repository', async () => {
        expect(await store().listTags(uniqueRepository(), { limit: 10 })).toBeUndefined();
      });

      it('returns an empty page for a repository without tags', async () => {
        const repository = uniqueRepository();
        await store().linkBlob(repository, { digest: randomDigest(), size: 1 });
        expect(await store().listTags(repository, { limit: 10 })).toEqual({ items: [], more: false });
      });
    });

    describe('catalog', () => {
      /** Every repository name, following pages of the given size. */
      async function allRepositories(limit: number): Promise<string[]> {
        const names: string[] = [];
        let last: string | undefined;
        for (;;) {
          const page: Page<string> = await store().listRepositories({ last, limit });
          expect(page.items.length).toBeLessThanOrEqual(limit);
          names.push(...page.items);
          if (!page.more) return names;
          last = page.items.at(-1);
        }
      }

      it('lists repositories in code point order, nested names included, across pages', async () => {
        const prefix = `test/${uniqueComponent()}`;
        // '-' (0x2d) < '/' (0x2f) < 'b' (0x62): a, a-b, a/b, ab
        const expected = [`${prefix}/a`, `${prefix}/a-b`, `${prefix}/a/b`, `${prefix}/ab`];
        await store().linkBlob(`${prefix}/ab`, { digest: randomDigest(), size: 1 });
        await store().putManifest(`${prefix}/a/b`, manifest(), ['latest']);
        await store().putManifest(`${prefix}/a`, manifest(), []);
        await store().linkBlob(`${prefix}/a-b`, { digest: randomDigest(), size: 1 });

        for (const limit of [1, 3, 1000]) {
          const names = await allRepositories(limit);
          expect(names.filter((name) => name.startsWith(`${prefix}/`))).toEqual(expected);
          // Pages join into one strictly increasing list: no repeats, nothing out of order.
          expect(names).toEqual([...names].sort(compareCodePoints));
          expect(new Set(names).size).toBe(names.length);
        }
      });

      it('pages repositories strictly after last', async () => {
        const prefix = `test/${uniqueComponent()}`;
        for (const name of ['a', 'a-b', 'a/b', 'ab']) {
          await store().linkBlob(`${prefix}/${name}`, { digest: randomDigest(), size: 1 });
        }
        // Only names starting with `${prefix}/a` sort between `${prefix}/a` and `${prefix}/ab`: ours.
        expect(await store().listRepositories({ last: `${prefix}/a`, limit: 2 })).toEqual({
          items: [`${prefix}/a-b`, `${prefix}/a/b`],
          more: true,
        });
        expect((await store().listRepositories({ last: `${prefix}/a/b`, limit: 1 })).items).toEqual([
          `${prefix}/ab`,
        ]);
        // Repository names are lowercase, so nothing sorts after '~'.
        expect(await store().listRepositories({ last: '~', limit: 10 })).toEqual({ items: [], more: false });
      });
    });

    describe('referrers', () => {
      it('lists the manifests with a given subject in digest order, keeping their descriptors', async () => {
        const repository = uniqueRepository();
        const subject = randomDigest();
        const referrers = [1, 2, 3].map((n) =>
          manifest({
            subject,
            size: 100 + n,
            mediaType: n === 2 ? 'application/vnd.oci.artifact.manifest.v1+json' : IMAGE_MANIFEST,
            artifactType: `application/vnd.example.sig${n}+json`,
            annotations: { 'org.example.n': String(n) },
          }),
        );
        await store().putManifest(repository, manifest(), ['latest']);
        for (const referrer of referrers) await store().putManifest(repository, referrer, []);
        const listed = await store().listReferrers(repository, subject);
        expect(listed.map(withoutContent)).toEqual(
          [...referrers].sort((a, b) => compareCodePoints(a.digest, b.digest)),
        );
      });

      it('lists referrers only for their own subject and repository', async () => {
        const [repository, elsewhere] = [uniqueRepository(), uniqueRepository()];
        const [subject, other] = [randomDigest(), randomDigest()];
        const mine = manifest({ subject });
        const theirs = manifest({ subject: other });
        await store().putManifest(repository, mine, []);
        await store().putManifest(repository, theirs, []);
        await store().putManifest(elsewhere, manifest({ subject }), []);
        expect((await store().listReferrers(repository, subject)).map(withoutContent)).toEqual([mine]);
        expect((await store().listReferrers(repository, other)).map(withoutContent)).toEqual([theirs]);
        expect(await store().listReferrers(repository, randomDigest())).toEqual([]);
        expect(await store().listReferrers(uniqueRepository(), subject)).toEqual([]);
      });

      it('drops a deleted manifest from its subject referrers', async () => {
        const repository = uniqueRepository();
        const subject = randomDigest();
        const [kept, deleted] = [manifest({ subject }), manifest({ subject })];
        await store().putManifest(repository, kept, ['sig']);
        await store().putManifest(repository, deleted, []);
        expect(await store().deleteManifest(repository, deleted.digest)).toEqual([]);
        expect((await store().listReferrers(repository, subject)).map(withoutContent)).toEqual([kept]);
      });
    });

    describe('upload sessions', () => {
      it('returns a created session and undefined for an unknown one', async () => {
        const repository = uniqueRepository();
        const session = uploadSession(repository);
        await store().createUpload(session);
        expect(await store().getUpload(repository, session.id)).toEqual(session);
        expect(await store().getUpload(repository, randomUUID())).toBeUndefined();
        expect(await store().getUpload(uniqueRepository(), session.id)).toBeUndefined();
      });

      it('reads an expired session as undefined', async () => {
        const repository = uniqueRepository();
        const session = uploadSession(repository, { expiresAt: new Date(Date.now() - 1000).toISOString() });
        await store().createUpload(session);
        expect(await store().getUpload(repository, session.id)).toBeUndefined();
      });

      it('updates a session only when the expected offset matches the stored one', async () => {
        const repository = uniqueRepository();
        const session = uploadSession(repository);
        await store().createUpload(session);
        // An update carries the running hash's serialized state (as on Lambda), which must round-trip.
        const moved = { ...session, offset: 100, sha256: 'a'.repeat(64), hashState: 'c3RhdGU=' };
        expect(await store().updateUpload(moved, 0)).toBe(true);
        expect(await store().getUpload(repository, session.id)).toEqual(moved);

        const stale = { ...session, offset: 200, sha256: 'b'.repeat(64) };
        expect(await store().updateUpload(stale, 0)).toBe(false);
        expect(await store().getUpload(repository, session.id)).toEqual(moved);
      });

      it('refuses to update a session that does not exist', async () => {
        const session = uploadSession(uniqueRepository());
        expect(await store().updateUpload({ ...session, offset: 10 }, 0)).toBe(false);
        expect(await store().getUpload(session.repository, session.id)).toBeUndefined();
      });

      it('lets exactly one of two concurrent updates with the same expected offset succeed', async () => {
        const repository = uniqueRepository();
        const session = uploadSession(repository, { offset: 100 });
        await store().createUpload(session);
        const left = { ...session, offset: 150, sha256: 'c'.repeat(64) };
        const right = { ...session, offset: 250, sha256: 'd'.repeat(64) };
        const results = await Promise.all([
          store().updateUpload(left, 100),
          store().updateUpload(right, 100),
        ]);
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(await store().getUpload(repository, session.id)).toEqual(results[0] ? left : right);
      });

      it('forgets a deleted session, and deleting again is harmless', async () => {
        const repository = uniqueRepository();
        const session = uploadSession(repository);
        await store().createUpload(session);
        await store().deleteUpload(repository, session.id);
        expect(await store().getUpload(repository, session.id)).toBeUndefined();
        await store().deleteUpload(repository, session.id);
        await store().deleteUpload(uniqueRepository(), randomUUID());
        expect(await store().updateUpload({ ...session, offset: 1 }, 0)).toBe(false);
      });
    });

    describe('pushedAt', () => {
      it('keeps pushedAt by digest, by tag, among referrers and in the manifest scan', async () => {
        const repository = uniqueRepository();
        const subject = randomDigest();
        const record = manifest({ subject, pushedAt: '2024-05-01T10:00:00.000Z' });
        await store().putManifest(repository, record, ['v1']);
        expect(withoutContent(await store().getManifest(repository, record.digest))).toEqual(record);
        expect((await store().getTag(repository, 'v1'))?.pushedAt).toBe(record.pushedAt);
        expect((await store().listReferrers(repository, subject)).map(withoutContent)).toEqual([record]);
        expect((await collect(store().manifests(repository))).map(withoutContent)).toEqual([record]);
      });

      it('takes the pushedAt of the last put, and has none on a record put without it', async () => {
        const repository = uniqueRepository();
        const record = manifest({ pushedAt: '2024-05-01T10:00:00.000Z' });
        await store().putManifest(repository, record, ['v1']);
        const again = { ...record, pushedAt: '2024-06-01T12:30:00.000Z' };
        await store().putManifest(repository, again, ['v2']);
        expect((await store().getManifest(repository, record.digest))?.pushedAt).toBe(again.pushedAt);
        expect((await store().getTag(repository, 'v2'))?.pushedAt).toBe(again.pushedAt);
        expect((await collect(store().manifests(repository))).map((listed) => listed.pushedAt)).toEqual([
          again.pushedAt,
        ]);

        const older = manifest();
        await store().putManifest(repository, older, ['old']);
        const read = await store().getManifest(repository, older.digest);
        expect(read).toBeDefined();
        expect(read?.pushedAt).toBeUndefined();
      });
    });

    describe('repository scans', () => {
      it('lists tag records in tag order with the digest each points at and when it was put', async () => {
        const repository = uniqueRepository();
        const [first, second] = [manifest(), manifest()];
        const before = Date.now();
        await store().putManifest(repository, first, ['latest', 'a', '1.0-rc', '_x']);
        await store().putManifest(repository, second, ['b', 'A', '1.0']);
        const after = Date.now();

        const records = await collect(store().tagRecords(repository));
        expect(records.map(({ tag, digest }) => ({ tag, digest }))).toEqual([
          { tag: '1.0', digest: second.digest },
          { tag: '1.0-rc', digest: first.digest },
          { tag: 'A', digest: second.digest },
          { tag: '_x', digest: first.digest },
          { tag: 'a', digest: first.digest },
          { tag: 'b', digest: second.digest },
          { tag: 'latest', digest: first.digest },
        ]);
        for (const record of records) {
          expect(typeof record.taggedAt).toBe('string');
          const time = Date.parse(record.taggedAt ?? '');
          expect(time).toBeGreaterThanOrEqual(before - CLOCK_SLACK_MS);
          expect(time).toBeLessThanOrEqual(after + CLOCK_SLACK_MS);
        }
        // Listing tags and scanning them agree.
        expect(records.map((record) => record.tag)).toEqual(await allTags(repository, 100));
      });

      it('shows a moved tag with its new digest and a later time, and drops a deleted tag', async () => {
        const repository = uniqueRepository();
        const [first, second] = [manifest(), manifest()];
        await store().putManifest(repository, first, ['latest', 'stable', 'old']);
        const initial = await collect(store().tagRecords(repository));
        const latestBefore = initial.find((record) => record.tag === 'latest');
        expect(latestBefore?.digest).toBe(first.digest);

        await sleep(20);
        await store().putManifest(repository, second, ['latest']);
        expect(await store().deleteTag(repository, 'old')).toBe(true);
        const records = await collect(store().tagRecords(repository));
        expect(records.map(({ tag, digest }) => ({ tag, digest }))).toEqual([
          { tag: 'latest', digest: second.digest },
          { tag: 'stable', digest: first.digest },
        ]);
        const latestAfter = records.find((record) => record.tag === 'latest');
        expect(Date.parse(latestAfter?.taggedAt ?? '')).toBeGreaterThanOrEqual(
          Date.parse(latestBefore?.taggedAt ?? ''),
        );
      });

      it('lists every manifest record of a repository in digest order, tagged or not', async () => {
        const repository = uniqueRepository();
        const elsewhere = uniqueRepository();
        const subject = randomDigest();
        const tagged = manifest({ annotations: { 'org.example': 'x' }, pushedAt: new Date().toISOString() });
        // sha256 sorts before sha512: the order is the digests', algorithm included.
        const untagged = [
          manifest({ subject, artifactType: 'application/vnd.example.sig+json' }),
          manifest({ digest: randomSha512(), size: 99 }),
          manifest(),
        ];
        const records = [tagged, ...untagged];
        const doomed = manifest();
        await store().putManifest(repository, tagged, ['latest']);
        for (const record of untagged) await store().putManifest(repository, record, []);
        await store().putManifest(repository, doomed, ['gone']);
        await store().putManifest(elsewhere, manifest(), ['latest']);
        expect(await store().deleteManifest(repository, doomed.digest)).toEqual(['gone']);

        const listed = await collect(store().manifests(repository));
        expect(listed.map(withoutContent)).toEqual(byDigest(records));
        expect(listed.at(-1)?.digest.startsWith('sha512:')).toBe(true);
      });

      it('returns inline content from the manifest scan exactly when reads by digest do', async () => {
        const repository = uniqueRepository();
        const contents = [randomBytes(200), randomBytes(1000), randomBytes(10)];
        const records = contents.map((bytes) =>
          manifest({ size: bytes.byteLength, content: new Uint8Array(bytes) }),
        );
        for (const record of records) await store().putManifest(repository, record, []);

        const listed = await collect(store().manifests(repository));
        expect(listed.map(withoutContent)).toEqual(byDigest(records).map(withoutContent));
        for (const record of listed) {
          const put = records.find((candidate) => candidate.digest === record.digest);
          const read = await store().getManifest(repository, record.digest);
          expect(record.content === undefined).toBe(read?.content === undefined);
          if (record.content !== undefined) {
            expect(Buffer.from(record.content).equals(Buffer.from(put?.content ?? []))).toBe(true);
          }
        }
      });

      it('lists every blob link of a repository in digest order', async () => {
        const repository = uniqueRepository();
        const elsewhere = uniqueRepository();
        const links = [
          { digest: randomDigest(), size: 10 },
          { digest: randomSha512(), size: 0 },
          { digest: randomDigest(), size: 123_456_789 },
          { digest: randomDigest(), size: 7 },
        ];
        const unlinked = { digest: randomDigest(), size: 5 };
        for (const link of [...links, unlinked]) await store().linkBlob(repository, link);
        await store().linkBlob(repository, links[0] ?? unlinked);
        await store().linkBlob(elsewhere, { digest: randomDigest(), size: 1 });
        expect(await store().unlinkBlob(repository, unlinked.digest)).toBe(true);

        expect(await collect(store().blobLinks(repository))).toEqual(byDigest(links));
        expect(await collect(store().blobLinks(elsewhere))).toHaveLength(1);
      });

      it('yields nothing for an unknown repository or one without such entries', async () => {
        const unknown = uniqueRepository();
        expect(await collect(store().manifests(unknown))).toEqual([]);
        expect(await collect(store().tagRecords(unknown))).toEqual([]);
        expect(await collect(store().blobLinks(unknown))).toEqual([]);

        const linksOnly = uniqueRepository();
        await store().linkBlob(linksOnly, { digest: randomDigest(), size: 1 });
        expect(await collect(store().manifests(linksOnly))).toEqual([]);
        expect(await collect(store().tagRecords(linksOnly))).toEqual([]);

        const untagged = uniqueRepository();
        await store().putManifest(untagged, manifest(), []);
        expect(await collect(store().tagRecords(untagged))).toEqual([]);
        expect(await collect(store().blobLinks(untagged))).toEqual([]);
      });
    });

    describe('upload scan', () => {
      it('yields every session of every repository, expired ones included, deleted ones not', async () => {
        const repository = uniqueRepository();
        // A nested repository, and one holding nothing but a session.
        const nested = `${repository}/nested`;
        const other = uniqueRepository();
        await store().linkBlob(repository, { digest: randomDigest(), size: 1 });
        const live = [
          uploadSession(repository),
          uploadSession(repository, { offset: 5, sha256: 'a'.repeat(64), hashState: 'c3RhdGU=' }),
          uploadSession(nested),
          uploadSession(other),
        ];
        for (const session of live) await store().createUpload(session);
        const deleted = uploadSession(repository);
        await store().createUpload(deleted);
        await store().deleteUpload(repository, deleted.id);
        const moved = { ...(live[0] ?? deleted), offset: 42, sha256: 'b'.repeat(64) };
        expect(await store().updateUpload(moved, 0)).toBe(true);
        // Sessions that expire before the scan (see expiryPastWholeSecond).
        const expiresAt = new Date(expiryPastWholeSecond()).toISOString();
        const expired = [uploadSession(repository, { expiresAt }), uploadSession(other, { expiresAt })];
        for (const session of expired) await store().createUpload(session);
        await waitUntilPast(Date.parse(expiresAt));

        const ours = new Set([repository, nested, other]);
        const found = (await collect(store().uploads())).filter((session) => ours.has(session.repository));
        const expected = [moved, ...live.slice(1), ...expired];
        const byId = (a: UploadSession, b: UploadSession) => compareCodePoints(a.id, b.id);
        expect(found.sort(byId)).toEqual(expected.sort(byId));
        for (const session of expired) {
          expect(await store().getUpload(session.repository, session.id)).toBeUndefined();
        }
      });
    });

    describe('conditional tag writes', () => {
      it('deletes a tag for a digest only while the tag points at that digest', async () => {
        const repository = uniqueRepository();
        const [first, second] = [manifest(), manifest()];
        await store().putManifest(repository, first, ['latest', 'v1']);

        // Mismatch: the tag stays.
        expect(await store().deleteTag(repository, 'latest', second.digest)).toBe(false);
        expect((await store().getTag(repository, 'latest'))?.digest).toBe(first.digest);
        // Match: the tag goes, the manifest and its other tag stay.
        expect(await store().deleteTag(repository, 'latest', first.digest)).toBe(true);
        expect(await store().getTag(repository, 'latest')).toBeUndefined();
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(first.digest);
        expect(withoutContent(await store().getManifest(repository, first.digest))).toEqual(first);
        // Absent: nothing to delete.
        expect(await store().deleteTag(repository, 'latest', first.digest)).toBe(false);
        expect(await store().deleteTag(repository, 'never', first.digest)).toBe(false);
        expect(await store().deleteTag(uniqueRepository(), 'v1', first.digest)).toBe(false);

        // A tag moved to another manifest is no longer the first one's to delete.
        await store().putManifest(repository, second, ['v1']);
        expect(await store().deleteTag(repository, 'v1', first.digest)).toBe(false);
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(second.digest);
        expect(await store().deleteTag(repository, 'v1', second.digest)).toBe(true);
        expect(await allTags(repository, 10)).toEqual([]);
      });

      it('with keepTags puts new tags and tags already pointing at the manifest', async () => {
        const repository = uniqueRepository();
        const record = manifest();
        await store().putManifest(repository, record, ['v1'], { keepTags: true });
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(record.digest);
        await store().putManifest(repository, record, ['v1', 'v2'], { keepTags: true });
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(record.digest);
        expect((await store().getTag(repository, 'v2'))?.digest).toBe(record.digest);
        // Re-putting by digest only needs no tag at all.
        await store().putManifest(repository, record, [], { keepTags: true });
        expect(await allTags(repository, 10)).toEqual(['v1', 'v2']);
        // keepTags false behaves as without options: tags move.
        const other = manifest();
        await store().putManifest(repository, other, ['v1'], { keepTags: false });
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(other.digest);
      });

      it('with keepTags refuses a tag pointing at another manifest, with TagExistsError', async () => {
        const repository = uniqueRepository();
        const [first, second] = [manifest(), manifest()];
        await store().putManifest(repository, first, ['v1']);
        const error: unknown = await store()
          .putManifest(repository, second, ['v1'], { keepTags: true })
          .then(
            () => undefined,
            (thrown: unknown) => thrown,
          );
        expect(error).toBeInstanceOf(TagExistsError);
        expect(error).toMatchObject({ tag: 'v1', digest: first.digest });
        expect((error as Error).message).toContain(`tag v1 already points at ${first.digest}`);
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(first.digest);
        expect(await store().getManifest(repository, second.digest)).toBeUndefined();

        // Without keepTags the tag moves as always.
        await store().putManifest(repository, second, ['v1']);
        expect((await store().getTag(repository, 'v1'))?.digest).toBe(second.digest);
      });

      it('with keepTags writes nothing when one of several tags conflicts', async () => {
        const repository = uniqueRepository();
        const subject = randomDigest();
        const first = manifest();
        const second = manifest({ subject, pushedAt: new Date().toISOString() });
        await store().putManifest(repository, first, ['latest', 'v1']);
        const tagsBefore = await collect(store().tagRecords(repository));

        await expect(
          store().putManifest(repository, second, ['new', 'v2', 'v1', 'zz'], { keepTags: true }),
        ).rejects.toMatchObject({ name: 'TagExistsError', tag: 'v1', digest: first.digest });

        // No record, no referrer entry, no tag: neither the new tags nor the conflicting one.
        expect(await store().getManifest(repository, second.digest)).toBeUndefined();
        expect(await store().listReferrers(repository, subject)).toEqual([]);
        expect((await collect(store().manifests(repository))).map((record) => record.digest)).toEqual([
          first.digest,
        ]);
        for (const tag of ['new', 'v2', 'zz']) expect(await store().getTag(repository, tag)).toBeUndefined();
        expect(await collect(store().tagRecords(repository))).toEqual(tagsBefore);
        expect(await allTags(repository, 10)).toEqual(['latest', 'v1']);

        // The same put without the conflicting tag goes through.
        await store().putManifest(repository, second, ['new', 'v2', 'zz'], { keepTags: true });
        expect(await allTags(repository, 10)).toEqual(['latest', 'new', 'v1', 'v2', 'zz']);
        expect((await store().listReferrers(repository, subject)).map(withoutContent)).toEqual([second]);
      });
    });
  });
}
