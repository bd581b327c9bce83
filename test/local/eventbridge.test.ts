// The local EventBridge (bin/local/eventbridge.ts) driven by the real SDK client: it verifies SigV4,
// judges entries as PutEvents does, and forwards accepted events to rule targets over HTTP.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import {
  EventBridgeClient,
  EventBridgeServiceException,
  ListRulesCommand,
  PutEventsCommand,
  type PutEventsRequestEntry,
} from '@aws-sdk/client-eventbridge';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type LocalEventBridge,
  type LocalRuleTarget,
  startLocalEventBridge,
} from '../../bin/local/eventbridge.js';
import { listenOnLoopback } from '../../bin/local/free-port.js';
import { jsonLogger } from '../../functions/log.js';

const REGION = 'eu-west-1';
const credentials = { accessKeyId: 'AKLOCALTEST', secretAccessKey: randomBytes(20).toString('hex') };

const entry = (detail: Record<string, unknown>, more: Partial<PutEventsRequestEntry> = {}) => ({
  Source: 'registry',
  DetailType: 'Registry Push',
  Detail: JSON.stringify(detail),
  EventBusName: 'registry',
  ...more,
});

/** The AWS error a command failed with: its name (`__type`) and HTTP status. */
async function failure(promise: Promise<unknown>): Promise<{ name: string; status: number | undefined }> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof EventBridgeServiceException))
    throw new Error(`expected an AWS error, got ${String(error)}`);
  return { name: error.name, status: error.$metadata.httpStatusCode };
}

