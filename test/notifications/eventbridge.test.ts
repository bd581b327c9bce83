// The EventBridge sink against the local EventBridge (bin/local/eventbridge.ts) with the real SDK client:
// what reaches the bus, in how many calls, and what happens to events the bus refuses.
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type LocalEventBridge, startLocalEventBridge } from '../../bin/local/eventbridge.js';
import { freePort, listenOnLoopback } from '../../bin/local/free-port.js';
import type { EventBridgeConfig } from '../../functions/config.js';
import { jsonLogger } from '../../functions/log.js';
import type { DeliveryOutcome, Metrics } from '../../functions/metrics/metrics.js';
import { DETAIL_TYPES, EventBridgeSink } from '../../functions/notifications/eventbridge.js';
import type { Event, EventAction } from '../../functions/notifications/events.js';

const REGION = 'eu-west-1';
const credentials = { accessKeyId: 'AKLOCALTEST', secretAccessKey: randomBytes(20).toString('hex') };
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

function event(action: EventAction = 'push', target: Partial<Event['target']> = {}): Event {
  const digest = `sha256:${randomBytes(32).toString('hex')}`;
  return {
    id: randomUUID(),
    timestamp: '2024-05-06T07:08:09.123Z',
    action,
    target: {
      mediaType: MANIFEST,
      digest,
      size: 1234,
      length: 1234,
      repository: 'org/app',
      url: `https://registry.example.com/v2/org/app/manifests/${digest}`,
      tag: 'latest',
      ...target,
    },
    request: {
      id: randomUUID(),
      addr: '192.0.2.1',
      host: 'registry.example.com',
      method: 'PUT',
      useragent: 'test',
    },
    actor: { name: 'alice' },
    source: { addr: 'registry.example.com', instanceID: 'instance-1' },
  };
}

type LogLine = Record<string, unknown> & { level: string; msg: string };

