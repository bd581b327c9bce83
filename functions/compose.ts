import { ConfigError, type RegistryConfig } from './config.js';
import type { Logger } from './log.js';
import { StorageBackedMetadataStore } from './metadata/storage-backed.js';
import type { MetadataStore } from './metadata/store.js';
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

export function composeRegistry(config: RegistryConfig, log: Logger): Composition {
  const storage = storageDriver(config);
  const metadata = new StorageBackedMetadataStore(storage);
  const registry = new Registry({
    storage,
    metadata,
    log,
    options: {
      deleteEnabled: config.storage.delete.enabled,
      readOnly: config.storage.maintenance.readOnly.enabled,
      redirect: !config.storage.redirect.disable,
      uploadTTLSeconds: Math.round(config.storage.maintenance.uploadPurging.ageMs / 1000),
    },
  });
  return { registry, storage, metadata };
}

function storageDriver(config: RegistryConfig): StorageDriver {
  const driver = config.storage.driver;
  switch (driver.type) {
    case 'filesystem':
      return new FilesystemDriver(driver.rootDirectory);
    case 'inmemory':
      return new MemoryDriver();
    default:
      throw new ConfigError(
        `storage.${driver.type}: this storage driver is not available in this version; use filesystem or inmemory`,
      );
  }
}
