/**
 * What every runner of garbage collection (the Lambda function on its schedule, `npm run gc`) shares:
 * the run's options from the registry's configuration, and the storage it works on.
 */
import type { RegistryConfig } from '../config.js';
import type { GcOptions } from './gc.js';

export { composeStorage } from '../compose.js';

/**
 * The scheduled function's own variable (a run option, not registry configuration): `true` makes every
 * run it starts a dry run.
 */
export const DRY_RUN_VARIABLE = 'GC_DRY_RUN';

/** What a runner may set for one run, over the configuration. */
export interface GcOverrides {
  /** Report what would go, remove nothing. @default false */
  dryRun?: boolean | undefined;
  /** @default gc.deleteuntagged */
  deleteUntagged?: boolean | undefined;
  /** @default gc.grace */
  graceMs?: number | undefined;
  /** Stop at this time (ms since the epoch) with a resumable state. @default none: run to the end */
  deadline?: number | undefined;
}

/**
 * The options of a run: gc.grace and gc.deleteuntagged, the retention policies, and the upload age
 * of storage.maintenance.uploadpurging when purging is enabled (disabled: uploads are left alone, as
 * distribution leaves them), each unless overrides say otherwise.
 */
export function gcOptions(config: RegistryConfig, overrides: GcOverrides = {}): GcOptions {
  const purging = config.storage.maintenance.uploadPurging;
  return {
    dryRun: overrides.dryRun ?? false,
    deleteUntagged: overrides.deleteUntagged ?? config.gc.deleteUntagged,
    graceMs: overrides.graceMs ?? config.gc.graceMs,
    retention: config.retention,
    uploadAgeMs: purging.enabled ? purging.ageMs : undefined,
    ...(overrides.deadline !== undefined && { deadline: overrides.deadline }),
  };
}
