/**
 * A MetadataStore in one DynamoDB table, for the AWS deployment (Lambda + S3 + DynamoDB).
 *
 * Table (fixed: the CDK stack creates exactly this, see TABLE_KEYS and createTable): partition key
 * `pk` (S), sort key `sk` (S), TTL attribute `ttl` (N, epoch seconds), on-demand billing, no indexes.
 *
 * Items. Repository names, digests and tags never contain `#` (their grammars exclude it), so `#`
 * separates key parts unambiguously.
 *
 *   pk = "catalog"     sk = <name>                          createdAt: the repository exists
 *   pk = "repo#<name>" sk = "blob#<digest>"                 digest, size: a linked blob
 *                      sk = "manifest#<digest>"             the record: digest, mediaType, size, subject?,
 *                                                           artifactType?, annotations? (JSON text, so any
 *                                                           key is kept), pushedAt?, content? (B), rev (N)
 *                      sk = "tag#<tag>"                     tag, taggedAt (ISO time of the put that wrote
 *                                                           it), and a copy of the record it points at
 *                      sk = "referrer#<subject>#<digest>"   a copy of the record (without content)
 *                      sk = "upload#<id>"                   the session (hashState included when given);
 *                                                           expiresMs (N) and ttl (N, seconds)
 *
 * Access patterns, each one request (a Query may follow LastEvaluatedKey past DynamoDB's 1 MB page):
 *   blob link, manifest by digest, manifest by tag, session     GetItem on the item
 *   tags of a repository in order                               Query pk, sk between tag# bounds
 *   referrers of a subject in digest order                      Query pk, begins_with(sk, referrer#<subject>#)
 *   catalog in order                                            Query pk = catalog, sk > last
 *   manifests, tags, blob links of a repository (scans)         Query pk, begins_with(sk, manifest#), tag#
 *                                                               or blob#, page after page
 *   every upload session (a scan for garbage collection)        Scan, filter begins_with(sk, upload#)
 *
 * Manifest content. A record's `content` (the manifest bytes) is kept inline when it is at most
 * INLINE_CONTENT_LIMIT bytes; the registry core then serves a pull without reading blob storage. A tag
 * item carries a full copy of its record, content included, so a pull by tag is ONE GetItem. Records
 * are content-addressed, so a copy never goes stale (but for pushedAt: a copy keeps the time of the
 * put that wrote it); deleteManifest removes the copies with the record. The price: tag items are
 * bigger, which a tag listing pays in read units (a pull is far more frequent than a listing).
 * Manifests above the limit are stored without content (the core reads them from storage), and tag
 * copies drop the content when many tags would overflow a transaction.
 *
 * Conditions and transactions:
 *   putManifest      TransactWriteItems: record (Update, `rev` + 1) + referrer copy + every tag, all or none;
 *                    with keepTags each tag Put holds only if the tag is new or names the digest already
 *   deleteManifest   TransactWriteItems: each tag (if it still names the digest) + referrer + record (if
 *                    `rev` is unchanged since the tags were listed, so no tag was added meanwhile); a
 *                    failed condition means a concurrent put or retag, and the delete starts over
 *   updateUpload     PutItem if offset = expected and the session has not expired (compare-and-set)
 *   catalog entry    PutItem if attribute_not_exists, once per repository and store instance (a
 *                    Lambda container): later pushes to a repository known to the instance skip it
 *   deleteTag        with a digest, DeleteItem if the tag still names it
 * Single-item writes need no transaction: linkBlob, unlinkBlob, deleteTag, createUpload, deleteUpload.
 *
 * Reads are strongly consistent: a manifest put right after its blobs were linked must find them,
 * and a pull right after a push must see it.
 *
 * Expiry: DynamoDB deletes items past their `ttl` late (AWS: within days; DynamoDB Local: within
 * seconds), so expired sessions are filtered on every read and refused by updateUpload's condition.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  TransactWriteCommand,
  type DeleteCommandInput,
  type QueryCommandInput,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import {
  blobKey,
  cancellationCodes,
  descriptorAttributes,
  errorName,
  estimateBytes,
  isConditionFailure,
  key,
  manifestKey,
  number,
  prefixEnd,
  recordFrom,
  referrerKey,
  repositoryKey,
  retryConflicts,
  sessionFrom,
  tagKey,
  tagRecordFrom,
  text,
  uploadItem,
  uploadKey,
  type Item,
} from './dynamodb-table.js';
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

// The table's schema and its creation live beside the item codec; importers find them here too.
export { createTable, TABLE_KEYS } from './dynamodb-table.js';

/** Manifests of at most this many bytes are kept inline in their record (and tag copies). */
export const INLINE_CONTENT_LIMIT = 64 * 1024;

