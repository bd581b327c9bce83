/**
 * The AWS deployment on one machine, as a function: the real Lambda handler behind the local API Gateway
 * front (api-gateway.ts), with DynamoDB Local, a local S3 and, with authentication, a local Secrets
 * Manager holding the users and the signing key. The function's environment is the one the
 * ServerlessRegistry construct sets (the authentication part from the same code, lib/auth-environment.ts),
 * plus the local endpoints. `npm run local:aws` (bin/local-aws.ts) is this behind command-line flags;
 * tests start it in-process with startLocalAws, or as a child process (local-aws-process.ts).
 *
 * The settings the construct gives the functions (immutability, and garbage collection's grace,
 * deleteUntagged, dryRun and retention) are options here, checked at start by the registry's own
 * configuration and set as the construct sets them. What the construct does not set (read-only mode,
 * the upload age) an operator sets on AWS as variables of the function; here, the REGISTRY_* variables
 * of this process's environment reach the functions alike. The two functions share this process and
 * its environment: each gets the other's variables too, and ignores them, as each ignores the other's
 * sections of one configuration.
 *
 * In-process, the handler reads process.env when its module loads, as on Lambda: startLocalAws sets the
 * function's variables on process.env (restored by stop), and runs once per process.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import bcrypt from 'bcryptjs';
import {
  type AccessPolicy,
  type AuthType,
  authEnvironment,
  TOKEN_REALM,
} from '../../lib/auth-environment.js';
import type { Context } from 'aws-lambda';
import { ConfigError, loadConfig } from '../../functions/config.js';
import { createTable } from '../../functions/metadata/dynamodb.js';
import { jsonLogger } from '../../functions/log.js';
import { DRY_RUN_VARIABLE } from '../../functions/maintenance/job.js';
import { DEFAULT_EVENT_SOURCE } from '../../functions/notifications/events.js';
import { newSigningKeyPem } from '../../functions/handlers/signing-key.js';
import { uploadSecretId } from '../../functions/registry/upload-urls.js';
import type { ImmutabilityRuleSection, RetentionPolicySection } from '../../lib/registry-policies.js';
import { apiGatewayFront } from './api-gateway.js';
import { startLocalEdge } from './cloudfront.js';
import { startLocalEventBridge } from './eventbridge.js';
import { parseAddr } from './free-port.js';
import { startDynamoDbLocal } from './dynamodb-local.js';
import { type LocalLambda, startLocalLambda } from './lambda.js';
import { startFauxqs, startRgw, type S3Service } from './s3-local.js';
import { type LocalCredentials, startSecretsManager } from './secrets-manager.js';
import { type LocalUploadService, startUploadService } from './upload-service.js';

/** The message of the line `npm run local:aws` logs (stderr, JSON, with the description) once it serves. */
export const LOCAL_AWS_LISTENING_MESSAGE = 'local AWS registry listening';
/** How that line looks in the output. */
export const LOCAL_AWS_LISTENING = `"msg":"${LOCAL_AWS_LISTENING_MESSAGE}"`;

/** The service tokens are issued for, as the construct names it in this project's app (its stack name). */
export const LOCAL_AWS_SERVICE = 'ServerlessRegistry';

/** The stack's event bus, as the function knows it by name. */
const LOCAL_EVENT_BUS = 'registry-events';

/** Where the local secrets' fake ARNs say they live (the API Gateway front's account). */
const LOCAL_ACCOUNT = '000000000000';

/** The garbage collection function's name in the local Lambda. */
export const LOCAL_GC_FUNCTION = 'registry-gc';

export interface LocalAwsAuthOptions {
  readonly type: AuthType;
  /** The users: the content of an htpasswd file (bcrypt entries). See htpasswdFile. */
  readonly htpasswd: string;
  /** The access section (groups and rules). @default every signed-in user may do everything */
  readonly access?: AccessPolicy;
  /** Repository patterns anyone may pull from. */
  readonly anonymousPull?: string[];
  /** @default LOCAL_AWS_SERVICE */
  readonly service?: string;
  readonly issuer?: string;
  readonly tokenExpirationSeconds?: number;
}

