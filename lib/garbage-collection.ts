/**
 * Scheduled garbage collection: a function (functions/handlers/gc.ts) that EventBridge Scheduler starts
 * on a schedule, which removes what the retention policies expire, untagged manifests (when asked),
 * expired uploads and blobs no manifest names, while the registry keeps serving. A run longer than the
 * function's 15 minutes saves its state in the bucket and goes on in a new invocation of the function,
 * which the function makes itself.
 *
 * At rest it costs nothing: a schedule is free within EventBridge Scheduler's 14 million invocations a
 * month, and a daily run of a small registry takes seconds of Lambda time (within the free tier). A
 * large registry pays for the requests a run makes: one S3 LIST per 1,000 objects, DynamoDB reads of
 * every repository's tags and manifests, and a Scan of the table for upload sessions.
 */
import { Duration, type RemovalPolicy, Stack } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Policy, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Schedule, ScheduleExpression, ScheduleTargetInput, TimeWindow } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { Construct } from 'constructs';
import { DRY_RUN_VARIABLE } from '../functions/maintenance/job.js';
import { GC_HANDLER_ENTRY, RegistryFunction } from './registry-function.js';
import { grantMetadataScan, grantRegistryData } from './registry-grants.js';
import { type RetentionPolicyProps, retentionSection } from './registry-policies.js';

/** Every day at 03:00 UTC. */
export const DEFAULT_GC_SCHEDULE = ScheduleExpression.cron({ minute: '0', hour: '3' });

/** The function's timeout: Lambda's longest. A run that needs longer goes on in another invocation. */
export const GC_TIMEOUT = Duration.minutes(15);

/**
 * The function's memory: a whole vCPU (Lambda allocates CPU in proportion to memory), for the JSON of
 * manifests and the many requests in flight at once; a run is short, so the rate matters little.
 */
export const GC_MEMORY_MB = 1769;

export interface RegistryGarbageCollectionProps {
  /**
   * When runs start (EventBridge Scheduler: `cron(...)` or `rate(...)`, in UTC unless the expression
   * names a time zone).
   * @default DEFAULT_GC_SCHEDULE, every day at 03:00 UTC
   */
  readonly schedule?: ScheduleExpression;

  /**
   * Nothing written, pushed or used more recently than this before a run starts is removed by it
   * (gc.grace). It must be longer than any push takes, from its first layer to its manifest: a layer
   * uploaded but not yet named by a manifest is otherwise garbage.
   * @default Duration.hours(1)
   */
  readonly grace?: Duration;

  /**
   * Remove manifests no tag reaches in every repository (gc.deleteuntagged), like distribution's
   * `garbage-collect --delete-untagged`: an image pushed by digest only goes after the grace period.
   * @default false
   */
  readonly deleteUntagged?: boolean;

  /**
   * Runs report what they would remove (in the function's log) and remove nothing.
   * @default false
   */
  readonly dryRun?: boolean;

  /**
   * Retention policies (the registry's `retention` section): per repository, the first policy whose
   * repositories match applies.
   * @default none: only what no tag reaches goes
   */
  readonly retention?: RetentionPolicyProps[];
}

/** What the registry gives its garbage collection. */
export interface RegistryGarbageCollectionOptions {
  readonly bucket: IBucket;
  readonly table: ITable;
  /** The function's environment: where the data is, and gcEnvironment's variables. */
  readonly environment: Record<string, string>;
  readonly logRetention: RetentionDays;
  readonly logRemovalPolicy: RemovalPolicy;
}

/** The variables that configure the runs as props say: the gc and retention sections, and dry runs. */
export function gcEnvironment(props: RegistryGarbageCollectionProps): Record<string, string> {
  const grace = props.grace ?? Duration.hours(1);
  if (grace.isUnresolved()) throw new Error('garbageCollection.grace: must be known at synthesis');
  const retention = retentionSection(props.retention ?? [], 'garbageCollection.retention');
  return {
    REGISTRY_GC_GRACE: `${grace.toSeconds()}s`,
    REGISTRY_GC_DELETEUNTAGGED: String(props.deleteUntagged ?? false),
    [DRY_RUN_VARIABLE]: String(props.dryRun ?? false),
    ...(retention.length > 0 && { REGISTRY_RETENTION: JSON.stringify(retention) }),
  };
}

export class RegistryGarbageCollection extends Construct {
  /** The function that runs garbage collection. */
  readonly function: RegistryFunction;
  /** Lets the function invoke itself to continue a run: apart from its default policy (see below). */
  readonly selfInvoke: Policy;
  /** The schedule that starts the runs. */
  readonly schedule: Schedule;
  /** The role the schedule invokes the function with. */
  readonly scheduleRole: Role;

  constructor(
    scope: Construct,
    id: string,
    props: RegistryGarbageCollectionProps,
    options: RegistryGarbageCollectionOptions,
  ) {
    super(scope, id);
    this.function = new RegistryFunction(this, 'Function', {
      description: 'OCI Distribution registry: garbage collection, on a schedule',
      entry: GC_HANDLER_ENTRY,
      timeout: GC_TIMEOUT,
      memorySize: GC_MEMORY_MB,
      // One invocation at a time: runs never overlap, and a run's continuation, invoked while the
      // invocation before it still returns, waits in Lambda's queue (throttled asynchronous events are
      // retried for up to 6 hours) instead of running beside it.
      reservedConcurrentExecutions: 1,
      // A failed run is not tried again at once: the next scheduled run starts anew and finishes what
      // the failed one left (removals are idempotent). Lambda would otherwise retry twice.
      retryAttempts: 0,
      logRetention: options.logRetention,
      logRemovalPolicy: options.logRemovalPolicy,
      environment: options.environment,
    });
    grantRegistryData(this.function, options.bucket, options.table);
    grantMetadataScan(this.function, options.table);

    // The function's own ARN in its default policy would be a circular dependency (the function
    // depends on its default policy); a policy of its own, attached to the role, depends on the
    // function instead.
    const role = this.function.role;
    if (!role) throw new Error('the garbage collection function has no role');
    this.selfInvoke = new Policy(this, 'SelfInvoke', {
      statements: [
        new PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [this.function.functionArn] }),
      ],
      roles: [role],
    });

    // A role of its own, rather than the one the scheduler targets share in the stack: for this
    // account's schedules only (the confused deputy), and for this function only.
    this.scheduleRole = new Role(this, 'ScheduleRole', {
      description: 'EventBridge Scheduler invokes the registry garbage collection function with it',
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com').withConditions({
        StringEquals: { 'aws:SourceAccount': Stack.of(this).account },
      }),
    });
    this.schedule = new Schedule(this, 'Schedule', {
      description: 'Starts a garbage collection run of the registry',
      schedule: props.schedule ?? DEFAULT_GC_SCHEDULE,
      target: new LambdaInvoke(this.function, {
        role: this.scheduleRole,
        input: ScheduleTargetInput.fromObject({}),
        // Missed runs are not made up: the next one does the same work.
        retryAttempts: 0,
      }),
      timeWindow: TimeWindow.off(),
    });
    // The first run may need to continue itself.
    this.schedule.node.addDependency(this.selfInvoke);
  }
}
