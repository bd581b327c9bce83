/**
 * The custom resource that fills the token signing key's secret, once (lib/registry-auth.ts; run by the
 * CDK Provider framework). Create generates an EC P-256 private key (PKCS#8 PEM, what the registry's
 * token issuer signs ES256 with) and puts it into the secret. Update does not touch a secret it filled
 * before, so redeploying never invalidates the tokens users hold; it fills a secret only when the
 * resource now names another one (the secret was replaced). Delete leaves the secret to its own removal
 * policy. Neither the response nor the logs carry key material: only the secret's ARN and version.
 */
import { generateKeyPairSync } from 'node:crypto';
import { PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { jsonLogger } from '../log.js';

/** The resource's properties, as the construct sets them. */
export interface SigningKeyProperties {
  /** The secret to fill. */
  SecretArn: string;
}

/** What the Provider framework expects back: no Data, so nothing of the key reaches CloudFormation. */
export interface SigningKeyResult {
  PhysicalResourceId: string;
}

const client = new SecretsManagerClient({});
const log = jsonLogger('info');

/** A new token signing key: EC P-256 (ES256), PKCS#8 PEM. */
export function newSigningKeyPem(): string {
  const { privateKey } = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return privateKey;
}

export async function handler(event: CloudFormationCustomResourceEvent): Promise<SigningKeyResult> {
  const secretArn = secretArnOf(event.ResourceProperties);
  switch (event.RequestType) {
    case 'Create':
      await fill(secretArn, event.RequestId);
      return { PhysicalResourceId: secretArn };
    case 'Update': {
      if (secretArnOf(event.OldResourceProperties) !== secretArn) await fill(secretArn, event.RequestId);
      else log.info('signing key kept', { secretArn, requestId: event.RequestId });
      return { PhysicalResourceId: secretArn };
    }
    case 'Delete':
      return { PhysicalResourceId: event.PhysicalResourceId };
  }
}

async function fill(secretArn: string, requestId: string): Promise<void> {
  const { VersionId } = await client.send(
    new PutSecretValueCommand({ SecretId: secretArn, SecretString: newSigningKeyPem() }),
  );
  log.info('signing key generated', { secretArn, versionId: VersionId, requestId });
}

function secretArnOf(properties: Record<string, unknown>): string {
  const arn = properties.SecretArn;
  if (typeof arn !== 'string' || arn === '') throw new Error('the SecretArn property is required');
  return arn;
}
