// Notifications on AWS (lib/notifications.ts): the function configured to put its events on the bus, and
// allowed to on that bus only; the rules that fan them out to webhooks (API destinations, with
// distribution's envelope), queues and functions, with their filters, retries and the dead-letter queue;
// the upload service publishing too; the synth errors; the app's context and cdk-nag.
import { CfnResource, Duration, SecretValue, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { Authorization } from 'aws-cdk-lib/aws-events';
import { Code, Function as LambdaFunction, Runtime } from 'aws-cdk-lib/aws-lambda';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBHOOK_TOKEN_HEADER, type Webhook } from '../../lib/notifications.js';
import { RegistryStack } from '../../lib/registry-stack.js';
import { ServerlessRegistry, type ServerlessRegistryProps } from '../../lib/serverless-registry.js';
import {
  allowedActions,
  app,
  cleanUpApps,
  type Json,
  logicalId,
  NO_BUNDLING,
  outputValue,
  SYNTH_TIMEOUT,
} from './support.js';

afterAll(cleanUpApps);

const LAYER_TYPES = [
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
];
const AUDIT_PASSWORD_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:audit/password-AbCdEf';

/** A registry in its own stack, with props that may need the stack. */
function registryIn(build: (stack: Stack) => ServerlessRegistryProps) {
  const stack = new Stack(app({ context: NO_BUNDLING }), 'Notifications');
  const registry = new ServerlessRegistry(stack, 'Registry', build(stack));
  return { stack, registry, template: Template.fromStack(stack) };
}

function resourceOf(template: Template, construct: IConstruct): { Properties: Json } {
  const resources = template.toJSON() as { Resources: Record<string, { Properties: Json }> };
  // A connection's and an API destination's resources are not their default children.
  const element = construct.node.defaultChild ?? construct.node.children.find(CfnResource.isCfnResource);
  const resource = resources.Resources[logicalId(element ?? construct)];
  if (!resource) throw new Error(`${construct.node.path} is not in the template`);
  return resource;
}

function functionVariables(template: Template, registry: ServerlessRegistry): Json {
  const fn = resourceOf(template, registry.function).Properties as { Environment: { Variables: Json } };
  return fn.Environment.Variables;
}

/** The one target of a rule. */
function targetOf(template: Template, rule: IConstruct): Json {
  const targets = resourceOf(template, rule).Properties.Targets as Json[];
  expect(targets).toHaveLength(1);
  return targets[0] ?? {};
}

