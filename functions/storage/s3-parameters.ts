/** The mapping of distribution's `storage.s3` parameters to S3DriverOptions (s3DriverFromParameters is in s3.ts). */
import { ConfigError } from '../config.js';
import { optionalString } from './parameters.js';
import type { S3DriverOptions } from './s3.js';

/** Where these parameters are in the configuration, for errors that name a key. */
const SECTION = 'storage.s3';

/** The `storage.s3` keys of distribution that this driver accepts and ignores. */
const IGNORED_PARAMETERS = new Set([
  'encrypt',
  'keyid',
  'secure',
  'skipverify',
  'v4auth',
  'chunksize',
  'multipartcopychunksize',
  'multipartcopymaxconcurrency',
  'multipartcopythresholdsize',
  'storageclass',
  'useragent',
  'objectacl',
  'sessiontoken',
  'usedualstack',
  'accelerate',
  'usefipsendpoint',
  'loglevel',
]);
const USED_PARAMETERS = new Set([
  'bucket',
  'region',
  'regionendpoint',
  'forcepathstyle',
  'accesskey',
  'secretkey',
  'rootdirectory',
]);

/** The S3DriverOptions that s3DriverFromParameters makes a driver with (see there). */
export function s3OptionsFromParameters(parameters: Record<string, unknown>): S3DriverOptions {
  for (const key of Object.keys(parameters)) {
    if (!USED_PARAMETERS.has(key) && !IGNORED_PARAMETERS.has(key)) {
      throw new ConfigError(`storage.s3.${key}: unknown parameter`);
    }
  }
  const bucket = optionalString(SECTION, parameters, 'bucket');
  if (bucket === undefined || bucket === '') throw new ConfigError('storage.s3.bucket: required');
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError(`storage.s3.bucket: invalid bucket name ${JSON.stringify(bucket)}`);
  }

  const endpoint = optionalString(SECTION, parameters, 'regionendpoint') || undefined;
  if (endpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new ConfigError(
        `storage.s3.regionendpoint: expected an http or https URL, got ${JSON.stringify(endpoint)}`,
      );
    }
  }

  const region =
    optionalString(SECTION, parameters, 'region') ||
    process.env.AWS_REGION ||
    (endpoint === undefined ? undefined : 'us-east-1');
  if (region === undefined) {
    throw new ConfigError('storage.s3.region: required (or set AWS_REGION, or a regionendpoint)');
  }
  if (!/^[a-z0-9-]+$/.test(region)) {
    throw new ConfigError(`storage.s3.region: invalid region ${JSON.stringify(region)}`);
  }

  const accessKeyId = optionalString(SECTION, parameters, 'accesskey') || undefined;
  const secretAccessKey = optionalString(SECTION, parameters, 'secretkey') || undefined;
  if (accessKeyId !== undefined && secretAccessKey === undefined) {
    throw new ConfigError('storage.s3.secretkey: required with storage.s3.accesskey');
  }
  if (secretAccessKey !== undefined && accessKeyId === undefined) {
    throw new ConfigError('storage.s3.accesskey: required with storage.s3.secretkey');
  }

  const rootDirectory = optionalString(SECTION, parameters, 'rootdirectory');
  if (rootDirectory !== undefined && /\p{Cc}/u.test(rootDirectory)) {
    throw new ConfigError(`storage.s3.rootdirectory: control characters are not allowed`);
  }

  return {
    bucket,
    region,
    endpoint,
    forcePathStyle: optionalBool(parameters, 'forcepathstyle') ?? false,
    credentials:
      accessKeyId !== undefined && secretAccessKey !== undefined
        ? { accessKeyId, secretAccessKey }
        : undefined,
    rootDirectory,
  };
}

/** parameters[key] as a boolean: true/false, or a string Go's strconv.ParseBool accepts. */
function optionalBool(parameters: Record<string, unknown>, key: string): boolean | undefined {
  const value = parameters[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value.trim())) return true;
    if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value.trim())) return false;
  }
  throw new ConfigError(`storage.s3.${key}: expected a boolean, got ${JSON.stringify(value)}`);
}
