/** The API suite against the core: Registry.handle called with Web Requests, over the memory driver. */
import { StorageBackedMetadataStore } from '../../functions/metadata/storage-backed.js';
import type { RegistryOptions } from '../../functions/registry/context.js';
import { Registry } from '../../functions/registry/registry.js';
import { MemoryDriver } from '../../functions/storage/memory.js';
import type { ApiTarget } from './helpers.js';
import { describeRegistryApi } from './suite.js';

/** The length of a body an HTTP client would announce in Content-Length; undefined for a stream. */
function declaredLength(body: RequestInit['body']): number | undefined {
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof Uint8Array || body instanceof ArrayBuffer) return body.byteLength;
  return undefined;
}

function coreTarget(storage: MemoryDriver, options?: Partial<RegistryOptions>): ApiTarget {
  const registry = new Registry({ storage, metadata: new StorageBackedMetadataStore(storage), options });
  return {
    request(path, init = {}) {
      // As over HTTP, a body of known size comes with its Content-Length.
      const headers = new Headers(init.headers);
      const length = declaredLength(init.body);
      if (length !== undefined && !headers.has('content-length'))
        headers.set('content-length', String(length));
      return registry.handle(new Request(`http://registry.test${path}`, { ...init, headers }));
    },
    reopen: (reopenOptions) => Promise.resolve(coreTarget(storage, reopenOptions)),
    close: () => Promise.resolve(),
  };
}

describeRegistryApi('registry core (memory driver)', (options) =>
  Promise.resolve(coreTarget(new MemoryDriver(), options)),
);

// As on Lambda: every upload session carries its serialized hash state.
describeRegistryApi('registry core persisting upload hash state (memory driver)', (options) =>
  Promise.resolve(coreTarget(new MemoryDriver(), { persistHashState: true, ...options })),
);
