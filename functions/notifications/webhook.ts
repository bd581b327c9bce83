/**
 * distribution's webhook endpoints (notifications/endpoint.go, http.go): each event is POSTed alone,
 * in its envelope, to the endpoint's URL, one delivery at a time and in order, and retried until the
 * receiver takes it. Retries follow distribution's breaker (go-events' Breaker): while fewer than
 * `threshold` attempts in a row have failed, the next goes at once; after that, each waits `backoff`
 * after the last failure; a delivery resets it. Unlike distribution, the queue is bounded and close()
 * has a deadline; what is given up is logged whole, never silently lost.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NotificationEndpoint } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import {
  EVENTS_MEDIA_TYPE,
  wanted,
  type Envelope,
  type Event,
  type EventFilter,
  type EventSink,
} from './events.js';

export interface WebhookSinkDeps {
  log: Logger;
  metrics: Metrics;
  /** Events held at most, the one being delivered included (default 10,000); beyond, the oldest is given up. */
  maxPending?: number;
}

type AttemptResult = { status: number } | { error: string };

export class WebhookSink implements EventSink {
  readonly #endpoint: NotificationEndpoint;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #maxPending: number;
  readonly #filter: EventFilter;
  /** The endpoint's URL without userinfo, which goes as basic auth instead (as Go's HTTP client sends it). */
  readonly #target: string;
  readonly #request: typeof httpRequest;
  /** One connection, kept alive between deliveries, which go one at a time. */
  readonly #agent: HttpAgent;
  /** The URL as logs show it: no userinfo and no query, either of which may carry a token. */
  readonly #logURL: string;
  /** The configured headers, the basic auth and the Content-Type, sent with every attempt. */
  readonly #headers: Headers;
  readonly #signingKey: Buffer | undefined;
  /** Events not yet delivered, oldest first; while the delivery loop runs, the first is being delivered. */
  readonly #queue: Event[] = [];
  /** Aborts the attempt or backoff wait of the event being delivered, when that event is given up. */
  #current: { event: Event; abort: AbortController } | undefined;
  #running = false;
  #delivering: Promise<void> = Promise.resolve();
  /** close() was called: new events are given up. */
  #closed = false;
  /** close()'s deadline passed: the delivery loop stops. */
  #stopped = false;
  /** The breaker: attempts failed in a row, and when the last one failed (performance.now()). */
  #failures = 0;
  #lastFailure = 0;

