import { readFile } from 'node:fs/promises';
import { ConfigError } from './config.js';

/** A Secrets Manager secret's ARN, in any partition. */
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/;

/** Whether a configured reference names a Secrets Manager secret (else it is a file path). */
export const isSecretArn = (reference: string): boolean => SECRET_ARN.test(reference);

/**
 * Reads a configured secret (an htpasswd file, a signing key): a Secrets Manager ARN is fetched with the
 * AWS SDK (loaded only then), anything else is a file path. Read once, when the registry is built;
 * errors name the configuration key and the reference, never the content.
 */
export async function readSecret(key: string, reference: string): Promise<string> {
  if (isSecretArn(reference)) return readSecretsManager(key, reference);
  try {
    return await readFile(reference, 'utf8');
  } catch (error) {
    throw unreadableFile(key, reference, error);
  }
}

/** The error for a configured file that cannot be read: the key, the path and the reason (ENOENT...). */
export function unreadableFile(key: string, path: string, error: unknown): ConfigError {
  const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return new ConfigError(`${key}: cannot read ${path}: ${reason}`);
}

const PERMANENT = new Set([
  'ResourceNotFoundException',
  'AccessDeniedException',
  'DecryptionFailure',
  'InvalidParameterException',
  'InvalidRequestException',
]);

async function readSecretsManager(key: string, arn: string): Promise<string> {
  const { GetSecretValueCommand, SecretsManagerClient } = await import('@aws-sdk/client-secrets-manager');
  const client = new SecretsManagerClient({});
  try {
    const { SecretString } = await client.send(new GetSecretValueCommand({ SecretId: arn }));
    if (SecretString === undefined) throw new ConfigError(`${key}: secret ${arn} has no string value`);
    return SecretString;
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const message = `${key}: cannot read secret ${arn}: ${(error as Error).name}: ${(error as Error).message}`;
    // What retrying cannot fix is a configuration error; throttling or the network may pass.
    if (PERMANENT.has((error as Error).name)) throw new ConfigError(message);
    throw new Error(message, { cause: error });
  } finally {
    client.destroy();
  }
}