describe('notifications to webhooks, queues and functions', () => {
  let registry: ServerlessRegistry;
  let template: Template;
  let builds: Queue;
  let deletions: Queue;
  let indexer: LambdaFunction;
  let busRef: Json;
  let deadLettersArn: Json;

  beforeAll(() => {
    ({ registry, template } = registryIn((stack) => {
      builds = new Queue(stack, 'Builds', { encryption: QueueEncryption.SQS_MANAGED, enforceSSL: true });
      deletions = new Queue(stack, 'Deletions', {
        encryption: QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
      });
      indexer = new LambdaFunction(stack, 'Indexer', {
        runtime: Runtime.NODEJS_22_X,
        handler: 'index.handler',
        code: Code.fromInline('export const handler = async () => {};'),
      });
      return {
        notifications: {
          source: 'registry.example',
          includeReferences: true,
          webhooks: [
            {
              name: 'ci',
              url: 'https://ci.example.com/hooks/registry',
              actions: ['push'],
              ignoreMediaTypes: LAYER_TYPES,
              rateLimitPerSecond: 10,
              retryAttempts: 20,
              maxEventAge: Duration.hours(2),
            },
            {
              name: 'audit',
              url: 'https://audit.example.com/events',
              authorization: Authorization.basic('registry', SecretValue.secretsManager(AUDIT_PASSWORD_ARN)),
              headers: {
                'Audit-Tenant': 'team-a',
                'Audit-Key': SecretValue.secretsManager(AUDIT_PASSWORD_ARN, { jsonField: 'key' }),
              },
            },
          ],
          queues: [builds, { queue: deletions, actions: ['delete'] }],
          functions: [{ function: indexer, actions: ['push', 'delete'], retryAttempts: 3 }],
        },
      };
    }));
    busRef = { Ref: logicalId(registry.eventBus) };
    const deadLetterQueue = registry.notifications?.deadLetterQueue;
    if (!deadLetterQueue) throw new Error('no dead-letter queue');
    deadLettersArn = { 'Fn::GetAtt': [logicalId(deadLetterQueue), 'Arn'] };
  }, SYNTH_TIMEOUT);

  const notifications = () => {
    if (!registry.notifications) throw new Error('no notifications');
    return registry.notifications;
  };
  const webhook = (name: string): Webhook => {
    const found = notifications().webhooks.find((w) => w.name === name);
    if (!found) throw new Error(`no webhook ${name}`);
    return found;
  };
  const cfnId = (construct: IConstruct) =>
    logicalId(construct.node.children.find(CfnResource.isCfnResource) ?? construct);
  const destinationId = (name: string) => cfnId(webhook(name).destination);
  const deliveryRule = (id: string) => {
    const found = notifications().deliveries.find((d) => d.id === id);
    if (!found) throw new Error(`no delivery ${id}`);
    return found.rule;
  };

  it('has the function put its events on the bus, with the source and the references asked for', () => {
    template.resourceCountIs('AWS::Events::EventBus', 1);
    expect(functionVariables(template, registry)).toMatchObject({
      REGISTRY_NOTIFICATIONS_EVENTBRIDGE_EVENTBUS: busRef,
      REGISTRY_NOTIFICATIONS_EVENTBRIDGE_SOURCE: 'registry.example',
      REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES: 'true',
    });
  });

  it('lets the function put events on this bus only', () => {
    const role = logicalId(registry.function.role as IConstruct);
    const events = allowedActions(template, role).filter(([action]) => action.startsWith('events:'));
    expect(events).toEqual([['events:PutEvents', [{ 'Fn::GetAtt': [logicalId(registry.eventBus), 'Arn'] }]]]);
  });

  it('matches the source, the actions and every media type but the ignored ones (deletes have none)', () => {
    expect(resourceOf(template, webhook('ci').rule).Properties).toMatchObject({
      EventBusName: busRef,
      EventPattern: {
        source: ['registry.example'],
        detail: {
          action: ['push'],
          target: { mediaType: [{ 'anything-but': LAYER_TYPES }, { exists: false }] },
        },
      },
    });
  });

  it('matches every event of the source for a receiver without filters', () => {
    for (const rule of [webhook('audit').rule, deliveryRule('Queue0')]) {
      expect(resourceOf(template, rule).Properties.EventPattern).toEqual({ source: ['registry.example'] });
    }
    expect(resourceOf(template, deliveryRule('Queue1')).Properties.EventPattern).toEqual({
      source: ['registry.example'],
      detail: { action: ['delete'] },
    });
  });

  it('POSTs to each webhook through an API destination, rate-limited when asked', () => {
    template.resourceCountIs('AWS::Events::ApiDestination', 2);
    expect(resourceOf(template, webhook('ci').destination).Properties).toMatchObject({
      InvocationEndpoint: 'https://ci.example.com/hooks/registry',
      HttpMethod: 'POST',
      InvocationRateLimitPerSecond: 10,
      ConnectionArn: { 'Fn::GetAtt': [cfnId(webhook('ci').connection), 'Arn'] },
    });
    expect(resourceOf(template, webhook('audit').destination).Properties).toMatchObject({
      InvocationEndpoint: 'https://audit.example.com/events',
      HttpMethod: 'POST',
    });
    expect(resourceOf(template, webhook('audit').destination).Properties.InvocationRateLimitPerSecond).toBe(
      undefined,
    );
  });

  it("sends a generated token in a header by default, never in the template's clear", () => {
    const token = webhook('ci').token;
    if (!token) throw new Error('no token');
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: { PasswordLength: 64, ExcludePunctuation: true, IncludeSpace: false },
    });
    expect(resourceOf(template, webhook('ci').connection).Properties).toEqual({
      Description: "The registry's ci webhook",
      AuthorizationType: 'API_KEY',
      AuthParameters: {
        ApiKeyAuthParameters: {
          ApiKeyName: WEBHOOK_TOKEN_HEADER,
          ApiKeyValue: {
            'Fn::Join': ['', ['{{resolve:secretsmanager:', { Ref: logicalId(token) }, ':SecretString:::}}']],
          },
        },
      },
    });
    expect(outputValue(template, webhook('ci'), 'TokenSecretArn')).toEqual({ Ref: logicalId(token) });
    // For update-connection, which gives the connection a new token (it keeps its own copy).
    expect(outputValue(template, webhook('ci'), 'ConnectionName')).toEqual({
      Ref: cfnId(webhook('ci').connection),
    });
  });

  it('uses the authorization and the headers given, secret ones from Secrets Manager', () => {
    expect(webhook('audit').token).toBeUndefined();
    const connection = resourceOf(template, webhook('audit').connection).Properties;
    expect(connection).toMatchObject({
      AuthorizationType: 'BASIC',
      AuthParameters: {
        BasicAuthParameters: {
          Username: 'registry',
          Password: `{{resolve:secretsmanager:${AUDIT_PASSWORD_ARN}:SecretString:::}}`,
        },
        InvocationHttpParameters: {
          HeaderParameters: [
            { Key: 'Audit-Tenant', Value: 'team-a', IsValueSecret: false },
            {
              Key: 'Audit-Key',
              Value: `{{resolve:secretsmanager:${AUDIT_PASSWORD_ARN}:SecretString:key::}}`,
              IsValueSecret: true,
            },
          ],
        },
      },
    });
    // The construct's token secret is the ci webhook's only.
    template.resourceCountIs('AWS::SecretsManager::Secret', 1);
  });

  it('wraps each event in distribution\'s envelope for webhooks: {"events": [<detail>]}', () => {
    for (const name of ['ci', 'audit']) {
      const target = targetOf(template, webhook(name).rule);
      expect(target.Arn).toEqual({ 'Fn::GetAtt': [destinationId(name), 'Arn'] });
      expect(target.InputTransformer).toEqual({
        InputPathsMap: { detail: '$.detail' },
        InputTemplate: '{"events":[<detail>]}',
      });
    }
  });

  it("lets EventBridge invoke each webhook's API destination, and nothing else", () => {
    const ci = webhook('ci');
    const role = (targetOf(template, ci.rule).RoleArn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    expect(allowedActions(template, role)).toEqual([
      ['events:InvokeApiDestination', [{ 'Fn::GetAtt': [destinationId('ci'), 'Arn'] }]],
    ]);
  });

  it('retries as asked, 185 times over 24 hours by default, then sends events to the dead-letter queue', () => {
    expect(targetOf(template, webhook('ci').rule)).toMatchObject({
      RetryPolicy: { MaximumRetryAttempts: 20, MaximumEventAgeInSeconds: 7200 },
      DeadLetterConfig: { Arn: deadLettersArn },
    });
    expect(targetOf(template, deliveryRule('Function0'))).toMatchObject({
      RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 86400 },
      DeadLetterConfig: { Arn: deadLettersArn },
    });
    for (const rule of [webhook('audit').rule, deliveryRule('Queue0'), deliveryRule('Queue1')]) {
      expect(targetOf(template, rule)).toMatchObject({
        RetryPolicy: { MaximumRetryAttempts: 185, MaximumEventAgeInSeconds: 86400 },
        DeadLetterConfig: { Arn: deadLettersArn },
      });
    }
  });

  it('keeps undeliverable events 14 days in one encrypted, TLS-only queue that every rule may write to', () => {
    const deadLetterQueue = notifications().deadLetterQueue as Queue;
    expect(resourceOf(template, deadLetterQueue).Properties).toEqual({
      MessageRetentionPeriod: 1209600,
      SqsManagedSseEnabled: true,
    });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: logicalId(deadLetterQueue) }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 'sqs:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
          ...notifications().deliveries.map(({ rule }) =>
            Match.objectLike({
              Effect: 'Allow',
              Action: 'sqs:SendMessage',
              Principal: { Service: 'events.amazonaws.com' },
              Condition: { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [logicalId(rule), 'Arn'] } } },
            }),
          ),
        ]),
      },
    });
    expect(outputValue(template, notifications(), 'DeadLetterQueueUrl')).toEqual({
      Ref: logicalId(deadLetterQueue),
    });
  });

  it('sends queues the whole EventBridge event, and lets the rule send to them', () => {
    for (const [id, queue] of [
      ['Queue0', builds],
      ['Queue1', deletions],
    ] as const) {
      const rule = deliveryRule(id);
      const target = targetOf(template, rule);
      expect(target.Arn).toEqual({ 'Fn::GetAtt': [logicalId(queue), 'Arn'] });
      expect(target.Input).toBeUndefined();
      expect(target.InputTransformer).toBeUndefined();
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: logicalId(queue) }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Action: Match.arrayWith(['sqs:SendMessage']),
              Principal: { Service: 'events.amazonaws.com' },
              Condition: { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [logicalId(rule), 'Arn'] } } },
            }),
          ]),
        },
      });
    }
  });

  it('invokes functions with the whole EventBridge event, allowed from their rule only', () => {
    const rule = deliveryRule('Function0');
    expect(resourceOf(template, rule).Properties.EventPattern).toEqual({
      source: ['registry.example'],
      detail: { action: ['push', 'delete'] },
    });
    const target = targetOf(template, rule);
    expect(target.Arn).toEqual({ 'Fn::GetAtt': [logicalId(indexer), 'Arn'] });
    expect(target.InputTransformer).toBeUndefined();
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [logicalId(indexer), 'Arn'] },
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [logicalId(rule), 'Arn'] },
    });
  });

  it('has one rule per receiver on the bus, and nothing on the default bus', () => {
    const rules = Object.values(template.findResources('AWS::Events::Rule')) as { Properties: Json }[];
    expect(rules).toHaveLength(5);
    for (const rule of rules) expect(rule.Properties.EventBusName).toEqual(busRef);
  });
});

