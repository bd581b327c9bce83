/**
 * The upload service: the standalone registry server (dist/registry.mjs, the repository's Dockerfile)
 * in upload-only mode (REGISTRY_UPLOADS_ONLY) on Fargate, behind an HTTPS load balancer. The Lambda
 * function's POST answers point clients that upload in PATCHes (docker, podman, skopeo, crane) here,
 * with a signed URL; the service streams each PATCH into S3 multipart, whatever its size, with no
 * credentials but the signature, and links the blob in the same bucket and table.
 */
import { CfnOutput, Duration, type RemovalPolicy } from 'aws-cdk-lib';
import { Certificate, CertificateValidation, type ICertificate } from 'aws-cdk-lib/aws-certificatemanager';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import type { IEventBus } from 'aws-cdk-lib/aws-events';
import { FlowLogDestination, FlowLogTrafficType, type IVpc, SubnetType, Vpc } from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import {
  Cluster,
  ContainerImage,
  CpuArchitecture,
  FargateService,
  FargateTaskDefinition,
  LogDrivers,
  OperatingSystemFamily,
} from 'aws-cdk-lib/aws-ecs';
import {
  ApplicationLoadBalancer,
  ApplicationProtocol,
  ListenerCertificate,
} from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { ARecord, type IHostedZone, RecordTarget } from 'aws-cdk-lib/aws-route53';
import { LoadBalancerTarget } from 'aws-cdk-lib/aws-route53-targets';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { PROJECT_ROOT } from './project-root.js';
import { grantEventPublishing, grantRegistryData, grantSecretValue } from './registry-grants.js';

/** The port the server listens on in its container (the Dockerfile's EXPOSE, registry:2's). */
export const UPLOAD_SERVICE_PORT = 5000;

/**
 * How long the load balancer keeps a connection with no bytes moving. A PATCH streams, but its last
 * part goes to S3 after the body has ended, and a final PUT may copy a multi-GB upload into place
 * before it answers: minutes in which nothing crosses the connection. The default, 60 s, would cut
 * them with a 504. The server's keep-alive timeout must stay above this (AWS: "configure the idle
 * timeout of your application to be larger than the idle timeout configured for the load balancer",
 * https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html).
 */
export const UPLOAD_SERVICE_IDLE_TIMEOUT = Duration.minutes(5);

export interface UploadServiceProps {
  /**
   * The service's domain, e.g. `uploads.registry.example.com`. Required: clients reach the service over
   * HTTPS, and a load balancer's own name (`*.elb.amazonaws.com`) cannot get a certificate.
   */
  readonly domainName: string;

  /**
   * An ACM certificate for domainName, in the stack's region.
   * @default - created with DNS validation in hostedZone
   */
  readonly certificate?: ICertificate;

  /**
   * The Route 53 zone of domainName: the certificate is validated in it (unless given) and an alias
   * record points the domain at the load balancer.
   * @default - the registry's hostedZone; without one, point domainName at the UploadServiceTarget output
   */
  readonly hostedZone?: IHostedZone;

  /**
   * The registry's container image.
   * @default - built from the repository's Dockerfile for linux/arm64 (needs Docker at deploy)
   */
  readonly image?: ContainerImage;

  /**
   * Where the tasks and the load balancer run, in public subnets.
   * @default - a new VPC with public subnets only, in 2 AZs, and no NAT gateway (tasks get public IPs)
   */
  readonly vpc?: IVpc;

  /**
   * How many tasks run.
   * @default 1
   */
  readonly desiredCount?: number;
}

/** What the registry construct gives the service. */
export interface UploadServiceOptions {
  readonly bucket: IBucket;
  readonly table: ITable;
  /** The secret upload URLs are signed with. */
  readonly secret: ISecret;
  /** The storage, metadata and notification variables the registry's function has too. */
  readonly environment: Record<string, string>;
  /** The bus the service puts its events on (the pushes of the uploads it finishes), with notifications. */
  readonly eventBus?: IEventBus;
  readonly removalPolicy: RemovalPolicy;
  readonly logRetention: RetentionDays;
}

export class UploadService extends Construct {
  readonly vpc: IVpc;
  readonly cluster: Cluster;
  readonly taskDefinition: FargateTaskDefinition;
  readonly service: FargateService;
  readonly loadBalancer: ApplicationLoadBalancer;
  readonly logGroup: LogGroup;
  /** `https://<domainName>`: where the registry's POST answers send PATCH uploads. */
  readonly url: string;

