/**
 * Notifications: the registry function puts one event on the registry's bus for every push, pull,
 * mount and delete (distribution's event, as the entry's Detail); this construct fans them out from
 * the bus, with EventBridge rules, to webhooks (API destinations), SQS queues and Lambda functions.
 *
 * What a receiver can count on:
 * - At least once. EventBridge retries a delivery that fails (from a webhook: a timeout, a 5xx, or a
 *   401, 407, 409 or 429; a throttled queue or function) with backoff and jitter, up to
 *   `retryAttempts` times (default 185) and for up to `maxEventAge` (default 24 hours); any other
 *   4xx is final. An event can also arrive twice: receivers deduplicate by its `id`. There is no
 *   ordering.
 * - Nothing is dropped silently: an event that cannot be delivered within those limits goes to one
 *   dead-letter queue shared by every target (kept 14 days), with the rule, the target and the error
 *   as message attributes.
 * - A webhook gets distribution's envelope, `{"events": [<event>]}`, one event per POST, as
 *   distribution sends them, but with `Content-Type: application/json` (EventBridge's; not
 *   distribution's `application/vnd.docker.distribution.events.v2+json`), and EventBridge gives up
 *   on a request after 5 seconds (a timeout it retries): a receiver should answer at once and work
 *   afterwards.
 * - A queue or a function gets the whole EventBridge event: `source`, `detail-type` (`Registry
 *   Push`, ...) and, as `detail`, the registry's event.
 */
import { CfnOutput, Duration, SecretValue, Token } from 'aws-cdk-lib';
import {
  ApiDestination,
  Authorization,
  Connection,
  EventField,
  type EventPattern,
  HttpMethod,
  HttpParameter,
  type IEventBus,
  Rule,
  RuleTargetInput,
} from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { type IQueue, Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DEFAULT_EVENT_SOURCE, EVENT_ACTIONS, type EventAction } from '../functions/notifications/events.js';

/** Every entry's Source unless told otherwise: the function's own default (notifications.eventbridge.source). */

/** The header a webhook's generated token is sent in, when it has no `authorization` of its own. */
export const WEBHOOK_TOKEN_HEADER = 'Registry-Webhook-Token';

/** Which events a target gets, and how hard EventBridge tries to deliver them. */
export interface EventDeliveryProps {
  /**
   * The actions delivered: push, pull, mount, delete.
   * @default - all of them, as distribution's endpoints (and any added later)
   */
  readonly actions?: readonly EventAction[];

  /**
   * Target media types not delivered (distribution's `ignoredmediatypes`), e.g. layer media types to
   * get manifest events only. Events without a media type (deletes) are always delivered.
   * @default - none
   */
  readonly ignoreMediaTypes?: readonly string[];

  /**
   * How many times EventBridge retries a failed delivery before the event goes to the dead-letter
   * queue (0 to 185).
   * @default 185
   */
  readonly retryAttempts?: number;

  /**
   * How long EventBridge keeps retrying an event (1 minute to 24 hours).
   * @default Duration.hours(24)
   */
  readonly maxEventAge?: Duration;
}

/** A webhook: events POSTed to an HTTPS endpoint, through an EventBridge API destination. */
export interface WebhookProps extends EventDeliveryProps {
  /**
   * What the receiver is called, unique among the webhooks: letters, digits, `.`, `-` and `_`. It
   * names the webhook's resources in the stack (changing it replaces them).
   */
  readonly name: string;

  /** Where events are POSTed. HTTPS only: API destinations refuse any other scheme. */
  readonly url: string;

  /**
   * How EventBridge authenticates to the receiver: an API key header, basic authentication or OAuth
   * client credentials (an API destination's connection must have one).
   * @default - an API key: a random token, generated into a Secrets Manager secret (US$0.40 a month;
   *   its ARN is the `<name>TokenSecretArn` output), in the `Registry-Webhook-Token` header
   */
  readonly authorization?: Authorization;

  /**
   * More headers on every request: strings are stored in the template as they are, SecretValues
   * (e.g. `SecretValue.secretsManager(arn)`) only in the connection's secret.
   * @default - none
   */
  readonly headers?: Record<string, string | SecretValue>;