/** DynamoDB's limit on the actions of one TransactWriteItems. */
const MAX_TRANSACTION_ITEMS = 100;
/** Budgets below DynamoDB's limits (400 KB per item, 4 MB per transaction), leaving room for keys and names. */
const ITEM_BUDGET = 380 * 1024;
const TRANSACTION_BUDGET = 3_900 * 1024;

/** How often deleteManifest starts over when a concurrent put or retag changed what it was deleting. */
const DELETE_ATTEMPTS = 8;
/** How often a keepTags put is tried again when a refused tag was since deleted or moved onto its digest. */
const KEEP_TAGS_ATTEMPTS = 8;
/** Repositories an instance remembers as registered in the catalog, before it starts afresh. */
const REGISTERED_CACHE_LIMIT = 10_000;

const CATALOG = 'catalog';

/** A record whose descriptor (annotations, mostly) cannot fit in a DynamoDB item. */
export class ManifestRecordTooLargeError extends Error {
  override name = 'ManifestRecordTooLargeError';
}

type TransactItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

export class DynamoDbMetadataStore implements MetadataStore {
  private readonly table: string;
  private readonly doc: DynamoDBDocumentClient;
  /** Repositories this instance has put in the catalog (or is putting): the catalog write happens once. */
  private readonly registered = new Map<string, Promise<void>>();

  constructor(options: { table: string; client: DynamoDBClient }) {
    this.table = options.table;
    this.doc = DynamoDBDocumentClient.from(options.client, {
      marshallOptions: { removeUndefinedValues: true },
    });
  }

  /** A store over a new client: `endpoint` for DynamoDB Local; the region defaults to AWS_REGION. */
  static fromConfig(config: {
    table: string;
    region?: string | undefined;
    endpoint?: string | undefined;
  }): DynamoDbMetadataStore {
    const client = new DynamoDBClient({
      region: config.region ?? process.env.AWS_REGION,
      ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
    });
    return new DynamoDbMetadataStore({ table: config.table, client });
  }

  // Blob links.

  /** 1 PutItem (+1 conditional PutItem for the catalog, the first time this instance sees the repository). */
  async linkBlob(repository: string, link: BlobLink): Promise<void> {
    await this.register(repository);
    await this.doc.send(
      new PutCommand({
        TableName: this.table,
        Item: {
          ...key(repositoryKey(repository), blobKey(link.digest)),
          digest: link.digest,
          size: link.size,
        },
      }),
    );
  }

  /** 1 GetItem. */
  async getBlobLink(repository: string, digest: string): Promise<BlobLink | undefined> {
    const item = await this.getItem(repositoryKey(repository), blobKey(digest));
    return item === undefined ? undefined : { digest: text(item.digest), size: number(item.size) };
  }

  /** 1 DeleteItem. */
  unlinkBlob(repository: string, digest: string): Promise<boolean> {
    return this.deleteItem(repositoryKey(repository), blobKey(digest));
  }

  // Manifests and tags.

