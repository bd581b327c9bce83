import { CfnElement, Duration, Stack, type StackProps, Stage, Validations } from 'aws-cdk-lib';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { Role } from 'aws-cdk-lib/aws-iam';
import { HostedZone, type IHostedZone } from 'aws-cdk-lib/aws-route53';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { ScheduleExpression } from 'aws-cdk-lib/aws-scheduler';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { Construct, IConstruct } from 'constructs';
import { parseAge } from '../functions/config.js';
import { EVENT_ACTIONS, type EventAction } from '../functions/notifications/events.js';
import { readAccessFile } from './auth-environment.js';
import type { RegistryGarbageCollection, RegistryGarbageCollectionProps } from './garbage-collection.js';
import type { RegistryMonitoringProps } from './monitoring.js';
import type { RegistryNotificationsProps } from './notifications.js';
import type { RegistryAuthProps } from './registry-auth.js';
import type { RegistryFunction } from './registry-function.js';
import { immutabilityFromJson, retentionFromJson } from './registry-policies.js';
import { ServerlessRegistry } from './serverless-registry.js';
import type { UploadEdge } from './upload-edge.js';
import type { UploadService, UploadServiceProps } from './upload-service.js';

/**
 * The registry's own deployment: one ServerlessRegistry, configured from context, checked by cdk-nag:
 *
 * - `domainName`, `certificateArn`: a custom domain and its ACM certificate (in the stack's region, or
 *   with `edge` in us-east-1); `hostedZoneId` with `hostedZoneName`: the Route 53 zone to create
 *   certificates and alias records in (then `certificateArn` may be left out);
 * - `edge` (`true`): the upload edge, a CloudFront distribution that becomes the registry's address;
 * - `uploadServiceDomain` (with `uploadServiceCertificateArn`, or the hosted zone): the upload service
 *   on Fargate, built from the Dockerfile, or `uploadServiceImage` (an image reference) prebuilt;
 * - `auth` (`token`, the default, `htpasswd`, or `none`: an open registry, with a warning): authentication,
 *   with `htpasswdSecretArn` / `signingKeySecretArn` (complete ARNs of existing secrets; default:
 *   secrets created by the stack), `authService`, `accessFile` (a YAML or JSON file with the access
 *   section's `groups` and `rules`, read at synth) and `anonymousPull` (repository patterns anyone may
 *   pull, comma-separated);
 * - `webhookUrl` (an https:// URL): every registry event POSTed there, in distribution's envelope, with
 *   a generated token in a header; `webhookActions` (comma-separated: push, pull, mount, delete) to
 *   send some actions only;
 * - `monitoring` (`true`): alarms and a scheduled health check; `alarmEmail` (an address) turns them on
 *   too, and has them emailed;
 * - `gc` (`true`): scheduled garbage collection, daily at 03:00 UTC; `gcSchedule` (an EventBridge
 *   Scheduler expression, `cron(0 3 * * ? *)` or `rate(12 hours)`), `gcGrace` (a duration: `1h`,
 *   `30m`, `1d`), `gcDeleteUntagged` and `gcDryRun` (`true`), and `retention` (the registry's
 *   `retention` section as JSON: `[{"repositories":["ci/**"],"rules":[{"tags":["pr-*"],"olderthan":"14d"}]}]`)
 *   turn it on too;
 * - `immutability`: tags that cannot be moved once pushed, the registry's `immutability` section as
 *   JSON (`[{"repositories":["prod/**"],"except":["latest"]}]`).
 */
