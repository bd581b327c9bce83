import { CfnElement, Stack, type StackProps, Stage, Validations } from 'aws-cdk-lib';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { Role } from 'aws-cdk-lib/aws-iam';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { Construct, IConstruct } from 'constructs';
import { readAccessFile } from './auth-environment.js';
import type { RegistryAuthProps } from './registry-auth.js';
import { ServerlessRegistry } from './serverless-registry.js';

/**
 * The registry's own deployment: one ServerlessRegistry, configured from context, checked by cdk-nag:
 *
 * - `domainName`, `certificateArn`: a custom domain and its ACM certificate;
 * - `auth` (`token`, the default, `htpasswd`, or `none`: an open registry, with a warning): authentication,
 *   with `htpasswdSecretArn` / `signingKeySecretArn` (complete ARNs of existing secrets; default:
 *   secrets created by the stack), `authService`, `accessFile` (a YAML or JSON file with the access
 *   section's `groups` and `rules`, read at synth) and `anonymousPull` (repository patterns anyone may
 *   pull, comma-separated).
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

    const auth = this.authFromContext();
    this.registry = new ServerlessRegistry(this, 'Registry', {
      ...(domainName !== undefined && { domainName }),
      ...(certificateArn !== undefined && {
        certificate: Certificate.fromCertificateArn(this, 'Certificate', certificateArn),
      }),
      ...(auth && { auth }),
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
    if (!generator || !provider) return;
    const basicExecution = {
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason:
        'AWSLambdaBasicExecutionRole grants only CloudWatch Logs writes (CreateLogGroup, CreateLogStream, ' +
        'PutLogEvents), the minimum every Lambda function needs, kept current by AWS.',
    };
    if (generator.role) Validations.of(generator.role).acknowledge(basicExecution);
    Validations.of(generator).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Built like the registry function, for Node.js 22 (esbuild target node22): a newer runtime is a ' +
        'deliberate change, made together with the bundle target, not a side effect of upgrading the CDK.',
    });
    const frameworkRole = provider.node.findAll().find((construct) => construct instanceof Role);
    if (frameworkRole) {
      Validations.of(frameworkRole).acknowledge(basicExecution);
      Validations.of(frameworkRole).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${this.logicalIdOf(generator)}.Arn>:*]`,
        reason:
          "The CDK Provider framework may invoke the signing key generator's versions (its ARN with :*), and " +
          'that one function only.',
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

  private contextString(key: string): string | undefined {
    const value: unknown = this.node.tryGetContext(key);
    if (value === undefined || value === '') return undefined;
    if (typeof value !== 'string') throw new Error(`context ${key} must be a string`);
    return value;
  }
}