describe('the EventBridge sink', () => {
  let bus: LocalEventBridge;
  let client: EventBridgeClient;
  /** Entries per PutEvents call the client made (the SDK's own retries of a call not counted). */
  let calls: number[];
  let lines: LogLine[];
  let counts: Partial<Record<DeliveryOutcome, number>>;

  const metrics: Metrics = {
    request() {},
    delivery(sink, outcome, count) {
      expect(sink).toBe('eventbridge');
      counts[outcome] = (counts[outcome] ?? 0) + count;
    },
    pending() {},
  };

  function sink(
    config: Partial<EventBridgeConfig> = {},
    deps: { deadlineMs?: number; client?: EventBridgeClient } = {},
  ) {
    return new EventBridgeSink(
      {
        eventBus: 'registry',
        source: 'registry',
        region: REGION,
        endpoint: bus.url,
        ignore: { mediaTypes: [], actions: [] },
        ...config,
      },
      {
        log: jsonLogger('debug', {}, (line) => lines.push(JSON.parse(line) as LogLine)),
        metrics,
        client: deps.client ?? client,
        backoffMs: 1,
        ...(deps.deadlineMs === undefined ? {} : { deadlineMs: deps.deadlineMs }),
      },
    );
  }

  const errors = () => lines.filter((line) => line.level === 'error');
  const receivedIds = () => bus.received.map(({ detail }) => detail.id);

  beforeAll(async () => {
    bus = await startLocalEventBridge({ region: REGION, credentials, buses: ['default', 'registry'] });
    client = new EventBridgeClient({ endpoint: bus.url, region: REGION, credentials, maxAttempts: 3 });
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'PutEventsCommand') {
          calls.push((args.input as { Entries: unknown[] }).Entries.length);
        }
        return next(args);
      },
      { step: 'initialize' },
    );
  });

  afterEach(() => {
    bus.received.length = 0;
  });

  afterAll(async () => {
    client.destroy();
    await bus.close();
  });

  const reset = () => {
    calls = [];
    lines = [];
    counts = {};
  };
  beforeEach(reset);

  it('sends one entry per event, its Detail the event JSON, in calls of at most 10', async () => {
    const actions: EventAction[] = ['push', 'pull', 'mount', 'delete'];
    const events = Array.from({ length: 23 }, (_, n) => event(actions[n % 4]));
    await sink().publish(events);

    expect(calls).toEqual([10, 10, 3]);
    expect(bus.received).toHaveLength(23);
    const byId = new Map(bus.received.map((received) => [received.detail.id, received]));
    for (const sent of events) {
      const received = byId.get(sent.id);
      expect(received?.detail).toEqual(sent);
      expect(received).toMatchObject({
        bus: 'registry',
        source: 'registry',
        detailType: DETAIL_TYPES[sent.action],
        time: '2024-05-06T07:08:09Z',
      });
    }
    expect(counts).toEqual({ events: 23, successes: 23 });
    expect(errors()).toEqual([]);
  });

  it("makes its own client for the config's region and endpoint, with the environment's credentials", async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', credentials.accessKeyId);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', credentials.secretAccessKey);
    try {
      const own = new EventBridgeSink(
        {
          eventBus: 'registry',
          source: 'registry',
          region: REGION,
          endpoint: bus.url,
          ignore: { mediaTypes: [], actions: [] },
        },
        { log: jsonLogger('debug', {}, (line) => lines.push(JSON.parse(line) as LogLine)), metrics },
      );
      const sent = event();
      await own.publish([sent]);
      expect(receivedIds()).toEqual([sent.id]);
      expect(lines).toEqual([]);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('names the detail types per action, stably', () => {
    expect(DETAIL_TYPES).toEqual({
      push: 'Registry Push',
      pull: 'Registry Pull',
      mount: 'Registry Mount',
      delete: 'Registry Delete',
    });
  });

  it('keeps each call under 256 KB', async () => {
    // Three events of about 100 KB: two fit a call, the third goes in another.
    const events = Array.from({ length: 3 }, () => event('push', { tag: 't'.repeat(100 * 1024) }));
    await sink().publish(events);
    expect(calls).toEqual([2, 1]);
    expect(receivedIds().sort()).toEqual(events.map(({ id }) => id).sort());
  });

  it('sends an event too large for EventBridge without its references', async () => {
    const references = Array.from({ length: 3000 }, () => ({
      mediaType: LAYER,
      digest: `sha256:${randomBytes(32).toString('hex')}`,
      size: 123456,
    }));
    const large = event('push', { references });
    expect(JSON.stringify(large).length).toBeGreaterThan(256 * 1024);
    await sink().publish([large]);

    const { references: sent, ...target } = large.target;
    expect(sent).toBe(references);
    expect(bus.received.map(({ detail }) => detail)).toEqual([{ ...large, target }]);
    expect(lines).toMatchObject([
      { level: 'warn', sink: 'eventbridge', eventId: large.id, references: 3000 },
    ]);
    expect(counts).toEqual({ events: 1, successes: 1 });
  });

  it('gives up an event too large even without references, logging it whole', async () => {
    const huge = event('push', { tag: 't'.repeat(300 * 1024) });
    const small = event('pull');
    await sink().publish([huge, small]);

    expect(receivedIds()).toEqual([small.id]);
    expect(errors()).toEqual([
      expect.objectContaining({
        msg: 'notification not delivered',
        sink: 'eventbridge',
        errorCode: 'EntryTooLarge',
        event: huge,
      }),
    ]);
    expect(counts).toEqual({ events: 2, successes: 1, dropped: 1 });
  });

  it('sends again the entries refused with ThrottlingException, and delivers each exactly once', async () => {
    bus.failNext(2, 'ThrottlingException');
    const events = Array.from({ length: 5 }, () => event());
    await sink().publish(events);

    expect(calls).toEqual([5, 2]);
    expect(receivedIds().sort()).toEqual(events.map(({ id }) => id).sort());
    const warnings = lines.filter((line) => line.level === 'warn');
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatchObject({ sink: 'eventbridge', errorCode: 'ThrottlingException', attempt: 1 });
    expect(events.map(({ id }) => id)).toContain(warnings[0]?.eventId);
    expect(errors()).toEqual([]);
    expect(counts).toEqual({ events: 5, successes: 5, failures: 2 });
  });

  it('gives up an entry still refused with InternalFailure after 4 attempts', async () => {
    bus.failNext(4, 'InternalFailure');
    const refused = event();
    await sink().publish([refused]);

    expect(calls).toEqual([1, 1, 1, 1]);
    expect(bus.received).toEqual([]);
    expect(errors()).toEqual([
      expect.objectContaining({
        msg: 'notification not delivered',
        errorCode: 'InternalFailure',
        event: refused,
      }),
    ]);
    expect(counts).toEqual({ events: 1, failures: 4, dropped: 1 });
  });

  it('does not send again an entry refused with AccessDeniedException; logs it whole and counts it dropped', async () => {
    bus.failNext(1, 'AccessDeniedException');
    const [denied, ...others] = [event('delete', { tag: undefined }), event(), event()] as [
      Event,
      Event,
      Event,
    ];
    await sink().publish([denied, ...others]);

    expect(calls).toEqual([3]);
    expect(receivedIds().sort()).toEqual(others.map(({ id }) => id).sort());
    expect(errors()).toEqual([
      expect.objectContaining({
        msg: 'notification not delivered',
        sink: 'eventbridge',
        errorCode: 'AccessDeniedException',
        event: denied,
      }),
    ]);
    expect(lines.filter((line) => line.level === 'warn')).toMatchObject([
      { errorCode: 'AccessDeniedException', eventId: denied.id },
    ]);
    expect(counts).toEqual({ events: 3, successes: 2, failures: 1, dropped: 1 });
  });

  it('lets the SDK retry a call that failed whole, then delivers', async () => {
    // Throttling first: the SDK waits up to 1 s before its first retry of one, 2 s before its second.
    bus.failCalls(1, 400, 'ThrottlingException');
    bus.failCalls(1, 500, 'InternalFailure');
    const events = [event(), event()];
    await sink().publish(events);

    expect(receivedIds().sort()).toEqual(events.map(({ id }) => id).sort());
    expect(counts).toEqual({ events: 2, successes: 2 });
    expect(lines).toEqual([]);
  });

  it('gives up every event of a call that failed whole after the SDK retries', async () => {
    bus.failCalls(3, 500, 'InternalFailure');
    const events = [event(), event('pull')];
    await sink().publish(events);

    expect(bus.received).toEqual([]);
    expect(lines.filter((line) => line.level === 'warn')).toMatchObject([
      {
        msg: 'EventBridge PutEvents failed',
        errorCode: 'InternalFailure',
        eventIds: events.map(({ id }) => id),
      },
    ]);
    expect(errors()).toMatchObject(
      events.map((sent) => ({
        msg: 'notification not delivered',
        errorCode: 'InternalFailure',
        event: sent,
      })),
    );
    expect(counts).toEqual({ events: 2, errors: 2, dropped: 2 });
    // The next call goes through: nothing was left injected.
    reset();
    await sink().publish([event()]);
    expect(counts).toEqual({ events: 1, successes: 1 });
  });

  it('does not retry a call refused whole for good', async () => {
    bus.failCalls(1, 400, 'AccessDeniedException');
    await sink().publish([event()]);
    expect(counts).toEqual({ events: 1, errors: 1, dropped: 1 });
    expect(errors()).toMatchObject([{ errorCode: 'AccessDeniedException' }]);
  });

  it('sends only the events its ignore filter wants', async () => {
    const layerPush = event('push', { mediaType: LAYER, tag: undefined });
    const pull = event('pull');
    const push = event('push');
    await sink({ ignore: { mediaTypes: [LAYER], actions: ['pull'] } }).publish([layerPush, pull, push]);

    expect(receivedIds()).toEqual([push.id]);
    expect(counts).toEqual({ events: 1, successes: 1 });
    reset();
    await sink({ ignore: { mediaTypes: [], actions: ['pull'] } }).publish([pull]);
    expect(calls).toEqual([]);
    expect(counts).toEqual({});
  });

  it('never throws: an endpoint that refuses connections or never answers costs the events, logged', async () => {
    const refusing = new EventBridgeClient({
      endpoint: `http://127.0.0.1:${await freePort()}`,
      region: REGION,
      credentials,
      maxAttempts: 1,
    });
    const silent = createServer(() => {});
    const silentPort = await listenOnLoopback(silent);
    const hanging = new EventBridgeClient({
      endpoint: `http://127.0.0.1:${silentPort}`,
      region: REGION,
      credentials,
      maxAttempts: 1,
    });
    try {
      const lost = event();
      await expect(sink({}, { client: refusing }).publish([lost])).resolves.toBeUndefined();
      expect(errors()).toEqual([expect.objectContaining({ msg: 'notification not delivered', event: lost })]);

      reset();
      const started = Date.now();
      const late = event();
      await expect(sink({}, { client: hanging, deadlineMs: 300 }).publish([late])).resolves.toBeUndefined();
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(errors()).toEqual([
        expect.objectContaining({
          msg: 'notification not delivered',
          errorCode: 'TimeoutError',
          event: late,
        }),
      ]);
      expect(counts).toEqual({ events: 1, errors: 1, dropped: 1 });
    } finally {
      refusing.destroy();
      hanging.destroy();
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('has nothing to flush on close', async () => {
    await expect(sink().close()).resolves.toBeUndefined();
  });
});
