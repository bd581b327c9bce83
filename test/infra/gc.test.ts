// Scheduled garbage collection on AWS (lib/garbage-collection.ts): the function, its schedule, its
// permissions (the self-invocation apart from its default policy), the variables that carry the gc and
// retention settings and the API function's immutability rules, the bucket's lifecycle, the synth
// errors; the app's context keys, the bundle and cdk-nag.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { ScheduleExpression } from 'aws-cdk-lib/aws-scheduler';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../functions/config.js';
import type { RegistryGarbageCollection } from '../../lib/garbage-collection.js';
import { RegistryStack } from '../../lib/registry-stack.js';
import { ServerlessRegistry, type ServerlessRegistryProps } from '../../lib/serverless-registry.js';
import {
  allowedActions,
  app,
  cleanUpApps,
  type Json,
  logicalId,
  NO_BUNDLING,
  SYNTH_TIMEOUT,
} from './support.js';

afterAll(cleanUpApps);

/** A registry in its own stack. */
function registryWith(props: ServerlessRegistryProps, stackName = 'Collected') {
  const stack = new Stack(app({ context: NO_BUNDLING }), stackName);
  const registry = new ServerlessRegistry(stack, 'Registry', props);
  return { stack, registry, template: Template.fromStack(stack) };
}

type Resource = { Type: string; Properties: Json; DependsOn?: string[] };

function resourceOf(template: Template, construct: IConstruct): Resource {
  const resources = (template.toJSON() as { Resources: Record<string, Resource> }).Resources;
  const resource = resources[logicalId(construct)];
  if (!resource) throw new Error(`${construct.node.path} is not in the template`);
  return resource;
}

function variablesOf(template: Template, construct: IConstruct): Record<string, unknown> {
  return (
    resourceOf(template, construct).Properties as { Environment: { Variables: Record<string, unknown> } }
  ).Environment.Variables;
}

function gcOf(registry: ServerlessRegistry): RegistryGarbageCollection {
  if (!registry.garbageCollection) throw new Error('no garbage collection');
  return registry.garbageCollection;
}

const roleIdOf = (gc: RegistryGarbageCollection) => logicalId(gc.function.role as IConstruct);