describe('notifications without receivers', () => {
  it('put events on the bus (for rules of your own) with the default source, and create nothing else', () => {
    const { registry, template } = registryIn(() => ({ notifications: {} }));
    const variables = functionVariables(template, registry);
    expect(variables).toMatchObject({
      REGISTRY_NOTIFICATIONS_EVENTBRIDGE_EVENTBUS: { Ref: logicalId(registry.eventBus) },
      REGISTRY_NOTIFICATIONS_EVENTBRIDGE_SOURCE: 'registry',
    });
    expect(variables.REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES).toBeUndefined();
    expect(allowedActions(template).map(([action]) => action)).toContain('events:PutEvents');
    template.resourceCountIs('AWS::Events::Rule', 0);
    template.resourceCountIs('AWS::SQS::Queue', 0);
    expect(registry.notifications?.deadLetterQueue).toBeUndefined();
  });

  it('are off unless asked for: no variables, no permission, no rules', () => {
    const { registry, template } = registryIn(() => ({}));
    expect(registry.notifications).toBeUndefined();
    expect(
      Object.keys(functionVariables(template, registry)).filter((name) => name.includes('NOTIFICATIONS')),
    ).toEqual([]);
    expect(allowedActions(template).filter(([action]) => action.startsWith('events:'))).toEqual([]);
    template.resourceCountIs('AWS::Events::Rule', 0);
  });
});

