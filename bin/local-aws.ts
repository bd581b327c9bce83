/**
 * `npm run local:aws`: the AWS deployment on one machine. The real Lambda handler runs behind a
 * local API Gateway front (bin/local/api-gateway.ts, with API Gateway's and Lambda's limits), with
 * DynamoDB Local for metadata and a local S3 for blobs, so the registry behaves as deployed.
 *
 * It listens where REGISTRY_HTTP_ADDR says (default 127.0.0.1:5000). LOCAL_AWS_S3 chooses the S3:
 * `fauxqs` (default; fast, from npm, checks no signatures), `rgw` (a one-node Ceph RGW from Debian
 * packages, which verifies SigV4 and presigned URLs) or `aws`; LOCAL_AWS_DYNAMODB is `local` (default)
 * or `aws`. AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB point at services already running instead
 * (LocalStack). Services not started here must already have the bucket and table named by
 * LOCAL_AWS_BUCKET and LOCAL_AWS_TABLE (default `registry`).
 */
import { createServer } from 'node:http';
import { createTable } from '../functions/metadata/dynamodb.js';
import { startDynamoDbLocal } from './local/dynamodb-local.js';
import { apiGatewayFront } from './local/api-gateway.js';
import { startFauxqs, startRgw, type S3Service } from './local/s3-local.js';

const BUCKET = process.env.LOCAL_AWS_BUCKET ?? 'registry';
const TABLE = process.env.LOCAL_AWS_TABLE ?? 'registry';

async function main(): Promise<void> {
  const addr = process.env.REGISTRY_HTTP_ADDR ?? '127.0.0.1:5000';
  const [host, port] = [
    addr.slice(0, addr.lastIndexOf(':')) || '127.0.0.1',
    Number(addr.slice(addr.lastIndexOf(':') + 1)),
  ];
  const stops: (() => Promise<void>)[] = [];

  const s3 = await s3Service();
  const stopS3 = s3.stop;
  if (stopS3) stops.push(() => stopS3());
  const external =
    process.env.AWS_ENDPOINT_URL_DYNAMODB !== undefined || process.env.LOCAL_AWS_DYNAMODB === 'aws';
  const dynamodb = external ? undefined : await startDynamoDbLocal();
  if (dynamodb) stops.push(() => dynamodb.stop());
  const dynamodbEndpoint = dynamodb?.endpoint ?? process.env.AWS_ENDPOINT_URL_DYNAMODB;

  if (s3.createBucket) await s3.createBucket(BUCKET);
  if (dynamodb) await createTable(dynamodb.client(), TABLE);

  // The function's environment, as the CDK construct sets it, plus the local endpoints.
  Object.assign(process.env, {
    AWS_REGION: s3.region,
    AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID ?? 'local',
    AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY ?? 'local',
    REGISTRY_STORAGE: 's3',
    REGISTRY_STORAGE_S3_BUCKET: BUCKET,
    REGISTRY_STORAGE_S3_REGION: s3.region,
    REGISTRY_STORAGE_DELETE_ENABLED: 'true',
    REGISTRY_METADATA: 'dynamodb',
    REGISTRY_METADATA_DYNAMODB_TABLE: TABLE,
    ...(s3.endpoint
      ? {
          REGISTRY_STORAGE_S3_REGIONENDPOINT: s3.endpoint,
          REGISTRY_STORAGE_S3_FORCEPATHSTYLE: 'true',
          REGISTRY_STORAGE_S3_ACCESSKEY: s3.accessKeyId,
          REGISTRY_STORAGE_S3_SECRETKEY: s3.secretAccessKey,
        }
      : {}),
    ...(dynamodbEndpoint ? { REGISTRY_METADATA_DYNAMODB_ENDPOINT: dynamodbEndpoint } : {}),
  });
  // Imported only now: the handler reads its environment when its module loads, as on Lambda.
  const { handler } = await import('../functions/handlers/registry.js');

  const server = createServer(apiGatewayFront(handler));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  process.stderr.write(
    JSON.stringify({
      time: new Date().toISOString(),
      level: 'info',
      msg: 'local AWS registry listening',
      addr,
      s3: s3.endpoint ?? 'AWS',
      dynamodb: dynamodbEndpoint ?? 'AWS',
      bucket: BUCKET,
      table: TABLE,
    }) + '\n',
  );

  const stop = () => {
    server.close();
    server.closeAllConnections();
    void Promise.allSettled(stops.map((s) => s())).then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/** The S3 to use: one already running (AWS_ENDPOINT_URL_S3, or AWS itself), or one started here. */
async function s3Service(): Promise<Partial<S3Service> & { region: string }> {
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const endpoint = process.env.AWS_ENDPOINT_URL_S3;
  if (endpoint !== undefined || process.env.LOCAL_AWS_S3 === 'aws') {
    return {
      region,
      endpoint,
      accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '',
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '',
    };
  }
  return process.env.LOCAL_AWS_S3 === 'rgw' ? startRgw() : startFauxqs();
}

main().catch((error: unknown) => {
  process.stderr.write(
    `local:aws: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
