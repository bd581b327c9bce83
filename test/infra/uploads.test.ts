// The two ways past the API's ~4.4 MiB request limit (lib/upload-edge.ts, lib/upload-service.ts): the
// CloudFront distribution whose request function sends signed blob PUTs to S3, with what lets it and only
// it write blobs; the Fargate service behind an HTTPS load balancer; the secret both check, and the
// registry function's variables that point clients at them. Also the synth errors and the app's context.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { type App, Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { HostedZone, type IHostedZone } from 'aws-cdk-lib/aws-route53';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryStack } from '../../lib/registry-stack.js';
import { ServerlessRegistry, type ServerlessRegistryProps } from '../../lib/serverless-registry.js';
import { BLOB_KEYS, BLOB_ORIGIN_ID, UPLOAD_PATH_PATTERN } from '../../lib/upload-edge.js';
import type { UploadServiceProps } from '../../lib/upload-service.js';
import {
  allowedActions,
  app,
  cleanUpApps,
  type Json,
  logicalId,
  NO_BUNDLING,
  onlyResource,
  outputValue,
  SYNTH_TIMEOUT,
} from './support.js';

afterAll(cleanUpApps);

const CACHING_DISABLED = '4135ea2d-6df8-44a3-9df3-4b5a84be39ad';
const ALL_VIEWER_EXCEPT_HOST_HEADER = 'b689b0a8-53d0-40ab-baf2-68738e2966ac';
const US_EAST_1 = { account: '123456789012', region: 'us-east-1' };
const ZONE = { hostedZoneId: 'Z0000000000000000000', zoneName: 'example.com' };

/** A registry in its own stack (us-east-1 unless told), with props that may need the stack. */
function registryIn(
  build: (stack: Stack, zone: IHostedZone) => ServerlessRegistryProps,
  // {}: environment-agnostic, the region a token.
  env: { account?: string; region?: string } = US_EAST_1,
) {
  const stack = new Stack(app({ context: NO_BUNDLING }), 'Uploads', { env });
  const zone = HostedZone.fromHostedZoneAttributes(stack, 'Zone', ZONE);
  const registry = new ServerlessRegistry(stack, 'Registry', build(stack, zone));
  return { stack, registry, template: Template.fromStack(stack) };
}

function resourceOf(template: Template, construct: IConstruct): { Properties: Json } {
  const resources = template.toJSON() as { Resources: Record<string, { Properties: Json }> };
  const resource = resources.Resources[logicalId(construct)];
  if (!resource) throw new Error(`${construct.node.path} is not in the template`);
  return resource;
}

function functionVariables(template: Template, registry: ServerlessRegistry): Json {
  const fn = resourceOf(template, registry.function).Properties as { Environment: { Variables: Json } };
  return fn.Environment.Variables;
}