describe('garbage collection with its defaults ({})', () => {
  let registry: ServerlessRegistry;
  let gc: RegistryGarbageCollection;
  let template: Template;
  let functionArn: Json;

  beforeAll(() => {
    ({ registry, template } = registryWith({ garbageCollection: {} }));
    gc = gcOf(registry);
    functionArn = { 'Fn::GetAtt': [logicalId(gc.function), 'Arn'] };
  }, SYNTH_TIMEOUT);

  it('names the function in an output, to start a run by hand', () => {
    const outputs = Object.values(template.findOutputs('*')).filter(
      (output) => JSON.stringify(output.Value) === JSON.stringify({ Ref: logicalId(gc.function) }),
    );
    expect(outputs).toHaveLength(1);
  });

  it('starts a run every day at 03:00 UTC, on time, invoking the function with {} and no retries', () => {
    template.resourceCountIs('AWS::Scheduler::Schedule', 1);
    expect(resourceOf(template, gc.schedule).Properties).toEqual({
      Description: expect.any(String) as string,
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'Etc/UTC',
      FlexibleTimeWindow: { Mode: 'OFF' },
      State: 'ENABLED',
      Target: {
        Arn: functionArn,
        Input: '{}',
        RoleArn: { 'Fn::GetAtt': [logicalId(gc.scheduleRole), 'Arn'] },
        RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 86400 },
      },
    });
  });

  it("invokes with a role of its own, for this account's schedules and this function only", () => {
    expect(resourceOf(template, gc.scheduleRole).Properties.AssumeRolePolicyDocument).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: 'sts:AssumeRole',
          Principal: { Service: 'scheduler.amazonaws.com' },
          Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
        },
      ],
    });
    expect(allowedActions(template, logicalId(gc.scheduleRole))).toEqual([
      ['lambda:InvokeFunction', [functionArn, { 'Fn::Join': ['', [functionArn, ':*']] }]],
    ]);
  });

  it('runs for up to 15 minutes with a whole vCPU, one invocation at a time, never retried', () => {
    expect(resourceOf(template, gc.function).Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Timeout: 900,
      MemorySize: 1769,
      ReservedConcurrentExecutions: 1,
    });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: logicalId(gc.function) },
      Qualifier: '$LATEST',
      MaximumRetryAttempts: 0,
    });
    // The API function is as it was: no reserved concurrency.
    expect(resourceOf(template, registry.function).Properties.ReservedConcurrentExecutions).toBeUndefined();
  });

  it("is configured with the registry's data, the defaults of gc, and nothing of the API", () => {
    expect(variablesOf(template, gc.function)).toEqual({
      REGISTRY_STORAGE: 's3',
      REGISTRY_STORAGE_S3_BUCKET: { Ref: logicalId(registry.bucket) },
      REGISTRY_STORAGE_S3_REGION: { Ref: 'AWS::Region' },
      REGISTRY_STORAGE_DELETE_ENABLED: 'true',
      REGISTRY_METADATA: 'dynamodb',
      REGISTRY_METADATA_DYNAMODB_TABLE: { Ref: logicalId(registry.table) },
      REGISTRY_LOG_LEVEL: 'info',
      NODE_OPTIONS: '--enable-source-maps',
      REGISTRY_GC_GRACE: '3600s',
      REGISTRY_GC_DELETEUNTAGGED: 'false',
      GC_DRY_RUN: 'false',
    });
  });

  it('may read, write and delete in the bucket and the table, scan the table, and invoke itself', () => {
    const bucketArn = { 'Fn::GetAtt': [logicalId(registry.bucket), 'Arn'] };
    const tableArn = { 'Fn::GetAtt': [logicalId(registry.table), 'Arn'] };
    const objects = { 'Fn::Join': ['', [bucketArn, '/*']] };
    expect(Object.fromEntries(allowedActions(template, roleIdOf(gc)))).toEqual({
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
      'dynamodb:Scan': [tableArn],
      'dynamodb:BatchWriteItem': [tableArn],
      'dynamodb:TransactWriteItems': [tableArn],
      'dynamodb:ConditionCheckItem': [tableArn],
      'lambda:InvokeFunction': [functionArn],
    });
    // The API function may neither scan nor invoke.
    const api = allowedActions(template, logicalId(registry.function.role as IConstruct)).map(
      ([action]) => action,
    );
    expect(api).not.toContain('dynamodb:Scan');
    expect(api.filter((action) => action.startsWith('lambda:'))).toEqual([]);
  });

  it('invokes itself by a policy of its own, not its default policy, so that nothing is circular', () => {
    const selfInvoke = resourceOf(template, gc.selfInvoke);
    expect(selfInvoke.Properties).toMatchObject({
      Roles: [{ Ref: roleIdOf(gc) }],
      PolicyDocument: {
        Statement: [{ Effect: 'Allow', Action: 'lambda:InvokeFunction', Resource: functionArn }],
      },
    });
    const defaultPolicy = gc.function.role?.node.tryFindChild('DefaultPolicy');
    if (!defaultPolicy) throw new Error('no default policy');
    const statements = JSON.stringify(resourceOf(template, defaultPolicy).Properties);
    expect(statements).not.toContain('lambda:');
    expect(statements).not.toContain(logicalId(gc.function));
    // The function waits for its default policy, the self-invocation waits for the function, and the
    // schedule for the self-invocation.
    expect(resourceOf(template, gc.function).DependsOn).toContain(logicalId(defaultPolicy));
    expect(resourceOf(template, gc.function).DependsOn ?? []).not.toContain(logicalId(gc.selfInvoke));
    expect(resourceOf(template, gc.schedule).DependsOn).toContain(logicalId(gc.selfInvoke));
  });

  it("aborts the bucket's incomplete multipart uploads, and expires upload state, after the upload age", () => {
    expect(resourceOf(template, registry.bucket).Properties.LifecycleConfiguration).toEqual({
      Rules: [
        {
          Id: 'abort-incomplete-multipart-uploads',
          Status: 'Enabled',
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
        },
        { Id: 'expire-abandoned-uploads', Status: 'Enabled', Prefix: 'uploads/', ExpirationInDays: 7 },
      ],
    });
  });
});

