/**
 * Monitoring: CloudWatch alarms on what says the registry is failing its users (server errors, a
 * crashing or throttled function, events not delivered) and a scheduled health check that says it is
 * alive when nobody uses it, each alarm notifying one SNS topic.
 *
 * Every alarm costs US$0.10 a month (the 5xx rate, made of two metrics, US$0.20), after the ten
 * alarm metrics of CloudWatch's free tier; the health check invokes the function every 5 minutes,
 * 8,640 times a month, well within Lambda's free tier (1 million requests, 400,000 GB-seconds).
 */
import { CfnOutput, Duration, Stack, Token } from 'aws-cdk-lib';
import type { IHttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import {
  Alarm,
  ComparisonOperator,
  type IMetric,
  MathExpression,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { type IEventBus, Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { type ITopic, Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { EventDelivery } from './notifications.js';

/**
 * The sink name the function's notification metrics carry (dimension Sink) for the EventBridge bus,
 * the one sink it has on AWS.
 */
export const EVENTBRIDGE_SINK = 'eventbridge';

/** One period for every alarm: CloudWatch's standard resolution, and the health check's interval. */
const PERIOD = Duration.minutes(5);

export interface RegistryMonitoringProps {
  /**
   * Where the alarms notify, when they go into ALARM and when they are OK again.
   * @default - a topic created for `alarmEmail`, or no actions: the alarms' states are in the console,
   *   and `alarms` take actions of your own
   */
  readonly alarmTopic?: ITopic;

  /**
   * An address subscribed to a topic created for the alarms (SNS emails it a confirmation link
   * first). Not with `alarmTopic`.
   * @default - none
   */
  readonly alarmEmail?: string;

  /**
   * The CloudWatch namespace of the function's own metrics (REGISTRY_METRICS_NAMESPACE), which the
   * alarms on them use: one per registry in an account and region.
   * @default `Registry/<stack name>`
   */
  readonly namespace?: string;

  /**
   * The share of the API's requests answered with a 5xx, in percent over 5 minutes, at which the
   * server error alarm goes off. On a quiet registry one failed request of a few is enough.
   * @default 5
   */
  readonly serverErrorPercent?: number;

  /**
   * Invoke the function every 5 minutes with a scheduled event, to which it answers by checking
   * storage and metadata and writing its `Healthy` metric, and alarm when that metric is below 1 or
   * missing for 10 minutes: an alarm on a registry nobody is using.
   * @default true
   */
  readonly healthCheck?: boolean;
}

/** What the registry gives its monitoring. */
export interface RegistryMonitoringOptions {
  readonly api: IHttpApi;
  /** The function that serves every request. */
  readonly function: IFunction;
  /** The namespace the function writes its metrics in. */
  readonly namespace: string;
  /** The bus the notification rules are on, the rules, and their dead-letter queue, with notifications. */
  readonly notifications?: {
    readonly eventBus: IEventBus;
    readonly deliveries: readonly EventDelivery[];
    readonly deadLetterQueue: IQueue | undefined;
  };
}

/**
 * The registry's alarms and health check. Each alarm is a property (and all of them are in `alarms`)
 * so that actions can be added to them.
 */
export class RegistryMonitoring extends Construct {
  /** Where the alarms notify, when given or created. */
  readonly topic: ITopic | undefined;
  /** Too many of the API's answers are 5xx (serverErrorPercent, over 5 minutes). */
  readonly serverErrors: Alarm;
  /** The function failed: an unhandled error, a timeout or running out of memory. */
  readonly functionErrors: Alarm;
  /** Lambda refused to run the function: the account's concurrency is used up. */
  readonly throttles: Alarm;
  /** The function gave up putting events on the bus, with notifications. */
  readonly notificationsDropped: Alarm | undefined;
  /** Events could not be delivered and wait in the dead-letter queue, with notification targets. */
  readonly deadLetters: Alarm | undefined;
  /** Per notification rule: deliveries that failed for good. */
  readonly failedDeliveries: Alarm[];
  /** The scheduled health check failed, or did not run, twice in a row. */
  readonly unhealthy: Alarm | undefined;
  /** The rule that invokes the function every 5 minutes, with the health check. */
  readonly healthCheck: Rule | undefined;
  /** Every alarm above. */
  readonly alarms: Alarm[];

  constructor(
    scope: Construct,
    id: string,
    props: RegistryMonitoringProps,
    options: RegistryMonitoringOptions,
  ) {
    super(scope, id);
    const { api, function: fn, namespace, notifications } = options;
    this.topic = this.alarmTopic(props);

    const serverErrorPercent = props.serverErrorPercent ?? 5;
    this.serverErrors = new Alarm(this, 'ServerErrors', {
      alarmDescription: `The registry answered more than ${serverErrorPercent}% of its requests with a 5xx in 5 minutes`,
      // MAX([errors, requests]) rather than requests: never a division by zero, and never over 100%
      // when the two metrics' data points arrive apart.
      metric: new MathExpression({
        expression: '100 * errors / MAX([errors, requests])',
        usingMetrics: {
          errors: api.metricServerError({ period: PERIOD }),
          requests: api.metricCount({ period: PERIOD }),
        },
        label: 'Server errors (%)',
        period: PERIOD,
      }),
      threshold: serverErrorPercent,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      // No requests, no data: nothing failed.
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });

    // The registry turns every error it knows into an HTTP answer, so one Lambda error is a bug or a
    // limit reached (timeout, memory): worth a look at once.
    this.functionErrors = this.countAlarm(
      'FunctionErrors',
      fn.metricErrors({ period: PERIOD, statistic: 'Sum' }),
      'The registry function failed (an unhandled error, a timeout or out of memory)',
    );
    // The function has no reserved concurrency: a throttle means the account's concurrency is used up,
    // by the registry or by other functions, and clients got 5xx for it.
    this.throttles = this.countAlarm(
      'Throttles',
      fn.metricThrottles({ period: PERIOD, statistic: 'Sum' }),
      "Lambda throttled the registry function: the account's concurrency is used up",
    );

    this.notificationsDropped = notifications
      ? this.countAlarm(
          'NotificationsDropped',
          new Metric({
            namespace,
            metricName: 'NotificationsDropped',
            dimensionsMap: { Sink: EVENTBRIDGE_SINK },
            statistic: 'Sum',
            period: PERIOD,
          }),
          'The registry function could not put events on its bus and logged them instead (level error)',
        )
      : undefined;
    this.deadLetters = notifications?.deadLetterQueue
      ? this.countAlarm(
          'DeadLetters',
          notifications.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
            period: PERIOD,
            statistic: 'Maximum',
          }),
          'Registry events could not be delivered and wait in the dead-letter queue',
        )
      : undefined;
    this.failedDeliveries = notifications ? this.deliveryAlarms(notifications) : [];

    if (props.healthCheck ?? true) {
      this.healthCheck = new Rule(this, 'HealthCheck', {
        description: 'Invokes the registry function with a scheduled event: its health check',
        schedule: Schedule.rate(PERIOD),
        // A check retried later says nothing about now: a missed one shows as missing data.
        targets: [new LambdaFunction(fn, { retryAttempts: 0 })],
      });
      this.unhealthy = new Alarm(this, 'Unhealthy', {
        alarmDescription:
          'The registry health check failed or did not run twice in a row (storage or metadata unreachable, or the function failing)',
        metric: new Metric({ namespace, metricName: 'Healthy', statistic: 'Minimum', period: PERIOD }),
        threshold: 1,
        comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
        // No line means no check ran: as bad as a failed one.
        treatMissingData: TreatMissingData.BREACHING,
      });
    } else {
      this.healthCheck = undefined;
      this.unhealthy = undefined;
    }

    this.alarms = [
      this.serverErrors,
      this.functionErrors,
      this.throttles,
      ...(this.notificationsDropped ? [this.notificationsDropped] : []),
      ...(this.deadLetters ? [this.deadLetters] : []),
      ...this.failedDeliveries,
      ...(this.unhealthy ? [this.unhealthy] : []),
    ];
    if (this.topic) {
      const action = new SnsAction(this.topic);
      for (const alarm of this.alarms) {
        alarm.addAlarmAction(action);
        alarm.addOkAction(action);
      }
    }
  }

  /** Per notification rule, an alarm on the deliveries EventBridge gave up. */
  private deliveryAlarms(notifications: NonNullable<RegistryMonitoringOptions['notifications']>): Alarm[] {
    const eventBusName = notifications.eventBus.eventBusName;
    return notifications.deliveries.map(({ id, receiver, rule }) =>
      this.countAlarm(
        `FailedDeliveries-${id}`,
        new Metric({
          namespace: 'AWS/Events',
          metricName: 'FailedInvocations',
          // A rule on a custom bus reports with both dimensions.
          dimensionsMap: { EventBusName: eventBusName, RuleName: rule.ruleName },
          statistic: 'Sum',
          period: PERIOD,
        }),
        `EventBridge gave up delivering registry events to ${receiver} (they are in the dead-letter queue)`,
      ),
    );
  }

  /** An alarm when a count is 1 or more in 5 minutes; no data is nothing counted. */
  private countAlarm(id: string, metric: IMetric, description: string): Alarm {
    return new Alarm(this, id, {
      alarmDescription: description,
      metric,
      threshold: 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
  }

  private alarmTopic(props: RegistryMonitoringProps): ITopic | undefined {
    const { alarmTopic, alarmEmail } = props;
    if (alarmTopic && alarmEmail !== undefined) {
      throw new Error(
        'ServerlessRegistry: monitoring takes alarmTopic or alarmEmail, not both: subscribe the address to your topic',
      );
    }
    if (alarmTopic) return alarmTopic;
    if (alarmEmail === undefined) return undefined;
    if (!Token.isUnresolved(alarmEmail) && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(alarmEmail)) {
      throw new Error(`ServerlessRegistry: alarmEmail ${JSON.stringify(alarmEmail)} is not an email address`);
    }
    // No server-side encryption: CloudWatch can publish to an encrypted topic only with a
    // customer-managed key whose policy lets it (not with alias/aws/sns), which costs US$1 a month,
    // and the messages hold alarm names and metric values, no registry data. Publishers must use TLS.
    const topic = new Topic(this, 'Alarms', {
      displayName: `Registry alarms (${Stack.of(this).stackName})`,
      enforceSSL: true,
    });
    topic.addSubscription(new EmailSubscription(alarmEmail));
    new CfnOutput(this, 'AlarmTopicArn', {
      value: topic.topicArn,
      description: "The registry alarms' topic",
    });
    return topic;
  }
}

/** The namespace of a registry's metrics, unless told otherwise: one per stack. */
export function defaultMetricsNamespace(scope: Construct): string {
  return `Registry/${Stack.of(scope).stackName}`;
}
