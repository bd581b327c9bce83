/**
 * The API suite against the AWS shape of the registry: requests cross a local API Gateway front
 * (with API Gateway's and Lambda's payload limits) into the Lambda adapter, and the core keeps blobs
 * in S3 (fauxqs) and metadata in DynamoDB Local, persisting upload hash state as on Lambda. Blob GETs
 * are 307 redirects to presigned S3 URLs, which fetch follows.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll } from 'vitest';
import { apiGatewayFront } from '../../bin/local/api-gateway.js';
import { type DynamoDbLocal, startDynamoDbLocal } from '../../bin/local/dynamodb-local.js';
import { type S3Service, startFauxqs } from '../../bin/local/s3-local.js';
import { lambdaAdapter } from '../../functions/http/lambda.js';
import { silentLogger } from '../../functions/log.js';
import { createTable, DynamoDbMetadataStore } from '../../functions/metadata/dynamodb.js';
import type { RegistryOptions } from '../../functions/registry/context.js';
import { Registry } from '../../functions/registry/registry.js';
import { S3Driver } from '../../functions/storage/s3.js';
import type { ApiTarget } from './helpers.js';
import { describeRegistryApi } from './suite.js';

const BUCKET = 'api-suite';
let s3: S3Service;
let dynamodb: DynamoDbLocal;

beforeAll(async () => {
  [s3, dynamodb] = await Promise.all([startFauxqs(), startDynamoDbLocal()]);
  await s3.createBucket(BUCKET);
}, 60_000);

afterAll(async () => {
  await Promise.all([s3.stop(), dynamodb.stop()]);
});

/** A fresh registry: its own key prefix in the bucket and its own table. */
async function lambdaTarget(options?: Partial<RegistryOptions>): Promise<ApiTarget> {
  const table = `t-${randomUUID()}`;
  await createTable(dynamodb.client(), table);
  const storage = new S3Driver({
    bucket: BUCKET,
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    rootDirectory: table,
  });
  const metadata = new DynamoDbMetadataStore({ table, client: dynamodb.client() });
  const servers: Server[] = [];

  const serve = async (registryOptions?: Partial<RegistryOptions>): Promise<ApiTarget> => {
    const registry = new Registry({
      storage,
      metadata,
      options: { persistHashState: true, ...registryOptions },
    });
    const server = createServer(
      apiGatewayFront(lambdaAdapter(registry, { log: silentLogger, accessLog: false })),
    );
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return {
      request: (path, init) => fetch(`${base}${path}`, init),
      reopen: serve,
      close: async () => {
        await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
      },
    };
  };
  return serve(options);
}

describeRegistryApi(
  'registry on the AWS shape (API Gateway front, Lambda adapter, S3, DynamoDB)',
  lambdaTarget,
);