export class RegistryStack extends Stack {
  readonly registry: ServerlessRegistry;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, {
      description: 'An OCI Distribution registry on API Gateway, Lambda, S3 and DynamoDB',
      ...props,
    });
    const domainName = this.contextString('domainName');
    const certificateArn = this.contextString('certificateArn');
    const hostedZone = this.hostedZoneFromContext();
    const edge = this.contextBoolean('edge');
    if (certificateArn !== undefined && domainName === undefined) {
      throw new Error('context certificateArn needs a domainName');
    }
    if (domainName !== undefined && certificateArn === undefined && !hostedZone) {
      throw new Error(
        'context domainName needs a certificateArn (an ACM certificate for the domain: in the stack region, or ' +
          'in us-east-1 with edge=true), or hostedZoneId and hostedZoneName to create one in',
      );
    }

    const auth = this.authFromContext();
    const uploadService = this.uploadServiceFromContext();
    const notifications = this.notificationsFromContext();
    const monitoring = this.monitoringFromContext();
    const garbageCollection = this.garbageCollectionFromContext();
    const immutabilityValue: unknown = this.node.tryGetContext('immutability');
    const immutability =
      immutabilityValue === undefined || immutabilityValue === ''
        ? undefined
        : immutabilityFromJson(immutabilityValue, 'context immutability');
    this.registry = new ServerlessRegistry(this, 'Registry', {
      ...(domainName !== undefined && { domainName }),
      ...(certificateArn !== undefined && {
        certificate: Certificate.fromCertificateArn(this, 'Certificate', certificateArn),
      }),
      ...(hostedZone && { hostedZone }),
      ...(auth && { auth }),
      edge,
      ...(uploadService && { uploadService }),
      ...(notifications && { notifications }),
      ...(monitoring && { monitoring }),
      ...(garbageCollection && { garbageCollection }),
      ...(immutability && { immutability }),
    });

    // cdk-nag 3 runs as a policy validation plugin, which CDK accepts on a Stage (here, the app) only.
    // Any violation, warning or error, fails the synthesis.
    const stage = Stage.of(this);
    if (stage) Validations.of(stage).addPlugins(new AwsSolutionsChecks(stage));
    this.acknowledgeNagFindings();
  }

  /** The AwsSolutions findings this design accepts, each on the one resource it concerns, and why. */
  private acknowledgeNagFindings(): void {
    const { bucket, function: fn, api } = this.registry;
    Validations.of(bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'Every registry request, pulls included (as the redirect that signs the download URL), is in the API ' +
        'access log, and the registry reads and writes objects only through its function. S3 server access ' +
        'logs (best-effort delivery, a second bucket to keep) are opt-in: ServerlessRegistry serverAccessLogsBucket.',
    });
    if (fn.role) {
      Validations.of(fn.role).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        reason:
          'AWSLambdaBasicExecutionRole grants only CloudWatch Logs writes (CreateLogGroup, CreateLogStream, ' +
          'PutLogEvents), the minimum every Lambda function needs, kept current by AWS.',
      });
      const bucketResource = bucket.node.defaultChild;
      if (!CfnElement.isCfnElement(bucketResource)) throw new Error('the registry bucket has no resource');
      const bucketLogicalId = this.resolve(this.getLogicalId(bucketResource)) as string;
      Validations.of(fn.role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${bucketLogicalId}.Arn>/*]`,
        reason:
          'Object keys are digests and upload ids, known only at run time, so the object actions (listed one by ' +
          'one, no action wildcards) apply to every object of this one bucket and nothing else.',
      });
    }
    Validations.of(fn).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Pinned to Node.js 22, the runtime the bundle is built for (esbuild target node22): a newer runtime is ' +
        'a deliberate change, made together with the bundle target, not a side effect of upgrading the CDK.',
    });
    Validations.of(api).acknowledge({
      id: 'AwsSolutions-APIG4',
      reason:
        'The registry authenticates requests itself, as the Docker/OCI protocol requires: a 401 with a ' +
        'WWW-Authenticate challenge (Basic, or a Bearer token service) that clients follow to log in, which an ' +
        'API Gateway authorizer cannot produce. It is configured with context auth=token|htpasswd; without ' +
        'it the API is open to whoever has its URL, and the synthesis warns about it.',
    });
    this.acknowledgeAuthFindings();
    this.acknowledgeUploadFindings();
    this.acknowledgeNotificationFindings();
    if (this.registry.garbageCollection)
      this.acknowledgeGarbageCollectionFindings(this.registry.garbageCollection);
  }

  /** The findings on the garbage collection function and its schedule's role. */
  private acknowledgeGarbageCollectionFindings(gc: RegistryGarbageCollection): void {
    const { function: fn, scheduleRole } = gc;
    if (fn.role) {
      Validations.of(fn.role).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        reason:
          'AWSLambdaBasicExecutionRole grants only CloudWatch Logs writes (CreateLogGroup, CreateLogStream, ' +
          'PutLogEvents), the minimum every Lambda function needs, kept current by AWS.',
      });
      Validations.of(fn.role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${this.logicalIdOf(this.registry.bucket)}.Arn>/*]`,
        reason:
          "The registry function's object permissions (lib/registry-grants.ts): garbage collection walks and " +
          'removes blobs, manifests and upload state whose keys are digests and upload ids, known only at run ' +
          'time, so the object actions (listed one by one) apply to every object of this one bucket only.',
      });
    }
    Validations.of(fn).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Built like the registry function, for Node.js 22 (esbuild target node22): a newer runtime is a ' +
        'deliberate change, made together with the bundle target, not a side effect of upgrading the CDK.',
    });
    Validations.of(scheduleRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${this.logicalIdOf(fn)}.Arn>:*]`,
      reason:
        "EventBridge Scheduler's Lambda target grants the invocation of the garbage collection function and of " +
        'its versions (its ARN with :*): that one function only.',
    });
  }

  /** The findings on the notifications' dead-letter queue and webhook tokens, when there are any. */
  private acknowledgeNotificationFindings(): void {
    const notifications = this.registry.notifications;
    if (!notifications) return;
    if (notifications.deadLetterQueue) {
      Validations.of(notifications.deadLetterQueue).acknowledge({
        id: 'AwsSolutions-SQS3',
        reason:
          "This queue is the dead-letter queue itself, of the notification rules' targets (an EventBridge " +
          "target's DeadLetterConfig, which the rule does not look for): nothing consumes it to fail again.",
      });
    }
    for (const webhook of notifications.webhooks) {
      if (!webhook.token) continue;
      Validations.of(webhook.token).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason:
          "The webhook token is shared with the receiver, which checks it: a rotation must reach the receiver's " +
          'configuration before EventBridge sends the new value, an operator step (docs/deploy-aws.md, ' +
          'Notifications and alarms) that Secrets Manager cannot take.',
      });
    }
  }

  /** The findings on the secrets and the signing key's custom resource, when authentication is on. */
  private acknowledgeAuthFindings(): void {
    const auth = this.registry.auth;
    if (!auth) return;
    for (const secret of [auth.htpasswd, auth.signingKey]) {
      if (secret === undefined || !(secret instanceof Secret)) continue;
      Validations.of(secret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason:
          'Rotation is an operator action, not a schedule: the htpasswd secret holds the users the operator ' +
          'adds (put-secret-value), and a new signing key ends every session and docker login, so it is put ' +
          'when the operator decides (docs/deploy-aws.md, Authentication).',
      });
    }
    const generator = auth.signingKeyGenerator;
    const provider = auth.node.tryFindChild('SigningKeyProvider');
    if (generator && provider)
      this.acknowledgeCustomResource(generator, provider, 'the signing key generator');
  }

  /** The findings on the upload edge and the upload service, when they are on. */
  private acknowledgeUploadFindings(): void {
    const { uploadSecret, edge, uploadService } = this.registry;
    if (uploadSecret) {
      Validations.of(uploadSecret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason:
          "Rotating the upload URL secret takes a step Secrets Manager's rotation cannot: its new kid must be in " +
          "the upload edge's KeyValueStore before the registry signs with it, and the old one kept for longer " +
          'than a URL lives. It is an operator procedure (docs/deploy-aws.md, Large layers).',
      });
    }
    if (edge) this.acknowledgeEdgeFindings(edge);
    if (uploadService) this.acknowledgeUploadServiceFindings(uploadService);
  }

  private acknowledgeEdgeFindings(edge: UploadEdge): void {
    const distribution = edge.distribution;
    Validations.of(distribution).acknowledge({
      id: 'AwsSolutions-CFR1',
      reason:
        'A registry serves its users wherever they are; who may push and pull is decided by authentication ' +
        '(and upload URL signatures), not by country.',
    });
    Validations.of(distribution).acknowledge({
      id: 'AwsSolutions-CFR2',
      reason:
        'Every request is authenticated by the registry (or by an upload URL signature, checked at the edge), ' +
        'and API Gateway throttles the API; a web ACL would add a fixed monthly charge to a registry whose ' +
        'point is to cost nothing at rest. Attach one to the distribution where policy requires it.',
    });
    Validations.of(distribution).acknowledge({
      id: 'AwsSolutions-CFR3',
      reason:
        'Every request the distribution passes on to the API is in the API access log; the blob PUTs it sends ' +
        "to S3 are in the bucket's server access logs when ServerlessRegistry serverAccessLogsBucket is set. " +
        'CloudFront standard logs would need a bucket with ACLs enabled, which this stack keeps none of.',
    });
    if (edge.domainName === undefined) {
      Validations.of(distribution).acknowledge({
        id: 'AwsSolutions-CFR4',
        reason:
          'Without a custom domain the distribution serves the cloudfront.net certificate, whose TLS policy is ' +
          "CloudFront's and cannot be set; with one (context domainName) the minimum is TLS 1.2 (TLSv1.2_2021).",
      });
    }
    const provider = edge.node.tryFindChild('UploadKeyProvider');
    if (provider) this.acknowledgeCustomResource(edge.uploadKeyWriter, provider, 'the upload key writer');
  }

  private acknowledgeUploadServiceFindings(service: UploadService): void {
    const { cluster, taskDefinition, loadBalancer } = service;
    Validations.of(taskDefinition.taskRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${this.logicalIdOf(this.registry.bucket)}.Arn>/*]`,
      reason:
        "The registry function's object permissions (lib/registry-grants.ts): object keys are digests and " +
        'upload ids, known only at run time, so the object actions (listed one by one) apply to every object ' +
        'of this one bucket and nothing else.',
    });
    Validations.of(taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason:
        'The variables hold names, a region and ARNs, no secret: the server reads the upload URL secret from ' +
        'Secrets Manager itself, with the task role, as the registry function does.',
    });
    if (taskDefinition.executionRole) {
      Validations.of(taskDefinition.executionRole).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'ecr:GetAuthorizationToken, which pulling the image needs, has no resource-level permissions: AWS ' +
          'requires "*" for it. The pull actions themselves are on the image repository only.',
      });
    }
    Validations.of(cluster).acknowledge({
      id: 'AwsSolutions-ECS4',
      reason:
        "One small task: the load balancer's target metrics and the service's CPU and memory metrics (free) " +
        'say whether it is healthy; Container Insights would add custom metrics billed every month.',
    });
    Validations.of(loadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason:
        'The server writes an access log line for every request (method, path, status, bytes, client, ' +
        'duration) into CloudWatch Logs; load balancer access logs would repeat them in a second bucket.',
    });
    for (const group of loadBalancer.connections.securityGroups) {
      Validations.of(group).acknowledge({
        id: 'AwsSolutions-EC23',
        reason:
          "The upload service is a public endpoint, like the registry's API: clients anywhere upload to it over " +
          'HTTPS (443 only), and every request must carry an upload URL signature.',
      });
    }
  }

  /** The findings on a custom resource's function and its CDK Provider framework. */
  private acknowledgeCustomResource(fn: RegistryFunction, provider: IConstruct, what: string): void {
    const basicExecution = {
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason:
        'AWSLambdaBasicExecutionRole grants only CloudWatch Logs writes (CreateLogGroup, CreateLogStream, ' +
        'PutLogEvents), the minimum every Lambda function needs, kept current by AWS.',
    };
    if (fn.role) Validations.of(fn.role).acknowledge(basicExecution);
    Validations.of(fn).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Built like the registry function, for Node.js 22 (esbuild target node22): a newer runtime is a ' +
        'deliberate change, made together with the bundle target, not a side effect of upgrading the CDK.',
    });
    const frameworkRole = provider.node.findAll().find((construct) => construct instanceof Role);
    if (frameworkRole) {
      Validations.of(frameworkRole).acknowledge(basicExecution);
      Validations.of(frameworkRole).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${this.logicalIdOf(fn)}.Arn>:*]`,
        reason: `The CDK Provider framework may invoke ${what}'s versions (its ARN with :*), and that one function only.`,
      });
    }
  }

  private logicalIdOf(construct: IConstruct): string {
    const resource = construct.node.defaultChild;
    if (!CfnElement.isCfnElement(resource)) throw new Error(`${construct.node.path} has no resource`);
    return this.resolve(this.getLogicalId(resource)) as string;
  }

  /** The auth prop that context asks for: none without `auth`. */
  private authFromContext(): RegistryAuthProps | undefined {
    // Secure by default: an open registry is something to ask for (-c auth=none), not to forget.
    const type = this.contextString('auth') ?? 'token';
    if (type === 'none') return undefined;
    if (type !== 'token' && type !== 'htpasswd') {
      throw new Error(`context auth must be token, htpasswd or none, not ${JSON.stringify(type)}`);
    }
    const htpasswdArn = this.contextString('htpasswdSecretArn');
    const signingKeyArn = this.contextString('signingKeySecretArn');
    const service = this.contextString('authService');
    const accessFile = this.contextString('accessFile');
    const anonymousPull = this.contextString('anonymousPull')
      ?.split(',')
      .map((pattern) => pattern.trim())
      .filter((pattern) => pattern !== '');
    return {
      type,
      ...(htpasswdArn !== undefined && {
        htpasswd: Secret.fromSecretCompleteArn(this, 'Htpasswd', htpasswdArn),
      }),
      ...(signingKeyArn !== undefined && {
        signingKey: Secret.fromSecretCompleteArn(this, 'SigningKey', signingKeyArn),
      }),
      ...(service !== undefined && { service }),
      ...(accessFile !== undefined && { access: readAccessFile(accessFile) }),
      ...(anonymousPull?.length && { anonymousPull }),
    };
  }

  /** The zone of `hostedZoneId` and `hostedZoneName`, which go together. */
  private hostedZoneFromContext(): IHostedZone | undefined {
    const hostedZoneId = this.contextString('hostedZoneId');
    const zoneName = this.contextString('hostedZoneName');
    if ((hostedZoneId === undefined) !== (zoneName === undefined)) {
      throw new Error(
        'context hostedZoneId and hostedZoneName go together: the Route 53 zone of the domains',
      );
    }
    if (hostedZoneId === undefined || zoneName === undefined) return undefined;
    return HostedZone.fromHostedZoneAttributes(this, 'HostedZone', { hostedZoneId, zoneName });
  }

  /** The notifications prop that context asks for: none without `webhookUrl`. */
  private notificationsFromContext(): RegistryNotificationsProps | undefined {
    const url = this.contextString('webhookUrl');
    const actions = this.contextString('webhookActions')
      ?.split(',')
      .map((action) => action.trim())
      .filter((action) => action !== '');
    if (url === undefined) {
      if (actions !== undefined) throw new Error('context webhookActions needs a webhookUrl');
      return undefined;
    }
    const unknown = (actions ?? []).filter(
      (action) => !(EVENT_ACTIONS as readonly string[]).includes(action),
    );
    if (unknown.length > 0 || actions?.length === 0) {
      throw new Error(
        `context webhookActions must list some of ${EVENT_ACTIONS.join(', ')} (comma-separated), not ` +
          JSON.stringify(this.contextString('webhookActions') ?? ''),
      );
    }
    return {
      webhooks: [
        { name: 'webhook', url, ...(actions !== undefined && { actions: actions as EventAction[] }) },
      ],
    };
  }

  /** The monitoring prop that context asks for: none without `monitoring` or `alarmEmail`. */
  private monitoringFromContext(): RegistryMonitoringProps | undefined {
    const alarmEmail = this.contextString('alarmEmail');
    const value: unknown = this.node.tryGetContext('monitoring');
    if (alarmEmail !== undefined && (value === false || value === 'false')) {
      throw new Error('context alarmEmail needs monitoring: leave monitoring out, or set it to true');
    }
    if (alarmEmail === undefined && !this.contextBoolean('monitoring')) return undefined;
    return alarmEmail === undefined ? {} : { alarmEmail };
  }

  /**
   * The garbageCollection prop that context asks for: none without `gc`, or one of the settings of
   * garbage collection (which turn it on), or with `gc=false`.
   */
  private garbageCollectionFromContext(): RegistryGarbageCollectionProps | undefined {
    const settings = ['gcSchedule', 'gcGrace', 'gcDeleteUntagged', 'gcDryRun', 'retention'].filter((key) => {
      const value: unknown = this.node.tryGetContext(key);
      return value !== undefined && value !== '';
    });
    const value: unknown = this.node.tryGetContext('gc');
    if (value === false || value === 'false') {
      if (settings.length > 0) {
        throw new Error(
          `context ${settings.join(', ')} need${settings.length === 1 ? 's' : ''} gc: leave gc out, or set it to true`,
        );
      }
      return undefined;
    }
    if (settings.length === 0 && !this.contextBoolean('gc')) return undefined;
    const expression = this.contextString('gcSchedule');
    if (expression !== undefined && !/^(cron|rate|at)\(.+\)$/.test(expression.trim())) {
      throw new Error(
        `context gcSchedule must be an EventBridge Scheduler expression such as cron(0 3 * * ? *) or rate(12 hours), not ${JSON.stringify(expression)}`,
      );
    }
    const graceText = this.contextString('gcGrace');
    const graceMs = graceText === undefined ? undefined : parseAge(graceText);
    if (graceText !== undefined && (graceMs === undefined || graceMs < 0 || graceMs % 1000 !== 0)) {
      throw new Error(
        `context gcGrace must be a duration in whole seconds such as 1h, 30m or 1d, not ${JSON.stringify(graceText)}`,
      );
    }
    const retention: unknown = this.node.tryGetContext('retention');
    return {
      ...(expression !== undefined && { schedule: ScheduleExpression.expression(expression.trim()) }),
      ...(graceMs !== undefined && { grace: Duration.seconds(graceMs / 1000) }),
      deleteUntagged: this.contextBoolean('gcDeleteUntagged'),
      dryRun: this.contextBoolean('gcDryRun'),
      ...(retention !== undefined &&
        retention !== '' && { retention: retentionFromJson(retention, 'context retention') }),
    };
  }

  /** The uploadService prop that context asks for: none without `uploadServiceDomain`. */
  private uploadServiceFromContext(): UploadServiceProps | undefined {
    const domainName = this.contextString('uploadServiceDomain');
    const certificateArn = this.contextString('uploadServiceCertificateArn');
    const image = this.contextString('uploadServiceImage');
    if (domainName === undefined) {
      if (certificateArn !== undefined || image !== undefined) {
        throw new Error(
          'context uploadServiceCertificateArn and uploadServiceImage need an uploadServiceDomain',
        );
      }
      return undefined;
    }
    return {
      domainName,
      ...(certificateArn !== undefined && {
        certificate: Certificate.fromCertificateArn(this, 'UploadServiceCertificate', certificateArn),
      }),
      ...(image !== undefined && { image: ContainerImage.fromRegistry(image) }),
    };
  }

  /** A switch: true or false, as JSON (cdk.json) or as the CLI's `-c key=true` string. */
  private contextBoolean(key: string): boolean {
    const value: unknown = this.node.tryGetContext(key);
    if (value === undefined || value === '' || value === false || value === 'false') return false;
    if (value === true || value === 'true') return true;
    throw new Error(`context ${key} must be true or false, not ${JSON.stringify(value)}`);
  }

  private contextString(key: string): string | undefined {
    const value: unknown = this.node.tryGetContext(key);
    if (value === undefined || value === '') return undefined;
    if (typeof value !== 'string') throw new Error(`context ${key} must be a string`);
    return value;
  }
}