describe('the upload edge', () => {
  let registry: ServerlessRegistry;
  let template: Template;
  let distributionConfig: Json;

  beforeAll(() => {
    ({ registry, template } = registryIn((_, zone) => ({
      edge: true,
      domainName: 'registry.example.com',
      hostedZone: zone,
    })));
    distributionConfig = onlyResource(template, 'AWS::CloudFront::Distribution').Properties as Json;
    distributionConfig = distributionConfig.DistributionConfig as Json;
  }, SYNTH_TIMEOUT);

  const edge = () => {
    if (!registry.edge) throw new Error('no edge');
    return registry.edge;
  };
  const functionArn = (construct: IConstruct) => ({ 'Fn::GetAtt': [logicalId(construct), 'FunctionARN'] });

  it('sends every request to the HTTP API over HTTPS, uncached, with every viewer header but Host', () => {
    const [apiOrigin] = distributionConfig.Origins as Json[];
    expect(apiOrigin?.DomainName).toEqual({
      'Fn::Join': [
        '',
        [{ Ref: logicalId(registry.api) }, '.execute-api.us-east-1.', { Ref: 'AWS::URLSuffix' }],
      ],
    });
    expect(apiOrigin?.CustomOriginConfig).toMatchObject({ OriginProtocolPolicy: 'https-only' });
    const allMethods = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'PATCH', 'POST', 'DELETE'];
    const behaviors = [
      distributionConfig.DefaultCacheBehavior as Json,
      ...(distributionConfig.CacheBehaviors as Json[]),
    ];
    expect(behaviors).toHaveLength(2);
    for (const behavior of behaviors) {
      expect(behavior).toMatchObject({
        TargetOriginId: apiOrigin?.Id,
        ViewerProtocolPolicy: 'https-only',
        CachePolicyId: CACHING_DISABLED,
        OriginRequestPolicyId: ALL_VIEWER_EXCEPT_HOST_HEADER,
      });
      expect([...(behavior.AllowedMethods as string[])].sort()).toEqual([...allMethods].sort());
    }
  });

  it('runs the request function on every request, and the response function on upload URLs only', () => {
    const request = { EventType: 'viewer-request', FunctionARN: functionArn(edge().requestFunction) };
    const response = { EventType: 'viewer-response', FunctionARN: functionArn(edge().responseFunction) };
    expect((distributionConfig.DefaultCacheBehavior as Json).FunctionAssociations).toEqual([request]);
    expect(distributionConfig.CacheBehaviors).toEqual([
      expect.objectContaining({
        PathPattern: UPLOAD_PATH_PATTERN,
        FunctionAssociations: [request, response],
      }),
    ]);
    expect(UPLOAD_PATH_PATTERN).toBe('/v2/*/blobs/uploads/*');
  });

  it('ships both functions on cloudfront-js-2.0, the request function with the KeyValueStore and the bucket', () => {
    template.resourceCountIs('AWS::CloudFront::Function', 2);
    const request = resourceOf(template, edge().requestFunction).Properties as {
      FunctionConfig: Json;
      FunctionCode: unknown;
    };
    const response = resourceOf(template, edge().responseFunction).Properties as typeof request;
    const storeArn = { 'Fn::GetAtt': [logicalId(edge().keyValueStore), 'Arn'] };
    expect(request.FunctionConfig).toMatchObject({
      Runtime: 'cloudfront-js-2.0',
      KeyValueStoreAssociations: [{ KeyValueStoreARN: storeArn }],
    });
    expect(response.FunctionConfig).toMatchObject({ Runtime: 'cloudfront-js-2.0' });
    expect(response.FunctionConfig.KeyValueStoreAssociations).toBeUndefined();
    // The deploy-time values, substituted into the code as references the template resolves.
    const code = JSON.stringify(request.FunctionCode);
    expect(code).toContain(
      JSON.stringify({ 'Fn::GetAtt': [logicalId(registry.bucket), 'RegionalDomainName'] }),
    );
    expect(code).toContain(JSON.stringify({ 'Fn::GetAtt': [logicalId(edge().keyValueStore), 'Id'] }));
    expect(code).not.toContain('__BUCKET_DOMAIN_NAME__');
    expect(code).toContain('updateRequestOrigin');
  });

  it('declares the bucket as an origin signed by an always-SigV4 origin access control, which no behavior targets', () => {
    template.hasResourceProperties('AWS::CloudFront::OriginAccessControl', {
      OriginAccessControlConfig: {
        OriginAccessControlOriginType: 's3',
        SigningBehavior: 'always',
        SigningProtocol: 'sigv4',
      },
    });
    const blobOrigin = (distributionConfig.Origins as Json[]).find((origin) => origin.Id === BLOB_ORIGIN_ID);
    expect(blobOrigin).toEqual({
      Id: BLOB_ORIGIN_ID,
      DomainName: { 'Fn::GetAtt': [logicalId(registry.bucket), 'RegionalDomainName'] },
      S3OriginConfig: { OriginAccessIdentity: '' },
      OriginAccessControlId: { 'Fn::GetAtt': [logicalId(edge().originAccessControl), 'Id'] },
    });
    const targets = [
      distributionConfig.DefaultCacheBehavior as Json,
      ...(distributionConfig.CacheBehaviors as Json[]),
    ].map((behavior) => behavior.TargetOriginId);
    expect(targets).not.toContain(BLOB_ORIGIN_ID);
  });

  it('lets the distribution, and no other, put objects under blobs/sha256/, and do nothing else in the bucket', () => {
    const policy = onlyResource(template, 'AWS::S3::BucketPolicy') as {
      Properties: { PolicyDocument: { Statement: Json[] } };
    };
    const cloudFront = policy.Properties.PolicyDocument.Statement.filter((statement) =>
      JSON.stringify(statement.Principal).includes('cloudfront.amazonaws.com'),
    );
    expect(cloudFront).toEqual([
      {
        Sid: 'RegistryUploadEdgePutsBlobs',
        Effect: 'Allow',
        Principal: { Service: 'cloudfront.amazonaws.com' },
        Action: 's3:PutObject',
        Resource: {
          'Fn::Join': ['', [{ 'Fn::GetAtt': [logicalId(registry.bucket), 'Arn'] }, '/blobs/sha256/*']],
        },
        Condition: {
          StringEquals: {
            'AWS:SourceArn': {
              'Fn::Join': [
                '',
                ['arn:aws:cloudfront::123456789012:distribution/', { Ref: logicalId(edge().distribution) }],
              ],
            },
          },
        },
      },
    ]);
    expect(BLOB_KEYS).toBe('blobs/sha256/*');
  });

  it('generates the upload URL secret: 64 letters and digits', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 1);
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: { PasswordLength: 64, ExcludePunctuation: true, IncludeSpace: false },
      SecretString: Match.absent(),
    });
  });

  it('puts the secret into the KeyValueStore with a custom resource that may read that secret and put keys', () => {
    template.resourceCountIs('AWS::CloudFront::KeyValueStore', 1);
    const secretRef = { Ref: logicalId(registry.uploadSecret as IConstruct) };
    const storeArn = { 'Fn::GetAtt': [logicalId(edge().keyValueStore), 'Arn'] };
    const resource = onlyResource(template, 'Custom::RegistryUploadKey') as { Properties: Json };
    // ARNs only: the secret's value never passes through CloudFormation.
    expect(Object.keys(resource.Properties).sort()).toEqual([
      'KeyValueStoreArn',
      'SecretArn',
      'ServiceToken',
    ]);
    expect(resource.Properties).toMatchObject({ SecretArn: secretRef, KeyValueStoreArn: storeArn });
    expect(allowedActions(template, logicalId(edge().uploadKeyWriter.role as IConstruct))).toEqual([
      ['secretsmanager:GetSecretValue', [secretRef]],
      ['cloudfront-keyvaluestore:DescribeKeyValueStore', [storeArn]],
      ['cloudfront-keyvaluestore:PutKey', [storeArn]],
    ]);
  });

  it('tells the registry function to sign uploads for the edge, with the secret it may read', () => {
    const secretRef = { Ref: logicalId(registry.uploadSecret as IConstruct) };
    expect(functionVariables(template, registry)).toMatchObject({
      REGISTRY_UPLOADS_EDGE: 'true',
      REGISTRY_HTTP_SECRET: secretRef,
    });
    expect(functionVariables(template, registry).REGISTRY_UPLOADS_SERVICE).toBeUndefined();
    const role = logicalId(registry.function.role as IConstruct);
    expect(allowedActions(template, role).filter(([action]) => action.startsWith('secretsmanager:'))).toEqual(
      [['secretsmanager:GetSecretValue', [secretRef]]],
    );
  });

  it('serves the custom domain from the distribution with a us-east-1 certificate and alias records', () => {
    template.resourceCountIs('AWS::ApiGatewayV2::DomainName', 0);
    expect(distributionConfig.Aliases).toEqual(['registry.example.com']);
    expect(distributionConfig.ViewerCertificate).toMatchObject({
      MinimumProtocolVersion: 'TLSv1.2_2021',
      SslSupportMethod: 'sni-only',
    });
    template.hasResourceProperties('AWS::CertificateManager::Certificate', {
      DomainName: 'registry.example.com',
      ValidationMethod: 'DNS',
    });
    for (const type of ['A', 'AAAA']) {
      template.hasResourceProperties('AWS::Route53::RecordSet', {
        Name: 'registry.example.com.',
        Type: type,
        AliasTarget: { DNSName: { 'Fn::GetAtt': [logicalId(edge().distribution), 'DomainName'] } },
      });
    }
    expect(outputValue(template, registry, 'Url')).toBe('https://registry.example.com/');
  });

  it("is the registry's address without a custom domain too", () => {
    const plain = registryIn(() => ({ edge: true }), {});
    const distribution = plain.registry.edge?.distribution as IConstruct;
    expect(outputValue(plain.template, plain.registry, 'Url')).toEqual({
      'Fn::Join': ['', ['https://', { 'Fn::GetAtt': [logicalId(distribution), 'DomainName'] }, '/']],
    });
  });

  it('refuses a custom domain without a certificate CloudFront can use', () => {
    const elsewhere = 'arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000';
    expect(() =>
      registryIn((stack) => ({
        edge: true,
        domainName: 'registry.example.com',
        certificate: Certificate.fromCertificateArn(stack, 'Certificate', elsewhere),
      })),
    ).toThrow(/CloudFront, which takes ACM certificates from us-east-1 only; .* is in eu-west-1/);
    expect(() =>
      registryIn((_, zone) => ({ edge: true, domainName: 'registry.example.com', hostedZone: zone }), {
        region: 'eu-west-1',
      }),
    ).toThrow(/needs an ACM certificate in us-east-1: .*\(this one is in eu-west-1\)/);
    expect(() =>
      registryIn((_, zone) => ({ edge: true, domainName: 'registry.example.com', hostedZone: zone }), {}),
    ).toThrow(/this one is in an unknown region/);
  });
});

