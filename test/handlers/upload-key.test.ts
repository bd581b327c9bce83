// The custom resource handler that puts the upload URL secret into the upload edge's KeyValueStore
// (functions/handlers/upload-key.ts), against the local Secrets Manager and a KeyValueStore data plane
// served here: the secret lands under its kid, with the ETag as If-Match and a SigV4A signature; an
// update adds the new kid and keeps the old; a conflicting write is retried; Delete touches nothing; the
// secret never reaches the result or the logs.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { CloudFrontKeyValueStoreClient } from '@aws-sdk/client-cloudfront-keyvaluestore';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { listenOnLoopback } from '../../bin/local/free-port.js';
import { type LocalSecretsManager, startSecretsManager } from '../../bin/local/secrets-manager.js';
import { uploadKeyHandler } from '../../functions/handlers/upload-key.js';

const credentials = { accessKeyId: 'AKUPLOADKEY', secretAccessKey: randomBytes(20).toString('hex') };
const REGION = 'us-east-1';
const STORE_ARN = 'arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-0000-4000-8000-000000000000';

/** A request the store received: what the tests check of signing and conditional writes. */
interface Received {
  method: string;
  path: string;
  authorization: string;
  regionSet: string | undefined;
  ifMatch: string | undefined;
}

/**
 * The KeyValueStore data-plane REST API, as far as the handler uses it: DescribeKeyValueStore (GET
 * /key-value-stores/{arn}, the ETag in a header) and PutKey (PUT .../keys/{key}, refused with 409
 * ConflictException unless If-Match is the current ETag, which every write changes).
 */
class LocalKeyValueStore {
  readonly keys = new Map<string, string>();
  readonly received: Received[] = [];
  /** Writes to refuse with a conflict, as if someone else had changed the store in between. */
  conflicts = 0;
  private version = 1;
  private readonly server = createServer((request, response) => {
    void this.answer(request, response);
  });
  endpoint = '';

