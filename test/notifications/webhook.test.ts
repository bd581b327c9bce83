/**
 * Webhook delivery against a real HTTP receiver on 127.0.0.1: what goes on the wire (envelope,
 * headers, signature), which events are sent, and distribution's retry behaviour, plus this
 * registry's bounded queue and close() deadline.
 */
import { execFile } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterEach, describe, expect, it } from 'vitest';
import type { NotificationEndpoint } from '../../functions/config.js';
import { jsonLogger } from '../../functions/log.js';
import type { DeliveryOutcome, Metrics } from '../../functions/metrics/metrics.js';
import {
  broadcast,
  EVENTS_MEDIA_TYPE,
  type Event,
  type EventAction,
} from '../../functions/notifications/events.js';
import { verifyWebhookSignature, WebhookSink } from '../../functions/notifications/webhook.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';

/** An event; with mediaType null, one without a descriptor, as a delete's. */
function event(action: EventAction, mediaType: string | null = OCI_MANIFEST): Event {
  const digest = `sha256:${randomBytes(32).toString('hex')}`;
  return {
    id: randomUUID(),
    timestamp: new Date().toISOString(),
    action,
    target:
      mediaType === null
        ? { repository: 'org/app', digest }
        : {
            mediaType,
            digest,
            size: 1234,
            length: 1234,
            repository: 'org/app',
            url: `http://registry.test/v2/org/app/manifests/${digest}`,
            tag: 'latest',
          },
    request: { id: randomUUID(), addr: '10.0.0.1', host: 'registry.test', method: 'PUT', useragent: 'test' },
    actor: { name: 'alice' },
    source: { addr: 'registry.test:5000', instanceID: randomUUID() },
  };
}

interface Delivery {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
  event: Event;
  /** performance.now() when the request arrived. */
  at: number;
}

/** What the receiver does with the nth request (1-based): answer a status, or never answer. */
type Answer = (n: number, delivery: Delivery) => number | 'hang';

interface Receiver {
  url: string;
  /** Every request, in arrival order, answered or not. */
  requests: Delivery[];
  /** The requests answered 2xx or 3xx. */
  accepted: Delivery[];
  close(): Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function receiver(answer: Answer = () => 200, delayMs = 0): Promise<Receiver> {
  const requests: Delivery[] = [];
  const accepted: Delivery[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const delivery: Delivery = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body,
        event: (JSON.parse(body) as { events: Event[] }).events[0] as Event,
        at: performance.now(),
      };
      requests.push(delivery);
      const status = answer(requests.length, delivery);
      if (status === 'hang') return;
      setTimeout(() => {
        if (status < 400) accepted.push(delivery);
        res.writeHead(status, status >= 300 && status < 400 ? { location: '/elsewhere' } : {}).end();
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) =>
      server.close(() => {
        resolve();
      }),
    );
  };
  cleanups.push(close);
  return { url: `http://127.0.0.1:${port}/hook`, requests, accepted, close };
}

/** A URL where nothing listens: every attempt is refused. */
async function deadURL(): Promise<string> {
  const dead = await receiver();
  await dead.close();
  return dead.url;
}

function endpoint(url: string, overrides: Partial<NotificationEndpoint> = {}): NotificationEndpoint {
  return {
    name: 'hooks',
    url,
    disabled: false,
    headers: {},
    timeoutMs: 1000,
    threshold: 10,
    backoffMs: 1000,
    ignoredMediaTypes: [],
    ignore: { mediaTypes: [], actions: [] },
    signingSecret: undefined,
    ...overrides,
  };
}

interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

function recordingMetrics() {
  const counts = new Map<string, number>();
  const pending = new Map<string, number>();
  const metrics: Metrics = {
    request() {},
    delivery(sink, outcome, count) {
      counts.set(`${sink} ${outcome}`, (counts.get(`${sink} ${outcome}`) ?? 0) + count);
    },
    pending(sink, count) {
      pending.set(sink, count);
    },
  };
  return {
    metrics,
    count: (outcome: DeliveryOutcome, sink = 'hooks') => counts.get(`${sink} ${outcome}`) ?? 0,
    pending: (sink = 'hooks') => pending.get(sink),
  };
}