export interface LocalAwsOptions {
  /** host:port to listen on; port 0 picks a free one. @default REGISTRY_HTTP_ADDR, else 127.0.0.1:5000 */
  readonly addr?: string;
  /**
   * The S3: `fauxqs` (fast, no signature checks), `rgw` (Ceph RGW from Debian packages: verifies SigV4
   * and presigned URLs) or `aws` (AWS_ENDPOINT_URL_S3, or AWS itself).
   * @default LOCAL_AWS_S3, else fauxqs, or rgw with the edge (aws when AWS_ENDPOINT_URL_S3 is set)
   */
  readonly s3?: 'fauxqs' | 'rgw' | 'aws';
  /** @default LOCAL_AWS_DYNAMODB, else local (aws when AWS_ENDPOINT_URL_DYNAMODB is set) */
  readonly dynamodb?: 'local' | 'aws';
  /** Authentication, as the construct's auth prop; none: an open registry, as deployed without it. */
  readonly auth?: LocalAwsAuthOptions;
  /**
   * Serve HTTPS with this certificate and key (PEM files), as API Gateway serves a custom domain: the
   * front then says X-Forwarded-Proto: https, and the token realm is an https URL.
   * @default plain HTTP
   */
  readonly tls?: LocalAwsTls;
  /**
   * The upload edge in front, as the construct's edge prop deploys it (CloudFront with its functions):
   * the real CloudFront Function code runs on every request, and one-PUT uploads go straight to the S3.
   */
  readonly edge?: boolean;
  /** The upload service beside the function, as the construct's uploadService prop deploys it on Fargate. */
  readonly uploadService?: boolean;
  /**
   * Webhook URLs, as the construct's notifications.webhooks: the events the function sends to the local
   * EventBridge are POSTed to each, as a rule with an API destination delivers them.
   */
  readonly webhooks?: readonly string[];
  /**
   * Tags that cannot be moved once pushed, as the construct's immutability prop: the registry's
   * `immutability` section, which the function gets as JSON in REGISTRY_IMMUTABILITY.
   */
  readonly immutability?: readonly ImmutabilityRuleSection[];
  /**
   * Scheduled garbage collection, as the construct's garbageCollection prop deploys it: the real GC
   * handler in a local Lambda (lambda.ts), invoked every `everyMs` as EventBridge Scheduler invokes it
   * (asynchronously, with `{}`), against the same S3 and DynamoDB; a run that outlasts an invocation
   * continues in the next through the local Lambda's Invoke API, which also runs it on demand. Its
   * settings become the variables the construct sets (REGISTRY_GC_GRACE, REGISTRY_GC_DELETEUNTAGGED,
   * GC_DRY_RUN, REGISTRY_RETENTION); those left out may come from this process's environment.
   */
  readonly gc?: LocalAwsGcOptions;
}

export interface LocalAwsGcOptions {
  /** How often a run is started. */
  readonly everyMs: number;
  /** The function's timeout (a run stops a minute before it, and continues). @default 15 minutes, as deployed */
  readonly timeoutMs?: number;
  /** garbageCollection.grace, in whole seconds. @default REGISTRY_GC_GRACE, else 1 hour */
  readonly graceMs?: number;
  /** garbageCollection.deleteUntagged. @default REGISTRY_GC_DELETEUNTAGGED, else false */
  readonly deleteUntagged?: boolean;
  /** garbageCollection.dryRun. @default GC_DRY_RUN, else false */
  readonly dryRun?: boolean;
  /** garbageCollection.retention, as the registry's `retention` section. @default REGISTRY_RETENTION, else none */
  readonly retention?: readonly RetentionPolicySection[];
}

export interface LocalAwsTls {
  /** The server certificate (PEM file; may hold the chain after it). */
  readonly certificate: string;
  /** Its private key (PEM file). */
  readonly key: string;
}

