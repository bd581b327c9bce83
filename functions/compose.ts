import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { type Authorizer, OPEN_ACCESS } from './auth/access.js';
import { BasicAuthorizer, BearerAuthorizer } from './auth/authorizers.js';
import { Logins } from './auth/credentials.js';
import {
  PasswordFile,
  PasswordFileError,
  type PasswordSource,
  WatchedPasswordFile,
} from './auth/htpasswd.js';
import { AccessPolicy } from './auth/policy.js';
import { LoginThrottle } from './auth/throttle.js';
import { TokenEndpoint } from './auth/token-endpoint.js';
import {
  certificateKeys,
  DEFAULT_ALGORITHMS,
  jwksUrl,
  parseJwks,
  SigningKey,
  TokenError,
  TokenIssuer,
  TokenVerifier,
  type VerifierKeys,
} from './auth/tokens.js';
import { ConfigError, type RegistryConfig } from './config.js';
import { isImmutable } from './maintenance/policies.js';
import type { RequestHandler } from './http/handler.js';
import type { Logger } from './log.js';
import { type Metrics, NO_METRICS } from './metrics/metrics.js';
import { broadcast, type EventSink } from './notifications/events.js';
import { Notifier } from './notifications/notifier.js';
import { StorageBackedMetadataStore } from './metadata/storage-backed.js';
import type { MetadataStore } from './metadata/store.js';
import type { RegistryOptions, UploadRouting } from './registry/context.js';
import { UploadUrlSigner } from './registry/upload-urls.js';
import { BlobStore } from './registry/blob-store.js';
import { Registry } from './registry/registry.js';
import type { StorageDriver } from './storage/driver.js';
import { FilesystemDriver } from './storage/filesystem.js';
import { MemoryDriver } from './storage/memory.js';
import { isSecretArn, readSecret, unreadableFile } from './secrets.js';

/** The one place where configuration becomes concrete parts. */
export interface Composition {
  /** What runtime adapters serve: the registry, behind the token endpoint when there is one. */
  handler: RequestHandler;
  registry: Registry;
  storage: StorageDriver;
  metadata: MetadataStore;
  /** Where the registry's events go (nowhere without notifications configured); close it on shutdown. */
  events: EventSink;
}

/** What the runtime brings to the composition. */
export interface RuntimeParts {
  /** Where measurements go: Prometheus on the standalone server, embedded metric format on Lambda. */
  metrics?: Metrics;
  /**
   * Whether the process keeps running between requests, so that webhooks can be delivered from a
   * queue in the background (the standalone server), or may be frozen once a response is returned
   * (Lambda), where only sinks that deliver before the response (EventBridge) work. @default true
   */
  deliverInBackground?: boolean;
  /**
   * Storage drivers the runtime can load beyond filesystem, inmemory and s3 (the standalone server's
   * azure and gcs). Passed in rather than imported here, because a bundler copies whatever this module
   * imports, even lazily, into the bundle: the Lambda function, which stores in S3, carries neither SDK.
   */
  storageDrivers?: Partial<Record<'azure' | 'gcs', DriverLoader>>;
}

/** Makes a driver from its configuration parameters (`storage.<type>`). */
export type DriverLoader = (parameters: Record<string, unknown>) => Promise<StorageDriver>;

/**
 * Builds the registry a configuration describes. Runtimes may override options the configuration does
 * not carry (the Lambda handler persists upload hash state, for one). Drivers beyond the filesystem
 * are loaded on demand, so a bundle carries only the SDKs its configuration uses.
 */
export async function composeRegistry(
  config: RegistryConfig,
  log: Logger,
  overrides: Partial<RegistryOptions> = {},
  runtime: RuntimeParts = {},
): Promise<Composition> {
  refuseUnimplemented(config, log);
  const events = await eventSink(config, log, runtime);
  const storage = await storageDriver(config, runtime);
  const metadata = await metadataStore(config, storage);
  // The upload service authorizes by signed URL alone (see Registry), so it takes no credentials.
  const { authorizer, tokenEndpoint } = config.uploads.only
    ? { authorizer: OPEN_ACCESS, tokenEndpoint: undefined }
    : await authentication(config, log);
  const uploads = await uploadRouting(config);
  const registry = new Registry({
    storage,
    metadata,
    log,
    authorizer,
    ...(uploads && { uploads }),
    ...(events !== NO_EVENTS && { notifier: notifier(config, events, log) }),
    options: {
      deleteEnabled: config.storage.delete.enabled,
      readOnly: config.storage.maintenance.readOnly.enabled,
      redirect: !config.storage.redirect.disable,
      redirectExpirySeconds: Math.max(1, Math.round(config.storage.redirect.expiryMs / 1000)),
      uploadTTLSeconds: Math.round(config.storage.maintenance.uploadPurging.ageMs / 1000),
      // Only local storage can read an unfinished upload back cheaply to re-derive its hash.
      persistHashState:
        config.storage.driver.type !== 'filesystem' && config.storage.driver.type !== 'inmemory',
      immutableTags: immutableTags(config),
      ...overrides,
    },
  });
  const handler: RequestHandler = tokenEndpoint
    ? {
        handle: (request, client = {}) =>
          tokenEndpoint.matches(new URL(request.url))
            ? tokenEndpoint.handle(request, client)
            : registry.handle(request, client),
      }
    : registry;
  return { handler, registry, storage, metadata, events };
}

