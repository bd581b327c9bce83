import { join } from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import {
  ApplicationLogLevel,
  Architecture,
  LoggingFormat,
  Runtime,
  SystemLogLevel,
} from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, type NodejsFunctionProps, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { PROJECT_ROOT } from './project-root.js';

/** The Lambda entry point of the registry, exporting `handler`. */
export const REGISTRY_HANDLER_ENTRY: string = join(PROJECT_ROOT, 'functions', 'handlers', 'registry.ts');

/** The Lambda entry point of scheduled garbage collection, exporting `handler`. */
export const GC_HANDLER_ENTRY: string = join(PROJECT_ROOT, 'functions', 'handlers', 'gc.ts');

/** The custom resource handler that fills the token signing key's secret, exporting `handler`. */
export const SIGNING_KEY_HANDLER_ENTRY: string = join(
  PROJECT_ROOT,
  'functions',
  'handlers',
  'signing-key.ts',
);

/** The custom resource handler that puts the upload URL secret into the upload edge's KeyValueStore. */
export const UPLOAD_KEY_HANDLER_ENTRY: string = join(PROJECT_ROOT, 'functions', 'handlers', 'upload-key.ts');

export interface RegistryFunctionProps extends Omit<
  NodejsFunctionProps,
  'logGroup' | 'logRetention' | 'logRetentionRole' | 'logRetentionRetryOptions'
> {
  /** How long the function's logs are kept. @default one month */
  readonly logRetention?: RetentionDays;
  /** What happens to the function's log group when the stack is deleted. @default RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/**
 * A Node.js function with this project's defaults set once: Node.js 22 on arm64, one ESM bundle made by
 * the local esbuild (no Docker) with source maps, JSON logs into a log group with a retention, and the
 * registry's handler as the entry unless told otherwise. Every default can be overridden by a prop.
 */
export class RegistryFunction extends NodejsFunction {
  constructor(scope: Construct, id: string, props: RegistryFunctionProps = {}) {
    const { logRetention, logRemovalPolicy, bundling, ...functionProps } = props;
    const logGroup = new LogGroup(scope, `${id}LogGroup`, {
      retention: logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: logRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
    super(scope, id, {
      runtime: Runtime.NODEJS_22_X,
      // Graviton: 20% cheaper per GB-second than x86; nothing in the bundle is native code.
      architecture: Architecture.ARM_64,
      entry: REGISTRY_HANDLER_ENTRY,
      handler: 'handler',
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
      // Lambda allocates CPU in proportion to memory (a whole vCPU at 1,769 MB), and the registry's work
      // is CPU: SHA-256 over upload chunks and base64 of request bodies of up to 6 MB. 1,024 MB (about
      // 0.6 vCPU) keeps an upload request short; less slows every one in proportion. Idle costs nothing.
      memorySize: 1024,
      // API Gateway gives up on an integration after 30 s (its hard limit for HTTP APIs): running longer
      // would do work no client waits for. Requests are bounded (one chunk, one page) and finish well
      // within it.
      timeout: Duration.seconds(30),
      // Application lines are already JSON with a `level` (functions/log.ts), filtered by
      // REGISTRY_LOG_LEVEL; Lambda's JSON format adds its own START/REPORT records as JSON beside them.
      // Lambda's filter is left at DEBUG so the registry's own setting is the one that decides.
      loggingFormat: LoggingFormat.JSON,
      applicationLogLevelV2: ApplicationLogLevel.DEBUG,
      systemLogLevelV2: SystemLogLevel.INFO,
      logGroup,
      ...functionProps,
      bundling: {
        format: OutputFormat.ESM,
        // Prefer packages' ESM builds: better tree-shaking.
        mainFields: ['module', 'main'],
        // CommonJS dependencies bundled into ESM still call require() for Node built-ins.
        banner:
          "import { createRequire as topLevelCreateRequire } from 'node:module'; const require = topLevelCreateRequire(import.meta.url);",
        target: 'node22',
        minify: true,
        sourceMap: true,
        // Stack traces need the mappings only (NODE_OPTIONS=--enable-source-maps); not the sources.
        sourcesContent: false,
        // The Node.js 22 runtime ships an AWS SDK v3, but of whatever version the runtime carries. We
        // bundle the version pinned in package-lock.json, the one the tests ran against; tree-shaking
        // keeps only the code of the clients we call (S3, DynamoDB, Secrets Manager).
        bundleAwsSDK: true,
        ...bundling,
      },
    });
  }
}