  /**
   * At most this many requests a second to the receiver; events above it wait (within
   * `maxEventAge`) rather than fail.
   * @default 300 (EventBridge's default for an API destination)
   */
  readonly rateLimitPerSecond?: number;
}

/** A queue, with the events it gets. */
export interface QueueDeliveryProps extends EventDeliveryProps {
  /**
   * A standard queue. EventBridge needs to send messages to it: granted in its queue policy when it
   * is defined in this app, and for a queue encrypted with a KMS key, the key must let
   * events.amazonaws.com use it.
   */
  readonly queue: IQueue;
}

/** A Lambda function, with the events it gets. */
export interface FunctionDeliveryProps extends EventDeliveryProps {
  /**
   * Invoked asynchronously with each event. EventBridge's retries cover failing to invoke it
   * (throttles); what the function throws is retried by Lambda (twice) and ends in the function's own
   * on-failure destination, not in this construct's dead-letter queue.
   */
  readonly function: IFunction;
}

export interface RegistryNotificationsProps {
  /** Receivers of events over HTTPS. @default - none */
  readonly webhooks?: readonly WebhookProps[];

  /** Queues that get every event (IQueue), or those chosen (QueueDeliveryProps). @default - none */
  readonly queues?: readonly (IQueue | QueueDeliveryProps)[];

  /** Functions invoked with every event (IFunction), or those chosen. @default - none */
  readonly functions?: readonly (IFunction | FunctionDeliveryProps)[];

  /**
   * Put a manifest's config and layers (an index's manifests) into its push and pull events, as
   * `target.references` (notifications.events.includereferences). An entry may hold 256 KB: enough
   * for any manifest the registry accepts to be described.
   * @default false
   */
  readonly includeReferences?: boolean;

  /**
   * The Source of every event the registry puts on the bus; rules of your own match on it.
   * @default 'registry'
   */
  readonly source?: string;
}

/** What the registry gives its notifications. */
export interface RegistryNotificationsOptions {
  /** The bus the registry's function puts its events on. */
  readonly eventBus: IEventBus;
}

/** A rule that delivers events, and to whom. */
export interface EventDelivery {
  /** Unique among the deliveries, fit for a construct id: `Webhook-<name>`, `Queue<n>`, `Function<n>`. */
  readonly id: string;
  /** The receiver, in words: `the <name> webhook`, `queue <n>`, `function <n>`. */
  readonly receiver: string;
  readonly rule: Rule;
}

/** A webhook's resources. */
export class Webhook extends Construct {
  /** What the receiver is called (WebhookProps name). */
  readonly name: string;
  readonly connection: Connection;
  readonly destination: ApiDestination;
  readonly rule: Rule;
  /** The token sent in the Registry-Webhook-Token header, when the webhook has no `authorization`. */
  readonly token: Secret | undefined;

  constructor(
    scope: Construct,
    id: string,
    props: WebhookProps,
    delivery: { eventBus: IEventBus; source: string; deadLetterQueue: IQueue },
  ) {
    super(scope, id);
    this.name = props.name;
    let authorization = props.authorization;
    if (authorization) {
      this.token = undefined;
    } else {
      const token = new Secret(this, 'Token', {
        description: `The token the registry's ${props.name} webhook sends in the ${WEBHOOK_TOKEN_HEADER} header`,
        // 64 letters and digits: 380 bits, safe in a header as it is.
        generateSecretString: { passwordLength: 64, excludePunctuation: true, includeSpace: false },
      });
      this.token = token;
      authorization = Authorization.apiKey(WEBHOOK_TOKEN_HEADER, token.secretValue);
    }
    const headerParameters = Object.fromEntries(
      Object.entries(props.headers ?? {}).map(([name, value]) => [
        name,
        SecretValue.isSecretValue(value) ? HttpParameter.fromSecret(value) : HttpParameter.fromString(value),
      ]),
    );
    this.connection = new Connection(this, 'Connection', {
      description: `The registry's ${props.name} webhook`,
      authorization,
      ...(Object.keys(headerParameters).length > 0 && { headerParameters }),
    });
    this.destination = new ApiDestination(this, 'Destination', {
      description: `The registry's ${props.name} webhook`,
      connection: this.connection,
      endpoint: props.url,
      httpMethod: HttpMethod.POST,
      ...(props.rateLimitPerSecond !== undefined && { rateLimitPerSecond: props.rateLimitPerSecond }),
    });
    this.rule = new Rule(this, 'Rule', {
      description: `Registry events to the ${props.name} webhook`,
      eventBus: delivery.eventBus,
      eventPattern: eventPattern(delivery.source, props),
      targets: [
        new targets.ApiDestination(this.destination, {
          // distribution's envelope around the one event the entry carries.
          event: RuleTargetInput.fromObject({ events: [EventField.fromPath('$.detail')] }),
          ...retryPolicy(props, delivery.deadLetterQueue),
        }),
      ],
    });
    if (this.token) {
      new CfnOutput(this, 'TokenSecretArn', {
        value: this.token.secretArn,
        description: `The ${props.name} webhook's token (${WEBHOOK_TOKEN_HEADER} header), for its receiver to check`,
      });
      // The connection keeps its own copy of the token: a new one is given to it with update-connection.
      new CfnOutput(this, 'ConnectionName', {
        value: this.connection.connectionName,
        description: `The ${props.name} webhook's EventBridge connection, which sends the token`,
      });
    }
  }
}

