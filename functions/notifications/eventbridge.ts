/**
 * Notifications to an Amazon EventBridge bus: one PutEvents entry per event, its Detail the distribution
 * event's JSON (not the envelope), so rules match on `detail.action`, `detail.target.repository` and the
 * rest. Delivery is synchronous (on Lambda nothing runs after the response): publish resolves once every
 * event was accepted by the bus or given up, within a bounded time.
 */
import {
  EventBridgeClient,
  PutEventsCommand,
  type PutEventsCommandOutput,
  type PutEventsRequestEntry,
} from '@aws-sdk/client-eventbridge';
import type { EventBridgeConfig } from '../config.js';
import { errorFields, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { type Event, type EventAction, type EventSink, wanted } from './events.js';

/** The DetailType of each action's entries: stable, for rules to match on. */
export const DETAIL_TYPES: Record<EventAction, string> = {
  push: 'Registry Push',
  pull: 'Registry Pull',
  mount: 'Registry Mount',
  delete: 'Registry Delete',
};

const SINK = 'eventbridge';
/** PutEvents takes at most 10 entries a call... */
const MAX_ENTRIES = 10;
/** ...weighing at most 256 KB together, as entrySize counts them. */
const MAX_CALL_BYTES = 256 * 1024;
/** The entry error codes worth sending again (PutEventsResultEntry); the others are the entry's own fault. */
const RETRYABLE = new Set(['ThrottlingException', 'InternalFailure']);
/** Sends of an entry refused with a retryable code, the first included. */
const MAX_ATTEMPTS = 4;

export interface EventBridgeSinkDeps {
  log: Logger;
  metrics: Metrics;
  /** @default a client for the config's region and endpoint, with the SDK's standard retries (3 attempts) */
  client?: EventBridgeClient;
  /** The delay before the first re-send of refused entries; each next one doubles, with jitter. @default 100 */
  backoffMs?: number;
  /**
   * How long one publish may take, the SDK's own retries of a failed call included: it delays the
   * response of the request that produced the events. @default 2500
   */
  deadlineMs?: number;
}

/** An event and the entry that carries it. */
interface Entry {
  event: Event;
  entry: PutEventsRequestEntry;
  size: number;
}

/** An entry that was refused, and why. */
interface Refusal {
  entry: Entry;
  errorCode: string;
  errorMessage: string;
}

export class EventBridgeSink implements EventSink {
  readonly #config: EventBridgeConfig;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #client: EventBridgeClient;
  readonly #backoffMs: number;
  readonly #deadlineMs: number;

  constructor(config: EventBridgeConfig, deps: EventBridgeSinkDeps) {
    this.#config = config;
    this.#log = deps.log;
    this.#metrics = deps.metrics;
    this.#backoffMs = deps.backoffMs ?? 100;
    this.#deadlineMs = deps.deadlineMs ?? 2_500;
    this.#client =
      deps.client ??
      new EventBridgeClient({
        ...(config.region === undefined ? {} : { region: config.region }),
        ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
        maxAttempts: 3,
      });
  }

  /** Never throws: what is not delivered is logged whole at error level and counted as dropped. */
  async publish(events: readonly Event[]): Promise<void> {
    const accepted = events.filter((event) => wanted(this.#config.ignore, event));
    if (accepted.length === 0) return;
    try {
      this.#metrics.delivery(SINK, 'events', accepted.length);
      const entries: Entry[] = [];
      for (const event of accepted) {
        const entry = this.#entryFor(event);
        if (entry) entries.push(entry);
      }
      const deadline = Date.now() + this.#deadlineMs;
      await Promise.all(batches(entries).map((batch) => this.#deliver(batch, deadline)));
    } catch (error) {
      // A bug, not a delivery failure (those are handled above): keep the events in the log all the same.
      this.#log.error('notifications not delivered', { sink: SINK, ...errorFields(error), events: accepted });
    }
  }

  /** Nothing is queued: publish returns after delivery. */
  async close(): Promise<void> {}

  /**
   * The entry for an event. One over the call limit goes without target.references (a manifest's
   * layers, the bulk of a large event); one still over it is given up.
   */
  #entryFor(event: Event): Entry | undefined {
    let entry = this.#entry(event);
    if (entry.size <= MAX_CALL_BYTES) return entry;
    const { references, ...target } = event.target;
    if (references !== undefined) {
      entry = this.#entry({ ...event, target });
      if (entry.size <= MAX_CALL_BYTES) {
        this.#log.warn('notification sent without target.references, too large for EventBridge', {
          sink: SINK,
          eventId: event.id,
          references: references.length,
        });
        return { ...entry, event };
      }
    }
    this.#giveUp([
      {
        entry: { ...entry, event },
        errorCode: 'EntryTooLarge',
        errorMessage: `the entry is ${entry.size} bytes, over PutEvents' limit of ${MAX_CALL_BYTES}`,
      },
    ]);
    return undefined;
  }

  #entry(event: Event): Entry {
    const time = new Date(event.timestamp);
    const entry: PutEventsRequestEntry = {
      EventBusName: this.#config.eventBus,
      Source: this.#config.source,
      DetailType: DETAIL_TYPES[event.action],
      Detail: JSON.stringify(event),
      // Without a Time, EventBridge uses the time of the call.
      ...(Number.isNaN(time.getTime()) ? {} : { Time: time }),
    };
    return { event, entry, size: entrySize(entry) };
  }

  /** Sends a batch, then again what was refused with a retryable code, with backoff, until the deadline. */
  async #deliver(batch: Entry[], deadline: number): Promise<void> {
    let pending = batch;
    for (let attempt = 1; ; attempt++) {
      let output: PutEventsCommandOutput;
      try {
        output = await this.#send(pending, deadline);
      } catch (error) {
        // The SDK retried what it could (throttling, 5xx, network errors): this call is given up.
        const { errorCode, errorMessage } = describe(error);
        this.#metrics.delivery(SINK, 'errors', pending.length);
        this.#log.warn('EventBridge PutEvents failed', {
          sink: SINK,
          errorCode,
          errorMessage,
          attempt,
          eventIds: pending.map(({ event }) => event.id),
        });
        this.#giveUp(pending.map((entry) => ({ entry, errorCode, errorMessage })));
        return;
      }

      // Results come in request order; a refused entry has an ErrorCode instead of an EventId.
      const refused: Refusal[] = [];
      pending.forEach((entry, i) => {
        const result = output.Entries?.[i];
        if (result?.EventId !== undefined && result.ErrorCode === undefined) return;
        refused.push({
          entry,
          errorCode: result?.ErrorCode ?? 'MissingResult',
          errorMessage: result?.ErrorMessage ?? 'PutEvents answered no result for this entry',
        });
      });
      if (pending.length > refused.length) {
        this.#metrics.delivery(SINK, 'successes', pending.length - refused.length);
      }
      if (refused.length === 0) return;
      this.#metrics.delivery(SINK, 'failures', refused.length);
      for (const { entry, errorCode, errorMessage } of refused) {
        this.#log.warn('notification refused by EventBridge', {
          sink: SINK,
          errorCode,
          errorMessage,
          attempt,
          eventId: entry.event.id,
        });
      }

      const retry = refused.filter(({ errorCode }) => RETRYABLE.has(errorCode));
      const delay = this.#backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2);
      const final = attempt >= MAX_ATTEMPTS || Date.now() + delay >= deadline;
      this.#giveUp(final ? refused : refused.filter((refusal) => !retry.includes(refusal)));
      if (final || retry.length === 0) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      pending = retry.map(({ entry }) => entry);
    }
  }

  /**
   * One PutEvents call, SDK retries included, abandoned at the deadline: the SDK sleeps between its
   * retries without watching the abort signal, so the call is also raced against it.
   */
  async #send(entries: Entry[], deadline: number): Promise<PutEventsCommandOutput> {
    const abort = new AbortController();
    const timeout = new Promise<never>((_, reject) => {
      abort.signal.addEventListener('abort', () => {
        reject(Object.assign(new Error('no answer from EventBridge in time'), { name: 'TimeoutError' }));
      });
    });
    const timer = setTimeout(
      () => {
        abort.abort();
      },
      Math.max(0, deadline - Date.now()),
    );
    try {
      return await Promise.race([
        this.#client.send(new PutEventsCommand({ Entries: entries.map(({ entry }) => entry) }), {
          abortSignal: abort.signal,
        }),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Logs each event whole, so that it can be replayed from the log, and counts it dropped. */
  #giveUp(refusals: Refusal[]): void {
    if (refusals.length === 0) return;
    this.#metrics.delivery(SINK, 'dropped', refusals.length);
    for (const { entry, errorCode, errorMessage } of refusals) {
      this.#log.error('notification not delivered', {
        sink: SINK,
        errorCode,
        errorMessage,
        event: entry.event,
      });
    }
  }
}

