import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type App, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { HostedZone } from 'aws-cdk-lib/aws-route53';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryStack } from '../../lib/registry-stack.js';
import { ServerlessRegistry } from '../../lib/serverless-registry.js';
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

describe('the registry stack', () => {
  let registryApp: App;
  let stack: RegistryStack;
  let template: Template;
  let bucketArn: Json;
  let tableArn: Json;

  beforeAll(() => {
    // As the CLI does: the function's resource names its asset directory. The open registry (auth=none)
    // is the base shape; test/infra/auth.test.ts covers what authentication, the default, adds.
    registryApp = app({ context: { 'aws:cdk:enable-asset-metadata': true, auth: 'none' } });
    stack = new RegistryStack(registryApp, 'Registry');
    template = Template.fromStack(stack);
    bucketArn = { 'Fn::GetAtt': [logicalId(stack.registry.bucket), 'Arn'] };
    tableArn = { 'Fn::GetAtt': [logicalId(stack.registry.table), 'Arn'] };
  }, SYNTH_TIMEOUT);

  describe('the function', () => {
    it('runs the registry handler on Node.js 22, arm64, with 1 GB and 30 s', () => {
      template.resourceCountIs('AWS::Lambda::Function', 1);
      template.hasResourceProperties('AWS::Lambda::Function', {
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        MemorySize: 1024,
        Timeout: 30,
      });
    });

    it('is configured by exactly the registry variables, with the bucket and table by reference', () => {
      const fn = onlyResource(template, 'AWS::Lambda::Function') as {
        Properties: { Environment: { Variables: Json } };
      };
      expect(fn.Properties.Environment.Variables).toEqual({
        REGISTRY_STORAGE: 's3',
        REGISTRY_STORAGE_S3_BUCKET: { Ref: logicalId(stack.registry.bucket) },
        REGISTRY_STORAGE_S3_REGION: { Ref: 'AWS::Region' },
        REGISTRY_STORAGE_DELETE_ENABLED: 'true',
        REGISTRY_STORAGE_REDIRECT_EXPIRY: '1200s',
        REGISTRY_METADATA: 'dynamodb',
        REGISTRY_METADATA_DYNAMODB_TABLE: { Ref: logicalId(stack.registry.table) },
        REGISTRY_LOG_LEVEL: 'info',
        NODE_OPTIONS: '--enable-source-maps',
      });
    });

    it('logs JSON into its own log group, kept for a month', () => {
      const logGroup = stack.registry.function.logGroup;
      template.hasResourceProperties('AWS::Lambda::Function', {
        LoggingConfig: { LogFormat: 'JSON', LogGroup: { Ref: logicalId(logGroup) } },
      });
      template.hasResource('AWS::Logs::LogGroup', {
        Properties: { RetentionInDays: 30 },
        DeletionPolicy: 'Retain',
      });
      expect(template.findResources('AWS::Logs::LogGroup')).toHaveProperty(logicalId(logGroup));
    });

    it('has no reserved concurrency', () => {
      template.hasResourceProperties('AWS::Lambda::Function', {
        ReservedConcurrentExecutions: Match.absent(),
      });
    });

    it('is bundled as one minified ESM file with a source map and a require() for CommonJS code', () => {
      const fn = onlyResource(template, 'AWS::Lambda::Function') as { Metadata: Json };
      const dir = join(registryApp.synth().directory, fn.Metadata['aws:asset:path'] as string);
      const code = readFileSync(join(dir, 'index.mjs'), 'utf8');
      expect(code.startsWith("import { createRequire as topLevelCreateRequire } from 'node:module';")).toBe(
        true,
      );
      expect(code).toMatch(/export\s*\{[^}]*\bhandler\b[^}]*\}/);
      expect(code).toMatch(/\/\/# sourceMappingURL=index\.mjs\.map\s*$/);
      expect(statSync(join(dir, 'index.mjs.map')).size).toBeGreaterThan(0);
      // Minified: long lines (source is about 40 characters a line).
      expect(code.length / code.split('\n').length).toBeGreaterThan(400);
    });

    it('carries no Azure or Google Cloud code: the function stores in S3', () => {
      const fn = onlyResource(template, 'AWS::Lambda::Function') as { Metadata: Json };
      const dir = join(registryApp.synth().directory, fn.Metadata['aws:asset:path'] as string);
      const { sources } = JSON.parse(readFileSync(join(dir, 'index.mjs.map'), 'utf8')) as {
        sources: string[];
      };
      expect(sources.some((source) => source.includes('functions/storage/s3.ts'))).toBe(true);
      const foreign = sources.filter((source) =>
        /node_modules\/(@azure\/|@google-cloud\/|google-auth-library\/|gaxios\/)|functions\/storage\/(azure|gcs)/.test(
          source,
        ),
      );
      expect(foreign).toEqual([]);
      const code = readFileSync(join(dir, 'index.mjs'), 'utf8');
      expect(code).not.toContain('blob.core.windows.net');
      expect(code).not.toContain('storage.googleapis.com');
    });
  });

  describe('the bucket', () => {
    it('is private, encrypted, owner-enforced and unversioned', () => {
      template.resourceCountIs('AWS::S3::Bucket', 1);
      template.hasResourceProperties('AWS::S3::Bucket', {
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
        OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
        VersioningConfiguration: Match.absent(),
      });
    });

    it('refuses requests without TLS', () => {
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: logicalId(stack.registry.bucket) },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Principal: { AWS: '*' },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    });

    it('aborts incomplete multipart uploads and expires upload state after 7 days', () => {
      template.hasResourceProperties('AWS::S3::Bucket', {
        LifecycleConfiguration: {
          Rules: Match.arrayEquals([
            Match.objectEquals({
              Id: 'abort-incomplete-multipart-uploads',
              Status: 'Enabled',
              AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
            }),
            Match.objectEquals({
              Id: 'expire-abandoned-uploads',
              Status: 'Enabled',
              Prefix: 'uploads/',
              ExpirationInDays: 7,
            }),
          ]),
        },
      });
    });

    it('is kept when the stack is deleted', () => {
      template.hasResource('AWS::S3::Bucket', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    });
  });

  describe('the table', () => {
    it('has the pk/sk keys, a ttl, on-demand billing, PITR and AWS-managed encryption, and no indexes', () => {
      template.resourceCountIs('AWS::DynamoDB::Table', 1);
      template.hasResourceProperties('AWS::DynamoDB::Table', {
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        AttributeDefinitions: Match.arrayEquals([
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ]),
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
        SSESpecification: { SSEEnabled: true },
        GlobalSecondaryIndexes: Match.absent(),
        LocalSecondaryIndexes: Match.absent(),
      });
    });

    it('is kept when the stack is deleted', () => {
      template.hasResource('AWS::DynamoDB::Table', {
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
      });
    });
  });

  describe('permissions', () => {
    it('allow exactly the object, multipart and item actions, on this bucket and this table only', () => {
      const objects = { 'Fn::Join': ['', [bucketArn, '/*']] };
      expect(Object.fromEntries(allowedActions(template))).toEqual({
        's3:ListBucket': [bucketArn],
        's3:ListBucketMultipartUploads': [bucketArn],
        's3:GetObject': [objects],
        's3:PutObject': [objects],
        's3:DeleteObject': [objects],
        's3:AbortMultipartUpload': [objects],
        's3:ListMultipartUploadParts': [objects],
        'dynamodb:GetItem': [tableArn],
        'dynamodb:PutItem': [tableArn],
        'dynamodb:UpdateItem': [tableArn],
        'dynamodb:DeleteItem': [tableArn],
        'dynamodb:Query': [tableArn],
        'dynamodb:BatchWriteItem': [tableArn],
        'dynamodb:TransactWriteItems': [tableArn],
        'dynamodb:ConditionCheckItem': [tableArn],
      });
    });

    it('have no wildcard actions and no wildcard resources', () => {
      for (const [action, resources] of allowedActions(template)) {
        expect(action).not.toContain('*');
        expect(resources).not.toContain('*');
      }
    });

    it('add only the basic execution role (logs) as a managed policy', () => {
      template.hasResourceProperties('AWS::IAM::Role', {
        AssumeRolePolicyDocument: {
          Statement: [Match.objectLike({ Principal: { Service: 'lambda.amazonaws.com' } })],
        },
        ManagedPolicyArns: [
          {
            'Fn::Join': [
              '',
              [
                'arn:',
                { Ref: 'AWS::Partition' },
                ':iam::aws:policy/service-role/AWSLambdaBasicExecutionRole',
              ],
            ],
          },
        ],
      });
    });
  });

  describe('the HTTP API', () => {
    it('sends every request ($default) to the function with payload format 2.0', () => {
      template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'HTTP' });
      template.resourceCountIs('AWS::ApiGatewayV2::Route', 1);
      template.hasResourceProperties('AWS::ApiGatewayV2::Route', {
        RouteKey: '$default',
        AuthorizationType: 'NONE',
        Target: { 'Fn::Join': ['', ['integrations/', { Ref: Match.anyValue() }]] },
      });
      template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
        IntegrationType: 'AWS_PROXY',
        PayloadFormatVersion: '2.0',
        IntegrationUri: { 'Fn::GetAtt': [logicalId(stack.registry.function), 'Arn'] },
      });
      template.hasResourceProperties('AWS::Lambda::Permission', {
        Action: 'lambda:InvokeFunction',
        Principal: 'apigateway.amazonaws.com',
      });
    });

    it('deploys one auto-deployed $default stage, throttled and access-logged as JSON', () => {
      template.resourceCountIs('AWS::ApiGatewayV2::Stage', 1);
      template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
        StageName: '$default',
        AutoDeploy: true,
        DefaultRouteSettings: { ThrottlingRateLimit: 1000, ThrottlingBurstLimit: 2000 },
        AccessLogSettings: {
          DestinationArn: { 'Fn::GetAtt': [logicalId(stack.registry.accessLogGroup), 'Arn'] },
          Format: Match.stringLikeRegexp('"requestId":"\\$context.requestId"'),
        },
      });
      const stage = onlyResource(template, 'AWS::ApiGatewayV2::Stage') as {
        Properties: { AccessLogSettings: { Format: string } };
      };
      expect(JSON.parse(stage.Properties.AccessLogSettings.Format)).toMatchObject({
        status: '$context.status',
        ip: '$context.identity.sourceIp',
        integrationError: '$context.integrationErrorMessage',
      });
    });

    it('has no custom domain unless asked for one', () => {
      template.resourceCountIs('AWS::ApiGatewayV2::DomainName', 0);
      template.resourceCountIs('AWS::ApiGatewayV2::ApiMapping', 0);
    });
  });

  it('creates an event bus for the registry events to come', () => {
    template.resourceCountIs('AWS::Events::EventBus', 1);
  });

  it('outputs the registry URL, the bucket name and the table name', () => {
    const registry = stack.registry;
    expect(outputValue(template, registry, 'Url')).toEqual({
      'Fn::Join': [
        '',
        [
          'https://',
          { Ref: logicalId(registry.api) },
          '.execute-api.',
          { Ref: 'AWS::Region' },
          '.',
          { Ref: 'AWS::URLSuffix' },
          '/',
        ],
      ],
    });
    expect(outputValue(template, registry, 'BucketName')).toEqual({ Ref: logicalId(registry.bucket) });
    expect(outputValue(template, registry, 'TableName')).toEqual({ Ref: logicalId(registry.table) });
  });

  describe('cdk-nag', () => {
    it('finds nothing unacknowledged in the AwsSolutions pack', () => {
      const report = new AwsSolutionsChecks().validateScope(stack);
      expect(report.violations.map((v) => `${v.ruleName}: ${v.description}`)).toEqual([]);
      expect(report.success).toBe(true);
      const annotations = Annotations.fromStack(stack);
      expect(annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-.*'))).toEqual([]);
      expect(annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*'))).toEqual([]);
    });

    it('acknowledges exactly these findings, each with a reason', () => {
      const acknowledged: Record<string, string> = {};
      for (const construct of stack.node.findAll()) {
        for (const entry of construct.node.metadata) {
          if (entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY) {
            for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
              acknowledged[`${construct.node.path} ${id.replace(/^annotation::/i, '')}`] = reason;
            }
          }
        }
      }
      const bucketId = logicalId(stack.registry.bucket);
      expect(Object.keys(acknowledged).sort()).toEqual(
        [
          'Registry/Registry/Api AwsSolutions-APIG4',
          'Registry/Registry/Function AwsSolutions-L1',
          'Registry/Registry/Function/ServiceRole AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
          `Registry/Registry/Function/ServiceRole AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/*]`,
          'Registry/Registry/Storage AwsSolutions-S1',
        ].sort(),
      );
      for (const reason of Object.values(acknowledged)) expect(reason.length).toBeGreaterThan(60);
    });

    it('fails the synthesis on a finding nobody acknowledged', () => {
      const unchecked = app({ context: NO_BUNDLING, builtinCloudFormationValidation: false });
      const other = new RegistryStack(unchecked, 'Registry');
      new Bucket(other, 'Unlogged', { enforceSSL: true });
      expect(() => unchecked.synth()).toThrow(/AwsSolutions-S1/);
    });
  });
});