describe('the upload service', () => {
  let registry: ServerlessRegistry;
  let template: Template;

  beforeAll(() => {
    ({ registry, template } = registryIn(
      (_, zone) => ({
        hostedZone: zone,
        deleteEnabled: false,
        uploadService: {
          domainName: 'uploads.example.com',
          image: ContainerImage.fromRegistry('public.ecr.aws/example/registry:1'),
        },
      }),
      { account: '123456789012', region: 'eu-west-1' },
    ));
  }, SYNTH_TIMEOUT);

  const service = () => {
    if (!registry.uploadService) throw new Error('no upload service');
    return registry.uploadService;
  };

  it('runs one arm64 Fargate task of 0.25 vCPU and 512 MiB, with a public IP, rolled back if unhealthy', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      Cpu: '256',
      Memory: '512',
      NetworkMode: 'awsvpc',
      RequiresCompatibilities: ['FARGATE'],
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
    });
    template.hasResourceProperties('AWS::ECS::Service', {
      LaunchType: 'FARGATE',
      DesiredCount: 1,
      NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'ENABLED' } },
      DeploymentConfiguration: Match.objectLike({
        MinimumHealthyPercent: 100,
        DeploymentCircuitBreaker: { Enable: true, Rollback: true },
      }),
    });
  });

  it('configures the container as the upload-only registry on the same bucket and table', () => {
    const task = onlyResource(template, 'AWS::ECS::TaskDefinition') as {
      Properties: { ContainerDefinitions: Json[] };
    };
    const [container] = task.Properties.ContainerDefinitions;
    const environment = Object.fromEntries(
      (container?.Environment as { Name: string; Value: unknown }[]).map(({ Name, Value }) => [Name, Value]),
    );
    expect(environment).toEqual({
      REGISTRY_HTTP_ADDR: ':5000',
      REGISTRY_HTTP_SECRET: { Ref: logicalId(registry.uploadSecret as IConstruct) },
      REGISTRY_UPLOADS_ONLY: 'true',
      REGISTRY_STORAGE: 's3',
      REGISTRY_STORAGE_S3_BUCKET: { Ref: logicalId(registry.bucket) },
      REGISTRY_STORAGE_S3_REGION: 'eu-west-1',
      REGISTRY_STORAGE_DELETE_ENABLED: 'false',
      REGISTRY_METADATA: 'dynamodb',
      REGISTRY_METADATA_DYNAMODB_TABLE: { Ref: logicalId(registry.table) },
      REGISTRY_LOG_LEVEL: 'info',
    });
    expect(container).toMatchObject({
      Image: 'public.ecr.aws/example/registry:1',
      PortMappings: [{ ContainerPort: 5000, Protocol: 'tcp' }],
      LogConfiguration: {
        LogDriver: 'awslogs',
        Options: expect.objectContaining({
          'awslogs-group': { Ref: logicalId(service().logGroup) },
        }) as unknown,
      },
    });
    template.hasResource('AWS::Logs::LogGroup', {
      Properties: { RetentionInDays: 30 },
      DeletionPolicy: 'Retain',
    });
  });

  it("gives the task exactly the function's data permissions, and the secret's value", () => {
    const taskRole = logicalId(service().taskDefinition.taskRole);
    const functionRole = logicalId(registry.function.role as IConstruct);
    const secretRef = { Ref: logicalId(registry.uploadSecret as IConstruct) };
    const task = Object.fromEntries(allowedActions(template, taskRole));
    expect(task).toEqual(Object.fromEntries(allowedActions(template, functionRole)));
    expect(task['secretsmanager:GetSecretValue']).toEqual([secretRef]);
    expect(task['s3:PutObject']).toEqual([
      { 'Fn::Join': ['', [{ 'Fn::GetAtt': [logicalId(registry.bucket), 'Arn'] }, '/*']] },
    ]);
  });

  it('listens on HTTPS only, with a 5-minute idle timeout, and checks GET /v2/ for a 200', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Scheme: 'internet-facing',
      Type: 'application',
      LoadBalancerAttributes: Match.arrayWith([
        { Key: 'idle_timeout.timeout_seconds', Value: '300' },
        { Key: 'routing.http.drop_invalid_header_fields.enabled', Value: 'true' },
      ]),
    });
    template.resourceCountIs('AWS::ElasticLoadBalancingV2::Listener', 1);
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 443,
      Protocol: 'HTTPS',
      Certificates: [{ CertificateArn: Match.anyValue() }],
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      Port: 5000,
      Protocol: 'HTTP',
      TargetType: 'ip',
      HealthCheckPath: '/v2/',
      Matcher: { HttpCode: '200' },
    });
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      FromPort: 5000,
      ToPort: 5000,
      SourceSecurityGroupId: Match.anyValue(),
    });
  });

  it("gets a certificate and an alias record in the registry's zone", () => {
    template.hasResourceProperties('AWS::CertificateManager::Certificate', {
      DomainName: 'uploads.example.com',
      ValidationMethod: 'DNS',
      DomainValidationOptions: [{ DomainName: 'uploads.example.com', HostedZoneId: ZONE.hostedZoneId }],
    });
    template.hasResourceProperties('AWS::Route53::RecordSet', {
      Name: 'uploads.example.com.',
      Type: 'A',
      AliasTarget: Match.objectLike({ DNSName: Match.anyValue() }),
    });
  });

  it('runs in a VPC of two public subnets with no NAT gateway, logging rejected traffic', () => {
    template.resourceCountIs('AWS::EC2::Subnet', 2);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT' });
  });

  it("sends the registry function's POST answers to the service, signed with the shared secret", () => {
    expect(functionVariables(template, registry)).toMatchObject({
      REGISTRY_UPLOADS_SERVICE: 'https://uploads.example.com',
      REGISTRY_HTTP_SECRET: { Ref: logicalId(registry.uploadSecret as IConstruct) },
    });
    expect(functionVariables(template, registry).REGISTRY_UPLOADS_EDGE).toBeUndefined();
    template.resourceCountIs('AWS::CloudFront::Distribution', 0);
  });

  it('refuses a service without a domain, or a domain without a certificate or zone', () => {
    const noDomain = {} as UploadServiceProps;
    expect(() => registryIn(() => ({ uploadService: noDomain }))).toThrow(
      /the upload service needs a domainName: .* cannot get an ACM certificate/,
    );
    expect(() => registryIn(() => ({ uploadService: { domainName: 'uploads.example.com' } }))).toThrow(
      /upload service's domain uploads.example.com needs a certificate, or a hostedZone/,
    );
  });
});

