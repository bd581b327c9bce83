/**
 * The Lambda entry point of scheduled garbage collection (functions/maintenance/gc.ts). EventBridge
 * Scheduler invokes it with `{}`, which starts a run; `{ "run": "<id>" }` continues a run that an
 * earlier invocation paused; `"dryRun": true` makes a new run report what it would remove and remove
 * nothing (GC_DRY_RUN=true makes every run a dry run).
 *
 * The configuration comes from REGISTRY_* variables, read once per container at init as the registry
 * function reads it (gc.grace, gc.deleteuntagged, retention, storage.maintenance.uploadpurging). A run
 * that would outlast the invocation stops SAFETY_MARGIN_MS before Lambda's timeout with its state
 * saved in storage, and the function invokes itself asynchronously with the run's id to go on; the
 * construct gives it a reserved concurrency of 1, so runs never overlap (a continuation queued while
 * this invocation still runs waits in Lambda's queue, which retries throttled events for hours).
 *
 * Errors propagate: the invocation fails and Lambda logs it. The construct sets the function's async
 * retries to 0, so a failed run is not retried at once but started anew by the next schedule (a run
 * changes nothing that a later run cannot finish).
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { Context } from 'aws-lambda';
import { ConfigError, loadConfig, type RegistryConfig } from '../config.js';
import { errorFields, jsonLogger } from '../log.js';
import type { BlobStore } from '../registry/blob-store.js';
import type { MetadataStore } from '../metadata/store.js';
import { collectGarbage, type GcReport } from '../maintenance/gc.js';
import { composeStorage, DRY_RUN_VARIABLE, gcOptions } from '../maintenance/job.js';

/**
 * How long before Lambda's timeout a run stops: time to finish the repository or batch of blobs under
 * way, save the run's state and invoke the continuation.
 */
export const SAFETY_MARGIN_MS = 60_000;

/** What the function is invoked with. */
export interface GcEvent {
  /** Continue this paused run (its options are the ones it started with). */
  run?: string;
  /** A new run reports what it would remove and removes nothing. @default GC_DRY_RUN */
  dryRun?: boolean;
}

/** What an invocation returns: the run's totals when it finished, or the run that goes on. */
export type GcSummary =
  | {
      done: true;
      run: string;
      dryRun: boolean;
      startedAt: string;
      finishedAt: string;
      repositories: number;
      removed: GcReport['removed'];
      rescued: number;
      kept: GcReport['kept'];
    }
  | { done: false; run: string; continuedBy: 'invocation' };

/** Logs until the configuration says how (and what it says when it is wrong). */
const startLog = jsonLogger('info');

/** What a container keeps between invocations. */
interface Container {
  config: RegistryConfig;
  blobs: BlobStore;
  metadata: MetadataStore;
  dryRun: boolean;
  lambda(): LambdaClient;
}

async function start(): Promise<Container> {
  const { config, warnings } = await loadConfig({ env: process.env });
  const log = jsonLogger(config.log.level, config.log.fields);
  for (const warning of warnings) log.warn(warning);
  const dryRun = process.env[DRY_RUN_VARIABLE];
  if (dryRun !== undefined && dryRun !== 'true' && dryRun !== 'false') {
    throw new ConfigError(`${DRY_RUN_VARIABLE}: expected true or false, got ${JSON.stringify(dryRun)}`);
  }
  const { blobs, metadata } = await composeStorage(config, log);
  let lambda: LambdaClient | undefined;
  return {
    config,
    blobs,
    metadata,
    dryRun: dryRun === 'true',
    lambda: () => (lambda ??= new LambdaClient({})),
  };
}

function starting(): Promise<Container> {
  const started = start();
  // Reported by each invocation: a rejection nobody awaits yet must not end the process at init.
  started.catch(() => undefined);
  return started;
}

let ready: Promise<Container> | undefined = starting();

export async function handler(event: GcEvent | null | undefined, context: Context): Promise<GcSummary> {
  const remaining = context.getRemainingTimeInMillis();
  if (remaining <= SAFETY_MARGIN_MS) {
    // It would stop before doing anything, and invoke itself again, forever.
    throw new Error(
      `garbage collection needs more than ${SAFETY_MARGIN_MS / 1000} s per invocation, ` +
        `${Math.floor(remaining / 1000)} s remain: raise the function's timeout`,
    );
  }
  const deadline = Date.now() + remaining - SAFETY_MARGIN_MS;
  const request = parseEvent(event);
  ready ??= starting();
  let container: Container;
  try {
    container = await ready;
  } catch (error) {
    const requestId = context.awsRequestId;
    if (error instanceof ConfigError) {
      startLog.error('configuration error: garbage collection cannot start', {
        requestId,
        error: error.message,
      });
    } else {
      // Anything else may be passing: the next invocation tries again.
      ready = undefined;
      startLog.error('garbage collection failed to start', { requestId, ...errorFields(error) });
    }
    throw error;
  }
  const { config } = container;
  const log = jsonLogger(config.log.level, { ...config.log.fields, requestId: context.awsRequestId });
  const options = gcOptions(config, { dryRun: request.dryRun ?? container.dryRun, deadline });
  const result = await collectGarbage(
    { blobs: container.blobs, metadata: container.metadata, log },
    options,
    request.run,
  );
  if (result.done) return summary(result.report);

  // On in a new invocation, with a whole timeout of its own.
  const payload: GcEvent = { run: result.run };
  const invoked = await container.lambda().send(
    new InvokeCommand({
      FunctionName: context.invokedFunctionArn,
      InvocationType: 'Event',
      Payload: new TextEncoder().encode(JSON.stringify(payload)),
    }),
  );
  if (invoked.StatusCode !== 202) {
    throw new Error(
      `garbage collection ${result.run}: invoking the continuation answered ${String(invoked.StatusCode)}`,
    );
  }
  log.info('garbage collection continues in a new invocation', {
    run: result.run,
    function: context.invokedFunctionArn,
  });
  return { done: false, run: result.run, continuedBy: 'invocation' };
}

/** The event's fields; anything else in it (a scheduler's or a rule's own fields) is ignored. */
function parseEvent(event: GcEvent | null | undefined): GcEvent {
  if (event === null || event === undefined) return {};
  if (typeof event !== 'object' || Array.isArray(event)) {
    throw new Error(`garbage collection: expected an event object such as {} or {"run": "<id>"}`);
  }
  const { run, dryRun } = event as Record<string, unknown>;
  if (run !== undefined && (typeof run !== 'string' || run === '')) {
    throw new Error(`garbage collection: run must be a run id, got ${JSON.stringify(run)}`);
  }
  if (dryRun !== undefined && typeof dryRun !== 'boolean') {
    throw new Error(`garbage collection: dryRun must be true or false, got ${JSON.stringify(dryRun)}`);
  }
  return { ...(run !== undefined && { run }), ...(dryRun !== undefined && { dryRun }) };
}

/** The report's totals: the engine has logged the whole report, repository by repository. */
function summary(report: GcReport): GcSummary {
  return {
    done: true,
    run: report.run,
    dryRun: report.dryRun,
    startedAt: report.startedAt,
    finishedAt: report.finishedAt,
    repositories: report.repositories.length,
    removed: report.removed,
    rescued: report.rescued,
    kept: report.kept,
  };
}