export interface LocalAws {
  /** http://host:port, or https:// with tls */
  readonly url: string;
  /** host:port, as clients name the registry. */
  readonly host: string;
  /** The function's variables set for the handler: REGISTRY_*, AWS_* and endpoints; ARNs, no secret values. */
  readonly environment: Readonly<Record<string, string>>;
  /**
   * What the listening line says: endpoints, bucket, table, with auth the realm and secret ARNs, and with
   * gc the local Lambda's endpoint (`lambda`), the function's ARN (`gcFunction`) and period (`gcEvery`).
   */
  readonly description: Readonly<Record<string, string>>;
  /** The local Lambda running the garbage collection function, with gc. */
  readonly lambda: LocalLambda | undefined;
  /** Stops the front and every service started here, and restores process.env. */
  stop(): Promise<void>;
}

let started = false;

/** Starts the local AWS registry in this process. */
export async function startLocalAws(options: LocalAwsOptions = {}): Promise<LocalAws> {
  const settings = await functionSettings(options);
  if (started) {
    throw new Error(
      'startLocalAws: one local AWS registry per process (the Lambda handler reads its environment once, ' +
        'when its module loads); start others as child processes (startLocalAwsProcess)',
    );
  }
  started = true;
  const env = process.env;
  const bucket = env.LOCAL_AWS_BUCKET ?? 'registry';
  const table = env.LOCAL_AWS_TABLE ?? 'registry';
  const { host, port } = parseAddr(options.addr ?? env.REGISTRY_HTTP_ADDR ?? '127.0.0.1:5000');
  const stops: (() => Promise<void>)[] = [];
  const saved = { ...env };
  const restoreEnv = () => {
    for (const key of Object.keys(env)) if (!(key in saved)) Reflect.deleteProperty(env, key);
    Object.assign(env, saved);
  };
  // The front first, then the services it uses, in the reverse order of their start.
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
    restoreEnv();
  };

  try {
    const s3 = await s3Service(options.s3, options.edge === true);
    const stopS3 = s3.stop;
    if (stopS3) stops.push(() => stopS3());
    const externalDynamoDb =
      options.dynamodb === 'aws' ||
      (options.dynamodb === undefined &&
        (env.AWS_ENDPOINT_URL_DYNAMODB !== undefined || env.LOCAL_AWS_DYNAMODB === 'aws'));
    const dynamodb = externalDynamoDb ? undefined : await startDynamoDbLocal();
    if (dynamodb) stops.push(() => dynamodb.stop());
    const dynamodbEndpoint = dynamodb?.endpoint ?? env.AWS_ENDPOINT_URL_DYNAMODB;
    const credentials: LocalCredentials = {
      accessKeyId: env.AWS_ACCESS_KEY_ID ?? 'local',
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? 'local',
    };
    if (s3.createBucket) await s3.createBucket(bucket);
    // With the function's credentials and region: DynamoDB Local keeps a database per key and region.
    if (dynamodb) await createTable(dynamodb.client({ credentials, region: s3.region }), table);
    const secrets = lazySecretStore(s3.region, credentials, stops);
    const auth = options.auth ? await authSecrets(options.auth, secrets) : undefined;
    const uploads = options.edge || options.uploadService ? await uploadSecret(secrets) : undefined;
    // With webhooks, as the construct's notifications prop: the function sends its events to the stack's
    // bus, whose rules (with API destinations, retrying as the construct's default) deliver them.
    const eventBridge = options.webhooks?.length
      ? await startLocalEventBridge({
          region: s3.region,
          credentials,
          buses: [LOCAL_EVENT_BUS],
          targets: options.webhooks.map((url) => ({ url, source: DEFAULT_EVENT_SOURCE, retryAttempts: 185 })),
        })
      : undefined;
    if (eventBridge) stops.push(() => eventBridge.close());
    // With gc, as the construct's garbageCollection prop: its function in a local Lambda, whose Invoke
    // API the function calls to continue a run. The handler is loaded below, with the registry's.
    let gcHandler: ((event: never, context: Context) => Promise<unknown>) | undefined;
    const lambda = options.gc
      ? await startLocalLambda({
          region: s3.region,
          credentials,
          accountId: LOCAL_ACCOUNT,
          functions: [
            {
              name: LOCAL_GC_FUNCTION,
              handler: (event, context) => {
                if (!gcHandler) throw new Error('the garbage collection handler is not loaded yet');
                return gcHandler(event, context);
              },
              timeoutMs: options.gc.timeoutMs ?? 15 * 60_000,
              memoryMb: 1769,
              // As the construct sets it: the next scheduled run starts anew.
              retryAttempts: 0,
            },
          ],
          log: jsonLogger('info'),
        })
      : undefined;
    if (lambda) stops.push(() => lambda.close());

    // The function's environment, as the CDK construct sets it, plus the local endpoints.
    const environment: Record<string, string> = {
      AWS_REGION: s3.region,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      REGISTRY_STORAGE: 's3',
      REGISTRY_STORAGE_S3_BUCKET: bucket,
      REGISTRY_STORAGE_S3_REGION: s3.region,
      REGISTRY_STORAGE_DELETE_ENABLED: 'true',
      REGISTRY_METADATA: 'dynamodb',
      REGISTRY_METADATA_DYNAMODB_TABLE: table,
      ...(s3.endpoint
        ? {
            REGISTRY_STORAGE_S3_REGIONENDPOINT: s3.endpoint,
            REGISTRY_STORAGE_S3_FORCEPATHSTYLE: 'true',
            REGISTRY_STORAGE_S3_ACCESSKEY: s3.accessKeyId ?? '',
            REGISTRY_STORAGE_S3_SECRETKEY: s3.secretAccessKey ?? '',
          }
        : {}),
      ...(dynamodbEndpoint ? { REGISTRY_METADATA_DYNAMODB_ENDPOINT: dynamodbEndpoint } : {}),
      ...(eventBridge && {
        REGISTRY_NOTIFICATIONS_EVENTBRIDGE_EVENTBUS: LOCAL_EVENT_BUS,
        REGISTRY_NOTIFICATIONS_EVENTBRIDGE_SOURCE: DEFAULT_EVENT_SOURCE,
        AWS_ENDPOINT_URL_EVENTBRIDGE: eventBridge.url,
      }),
      ...(auth?.environment ?? {}),
      ...(uploads?.environment ?? {}),
      ...(lambda && { AWS_ENDPOINT_URL_LAMBDA: lambda.url }),
      ...settings,
    };
    let service: LocalUploadService | undefined;
    if (options.uploadService) {
      // The container's variables: the function's storage, metadata and secret, not its auth or routing.
      service = await startUploadService({
        environment: Object.fromEntries(
          Object.entries(environment).filter(([name]) => !/^REGISTRY_(AUTH|ACCESS|UPLOADS)/.test(name)),
        ),
        ...(options.tls && { tls: options.tls }),
      });
      const started = service;
      stops.push(() => started.stop());
      environment.REGISTRY_UPLOADS_SERVICE = service.url;
    }
    if (options.edge) environment.REGISTRY_UPLOADS_EDGE = 'true';
    Object.assign(env, environment);
    // Imported only now: the handler reads its environment when its module loads, as on Lambda.
    const { handler } = await import('../../functions/handlers/registry.js');
    if (lambda && options.gc) {
      gcHandler = (await import('../../functions/handlers/gc.js')).handler;
      // EventBridge Scheduler's part: an asynchronous invocation with the schedule's input, `{}`.
      const timer = setInterval(() => {
        lambda.invokeAsync(LOCAL_GC_FUNCTION, {});
      }, options.gc.everyMs);
      stops.push(() => {
        clearInterval(timer);
        return Promise.resolve();
      });
    }

    // Without the edge, the API Gateway front is the registry's address; with it, the front listens on
    // a port of its own as the edge's origin (saying https when the edge does, as API Gateway would).
    let edgeAddress: string | undefined;
    const front = apiGatewayFront(handler, undefined, options.edge && options.tls ? 'https' : undefined);
    const server =
      options.tls && !options.edge
        ? createHttpsServer(
            { cert: await readFile(options.tls.certificate), key: await readFile(options.tls.key) },
            front,
          )
        : createServer(front);
    // Idle connections stay open longer than the edge's agent keeps them (5 s), so that the edge never
    // reuses one this server is closing (a 502 for the client).
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (options.edge) server.listen(0, '127.0.0.1', resolve);
      else server.listen(port, host, resolve);
    });
    stops.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    });
    if (options.edge && uploads) {
      const edge = await startLocalEdge({
        apiOrigin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        s3: {
          endpoint: s3.endpoint ?? `https://s3.${s3.region}.amazonaws.com`,
          bucket,
          region: s3.region,
          accessKeyId: s3.accessKeyId ?? credentials.accessKeyId,
          secretAccessKey: s3.secretAccessKey ?? credentials.secretAccessKey,
        },
        // What the construct's custom resource puts in the KeyValueStore: the secret under its kid.
        keyValueStore: new Map([[uploadSecretId(uploads.secret), uploads.secret]]),
        addr: `${host.includes(':') ? `[${host}]` : host}:${port}`,
        ...(options.tls && { tls: options.tls }),
      });
      stops.push(() => edge.stop());
      edgeAddress = edge.host;
    }
    const hostPort =
      edgeAddress ?? `${host.includes(':') ? `[${host}]` : host}:${(server.address() as AddressInfo).port}`;
    const url = `${options.tls ? 'https' : 'http'}://${hostPort}`;
    const description: Record<string, string> = {
      addr: hostPort,
      url,
      region: s3.region,
      s3: s3.endpoint ?? 'AWS',
      dynamodb: dynamodbEndpoint ?? 'AWS',
      bucket,
      table,
      ...(eventBridge && { eventBridge: eventBridge.url, webhooks: options.webhooks?.join(' ') ?? '' }),
      ...(auth ? { auth: options.auth?.type ?? '', ...auth.description } : {}),
      ...(auth && options.auth?.type === 'token' ? { realm: `${url}${TOKEN_REALM}` } : {}),
      ...(uploads && {
        uploadSecret: uploads.arn,
        secretsManager: uploads.environment.AWS_ENDPOINT_URL_SECRETS_MANAGER ?? '',
      }),
      ...(service && { uploadService: service.url }),
      ...(lambda &&
        options.gc && {
          lambda: lambda.url,
          gcFunction: lambda.arn(LOCAL_GC_FUNCTION),
          gcEvery: `${options.gc.everyMs / 1000}s`,
        }),
    };
    return {
      url,
      host: hostPort,
      environment,
      description,
      lambda,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * The variables the construct sets from the options' settings (lib/serverless-registry.ts and
 * lib/garbage-collection.ts), checked first by the registry's configuration as the functions will
 * read them: a mistake stops local-aws here rather than failing every request or run.
 */