/** The immutability rules as the registry asks them: is this tag of this repository immutable? */
function immutableTags(config: RegistryConfig): RegistryOptions['immutableTags'] {
  const rules = config.immutability;
  if (rules.length === 0) return () => false;
  return (repository, tag) => isImmutable(rules, repository, tag);
}

/**
 * The registry's data alone, blobs and metadata, as a configuration describes them: for maintenance
 * jobs (garbage collection, storage accounting) that serve no requests and send no events.
 */
export async function composeStorage(
  config: RegistryConfig,
  log: Logger,
  runtime: RuntimeParts = {},
): Promise<{ blobs: BlobStore; metadata: MetadataStore }> {
  const storage = await storageDriver(config, runtime);
  const metadata = await metadataStore(config, storage);
  log.debug('storage composed', { storage: config.storage.driver.type, metadata: config.metadata.type });
  return { blobs: new BlobStore(storage), metadata };
}

const NO_EVENTS: EventSink = { publish: () => Promise.resolve(), close: () => Promise.resolve() };

/** The sinks notifications.endpoints and notifications.eventbridge describe, as one. */
async function eventSink(config: RegistryConfig, log: Logger, runtime: RuntimeParts): Promise<EventSink> {
  const metrics = runtime.metrics ?? NO_METRICS;
  const endpoints = config.notifications.endpoints.filter((endpoint) => !endpoint.disabled);
  if (endpoints.length > 0 && runtime.deliverInBackground === false) {
    throw new ConfigError(
      'notifications.endpoints: webhooks need a process that runs between requests; on AWS, send events ' +
        'to EventBridge (notifications.eventbridge) and deliver webhooks with its rules (the construct does)',
    );
  }
  const sinks: EventSink[] = [];
  if (endpoints.length > 0) {
    const { WebhookSink } = await import('./notifications/webhook.js');
    for (const endpoint of endpoints) {
      const reference = endpoint.signingSecret;
      const signingSecret =
        reference !== undefined && isSecretArn(reference)
          ? (await readSecret(`notifications.endpoints ${endpoint.name} signingsecret`, reference)).trim()
          : reference;
      sinks.push(new WebhookSink({ ...endpoint, signingSecret }, { log, metrics }));
    }
  }
  if (config.notifications.eventBridge) {
    const { EventBridgeSink } = await import('./notifications/eventbridge.js');
    sinks.push(new EventBridgeSink(config.notifications.eventBridge, { log, metrics }));
  }
  if (sinks.length === 0) return NO_EVENTS;
  return sinks.length === 1 ? (sinks[0] as EventSink) : broadcast(sinks);
}

/** Events name this instance as their source: its host and port, or on Lambda the function. */
function notifier(config: RegistryConfig, sink: EventSink, log: Logger): Notifier {
  const lambda = process.env.AWS_LAMBDA_FUNCTION_NAME;
  const port = /:(\d+)$/.exec(config.http.addr)?.[1];
  const addr = lambda ?? (port === undefined ? hostname() : `${hostname()}:${port}`);
  return new Notifier({
    sink,
    log,
    includeReferences: config.notifications.events.includeReferences,
    source: { addr, instanceID: randomUUID() },
    host: config.http.host,
    relativeUrls: config.http.relativeUrls,
  });
}

/** Signed upload URLs, when the uploads section sends uploads elsewhere (or this is the upload service). */
async function uploadRouting(config: RegistryConfig): Promise<UploadRouting | undefined> {
  const { edge, service, only, urlExpiryMs } = config.uploads;
  const reference = config.http.secret;
  if ((!edge && service === undefined && !only) || reference === undefined) return undefined;
  const secret = isSecretArn(reference) ? (await readSecret('http.secret', reference)).trim() : reference;
  const signer = asConfigError(
    'http.secret',
    () => new UploadUrlSigner(secret, Math.round(urlExpiryMs / 1000)),
  );
  return { signer, edge, service, only };
}