describe('the registry stack with a custom domain from context', () => {
  let stack: RegistryStack;
  let template: Template;
  const certificateArn =
    'arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000';

  beforeAll(() => {
    const withDomain = app({
      context: { ...NO_BUNDLING, domainName: 'registry.example.com', certificateArn },
    });
    stack = new RegistryStack(withDomain, 'Registry');
    template = Template.fromStack(stack);
  }, SYNTH_TIMEOUT);

  it('creates a regional TLS 1.2 domain with the given certificate, mapped to the $default stage', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
      DomainName: 'registry.example.com',
      DomainNameConfigurations: [
        { CertificateArn: certificateArn, EndpointType: 'REGIONAL', SecurityPolicy: 'TLS_1_2' },
      ],
    });
    template.hasResourceProperties('AWS::ApiGatewayV2::ApiMapping', {
      ApiId: { Ref: logicalId(stack.registry.api) },
      DomainName: { Ref: logicalId(stack.registry.domain as IConstruct) },
      Stage: '$default',
    });
    template.resourceCountIs('AWS::CertificateManager::Certificate', 0);
    template.resourceCountIs('AWS::Route53::RecordSet', 0);
  });

  it('outputs the domain URL and the target for its DNS record', () => {
    const registry = stack.registry;
    expect(outputValue(template, registry, 'Url')).toBe('https://registry.example.com/');
    expect(outputValue(template, registry, 'DomainTarget')).toEqual({
      'Fn::GetAtt': [logicalId(registry.domain as IConstruct), 'RegionalDomainName'],
    });
  });

  it('passes cdk-nag', () => {
    expect(new AwsSolutionsChecks().validateScope(stack).violations).toEqual([]);
  });
});

