/**
 * The upload edge: a CloudFront distribution in front of the registry's HTTP API that takes a blob's
 * one-PUT upload (containerd, BuildKit, Docker's containerd store) straight into S3, past API Gateway's
 * 10 MB and Lambda's 6 MB request limits. Everything else goes on to the API unchanged.
 *
 * The viewer-request function (functions/edge/upload-request.js) checks the upload URL's signature
 * against the secret it finds in the KeyValueStore, and sends a PUT that passes to S3 at the blob's
 * final key, signed by origin access control with the digest as the payload hash, so S3 itself refuses
 * bytes that are not the blob. The viewer-response function (upload-response.js) turns S3's 200 into
 * the registry's 201. See /work/issue5-research.md for what AWS documents of each step.
 */
import { CfnOutput, CustomResource, type RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import type { HttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import { Certificate, CertificateValidation, type ICertificate } from 'aws-cdk-lib/aws-certificatemanager';
import {
  AllowedMethods,
  type BehaviorOptions,
  CachePolicy,
  CfnDistribution,
  Distribution,
  Function as EdgeFunction,
  FunctionCode,
  FunctionEventType,
  FunctionRuntime,
  KeyValueStore,
  OriginProtocolPolicy,
  OriginRequestPolicy,
  S3OriginAccessControl,
  Signing,
  ViewerProtocolPolicy,
} from 'aws-cdk-lib/aws-cloudfront';
import { HttpOrigin } from 'aws-cdk-lib/aws-cloudfront-origins';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { AaaaRecord, ARecord, type IHostedZone, RecordTarget } from 'aws-cdk-lib/aws-route53';
import { CloudFrontTarget } from 'aws-cdk-lib/aws-route53-targets';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Provider } from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { edgeFunctionCode } from '../functions/edge/code.js';
import { RegistryFunction, UPLOAD_KEY_HANDLER_ENTRY } from './registry-function.js';
import { grantSecretValue } from './registry-grants.js';

/** Where blobs live in the bucket: the only keys the distribution may write. */
export const BLOB_KEYS = 'blobs/sha256/*';

/** The upload URLs whose responses the viewer-response function rewrites. */
export const UPLOAD_PATH_PATTERN = '/v2/*/blobs/uploads/*';

/** The id of the S3 origin the distribution declares for the request function's uploads. */
export const BLOB_ORIGIN_ID = 'registry-blobs';

export interface UploadEdgeProps {
  /** The registry's HTTP API: the origin of every request the functions do not send to S3. */
  readonly api: HttpApi;
  /** The registry's bucket, where blob PUTs go. */
  readonly bucket: IBucket;
  /** The secret upload URLs are signed with; the custom resource copies it into the KeyValueStore. */
  readonly secret: ISecret;
  /** A custom domain for the distribution. @default - the distribution's cloudfront.net name */
  readonly domainName?: string;
  /** A certificate for domainName, in us-east-1 (CloudFront's region for certificates). */
  readonly certificate?: ICertificate;
  /** The zone of domainName: for the alias records, and a DNS-validated certificate in us-east-1 stacks. */
  readonly hostedZone?: IHostedZone;
  readonly removalPolicy: RemovalPolicy;
  readonly logRetention: RetentionDays;
}

export class UploadEdge extends Construct {
  readonly distribution: Distribution;
  /** The upload URL secrets, by kid: what the request function verifies signatures with. */
  readonly keyValueStore: KeyValueStore;
  readonly requestFunction: EdgeFunction;
  readonly responseFunction: EdgeFunction;
  /** How CloudFront signs the blob PUTs it sends to S3. */
  readonly originAccessControl: S3OriginAccessControl;
  /** The custom resource that puts the secret into the KeyValueStore. */
  readonly uploadKey: CustomResource;
  /** The function behind that custom resource. */
  readonly uploadKeyWriter: RegistryFunction;
  /** The distribution's custom domain, when it has one. */
  readonly domainName: string | undefined;
  /** The registry's URL through the distribution (its custom domain's when set), ending in `/`. */
  readonly url: string;

  constructor(scope: Construct, id: string, props: UploadEdgeProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.domainName = props.domainName;
    const certificate =
      props.domainName === undefined ? undefined : this.certificateFor(props.domainName, props);

    this.keyValueStore = new KeyValueStore(this, 'UploadKeys', {
      comment: 'Upload URL secrets of the registry, by kid',
    });
    const values = {
      bucketDomainName: props.bucket.bucketRegionalDomainName,
      bucketRegion: stack.region,
      keyValueStoreId: this.keyValueStore.keyValueStoreId,
    };
    // cloudfront-js-2.0: the runtime that can read a KeyValueStore and change the origin
    // (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/kvs-with-functions.html,
    // https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/helper-functions-origin-modification.html).
    this.requestFunction = new EdgeFunction(this, 'UploadRequest', {
      comment: 'Registry upload edge: sends signed blob PUTs to S3',
      code: FunctionCode.fromInline(edgeFunctionCode('upload-request', values)),
      runtime: FunctionRuntime.JS_2_0,
      // "A function can have only one key value store":
      // https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/kvs-with-functions-associate.html
      keyValueStore: this.keyValueStore,
    });
    this.responseFunction = new EdgeFunction(this, 'UploadResponse', {
      comment: "Registry upload edge: answers S3's 200 with the registry's 201",
      code: FunctionCode.fromInline(edgeFunctionCode('upload-response', values)),
      runtime: FunctionRuntime.JS_2_0,
    });

    this.originAccessControl = new S3OriginAccessControl(this, 'BlobAccess', {
      description: 'Signs the blob PUTs the registry upload edge sends to S3',
      // always: the client's Authorization header (its registry token) must never reach S3.
      signing: Signing.SIGV4_ALWAYS,
    });

    const apiDomain = `${props.api.apiId}.execute-api.${stack.region}.${stack.urlSuffix}`;
    const apiOrigin = new HttpOrigin(apiDomain, {
      protocolPolicy: OriginProtocolPolicy.HTTPS_ONLY,
    });
    const behavior = (functions: BehaviorOptions['functionAssociations']): BehaviorOptions => ({
      origin: apiOrigin,
      allowedMethods: AllowedMethods.ALLOW_ALL,
      viewerProtocolPolicy: ViewerProtocolPolicy.HTTPS_ONLY,
      // Registry responses depend on the credentials and change with every push: nothing is cached.
      cachePolicy: CachePolicy.CACHING_DISABLED,
      // Everything the viewer sent but Host, which API Gateway needs to be its own; the request
      // function passes the viewer's host on as X-Forwarded-Host ("intended for use with Amazon API
      // Gateway": https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/using-managed-origin-request-policies.html).
      originRequestPolicy: OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
      functionAssociations: functions,
    });
    const request = { function: this.requestFunction, eventType: FunctionEventType.VIEWER_REQUEST };
    const response = { function: this.responseFunction, eventType: FunctionEventType.VIEWER_RESPONSE };
    this.distribution = new Distribution(this, 'Distribution', {
      comment: 'OCI registry: the HTTP API, and one-PUT blob uploads straight to S3',
      // The request function runs on every request: it also bounds what reaches the API (413 for a
      // body the Lambda event cannot hold) and passes the viewer's host on.
      defaultBehavior: behavior([request]),
      additionalBehaviors: { [UPLOAD_PATH_PATTERN]: behavior([request, response]) },
      ...(props.domainName !== undefined && { domainNames: [props.domainName], certificate }),
    });
    this.declareBlobOrigin(props.bucket);
    props.bucket.addToResourcePolicy(
      new PolicyStatement({
        sid: 'RegistryUploadEdgePutsBlobs',
        principals: [new ServicePrincipal('cloudfront.amazonaws.com')],
        // PutObject only, on blob keys only: a request the function sends to S3 can write a blob (which
        // S3 checks against the digest) and nothing else; no reads, no deletes, no upload state.
        actions: ['s3:PutObject'],
        resources: [props.bucket.arnForObjects(BLOB_KEYS)],
        conditions: { StringEquals: { 'AWS:SourceArn': this.distribution.distributionArn } },
      }),
    );

    ({ writer: this.uploadKeyWriter, resource: this.uploadKey } = this.uploadKeyResource(props));

    if (props.domainName !== undefined && props.hostedZone) {
      const target = RecordTarget.fromAlias(new CloudFrontTarget(this.distribution));
      const record = { zone: props.hostedZone, recordName: props.domainName, target };
      new ARecord(this, 'AliasRecord', record);
      new AaaaRecord(this, 'AliasRecordIpv6', record);
    }
    this.url = `https://${props.domainName ?? this.distribution.distributionDomainName}/`;
    if (props.domainName !== undefined) {
      new CfnOutput(this, 'DomainTarget', {
        value: this.distribution.distributionDomainName,
        description: `Where ${props.domainName} must point (CNAME, or an alias record in Route 53)`,
      });
    }
    new CfnOutput(this, 'KeyValueStoreArn', {
      value: this.keyValueStore.keyValueStoreArn,
      description: 'The upload URL secrets by kid: put a new secret here before the registry signs with it',
    });
  }

  /**
   * CloudFront takes certificates from us-east-1 only: the one given, or one created and DNS-validated
   * in the zone when this stack is in us-east-1 (a certificate in another region needs a stack there).
   */
  private certificateFor(domainName: string, props: UploadEdgeProps): ICertificate {
    if (props.certificate) {
      const region = Token.isUnresolved(props.certificate.certificateArn)
        ? undefined
        : props.certificate.certificateArn.split(':')[3];
      if (region !== undefined && region !== 'us-east-1') {
        throw new Error(
          `ServerlessRegistry: the upload edge serves ${domainName} from CloudFront, which takes ACM ` +
            `certificates from us-east-1 only; ${props.certificate.certificateArn} is in ${region}`,
        );
      }
      return props.certificate;
    }
    const region = Stack.of(this).region;
    if (!props.hostedZone || Token.isUnresolved(region) || region !== 'us-east-1') {
      throw new Error(
        `ServerlessRegistry: the upload edge serves ${domainName} from CloudFront, which needs an ACM ` +
          'certificate in us-east-1: pass certificate (one in us-east-1), or a hostedZone to create one in ' +
          `when the stack is in us-east-1 (this one is in ${Token.isUnresolved(region) ? 'an unknown region' : region})`,
      );
    }
    return new Certificate(this, 'Certificate', {
      domainName,
      validation: CertificateValidation.fromDns(props.hostedZone),
    });
  }

  /**
   * Declares the bucket as an origin of the distribution, with the origin access control, but in no
   * behavior: no viewer request reaches it except through the request function, which picks it with
   * cf.updateRequestOrigin(). AWS documents that call with an inline originAccessControlConfig and no
   * declared origin (its select-origin-by-country example), and does not say whether the distribution
   * must know the bucket or the OAC; declaring them costs nothing and does not depend on the answer.
   * https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/helper-functions-origin-modification.html
   */
  private declareBlobOrigin(bucket: IBucket): void {
    const cfn = this.distribution.node.defaultChild as CfnDistribution;
    const config = cfn.distributionConfig as CfnDistribution.DistributionConfigProperty;
    const origins = Stack.of(this).resolve(config.origins) as unknown[];
    cfn.addPropertyOverride(`DistributionConfig.Origins.${origins.length}`, {
      Id: BLOB_ORIGIN_ID,
      DomainName: bucket.bucketRegionalDomainName,
      // OAC, not a legacy origin access identity: an empty identity says so.
      S3OriginConfig: { OriginAccessIdentity: '' },
      OriginAccessControlId: this.originAccessControl.originAccessControlId,
    });
  }

  /** The custom resource that copies the secret into the KeyValueStore, and its function. */
  private uploadKeyResource(props: UploadEdgeProps): { writer: RegistryFunction; resource: CustomResource } {
    const writer = new RegistryFunction(this, 'UploadKeyWriter', {
      entry: UPLOAD_KEY_HANDLER_ENTRY,
      description: "Puts the registry's upload URL secret into the upload edge's KeyValueStore",
      memorySize: 256,
      logRetention: props.logRetention,
      logRemovalPolicy: props.removalPolicy,
    });
    grantSecretValue(writer, props.secret);
    // The data-plane actions (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudfrontkeyvaluestore.html):
    // the ETag, and one key; no listing, no deleting.
    writer.addToRolePolicy(
      new PolicyStatement({
        actions: ['cloudfront-keyvaluestore:DescribeKeyValueStore', 'cloudfront-keyvaluestore:PutKey'],
        resources: [this.keyValueStore.keyValueStoreArn],
      }),
    );
    const provider = new Provider(this, 'UploadKeyProvider', {
      onEventHandler: writer,
      logGroup: new LogGroup(this, 'UploadKeyProviderLogs', {
        retention: props.logRetention,
        removalPolicy: props.removalPolicy,
      }),
    });
    const resource = new CustomResource(this, 'UploadKey', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::RegistryUploadKey',
      // ARNs only: the secret is read inside the handler and goes nowhere but into the store.
      properties: {
        SecretArn: props.secret.secretArn,
        KeyValueStoreArn: this.keyValueStore.keyValueStoreArn,
      },
    });
    return { writer, resource };
  }
}
