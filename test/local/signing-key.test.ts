// The custom resource handler that fills the token signing key's secret (functions/handlers/signing-key.ts),
// run against the local Secrets Manager as the Provider framework would call it: once on Create, never again
// on Update (unless the resource now names another secret), nothing on Delete; no key in its result or logs.
import { createPrivateKey, randomBytes } from 'node:crypto';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type LocalSecretsManager, startSecretsManager } from '../../bin/local/secrets-manager.js';
import { SigningKey } from '../../functions/auth/tokens.js';

const credentials = { accessKeyId: 'AKSIGNINGKEY', secretAccessKey: randomBytes(20).toString('hex') };
const REGION = 'eu-central-1';

type Handler = typeof import('../../functions/handlers/signing-key.js').handler;

describe('the signing key custom resource', () => {
  let service: LocalSecretsManager;
  let client: SecretsManagerClient;
  let handler: Handler;
  const saved = { ...process.env };
  const logged: string[] = [];

  const event = (
    type: 'Create' | 'Update' | 'Delete',
    secretArn: string,
    old?: string,
  ): CloudFormationCustomResourceEvent =>
    ({
      RequestType: type,
      ServiceToken: 'arn:aws:lambda:eu-central-1:123456789012:function:provider',
      ResponseURL: 'https://cloudformation-custom-resource-response.invalid/',
      StackId: 'arn:aws:cloudformation:eu-central-1:123456789012:stack/Registry/1',
      RequestId: randomBytes(8).toString('hex'),
      LogicalResourceId: 'SigningKeyValue',
      ResourceType: 'Custom::RegistrySigningKey',
      ResourceProperties: { ServiceToken: 'x', SecretArn: secretArn },
      ...(type === 'Create' ? {} : { PhysicalResourceId: old ?? secretArn }),
      ...(type === 'Update'
        ? { OldResourceProperties: { ServiceToken: 'x', SecretArn: old ?? secretArn } }
        : {}),
    }) as CloudFormationCustomResourceEvent;

  async function newSecret(name: string): Promise<string> {
    const { ARN } = await client.send(new CreateSecretCommand({ Name: name, SecretString: '# pending' }));
    return ARN ?? '';
  }

  const value = async (arn: string) =>
    (await client.send(new GetSecretValueCommand({ SecretId: arn }))).SecretString ?? '';
  const versions = async (arn: string) =>
    Object.keys((await client.send(new DescribeSecretCommand({ SecretId: arn }))).VersionIdsToStages ?? {});

  beforeAll(async () => {
    service = await startSecretsManager({ credentials, region: REGION });
    client = new SecretsManagerClient({ endpoint: service.endpoint, region: REGION, credentials });
    // The handler's client is made when its module loads, from the environment, as on Lambda.
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_SECRETS_MANAGER: service.endpoint,
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    });
    Reflect.deleteProperty(process.env, 'AWS_SESSION_TOKEN');
    Reflect.deleteProperty(process.env, 'AWS_PROFILE');
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      logged.push(String(chunk));
      return true;
    });
    ({ handler } = await import('../../functions/handlers/signing-key.js'));
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    for (const key of Object.keys(process.env)) if (!(key in saved)) Reflect.deleteProperty(process.env, key);
    Object.assign(process.env, saved);
    client.destroy();
    await service.stop();
  });

  it('on Create, puts an EC P-256 PKCS#8 key the token issuer signs ES256 with, and returns only the ARN', async () => {
    const arn = await newSecret('created');
    const result = await handler(event('Create', arn));
    expect(result).toEqual({ PhysicalResourceId: arn });
    const pem = await value(arn);
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/);
    expect(createPrivateKey(pem).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect((await SigningKey.fromPem(pem)).algorithm).toBe('ES256');
  });

  it('on Update of the same secret, keeps the key: no new version', async () => {
    const arn = await newSecret('updated');
    await handler(event('Create', arn));
    const key = await value(arn);
    const before = await versions(arn);
    expect(await handler(event('Update', arn))).toEqual({ PhysicalResourceId: arn });
    expect(await value(arn)).toBe(key);
    expect(await versions(arn)).toEqual(before);
  });

  it('on Update to another secret (the secret was replaced), fills the new one and leaves the old', async () => {
    const old = await newSecret('old');
    await handler(event('Create', old));
    const oldKey = await value(old);
    const replacement = await newSecret('replacement');
    expect(await handler(event('Update', replacement, old))).toEqual({ PhysicalResourceId: replacement });
    expect(await value(replacement)).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(await value(replacement)).not.toBe(oldKey);
    expect(await value(old)).toBe(oldKey);
  });

  it('on Delete, touches nothing (the secret has its own removal policy)', async () => {
    const arn = await newSecret('deleted');
    await handler(event('Create', arn));
    const key = await value(arn);
    expect(await handler(event('Delete', arn))).toEqual({ PhysicalResourceId: arn });
    expect(await value(arn)).toBe(key);
  });

  it('logs the ARN and version it wrote, never the key', async () => {
    const arn = await newSecret('logged');
    await handler(event('Create', arn));
    const key = await value(arn);
    const text = logged.join('');
    expect(text).toContain('"msg":"signing key generated"');
    expect(text).toContain(arn);
    for (const line of key.split('\n').filter((l) => l !== '' && !l.startsWith('-----'))) {
      expect(text).not.toContain(line);
    }
    expect(text).not.toContain('PRIVATE KEY');
  });
});
