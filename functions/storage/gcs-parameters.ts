/** The mapping of distribution's `storage.gcs` parameters to GcsDriverOptions (gcsDriverFromParameters is in gcs.ts). */
import { readFileSync } from 'node:fs';

import { ConfigError } from '../config.js';
import { optionalString } from './parameters.js';
import type { GcsDriverOptions } from './gcs.js';

/** Where these parameters are in the configuration, for errors that name a key. */
const SECTION = 'storage.gcs';

/** The `storage.gcs` keys of distribution that this driver accepts and ignores. */
const IGNORED_PARAMETERS = new Set(['useragent', 'maxconcurrency']);
/**
 * distribution's keys, and `endpoint`: this registry's own (not in distribution), the JSON API's base
 * URL, for local fakes and emulators.
 */
const USED_PARAMETERS = new Set([
  'bucket',
  'keyfile',
  'credentials',
  'rootdirectory',
  'chunksize',
  'endpoint',
]);
/** Resumable upload chunks are multiples of 256 KiB (GCS's rule; distribution checks it too). */
const CHUNK_GRANULARITY = 256 * 1024;

/** The GcsDriverOptions that gcsDriverFromParameters makes a driver with (see there). */
export function gcsOptionsFromParameters(parameters: Record<string, unknown>): GcsDriverOptions {
  for (const key of Object.keys(parameters)) {
    if (!USED_PARAMETERS.has(key) && !IGNORED_PARAMETERS.has(key)) {
      throw new ConfigError(`storage.gcs.${key}: unknown parameter`);
    }
  }
  const bucket = optionalString(SECTION, parameters, 'bucket');
  if (bucket === undefined || bucket === '') throw new ConfigError('storage.gcs.bucket: required');
  if (!isBucketName(bucket)) {
    throw new ConfigError(`storage.gcs.bucket: invalid bucket name ${JSON.stringify(bucket)}`);
  }

  const keyFilename = optionalString(SECTION, parameters, 'keyfile') || undefined;
  const credentials = serviceAccount(parameters.credentials);
  if (keyFilename !== undefined && credentials !== undefined) {
    throw new ConfigError('storage.gcs.credentials: give keyfile or credentials, not both');
  }
  if (keyFilename !== undefined) checkKeyFile(keyFilename);

  const endpoint = optionalString(SECTION, parameters, 'endpoint') || undefined;
  if (endpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new ConfigError(
        `storage.gcs.endpoint: expected an http or https URL, got ${JSON.stringify(endpoint)}`,
      );
    }
  }
  // The SDK sends JSON API requests to STORAGE_EMULATOR_HOST even when given an endpoint.
  const emulator = process.env.STORAGE_EMULATOR_HOST;
  if (endpoint !== undefined && emulator !== undefined && emulator !== '') {
    throw new ConfigError(
      `storage.gcs.endpoint: the environment sets STORAGE_EMULATOR_HOST (${emulator}) too, which the SDK ` +
        'would use instead for some requests; unset one of them',
    );
  }

  const rootDirectory = optionalString(SECTION, parameters, 'rootdirectory');
  if (rootDirectory !== undefined && /\p{Cc}/u.test(rootDirectory)) {
    throw new ConfigError('storage.gcs.rootdirectory: control characters are not allowed');
  }

  const chunkSize = optionalInteger(parameters, 'chunksize');
  if (chunkSize !== undefined && (chunkSize <= 0 || chunkSize % CHUNK_GRANULARITY !== 0)) {
    throw new ConfigError(
      `storage.gcs.chunksize: expected a positive multiple of ${CHUNK_GRANULARITY}, got ${chunkSize}`,
    );
  }

  return {
    bucket,
    ...(keyFilename !== undefined && { keyFilename }),
    ...(credentials !== undefined && {
      credentials: { client_email: credentials.clientEmail, private_key: credentials.privateKey },
      ...(credentials.projectId !== undefined && { projectId: credentials.projectId }),
    }),
    ...(endpoint !== undefined && { endpoint }),
    ...(rootDirectory !== undefined && { rootDirectory }),
    ...(chunkSize !== undefined && { chunkSize }),
  };
}

/** GCS's bucket naming rules: 3-63 characters (222 with dots, 63 between them), lower-case, digits, - _ . */
function isBucketName(name: string): boolean {
  if (!/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/.test(name) || name.length < 3) return false;
  if (!name.includes('.')) return name.length <= 63;
  return name.length <= 222 && name.split('.').every((part) => part.length > 0 && part.length <= 63);
}

/** The `credentials` map (a service account's JSON key, as distribution takes it), or undefined when absent. */
function serviceAccount(
  value: unknown,
): { clientEmail: string; privateKey: string; projectId: string | undefined } | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(
      'storage.gcs.credentials: expected a map (the fields of a service account JSON key)',
    );
  }
  const fields = value as Record<string, unknown>;
  const field = (name: string, required: boolean): string | undefined => {
    const given = fields[name];
    if (given === undefined || given === null || given === '') {
      if (required) throw new ConfigError(`storage.gcs.credentials.${name}: required`);
      return undefined;
    }
    if (typeof given !== 'string') {
      throw new ConfigError(
        `storage.gcs.credentials.${name}: expected a string, got ${JSON.stringify(given)}`,
      );
    }
    return given;
  };
  const type = field('type', false);
  if (type !== undefined && type !== 'service_account') {
    throw new ConfigError(
      `storage.gcs.credentials.type: expected service_account, got ${JSON.stringify(type)}`,
    );
  }
  const clientEmail = field('client_email', true) as string;
  const privateKey = field('private_key', true) as string;
  if (!privateKey.includes('PRIVATE KEY-----')) {
    throw new ConfigError('storage.gcs.credentials.private_key: expected a PEM private key');
  }
  return { clientEmail, privateKey, projectId: field('project_id', false) };
}

/** Refuses a key file that cannot be read or is not a JSON credential, before the SDK would fail on first use. */
function checkKeyFile(path: string): void {
  let key: unknown;
  try {
    key = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const reason = error instanceof SyntaxError ? 'not JSON' : (error as Error).message;
    throw new ConfigError(`storage.gcs.keyfile: cannot read ${path}: ${reason}`);
  }
  if (typeof key !== 'object' || key === null || typeof (key as { type?: unknown }).type !== 'string') {
    throw new ConfigError(`storage.gcs.keyfile: ${path} is not a credential JSON file (it has no "type")`);
  }
  const { type, client_email, private_key } = key as Record<string, unknown>;
  if (type === 'service_account' && (typeof client_email !== 'string' || typeof private_key !== 'string')) {
    throw new ConfigError(
      `storage.gcs.keyfile: ${path} is a service account key without client_email and private_key`,
    );
  }
}

/** parameters[key] as a safe integer (a number, or a string of digits), undefined when absent. */
function optionalInteger(parameters: Record<string, unknown>, key: string): number | undefined {
  const value = parameters[key];
  if (value === undefined || value === null) return undefined;
  const number = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isSafeInteger(number)) {
    throw new ConfigError(`storage.gcs.${key}: expected an integer, got ${JSON.stringify(value)}`);
  }
  return number;
}
