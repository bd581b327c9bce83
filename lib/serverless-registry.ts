import { Annotations, CfnOutput, Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  ApiMapping,
  DomainName,
  EndpointType,
  HttpApi,
  HttpStage,
  LogGroupLogDestination,
  PayloadFormatVersion,
  SecurityPolicy,
  type ThrottleSettings,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { Certificate, CertificateValidation, type ICertificate } from 'aws-cdk-lib/aws-certificatemanager';
import { AttributeType, BillingMode, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { EventBus } from 'aws-cdk-lib/aws-events';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { ARecord, type IHostedZone, RecordTarget } from 'aws-cdk-lib/aws-route53';
import { ApiGatewayv2DomainProperties } from 'aws-cdk-lib/aws-route53-targets';
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  type IBucket,
  ObjectOwnership,
} from 'aws-cdk-lib/aws-s3';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import {
  gcEnvironment,
  RegistryGarbageCollection,
  type RegistryGarbageCollectionProps,
} from './garbage-collection.js';
import { defaultMetricsNamespace, RegistryMonitoring, type RegistryMonitoringProps } from './monitoring.js';
import { RegistryNotifications, type RegistryNotificationsProps } from './notifications.js';
import { RegistryAuth, type RegistryAuthProps } from './registry-auth.js';
import { RegistryFunction } from './registry-function.js';
import { grantEventPublishing, grantRegistryData, grantSecretValue } from './registry-grants.js';
import { type ImmutabilityRuleProps, immutabilitySection } from './registry-policies.js';
import { UploadEdge } from './upload-edge.js';
import { UploadService, type UploadServiceProps } from './upload-service.js';

/** Where abandoned upload state lives in the bucket (the registry's S3 layout). */
export const UPLOADS_PREFIX = 'uploads/';

/**
 * How long an upload may stay unfinished: the registry's storage.maintenance.uploadpurging.age (its
 * default, 168h), after which its session expires, garbage collection removes what it left, and the
 * bucket's lifecycle rules remove its S3 multipart upload parts and upload state.
 */
export const UPLOAD_AGE = Duration.days(7);

/**
 * Default API throttling, over the whole API. A pull of a ten-layer image is about 25 requests, nearly
 * all short (blob GETs are redirects), so 1,000 requests a second with bursts of 2,000 let about 40
 * such pulls start every second (80 at once) while a registry at the limit uses about a tenth of the
 * account's default Lambda concurrency (1,000) and of API Gateway's account quota (10,000 rps). The
 * limit also bounds what a runaway client costs: about US$10 an hour of requests and Lambda time at
 * 100 ms a request.
 */
export const DEFAULT_THROTTLE: Required<ThrottleSettings> = { rateLimit: 1000, burstLimit: 2000 };

/** Lambda's limit on a function's environment: the names and values of all its variables together. */
export const LAMBDA_ENVIRONMENT_LIMIT = 4096;

/**
 * What a value known only at deploy time is counted as, against that limit: more than a bucket name
 * (63), a table name CloudFormation generates (about 60) or a secret ARN (about 110) takes.
 */
const UNRESOLVED_VALUE_BYTES = 200;

export interface ServerlessRegistryProps {
  /**
   * Allow `DELETE` of manifests, tags and blobs (REGISTRY_STORAGE_DELETE_ENABLED).
   * @default true
   */
  readonly deleteEnabled?: boolean;

  /**
   * A custom domain for the registry, e.g. `registry.example.com`. Needs `certificate`, or `hostedZone`
   * to create and DNS-validate one (and the alias record) in. With `edge`, the domain is the
   * distribution's; without, the API's.
   * @default - the API's execute-api URL (with `edge`, the distribution's cloudfront.net name)
   */
  readonly domainName?: string;

  /**
   * An ACM certificate for `domainName`: in the stack's region (the API endpoint is regional), or with
   * `edge` in us-east-1 (CloudFront's).
   * @default - created with DNS validation in `hostedZone`, when given (with `edge`: only in a stack in us-east-1)
   */
  readonly certificate?: ICertificate;

  /**
   * The Route 53 zone of `domainName`: a certificate is created and validated in it (unless
   * `certificate` is given) and an alias record points the domain at the API.
   * @default - no DNS records; point `domainName` at the `DomainTarget` output yourself
   */
  readonly hostedZone?: IHostedZone;

  /**
   * What happens to the registry's data (the bucket, the table) and logs when the stack is deleted.
   * With DESTROY the bucket is emptied first (by a custom resource) so that the deletion succeeds.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * The function's memory in MB; Lambda allocates CPU in proportion, which the registry spends on
   * hashing and base64.
   * @default 1024
   */
  readonly memorySize?: number;

  /**
   * How long the presigned S3 URLs that blob downloads are redirected to stay valid. Long enough for
   * a slow client to start its download; each pull asks for a fresh one.
   * @default Duration.minutes(20)
   */
  readonly redirectExpiry?: Duration;

  /**
   * How long the function's logs and the API's access logs are kept.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;

  /**
   * Request rate limits for the whole API (requests per second, and burst).
   * @default DEFAULT_THROTTLE (1,000 rps, bursts of 2,000)
   */
  readonly throttle?: ThrottleSettings;

  /**
   * A bucket for the storage bucket's S3 server access logs (under `registry-storage/`). Every request
   * to the registry is in the API's access log already, pulls included (as the redirect that signs the
   * download), so these are for audits that need the object-level record.
   * @default - no server access logs
   */
  readonly serverAccessLogsBucket?: IBucket;

  /**
   * Authentication and access control: users in an htpasswd file and, for token authentication, the
   * key tokens are signed with, both in Secrets Manager (see RegistryAuthProps).
   * @default - none: anyone who knows the URL may push, pull and delete (a synth warning says so)
   */
  readonly auth?: RegistryAuthProps;

  /**
   * The upload edge: a CloudFront distribution in front of the API that becomes the registry's address
   * and takes one-PUT blob uploads (containerd, BuildKit, Docker's containerd store) straight into S3,
   * up to S3's 5 GiB for one PUT, past the API's ~4.4 MiB request limit. Costs nothing at rest.
   * @default false
   */
  readonly edge?: boolean;

  /**
   * The upload service: the registry's server on Fargate behind an HTTPS load balancer on its own
   * domain, taking PATCH uploads (docker, podman, skopeo, crane) of any size. About US$31–35 a month
   * at rest (us-east-1).
   * @default - none
   */
  readonly uploadService?: UploadServiceProps;

  /**
   * Notifications: the function (and the upload service) put an event on the registry's bus for every
   * push, pull, mount and delete, which rules deliver to webhooks, queues and functions (see
   * RegistryNotificationsProps; `{}` puts events on the bus for rules of your own). Events are billed
   * as they are put (US$1 a million; a pull of a ten-layer image makes 11), bus or no listener, which
   * is why the function sends none, and may not, until asked. At rest: nothing, but US$0.40 a month
   * for each webhook's generated token.
   * @default - no events
   */
  readonly notifications?: RegistryNotificationsProps;

  /**
   * Alarms (server errors, function errors and throttles, notifications not delivered) and a
   * scheduled health check, notifying an SNS topic (see RegistryMonitoringProps; `{}` for alarms
   * without actions, whose states the console shows). US$0.10 a month an alarm metric after
   * CloudWatch's free tier of ten, and the health check runs the function 8,640 times a month (within
   * Lambda's free tier): off until asked for, so that an idle registry costs nothing.
   * @default - none
   */
  readonly monitoring?: RegistryMonitoringProps;

  /**
   * Scheduled garbage collection (see RegistryGarbageCollectionProps; `{}` for a daily run at 03:00
   * UTC): a second function, started by EventBridge Scheduler, that removes what the retention
   * policies expire, expired uploads and blobs no manifest names, while the registry keeps serving.
   * Off until asked for, so that an idle registry costs nothing more; a daily run of a small registry
   * stays within the free tiers. The function reserves a concurrency of 1 (runs never overlap), which
   * an account whose concurrency quota is still Lambda's initial 10 cannot spare.
   * @default - none: nothing is ever removed but by DELETE requests
   */
  readonly garbageCollection?: RegistryGarbageCollectionProps;

  /**
   * Tags that, once pushed, cannot be moved to another manifest (the registry's `immutability`
   * section): a push of another manifest under such a tag is denied (DENIED).
   * @default - none: every tag can be moved
   */
  readonly immutability?: ImmutabilityRuleProps[];
}

/**
 * An OCI registry on AWS that costs nothing when idle: an HTTP API sends every request to one Lambda
 * function; blobs and manifests live in S3, tags and indexes in DynamoDB.
 */
export class ServerlessRegistry extends Construct {
  /** Blobs, manifests and upload state. */
  readonly bucket: Bucket;
  /** The metadata: tags, manifest revisions, repository links, upload sessions. */
  readonly table: Table;
  /** Where the registry's events (push, pull, delete, mount) go, with notifications; unused without. */
  readonly eventBus: EventBus;
  /** The rules that deliver events from the bus, and their dead-letter queue, with notifications. */
  readonly notifications: RegistryNotifications | undefined;
  /** The alarms and the health check, with monitoring. */
  readonly monitoring: RegistryMonitoring | undefined;
  /** The garbage collection function and its schedule, with garbageCollection. */
  readonly garbageCollection: RegistryGarbageCollection | undefined;
  /** The function that serves every request. */
  readonly function: RegistryFunction;
  readonly api: HttpApi;
  /** The API's `$default` stage. */
  readonly stage: HttpStage;
  /** The API's access log. */
  readonly accessLogGroup: LogGroup;
  /** The custom domain, when one is configured. */
  readonly domain: DomainName | undefined;
  /** The registry's base URL (the custom domain's when set), ending in `/`. */
  readonly url: string;
  /** The secrets and settings of authentication, when it is configured. */
  readonly auth: RegistryAuth | undefined;
  /** The secret upload URLs are signed with, when the edge or the upload service is on. */
  readonly uploadSecret: Secret | undefined;
  /** The upload edge, when `edge` is on. */
  readonly edge: UploadEdge | undefined;
  /** The upload service, when configured. */
  readonly uploadService: UploadService | undefined;

  constructor(scope: Construct, id: string, props: ServerlessRegistryProps = {}) {
    super(scope, id);
    checkDomainProps(props);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const logRetention = props.logRetention ?? RetentionDays.ONE_MONTH;

    this.bucket = new Bucket(this, 'Storage', {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      // Content-addressed: an object is never overwritten with other bytes, so versions would only
      // keep deleted blobs (and the cost of them) around.
      versioned: false,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [
        // The parts of S3 multipart uploads nobody completed or aborted (an upload abandoned mid-way):
        // garbage collection does not see them, since they are no objects.
        { id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: UPLOAD_AGE },
        // Upload sessions expire after UPLOAD_AGE; what they left behind goes too.
        { id: 'expire-abandoned-uploads', prefix: UPLOADS_PREFIX, expiration: UPLOAD_AGE },
      ],
      ...(props.serverAccessLogsBucket && {
        serverAccessLogsBucket: props.serverAccessLogsBucket,
        serverAccessLogsPrefix: 'registry-storage/',
      }),
      removalPolicy,
      autoDeleteObjects: removalPolicy === RemovalPolicy.DESTROY,
    });

    this.table = new Table(this, 'Metadata', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      timeToLiveAttribute: 'ttl',
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: TableEncryption.AWS_MANAGED,
      removalPolicy,
    });

    this.eventBus = new EventBus(this, 'Events');
    this.notifications = props.notifications
      ? new RegistryNotifications(this, 'Notifications', props.notifications, { eventBus: this.eventBus })
      : undefined;
    const metricsNamespace = props.monitoring
      ? (props.monitoring.namespace ?? defaultMetricsNamespace(this))
      : undefined;

    // API Gateway serves the API over HTTPS only (an HTTP API has no plain-HTTP listener), so passwords
    // and tokens never cross the network in clear: there is nothing to configure for it.
    this.auth = props.auth
      ? new RegistryAuth(this, 'Auth', props.auth, {
          defaultService: props.domainName ?? Stack.of(this).stackName,
          removalPolicy,
          logRetention,
        })
      : undefined;
    if (!this.auth) {
      Annotations.of(this).addWarningV2(
        'serverless-registry:unauthenticated',
        'The registry is unauthenticated: anyone who knows its URL may push, pull and delete. ' +
          "Configure the ServerlessRegistry's auth prop (context auth=token in this project's app).",
      );
    }

    // Where the registry's data is: the same for the function, the upload service and garbage collection.
    const storageEnvironment: Record<string, string> = {
      REGISTRY_STORAGE: 's3',
      REGISTRY_STORAGE_S3_BUCKET: this.bucket.bucketName,
      REGISTRY_STORAGE_S3_REGION: Stack.of(this).region,
      REGISTRY_STORAGE_DELETE_ENABLED: String(props.deleteEnabled ?? true),
      REGISTRY_METADATA: 'dynamodb',
      REGISTRY_METADATA_DYNAMODB_TABLE: this.table.tableName,
      REGISTRY_LOG_LEVEL: 'info',
    };
    const dataEnvironment: Record<string, string> = {
      ...storageEnvironment,
      // Uploads finished by the upload service are pushes too.
      ...this.notifications?.environment,
    };
    const immutability = immutabilitySection(props.immutability ?? []);
    this.uploadSecret =
      props.edge || props.uploadService
        ? new Secret(this, 'UploadSecret', {
            description:
              'The key upload URLs are signed with (REGISTRY_HTTP_SECRET), which the upload edge and the upload ' +
              'service check',
            // 64 letters and digits: 380 bits, plain text in the KeyValueStore and in YAML alike.
            generateSecretString: { passwordLength: 64, excludePunctuation: true, includeSpace: false },
            removalPolicy,
          })
        : undefined;
    const environment: Record<string, string> = {
      ...dataEnvironment,
      REGISTRY_STORAGE_REDIRECT_EXPIRY: `${(props.redirectExpiry ?? Duration.minutes(20)).toSeconds()}s`,
      NODE_OPTIONS: '--enable-source-maps',
      ...this.auth?.environment,
      ...(this.uploadSecret && { REGISTRY_HTTP_SECRET: this.uploadSecret.secretArn }),
      ...(props.edge && { REGISTRY_UPLOADS_EDGE: 'true' }),
      ...(props.uploadService && { REGISTRY_UPLOADS_SERVICE: `https://${props.uploadService.domainName}` }),
      // The function's embedded-metric-format lines; the server's metrics are Prometheus'.
      ...(metricsNamespace !== undefined && { REGISTRY_METRICS_NAMESPACE: metricsNamespace }),
      ...(immutability.length > 0 && { REGISTRY_IMMUTABILITY: JSON.stringify(immutability) }),
    };
    checkEnvironmentSize(environment, "the function's");
    this.function = new RegistryFunction(this, 'Function', {
      description: 'OCI Distribution registry: serves every /v2/ request',
      ...(props.memorySize !== undefined && { memorySize: props.memorySize }),
      logRetention,
      logRemovalPolicy: removalPolicy,
      environment,
    });
    grantRegistryData(this.function, this.bucket, this.table);
    if (this.notifications) grantEventPublishing(this.function, this.eventBus);
    if (this.uploadSecret) grantSecretValue(this.function, this.uploadSecret);
    if (this.auth) {
      this.auth.grantRead(this.function);
      // The first container must find the key in its secret, not the placeholder before it.
      if (this.auth.signingKeyValue) this.function.node.addDependency(this.auth.signingKeyValue);
    }

    this.api = new HttpApi(this, 'Api', {
      description: 'OCI Distribution registry',
      // One route for everything: repository names contain slashes, so /v2/... cannot be split into
      // routes; the registry routes requests itself.
      defaultIntegration: new HttpLambdaIntegration('Registry', this.function, {
        payloadFormatVersion: PayloadFormatVersion.VERSION_2_0,
      }),
      createDefaultStage: false,
    });
    this.accessLogGroup = new LogGroup(this, 'AccessLogs', { retention: logRetention, removalPolicy });
    this.stage = new HttpStage(this, 'DefaultStage', {
      httpApi: this.api,
      autoDeploy: true,
      throttle: { ...DEFAULT_THROTTLE, ...props.throttle },
      accessLogSettings: {
        destination: new LogGroupLogDestination(this.accessLogGroup),
        format: ACCESS_LOG_FORMAT,
      },
    });

    const { domainName } = props;
    const uploadSecret = this.uploadSecret;
    this.edge =
      props.edge && uploadSecret
        ? new UploadEdge(this, 'Edge', {
            api: this.api,
            bucket: this.bucket,
            secret: uploadSecret,
            ...(domainName !== undefined && { domainName }),
            ...(props.certificate && { certificate: props.certificate }),
            ...(props.hostedZone && { hostedZone: props.hostedZone }),
            removalPolicy,
            logRetention,
          })
        : undefined;
    this.domain = domainName === undefined || this.edge ? undefined : this.customDomain(domainName, props);
    this.url = this.edge?.url ?? (domainName === undefined ? this.stage.url : `https://${domainName}/`);

    this.uploadService =
      props.uploadService && uploadSecret
        ? new UploadService(
            this,
            'UploadService',
            { ...props.uploadService, hostedZone: props.uploadService.hostedZone ?? props.hostedZone },
            {
              bucket: this.bucket,
              table: this.table,
              secret: uploadSecret,
              environment: dataEnvironment,
              ...(this.notifications && { eventBus: this.eventBus }),
              removalPolicy,
              logRetention,
            },
          )
        : undefined;

    this.monitoring =
      props.monitoring && metricsNamespace !== undefined
        ? new RegistryMonitoring(this, 'Monitoring', props.monitoring, {
            api: this.api,
            function: this.function,
            namespace: metricsNamespace,
            ...(this.notifications && {
              notifications: {
                eventBus: this.eventBus,
                deliveries: this.notifications.deliveries,
                deadLetterQueue: this.notifications.deadLetterQueue,
              },
            }),
          })
        : undefined;

    if (props.garbageCollection) {
      // Its data, not the API's settings: it serves no request and sends no event.
      const gcVariables: Record<string, string> = {
        ...storageEnvironment,
        NODE_OPTIONS: '--enable-source-maps',
        ...gcEnvironment(props.garbageCollection),
      };
      checkEnvironmentSize(gcVariables, "the garbage collection function's");
      this.garbageCollection = new RegistryGarbageCollection(
        this,
        'GarbageCollection',
        props.garbageCollection,
        {
          bucket: this.bucket,
          table: this.table,
          environment: gcVariables,
          logRetention,
          logRemovalPolicy: removalPolicy,
        },
      );
    } else {
      this.garbageCollection = undefined;
    }

    new CfnOutput(this, 'Url', { value: this.url, description: 'The registry URL' });
    new CfnOutput(this, 'BucketName', {
      value: this.bucket.bucketName,
      description: 'The bucket with blobs and manifests',
    });
    new CfnOutput(this, 'TableName', { value: this.table.tableName, description: 'The metadata table' });
    if (this.uploadSecret) {
      new CfnOutput(this, 'UploadSecretArn', {
        value: this.uploadSecret.secretArn,
        description: 'The secret upload URLs are signed with (rotate it as docs/deploy-aws.md says)',
      });
    }
    if (this.auth) {
      new CfnOutput(this, 'HtpasswdSecretArn', {
        value: this.auth.htpasswd.secretArn,
        description: 'The secret holding the users: an htpasswd file of bcrypt entries',
      });
      if (this.auth.signingKey) {
        new CfnOutput(this, 'SigningKeySecretArn', {
          value: this.auth.signingKey.secretArn,
          description: 'The secret holding the token signing key (PEM)',
        });
      }
      new CfnOutput(this, 'FunctionName', {
        value: this.function.functionName,
        description: 'The registry function; containers read the secrets once, at start',
      });
    }
    if (this.garbageCollection) {
      new CfnOutput(this, 'GarbageCollectionFunction', {
        value: this.garbageCollection.function.functionName,
        description: 'The garbage collection function: aws lambda invoke --function-name <this> starts a run',
      });
    }
  }

  private customDomain(domainName: string, props: ServerlessRegistryProps): DomainName {
    const certificate =
      props.certificate ??
      new Certificate(this, 'Certificate', {
        domainName,
        validation: CertificateValidation.fromDns(props.hostedZone),
      });
    const domain = new DomainName(this, 'Domain', {
      domainName,
      certificate,
      endpointType: EndpointType.REGIONAL,
      securityPolicy: SecurityPolicy.TLS_1_2,
    });
    new ApiMapping(this, 'DomainMapping', { api: this.api, domainName: domain, stage: this.stage });
    if (props.hostedZone) {
      new ARecord(this, 'DomainRecord', {
        zone: props.hostedZone,
        recordName: domainName,
        target: RecordTarget.fromAlias(
          new ApiGatewayv2DomainProperties(domain.regionalDomainName, domain.regionalHostedZoneId),
        ),
      });
    }
    new CfnOutput(this, 'DomainTarget', {
      value: domain.regionalDomainName,
      description: `Where ${domainName} must point (CNAME, or an alias record in Route 53)`,
    });
    return domain;
  }
}

