import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  DeleteTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  GetItemCommand,
} from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createTable,
  DynamoDbMetadataStore,
  INLINE_CONTENT_LIMIT,
  ManifestRecordTooLargeError,
  TABLE_KEYS,
} from '../../functions/metadata/dynamodb.js';
import { TagExistsError, type ManifestRecord } from '../../functions/metadata/store.js';
import { startDynamoDbLocal, type DynamoDbLocal } from '../../bin/local/dynamodb-local.js';
import { describeMetadataStore, expiryPastWholeSecond, uploadSession, waitUntilPast } from './store-suite.js';

let local: DynamoDbLocal | undefined;

beforeAll(async () => {
  local = await startDynamoDbLocal();
});
afterAll(async () => {
  await local?.stop();
});

function dynamo(): DynamoDbLocal {
  if (local === undefined) throw new Error('DynamoDB Local is not running');
  return local;
}

/** A fresh table; `drop` deletes it. */
async function freshTable(): Promise<{ table: string; client: DynamoDBClient; drop: () => Promise<void> }> {
  const client = dynamo().client();
  const table = `metadata-${randomUUID()}`;
  await createTable(client, table);
  return {
    table,
    client,
    drop: async () => {
      await client.send(new DeleteTableCommand({ TableName: table }));
    },
  };
}

describeMetadataStore('DynamoDB (DynamoDB Local)', async () => {
  const { table, client, drop } = await freshTable();
  return { store: new DynamoDbMetadataStore({ table, client }), cleanup: drop };
});

const IMAGE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function digestOf(content: Uint8Array): string {
  return `sha256:${createHash('sha256').update(content).digest('hex')}`;
}

/** A manifest record with `bytes` of content (JSON-ish filler), digest computed from it. */
function manifestWithContent(bytes: number, fields: Partial<ManifestRecord> = {}): ManifestRecord {
  const content = new Uint8Array(bytes);
  content.set(randomBytes(Math.min(bytes, 32)));
  return { digest: digestOf(content), mediaType: IMAGE_MANIFEST, size: bytes, content, ...fields };
}

/** Counts the DynamoDB requests a client sends, by command name. */
function countCalls(client: DynamoDBClient): { total(): number; names: string[]; reset(): void } {
  const names: string[] = [];
  client.middlewareStack.add(
    (next, context) => (args) => {
      names.push(context.commandName ?? 'unknown');
      return next(args);
    },
    { step: 'initialize' },
  );
  return {
    total: () => names.length,
    names,
    reset: () => {
      names.length = 0;
    },
  };
}