async function functionSettings(options: LocalAwsOptions): Promise<Record<string, string>> {
  const { immutability, gc } = options;
  const settings: Record<string, string> = {
    ...(immutability !== undefined &&
      immutability.length > 0 && { REGISTRY_IMMUTABILITY: JSON.stringify(immutability) }),
    ...(gc?.graceMs !== undefined && { REGISTRY_GC_GRACE: `${gc.graceMs / 1000}s` }),
    ...(gc?.deleteUntagged !== undefined && { REGISTRY_GC_DELETEUNTAGGED: String(gc.deleteUntagged) }),
    ...(gc?.dryRun !== undefined && { [DRY_RUN_VARIABLE]: String(gc.dryRun) }),
    ...(gc?.retention !== undefined &&
      gc.retention.length > 0 && { REGISTRY_RETENTION: JSON.stringify(gc.retention) }),
  };
  if (Object.keys(settings).length === 0) return settings;
  try {
    // Over the embedded default configuration: nothing is opened, only the settings are parsed.
    await loadConfig({ env: settings });
  } catch (error) {
    if (error instanceof ConfigError) throw new Error(`the functions' configuration: ${error.message}`);
    throw error;
  }
  return settings;
}

interface SecretStore {
  /** The Secrets Manager endpoint the function is given. */
  readonly endpoint: string;
  /** Stores a secret under a name of this run; its ARN. */
  create(name: string, value: string): Promise<string>;
}

