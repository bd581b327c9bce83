import { CfnElement, Stack, type StackProps, Stage, Validations } from 'aws-cdk-lib';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { Construct } from 'constructs';
import { ServerlessRegistry } from './serverless-registry.js';

/**
 * The registry's own deployment: one ServerlessRegistry, configured from context
 * (`-c domainName=registry.example.com -c certificateArn=arn:aws:acm:...`), checked by cdk-nag.
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
    if ((domainName === undefined) !== (certificateArn === undefined)) {
      throw new Error(
        'context domainName and certificateArn go together: the ARN of an ACM certificate for the domain, ' +
          "in the stack's region",
      );
    }

    this.registry = new ServerlessRegistry(this, 'Registry', {
      ...(domainName !== undefined && { domainName }),
      ...(certificateArn !== undefined && {
        certificate: Certificate.fromCertificateArn(this, 'Certificate', certificateArn),
      }),
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
        'API Gateway authorizer cannot produce. Until that authentication lands, the API is open to whoever has ' +
        'its URL.',
    });
  }

  private contextString(key: string): string | undefined {
    const value: unknown = this.node.tryGetContext(key);
    if (value === undefined || value === '') return undefined;
    if (typeof value !== 'string') throw new Error(`context ${key} must be a string`);
    return value;
  }
}