describe('notifications with the upload service', () => {
  it('has the service put the pushes it finishes on the same bus, with the same permission', () => {
    const stack = new Stack(app({ context: NO_BUNDLING }), 'Uploads', {
      env: { account: '123456789012', region: 'eu-west-1' },
    });
    const registry = new ServerlessRegistry(stack, 'Registry', {
      notifications: { webhooks: [{ name: 'ci', url: 'https://ci.example.com/' }] },
      uploadService: {
        domainName: 'uploads.example.com',
        certificate: Certificate.fromCertificateArn(
          stack,
          'Certificate',
          'arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000',
        ),
        image: ContainerImage.fromRegistry('public.ecr.aws/example/registry:1'),
      },
    });
    const template = Template.fromStack(stack);
    const service = registry.uploadService;
    if (!service) throw new Error('no upload service');
    const task = resourceOf(template, service.taskDefinition).Properties as {
      ContainerDefinitions: { Environment: { Name: string; Value: unknown }[] }[];
    };
    const environment = Object.fromEntries(
      (task.ContainerDefinitions[0]?.Environment ?? []).map(({ Name, Value }) => [Name, Value]),
    );
    expect(environment).toMatchObject({
      REGISTRY_NOTIFICATIONS_EVENTBRIDGE_EVENTBUS: { Ref: logicalId(registry.eventBus) },
      REGISTRY_NOTIFICATIONS_EVENTBRIDGE_SOURCE: 'registry',
    });
    const busArn = { 'Fn::GetAtt': [logicalId(registry.eventBus), 'Arn'] };
    const taskEvents = allowedActions(template, logicalId(service.taskDefinition.taskRole)).filter(
      ([action]) => action.startsWith('events:'),
    );
    expect(taskEvents).toEqual([['events:PutEvents', [busArn]]]);
  });
});