/**
 * An entry's size as EventBridge counts it: 14 bytes for Time, and the UTF-8 bytes of Source,
 * DetailType, Detail and each of Resources.
 * https://docs.aws.amazon.com/eventbridge/latest/userguide/calculate-putevents-entry-size.html
 */
function entrySize(entry: PutEventsRequestEntry): number {
  const utf8 = (text: string | undefined) => (text === undefined ? 0 : Buffer.byteLength(text, 'utf8'));
  return (
    (entry.Time === undefined ? 0 : 14) +
    utf8(entry.Source) +
    utf8(entry.DetailType) +
    utf8(entry.Detail) +
    (entry.Resources ?? []).reduce((total, resource) => total + utf8(resource), 0)
  );
}

/** Entries in order, in calls of at most MAX_ENTRIES and MAX_CALL_BYTES. */
function batches(entries: Entry[]): Entry[][] {
  const calls: Entry[][] = [];
  let call: Entry[] = [];
  let size = 0;
  for (const entry of entries) {
    if (call.length === MAX_ENTRIES || (call.length > 0 && size + entry.size > MAX_CALL_BYTES)) {
      calls.push(call);
      call = [];
      size = 0;
    }
    call.push(entry);
    size += entry.size;
  }
  if (call.length > 0) calls.push(call);
  return calls;
}

/** A failed call's error code (the AWS error's name, or the SDK's) and message. */
function describe(error: unknown): { errorCode: string; errorMessage: string } {
  return error instanceof Error
    ? { errorCode: error.name, errorMessage: error.message }
    : { errorCode: 'Error', errorMessage: String(error) };
}
