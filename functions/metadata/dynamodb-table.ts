/**
 * The DynamoDB table behind DynamoDbMetadataStore: its key schema (the contract with the CDK stack),
 * how records and sessions become items, and how DynamoDB's failures are told apart and retried.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
  type KeySchemaElement,
} from '@aws-sdk/client-dynamodb';
import type { ManifestRecord, TagRecord, UploadSession } from './store.js';

/** The table's key and TTL attributes: the contract with the infrastructure that creates the table. */
export const TABLE_KEYS = { partitionKey: 'pk', sortKey: 'sk', ttl: 'ttl' } as const;
/** Per-item allowance for key values, attribute names and type overhead in the size estimates. */
const ITEM_OVERHEAD = 1024;
/** How often an operation is tried when concurrent transactions on the same items conflict. */
const CONFLICT_ATTEMPTS = 6;

export type Item = Record<string, unknown>;

/**
 * Creates the table this store uses (the same schema the CDK stack creates): pk/sk strings, on-demand,
 * TTL on `ttl`. For tests and local emulation; an existing table with the same keys is accepted.
 */
export async function createTable(client: DynamoDBClient, name: string): Promise<void> {
  const keySchema: KeySchemaElement[] = [
    { AttributeName: TABLE_KEYS.partitionKey, KeyType: 'HASH' },
    { AttributeName: TABLE_KEYS.sortKey, KeyType: 'RANGE' },
  ];
  try {
    await client.send(
      new CreateTableCommand({
        TableName: name,
        KeySchema: keySchema,
        AttributeDefinitions: [
          { AttributeName: TABLE_KEYS.partitionKey, AttributeType: 'S' },
          { AttributeName: TABLE_KEYS.sortKey, AttributeType: 'S' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
  } catch (error) {
    if (errorName(error) !== 'ResourceInUseException') throw error;
    const { Table: table } = await client.send(new DescribeTableCommand({ TableName: name }));
    const actual = (table?.KeySchema ?? []).map((k) => `${k.AttributeName ?? ''}:${k.KeyType ?? ''}`);
    const expected = keySchema.map((k) => `${k.AttributeName ?? ''}:${k.KeyType ?? ''}`);
    if (actual.join() !== expected.join()) {
      throw new Error(`table ${name} exists with keys ${actual.join(', ')}, not ${expected.join(', ')}`);
    }
  }
  await waitUntilTableExists({ client, maxWaitTime: 120 }, { TableName: name });
  const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: name }));
  const status = ttl.TimeToLiveDescription?.TimeToLiveStatus;
  if (status === 'ENABLED' || status === 'ENABLING') {
    const attribute = ttl.TimeToLiveDescription?.AttributeName;
    if (attribute !== TABLE_KEYS.ttl)
      throw new Error(`table ${name} has TTL on ${String(attribute)}, not ttl`);
    return;
  }
  await client.send(
    new UpdateTimeToLiveCommand({
      TableName: name,
      TimeToLiveSpecification: { AttributeName: TABLE_KEYS.ttl, Enabled: true },
    }),
  );
}

// Keys.

export function key(pk: string, sk: string): Item {
  return { [TABLE_KEYS.partitionKey]: pk, [TABLE_KEYS.sortKey]: sk };
}

export const repositoryKey = (repository: string) => `repo#${repository}`;
export const blobKey = (digest: string) => `blob#${digest}`;
export const manifestKey = (digest: string) => `manifest#${digest}`;
export const tagKey = (tag: string) => `tag#${tag}`;
export const referrerKey = (subject: string, digest: string) => `referrer#${subject}#${digest}`;
export const uploadKey = (id: string) => `upload#${id}`;

/** The lowest string above every string that starts with prefix. */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCodePoint((prefix.codePointAt(prefix.length - 1) ?? 0) + 1);
}

// Items.

/** The record's attributes without content; annotations as JSON text (any key, order kept). */
export function descriptorAttributes(record: ManifestRecord): Item {
  return {
    digest: record.digest,
    mediaType: record.mediaType,
    size: record.size,
    ...(record.subject === undefined ? {} : { subject: record.subject }),
    ...(record.artifactType === undefined ? {} : { artifactType: record.artifactType }),
    ...(record.annotations === undefined ? {} : { annotations: JSON.stringify(record.annotations) }),
    ...(record.pushedAt === undefined ? {} : { pushedAt: record.pushedAt }),
  };
}

/** A record from a manifest, tag or referrer item. */
export function recordFrom(item: Item): ManifestRecord {
  const record: ManifestRecord = {
    digest: text(item.digest),
    mediaType: text(item.mediaType),
    size: number(item.size),
  };
  if (typeof item.subject === 'string') record.subject = item.subject;
  if (typeof item.artifactType === 'string') record.artifactType = item.artifactType;
  if (typeof item.annotations === 'string') {
    record.annotations = JSON.parse(item.annotations) as Record<string, string>;
  }
  if (typeof item.pushedAt === 'string') record.pushedAt = item.pushedAt;
  if (item.content instanceof Uint8Array) {
    const content = item.content;
    record.content =
      content.constructor === Uint8Array
        ? content
        : new Uint8Array(content.buffer, content.byteOffset, content.byteLength);
  }
  return record;
}

export function uploadItem(session: UploadSession): Item {
  const expiresMs = Date.parse(session.expiresAt);
  return {
    ...key(repositoryKey(session.repository), uploadKey(session.id)),
    id: session.id,
    offset: session.offset,
    sha256: session.sha256,
    hashState: session.hashState,
    startedAt: session.startedAt,
    expiresAt: session.expiresAt,
    expiresMs,
    [TABLE_KEYS.ttl]: Math.ceil(expiresMs / 1000),
  };
}

/** A session from its item (pk = repo#<name>, sk = upload#<id>). */
export function sessionFrom(item: Item): UploadSession {
  const session: UploadSession = {
    id: text(item.sk).slice(uploadKey('').length),
    repository: text(item.pk).slice(repositoryKey('').length),
    offset: number(item.offset),
    sha256: text(item.sha256),
    startedAt: text(item.startedAt),
    expiresAt: text(item.expiresAt),
  };
  if (typeof item.hashState === 'string') session.hashState = item.hashState;
  return session;
}

/** A tag record from a tag item (taggedAt is absent on items written before it was kept). */
export function tagRecordFrom(item: Item): TagRecord {
  const record: TagRecord = { tag: text(item.sk).slice(tagKey('').length), digest: text(item.digest) };
  if (typeof item.taggedAt === 'string') record.taggedAt = item.taggedAt;
  return record;
}

/** About how many bytes DynamoDB counts for these attributes, plus an allowance for keys and names. */
export function estimateBytes(attributes: Item): number {
  let bytes = ITEM_OVERHEAD;
  for (const [name, value] of Object.entries(attributes)) {
    bytes += Buffer.byteLength(name);
    if (typeof value === 'string') bytes += Buffer.byteLength(value);
    else if (value instanceof Uint8Array) bytes += value.byteLength;
    else bytes += 21;
  }
  return bytes;
}

export function text(value: unknown): string {
  if (typeof value !== 'string')
    throw new Error(`corrupt metadata item: expected a string, got ${typeof value}`);
  return value;
}

export function number(value: unknown): number {
  if (typeof value !== 'number')
    throw new Error(`corrupt metadata item: expected a number, got ${typeof value}`);
  return value;
}

// Errors.

export function errorName(error: unknown): string | undefined {
  return error instanceof Error ? error.name : undefined;
}

/** The reason code of each action of a cancelled transaction, in the actions' order ('None' if it held). */
export function cancellationCodes(error: unknown): string[] {
  if (errorName(error) !== 'TransactionCanceledException') return [];
  const reasons = (error as { CancellationReasons?: { Code?: string }[] }).CancellationReasons ?? [];
  return reasons.map((reason) => reason.Code ?? 'None');
}

/** A transaction refused because one of its conditions did not hold. */
export function isConditionFailure(error: unknown): boolean {
  return cancellationCodes(error).includes('ConditionalCheckFailed');
}

/** A write that lost a race with a concurrent transaction on the same item, and may simply be tried again. */
function isConflict(error: unknown): boolean {
  if (errorName(error) === 'TransactionConflictException') return true;
  const codes = cancellationCodes(error);
  return codes.includes('TransactionConflict') && !codes.includes('ConditionalCheckFailed');
}

export async function retryConflicts<T>(operation: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (!isConflict(error) || attempt >= CONFLICT_ATTEMPTS) throw error;
      const delay = Math.random() * 25 * 2 ** attempt;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