describe('the upload service image built from the repository', () => {
  let built: App;
  let stack: Stack;

  beforeAll(() => {
    built = app({ context: NO_BUNDLING });
    stack = new Stack(built, 'Image', { env: US_EAST_1 });
    new ServerlessRegistry(stack, 'Registry', {
      uploadService: {
        domainName: 'uploads.example.com',
        certificate: Certificate.fromCertificateArn(
          stack,
          'Certificate',
          'arn:aws:acm:us-east-1:1:certificate/x',
        ),
      },
    });
  }, SYNTH_TIMEOUT);

  it('is built for linux/arm64 from the Dockerfile, with only the files .dockerignore lets through', () => {
    const assembly = built.synth();
    const manifest = JSON.parse(
      readFileSync(join(assembly.directory, `${stack.artifactId}.assets.json`), 'utf8'),
    ) as { dockerImages: Record<string, { source: { directory: string; platform?: string } }> };
    const images = Object.values(manifest.dockerImages);
    expect(images).toHaveLength(1);
    expect(images[0]?.source.platform).toBe('linux/arm64');
    const context = join(assembly.directory, images[0]?.source.directory ?? '');
    const files = (dir: string): string[] =>
      readdirSync(dir).flatMap((name) => {
        const path = join(dir, name);
        return statSync(path).isDirectory() ? files(path) : [relative(context, path)];
      });
    const staged = files(context);
    expect(staged).toEqual(expect.arrayContaining(['Dockerfile', 'package.json', 'package-lock.json']));
    expect(staged).toContain(join('bin', 'registry.ts'));
    expect(staged).toContain(join('bin', 'image-config.yml'));
    const topLevel = new Set(staged.map((file) => file.split('/')[0]));
    expect([...topLevel].sort()).toEqual(
      [
        '.dockerignore',
        'Dockerfile',
        'bin',
        'functions',
        'package-lock.json',
        'package.json',
        'tsconfig.json',
      ].sort(),
    );
  });
});

