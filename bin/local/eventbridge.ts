/**
 * A local Amazon EventBridge for tests and the local AWS deployment: PutEvents in the AWS JSON 1.1
 * protocol (`POST /`, `X-Amz-Target: AWSEvents.PutEvents`) on a free port of 127.0.0.1, for the SDK
 * client pointed at it with `endpoint`. What it does as EventBridge does:
 *
 * - it authenticates every request first: the SigV4 signature (service `events`, its region) is computed
 *   again (aws-json.ts) with @smithy/signature-v4 and the one set of credentials it was started with; an
 *   unknown access key is `400 UnrecognizedClientException`, a wrong secret key, a tampered body or a
 *   stale date `400 InvalidSignatureException`, with AWS's JSON error body
 *   (`{"__type": ..., "message": ...}`);
 * - an operation other than PutEvents is `400 UnknownOperationException`;
 * - a call with no entries or more than 10, or whose entries weigh more than 256 KB as EventBridge
 *   counts them (14 bytes for Time, the UTF-8 bytes of Source, DetailType, Detail and Resources), is
 *   refused whole with `400 ValidationException`;
 * - each entry is judged on its own: no Source, DetailType or Detail is `InvalidArgument`, a Detail
 *   that is not a JSON object `MalformedDetail`; the answer is 200 with `FailedEntryCount` and one
 *   result per entry, in request order (an EventId, or ErrorCode and ErrorMessage);
 * - an entry for a bus that does not exist is accepted with an EventId and then goes nowhere: AWS
 *   documents this, and senders cannot tell (it is logged here at warn, so a misconfigured bus shows);
 * - `targets` are the rules the deployment's construct creates for webhooks (lib/notifications.ts):
 *   an event pattern on source, detail.action and detail.target.mediaType, and an API destination
 *   target whose input transformer sends `{"events":[<detail>]}`. Each accepted event a rule matches
 *   is POSTed to its url in the background, with API destinations' Content-Type
 *   (`application/json; charset=utf-8`) and 5 s timeout, and retried after 401, 407, 409, 429, 5xx,
 *   timeouts and network errors (as API destinations retry), with backoff, a bounded number of times.
 *
 * What it does not: other operations (rules, archives, replays, schemas), event patterns beyond
 * source, action and media type, other kinds of targets, connections' authorization (a target's
 * `headers` stand in for it), dead-letter queues, throttling of its own (failNext and failCalls inject
 * failures instead), global endpoints (EndpointId, SigV4a), and the retry policy's real bounds (24
 * hours, 185 attempts). Events live in memory (`received`); nothing is persisted.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorFields, type Logger, silentLogger } from '../../functions/log.js';
import {
  authenticate,
  AwsError,
  header,
  type LocalCredentials,
  readBody,
  respond,
  respondWithError,
} from './aws-json.js';
import { listenOnLoopback } from './free-port.js';

export interface LocalRuleTarget {
  /** The API destination's endpoint; each matching event is POSTed here. */
  url: string;
  /** The Source the rule matches. @default any */
  source?: string;
  /** The detail.action values the rule matches. @default every action */
  actions?: string[];
  /** detail.target.mediaType values the rule leaves out (events without one still match). */
  ignoreMediaTypes?: string[];
  /** Headers sent with every POST, as the API destination's connection adds them (an API key). */
  headers?: Record<string, string>;
  /** Attempts after the first, as the target's retry policy bounds them. @default 3 (EventBridge's: 185) */
  retryAttempts?: number;
}

export interface LocalEventBridgeOptions {
  /** The region requests must be signed for. */
  region: string;
  /** The only credentials requests may be signed with. */
  credentials: LocalCredentials;
  /** The buses that exist, by name. @default ['default'] */
  buses?: string[];
  targets?: LocalRuleTarget[];
  /** Where refused deliveries to targets and entries for unknown buses are logged. @default silent */
  log?: Logger;
}

/** An event a bus accepted, as a rule would see it. */
export interface ReceivedEvent {
  /** The EventId PutEvents answered with. */
  id: string;
  bus: string;
  source: string;
  detailType: string;
  detail: Record<string, unknown>;
  /** The entry's Time (or when it arrived), as EventBridge writes an event's time: whole seconds, UTC. */
  time: string;
  resources: string[];
}

export interface LocalEventBridge {
  /** http://127.0.0.1:PORT: the EventBridge client's `endpoint`. */
  readonly url: string;
  /** Every event accepted onto an existing bus, in order of arrival. */
  readonly received: ReceivedEvent[];
  /** The next `count` entries that would be accepted fail with errorCode instead (a partial failure). */
  failNext(count: number, errorCode: string): void;
  /** The next `count` authenticated calls fail whole: `status` with `{"__type": type}`. */
  failCalls(count: number, status: number, type: string): void;
  /** Resolves once every delivery to a target started so far has succeeded or been given up. */
  idle(): Promise<void>;
  /** Stops listening and abandons deliveries still under way. */
  close(): Promise<void>;
}