describe('garbage collection as configured', () => {
  const retention = [
    {
      repositories: ['ci/**'],
      protect: ['latest', 'v*'],
      rules: [
        { tags: ['main-*'], keepLast: 10 },
        { tags: ['pr-*'], olderThan: Duration.days(14) },
        { untagged: true as const, olderThan: Duration.hours(36) },
      ],
    },
    { repositories: ['**'], rules: [{ tags: ['*'], keepLast: 3, olderThan: Duration.days(90) }] },
  ];
  let registry: ServerlessRegistry;
  let template: Template;

  beforeAll(() => {
    ({ registry, template } = registryWith({
      garbageCollection: {
        schedule: ScheduleExpression.rate(Duration.hours(6)),
        grace: Duration.minutes(30),
        deleteUntagged: true,
        dryRun: true,
        retention,
      },
      immutability: [
        { repositories: ['prod/**'], except: ['latest'] },
        { repositories: ['base'], tags: ['v*'] },
      ],
    }));
  }, SYNTH_TIMEOUT);

  it('starts runs on the given schedule', () => {
    template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(6 hours)' });
  });

  it('carries the grace period, untagged removal, dry runs and the retention policies in its variables', async () => {
    const variables = variablesOf(template, gcOf(registry).function);
    expect(variables).toMatchObject({
      REGISTRY_GC_GRACE: '1800s',
      REGISTRY_GC_DELETEUNTAGGED: 'true',
      GC_DRY_RUN: 'true',
    });
    expect(JSON.parse(String(variables.REGISTRY_RETENTION))).toEqual([
      {
        repositories: ['ci/**'],
        protect: ['latest', 'v*'],
        rules: [
          { tags: ['main-*'], keeplast: 10 },
          { tags: ['pr-*'], olderthan: '14d' },
          { untagged: true, olderthan: '129600s' },
        ],
      },
      { repositories: ['**'], rules: [{ tags: ['*'], keeplast: 3, olderthan: '90d' }] },
    ]);
    expect(variables.REGISTRY_IMMUTABILITY).toBeUndefined();

    // The registry reads them back as these settings.
    const { config } = await loadConfig({
      env: Object.fromEntries(
        Object.entries(variables).filter(([name]) => /^REGISTRY_(GC_|RETENTION)/.test(name)),
      ) as Record<string, string>,
    });
    expect(config.gc).toEqual({ graceMs: 1_800_000, deleteUntagged: true });
    expect(config.retention).toEqual([
      {
        repositories: ['ci/**'],
        protect: ['latest', 'v*'],
        rules: [
          { kind: 'tags', tags: ['main-*'], keepLast: 10, olderThanMs: undefined },
          { kind: 'tags', tags: ['pr-*'], keepLast: undefined, olderThanMs: 14 * 86_400_000 },
          { kind: 'untagged', olderThanMs: 36 * 3_600_000 },
        ],
      },
      {
        repositories: ['**'],
        protect: [],
        rules: [{ kind: 'tags', tags: ['*'], keepLast: 3, olderThanMs: 90 * 86_400_000 }],
      },
    ]);
  });

  it('gives the API function the immutability rules, which the registry reads back', async () => {
    const value = variablesOf(template, registry.function).REGISTRY_IMMUTABILITY;
    expect(JSON.parse(String(value))).toEqual([
      { repositories: ['prod/**'], except: ['latest'] },
      { repositories: ['base'], tags: ['v*'] },
    ]);
    const { config } = await loadConfig({ env: { REGISTRY_IMMUTABILITY: String(value) } });
    expect(config.immutability).toEqual([
      { repositories: ['prod/**'], tags: ['*'], except: ['latest'] },
      { repositories: ['base'], tags: ['v*'], except: [] },
    ]);
  });
});

describe('without garbage collection', () => {
  it('has no schedule and no second function, and the API function no immutability rules', () => {
    const { registry, template } = registryWith({});
    expect(registry.garbageCollection).toBeUndefined();
    template.resourceCountIs('AWS::Scheduler::Schedule', 0);
    template.resourceCountIs('AWS::Lambda::Function', 1);
    template.resourceCountIs('AWS::Lambda::EventInvokeConfig', 0);
    expect(variablesOf(template, registry.function).REGISTRY_IMMUTABILITY).toBeUndefined();
    // Immutability needs no garbage collection.
    const immutable = registryWith({ immutability: [{ repositories: ['**'] }] }, 'Immutable');
    expect(immutable.registry.garbageCollection).toBeUndefined();
    expect(variablesOf(immutable.template, immutable.registry.function).REGISTRY_IMMUTABILITY).toBe(
      '[{"repositories":["**"]}]',
    );
  });
});