/** One JSON object per request, with what an operator asks first: who, what, how it ended, how long. */
const ACCESS_LOG_FORMAT = AccessLogFormat.custom(
  JSON.stringify({
    requestId: '$context.requestId',
    time: '$context.requestTime',
    ip: '$context.identity.sourceIp',
    userAgent: '$context.identity.userAgent',
    method: '$context.httpMethod',
    path: '$context.path',
    protocol: '$context.protocol',
    status: '$context.status',
    responseLength: '$context.responseLength',
    latencyMs: '$context.responseLatency',
    integrationLatencyMs: '$context.integrationLatency',
    integrationStatus: '$context.integrationStatus',
    integrationError: '$context.integrationErrorMessage',
    error: '$context.error.message',
    domainName: '$context.domainName',
  }),
);

/**
 * Refuses, at synth, an environment Lambda would refuse at deploy: over 4 KB of names and values. Values
 * known only at deploy time (names, ARNs) count as UNRESOLVED_VALUE_BYTES each.
 */
function checkEnvironmentSize(environment: Record<string, string>, whose: string): void {
  const sizeOf = (value: string) =>
    Token.isUnresolved(value) ? UNRESOLVED_VALUE_BYTES : Buffer.byteLength(value, 'utf8');
  const size = Object.entries(environment).reduce(
    (sum, [name, value]) => sum + Buffer.byteLength(name, 'utf8') + sizeOf(value),
    0,
  );
  if (size <= LAMBDA_ENVIRONMENT_LIMIT) return;
  // The largest of the variables that grow with what is configured.
  const [name, what] = (
    [
      ['REGISTRY_ACCESS', 'the access rules'],
      ['REGISTRY_IMMUTABILITY', 'the immutability rules'],
      ['REGISTRY_RETENTION', 'the retention policies'],
    ] as const
  )
    .filter(([variable]) => environment[variable] !== undefined)
    .reduce<readonly [string, string] | []>(
      (largest, entry) =>
        largest.length === 0 || sizeOf(environment[entry[0]] ?? '') > sizeOf(environment[largest[0]] ?? '')
          ? entry
          : largest,
      [],
    );
  const part =
    name === undefined ? '' : `, of which ${what} (${name}) take ${sizeOf(environment[name] ?? '')}`;
  const advice =
    name === 'REGISTRY_ACCESS'
      ? 'Shorten the access rules: name groups instead of users, and repository patterns (team/**) instead of repositories.'
      : `Shorten ${what ?? 'the configuration'}: repository patterns (team/**) instead of repositories.`;
  throw new Error(
    `ServerlessRegistry: ${whose} environment would take about ${size} bytes${part}: over ` +
      `Lambda's limit of ${LAMBDA_ENVIRONMENT_LIMIT} bytes for all its variables together. ${advice}`,
  );
}

function checkDomainProps(props: ServerlessRegistryProps): void {
  if (props.domainName === undefined) {
    // A zone alone may be the upload service's (its hostedZone's default).
    if (props.certificate || (props.hostedZone && !props.uploadService)) {
      throw new Error('ServerlessRegistry: certificate and hostedZone need a domainName');
    }
  } else if (!props.certificate && !props.hostedZone) {
    throw new Error(
      `ServerlessRegistry: domainName ${props.domainName} needs a certificate, or a hostedZone to create one in`,
    );
  }
}
