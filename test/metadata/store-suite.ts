/**
 * The one conformance suite for MetadataStore implementations. It tests only the interface's contract,
 * and it may run against a shared store (a real DynamoDB table): every test works in repositories
 * under its own random prefix, and catalog assertions only look at the test's own names.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManifestRecord, MetadataStore, Page, UploadSession } from '../../functions/metadata/store.js';

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
  });
}