  /**
   * 1 TransactWriteItems (+1 conditional PutItem for the catalog, the first time this instance sees the
   * repository): the record, its referrer copy and every tag, all or none, so no tag ever points at a
   * missing record. At most 98 tags (DynamoDB's 100 actions per transaction). The catalog entry goes
   * first, so a failed put can leave an empty repository listed, never a manifest in an unlisted one.
   *
   * With keepTags each tag Put is conditional on the tag being new or already naming the digest. A
   * refused condition cancels the whole transaction; the refused tags are then read (+1 GetItem each),
   * and one naming another digest is reported as TagExistsError. If none does any more (deleted or
   * moved onto this digest meanwhile), the transaction is tried again.
   */
  async putManifest(
    repository: string,
    manifest: ManifestRecord,
    tags: readonly string[],
    options?: PutManifestOptions,
  ): Promise<void> {
    const pk = repositoryKey(repository);
    const uniqueTags = [...new Set(tags)];
    const descriptor = descriptorAttributes(manifest);
    const descriptorBytes = estimateBytes(descriptor);
    if (descriptorBytes > ITEM_BUDGET) {
      throw new ManifestRecordTooLargeError(
        `the record of manifest ${manifest.digest} (about ${descriptorBytes} bytes, mostly annotations) ` +
          `does not fit in a DynamoDB item`,
      );
    }
    const fixedItems = manifest.subject === undefined ? 1 : 2;
    if (uniqueTags.length + fixedItems > MAX_TRANSACTION_ITEMS) {
      throw new RangeError(
        `at most ${MAX_TRANSACTION_ITEMS - fixedItems} tags can be put with one manifest, not ${uniqueTags.length}`,
      );
    }

    const content = manifest.content;
    const inline =
      content !== undefined &&
      content.byteLength <= INLINE_CONTENT_LIMIT &&
      descriptorBytes + content.byteLength <= ITEM_BUDGET;
    const contentBytes = inline ? content.byteLength : 0;
    const recordBytes = descriptorBytes + contentBytes;
    // Tags copy the content too, unless that would overflow the transaction: they then copy the rest.
    const fixedBytes = recordBytes + (fixedItems - 1) * descriptorBytes;
    const tagsCopyContent = inline && fixedBytes + uniqueTags.length * recordBytes <= TRANSACTION_BUDGET;
    if (fixedBytes + uniqueTags.length * descriptorBytes > TRANSACTION_BUDGET) {
      throw new ManifestRecordTooLargeError(
        `manifest ${manifest.digest} with ${uniqueTags.length} tags does not fit in one DynamoDB transaction`,
      );
    }

    const recordFields: Item = inline ? { ...descriptor, content } : descriptor;
    const names: Record<string, string> = { '#rev': 'rev' };
    const values: Record<string, unknown> = { ':one': 1 };
    const assignments = Object.entries(recordFields).map(([name, value]) => {
      names[`#${name}`] = name;
      values[`:${name}`] = value;
      return `#${name} = :${name}`;
    });
    const items: TransactItem[] = [
      {
        // An Update, not a Put: `rev` counts puts, so deleteManifest can tell a tag was added meanwhile.
        Update: {
          TableName: this.table,
          Key: key(pk, manifestKey(manifest.digest)),
          UpdateExpression: `SET ${assignments.join(', ')} ADD #rev :one`,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        },
      },
    ];
    if (manifest.subject !== undefined) {
      items.push({
        Put: {
          TableName: this.table,
          Item: { ...key(pk, referrerKey(manifest.subject, manifest.digest)), ...descriptor },
        },
      });
    }
    const tagFields = tagsCopyContent ? recordFields : descriptor;
    const taggedAt = new Date().toISOString();
    const keepTags = options?.keepTags === true;
    for (const tag of uniqueTags) {
      items.push({
        Put: {
          TableName: this.table,
          Item: { ...key(pk, tagKey(tag)), tag, ...tagFields, taggedAt },
          ...(keepTags
            ? {
                ConditionExpression: 'attribute_not_exists(#pk) OR #digest = :digest',
                ExpressionAttributeNames: { '#pk': 'pk', '#digest': 'digest' },
                ExpressionAttributeValues: { ':digest': manifest.digest },
              }
            : {}),
        },
      });
    }

    await this.register(repository);
    if (!keepTags) {
      await this.transact(items);
      return;
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await this.transact(items);
        return;
      } catch (error) {
        // Reasons come in the order of the actions: the tags follow the fixed items.
        const codes = cancellationCodes(error);
        const refused = uniqueTags.filter(
          (_, index) => codes[fixedItems + index] === 'ConditionalCheckFailed',
        );
        if (refused.length === 0 || attempt >= KEEP_TAGS_ATTEMPTS) throw error;
        for (const tag of refused) {
          const item = await this.getItem(pk, tagKey(tag));
          if (item !== undefined && text(item.digest) !== manifest.digest) {
            throw new TagExistsError(tag, text(item.digest));
          }
        }
      }
    }
  }

  /** 1 GetItem. */
  async getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    const item = await this.getItem(repositoryKey(repository), manifestKey(digest));
    return item === undefined ? undefined : recordFrom(item);
  }

  /** 1 GetItem: the tag item carries a copy of the record (with the content when it is inline). */
  async getTag(repository: string, tag: string): Promise<ManifestRecord | undefined> {
    const item = await this.getItem(repositoryKey(repository), tagKey(tag));
    return item === undefined ? undefined : recordFrom(item);
  }

  /**
   * 3 calls: GetItem of the record, Query of the repository's tags (filtered by digest; one per 1 MB
   * of tag items), TransactWriteItems deleting the tags still naming the digest, the referrer copy and
   * the record if its `rev` is unchanged. More than 98 tags take several transactions, tags first, the
   * record last, so a failure part-way leaves a record with fewer tags, never a dangling tag. A
   * concurrent put of the manifest (a new tag) or retag makes a condition fail, and the delete starts
   * over from the current state.
   */
  async deleteManifest(repository: string, digest: string): Promise<string[] | undefined> {
    const pk = repositoryKey(repository);
    for (let attempt = 1; ; attempt++) {
      const record = await this.getItem(pk, manifestKey(digest));
      if (record === undefined) return undefined;
      const tagKeys = await this.queryAll({
        KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :prefix)',
        FilterExpression: '#digest = :digest',
        ProjectionExpression: '#sk',
        ExpressionAttributeNames: { '#pk': 'pk', '#sk': 'sk', '#digest': 'digest' },
        ExpressionAttributeValues: { ':pk': pk, ':prefix': 'tag#', ':digest': digest },
      });
      const tagDeletes: TransactItem[] = tagKeys.map((item) => ({
        Delete: {
          TableName: this.table,
          Key: key(pk, text(item.sk)),
          ConditionExpression: '#digest = :digest',
          ExpressionAttributeNames: { '#digest': 'digest' },
          ExpressionAttributeValues: { ':digest': digest },
        },
      }));
      const last: TransactItem[] = [];
      if (typeof record.subject === 'string') {
        last.push({ Delete: { TableName: this.table, Key: key(pk, referrerKey(record.subject, digest)) } });
      }
      last.push({
        Delete: {
          TableName: this.table,
          Key: key(pk, manifestKey(digest)),
          ConditionExpression: '#rev = :rev',
          ExpressionAttributeNames: { '#rev': 'rev' },
          ExpressionAttributeValues: { ':rev': record.rev },
        },
      });
      try {
        let rest = tagDeletes;
        while (rest.length + last.length > MAX_TRANSACTION_ITEMS) {
          await this.transact(rest.slice(0, MAX_TRANSACTION_ITEMS));
          rest = rest.slice(MAX_TRANSACTION_ITEMS);
        }
        await this.transact([...rest, ...last]);
        // The query returns them in key order, which is the tags' code point order.
        return tagKeys.map((item) => text(item.sk).slice(tagKey('').length));
      } catch (error) {
        if (!isConditionFailure(error) || attempt >= DELETE_ATTEMPTS) throw error;
      }
    }
  }

  /** 1 DeleteItem; with digest, conditional on the tag still naming it (a refused condition is false). */
  async deleteTag(repository: string, tag: string, digest?: string): Promise<boolean> {
    if (digest === undefined) return this.deleteItem(repositoryKey(repository), tagKey(tag));
    try {
      return await this.deleteItem(repositoryKey(repository), tagKey(tag), {
        ConditionExpression: '#digest = :digest',
        ExpressionAttributeNames: { '#digest': 'digest' },
        ExpressionAttributeValues: { ':digest': digest },
      });
    } catch (error) {
      if (errorName(error) === 'ConditionalCheckFailedException') return false;
      throw error;
    }
  }

  /**
   * 1 Query (one more per 1 MB of tag items, which carry record copies), asking for limit + 1 tags to
   * know whether more follow; +1 GetItem of the catalog entry when the page is empty, to tell an
   * unknown repository from one without tags.
   */
  async listTags(repository: string, page: PageRequest): Promise<Page<string> | undefined> {
    const pk = repositoryKey(repository);
    const prefix = 'tag#';
    const range =
      page.last === undefined
        ? { condition: 'begins_with(#sk, :from)', values: { ':from': prefix } }
        : {
            // Strictly after `last`: "\0" makes the lowest string above it, and "tag$" bounds the tag# keys.
            condition: '#sk BETWEEN :from AND :to',
            values: { ':from': `${prefix}${page.last}\u0000`, ':to': prefixEnd(prefix) },
          };
    const items = await this.queryAll(
      {
        KeyConditionExpression: `#pk = :pk AND ${range.condition}`,
        ProjectionExpression: '#sk',
        ExpressionAttributeNames: { '#pk': 'pk', '#sk': 'sk' },
        ExpressionAttributeValues: { ':pk': pk, ...range.values },
      },
      page.limit + 1,
    );
    if (items.length === 0 && (await this.getItem(CATALOG, repository)) === undefined) return undefined;
    const tags = items.map((item) => text(item.sk).slice(prefix.length));
    return { items: tags.slice(0, page.limit), more: tags.length > page.limit };
  }

  /** 1 Query (one more per 1 MB of referrer copies). */
  async listReferrers(repository: string, subject: string): Promise<ManifestRecord[]> {
    const items = await this.queryAll({
      KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :prefix)',
      ExpressionAttributeNames: { '#pk': 'pk', '#sk': 'sk' },
      ExpressionAttributeValues: { ':pk': repositoryKey(repository), ':prefix': `referrer#${subject}#` },
    });
    // The sort key ends with the digest: DynamoDB returns them in digest (byte = code point) order.
    return items.map(recordFrom);
  }

  // Scans.

  /** 1 Query per 1 MB of records (inline content included). */
  async *manifests(repository: string): AsyncIterable<ManifestRecord> {
    for await (const item of this.queryPrefix(repository, 'manifest#')) yield recordFrom(item);
  }

  /** 1 Query per 1 MB of tag items (which carry record copies: DynamoDB reads them whole). */
  async *tagRecords(repository: string): AsyncIterable<TagRecord> {
    for await (const item of this.queryPrefix(repository, 'tag#', ['sk', 'digest', 'taggedAt'])) {
      yield tagRecordFrom(item);
    }
  }

  /** 1 Query per 1 MB of links. */
  async *blobLinks(repository: string): AsyncIterable<BlobLink> {
    for await (const item of this.queryPrefix(repository, 'blob#', ['digest', 'size'])) {
      yield { digest: text(item.digest), size: number(item.size) };
    }
  }

  /** The items of a repository whose sort key starts with prefix, in sort key order, page after page. */
  private async *queryPrefix(
    repository: string,
    prefix: string,
    attributes?: readonly string[],
  ): AsyncGenerator<Item> {
    const names: Record<string, string> = { '#pk': 'pk', '#sk': 'sk' };
    for (const attribute of attributes ?? []) names[`#${attribute}`] = attribute;
    let start: Item | undefined;
    do {
      const result = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          ConsistentRead: true,
          KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :prefix)',
          ...(attributes === undefined
            ? {}
            : { ProjectionExpression: attributes.map((attribute) => `#${attribute}`).join(', ') }),
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: { ':pk': repositoryKey(repository), ':prefix': prefix },
          ...(start === undefined ? {} : { ExclusiveStartKey: start }),
        }),
      );
      const page: Item[] = result.Items ?? [];
      yield* page;
      start = result.LastEvaluatedKey;
    } while (start !== undefined);
  }

  // Catalog.

  /** 1 Query of the catalog partition (one more per 1 MB), asking for limit + 1 names. */
  async listRepositories(page: PageRequest): Promise<Page<string>> {
    const after = page.last !== undefined;
    const items = await this.queryAll(
      {
        KeyConditionExpression: after ? '#pk = :pk AND #sk > :last' : '#pk = :pk',
        ProjectionExpression: '#sk',
        ExpressionAttributeNames: { '#pk': 'pk', '#sk': 'sk' },
        ExpressionAttributeValues: after ? { ':pk': CATALOG, ':last': page.last } : { ':pk': CATALOG },
      },
      page.limit + 1,
    );
    const names = items.map((item) => text(item.sk));
    return { items: names.slice(0, page.limit), more: names.length > page.limit };
  }

  /**
   * Puts the repository in the catalog once per instance: a conditional PutItem that fails harmlessly
   * when another instance did it first. Concurrent callers in this instance share the one request.
   */
  private register(repository: string): Promise<void> {
    const known = this.registered.get(repository);
    if (known !== undefined) return known;
    if (this.registered.size >= REGISTERED_CACHE_LIMIT) this.registered.clear();
    const pending = this.putCatalogEntry(repository);
    this.registered.set(repository, pending);
    // A failed registration is tried again by the next write.
    void pending.catch(() => this.registered.delete(repository));
    return pending;
  }

  private async putCatalogEntry(repository: string): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...key(CATALOG, repository), createdAt: new Date().toISOString() },
          ConditionExpression: 'attribute_not_exists(#pk)',
          ExpressionAttributeNames: { '#pk': 'pk' },
        }),
      );
    } catch (error) {
      if (errorName(error) !== 'ConditionalCheckFailedException') throw error;
    }
  }

  // Upload sessions.

  /** 1 PutItem. */
  async createUpload(session: UploadSession): Promise<void> {
    await this.doc.send(new PutCommand({ TableName: this.table, Item: uploadItem(session) }));
  }

  /** 1 GetItem; an expired session reads as unknown even while DynamoDB still holds it. */
  async getUpload(repository: string, id: string): Promise<UploadSession | undefined> {
    const item = await this.getItem(repositoryKey(repository), uploadKey(id));
    if (item === undefined || number(item.expiresMs) < Date.now()) return undefined;
    return sessionFrom(item);
  }

  /** 1 conditional PutItem: a true compare-and-set, across every instance sharing the table. */
  async updateUpload(session: UploadSession, expectedOffset: number): Promise<boolean> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: uploadItem(session),
          ConditionExpression: '#offset = :expected AND #expiresMs >= :now',
          ExpressionAttributeNames: { '#offset': 'offset', '#expiresMs': 'expiresMs' },
          ExpressionAttributeValues: { ':expected': expectedOffset, ':now': Date.now() },
        }),
      );
      return true;
    } catch (error) {
      if (errorName(error) === 'ConditionalCheckFailedException') return false;
      throw error;
    }
  }

  /** 1 DeleteItem. */
  async deleteUpload(repository: string, id: string): Promise<void> {
    await this.deleteItem(repositoryKey(repository), uploadKey(id));
  }

  /**
   * A Scan of the whole table filtered on the upload# sort keys, 1 request per 1 MB of the table read:
   * for garbage collection, never for a request. Expired sessions included (TTL deletes them late).
   */
  async *uploads(): AsyncIterable<UploadSession> {
    let start: Item | undefined;
    do {
      const result = await this.doc.send(
        new ScanCommand({
          TableName: this.table,
          ConsistentRead: true,
          FilterExpression: 'begins_with(#sk, :prefix)',
          ExpressionAttributeNames: { '#sk': 'sk' },
          ExpressionAttributeValues: { ':prefix': uploadKey('') },
          ...(start === undefined ? {} : { ExclusiveStartKey: start }),
        }),
      );
      const page: Item[] = result.Items ?? [];
      for (const item of page) yield sessionFrom(item);
      start = result.LastEvaluatedKey;
    } while (start !== undefined);
  }

  // Requests.

  private async getItem(pk: string, sk: string): Promise<Item | undefined> {
    const result = await this.doc.send(
      new GetCommand({ TableName: this.table, Key: key(pk, sk), ConsistentRead: true }),
    );
    const item: Item | undefined = result.Item;
    return item;
  }

  /**
   * Deletes an item (if condition holds: a refused one throws ConditionalCheckFailedException); false
   * if there was none. A conflict with a running transaction is retried.
   */
  private deleteItem(
    pk: string,
    sk: string,
    condition?: Pick<
      DeleteCommandInput,
      'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'
    >,
  ): Promise<boolean> {
    return retryConflicts(async () => {
      const result = await this.doc.send(
        new DeleteCommand({ TableName: this.table, Key: key(pk, sk), ReturnValues: 'ALL_OLD', ...condition }),
      );
      return result.Attributes !== undefined;
    });
  }

  /**
   * The items a Query matches, in sort key order, following LastEvaluatedKey until `want` items were
   * collected (or all of them, without `want`). DynamoDB stops a page at 1 MB read, filter or not.
   */
  private async queryAll(
    input: Omit<QueryCommandInput, 'TableName' | 'Limit' | 'ExclusiveStartKey' | 'ConsistentRead'>,
    want?: number,
  ): Promise<Item[]> {
    const items: Item[] = [];
    let start: Item | undefined;
    do {
      const remaining = want === undefined ? undefined : want - items.length;
      const result = await this.doc.send(
        new QueryCommand({
          ...input,
          TableName: this.table,
          ConsistentRead: true,
          // Without a filter every item read is returned, so asking for what is missing is exact.
          ...(remaining === undefined || input.FilterExpression !== undefined ? {} : { Limit: remaining }),
          ...(start === undefined ? {} : { ExclusiveStartKey: start }),
        }),
      );
      const page: Item[] = result.Items ?? [];
      items.push(...page);
      start = result.LastEvaluatedKey;
    } while (start !== undefined && (want === undefined || items.length < want));
    return want === undefined ? items : items.slice(0, want);
  }

  /** One TransactWriteItems, tried again (with jitter) when it conflicts with a concurrent transaction. */
  private transact(items: TransactItem[]): Promise<void> {
    return retryConflicts(async () => {
      await this.doc.send(new TransactWriteCommand({ TransactItems: items }));
    });
  }
}