/**
 * Sends the registry's events from its bus to webhooks, queues and functions, with retries and one
 * dead-letter queue (see the top of this file for what receivers get).
 */
export class RegistryNotifications extends Construct {
  /** The Source the registry's events carry. */
  readonly source: string;
  /** The function's variables that make it put its events on the bus (see its config). */
  readonly environment: Record<string, string>;
  readonly webhooks: Webhook[];
  /** Every rule that delivers events, the webhooks', the queues' and the functions', with its receiver. */
  readonly deliveries: EventDelivery[];
  /** Where events go that could not be delivered, when there is anywhere to deliver them. */
  readonly deadLetterQueue: Queue | undefined;

  constructor(
    scope: Construct,
    id: string,
    props: RegistryNotificationsProps,
    options: RegistryNotificationsOptions,
  ) {
    super(scope, id);
    checkNotificationsProps(props);
    const { eventBus } = options;
    this.source = props.source ?? DEFAULT_EVENT_SOURCE;
    this.environment = {
      REGISTRY_NOTIFICATIONS_EVENTBRIDGE_EVENTBUS: eventBus.eventBusName,
      // Set even when it is the function's default: the rules below match on it.
      REGISTRY_NOTIFICATIONS_EVENTBRIDGE_SOURCE: this.source,
      ...(props.includeReferences && { REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES: 'true' }),
    };

    const queues = (props.queues ?? []).map((q) => ('queue' in q ? q : { queue: q }));
    const functions = (props.functions ?? []).map((f) => ('function' in f ? f : { function: f }));
    const webhooks = props.webhooks ?? [];
    if (webhooks.length + queues.length + functions.length === 0) {
      this.webhooks = [];
      this.deliveries = [];
      this.deadLetterQueue = undefined;
      return;
    }

    const deadLetterQueue = new Queue(this, 'DeadLetters', {
      // SQS's longest: two weeks to notice, fix the receiver and send the events again.
      retentionPeriod: Duration.days(14),
      // SSE-SQS: EventBridge can write to it without a key policy (it cannot use alias/aws/sqs).
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.deadLetterQueue = deadLetterQueue;
    const delivery = { eventBus, source: this.source, deadLetterQueue };

    this.webhooks = webhooks.map(
      (webhook) => new Webhook(this, `Webhook-${webhook.name}`, webhook, delivery),
    );
    this.deliveries = [
      ...this.webhooks.map((webhook) => ({
        id: webhook.node.id,
        receiver: `the ${webhook.name} webhook`,
        rule: webhook.rule,
      })),
      ...queues.map((q, i) => ({
        id: `Queue${i}`,
        receiver: `queue ${i}`,
        rule: new Rule(this, `Queue${i}`, {
          description: 'Registry events to a queue',
          eventBus,
          eventPattern: eventPattern(this.source, q),
          targets: [new targets.SqsQueue(q.queue, retryPolicy(q, deadLetterQueue))],
        }),
      })),
      ...functions.map((f, i) => ({
        id: `Function${i}`,
        receiver: `function ${i}`,
        rule: new Rule(this, `Function${i}`, {
          description: 'Registry events to a function',
          eventBus,
          eventPattern: eventPattern(this.source, f),
          targets: [new targets.LambdaFunction(f.function, retryPolicy(f, deadLetterQueue))],
        }),
      })),
    ];

    new CfnOutput(this, 'DeadLetterQueueUrl', {
      value: deadLetterQueue.queueUrl,
      description: 'Registry events that could not be delivered (kept 14 days)',
    });
  }
}

/**
 * The events of this registry that a target wants. The action is matched in the event itself
 * (detail.action) rather than in the detail-type derived from it.
 */
function eventPattern(source: string, delivery: EventDeliveryProps): EventPattern {
  const detail: Record<string, unknown> = {};
  if (delivery.actions) detail.action = [...delivery.actions];
  const ignored = delivery.ignoreMediaTypes ?? [];
  if (ignored.length > 0) {
    // anything-but matches present fields only: without `exists: false`, a filter on media types
    // would also drop the deletes, whose targets have none. Values in a list match if any does.
    detail.target = { mediaType: [{ 'anything-but': [...ignored] }, { exists: false }] };
  }
  return { source: [source], ...(Object.keys(detail).length > 0 && { detail }) };
}

/** Every target's retries, written out (EventBridge's defaults) so that the template says what happens. */
function retryPolicy(delivery: EventDeliveryProps, deadLetterQueue: IQueue): targets.TargetBaseProps {
  return {
    deadLetterQueue,
    retryAttempts: delivery.retryAttempts ?? 185,
    maxEventAge: delivery.maxEventAge ?? Duration.hours(24),
  };
}

const WEBHOOK_NAME = /^[A-Za-z0-9._-]{1,64}$/;

function checkNotificationsProps(props: RegistryNotificationsProps): void {
  const source = props.source;
  if (source !== undefined && !Token.isUnresolved(source) && (source === '' || source.startsWith('aws.'))) {
    // PutEvents refuses entries whose Source starts with aws.
    throw new Error(
      `ServerlessRegistry: notifications source must be set and not start with "aws.", not ${JSON.stringify(source)}`,
    );
  }
  const names = new Set<string>();
  for (const webhook of props.webhooks ?? []) {
    const { name, url } = webhook;
    if (!WEBHOOK_NAME.test(name)) {
      throw new Error(
        `ServerlessRegistry: webhook name ${JSON.stringify(name)}: use 1 to 64 letters, digits, '.', '-' and '_'`,
      );
    }
    if (names.has(name)) throw new Error(`ServerlessRegistry: two webhooks are named ${name}`);
    names.add(name);
    if (!Token.isUnresolved(url) && !isHttpsUrl(url)) {
      throw new Error(
        `ServerlessRegistry: webhook ${name}: ${JSON.stringify(url)} is not an https:// URL; EventBridge API ` +
          'destinations deliver over HTTPS only',
      );
    }
  }
  const deliveries: [string, EventDeliveryProps][] = [
    ...(props.webhooks ?? []).map((w): [string, EventDeliveryProps] => [`webhook ${w.name}`, w]),
    ...(props.queues ?? []).map((q, i): [string, EventDeliveryProps] => [
      `queue ${i}`,
      'queue' in q ? q : {},
    ]),
    ...(props.functions ?? []).map((f, i): [string, EventDeliveryProps] => [
      `function ${i}`,
      'function' in f ? f : {},
    ]),
  ];
  for (const [what, delivery] of deliveries) checkDelivery(what, delivery);
}

function checkDelivery(what: string, delivery: EventDeliveryProps): void {
  const { actions } = delivery;
  if (actions === undefined) return;
  if (actions.length === 0) {
    throw new Error(`ServerlessRegistry: ${what} has no actions: leave actions out for all of them`);
  }
  const unknown = actions.filter((action) => !EVENT_ACTIONS.includes(action));
  if (unknown.length > 0) {
    throw new Error(
      `ServerlessRegistry: ${what}: unknown action ${unknown.join(', ')}; use ${EVENT_ACTIONS.join(', ')}`,
    );
  }
}

function isHttpsUrl(url: string): boolean {
  try {
    return new URL(url).protocol === 'https:';
  } catch {
    return false;
  }
}