describe('DynamoDB metadata store', () => {
  const drops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    await Promise.all(drops.splice(0).map((drop) => drop()));
  });

  /** Two stores over one fresh table with separate clients: two Lambda containers. */
  async function twoInstances() {
    const { table, client, drop } = await freshTable();
    drops.push(drop);
    const otherClient = dynamo().client();
    return {
      table,
      client,
      otherClient,
      a: new DynamoDbMetadataStore({ table, client }),
      b: new DynamoDbMetadataStore({ table, client: otherClient }),
    };
  }

  describe('createTable', () => {
    it('creates the documented schema: pk/sk strings, on-demand, TTL on ttl, no indexes', async () => {
      const { table, client } = await twoInstances();
      const { Table: description } = await client.send(new DescribeTableCommand({ TableName: table }));
      expect(TABLE_KEYS).toEqual({ partitionKey: 'pk', sortKey: 'sk', ttl: 'ttl' });
      expect(description?.KeySchema).toEqual([
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ]);
      expect(description?.AttributeDefinitions).toEqual(
        expect.arrayContaining([
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ]),
      );
      expect(description?.AttributeDefinitions).toHaveLength(2);
      expect(description?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
      expect(description?.GlobalSecondaryIndexes ?? []).toEqual([]);
      expect(description?.LocalSecondaryIndexes ?? []).toEqual([]);
      const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: table }));
      expect(ttl.TimeToLiveDescription).toEqual({ AttributeName: 'ttl', TimeToLiveStatus: 'ENABLED' });

      // Creating it again (a restarted local emulation) is harmless.
      await createTable(client, table);
    });
  });

  describe('across instances (Lambda containers)', () => {
    it('lets exactly one of two concurrent upload updates with the same expected offset win', async () => {
      const { a, b } = await twoInstances();
      const repository = 'race/upload';
      for (let round = 0; round < 20; round++) {
        const session = uploadSession(repository, { offset: 100 });
        await a.createUpload(session);
        const left = { ...session, offset: 150, sha256: 'c'.repeat(64) };
        const right = { ...session, offset: 250, sha256: 'd'.repeat(64) };
        const results = await Promise.all([a.updateUpload(left, 100), b.updateUpload(right, 100)]);
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = results[0] ? left : right;
        expect(await a.getUpload(repository, session.id)).toEqual(winner);
        expect(await b.getUpload(repository, session.id)).toEqual(winner);
        // The loser's expectation is stale now; the winner's offset is the one to continue from.
        expect(await b.updateUpload({ ...session, offset: 999 }, 100)).toBe(false);
        expect(await b.updateUpload({ ...winner, offset: 300 }, winner.offset)).toBe(true);
      }
    });

    it('leaves a tag raced by two instances on one of the two manifests, both of them stored', async () => {
      const { a, b } = await twoInstances();
      const repository = 'race/tag';
      for (let round = 0; round < 10; round++) {
        const first = manifestWithContent(500);
        const second = manifestWithContent(600);
        await Promise.all([
          a.putManifest(repository, first, ['latest', `first-${round}`]),
          b.putManifest(repository, second, ['latest', `second-${round}`]),
        ]);
        const tagged = await a.getTag(repository, 'latest');
        expect([first.digest, second.digest]).toContain(tagged?.digest);
        const winner = tagged?.digest === first.digest ? first : second;
        expect(tagged).toEqual(winner);
        expect(await b.getManifest(repository, first.digest)).toEqual(first);
        expect(await b.getManifest(repository, second.digest)).toEqual(second);
        expect(await a.getTag(repository, `first-${round}`)).toEqual(first);
        expect(await a.getTag(repository, `second-${round}`)).toEqual(second);
      }
    });

    it('with keepTags lets exactly one of two instances create the same new tag', async () => {
      const { a, b } = await twoInstances();
      const repository = 'race/keep';
      for (let round = 0; round < 10; round++) {
        const first = manifestWithContent(500);
        const second = manifestWithContent(600);
        const tag = `release-${round}`;
        const [left, right] = await Promise.allSettled([
          a.putManifest(repository, first, [tag], { keepTags: true }),
          b.putManifest(repository, second, [tag], { keepTags: true }),
        ]);
        expect([left.status, right.status].sort()).toEqual(['fulfilled', 'rejected']);
        const winner = left.status === 'fulfilled' ? first : second;
        const loser = winner === first ? second : first;
        const refusal: unknown =
          left.status === 'rejected' ? left.reason : (right as PromiseRejectedResult).reason;
        expect(refusal).toBeInstanceOf(TagExistsError);
        expect(refusal).toMatchObject({ tag, digest: winner.digest });
        expect((await a.getTag(repository, tag))?.digest).toBe(winner.digest);
        expect(await b.getManifest(repository, loser.digest)).toBeUndefined();
      }
    });

    it('with keepTags puts again when the refused tag is gone by the time it is read', async () => {
      const { a, b, client } = await twoInstances();
      const calls = countCalls(client);
      const repository = 'race/keep-deleted';
      const first = manifestWithContent(300);
      const second = manifestWithContent(400);
      await b.putManifest(repository, first, ['v1']);
      // The transaction is refused on v1; before the refused tag is read, another instance deletes it.
      let injected = false;
      client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'GetItemCommand' && !injected) {
            injected = true;
            expect(await b.deleteTag(repository, 'v1', first.digest)).toBe(true);
          }
          return next(args);
        },
        { step: 'initialize' },
      );
      calls.reset();
      await a.putManifest(repository, second, ['v1', 'v2'], { keepTags: true });
      expect(injected).toBe(true);
      expect(calls.names.filter((name) => name === 'TransactWriteItemsCommand')).toHaveLength(2);
      expect((await b.getTag(repository, 'v1'))?.digest).toBe(second.digest);
      expect((await b.getTag(repository, 'v2'))?.digest).toBe(second.digest);
    });

    it('deletes a tag added by another instance while a delete was running', async () => {
      const { a, b, client } = await twoInstances();
      const repository = 'race/delete';
      const doomed = manifestWithContent(300);
      await a.putManifest(repository, doomed, ['v1']);
      // Right before the delete's transaction, the other instance tags the manifest again.
      let injected = false;
      client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'TransactWriteItemsCommand' && !injected) {
            injected = true;
            await b.putManifest(repository, doomed, ['v2']);
          }
          return next(args);
        },
        { step: 'initialize' },
      );
      // The retry found the new tag too, and reports both.
      expect(await a.deleteManifest(repository, doomed.digest)).toEqual(['v1', 'v2']);
      expect(injected).toBe(true);
      expect(await b.getTag(repository, 'v1')).toBeUndefined();
      expect(await b.getTag(repository, 'v2')).toBeUndefined();
      expect(await b.getManifest(repository, doomed.digest)).toBeUndefined();
      expect(await b.listTags(repository, { limit: 10 })).toEqual({ items: [], more: false });
    });

    it('keeps a tag moved to another manifest while a delete was running', async () => {
      const { a, b, client } = await twoInstances();
      const repository = 'race/retag';
      const doomed = manifestWithContent(300);
      const other = manifestWithContent(400);
      await a.putManifest(repository, doomed, ['latest', 'old']);
      let injected = false;
      client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'TransactWriteItemsCommand' && !injected) {
            injected = true;
            await b.putManifest(repository, other, ['latest']);
          }
          return next(args);
        },
        { step: 'initialize' },
      );
      // The moved tag is no longer the deleted manifest's.
      expect(await a.deleteManifest(repository, doomed.digest)).toEqual(['old']);
      expect(injected).toBe(true);
      expect(await b.getTag(repository, 'latest')).toEqual(other);
      expect(await b.getTag(repository, 'old')).toBeUndefined();
      expect(await b.getManifest(repository, doomed.digest)).toBeUndefined();
    });

    it('reports the deletion to exactly one of two concurrent deletes of a manifest', async () => {
      const { a, b } = await twoInstances();
      const record = manifestWithContent(100);
      await a.putManifest('race/double-delete', record, ['x', 'y']);
      const results = await Promise.all([
        a.deleteManifest('race/double-delete', record.digest),
        b.deleteManifest('race/double-delete', record.digest),
      ]);
      expect(results.filter((tags) => tags !== undefined)).toEqual([['x', 'y']]);
      expect(await a.listTags('race/double-delete', { limit: 10 })).toEqual({ items: [], more: false });
    });
  });

  describe('inline manifests and request counts', () => {
    it('serves a tag with its inline content in one GetItem, and a digest in one more', async () => {
      const { a, client } = await twoInstances();
      const calls = countCalls(client);
      const record = manifestWithContent(2_000, { annotations: { '': 'empty key', 'org.example': 'x' } });
      await a.putManifest('pull/app', record, ['latest']);

      calls.reset();
      const tagged = await a.getTag('pull/app', 'latest');
      expect(calls.names).toEqual(['GetItemCommand']);
      expect(tagged).toEqual(record);
      expect(tagged?.content).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(tagged?.content ?? []).equals(Buffer.from(record.content ?? []))).toBe(true);

      calls.reset();
      expect(await a.getManifest('pull/app', record.digest)).toEqual(record);
      expect(calls.total()).toBe(1);
    });

    it('inlines content up to the limit, and stores larger manifests without it', async () => {
      const { a } = await twoInstances();
      const atLimit = manifestWithContent(INLINE_CONTENT_LIMIT);
      const large = manifestWithContent(INLINE_CONTENT_LIMIT + 1, { annotations: { a: 'b' } });
      await a.putManifest('large/app', atLimit, ['small']);
      await a.putManifest('large/app', large, ['large']);
      expect((await a.getTag('large/app', 'small'))?.content?.byteLength).toBe(INLINE_CONTENT_LIMIT);
      const withoutContent = { ...large };
      delete withoutContent.content;
      expect(await a.getTag('large/app', 'large')).toEqual(withoutContent);
      expect(await a.getManifest('large/app', large.digest)).toEqual(withoutContent);
    });

    it('keeps the content in the record but not in tag copies when many tags would overflow a transaction', async () => {
      const { a, client } = await twoInstances();
      const calls = countCalls(client);
      const record = manifestWithContent(INLINE_CONTENT_LIMIT);
      const tags = Array.from({ length: 70 }, (_, n) => `v${n}`);
      await a.putManifest('copies/app', record, tags);
      expect(await a.getManifest('copies/app', record.digest)).toEqual(record);
      calls.reset();
      const withoutContent = { ...record };
      delete withoutContent.content;
      expect(await a.getTag('copies/app', 'v69')).toEqual(withoutContent);
      expect(calls.total()).toBe(1);
    });

    it('costs one request per push step once the repository is known to the instance', async () => {
      const { a, b, client } = await twoInstances();
      const calls = countCalls(client);
      const layer = { digest: digestOf(randomBytes(8)), size: 8 };

      // The first write to a repository puts its catalog entry (once per instance).
      await a.linkBlob('push/app', layer);
      expect(calls.names).toEqual(['PutItemCommand', 'PutItemCommand']);

      calls.reset();
      await a.linkBlob('push/app', { digest: digestOf(randomBytes(8)), size: 8 });
      expect(calls.names).toEqual(['PutItemCommand']);

      calls.reset();
      await a.putManifest('push/app', manifestWithContent(700), ['v1']);
      expect(calls.names).toEqual(['TransactWriteItemsCommand']);

      // An upload PATCH: read the session, compare-and-set it.
      const session = uploadSession('push/app');
      await a.createUpload(session);
      calls.reset();
      const current = await a.getUpload('push/app', session.id);
      expect(await a.updateUpload({ ...session, offset: 10 }, current?.offset ?? -1)).toBe(true);
      expect(calls.names).toEqual(['GetItemCommand', 'PutItemCommand']);

      // Another instance registering the same repository finds the entry there: one catalog name.
      await b.linkBlob('push/app', layer);
      expect(await a.listRepositories({ limit: 10 })).toEqual({ items: ['push/app'], more: false });
    });

    it('follows DynamoDB pages when tag items with inline copies exceed 1 MB', async () => {
      const { a, client } = await twoInstances();
      const calls = countCalls(client);
      const record = manifestWithContent(60 * 1024);
      const tags = Array.from({ length: 40 }, (_, n) => `t${String(n).padStart(2, '0')}`);
      await a.putManifest('paged/app', record, tags);
      expect((await a.getTag('paged/app', 't39'))?.content?.byteLength).toBe(60 * 1024);

      calls.reset();
      expect(await a.listTags('paged/app', { limit: 100 })).toEqual({ items: tags, more: false });
      expect(calls.total()).toBeGreaterThan(1);
      expect(await a.listTags('paged/app', { limit: 30 })).toEqual({ items: tags.slice(0, 30), more: true });
      expect(await a.listTags('paged/app', { last: 't29', limit: 30 })).toEqual({
        items: tags.slice(30),
        more: false,
      });
    });
  });

  describe('scans', () => {
    it('follows DynamoDB pages in every scan once items exceed 1 MB', async () => {
      const { a, client } = await twoInstances();
      const calls = countCalls(client);
      const pushedAt = new Date().toISOString();
      // 20 inline manifests of 60 KB, each tagged (a full copy): some 2.4 MB in one partition.
      const records = Array.from({ length: 20 }, () => manifestWithContent(60 * 1024, { pushedAt }));
      const tags = records.map((_, n) => `t${String(n).padStart(2, '0')}`);
      for (const [n, record] of records.entries()) await a.putManifest('scan/app', record, [tags[n] ?? '']);
      const links = Array.from({ length: 5 }, (_, n) => ({ digest: digestOf(randomBytes(8)), size: n }));
      for (const link of links) await a.linkBlob('scan/app', link);
      const sessions = [uploadSession('scan/app'), uploadSession('scan/other/app')];
      for (const session of sessions) await a.createUpload(session);

      const collect = async <T>(iterable: AsyncIterable<T>): Promise<T[]> => {
        const items: T[] = [];
        for await (const item of iterable) items.push(item);
        return items;
      };
      const byDigest = (x: { digest: string }, y: { digest: string }) => (x.digest < y.digest ? -1 : 1);

      calls.reset();
      const manifests = await collect(a.manifests('scan/app'));
      expect(calls.total()).toBeGreaterThan(1);
      // Deep equality of typed arrays is slow: the bytes are compared as buffers.
      const sorted = [...records].sort(byDigest);
      expect(manifests.map(({ content: _, ...rest }) => rest)).toEqual(
        sorted.map(({ content: _, ...rest }) => rest),
      );
      manifests.forEach((record, n) => {
        expect(Buffer.from(record.content ?? []).equals(Buffer.from(sorted[n]?.content ?? [0]))).toBe(true);
      });

      calls.reset();
      const tagRecords = await collect(a.tagRecords('scan/app'));
      expect(calls.total()).toBeGreaterThan(1);
      expect(tagRecords.map(({ tag, digest }) => ({ tag, digest }))).toEqual(
        records.map((record, n) => ({ tag: tags[n], digest: record.digest })),
      );
      expect(tagRecords.every((record) => typeof record.taggedAt === 'string')).toBe(true);

      expect(await collect(a.blobLinks('scan/app'))).toEqual([...links].sort(byDigest));

      calls.reset();
      const uploads = await collect(a.uploads());
      expect(calls.total()).toBeGreaterThan(1);
      const byId = (x: { id: string }, y: { id: string }) => (x.id < y.id ? -1 : 1);
      expect(uploads.sort(byId)).toEqual([...sessions].sort(byId));
    });
  });

  describe('limits', () => {
    it('deletes a manifest with more tags than one transaction holds', async () => {
      const { a } = await twoInstances();
      const record = manifestWithContent(100, { subject: digestOf(randomBytes(4)) });
      const tags = Array.from({ length: 230 }, (_, n) => `v${n}`);
      for (let start = 0; start < tags.length; start += 90) {
        await a.putManifest('many/app', record, tags.slice(start, start + 90));
      }
      expect((await a.listTags('many/app', { limit: 1000 }))?.items).toHaveLength(230);
      expect(await a.deleteManifest('many/app', record.digest)).toEqual([...tags].sort());
      expect(await a.listTags('many/app', { limit: 1000 })).toEqual({ items: [], more: false });
      expect(await a.listReferrers('many/app', record.subject ?? '')).toEqual([]);
    });

    it('refuses, writing nothing, more tags than a transaction holds or a record too large for an item', async () => {
      const { a } = await twoInstances();
      const tooMany = Array.from({ length: 100 }, (_, n) => `v${n}`);
      await expect(a.putManifest('limits/app', manifestWithContent(10), tooMany)).rejects.toThrow(RangeError);
      const huge = manifestWithContent(10, { annotations: { big: 'x'.repeat(500 * 1024) } });
      await expect(a.putManifest('limits/app', huge, ['latest'])).rejects.toThrow(
        ManifestRecordTooLargeError,
      );
      expect(await a.getManifest('limits/app', huge.digest)).toBeUndefined();
      expect(await a.getTag('limits/app', 'latest')).toBeUndefined();
    });
  });

  describe('fromConfig', () => {
    afterEach(() => {
      vi.unstubAllEnvs();
    });

    it('builds its own client for an endpoint, taking the region from AWS_REGION', async () => {
      const { table, client } = await twoInstances();
      // DynamoDB Local keeps one database per access key and region: these match dynamo().client().
      vi.stubEnv('AWS_REGION', 'us-east-1');
      vi.stubEnv('AWS_ACCESS_KEY_ID', 'local');
      vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'local');
      const store = DynamoDbMetadataStore.fromConfig({ table, endpoint: dynamo().endpoint });
      const link = { digest: digestOf(randomBytes(8)), size: 8 };
      await store.linkBlob('config/app', link);
      expect(
        await new DynamoDbMetadataStore({ table, client }).getBlobLink('config/app', link.digest),
      ).toEqual(link);
    });
  });

  describe('expiry', () => {
    it('hides an expired session that DynamoDB still holds, and refuses to update it', async () => {
      const { a, table, client } = await twoInstances();
      // DynamoDB Local's TTL job deletes expired items within moments: look while ttl is not yet past.
      const expiresAt = new Date(expiryPastWholeSecond());
      const session = uploadSession('expiry/app', { expiresAt: expiresAt.toISOString() });
      await a.createUpload(session);
      await waitUntilPast(expiresAt.getTime());
      const raw = await client.send(
        new GetItemCommand({
          TableName: table,
          Key: { pk: { S: 'repo#expiry/app' }, sk: { S: `upload#${session.id}` } },
          ConsistentRead: true,
        }),
      );
      expect(raw.Item?.ttl).toEqual({ N: String(Math.ceil(expiresAt.getTime() / 1000)) });
      expect(await a.getUpload('expiry/app', session.id)).toBeUndefined();
      expect(await a.updateUpload({ ...session, offset: 5 }, 0)).toBe(false);
    });

    it('refuses an update once the stored session expired, even with the right offset', async () => {
      const { a } = await twoInstances();
      const session = uploadSession('expiry/cas', { expiresAt: new Date(Date.now() + 300).toISOString() });
      await a.createUpload(session);
      await new Promise((resolve) => setTimeout(resolve, 400));
      const renewed = { ...session, offset: 10, expiresAt: new Date(Date.now() + 60_000).toISOString() };
      expect(await a.updateUpload(renewed, 0)).toBe(false);
    });
  });
});