/**
 * The local Secrets Manager, started on first use (or the one AWS_ENDPOINT_URL_SECRETS_MANAGER names),
 * holding what the construct keeps in Secrets Manager: the users, the signing key, the upload URL secret.
 */
function lazySecretStore(
  region: string,
  credentials: LocalCredentials,
  stops: (() => Promise<void>)[],
): () => Promise<SecretStore> {
  let store: Promise<SecretStore> | undefined;
  const open = async (): Promise<SecretStore> => {
    let endpoint = process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
    if (endpoint === undefined) {
      const local = await startSecretsManager({ credentials, region, accountId: LOCAL_ACCOUNT });
      stops.push(() => local.stop());
      endpoint = local.endpoint;
    }
    const client = new SecretsManagerClient({ endpoint, region, credentials });
    stops.push(() => {
      client.destroy();
      return Promise.resolve();
    });
    // Names of their own, so that runs against a shared service (LocalStack) do not collide.
    const run = randomBytes(4).toString('hex');
    return {
      endpoint,
      create: async (name, value) => {
        const { ARN } = await client.send(
          new CreateSecretCommand({ Name: `local-aws/${run}/${name}`, SecretString: value }),
        );
        if (ARN === undefined) throw new Error(`CreateSecret ${name} gave no ARN`);
        return ARN;
      },
    };
  };
  return () => (store ??= open());
}

