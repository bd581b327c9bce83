// Monitoring on AWS (lib/monitoring.ts): the alarms on the API's 5xx rate, the function's errors and
// throttles, and notifications not delivered, in the namespace the function writes its metrics in; the
// scheduled health check and its alarm; the topic they notify; the synth errors; the app's context and
// cdk-nag.
import { Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryStack } from '../../lib/registry-stack.js';
import { ServerlessRegistry, type ServerlessRegistryProps } from '../../lib/serverless-registry.js';
import {
  app,
  cleanUpApps,
  type Json,
  logicalId,
  NO_BUNDLING,
  outputValue,
  SYNTH_TIMEOUT,
} from './support.js';

afterAll(cleanUpApps);

const OPS_TOPIC_ARN = 'arn:aws:sns:eu-west-1:123456789012:ops';

/** A registry in its own stack, with props that may need the stack. */
function registryIn(build: (stack: Stack) => ServerlessRegistryProps, stackName = 'Monitored') {
  const stack = new Stack(app({ context: NO_BUNDLING }), stackName);
  const registry = new ServerlessRegistry(stack, 'Registry', build(stack));
  return { stack, registry, template: Template.fromStack(stack) };
}

function propertiesOf(template: Template, construct: IConstruct): Json {
  const resources = template.toJSON() as { Resources: Record<string, { Properties: Json }> };
  const resource = resources.Resources[logicalId(construct)];
  if (!resource) throw new Error(`${construct.node.path} is not in the template`);
  return resource.Properties;
}