/** The authorizer the auth and access sections describe, and the built-in token endpoint if configured. */
async function authentication(
  config: RegistryConfig,
  log: Logger,
): Promise<{ authorizer: Authorizer; tokenEndpoint?: TokenEndpoint }> {
  const auth = config.auth;
  if (!auth) {
    if (config.access) throw new ConfigError('access: access rules need authentication; configure auth too');
    return { authorizer: OPEN_ACCESS };
  }
  const policy = new AccessPolicy(config.access);
  if (auth.type === 'htpasswd') {
    const logins = await loginsFrom('auth.htpasswd.path', auth.path, log);
    return { authorizer: new BasicAuthorizer(auth.realm, logins, policy) };
  }
  const verify = {
    issuer: auth.issuer,
    service: auth.service,
    algorithms: auth.signingAlgorithms.length > 0 ? auth.signingAlgorithms : DEFAULT_ALGORITHMS,
  };
  const keys: VerifierKeys = { keys: [] };
  if (auth.rootCertBundle !== undefined) {
    const pem = await readSecret('auth.token.rootcertbundle', auth.rootCertBundle);
    keys.keys.push(
      ...asConfigError('auth.token.rootcertbundle', () => certificateKeys(pem, auth.rootCertBundle ?? '')),
    );
  }
  if (auth.jwks !== undefined) {
    const jwks = auth.jwks;
    if (/^https?:\/\//.test(jwks)) keys.jwksUrl = asConfigError('auth.token.jwks', () => jwksUrl(jwks));
    else {
      const text = await readSecret('auth.token.jwks', jwks);
      keys.jwks = asConfigError('auth.token.jwks', () => parseJwks(text));
    }
  }
  let tokenEndpoint: TokenEndpoint | undefined;
  if (auth.signingKey !== undefined && auth.htpasswd !== undefined) {
    const pem = await readSecret('auth.token.signingkey', auth.signingKey);
    const key = await SigningKey.fromPem(pem, 'auth.token.signingkey').catch((error: unknown) => {
      throw error instanceof TokenError ? new ConfigError(error.message) : error;
    });
    const issuer = new TokenIssuer({
      key,
      issuer: auth.issuer,
      service: auth.service,
      lifetimeSeconds: Math.round(auth.expirationMs / 1000),
      refreshLifetimeSeconds: Math.round(auth.refreshExpirationMs / 1000),
    });
    keys.keys.push(key.publicKey);
    if (!verify.algorithms.includes(key.algorithm)) verify.algorithms = [...verify.algorithms, key.algorithm];
    const logins = await loginsFrom('auth.token.htpasswd', auth.htpasswd, log);
    const path = new URL(auth.realm, 'http://registry.invalid').pathname;
    if (path.startsWith('/v2/') || path === '/v2') {
      throw new ConfigError(`auth.token.realm: the token endpoint cannot be under /v2/ (got ${path})`);
    }
    tokenEndpoint = new TokenEndpoint(
      { path, service: auth.service, realm: auth.service },
      issuer,
      logins,
      policy,
    );
  }
  const verifier = new TokenVerifier(verify, keys);
  const bearer = { realm: auth.realm, service: auth.service, externalUrl: config.http.host };
  return {
    authorizer: new BearerAuthorizer(bearer, verifier, policy),
    ...(tokenEndpoint ? { tokenEndpoint } : {}),
  };
}

/**
 * The users of an htpasswd reference: a secret is read once (per Lambda container), a file is followed
 * as it changes, so the standalone server takes new users without a restart.
 */
async function loginsFrom(key: string, reference: string, log: Logger): Promise<Logins> {
  let users: PasswordSource;
  if (isSecretArn(reference)) {
    const text = await readSecret(key, reference);
    users = asConfigError(key, () => new PasswordFile(text, reference));
  } else {
    users = await WatchedPasswordFile.open(reference, log).catch((error: unknown) => {
      if (error instanceof PasswordFileError) throw new ConfigError(`${key}: ${error.message}`);
      throw unreadableFile(key, reference, error);
    });
  }
  return new Logins(users, new LoginThrottle());
}

/** Runs a parser of configured key material, turning what it refuses into a ConfigError naming the key. */
function asConfigError<T>(key: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new ConfigError(`${key}: ${(error as Error).message}`);
  }
}

async function storageDriver(config: RegistryConfig, runtime: RuntimeParts): Promise<StorageDriver> {
  const driver = config.storage.driver;
  switch (driver.type) {
    case 'filesystem':
      return new FilesystemDriver(driver.rootDirectory);
    case 'inmemory':
      return new MemoryDriver();
    case 's3':
      return (await import('./storage/s3.js')).s3DriverFromParameters(driver.parameters);
    default: {
      const load = runtime.storageDrivers?.[driver.type];
      if (!load) {
        throw new ConfigError(
          `storage.${driver.type}: this storage driver is not available here (the Lambda function stores ` +
            'in S3); the standalone server has filesystem, inmemory, s3, azure and gcs',
        );
      }
      return load(driver.parameters);
    }
  }
}

async function metadataStore(config: RegistryConfig, storage: StorageDriver): Promise<MetadataStore> {
  const metadata = config.metadata;
  if (metadata.type === 'storage') return new StorageBackedMetadataStore(storage);
  const { DynamoDbMetadataStore } = await import('./metadata/dynamodb.js');
  return DynamoDbMetadataStore.fromConfig(metadata);
}

/** Configured features this version does not implement yet. */
function refuseUnimplemented(config: RegistryConfig, log: Logger): void {
  if (config.auth?.type === 'token' && config.auth.autoRedirect) {
    log.warn('auth.token.autoredirect: not supported; the realm is used as configured');
  }
  if (config.http.prefix !== '' && config.http.prefix !== '/') {
    throw new ConfigError('http.prefix: serving the API under a path prefix is not supported yet');
  }
}