function sink(config: NotificationEndpoint, maxPending?: number) {
  const lines: string[] = [];
  const log = jsonLogger('debug', {}, (line) => lines.push(line));
  const recorded = recordingMetrics();
  const webhook = new WebhookSink(config, { log, metrics: recorded.metrics, maxPending });
  cleanups.push(() => webhook.close(0));
  return {
    webhook,
    ...recorded,
    lines,
    logs: () => lines.map((line) => JSON.parse(line) as LogLine),
  };
}

async function until(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > timeoutMs) throw new Error('timed out waiting for a condition');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('WebhookSink', () => {
  it('POSTs each event alone in its envelope, with the events media type and the configured headers', async () => {
    const hook = await receiver();
    const { webhook, count } = sink(
      endpoint(`${hook.url}?team=a`, { headers: { 'X-Team': ['registry'], 'X-Multi': ['one', 'two'] } }),
    );
    const events = [event('push'), event('pull', OCI_LAYER)];
    await webhook.publish(events);
    await until(() => count('successes') === 2);

    for (const [i, delivery] of hook.requests.entries()) {
      expect(delivery.method).toBe('POST');
      expect(delivery.url).toBe('/hook?team=a');
      expect(delivery.headers['content-type']).toBe(EVENTS_MEDIA_TYPE);
      expect(JSON.parse(delivery.body)).toEqual({ events: [events[i]] });
      expect(delivery.headers['x-team']).toBe('registry');
      // Every value of a header list is sent (comma-joined, which HTTP reads as repeated lines).
      expect(delivery.headers['x-multi']).toBe('one, two');
      expect(delivery.headers['webhook-signature']).toBeUndefined();
    }
    expect(count('events')).toBe(2);
    expect(count('successes')).toBe(2);
  });

  it('skips events ignored by action, or by media type under either configuration key', async () => {
    const hook = await receiver();
    const { webhook, count } = sink(
      endpoint(hook.url, {
        ignoredMediaTypes: [OCI_LAYER],
        ignore: { mediaTypes: [OCI_CONFIG], actions: ['pull'] },
      }),
    );
    const sent = [event('push'), event('delete', null)];
    await webhook.publish([event('push', OCI_LAYER), sent[0] as Event, event('mount', OCI_CONFIG)]);
    await webhook.publish([event('pull'), sent[1] as Event]);
    await until(() => hook.accepted.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect(hook.requests.map((d) => d.event)).toEqual(sent);
    expect(count('events')).toBe(2);
  });

  it('delivers one event at a time, in the order published', async () => {
    // Requests that arrived while an earlier one was still unanswered.
    let overlapping = 0;
    const hook: Receiver = await receiver((n) => {
      if (n - 1 !== hook.accepted.length) overlapping++;
      return 200;
    }, 5);
    const { webhook } = sink(endpoint(hook.url));
    const events = Array.from({ length: 12 }, (_, i) => event(i % 2 ? 'push' : 'pull'));
    for (let i = 0; i < events.length; i += 3) {
      await webhook.publish(events.slice(i, i + 3));
    }
    await until(() => hook.accepted.length === events.length);

    expect(overlapping).toBe(0);
    expect(hook.requests.map((d) => d.event.id)).toEqual(events.map((e) => e.id));
  });

  it('retries a refused delivery until the receiver takes it, and logs each failed attempt', async () => {
    const hook = await receiver((n) => (n <= 2 ? 500 : 200));
    const { webhook, count, logs } = sink(endpoint(hook.url, { threshold: 10 }));
    const pushed = event('push');
    await webhook.publish([pushed]);
    await until(() => count('successes') === 1);

    expect(hook.requests).toHaveLength(3);
    expect(hook.requests.every((d) => d.event.id === pushed.id)).toBe(true);
    expect(count('failures')).toBe(2);
    expect(count('successes')).toBe(1);
    expect(count('dropped')).toBe(0);
    const warnings = logs().filter((line) => line.level === 'warn');
    expect(warnings).toEqual([
      expect.objectContaining({ sink: 'hooks', url: hook.url, status: 500, attempt: 1, eventId: pushed.id }),
      expect.objectContaining({ sink: 'hooks', url: hook.url, status: 500, attempt: 2, eventId: pushed.id }),
    ]);
  });

  it('times out a receiver slower than the timeout and retries, while publish() returns at once', async () => {
    const hook = await receiver((n) => (n === 1 ? 'hang' : 200));
    const { webhook, count, logs } = sink(endpoint(hook.url, { timeoutMs: 150 }));
    const first = event('push');
    const second = event('push');
    await webhook.publish([first]);
    await until(() => hook.requests.length === 1);

    // The receiver holds the first attempt: publishing more must not wait for it.
    const started = performance.now();
    await webhook.publish([second]);
    expect(performance.now() - started).toBeLessThan(50);

    await until(() => count('successes') === 2);
    expect(hook.requests.map((d) => d.event.id)).toEqual([first.id, first.id, second.id]);
    expect(count('errors')).toBe(1);
    expect(logs().find((line) => line.level === 'warn')).toMatchObject({
      attempt: 1,
      eventId: first.id,
      error: 'no answer within 150 ms',
    });
  });

  it('retries at once until threshold attempts in a row failed, then waits backoff after each failure', async () => {
    // Attempts 1-5 fail and 6 delivers the first event; 7 fails and 8 delivers the second.
    const hook = await receiver((n) => (n <= 5 || n === 7 ? 503 : 200));
    const { webhook } = sink(endpoint(hook.url, { threshold: 3, backoffMs: 100 }));
    await webhook.publish([event('push')]);
    await until(() => hook.accepted.length === 1);
    await webhook.publish([event('push')]);
    await until(() => hook.accepted.length === 2);

    const gaps = hook.requests.slice(1).map((d, i) => d.at - (hook.requests[i] as Delivery).at);
    // After attempts 1 and 2 (fewer than threshold failures) the next goes at once.
    expect(gaps[0]).toBeLessThan(60);
    expect(gaps[1]).toBeLessThan(60);
    // After attempts 3, 4 and 5, each retry waits backoff (fixed, not growing).
    for (const gap of gaps.slice(2, 5)) {
      expect(gap).toBeGreaterThanOrEqual(95);
      expect(gap).toBeLessThan(190);
    }
    // The delivery reset the breaker: the second event's failure is retried at once.
    expect(gaps[6]).toBeLessThan(60);
  });

  it('takes a 3xx as delivered and does not follow it', async () => {
    const hook = await receiver(() => 302);
    const { webhook, count } = sink(endpoint(hook.url));
    await webhook.publish([event('push')]);
    await until(() => count('successes') === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect(hook.requests.map((d) => d.url)).toEqual(['/hook']);
    expect(count('failures')).toBe(0);
  });

  it('gives up the oldest events when the queue is full, logging each whole at error', async () => {
    const stuck = event('push');
    const hook = await receiver((_, delivery) => (delivery.event.id === stuck.id ? 'hang' : 200));
    const { webhook, count, pending, logs } = sink(endpoint(hook.url, { timeoutMs: 5000 }), 2);
    await webhook.publish([stuck]);
    await until(() => hook.requests.length === 1);

    const [second, third, fourth] = [event('push'), event('delete', null), event('push')];
    await webhook.publish([second, third, fourth]);
    expect(pending()).toBe(2);
    await until(() => count('successes') === 2);

    expect(hook.accepted.map((d) => d.event)).toEqual([third, fourth]);
    const errors = logs().filter((line) => line.level === 'error');
    expect(errors).toEqual([
      expect.objectContaining({ msg: 'notification not delivered', sink: 'hooks', event: stuck }),
      expect.objectContaining({ msg: 'notification not delivered', sink: 'hooks', event: second }),
    ]);
    expect(errors[0]?.reason).toMatch(/queue is full/);
    expect(count('dropped')).toBe(2);
    expect(count('events')).toBe(4);
    // The stuck attempt was abandoned, not counted as a failure.
    expect(count('errors') + count('failures')).toBe(0);
    expect(pending()).toBe(0);
  });

  it('close() delivers what is queued to a working receiver', async () => {
    const hook = await receiver(() => 200, 20);
    const { webhook, count, pending, logs } = sink(endpoint(hook.url));
    const events = Array.from({ length: 5 }, () => event('push'));
    await webhook.publish(events);
    await webhook.close(3000);

    expect(hook.accepted.map((d) => d.event.id)).toEqual(events.map((e) => e.id));
    expect(count('dropped')).toBe(0);
    expect(pending()).toBe(0);
    expect(logs().filter((line) => line.level === 'error')).toEqual([]);
  });

  it('close() gives up at its deadline on a dead receiver, even during a backoff wait', async () => {
    const { webhook, count, pending, logs } = sink(
      endpoint(await deadURL(), { threshold: 1, backoffMs: 10_000 }),
    );
    const events = [event('push'), event('push'), event('delete', null)];
    await webhook.publish(events);
    await until(() => count('errors') === 1);

    const started = performance.now();
    await webhook.close(200);
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(1000);

    const late = event('push');
    await webhook.publish([late]);
    const errors = logs().filter((line) => line.level === 'error');
    expect(errors.map((line) => line.event)).toEqual([...events, late]);
    expect(errors.every((line) => line.msg === 'notification not delivered' && line.sink === 'hooks')).toBe(
      true,
    );
    expect(errors[0]?.reason).toMatch(/deadline/);
    expect(errors[3]?.reason).toMatch(/closed/);
    expect(count('dropped')).toBe(4);
    expect(pending()).toBe(0);
    expect(logs().find((line) => line.level === 'warn')?.error).toMatch(/ECONNREFUSED/);
  });

  it('signs every attempt (Standard Webhooks) with the same id and a fresh timestamp', async () => {
    const key = randomBytes(24);
    const secret = `whsec_${key.toString('base64')}`;
    const hook = await receiver((n) => (n === 1 ? 500 : 200));
    const { webhook } = sink(endpoint(hook.url, { signingSecret: secret }));
    const pushed = event('push');
    await webhook.publish([pushed]);
    await until(() => hook.accepted.length === 1);

    expect(hook.requests).toHaveLength(2);
    for (const delivery of hook.requests) {
      const id = String(delivery.headers['webhook-id']);
      const timestamp = String(delivery.headers['webhook-timestamp']);
      expect(id).toBe(pushed.id);
      expect(Math.abs(Number(timestamp) - Date.now() / 1000)).toBeLessThan(5);
      const expected = createHmac('sha256', key)
        .update(`${id}.${timestamp}.${delivery.body}`)
        .digest('base64');
      expect(delivery.headers['webhook-signature']).toBe(`v1,${expected}`);

      expect(verifyWebhookSignature(secret, delivery.headers, delivery.body)).toBe(true);
      const wrong = `whsec_${randomBytes(24).toString('base64')}`;
      expect(verifyWebhookSignature(wrong, delivery.headers, delivery.body)).toBe(false);
      expect(
        verifyWebhookSignature(secret, delivery.headers, delivery.body.replace('org/app', 'org/evil')),
      ).toBe(false);
      const stale = { ...delivery.headers, 'webhook-timestamp': String(Number(timestamp) - 600) };
      expect(verifyWebhookSignature(secret, stale, delivery.body)).toBe(false);
    }
  });

  it('signs with the secret text itself when it has no whsec_ prefix', async () => {
    const secret = 'correct horse battery staple';
    const hook = await receiver();
    const { webhook } = sink(endpoint(hook.url, { signingSecret: secret }));
    await webhook.publish([event('push')]);
    await until(() => hook.accepted.length === 1);

    const delivery = hook.requests[0] as Delivery;
    const id = String(delivery.headers['webhook-id']);
    const timestamp = String(delivery.headers['webhook-timestamp']);
    const expected = createHmac('sha256', Buffer.from(secret, 'utf8'))
      .update(`${id}.${timestamp}.${delivery.body}`)
      .digest('base64');
    expect(delivery.headers['webhook-signature']).toBe(`v1,${expected}`);
    expect(verifyWebhookSignature(secret, delivery.headers, delivery.body)).toBe(true);
    expect(verifyWebhookSignature('another secret', delivery.headers, delivery.body)).toBe(false);
  });

  it('sends URL credentials as basic auth and keeps secrets and header values out of its logs', async () => {
    const hook = await receiver((n) => (n === 1 ? 401 : 'hang'));
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const url = hook.url.replace('http://', 'http://robot:s3cr%40t@') + '?token=query-token';
    const { webhook, lines } = sink(
      endpoint(url, { headers: { 'X-Api-Key': ['header-token'] }, signingSecret: secret, timeoutMs: 100 }),
    );
    await webhook.publish([event('push')]);
    await until(() => lines.filter((line) => line.includes('"warn"')).length === 2);
    await webhook.close(0);

    const first = hook.requests[0] as Delivery;
    expect(first.headers.authorization).toBe(`Basic ${Buffer.from('robot:s3cr@t').toString('base64')}`);
    expect(first.url).toBe('/hook?token=query-token');
    const logged = lines.join('');
    expect(logged).toContain(`"url":"${hook.url}"`);
    for (const leak of ['s3cr', 'robot', 'query-token', 'header-token', secret.slice('whsec_'.length)]) {
      expect(logged).not.toContain(leak);
    }
  });

  it('one slow endpoint does not hold up another', async () => {
    const slow = await receiver(() => 'hang');
    const fast = await receiver();
    const a = sink(endpoint(slow.url, { name: 'slow', timeoutMs: 5000 }));
    const b = sink(endpoint(fast.url, { name: 'fast' }));
    const both = broadcast([a.webhook, b.webhook]);
    await both.publish([event('push')]);
    await both.publish([event('push')]);

    await until(() => fast.accepted.length === 2, 1000);
    expect(slow.requests).toHaveLength(1);
  });

  it('refuses, at construction, a header it could not send, without quoting its value', () => {
    const create = () =>
      new WebhookSink(endpoint('http://127.0.0.1:1/hook', { headers: { 'X-Api-Key': ['token\nvalue'] } }), {
        log: jsonLogger('debug', {}, () => {}),
        metrics: recordingMetrics().metrics,
      });
    expect(create).toThrow(/X-Api-Key/);
    expect(create).not.toThrow(/token/);
  });

  describe('the process it runs in', () => {
    /**
     * A node process that publishes one event to a dead receiver (threshold 1, backoff 60 s, so the
     * sink waits in backoff after its first attempt), then, if asked, calls close(300) without
     * awaiting it. It prints its log lines.
     */
    async function runChild(url: string, close: boolean): Promise<{ ms: number; logs: LogLine[] }> {
      const dir = await mkdtemp(join(tmpdir(), 'webhook-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      const functions = fileURLToPath(new URL('../../functions/', import.meta.url));
      const script = join(dir, 'child.mjs');
      await build({
        stdin: {
          contents: `
            import { jsonLogger } from ${JSON.stringify(join(functions, 'log.ts'))};
            import { NO_METRICS } from ${JSON.stringify(join(functions, 'metrics/metrics.ts'))};
            import { WebhookSink } from ${JSON.stringify(join(functions, 'notifications/webhook.ts'))};
            const [url, endpoint, event, close] = process.argv.slice(2);
            const log = jsonLogger('debug', {}, (line) => process.stdout.write(line));
            const sink = new WebhookSink({ ...JSON.parse(endpoint), url }, { log, metrics: NO_METRICS });
            await sink.publish([JSON.parse(event)]);
            // Referenced: holds the process until the first attempt failed and the sink waits in backoff.
            if (close === 'close') setTimeout(() => void sink.close(300), 200);
          `,
          resolveDir: dir,
          loader: 'ts',
        },
        bundle: true,
        platform: 'node',
        target: 'node20',
        format: 'esm',
        logLevel: 'warning',
        outfile: script,
      });
      const config = endpoint(url, { threshold: 1, backoffMs: 60_000 });
      const started = performance.now();
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [script, url, JSON.stringify(config), JSON.stringify(event('push')), close ? 'close' : ''],
        { timeout: 10_000 },
      );
      const ms = performance.now() - started;
      return {
        ms,
        logs: stdout
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as LogLine),
      };
    }

    it('is not kept alive by a backoff wait', async () => {
      const { ms, logs } = await runChild(await deadURL(), false);
      expect(ms).toBeLessThan(3000);
      expect(logs.map((line) => line.level)).toEqual(['warn']);
    });

    it('is kept alive while close() drains, until its deadline, and the rest is logged', async () => {
      const { ms, logs } = await runChild(await deadURL(), true);
      expect(ms).toBeGreaterThanOrEqual(500);
      expect(ms).toBeLessThan(3500);
      expect(logs.map((line) => [line.level, line.msg])).toEqual([
        ['warn', 'notification delivery failed'],
        ['error', 'notification not delivered'],
      ]);
    });
  });
});