describe('monitoring with a topic of its own and notifications', () => {
  let registry: ServerlessRegistry;
  let template: Template;
  let functionRef: Json;

  beforeAll(() => {
    ({ registry, template } = registryIn((stack) => ({
      notifications: {
        webhooks: [{ name: 'ci', url: 'https://ci.example.com/hooks' }],
        queues: [new Queue(stack, 'Builds', { encryption: QueueEncryption.SQS_MANAGED, enforceSSL: true })],
      },
      monitoring: {
        alarmTopic: Topic.fromTopicArn(stack, 'Ops', OPS_TOPIC_ARN),
        namespace: 'Team/Registry',
        serverErrorPercent: 2,
      },
    })));
    functionRef = { Ref: logicalId(registry.function) };
  }, SYNTH_TIMEOUT);

  const monitoring = () => {
    if (!registry.monitoring) throw new Error('no monitoring');
    return registry.monitoring;
  };
  const alarm = (construct: IConstruct | undefined): Json => {
    if (!construct) throw new Error('no alarm');
    return propertiesOf(template, construct);
  };

  it('tells the function the namespace of its metrics, the one its alarms use', () => {
    const fn = propertiesOf(template, registry.function) as { Environment: { Variables: Json } };
    expect(fn.Environment.Variables.REGISTRY_METRICS_NAMESPACE).toBe('Team/Registry');
  });

  it('alarms when 2% or more of the API requests in 5 minutes get a 5xx, and not without requests', () => {
    const apiId = [{ Name: 'ApiId', Value: { Ref: logicalId(registry.api) } }];
    expect(alarm(monitoring().serverErrors)).toMatchObject({
      Metrics: [
        { Id: 'expr_1', Expression: '100 * errors / MAX([errors, requests])', ReturnData: true },
        {
          Id: 'errors',
          MetricStat: {
            Metric: { Namespace: 'AWS/ApiGateway', MetricName: '5xx', Dimensions: apiId },
            Period: 300,
            Stat: 'Sum',
          },
          ReturnData: false,
        },
        {
          Id: 'requests',
          MetricStat: {
            Metric: { Namespace: 'AWS/ApiGateway', MetricName: 'Count', Dimensions: apiId },
            Period: 300,
          },
          ReturnData: false,
        },
      ],
      Threshold: 2,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
    });
  });

  it('alarms on any error or throttle of the registry function in 5 minutes', () => {
    for (const [construct, metricName] of [
      [monitoring().functionErrors, 'Errors'],
      [monitoring().throttles, 'Throttles'],
    ] as const) {
      expect(alarm(construct)).toMatchObject({
        Namespace: 'AWS/Lambda',
        MetricName: metricName,
        Dimensions: [{ Name: 'FunctionName', Value: functionRef }],
        Statistic: 'Sum',
        Period: 300,
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
      });
    }
  });

  it("alarms on events the function dropped, by its EventBridge sink's metric in its namespace", () => {
    expect(alarm(monitoring().notificationsDropped)).toMatchObject({
      Namespace: 'Team/Registry',
      MetricName: 'NotificationsDropped',
      Dimensions: [{ Name: 'Sink', Value: 'eventbridge' }],
      Statistic: 'Sum',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
  });

  it('alarms as soon as an event waits in the dead-letter queue', () => {
    const deadLetterQueue = registry.notifications?.deadLetterQueue;
    if (!deadLetterQueue) throw new Error('no dead-letter queue');
    expect(alarm(monitoring().deadLetters)).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(deadLetterQueue), 'QueueName'] } }],
      Statistic: 'Maximum',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
  });

  it("alarms on each notification rule's failed deliveries, by the custom bus's dimensions", () => {
    const deliveries = registry.notifications?.deliveries ?? [];
    expect(deliveries).toHaveLength(2);
    expect(monitoring().failedDeliveries).toHaveLength(2);
    deliveries.forEach(({ rule }, i) => {
      expect(alarm(monitoring().failedDeliveries[i])).toMatchObject({
        Namespace: 'AWS/Events',
        MetricName: 'FailedInvocations',
        Dimensions: [
          { Name: 'EventBusName', Value: { Ref: logicalId(registry.eventBus) } },
          { Name: 'RuleName', Value: { Ref: logicalId(rule) } },
        ],
        Statistic: 'Sum',
        Threshold: 1,
        TreatMissingData: 'notBreaching',
      });
    });
  });

  it('invokes the function every 5 minutes with the scheduled event, once, on the default bus', () => {
    const healthCheck = monitoring().healthCheck;
    if (!healthCheck) throw new Error('no health check');
    const rule = propertiesOf(template, healthCheck);
    expect(rule).toMatchObject({ ScheduleExpression: 'rate(5 minutes)', State: 'ENABLED' });
    expect(rule.EventBusName).toBeUndefined();
    // No Input: the function recognises the schedule's own event (detail-type "Scheduled Event").
    expect(rule.Targets).toEqual([
      {
        Id: 'Target0',
        Arn: { 'Fn::GetAtt': [logicalId(registry.function), 'Arn'] },
        RetryPolicy: { MaximumRetryAttempts: 0 },
      },
    ]);
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [logicalId(registry.function), 'Arn'] },
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [logicalId(healthCheck), 'Arn'] },
    });
  });

  it('alarms when the health check reports unhealthy, or nothing, twice in a row', () => {
    const unhealthy = alarm(monitoring().unhealthy);
    expect(unhealthy).toMatchObject({
      Namespace: 'Team/Registry',
      MetricName: 'Healthy',
      Statistic: 'Minimum',
      Period: 300,
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
      TreatMissingData: 'breaching',
    });
    expect(unhealthy.Dimensions).toBeUndefined();
  });

  it('notifies the topic of every alarm, going off and back to OK, and exports them all', () => {
    const alarms = template.findResources('AWS::CloudWatch::Alarm');
    expect(Object.keys(alarms).sort()).toEqual(
      monitoring()
        .alarms.map((a) => logicalId(a))
        .sort(),
    );
    expect(monitoring().alarms).toHaveLength(8);
    for (const { Properties } of Object.values(alarms) as { Properties: Json }[]) {
      expect(Properties.AlarmActions).toEqual([OPS_TOPIC_ARN]);
      expect(Properties.OKActions).toEqual([OPS_TOPIC_ARN]);
      expect(String(Properties.AlarmDescription).length).toBeGreaterThan(30);
    }
    template.resourceCountIs('AWS::SNS::Topic', 0);
  });
});

describe('monitoring with an alarm email', () => {
  let registry: ServerlessRegistry;
  let template: Template;

  beforeAll(() => {
    ({ registry, template } = registryIn(
      () => ({ monitoring: { alarmEmail: 'ops@example.com' } }),
      'Mailed',
    ));
  }, SYNTH_TIMEOUT);

  it('creates a TLS-only topic with the address subscribed, which every alarm notifies', () => {
    const topic = registry.monitoring?.topic;
    if (!topic) throw new Error('no topic');
    const topicRef = { Ref: logicalId(topic) };
    template.hasResourceProperties('AWS::SNS::Subscription', {
      TopicArn: topicRef,
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [topicRef],
      PolicyDocument: {
        Statement: [
          Match.objectLike({
            Effect: 'Deny',
            Action: 'sns:Publish',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ],
      },
    });
    for (const { Properties } of Object.values(template.findResources('AWS::CloudWatch::Alarm')) as {
      Properties: Json;
    }[]) {
      expect(Properties.AlarmActions).toEqual([topicRef]);
      expect(Properties.OKActions).toEqual([topicRef]);
    }
    expect(outputValue(template, registry.monitoring as IConstruct, 'AlarmTopicArn')).toEqual(topicRef);
  });

  it("uses a namespace of the stack's own by default, in the function and the alarms alike", () => {
    const fn = propertiesOf(template, registry.function) as { Environment: { Variables: Json } };
    expect(fn.Environment.Variables.REGISTRY_METRICS_NAMESPACE).toBe('Registry/Mailed');
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Registry/Mailed',
      MetricName: 'Healthy',
    });
  });

  it('has no notification alarms without notifications', () => {
    const monitoring = registry.monitoring;
    expect(monitoring?.notificationsDropped).toBeUndefined();
    expect(monitoring?.deadLetters).toBeUndefined();
    expect(monitoring?.failedDeliveries).toEqual([]);
    // 5xx rate, function errors, throttles, health.
    template.resourceCountIs('AWS::CloudWatch::Alarm', 4);
  });
});