const SERVICE = 'events';
const PUT_EVENTS = 'AWSEvents.PutEvents';
const MAX_ENTRIES = 10;
/** PutEvents' limit on a call's entries, counted as entrySize does. */
const MAX_ENTRIES_BYTES = 256 * 1024;
/** Larger bodies are cut off before they are read, as AWS's front does (413, empty body). */
const MAX_REQUEST_BYTES = 4 * 1024 * 1024;
/** API destinations' fixed timeout per request. */
const TARGET_TIMEOUT_MS = 5_000;
/** The first retry's delay to a target; each next one doubles. */
const TARGET_BACKOFF_MS = 100;
const TARGET_MAX_BACKOFF_MS = 5_000;
/** Statuses after which API destinations try again; any other non-2xx is final. */
const RETRYABLE_STATUSES = new Set([401, 407, 409, 429]);

interface EntryResult {
  EventId?: string;
  ErrorCode?: string;
  ErrorMessage?: string;
}

export async function startLocalEventBridge(options: LocalEventBridgeOptions): Promise<LocalEventBridge> {
  const { region, credentials } = options;
  const buses = new Set(options.buses ?? ['default']);
  const targets = options.targets ?? [];
  const log = options.log ?? silentLogger;
  const received: ReceivedEvent[] = [];
  const failingEntries: string[] = [];
  const failingCalls: { status: number; type: string }[] = [];
  const deliveries = new Set<Promise<void>>();
  const closing = new AbortController();

  const server = createServer((req, res) => {
    void serve(req, res).catch((error: unknown) => {
      respondWithError(res, error, 'InternalException');
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, MAX_REQUEST_BYTES);
    if (body === undefined) {
      res.writeHead(413, { 'content-length': 0, connection: 'close' });
      res.end();
      return;
    }
    if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') {
      throw new AwsError(
        'UnknownOperationException',
        `${req.method ?? ''} ${req.url ?? ''} is not an operation`,
      );
    }
    await authenticate(req, body, { service: SERVICE, region, credentials });
    const target = header(req, 'x-amz-target') ?? '';
    if (target !== PUT_EVENTS) throw new AwsError('UnknownOperationException', `Unknown operation ${target}`);
    const injected = failingCalls.shift();
    if (injected) throw new AwsError(injected.type, `${injected.type} (injected)`, injected.status);
    let input: unknown;
    try {
      input = JSON.parse(body.toString('utf8'));
    } catch {
      throw new AwsError('SerializationException', 'The request body is not valid JSON');
    }
    respond(res, 200, putEvents(input));
  }

  function putEvents(input: unknown): Record<string, unknown> {
    const entries = isObject(input) ? input.Entries : undefined;
    if (!Array.isArray(entries)) {
      throw new AwsError(
        'ValidationException',
        "1 validation error detected: Value null at 'entries' failed to satisfy constraint: Member must not be null",
      );
    }
    if (entries.length < 1 || entries.length > MAX_ENTRIES) {
      throw new AwsError(
        'ValidationException',
        `1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length ${
          entries.length < 1 ? 'greater than or equal to 1' : `less than or equal to ${MAX_ENTRIES}`
        }`,
      );
    }
    if (entries.reduce((total: number, entry: unknown) => total + entrySize(entry), 0) > MAX_ENTRIES_BYTES) {
      throw new AwsError(
        'ValidationException',
        'Total size of the entries in the request is over the limit.',
      );
    }
    const results = entries.map((entry: unknown) => accept(entry));
    return {
      FailedEntryCount: results.filter((result) => result.ErrorCode !== undefined).length,
      Entries: results,
    };
  }

  function accept(entry: unknown): EntryResult {
    const fields = isObject(entry) ? entry : {};
    for (const name of ['Source', 'DetailType', 'Detail'] as const) {
      const value = fields[name];
      if (typeof value !== 'string' || value === '') {
        return {
          ErrorCode: 'InvalidArgument',
          ErrorMessage: `Parameter ${name} is not valid. Reason: ${name} is a required argument.`,
        };
      }
    }
    let detail: unknown;
    try {
      detail = JSON.parse(fields.Detail as string);
    } catch {
      detail = undefined;
    }
    if (!isObject(detail)) return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' };
    const injected = failingEntries.shift();
    if (injected !== undefined) return { ErrorCode: injected, ErrorMessage: `${injected} (injected)` };

    const id = randomUUID();
    const busName = typeof fields.EventBusName === 'string' ? fields.EventBusName : 'default';
    // A bus by name or by ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME).
    const bus = busName.startsWith('arn:') ? busName.slice(busName.indexOf(':event-bus/') + 11) : busName;
    if (!buses.has(bus)) {
      log.warn('local EventBridge: event for a bus that does not exist accepted and dropped, as AWS does', {
        bus: busName,
        eventId: id,
      });
      return { EventId: id };
    }
    const event: ReceivedEvent = {
      id,
      bus,
      source: fields.Source as string,
      detailType: fields.DetailType as string,
      detail,
      time: eventTime(fields.Time),
      resources: Array.isArray(fields.Resources) ? fields.Resources.map(String) : [],
    };
    received.push(event);
    for (const target of targets) if (matches(target, event)) forward(target, event);
    return { EventId: id };
  }

  /** Delivers one event to a target in the background, as the rule's API destination target does. */
  function forward(target: LocalRuleTarget, event: ReceivedEvent): void {
    const delivery = deliver(target, event)
      .catch((error: unknown) => {
        log.error('local EventBridge: delivery to a rule target failed', {
          url: target.url,
          ...errorFields(error),
        });
      })
      .finally(() => deliveries.delete(delivery));
    deliveries.add(delivery);
  }

  async function deliver(target: LocalRuleTarget, event: ReceivedEvent): Promise<void> {
    const body = JSON.stringify({ events: [event.detail] });
    const attempts = 1 + (target.retryAttempts ?? 3);
    for (let attempt = 1; ; attempt++) {
      let outcome: string;
      let retryable: boolean;
      try {
        const response = await fetch(target.url, {
          method: 'POST',
          headers: {
            ...target.headers,
            'content-type': 'application/json; charset=utf-8',
            'user-agent': 'Amazon/EventBridge/ApiDestinations',
          },
          body,
          signal: AbortSignal.any([closing.signal, AbortSignal.timeout(TARGET_TIMEOUT_MS)]),
        });
        await response.arrayBuffer();
        if (response.ok) return;
        outcome = `HTTP ${response.status}`;
        retryable = response.status >= 500 || RETRYABLE_STATUSES.has(response.status);
      } catch (error) {
        if (closing.signal.aborted) return;
        outcome = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        retryable = true;
      }
      if (!retryable || attempt >= attempts) {
        log.error('local EventBridge: event not delivered to a rule target', {
          url: target.url,
          outcome,
          attempts: attempt,
          eventId: event.id,
        });
        return;
      }
      log.warn('local EventBridge: delivery to a rule target failed, retrying', {
        url: target.url,
        outcome,
        attempt,
        eventId: event.id,
      });
      const delay =
        Math.min(TARGET_MAX_BACKOFF_MS, TARGET_BACKOFF_MS * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      const stopped = await sleep(delay, false, { signal: closing.signal }).catch(() => true);
      if (stopped) return;
    }
  }

  const port = await listenOnLoopback(server);

  return {
    url: `http://127.0.0.1:${port}`,
    received,
    failNext(count, errorCode) {
      for (let i = 0; i < count; i++) failingEntries.push(errorCode);
    },
    failCalls(count, status, type) {
      for (let i = 0; i < count; i++) failingCalls.push({ status, type });
    },
    async idle() {
      while (deliveries.size > 0) await Promise.all([...deliveries]);
    },
    async close() {
      closing.abort();
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
      await Promise.all([...deliveries]);
    },
  };
}

/** Whether the target's rule matches the event: the construct's event pattern. */
function matches(target: LocalRuleTarget, event: ReceivedEvent): boolean {
  if (target.source !== undefined && event.source !== target.source) return false;
  if (target.actions !== undefined && !target.actions.includes(String(event.detail.action))) return false;
  const mediaType = isObject(event.detail.target) ? event.detail.target.mediaType : undefined;
  return typeof mediaType !== 'string' || !(target.ignoreMediaTypes ?? []).includes(mediaType);
}

/** An entry's size as EventBridge counts it against the call's limit. */
function entrySize(entry: unknown): number {
  if (!isObject(entry)) return 0;
  const utf8 = (value: unknown) => (typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : 0);
  const resources = Array.isArray(entry.Resources) ? entry.Resources : [];
  return (
    (entry.Time === undefined ? 0 : 14) +
    utf8(entry.Source) +
    utf8(entry.DetailType) +
    utf8(entry.Detail) +
    resources.reduce((total: number, resource: unknown) => total + utf8(resource), 0)
  );
}

/** The SDK sends Time as epoch seconds; an event's time has whole seconds. */
function eventTime(time: unknown): string {
  const date = typeof time === 'number' ? new Date(time * 1000) : new Date();
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