describe('the local EventBridge', () => {
  let bus: LocalEventBridge;
  const clients: EventBridgeClient[] = [];
  const client = (overrides: { credentials?: typeof credentials; region?: string } = {}) => {
    const made = new EventBridgeClient({
      endpoint: bus.url,
      region: overrides.region ?? REGION,
      credentials: overrides.credentials ?? credentials,
      maxAttempts: 1,
    });
    clients.push(made);
    return made;
  };

  beforeAll(async () => {
    bus = await startLocalEventBridge({ region: REGION, credentials, buses: ['default', 'registry'] });
  });

  afterEach(() => {
    bus.received.length = 0;
  });

  afterAll(async () => {
    for (const made of clients) made.destroy();
    await bus.close();
  });

  it('accepts a correctly signed PutEvents and records the event as the bus has it', async () => {
    const time = new Date('2024-05-06T07:08:09.250Z');
    const output = await client().send(
      new PutEventsCommand({
        Entries: [entry({ action: 'push', n: 1 }, { Time: time, Resources: ['arn:x'] })],
      }),
    );
    expect(output.FailedEntryCount).toBe(0);
    expect(output.Entries).toHaveLength(1);
    const eventId = output.Entries?.[0]?.EventId;
    expect(eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(bus.received).toEqual([
      {
        id: eventId,
        bus: 'registry',
        source: 'registry',
        detailType: 'Registry Push',
        detail: { action: 'push', n: 1 },
        time: '2024-05-06T07:08:09Z',
        resources: ['arn:x'],
      },
    ]);
  });

  it('takes a bus by ARN, and the default bus when none is named', async () => {
    await client().send(
      new PutEventsCommand({
        Entries: [
          entry({ n: 1 }, { EventBusName: 'arn:aws:events:eu-west-1:123456789012:event-bus/registry' }),
          entry({ n: 2 }, { EventBusName: undefined }),
        ],
      }),
    );
    expect(bus.received.map(({ bus, detail }) => [bus, detail.n])).toEqual([
      ['registry', 1],
      ['default', 2],
    ]);
  });

  it('refuses a request signed with a wrong secret key, an unknown access key or another region', async () => {
    const put = () => new PutEventsCommand({ Entries: [entry({ n: 1 })] });
    expect(
      await failure(client({ credentials: { ...credentials, secretAccessKey: 'wrong' } }).send(put())),
    ).toEqual({ name: 'InvalidSignatureException', status: 400 });
    expect(
      await failure(client({ credentials: { ...credentials, accessKeyId: 'AKOTHER' } }).send(put())),
    ).toEqual({
      name: 'UnrecognizedClientException',
      status: 400,
    });
    expect(await failure(client({ region: 'us-east-1' }).send(put()))).toEqual({
      name: 'InvalidSignatureException',
      status: 400,
    });
    expect(bus.received).toEqual([]);
  });

  it('refuses a body changed after signing', async () => {
    const tampering = client();
    let tampered = false;
    tampering.middlewareStack.add(
      (next) => async (args) => {
        // After signing (the finalizeRequest step), just before sending.
        const request = args.request as { body: string | Uint8Array };
        const body = Buffer.from(request.body).toString('utf8');
        request.body = body.replace('\\"n\\":1', '\\"n\\":2');
        tampered = request.body !== body;
        return next(args);
      },
      { step: 'deserialize', priority: 'low' },
    );
    expect(await failure(tampering.send(new PutEventsCommand({ Entries: [entry({ n: 1 })] })))).toEqual({
      name: 'InvalidSignatureException',
      status: 400,
    });
    expect(tampered).toBe(true);
    expect(bus.received).toEqual([]);
  });

  it('answers another operation with UnknownOperationException', async () => {
    expect(await failure(client().send(new ListRulesCommand({})))).toEqual({
      name: 'UnknownOperationException',
      status: 400,
    });
  });

  it('refuses a call of more than 10 entries, or of more than 256 KB, whole', async () => {
    const eleven = Array.from({ length: 11 }, (_, n) => entry({ n }));
    expect(await failure(client().send(new PutEventsCommand({ Entries: eleven })))).toEqual({
      name: 'ValidationException',
      status: 400,
    });
    // Two entries of 130 KB: each fits, together they do not.
    const big = entry({ pad: 'x'.repeat(130 * 1024) });
    expect(await failure(client().send(new PutEventsCommand({ Entries: [big, big] })))).toEqual({
      name: 'ValidationException',
      status: 400,
    });
    await client().send(new PutEventsCommand({ Entries: [big] }));
    expect(bus.received).toHaveLength(1);
  });

  it('fails bad entries one by one, in request order, and keeps the good ones', async () => {
    const output = await client().send(
      new PutEventsCommand({
        Entries: [
          entry({ n: 1 }),
          { Source: 'registry', DetailType: 'Registry Push' },
          entry({ n: 3 }, { Detail: '[1, 2]' }),
          entry({ n: 4 }, { Source: undefined }),
          entry({ n: 5 }),
        ],
      }),
    );
    expect(output.FailedEntryCount).toBe(3);
    expect(output.Entries?.map((result) => result.ErrorCode ?? 'ok')).toEqual([
      'ok',
      'InvalidArgument',
      'MalformedDetail',
      'InvalidArgument',
      'ok',
    ]);
    expect(output.Entries?.[1]?.ErrorMessage).toContain('Detail');
    expect(bus.received.map(({ detail }) => detail.n)).toEqual([1, 5]);
  });

  it('accepts an entry for a bus that does not exist and drops it, as AWS does, with a warning', async () => {
    const lines: string[] = [];
    const quiet = await startLocalEventBridge({
      region: REGION,
      credentials,
      log: jsonLogger('warn', {}, (line) => lines.push(line)),
    });
    const other = new EventBridgeClient({ endpoint: quiet.url, region: REGION, credentials, maxAttempts: 1 });
    try {
      const output = await other.send(
        new PutEventsCommand({ Entries: [entry({ n: 1 }, { EventBusName: 'missing' })] }),
      );
      expect(output.FailedEntryCount).toBe(0);
      expect(output.Entries?.[0]?.EventId).toBeDefined();
      expect(quiet.received).toEqual([]);
      expect(lines.map((line) => JSON.parse(line) as Record<string, unknown>)).toMatchObject([
        { level: 'warn', bus: 'missing' },
      ]);
    } finally {
      other.destroy();
      await quiet.close();
    }
  });

  it('fails the next entries with an injected error code, then accepts again', async () => {
    bus.failNext(2, 'ThrottlingException');
    const output = await client().send(
      new PutEventsCommand({ Entries: [entry({ n: 1 }), entry({ n: 2 }), entry({ n: 3 })] }),
    );
    expect(output.FailedEntryCount).toBe(2);
    expect(output.Entries?.map((result) => result.ErrorCode ?? 'ok')).toEqual([
      'ThrottlingException',
      'ThrottlingException',
      'ok',
    ]);
    expect(bus.received.map(({ detail }) => detail.n)).toEqual([3]);
  });

  it('fails the next calls whole with an injected status and type', async () => {
    bus.failCalls(1, 503, 'ServiceUnavailable');
    const put = () => new PutEventsCommand({ Entries: [entry({ n: 1 })] });
    expect(await failure(client().send(put()))).toEqual({ name: 'ServiceUnavailable', status: 503 });
    expect((await client().send(put())).FailedEntryCount).toBe(0);
  });
});

describe('the local EventBridge rule targets', () => {
  /** A webhook receiver on 127.0.0.1 that answers with the next status of its script, then 200. */
  let receiver: Server;
  let url: string;
  const requests: { headers: IncomingHttpHeaders; body: string }[] = [];
  const script: number[] = [];

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (chunk: Buffer) => parts.push(chunk));
      req.on('end', () => {
        requests.push({ headers: req.headers, body: Buffer.concat(parts).toString('utf8') });
        res.writeHead(script.shift() ?? 200).end();
      });
    });
    url = `http://127.0.0.1:${await listenOnLoopback(receiver)}/hook`;
  });

  afterEach(() => {
    requests.length = 0;
    script.length = 0;
  });

  afterAll(async () => {
    receiver.closeAllConnections();
    await new Promise((resolve) => receiver.close(resolve));
  });

  async function withBus(
    targets: LocalRuleTarget[],
    test: (put: (...details: object[]) => Promise<void>) => Promise<void>,
  ) {
    const bus = await startLocalEventBridge({ region: REGION, credentials, buses: ['registry'], targets });
    const client = new EventBridgeClient({ endpoint: bus.url, region: REGION, credentials, maxAttempts: 1 });
    try {
      await test(async (...details) => {
        const output = await client.send(
          new PutEventsCommand({ Entries: details.map((detail) => entry({ ...detail })) }),
        );
        expect(output.FailedEntryCount).toBe(0);
        await bus.idle();
      });
    } finally {
      client.destroy();
      await bus.close();
    }
  }

  it("POSTs each matching event's detail in the construct's envelope, as an API destination sends it", async () => {
    await withBus(
      [{ url, actions: ['push'], headers: { authorization: 'Bearer hook-token' } }],
      async (put) => {
        await put({ id: 'a', action: 'push' }, { id: 'b', action: 'pull' });
        expect(requests).toHaveLength(1);
        expect(JSON.parse(requests[0]?.body ?? '')).toEqual({ events: [{ id: 'a', action: 'push' }] });
        expect(requests[0]?.headers).toMatchObject({
          'content-type': 'application/json; charset=utf-8',
          authorization: 'Bearer hook-token',
        });
      },
    );
  });

  it("matches as the construct's rule does: source, action, and media types left out", async () => {
    const layer = 'application/vnd.oci.image.layer.v1.tar+gzip';
    await withBus([{ url, source: 'registry', ignoreMediaTypes: [layer] }], async (put) => {
      await put(
        { id: 'layer', action: 'push', target: { mediaType: layer } },
        {
          id: 'manifest',
          action: 'push',
          target: { mediaType: 'application/vnd.oci.image.manifest.v1+json' },
        },
        { id: 'delete', action: 'delete', target: { repository: 'org/app' } },
      );
      const ids = requests.map(
        ({ body }) => (JSON.parse(body) as { events: { id: string }[] }).events[0]?.id,
      );
      expect(ids.sort()).toEqual(['delete', 'manifest']);
    });
    await withBus([{ url, source: 'elsewhere' }], async (put) => {
      requests.length = 0;
      await put({ id: 'a', action: 'push' });
      expect(requests).toEqual([]);
    });
  });

  it('retries after 500s and delivers once the receiver takes it', async () => {
    await withBus([{ url }], async (put) => {
      script.push(500, 503);
      await put({ id: 'a', action: 'delete' });
      expect(requests).toHaveLength(3);
      expect(new Set(requests.map(({ body }) => body))).toEqual(
        new Set(['{"events":[{"id":"a","action":"delete"}]}']),
      );
      expect(script).toEqual([]);
    });
  });

  it('gives up after the retry policy, and does not retry a 400', async () => {
    await withBus([{ url, retryAttempts: 1 }], async (put) => {
      script.push(500, 500, 500);
      await put({ id: 'a', action: 'push' });
      expect(requests).toHaveLength(2);
    });
    script.length = 0;
    requests.length = 0;
    await withBus([{ url }], async (put) => {
      script.push(400);
      await put({ id: 'a', action: 'push' });
      expect(requests).toHaveLength(1);
    });
  });
});