describe('refused at synthesis', () => {
  const refuse = (props: ServerlessRegistryProps, message: RegExp) => {
    expect(
      () => new ServerlessRegistry(new Stack(app({ context: NO_BUNDLING }), 'Refused'), 'Registry', props),
    ).toThrow(message);
  };
  const gc = (retention: unknown, more: Json = {}): ServerlessRegistryProps => ({
    garbageCollection: { retention: retention as never, ...more },
  });

  it('retention policies the registry would refuse', () => {
    refuse(
      gc([{ repositories: ['ci/**'], rules: [] }]),
      /garbageCollection\.retention\[0\]\.rules: expected at least one rule/,
    );
    refuse(
      gc([{ repositories: [], rules: [{ tags: ['*'], keepLast: 1 }] }]),
      /retention\[0\]\.repositories: expected at least one pattern/,
    );
    refuse(
      gc([{ repositories: ['ci/{a'], rules: [{ tags: ['*'], keepLast: 1 }] }]),
      /retention\[0\]\.repositories: invalid pattern "ci\/\{a": Unterminated group/,
    );
    refuse(
      gc([{ repositories: ['**'], rules: [{ tags: ['*'] }] }]),
      /rules\[0\]: tags need keepLast, olderThan or both/,
    );
    refuse(
      gc([{ repositories: ['**'], rules: [{ tags: ['*'], keepLast: 0 }] }]),
      /rules\[0\]\.keepLast: expected a whole number, at least 1/,
    );
    refuse(
      gc([{ repositories: ['**'], rules: [{ tags: [], keepLast: 1 }] }]),
      /rules\[0\]\.tags: expected at least one pattern/,
    );
    refuse(
      gc([{ repositories: ['**'], rules: [{ untagged: true }] }]),
      /rules\[0\]\.olderThan: is required with untagged: true/,
    );
    refuse(
      gc([{ repositories: ['**'], rules: [{ untagged: true, tags: ['*'], olderThan: Duration.days(1) }] }]),
      /rules\[0\]: a rule is either .* \(got tags with untagged\)/,
    );
    refuse(
      gc([{ repositories: ['**'], rules: [{ tags: ['*'], olderThan: 7 }] }]),
      /rules\[0\]\.olderThan: expected a Duration/,
    );
  });

  it('a grace period in fractions of a second, and immutability rules without repositories', () => {
    refuse({ garbageCollection: { grace: Duration.millis(1500) } }, /whole number of seconds/);
    refuse(
      { immutability: [{ repositories: [] }] },
      /immutability\[0\]\.repositories: expected at least one pattern/,
    );
    refuse(
      { immutability: [{ repositories: ['**'], except: ['v[z-a]'] }] },
      /immutability\[0\]\.except: invalid pattern "v\[z-a\]"/,
    );
  });

  it("retention policies too large for the function's environment", () => {
    const many = Array.from({ length: 80 }, (_, i) => ({
      repositories: [`team-${i}/**`],
      rules: [{ tags: ['*'], keepLast: 5 }],
    }));
    refuse(
      gc(many),
      /the garbage collection function's environment would take about \d+ bytes, of which the retention policies \(REGISTRY_RETENTION\) take \d+: over Lambda's limit of 4096 bytes/,
    );
  });
});

