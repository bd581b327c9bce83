/**
 * The custom resource that puts the upload URL secret into the upload edge's KeyValueStore
 * (lib/upload-edge.ts; run by the CDK Provider framework). The edge's viewer-request function finds a
 * signed upload URL's secret there by the URL's kid: key = kid (functions/registry/upload-urls.ts),
 * value = the secret.
 *
 * Create and Update put the secret's current value under its kid, so redeploying is harmless (the same
 * key and value again) and keys already in the store stay: URLs signed with an earlier secret keep
 * working until they expire. Delete does nothing; the store goes with the stack. Neither the response
 * nor the logs carry the secret, only its kid (which every signed URL shows anyway).
 *
 * The KeyValueStore data-plane API is signed with SigV4A only ("signingRegionSet": ["*"] in the
 * client's endpoint rules); importing @aws-sdk/signature-v4a registers the JavaScript signer the SDK
 * looks for, without which every call fails before it is sent.
 */
import '@aws-sdk/signature-v4a';
import {
  CloudFrontKeyValueStoreClient,
  ConflictException,
  DescribeKeyValueStoreCommand,
  PutKeyCommand,
} from '@aws-sdk/client-cloudfront-keyvaluestore';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { jsonLogger } from '../log.js';
import { uploadSecretId } from '../registry/upload-urls.js';

/** The resource's properties, as the construct sets them. */
export interface UploadKeyProperties {
  /** The secret upload URLs are signed with (REGISTRY_HTTP_SECRET). */
  SecretArn: string;
  /** The upload edge's KeyValueStore. */
  KeyValueStoreArn: string;
}

/** What the Provider framework expects back: the kid only, never the secret. */
export interface UploadKeyResult {
  PhysicalResourceId: string;
  Data?: { Kid: string };
}

/** The clients the handler calls, given so that a test can point them at local services. */
export interface UploadKeyClients {
  keyValueStore: CloudFrontKeyValueStoreClient;
  secretsManager: SecretsManagerClient;
}

/** A KeyValueStore value's limit (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/kvs-with-functions-create-s3-kvp.html). */
const MAX_VALUE_CHARS = 1024;
/** PutKey fails with a conflict when the store changed since its ETag was read: read it again, a few times. */
const ATTEMPTS = 3;

const log = jsonLogger('info');

/** The handler, calling AWS through clients. */
export function uploadKeyHandler(
  clients: UploadKeyClients,
): (event: CloudFormationCustomResourceEvent) => Promise<UploadKeyResult> {
  return async (event) => {
    if (event.RequestType === 'Delete') return { PhysicalResourceId: event.PhysicalResourceId };
    const { secretArn, storeArn } = propertiesOf(event.ResourceProperties);
    const kid = await putSecret(clients, secretArn, storeArn);
    log.info('upload key put', { kid, keyValueStoreArn: storeArn, secretArn, requestId: event.RequestId });
    return { PhysicalResourceId: `${storeArn}#${kid}`, Data: { Kid: kid } };
  };
}

/** Puts the secret's value under its kid; returns the kid. */
async function putSecret(clients: UploadKeyClients, secretArn: string, storeArn: string): Promise<string> {
  const { SecretString: secret } = await clients.secretsManager.send(
    new GetSecretValueCommand({ SecretId: secretArn }),
  );
  if (secret === undefined) throw new Error(`secret ${secretArn} has no string value`);
  if (secret.length > MAX_VALUE_CHARS) {
    throw new Error(
      `secret ${secretArn} has ${secret.length} characters: a KeyValueStore value holds at most ${MAX_VALUE_CHARS}`,
    );
  }
  const kid = uploadSecretId(secret);
  for (let attempt = 1; ; attempt++) {
    const { ETag } = await clients.keyValueStore.send(new DescribeKeyValueStoreCommand({ KvsARN: storeArn }));
    try {
      await clients.keyValueStore.send(
        new PutKeyCommand({ KvsARN: storeArn, Key: kid, Value: secret, IfMatch: ETag }),
      );
      return kid;
    } catch (error) {
      if (!(error instanceof ConflictException) || attempt === ATTEMPTS) throw error;
    }
  }
}

function propertiesOf(properties: Record<string, unknown>): { secretArn: string; storeArn: string } {
  const { SecretArn: secretArn, KeyValueStoreArn: storeArn } = properties;
  if (typeof secretArn !== 'string' || secretArn === '')
    throw new Error('the SecretArn property is required');
  if (typeof storeArn !== 'string' || storeArn === '') {
    throw new Error('the KeyValueStoreArn property is required');
  }
  return { secretArn, storeArn };
}

export const handler = uploadKeyHandler({
  keyValueStore: new CloudFrontKeyValueStoreClient({}),
  secretsManager: new SecretsManagerClient({}),
});