describe('the registry stack with the upload paths from context', () => {
  let stack: RegistryStack;
  let template: Template;
  const edgeCertificate =
    'arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000001';
  const serviceCertificate =
    'arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000002';

  beforeAll(() => {
    stack = new RegistryStack(
      app({
        context: {
          ...NO_BUNDLING,
          edge: 'true',
          domainName: 'registry.example.com',
          certificateArn: edgeCertificate,
          uploadServiceDomain: 'uploads.example.com',
          uploadServiceCertificateArn: serviceCertificate,
          uploadServiceImage: 'public.ecr.aws/example/registry:1',
        },
      }),
      'Registry',
    );
    template = Template.fromStack(stack);
  }, SYNTH_TIMEOUT);

  it('deploys the edge on the domain with the us-east-1 certificate, and the service with its own', () => {
    template.hasResourceProperties('AWS::CloudFront::Distribution', {
      DistributionConfig: Match.objectLike({
        Aliases: ['registry.example.com'],
        ViewerCertificate: Match.objectLike({ AcmCertificateArn: edgeCertificate }),
      }),
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Certificates: [{ CertificateArn: serviceCertificate }],
    });
    template.resourceCountIs('AWS::CertificateManager::Certificate', 0);
    template.resourceCountIs('AWS::Route53::RecordSet', 0);
    expect(functionVariables(template, stack.registry)).toMatchObject({
      REGISTRY_UPLOADS_EDGE: 'true',
      REGISTRY_UPLOADS_SERVICE: 'https://uploads.example.com',
    });
    expect(outputValue(template, stack.registry, 'Url')).toBe('https://registry.example.com/');
  });

  it('passes cdk-nag, each new finding acknowledged with its reason', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => `${v.ruleName}: ${v.description}`)).toEqual([]);
    expect(Annotations.fromStack(stack).findError('*', Match.stringLikeRegexp('AwsSolutions-.*'))).toEqual(
      [],
    );
    const acknowledged: string[] = [];
    for (const construct of stack.node.findAll()) {
      for (const entry of construct.node.metadata) {
        if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
          expect(reason.length).toBeGreaterThan(60);
          acknowledged.push(
            `${construct.node.path} ${id.replace(/^annotation::/i, '').replace(/\[.*$/, '')}`,
          );
        }
      }
    }
    expect(
      // Only the AwsSolutions ones: the CDK acknowledges some CloudFormation validations of its own.
      acknowledged
        .filter((entry) => /\/(Edge|UploadService|UploadSecret)\b.* AwsSolutions-/.test(entry))
        .sort(),
    ).toEqual(
      [
        'Registry/Registry/Edge/Distribution AwsSolutions-CFR1',
        'Registry/Registry/Edge/Distribution AwsSolutions-CFR2',
        'Registry/Registry/Edge/Distribution AwsSolutions-CFR3',
        'Registry/Registry/Edge/UploadKeyProvider/framework-onEvent/ServiceRole AwsSolutions-IAM4',
        'Registry/Registry/Edge/UploadKeyProvider/framework-onEvent/ServiceRole AwsSolutions-IAM5',
        'Registry/Registry/Edge/UploadKeyWriter AwsSolutions-L1',
        'Registry/Registry/Edge/UploadKeyWriter/ServiceRole AwsSolutions-IAM4',
        'Registry/Registry/UploadSecret AwsSolutions-SMG4',
        'Registry/Registry/UploadService/Cluster AwsSolutions-ECS4',
        'Registry/Registry/UploadService/LoadBalancer AwsSolutions-ELB2',
        'Registry/Registry/UploadService/LoadBalancer/SecurityGroup AwsSolutions-EC23',
        'Registry/Registry/UploadService/Task AwsSolutions-ECS2',
        'Registry/Registry/UploadService/Task/ExecutionRole AwsSolutions-IAM5',
        'Registry/Registry/UploadService/Task/TaskRole AwsSolutions-IAM5',
      ].sort(),
    );
  });

  it('passes cdk-nag on the cloudfront.net name, with the default certificate acknowledged', () => {
    const plain = new RegistryStack(
      app({ context: { ...NO_BUNDLING, edge: true, auth: 'none' } }),
      'Registry',
    );
    expect(new AwsSolutionsChecks().validateScope(plain).violations.map((v) => v.ruleName)).toEqual([]);
    expect(plain.registry.uploadService).toBeUndefined();
  });

  it('turns neither on unless asked, and refuses context that does not fit together', () => {
    const plain = new RegistryStack(app({ context: { ...NO_BUNDLING, edge: 'false' } }), 'Registry');
    expect(plain.registry.edge).toBeUndefined();
    expect(plain.registry.uploadSecret).toBeUndefined();
    const invalid = (context: Record<string, unknown>) => () =>
      new RegistryStack(app({ context: { ...NO_BUNDLING, ...context } }), 'Registry');
    expect(invalid({ edge: 'yes' })).toThrow(/context edge must be true or false/);
    expect(invalid({ uploadServiceCertificateArn: serviceCertificate })).toThrow(
      /need an uploadServiceDomain/,
    );
    expect(invalid({ uploadServiceDomain: 'uploads.example.com' })).toThrow(
      /needs a certificate, or a hostedZone/,
    );
    expect(invalid({ hostedZoneId: ZONE.hostedZoneId })).toThrow(
      /hostedZoneId and hostedZoneName go together/,
    );
    expect(invalid({ domainName: 'registry.example.com' })).toThrow(/needs a certificateArn/);
    expect(invalid({ certificateArn: edgeCertificate })).toThrow(/certificateArn needs a domainName/);
  });

  it('creates certificates and records in the hosted zone from context', () => {
    const withZone = new RegistryStack(
      app({
        context: {
          ...NO_BUNDLING,
          uploadServiceDomain: 'uploads.example.com',
          uploadServiceImage: 'public.ecr.aws/example/registry:1',
          hostedZoneId: ZONE.hostedZoneId,
          hostedZoneName: ZONE.zoneName,
        },
      }),
      'Registry',
    );
    const zoned = Template.fromStack(withZone);
    zoned.hasResourceProperties('AWS::CertificateManager::Certificate', {
      DomainName: 'uploads.example.com',
    });
    zoned.hasResourceProperties('AWS::Route53::RecordSet', { Name: 'uploads.example.com.' });
  });
});
