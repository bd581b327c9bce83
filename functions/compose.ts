import { ConfigError, type RegistryConfig } from './config.js';
import type { Logger } from './log.js';
import { StorageBackedMetadataStore } from './metadata/storage-backed.js';
import type { MetadataStore } from './metadata/store.js';
import type { RegistryOptions } from './registry/context.js';
import { Registry } from './registry/registry.js';
import type { StorageDriver } from './storage/driver.js';
import { FilesystemDriver } from './storage/filesystem.js';
import { MemoryDriver } from './storage/memory.js';

/** The one place where configuration becomes concrete parts. */
export interface Composition {
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
  const registry = new Registry({
    storage,
    metadata,
    log,
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
  return { registry, storage, metadata };
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

/**
 * Configured features this version does not implement yet. Authentication is refused outright: starting
 * anyway would open to anonymous pushes a registry its operator meant to protect.
 */
function refuseUnimplemented(config: RegistryConfig, log: Logger): void {
  if (config.auth) {
    throw new ConfigError(
      `auth.${config.auth.type}: authentication is not implemented in this version, and the registry will not ` +
        'start unprotected when its configuration asks for protection; remove the auth section to run without it',
    );
  }
  if (config.notifications.endpoints.some((endpoint) => !endpoint.disabled)) {
    log.warn('notifications.endpoints: notifications are not sent by this version (ignored)');
  }
  if (config.http.prefix !== '' && config.http.prefix !== '/') {
    throw new ConfigError('http.prefix: serving the API under a path prefix is not supported yet');
  }
}
