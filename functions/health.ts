/**
 * Health checks, as distribution's /debug/health reports them: a map of the checks that fail, by
 * name, to what went wrong (empty when healthy). The standalone server polls them in the background
 * (HealthMonitor) or runs them on demand; on Lambda a scheduled invocation runs them.
 */
import type { RegistryConfig } from './config.js';
import { silentLogger, type Logger } from './log.js';
import type { MetadataStore } from './metadata/store.js';
import { PathNotFoundError, type StorageDriver } from './storage/driver.js';

/** What the health checks watch, and the names of their checks. */
export interface HealthTargets {
  /** Checked as `storagedriver_<type>`, distribution's name for its storage check. */
  storage: { driver: StorageDriver; type: string };
  /**
   * Checked as `metadata_<type>` when the metadata has a store of its own (DynamoDB). Metadata kept in
   * storage answers when storage does, and its catalog is a walk of every repository: it is not checked apart.
   */
  metadata?: { store: MetadataStore; type: string } | undefined;
}

/** The targets of a composed registry, named after its configuration. */
export function healthTargets(
  config: RegistryConfig,
  parts: { storage: StorageDriver; metadata: MetadataStore },
): HealthTargets {
  return {
    storage: { driver: parts.storage, type: config.storage.driver.type },
    metadata:
      config.metadata.type === 'storage' ? undefined : { store: parts.metadata, type: config.metadata.type },
  };
}

/** Runs every check at once, each for at most timeoutMs; the failing ones, by name, with their error. */
export async function checkHealth(targets: HealthTargets, timeoutMs = 5000): Promise<Record<string, string>> {
  const checks: [string, () => Promise<unknown>][] = [
    [
      `storagedriver_${targets.storage.type}`,
      // distribution stats the root, which a driver here refuses as a path: listing it asks as little.
      // As there, storage that says the root is not found has answered.
      () =>
        targets.storage.driver.list('/').catch((error: unknown) => {
          if (!(error instanceof PathNotFoundError)) throw error;
        }),
    ],
  ];
  const metadata = targets.metadata;
  if (metadata) {
    checks.push([`metadata_${metadata.type}`, () => metadata.store.listRepositories({ limit: 1 })]);
  }
  const results = await Promise.all(
    checks.map(async ([name, check]) => [name, await failure(check, timeoutMs)] as const),
  );
  const failing: Record<string, string> = {};
  for (const [name, error] of results) if (error !== undefined) failing[name] = error;
  return failing;
}

/** Why check failed, or undefined when it answered within timeoutMs. */
async function failure(check: () => Promise<unknown>, timeoutMs: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => {
      resolve(`no answer within ${timeoutMs} ms`);
    }, timeoutMs);
    timer.unref();
  });
  try {
    return await Promise.race([
      check().then(
        () => undefined,
        (error: unknown) => (error instanceof Error ? error.message : String(error)),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs checks in the background, distribution's periodic threshold checker: a check is reported only
 * after `threshold` failures in a row, and one success clears it. The first run starts at once; each
 * next one intervalMs after the last ended, so that slow checks never pile up.
 */
export class HealthMonitor {
  private readonly failures = new Map<string, number>();
  private readonly failing = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly check: () => Promise<Record<string, string>>,
    private readonly options: { intervalMs: number; threshold: number },
    private readonly log: Logger = silentLogger,
  ) {
    void this.run();
  }

  /** The checks that failed threshold times in a row, by name (empty when healthy). */
  status(): Record<string, string> {
    return Object.fromEntries(this.failing);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async run(): Promise<void> {
    let result: Record<string, string>;
    try {
      result = await this.check();
    } catch (error) {
      result = { health: error instanceof Error ? error.message : String(error) };
    }
    if (this.stopped) return;
    this.record(result);
    this.timer = setTimeout(() => {
      void this.run();
    }, this.options.intervalMs);
    this.timer.unref();
  }

  private record(result: Record<string, string>): void {
    for (const name of [...this.failures.keys()]) {
      if (name in result) continue;
      this.failures.delete(name);
      if (this.failing.delete(name)) {
        this.log.info('health check passes again', { check: name });
      }
    }
    for (const [name, error] of Object.entries(result)) {
      const count = (this.failures.get(name) ?? 0) + 1;
      this.failures.set(name, count);
      if (count < this.options.threshold) continue;
      if (!this.failing.has(name)) this.log.error('health check failing', { check: name, error, count });
      this.failing.set(name, error);
    }
  }
}

/**
 * distribution's answer to GET /debug/health: 200 with `{}` when healthy, 503 with the failing checks
 * otherwise. (It answers other methods 404; the debug listener does that before asking.)
 */
export function healthResponse(failing: Record<string, string>): Response {
  const body = JSON.stringify(failing);
  return new Response(body, {
    status: Object.keys(failing).length === 0 ? 200 : 503,
    headers: {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
    },
  });
}