describe('notification props that cannot work', () => {
  const invalid = (props: ServerlessRegistryProps['notifications']) => () =>
    registryIn(() => ({ ...(props && { notifications: props }) }));

  it('refuse a webhook that is not HTTPS, saying API destinations need it', () => {
    expect(invalid({ webhooks: [{ name: 'ci', url: 'http://ci.example.com/hooks' }] })).toThrow(
      /webhook ci: "http:\/\/ci\.example\.com\/hooks" is not an https:\/\/ URL; EventBridge API destinations deliver over HTTPS only/,
    );
    expect(invalid({ webhooks: [{ name: 'ci', url: 'ci.example.com' }] })).toThrow(
      /is not an https:\/\/ URL/,
    );
  });

  it('refuse webhook names that are not fit for the resources, or used twice', () => {
    expect(invalid({ webhooks: [{ name: 'ops team', url: 'https://ops.example.com/' }] })).toThrow(
      /webhook name "ops team": use 1 to 64 letters/,
    );
    const twice = { name: 'ci', url: 'https://ci.example.com/' };
    expect(invalid({ webhooks: [twice, twice] })).toThrow(/two webhooks are named ci/);
  });

  it('refuse unknown or no actions, and a source EventBridge reserves', () => {
    expect(
      invalid({ webhooks: [{ name: 'ci', url: 'https://ci.example.com/', actions: ['upload' as 'push'] }] }),
    ).toThrow(/webhook ci: unknown action upload; use push, pull, mount, delete/);
    expect(invalid({ webhooks: [{ name: 'ci', url: 'https://ci.example.com/', actions: [] }] })).toThrow(
      /webhook ci has no actions: leave actions out for all of them/,
    );
    expect(invalid({ source: 'aws.registry' })).toThrow(/source must be set and not start with "aws\."/);
  });
});

describe('the registry stack with a webhook from context', () => {
  let stack: RegistryStack;
  let template: Template;

  beforeAll(() => {
    stack = new RegistryStack(
      app({
        context: {
          ...NO_BUNDLING,
          auth: 'none',
          webhookUrl: 'https://hooks.example.com/registry',
          webhookActions: 'push, delete',
        },
      }),
      'Registry',
    );
    template = Template.fromStack(stack);
  }, SYNTH_TIMEOUT);

  it('POSTs the actions asked for to the URL, with a generated token', () => {
    const [webhook] = stack.registry.notifications?.webhooks ?? [];
    if (!webhook?.token) throw new Error('no webhook with a token');
    template.hasResourceProperties('AWS::Events::ApiDestination', {
      InvocationEndpoint: 'https://hooks.example.com/registry',
      HttpMethod: 'POST',
    });
    expect(resourceOf(template, webhook.rule).Properties.EventPattern).toEqual({
      source: ['registry'],
      detail: { action: ['push', 'delete'] },
    });
  });

  it('passes cdk-nag, with the dead-letter queue and the token acknowledged', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => `${v.ruleName}: ${v.description}`)).toEqual([]);
    const acknowledged: string[] = [];
    for (const construct of stack.node.findAll()) {
      for (const entry of construct.node.metadata) {
        if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
          expect(reason.length).toBeGreaterThan(60);
          acknowledged.push(`${construct.node.path} ${id.replace(/^annotation::/i, '')}`);
        }
      }
    }
    expect(acknowledged.filter((entry) => entry.includes('/Notifications/')).sort()).toEqual([
      'Registry/Registry/Notifications/DeadLetters AwsSolutions-SQS3',
      'Registry/Registry/Notifications/Webhook-webhook/Token AwsSolutions-SMG4',
    ]);
  });

  it('refuses context that does not fit together', () => {
    const invalid = (context: Record<string, unknown>) => () =>
      new RegistryStack(app({ context: { ...NO_BUNDLING, auth: 'none', ...context } }), 'Registry');
    expect(invalid({ webhookUrl: 'http://hooks.example.com/' })).toThrow(/is not an https:\/\/ URL/);
    expect(invalid({ webhookActions: 'push' })).toThrow(/context webhookActions needs a webhookUrl/);
    expect(invalid({ webhookUrl: 'https://hooks.example.com/', webhookActions: 'push,tag' })).toThrow(
      /context webhookActions must list some of push, pull, mount, delete/,
    );
  });
});