describe('the registry stack with garbage collection from context', () => {
  let registryApp: App;
  let stack: RegistryStack;
  let template: Template;
  const retention = [
    {
      repositories: ['ci/**'],
      protect: ['latest'],
      rules: [
        { tags: ['pr-*'], olderthan: '14d' },
        { untagged: true, olderthan: '7d' },
      ],
    },
  ];

  beforeAll(() => {
    // Bundled, as the CLI does it: the function's resource names its asset directory.
    registryApp = app({
      context: {
        'aws:cdk:enable-asset-metadata': true,
        auth: 'none',
        gcSchedule: 'cron(30 2 ? * SUN *)',
        gcGrace: '2h',
        gcDeleteUntagged: 'true',
        gcDryRun: true,
        retention: JSON.stringify(retention),
        immutability: [{ repositories: ['prod/**'], except: ['latest'] }],
      },
    });
    stack = new RegistryStack(registryApp, 'Registry');
    template = Template.fromStack(stack);
  }, SYNTH_TIMEOUT);

  it('configures the schedule and the function as the context says', () => {
    const gc = gcOf(stack.registry);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(30 2 ? * SUN *)',
    });
    const variables = variablesOf(template, gc.function);
    expect(variables).toMatchObject({
      REGISTRY_GC_GRACE: '7200s',
      REGISTRY_GC_DELETEUNTAGGED: 'true',
      GC_DRY_RUN: 'true',
    });
    expect(JSON.parse(String(variables.REGISTRY_RETENTION))).toEqual(retention);
    expect(JSON.parse(String(variablesOf(template, stack.registry.function).REGISTRY_IMMUTABILITY))).toEqual([
      { repositories: ['prod/**'], except: ['latest'] },
    ]);
  });

  it('bundles the garbage collection handler with the Lambda client, and no other storage SDK', () => {
    const fn = resourceOf(template, gcOf(stack.registry).function) as Resource & { Metadata: Json };
    const dir = join(registryApp.synth().directory, fn.Metadata['aws:asset:path'] as string);
    const { sources } = JSON.parse(readFileSync(join(dir, 'index.mjs.map'), 'utf8')) as { sources: string[] };
    expect(sources.some((source) => source.endsWith('functions/handlers/gc.ts'))).toBe(true);
    expect(sources.some((source) => source.endsWith('functions/maintenance/gc.ts'))).toBe(true);
    expect(sources.some((source) => source.includes('node_modules/@aws-sdk/client-lambda/'))).toBe(true);
    expect(
      sources.filter((source) =>
        /node_modules\/(@azure\/|@google-cloud\/)|functions\/handlers\/registry\.ts/.test(source),
      ),
    ).toEqual([]);
    expect(readFileSync(join(dir, 'index.mjs'), 'utf8')).toMatch(/export\s*\{[^}]*\bhandler\b[^}]*\}/);
  });

  it('passes cdk-nag, with the findings on the function and the schedule role acknowledged', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => `${v.ruleName}: ${v.description}`)).toEqual([]);
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
    const gc = gcOf(stack.registry);
    const ours = Object.keys(acknowledged).filter((key) => key.includes('/GarbageCollection/'));
    expect(ours.sort()).toEqual(
      [
        'Registry/Registry/GarbageCollection/Function AwsSolutions-L1',
        'Registry/Registry/GarbageCollection/Function/ServiceRole AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        `Registry/Registry/GarbageCollection/Function/ServiceRole AwsSolutions-IAM5[Resource::<${logicalId(stack.registry.bucket)}.Arn>/*]`,
        `Registry/Registry/GarbageCollection/ScheduleRole AwsSolutions-IAM5[Resource::<${logicalId(gc.function)}.Arn>:*]`,
      ].sort(),
    );
    for (const key of ours) expect(acknowledged[key]?.length).toBeGreaterThan(60);
  });

  it('turns garbage collection on with gc=true alone, and leaves it off without any gc key', () => {
    const on = new RegistryStack(app({ context: { ...NO_BUNDLING, auth: 'none', gc: 'true' } }), 'Registry');
    const onTemplate = Template.fromStack(on);
    onTemplate.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'cron(0 3 * * ? *)' });
    expect(variablesOf(onTemplate, gcOf(on.registry).function)).toMatchObject({
      REGISTRY_GC_GRACE: '3600s',
      REGISTRY_GC_DELETEUNTAGGED: 'false',
      GC_DRY_RUN: 'false',
    });
    const off = new RegistryStack(app({ context: { ...NO_BUNDLING, auth: 'none' } }), 'Registry');
    expect(off.registry.garbageCollection).toBeUndefined();
    Template.fromStack(off).resourceCountIs('AWS::Scheduler::Schedule', 0);
  });

  it('refuses settings it cannot use', () => {
    const stackWith = (context: Json) =>
      new RegistryStack(app({ context: { ...NO_BUNDLING, auth: 'none', ...context } }), 'Registry');
    expect(() => stackWith({ gc: 'false', gcGrace: '2h' })).toThrow(/context gcGrace needs gc/);
    expect(() => stackWith({ gc: 'maybe' })).toThrow(/context gc must be true or false/);
    expect(() => stackWith({ gcSchedule: 'daily' })).toThrow(
      /context gcSchedule must be an EventBridge Scheduler expression/,
    );
    expect(() => stackWith({ gcGrace: 'soon' })).toThrow(/context gcGrace must be a duration/);
    expect(() => stackWith({ gcDryRun: 'yes' })).toThrow(/context gcDryRun must be true or false/);
    expect(() => stackWith({ retention: '[{' })).toThrow(/context retention: expected JSON/);
    expect(() =>
      stackWith({ retention: '[{"repositories":["**"],"rules":[{"tags":["*"],"keepLast":3}]}]' }),
    ).toThrow(
      /context retention\[0\]\.rules\[0\]\.keepLast: unknown key; expected tags, keeplast, olderthan, untagged/,
    );
    expect(() =>
      stackWith({ retention: '[{"repositories":["**"],"rules":[{"tags":["*"],"olderthan":"later"}]}]' }),
    ).toThrow(/context retention\[0\]\.rules\[0\]\.olderthan: expected a duration/);
    expect(() => stackWith({ immutability: '{"repositories":["**"]}' })).toThrow(
      /context immutability: expected a list/,
    );
  });
});