  async start(): Promise<void> {
    this.endpoint = `http://127.0.0.1:${await listenOnLoopback(this.server)}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private get etag(): string {
    return `etag-${this.version}`;
  }

  private async answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://store').pathname);
    const header = (name: string) => {
      const value = request.headers[name];
      return Array.isArray(value) ? value[0] : value;
    };
    this.received.push({
      method: request.method ?? '',
      path,
      authorization: header('authorization') ?? '',
      regionSet: header('x-amz-region-set'),
      ifMatch: header('if-match'),
    });
    const send = (status: number, body: object, headers: Record<string, string> = {}) => {
      response.writeHead(status, { 'content-type': 'application/json', ...headers });
      response.end(JSON.stringify(body));
    };
    const size = () => [...this.keys].reduce((sum, [key, value]) => sum + key.length + value.length, 0);
    const prefix = `/key-value-stores/${STORE_ARN}`;
    if (request.method === 'GET' && path === prefix) {
      send(
        200,
        {
          KvsARN: STORE_ARN,
          ItemCount: this.keys.size,
          TotalSizeInBytes: size(),
          Created: 1_700_000_000,
          Status: 'READY',
        },
        { etag: this.etag },
      );
      return;
    }
    const key = path.startsWith(`${prefix}/keys/`) ? path.slice(`${prefix}/keys/`.length) : undefined;
    if (request.method === 'PUT' && key !== undefined) {
      if (this.conflicts > 0) {
        this.conflicts--;
        this.version++;
      }
      if (header('if-match') !== this.etag) {
        send(
          409,
          { Message: 'Pre-condition failed: ETag mismatch' },
          { 'x-amzn-errortype': 'ConflictException' },
        );
        return;
      }
      const { Value } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { Value: string };
      this.keys.set(key, Value);
      this.version++;
      send(200, { ItemCount: this.keys.size, TotalSizeInBytes: size() }, { etag: this.etag });
      return;
    }
    send(
      404,
      { Message: `no route ${request.method ?? ''} ${path}` },
      { 'x-amzn-errortype': 'ResourceNotFoundException' },
    );
  }
}

const kidOf = (secret: string) => createHash('sha256').update(secret, 'utf8').digest('hex').slice(0, 16);

describe('the upload key custom resource', () => {
  let secretsService: LocalSecretsManager;
  let store: LocalKeyValueStore;
  let secretsManager: SecretsManagerClient;
  let keyValueStore: CloudFrontKeyValueStoreClient;
  let handler: ReturnType<typeof uploadKeyHandler>;
  const logged: string[] = [];

  const event = (
    type: 'Create' | 'Update' | 'Delete',
    secretArn: string,
  ): CloudFormationCustomResourceEvent => {
    const properties = { ServiceToken: 'x', SecretArn: secretArn, KeyValueStoreArn: STORE_ARN };
    return {
      RequestType: type,
      ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:provider',
      ResponseURL: 'https://cloudformation-custom-resource-response.invalid/',
      StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/Registry/1',
      RequestId: randomBytes(8).toString('hex'),
      LogicalResourceId: 'UploadKey',
      ResourceType: 'Custom::RegistryUploadKey',
      ResourceProperties: properties,
      ...(type === 'Create' ? {} : { PhysicalResourceId: `${STORE_ARN}#old` }),
      ...(type === 'Update' ? { OldResourceProperties: properties } : {}),
    } as CloudFormationCustomResourceEvent;
  };

  async function newSecret(value: string): Promise<string> {
    const name = `upload-${randomBytes(4).toString('hex')}`;
    const { ARN } = await secretsManager.send(new CreateSecretCommand({ Name: name, SecretString: value }));
    return ARN ?? '';
  }
  const generated = () => randomBytes(48).toString('base64url').slice(0, 64);

  beforeAll(async () => {
    secretsService = await startSecretsManager({ credentials, region: REGION });
    store = new LocalKeyValueStore();
    await store.start();
    secretsManager = new SecretsManagerClient({
      endpoint: secretsService.endpoint,
      region: REGION,
      credentials,
    });
    keyValueStore = new CloudFrontKeyValueStoreClient({
      region: REGION,
      credentials,
      // The client's endpoint rules put the store's account in the host name
      // (`https://<account>.cloudfront-kvs.global.api.aws`, and `<account>.<host>` for a custom endpoint),
      // which no 127.0.0.1 URL survives: resolve to the local store directly, keeping the rules' SigV4A
      // auth scheme so that the request is signed as AWS requires.
      endpointProvider: () => ({
        url: new URL(store.endpoint),
        properties: {
          authSchemes: [
            {
              name: 'sigv4a',
              signingName: 'cloudfront-keyvaluestore',
              signingRegion: REGION,
              signingRegionSet: ['*'],
              properties: {},
            },
          ],
        },
      }),
    });
    handler = uploadKeyHandler({ keyValueStore, secretsManager });
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      logged.push(String(chunk));
      return true;
    });
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    secretsManager.destroy();
    keyValueStore.destroy();
    await store.stop();
    await secretsService.stop();
  });

  beforeEach(() => {
    store.keys.clear();
    store.received.length = 0;
    logged.length = 0;
  });

  it('on Create, puts the secret under its kid, conditioned on the ETag, signed with SigV4A', async () => {
    const secret = generated();
    const arn = await newSecret(secret);
    const kid = kidOf(secret);
    expect(await handler(event('Create', arn))).toEqual({
      PhysicalResourceId: `${STORE_ARN}#${kid}`,
      Data: { Kid: kid },
    });
    expect([...store.keys]).toEqual([[kid, secret]]);
    const [describe, put, ...others] = store.received;
    expect(others).toEqual([]);
    expect(describe).toMatchObject({ method: 'GET', path: `/key-value-stores/${STORE_ARN}` });
    expect(put).toMatchObject({
      method: 'PUT',
      path: `/key-value-stores/${STORE_ARN}/keys/${kid}`,
      ifMatch: 'etag-1',
    });
    for (const request of [describe, put]) {
      expect(request?.authorization).toMatch(/^AWS4-ECDSA-P256-SHA256 Credential=AKUPLOADKEY\//);
      expect(request?.regionSet).toBe('*');
    }
  });

  it('on Update, puts the current secret and keeps the kids already there', async () => {
    const first = generated();
    const arn = await newSecret(first);
    await handler(event('Create', arn));
    // Redeploying changes nothing.
    await handler(event('Update', arn));
    expect([...store.keys]).toEqual([[kidOf(first), first]]);
    // A rotated secret: URLs signed with the old one stay verifiable until they expire.
    const second = generated();
    await secretsManager.send(new PutSecretValueCommand({ SecretId: arn, SecretString: second }));
    const result = await handler(event('Update', arn));
    expect(result.PhysicalResourceId).toBe(`${STORE_ARN}#${kidOf(second)}`);
    expect(new Map(store.keys)).toEqual(
      new Map([
        [kidOf(first), first],
        [kidOf(second), second],
      ]),
    );
  });

  it('reads the ETag again when the store changed in between, and gives up after three conflicts', async () => {
    const secret = generated();
    const arn = await newSecret(secret);
    store.conflicts = 1;
    await handler(event('Create', arn));
    expect(store.keys.get(kidOf(secret))).toBe(secret);
    expect(store.received.map((request) => request.method)).toEqual(['GET', 'PUT', 'GET', 'PUT']);
    store.conflicts = 3;
    await expect(handler(event('Update', arn))).rejects.toMatchObject({ name: 'ConflictException' });
    store.conflicts = 0;
  });

  it('on Delete, calls nothing: the store goes with the stack', async () => {
    const before = secretsService.requestCount;
    expect(
      await handler(event('Delete', 'arn:aws:secretsmanager:us-east-1:000000000000:secret:gone')),
    ).toEqual({
      PhysicalResourceId: `${STORE_ARN}#old`,
    });
    expect(store.received).toEqual([]);
    expect(secretsService.requestCount).toBe(before);
  });

  it('logs the kid, never the secret', async () => {
    const secret = generated();
    await handler(event('Create', await newSecret(secret)));
    const text = logged.join('');
    expect(text).toContain('"msg":"upload key put"');
    expect(text).toContain(kidOf(secret));
    expect(text).not.toContain(secret);
  });

  it('refuses a secret too long for a KeyValueStore value, and missing properties', async () => {
    const arn = await newSecret('x'.repeat(1025));
    await expect(handler(event('Create', arn))).rejects.toThrow(
      /1025 characters: a KeyValueStore value holds at most 1024/,
    );
    const missing = { ...event('Create', arn), ResourceProperties: { ServiceToken: 'x', SecretArn: arn } };
    await expect(handler(missing as CloudFormationCustomResourceEvent)).rejects.toThrow(
      /the KeyValueStoreArn property is required/,
    );
    expect(store.received).toEqual([]);
  });
});