  constructor(scope: Construct, id: string, props: UploadServiceProps, options: UploadServiceOptions) {
    super(scope, id);
    const { domainName } = props;
    // For callers in JavaScript: TypeScript's callers cannot leave it out.
    if (typeof domainName !== 'string' || domainName === '') {
      throw new Error(
        "ServerlessRegistry: the upload service needs a domainName: clients reach it over HTTPS, and a load balancer's " +
          'own name (*.elb.amazonaws.com) cannot get an ACM certificate',
      );
    }
    if (!props.certificate && !props.hostedZone) {
      throw new Error(
        `ServerlessRegistry: the upload service's domain ${domainName} needs a certificate, or a hostedZone to create one in`,
      );
    }

    this.vpc = props.vpc ?? this.newVpc(options);
    this.cluster = new Cluster(this, 'Cluster', { vpc: this.vpc });

    this.taskDefinition = new FargateTaskDefinition(this, 'Task', {
      // The smallest Fargate task: the server streams, it does not buffer layers
      // (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html).
      cpu: 256,
      memoryLimitMiB: 512,
      // Graviton, as the function: cheaper per vCPU-hour, and nothing in the image is native code.
      runtimePlatform: {
        cpuArchitecture: CpuArchitecture.ARM64,
        operatingSystemFamily: OperatingSystemFamily.LINUX,
      },
    });
    this.logGroup = new LogGroup(this, 'Logs', {
      retention: options.logRetention,
      removalPolicy: options.removalPolicy,
    });
    this.taskDefinition.addContainer('Registry', {
      image: props.image ?? ContainerImage.fromAsset(PROJECT_ROOT, { platform: Platform.LINUX_ARM64 }),
      // ARNs and names only: the server reads the secret itself, with the task role.
      environment: {
        ...options.environment,
        REGISTRY_HTTP_ADDR: `:${UPLOAD_SERVICE_PORT}`,
        REGISTRY_HTTP_SECRET: options.secret.secretArn,
        REGISTRY_UPLOADS_ONLY: 'true',
      },
      portMappings: [{ containerPort: UPLOAD_SERVICE_PORT }],
      logging: LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'upload-service' }),
    });
    grantRegistryData(this.taskDefinition.taskRole, options.bucket, options.table);
    grantSecretValue(this.taskDefinition.taskRole, options.secret);
    if (options.eventBus) grantEventPublishing(this.taskDefinition.taskRole, options.eventBus);

    this.service = new FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: props.desiredCount ?? 1,
      assignPublicIp: true,
      vpcSubnets: { subnetType: SubnetType.PUBLIC },
      // A task that never gets healthy rolls the deployment back instead of retrying forever.
      circuitBreaker: { rollback: true },
      // The old task serves until the new one is healthy: uploads in flight are not cut by a deployment.
      minHealthyPercent: 100,
    });

    this.loadBalancer = new ApplicationLoadBalancer(this, 'LoadBalancer', {
      vpc: this.vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: SubnetType.PUBLIC },
      idleTimeout: UPLOAD_SERVICE_IDLE_TIMEOUT,
      dropInvalidHeaderFields: true,
    });
    const certificate =
      props.certificate ??
      new Certificate(this, 'Certificate', {
        domainName,
        validation: CertificateValidation.fromDns(props.hostedZone),
      });
    // HTTPS only: the signed URLs are the credentials, and there is no plain-HTTP listener to leak them to.
    const listener = this.loadBalancer.addListener('Https', {
      port: 443,
      protocol: ApplicationProtocol.HTTPS,
      certificates: [ListenerCertificate.fromCertificateManager(certificate)],
    });
    listener.addTargets('Registry', {
      port: UPLOAD_SERVICE_PORT,
      protocol: ApplicationProtocol.HTTP,
      targets: [this.service],
      // The upload service answers GET /v2/ with 200 and nothing else without a signed URL.
      healthCheck: { path: '/v2/', healthyHttpCodes: '200' },
    });

    if (props.hostedZone) {
      new ARecord(this, 'AliasRecord', {
        zone: props.hostedZone,
        recordName: domainName,
        target: RecordTarget.fromAlias(new LoadBalancerTarget(this.loadBalancer)),
      });
    }
    this.url = `https://${domainName}`;
    new CfnOutput(this, 'Url', { value: this.url, description: 'The upload service (PATCH uploads)' });
    new CfnOutput(this, 'Target', {
      value: this.loadBalancer.loadBalancerDnsName,
      description: `Where ${domainName} must point (CNAME, or an alias record in Route 53)`,
    });
  }

  /** A VPC of public subnets only, in 2 AZs (an ALB needs two), with its rejected traffic logged. */
  private newVpc(options: UploadServiceOptions): Vpc {
    return new Vpc(this, 'Vpc', {
      maxAzs: 2,
      // A NAT gateway costs more than the whole service; tasks reach S3, DynamoDB, Secrets Manager and
      // ECR through their public IPs instead, and their security group admits the load balancer only.
      natGateways: 0,
      subnetConfiguration: [{ name: 'Public', subnetType: SubnetType.PUBLIC }],
      // Rejected connections only: what probes the service, without paying to log every upload's flows.
      flowLogs: {
        Rejected: {
          trafficType: FlowLogTrafficType.REJECT,
          destination: FlowLogDestination.toCloudWatchLogs(
            new LogGroup(this, 'FlowLogs', {
              retention: options.logRetention,
              removalPolicy: options.removalPolicy,
            }),
          ),
        },
      },
    });
  }
}