/** Stores the users and a fresh signing key as secrets, and gives the construct's variables for them. */
async function authSecrets(
  auth: LocalAwsAuthOptions,
  secrets: () => Promise<SecretStore>,
): Promise<{ environment: Record<string, string>; description: Record<string, string> }> {
  const store = await secrets();
  const htpasswdSecretArn = await store.create('htpasswd', auth.htpasswd);
  const signingKeySecretArn =
    auth.type === 'token' ? await store.create('signing-key', newSigningKeyPem()) : undefined;
  const environment = {
    AWS_ENDPOINT_URL_SECRETS_MANAGER: store.endpoint,
    ...authEnvironment({
      type: auth.type,
      htpasswdSecretArn,
      signingKeySecretArn,
      service: auth.service ?? LOCAL_AWS_SERVICE,
      issuer: auth.issuer,
      tokenExpirationSeconds: auth.tokenExpirationSeconds,
      access: auth.access,
      anonymousPull: auth.anonymousPull,
    }),
  };
  return {
    environment,
    description: {
      secretsManager: store.endpoint,
      htpasswdSecret: htpasswdSecretArn,
      ...(signingKeySecretArn === undefined ? {} : { signingKeySecret: signingKeySecretArn }),
    },
  };
}

/**
 * The secret upload URLs are signed with, generated as CloudFormation generates it for the construct
 * (43 characters, no punctuation), in Secrets Manager; the function and the upload service get its ARN.
 */
async function uploadSecret(
  secrets: () => Promise<SecretStore>,
): Promise<{ secret: string; arn: string; environment: Record<string, string> }> {
  const store = await secrets();
  const secret = randomBytes(32).toString('base64url').replace(/[-_]/g, 'x');
  const arn = await store.create('upload-url-secret', secret);
  return {
    secret,
    arn,
    environment: { AWS_ENDPOINT_URL_SECRETS_MANAGER: store.endpoint, REGISTRY_HTTP_SECRET: arn },
  };
}

/** An htpasswd file for users (name → password), bcrypt-hashed as `htpasswd -nbB` does. */
export function htpasswdFile(users: Readonly<Record<string, string>>): string {
  return Object.entries(users)
    .map(([user, password]) => `${user}:${bcrypt.hashSync(password, 10)}\n`)
    .join('');
}

/** The S3 to use: one already running (AWS_ENDPOINT_URL_S3, or AWS itself), or one started here. */
async function s3Service(
  kind: LocalAwsOptions['s3'],
  edge: boolean,
): Promise<Partial<S3Service> & { region: string }> {
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const endpoint = process.env.AWS_ENDPOINT_URL_S3;
  // The edge relies on S3 checking each upload's body against its digest: fauxqs checks nothing (and
  // takes at most 11 MiB in one PUT), so the edge gets the RGW unless told otherwise.
  const fallback = edge ? 'rgw' : 'fauxqs';
  const chosen = kind ?? (endpoint !== undefined ? 'aws' : (process.env.LOCAL_AWS_S3 ?? fallback));
  if (chosen === 'aws') {
    return {
      region,
      endpoint,
      accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '',
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '',
    };
  }
  return chosen === 'rgw' ? startRgw() : startFauxqs();
}
