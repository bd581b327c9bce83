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
import type { RequestHandler } from './http/handler.js';
import type { Logger } from './log.js';
import { StorageBackedMetadataStore } from './metadata/storage-backed.js';
import type { MetadataStore } from './metadata/store.js';
import type { RegistryOptions, UploadRouting } from './registry/context.js';
import { UploadUrlSigner } from './registry/upload-urls.js';
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
}

/**
 * Builds the registry a configuration describes. Runtimes may override options the configuration does
 * not carry (the Lambda handler persists upload hash state, for one). Drivers beyond the filesystem
 * are loaded on demand, so a bundle carries only the SDKs its configuration uses.
 */
export async function composeRegistry(
  config: RegistryConfig,
  log: Logger,
  overrides: Partial<RegistryOptions> = {},
): Promise<Composition> {
  refuseUnimplemented(config, log);
  const storage = await storageDriver(config);
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
    options: {
      deleteEnabled: config.storage.delete.enabled,
      readOnly: config.storage.maintenance.readOnly.enabled,
      redirect: !config.storage.redirect.disable,
      redirectExpirySeconds: Math.max(1, Math.round(config.storage.redirect.expiryMs / 1000)),
      uploadTTLSeconds: Math.round(config.storage.maintenance.uploadPurging.ageMs / 1000),
      // Only local storage can read an unfinished upload back cheaply to re-derive its hash.
      persistHashState:
        config.storage.driver.type !== 'filesystem' && config.storage.driver.type !== 'inmemory',
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
  return { handler, registry, storage, metadata };
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

async function storageDriver(config: RegistryConfig): Promise<StorageDriver> {
  const driver = config.storage.driver;
  switch (driver.type) {
    case 'filesystem':
      return new FilesystemDriver(driver.rootDirectory);
    case 'inmemory':
      return new MemoryDriver();
    case 's3':
      return (await import('./storage/s3.js')).s3DriverFromParameters(driver.parameters);
    default:
      throw new ConfigError(
        `storage.${driver.type}: this storage driver is not available in this version; use filesystem, inmemory or s3`,
      );
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
  if (config.notifications.endpoints.some((endpoint) => !endpoint.disabled)) {
    log.warn('notifications.endpoints: notifications are not sent by this version (ignored)');
  }
  if (config.http.prefix !== '' && config.http.prefix !== '/') {
    throw new ConfigError('http.prefix: serving the API under a path prefix is not supported yet');
  }
}