describe('monitoring, other choices', () => {
  it('keeps alarms without actions when given no topic or address', () => {
    const { registry, template } = registryIn(() => ({ monitoring: {} }));
    expect(registry.monitoring?.topic).toBeUndefined();
    template.resourceCountIs('AWS::SNS::Topic', 0);
    for (const { Properties } of Object.values(template.findResources('AWS::CloudWatch::Alarm')) as {
      Properties: Json;
    }[]) {
      expect(Properties.AlarmActions).toBeUndefined();
    }
    template.resourceCountIs('AWS::CloudWatch::Alarm', 4);
  });

  it('leaves out the health check and its alarm when told to', () => {
    const { registry, template } = registryIn(() => ({ monitoring: { healthCheck: false } }));
    expect(registry.monitoring?.healthCheck).toBeUndefined();
    expect(registry.monitoring?.unhealthy).toBeUndefined();
    template.resourceCountIs('AWS::Events::Rule', 0);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 3);
  });

  it('is off unless asked for: no alarms, no schedule, no namespace', () => {
    const { registry, template } = registryIn(() => ({}));
    expect(registry.monitoring).toBeUndefined();
    template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    template.resourceCountIs('AWS::Events::Rule', 0);
    const fn = propertiesOf(template, registry.function) as { Environment: { Variables: Json } };
    expect(fn.Environment.Variables.REGISTRY_METRICS_NAMESPACE).toBeUndefined();
  });

  it('refuses a topic and an address together, and an address that is not one', () => {
    expect(() =>
      registryIn((stack) => ({
        monitoring: {
          alarmTopic: Topic.fromTopicArn(stack, 'Ops', OPS_TOPIC_ARN),
          alarmEmail: 'ops@example.com',
        },
      })),
    ).toThrow(/alarmTopic or alarmEmail, not both/);
    expect(() => registryIn(() => ({ monitoring: { alarmEmail: 'ops' } }))).toThrow(
      /alarmEmail "ops" is not an email address/,
    );
  });
});

describe('the registry stack with monitoring from context', () => {
  let stack: RegistryStack;
  let template: Template;

  beforeAll(() => {
    stack = new RegistryStack(
      app({
        context: {
          ...NO_BUNDLING,
          auth: 'none',
          alarmEmail: 'ops@example.com',
          webhookUrl: 'https://hooks.example.com/registry',
        },
      }),
      'Registry',
    );
    template = Template.fromStack(stack);
  }, SYNTH_TIMEOUT);

  it('emails every alarm to alarmEmail, notifications alarms included', () => {
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
    // 5xx rate, function errors, throttles, health, dropped events, dead letters, the webhook's failures.
    expect(stack.registry.monitoring?.alarms).toHaveLength(7);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 7);
  });

  it('passes cdk-nag with nothing acknowledged for the alarms, the topic or the health check', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => `${v.ruleName}: ${v.description}`)).toEqual([]);
    const acknowledged: string[] = [];
    for (const construct of stack.node.findAll()) {
      for (const entry of construct.node.metadata) {
        if (entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
          acknowledged.push(construct.node.path);
      }
    }
    expect(acknowledged.filter((path) => path.includes('/Monitoring'))).toEqual([]);
  });

  it('turns on alarms without actions with monitoring=true, and refuses an email with monitoring=false', () => {
    const plain = new RegistryStack(
      app({ context: { ...NO_BUNDLING, auth: 'none', monitoring: 'true' } }),
      'Registry',
    );
    expect(plain.registry.monitoring?.topic).toBeUndefined();
    expect(plain.registry.monitoring?.alarms).toHaveLength(4);
    const off = new RegistryStack(app({ context: { ...NO_BUNDLING, auth: 'none' } }), 'Registry');
    expect(off.registry.monitoring).toBeUndefined();
    expect(
      () =>
        new RegistryStack(
          app({
            context: { ...NO_BUNDLING, auth: 'none', monitoring: false, alarmEmail: 'ops@example.com' },
          }),
          'Registry',
        ),
    ).toThrow(/context alarmEmail needs monitoring/);
  });
});