describe('the construct in another app', () => {
  let template: Template;
  let registry: ServerlessRegistry;

  beforeAll(() => {
    const stack = new Stack(app({ context: NO_BUNDLING }), 'Elsewhere');
    registry = new ServerlessRegistry(stack, 'Registry', {
      domainName: 'registry.example.com',
      hostedZone: HostedZone.fromHostedZoneAttributes(stack, 'Zone', {
        hostedZoneId: 'Z0000000000000000000',
        zoneName: 'example.com',
      }),
      deleteEnabled: false,
      memorySize: 2048,
      removalPolicy: RemovalPolicy.DESTROY,
      throttle: { rateLimit: 50 },
    });
    template = Template.fromStack(stack);
  }, SYNTH_TIMEOUT);

  it('creates a DNS-validated certificate and an alias record in the hosted zone', () => {
    template.hasResourceProperties('AWS::CertificateManager::Certificate', {
      DomainName: 'registry.example.com',
      ValidationMethod: 'DNS',
      DomainValidationOptions: [{ DomainName: 'registry.example.com', HostedZoneId: 'Z0000000000000000000' }],
    });
    template.hasResourceProperties('AWS::Route53::RecordSet', {
      Name: 'registry.example.com.',
      Type: 'A',
      HostedZoneId: 'Z0000000000000000000',
      AliasTarget: {
        DNSName: { 'Fn::GetAtt': [logicalId(registry.domain as IConstruct), 'RegionalDomainName'] },
      },
    });
  });

  it('takes the delete switch, the memory and the throttle from its props', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 2048,
      Environment: { Variables: Match.objectLike({ REGISTRY_STORAGE_DELETE_ENABLED: 'false' }) },
    });
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 2000 },
    });
  });

  it('deletes the data with the stack when told to, emptying the bucket first', () => {
    template.hasResource('AWS::S3::Bucket', { DeletionPolicy: 'Delete' });
    template.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete' });
    template.resourceCountIs('Custom::S3AutoDeleteObjects', 1);
  });

  it('refuses a domain without a certificate or a zone, and a certificate without a domain', () => {
    const stack = new Stack(app({ context: NO_BUNDLING }), 'Invalid');
    expect(
      () => new ServerlessRegistry(stack, 'NoCertificate', { domainName: 'registry.example.com' }),
    ).toThrow(/needs a certificate/);
    const certificate = Certificate.fromCertificateArn(
      stack,
      'Certificate',
      'arn:aws:acm:eu-west-1:1:certificate/x',
    );
    expect(() => new ServerlessRegistry(stack, 'NoDomain', { certificate })).toThrow(/need a domainName/);
  });
});