  /** Throws when the endpoint's URL or headers cannot be sent (a configuration error, found at start). */
  constructor(endpoint: NotificationEndpoint, deps: WebhookSinkDeps) {
    this.#endpoint = endpoint;
    this.#log = deps.log;
    this.#metrics = deps.metrics;
    this.#maxPending = Math.max(1, deps.maxPending ?? 10_000);
    // distribution keeps the older `ignoredmediatypes` beside `ignore.mediatypes`; either ignores.
    this.#filter = {
      mediaTypes: [...endpoint.ignoredMediaTypes, ...endpoint.ignore.mediaTypes],
      actions: endpoint.ignore.actions,
    };
    const url = new URL(endpoint.url);
    const username = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    url.username = '';
    url.password = '';
    this.#target = url.href;
    const https = url.protocol === 'https:';
    this.#request = https ? httpsRequest : httpRequest;
    this.#agent = new (https ? HttpsAgent : HttpAgent)({ keepAlive: true, maxSockets: 1 });
    this.#logURL = url.origin + url.pathname;
    this.#headers = new Headers();
    for (const [name, values] of Object.entries(endpoint.headers)) {
      for (const value of values) {
        try {
          this.#headers.append(name, value);
        } catch {
          // Headers' own message quotes the value, which may be a token.
          throw new Error(
            `notifications endpoint ${endpoint.name}: header ${name} has an invalid name or value`,
          );
        }
      }
    }
    if ((username !== '' || password !== '') && !this.#headers.has('authorization')) {
      this.#headers.set(
        'authorization',
        `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`,
      );
    }
    this.#headers.set('content-type', EVENTS_MEDIA_TYPE);
    this.#signingKey = endpoint.signingSecret === undefined ? undefined : signingKey(endpoint.signingSecret);
  }

  /** Queues the events this endpoint wants and returns at once; delivery goes on in the background. */
  publish(events: readonly Event[]): Promise<void> {
    let accepted = 0;
    for (const event of events) {
      if (!wanted(this.#filter, event)) continue;
      if (this.#closed) {
        this.#giveUp(event, 'the sink was closed');
        continue;
      }
      accepted++;
      if (this.#queue.length >= this.#maxPending) this.#giveUpOldest();
      this.#queue.push(event);
    }
    if (accepted > 0) this.#metrics.delivery(this.#endpoint.name, 'events', accepted);
    this.#metrics.pending(this.#endpoint.name, this.#queue.length);
    if (!this.#running && !this.#stopped && this.#queue.length > 0) {
      this.#running = true;
      this.#delivering = this.#deliverAll();
    }
    return Promise.resolve();
  }

  /**
   * Stops taking events and delivers what is queued until the queue is empty or deadlineMs passed,
   * then gives up the rest (logged whole). A backoff wait does not outlast the deadline.
   */
  async close(deadlineMs: number): Promise<void> {
    this.#closed = true;
    if (this.#running) {
      let deadline: NodeJS.Timeout | undefined;
      // Referenced, unlike the backoff waits: it holds the process while the queue drains, no longer.
      const passed = new Promise<void>((resolve) => {
        deadline = setTimeout(resolve, deadlineMs);
      });
      await Promise.race([this.#delivering, passed]);
      clearTimeout(deadline);
      this.#stopped = true;
      this.#current?.abort.abort();
      await this.#delivering;
    }
    this.#stopped = true;
    for (const event of this.#queue.splice(0)) {
      this.#giveUp(event, `not delivered within close()'s deadline of ${deadlineMs} ms`);
    }
    this.#metrics.pending(this.#endpoint.name, 0);
    this.#agent.destroy();
  }

  async #deliverAll(): Promise<void> {
    try {
      for (let event = this.#queue[0]; event !== undefined && !this.#stopped; event = this.#queue[0]) {
        await this.#deliver(event);
      }
    } finally {
      this.#running = false;
      this.#current = undefined;
    }
  }

  /** Attempts the event until the receiver takes it or the event is given up (queue full, or close()). */
  async #deliver(event: Event): Promise<void> {
    const abort = new AbortController();
    this.#current = { event, abort };
    const body = JSON.stringify({ events: [event] } satisfies Envelope);
    for (let attempt = 1; ; attempt++) {
      const wait =
        this.#failures < this.#endpoint.threshold
          ? 0
          : this.#lastFailure + this.#endpoint.backoffMs - performance.now();
      // Unreferenced: a wait alone does not keep the process alive (close()'s deadline does while it drains).
      if (wait > 0) await sleep(wait, undefined, { signal: abort.signal, ref: false }).catch(() => undefined);
      const result = await this.#attempt(event.id, body, abort.signal);
      // Given up, before or during this attempt, and logged as such by whoever gave it up (even if this
      // attempt got through).
      if (abort.signal.aborted) return;
      // distribution takes any 2xx or 3xx as accepted.
      if ('status' in result && result.status >= 200 && result.status < 400) {
        this.#failures = 0;
        this.#queue.shift();
        this.#metrics.delivery(this.#endpoint.name, 'successes', 1);
        this.#metrics.pending(this.#endpoint.name, this.#queue.length);
        return;
      }
      this.#failures++;
      this.#lastFailure = performance.now();
      this.#metrics.delivery(this.#endpoint.name, 'status' in result ? 'failures' : 'errors', 1);
      this.#log.warn('notification delivery failed', {
        sink: this.#endpoint.name,
        url: this.#logURL,
        ...result,
        attempt,
        eventId: event.id,
      });
    }
  }

  /**
   * One POST, over the endpoint's one kept-alive connection (node:http rather than fetch: a third of
   * the CPU per delivery, which the registry's own requests share). A 3xx is the receiver's answer, as
   * good as a 2xx, and is not followed: that would send the event elsewhere.
   */
  #attempt(id: string, body: string, signal: AbortSignal): Promise<AttemptResult> {
    const headers: Record<string, string> = {
      ...Object.fromEntries(this.#headers),
      'content-length': String(Buffer.byteLength(body)),
    };
    if (this.#signingKey !== undefined) {
      // Standard Webhooks: the id stays the same across retries, so that receivers can deduplicate.
      const timestamp = String(Math.floor(Date.now() / 1000));
      headers['webhook-id'] = id;
      headers['webhook-timestamp'] = timestamp;
      headers['webhook-signature'] = signature(this.#signingKey, id, timestamp, body);
    }
    const { timeoutMs } = this.#endpoint;
    return new Promise((resolve) => {
      const settle = (result: AttemptResult) => {
        clearTimeout(timer);
        resolve(result);
      };
      const req = this.#request(
        this.#target,
        { method: 'POST', agent: this.#agent, headers, signal },
        (res) => {
          res.on('error', (error) => {
            settle({ error: error.message });
          });
          res.on('end', () => {
            settle({ status: res.statusCode ?? 0 });
          });
          res.resume();
        },
      );
      // The whole exchange, as distribution's client timeout counts it.
      const timer = setTimeout(() => {
        req.destroy(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      req.on('error', (error: NodeJS.ErrnoException) => {
        settle({ error: error.code === undefined ? error.message : `${error.code}: ${error.message}` });
      });
      req.end(body);
    });
  }

  #giveUpOldest(): void {
    const oldest = this.#queue.shift();
    if (oldest === undefined) return;
    if (this.#current?.event === oldest) this.#current.abort.abort();
    this.#giveUp(oldest, `the queue is full (${this.#maxPending} events)`);
  }

  #giveUp(event: Event, reason: string): void {
    this.#log.error('notification not delivered', { sink: this.#endpoint.name, reason, event });
    this.#metrics.delivery(this.#endpoint.name, 'dropped', 1);
  }
}

/** Standard Webhooks' key: the base64 after `whsec_`, or any other secret's UTF-8 bytes. */
function signingKey(secret: string): Buffer {
  return secret.startsWith('whsec_')
    ? Buffer.from(secret.slice('whsec_'.length), 'base64')
    : Buffer.from(secret);
}

function signature(key: Buffer, id: string, timestamp: string, body: string | Uint8Array): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest('base64')}`;
}

/**
 * Whether a delivery carries a valid Standard Webhooks signature by `secret` (as WebhookSink signs
 * them): the HMAC of `webhook-id`, `webhook-timestamp` and the body matches one of the `v1,`
 * signatures, and the timestamp is within toleranceSeconds of now. For receivers and tests.
 */
export function verifyWebhookSignature(
  secret: string,
  headers: Headers | Record<string, string | string[] | undefined>,
  body: string | Uint8Array,
  toleranceSeconds = 300,
): boolean {
  const header = (name: string): string | undefined => {
    if (headers instanceof Headers) return headers.get(name) ?? undefined;
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const id = header('webhook-id');
  const timestamp = header('webhook-timestamp');
  const signatures = header('webhook-signature');
  if (id === undefined || timestamp === undefined || signatures === undefined) return false;
  if (!/^\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceSeconds)
    return false;
  const expected = Buffer.from(signature(signingKey(secret), id, timestamp, body));
  // Several space-separated signatures are allowed, for a key being rotated.
  return signatures.split(' ').some((candidate) => {
    const given = Buffer.from(candidate);
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
