// Notifications with real clients, on both runtimes: skopeo pushes, pulls, mounts (a copy between
// repositories of the registry) and deletes, and the events a real HTTP receiver on 127.0.0.1 gets are
// compared with what those operations were, exactly.
//
// - The standalone server (dist/registry.mjs) posts to the receiver itself (notifications.endpoints,
//   signed) and sends the same events to a local EventBridge endpoint, which checks every call's SigV4
//   signature (notifications.eventbridge): both must get the same events, by id.
// - The AWS deployment's shape (dist/local-aws.mjs, the Lambda handler behind the API Gateway front)
//   sends its events to the local EventBridge with PutEvents, and the receiver gets them as the
//   construct's webhooks deliver them: an EventBridge rule with an API destination, the envelope rebuilt
//   by the rule's input transformer (bin/local/eventbridge.ts emulates that part).
//
// A receiver that fails, then hangs, is retried, and neither blocks nor fails the pushes.
import { createHmac } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalEventBridge } from '../../bin/local/eventbridge.js';
import type { Event } from '../../functions/notifications/events.js';
import { Skopeo } from './harness/clients.js';
import { makeTempDir, removeTempDir, waitFor } from './harness/exec.js';
import { type ImageInfo, writeRandomImage } from './harness/images.js';
import { ESBUILD_ARGS } from './harness/local-aws.js';
import { REPO_ROOT, RegistryUnderTest } from './harness/registry.js';
import { run } from './harness/exec.js';

const SIGNING_SECRET = `whsec_${Buffer.from('a-webhook-signing-key-for-tests').toString('base64')}`;
const BLOB = 'application/octet-stream';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Delivery {
  headers: IncomingHttpHeaders;
  body: string;
  events: Event[];
}

/** A webhook receiver: records every delivery it accepts; can be told to fail or hang. */
class Receiver {
  readonly deliveries: Delivery[] = [];
  attempts = 0;
  mode: 'ok' | 'fail' | 'hang' = 'ok';
  private readonly hanging = new Set<() => void>();

  private constructor(private readonly server: Server) {}

  static async start(): Promise<Receiver> {
    const server = createServer();
    const receiver = new Receiver(server);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        receiver.receive(req.headers, Buffer.concat(chunks).toString('utf8'), res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  /** Every event received, each once (a delivery retried after a timeout may arrive twice). */
  get events(): Event[] {
    const seen = new Set<string>();
    return this.deliveries
      .flatMap((d) => d.events)
      .filter((event) => !seen.has(event.id) && seen.add(event.id));
  }

  private receive(headers: IncomingHttpHeaders, body: string, res: ServerResponse): void {
    this.attempts++;
    if (this.mode === 'fail') {
      res.writeHead(500).end('down for maintenance');
      return;
    }
    if (this.mode === 'hang') {
      // Answered (late) only when released, after the sender has timed out.
      this.hanging.add(() => res.writeHead(503).end());
      return;
    }
    this.deliveries.push({ headers, body, events: (JSON.parse(body) as { events: Event[] }).events });
    res.writeHead(202).end();
  }

  /** Deliveries held unanswered right now. */
  get held(): number {
    return this.hanging.size;
  }

  release(): void {
    for (const answer of this.hanging) answer();
    this.hanging.clear();
  }

  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
    });
  }
}

/** What an event says, in one line: the part a test compares exactly. */
function summary(event: Event): string {
  const t = event.target;
  return [
    event.action,
    t.repository,
    t.mediaType ?? '-',
    t.digest ?? '-',
    t.tag ?? '-',
    t.fromRepository ?? '-',
  ].join(' ');
}

const blobs = (image: ImageInfo) => [image.config, ...image.layers];

/** The notification suite against one registry, whose events reach `receiver`. */
function notificationSuite(
  name: string,
  start: (receiver: Receiver) => Promise<{ registry: RegistryUnderTest; check?: (events: Event[]) => void }>,
): void {
  describe(name, () => {
    let receiver: Receiver;
    let registry: RegistryUnderTest;
    let check: ((events: Event[]) => void) | undefined;
    let skopeo: Skopeo;
    let dir: string;
    let image: ImageInfo;
    let second: ImageInfo;
    let seen = 0;

    beforeAll(async () => {
      receiver = await Receiver.start();
      ({ registry, check } = await start(receiver));
      skopeo = await Skopeo.create();
      dir = await makeTempDir('notifications');
      image = await writeRandomImage(join(dir, 'image'), `${name} image`, [300_000, 200_000]);
      second = await writeRandomImage(join(dir, 'second'), `${name} second`, [100_000]);
    }, 300_000);
    afterAll(async () => {
      await skopeo.dispose();
      await registry.stop();
      await receiver.close();
      await removeTempDir(dir);
    });

    /** The events received since the last call, once count of them have arrived (and no more after a pause). */
    async function next(count: number): Promise<Event[]> {
      await waitFor(
        `${count} events at the receiver`,
        () => Promise.resolve(receiver.events.length - seen >= count),
        30_000,
        async () =>
          `--- events so far ---\n${receiver.events.slice(seen).map(summary).join('\n')}\n${await registry.diagnostics()}`,
      );
      // Anything beyond the count would be an unexpected event: give it the time to show.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const events = receiver.events.slice(seen);
      seen += events.length;
      return events;
    }

    it('a push gives a push per blob and one for the manifest, with its tag, last', async () => {
      await skopeo.copy(`oci:${image.layout}:v1`, `docker://${registry.host}/team/app:v1`);
      const events = await next(blobs(image).length + 1);
      const manifest = events.at(-1) as Event;
      expect(events.slice(0, -1).map(summary).sort()).toEqual(
        blobs(image)
          .map((b) => `push team/app ${BLOB} ${b.digest} - -`)
          .sort(),
      );
      expect(summary(manifest)).toBe(`push team/app ${OCI_MANIFEST} ${image.manifest.digest} v1 -`);
      expect(manifest.target).toMatchObject({
        size: image.manifest.size,
        length: image.manifest.size,
        url: expect.stringMatching(
          new RegExp(`^https?://[^/]+/v2/team/app/manifests/${image.manifest.digest}$`),
        ) as unknown,
        artifactType: image.config.mediaType,
      });
      expect(manifest.request).toMatchObject({
        method: 'PUT',
        useragent: expect.stringContaining('skopeo') as unknown,
        host: registry.host,
      });
      expect(manifest.request.id).not.toBe('');
      expect(manifest.actor).toEqual({});
      expect(manifest.source.instanceID).toMatch(/^[0-9a-f-]{36}$/);
      check?.(events);
    });

    it('a pull gives a pull for the manifest (by tag) and for each blob', async () => {
      await skopeo.copy(`docker://${registry.host}/team/app:v1`, `oci:${join(dir, 'pulled')}:v1`);
      const events = await next(blobs(image).length + 1);
      expect(events.map(summary).sort()).toEqual(
        [
          `pull team/app ${OCI_MANIFEST} ${image.manifest.digest} v1 -`,
          ...blobs(image).map((b) => `pull team/app ${BLOB} ${b.digest} - -`),
        ].sort(),
      );
      expect(events.every((e) => e.request.method === 'GET')).toBe(true);
      check?.(events);
    });

    it('a copy to another repository mounts the layers instead of pushing them', async () => {
      await skopeo.copy(`docker://${registry.host}/team/app:v1`, `docker://${registry.host}/team/copy:v1`);
      // skopeo reads the manifest and the config from the source and sends the config itself; each layer
      // it finds in the source (a HEAD, which is a pull) and mounts; then it pushes the manifest.
      const events = await next(4 + 2 * image.layers.length);
      const { config } = image;
      expect(events.map(summary).sort()).toEqual(
        [
          `pull team/app ${OCI_MANIFEST} ${image.manifest.digest} v1 -`,
          `pull team/app ${BLOB} ${config.digest} - -`,
          `push team/copy ${BLOB} ${config.digest} - -`,
          ...image.layers.flatMap((b) => [
            `pull team/app ${BLOB} ${b.digest} - -`,
            `mount team/copy ${BLOB} ${b.digest} - team/app`,
          ]),
          `push team/copy ${OCI_MANIFEST} ${image.manifest.digest} v1 -`,
        ].sort(),
      );
      const layers = new Set(image.layers.map((b) => b.digest));
      const found = events.filter((e) => e.action === 'pull' && layers.has(e.target.digest ?? ''));
      expect(found.map((e) => e.request.method)).toEqual(image.layers.map(() => 'HEAD'));
      check?.(events);
    });

    it('a delete gives the manifest deletion, then its tag', async () => {
      await skopeo.delete(`docker://${registry.host}/team/copy:v1`);
      // skopeo reads the manifest first, to delete it by digest.
      const events = await next(3);
      expect(summary(events[0] as Event)).toBe(
        `pull team/copy ${OCI_MANIFEST} ${image.manifest.digest} v1 -`,
      );
      expect(events[1]?.request.method).toBe('DELETE');
      expect(events.slice(1).map((e) => [e.action, e.target])).toEqual([
        ['delete', { repository: 'team/copy', digest: image.manifest.digest }],
        ['delete', { repository: 'team/copy', tag: 'v1' }],
      ]);
      check?.(events);
    });

    it('a receiver that fails, then hangs, neither blocks nor fails a push, and gets every event after', async () => {
      receiver.mode = 'fail';
      const attempts = receiver.attempts;
      await skopeo.copy(`oci:${second.layout}:v1`, `docker://${registry.host}/team/second:v1`);
      await waitFor(
        'a failed delivery attempt',
        () => Promise.resolve(receiver.attempts > attempts),
        30_000,
        () => registry.diagnostics(),
      );
      receiver.mode = 'hang';
      const started = Date.now();
      await skopeo.copy(`oci:${second.layout}:v1`, `docker://${registry.host}/team/third:v1`);
      // The receiver hangs every delivery: a push that waited for one would take the sender's timeouts.
      expect(Date.now() - started).toBeLessThan(20_000);
      await waitFor(
        'a delivery held by the hanging receiver',
        () => Promise.resolve(receiver.held > 0),
        30_000,
        () => registry.diagnostics(),
      );
      receiver.mode = 'ok';
      receiver.release();
      // The first push sends everything; the second sends the config and mounts the layer it finds in
      // the first repository (a HEAD there, a pull), as skopeo copies.
      const events = await next(blobs(second).length + 1 + 2 * second.layers.length + 2);
      const all = [...blobs(second), second.manifest].map((d) => d.digest);
      expect(events.map((e) => `${e.action} ${e.target.repository} ${e.target.digest}`).sort()).toEqual(
        [
          ...all.map((digest) => `push team/second ${digest}`),
          `push team/third ${second.config.digest}`,
          ...second.layers.flatMap((b) => [`pull team/second ${b.digest}`, `mount team/third ${b.digest}`]),
          `push team/third ${second.manifest.digest}`,
        ].sort(),
      );
      check?.(events);
    });
  });
}

const CREDENTIALS = { accessKeyId: 'registry-key', secretAccessKey: 'registry-secret-key' };
const REGION = 'eu-west-1';

describe('notifications', () => {
  let eventBridge: Awaited<ReturnType<typeof startLocalEventBridge>> | undefined;
  afterAll(async () => {
    await eventBridge?.close();
  });

  notificationSuite('standalone server: webhook and EventBridge', async (receiver) => {
    eventBridge = await startLocalEventBridge({
      region: REGION,
      credentials: CREDENTIALS,
      buses: ['registry'],
    });
    const bus = eventBridge;
    const registry = await RegistryUnderTest.start('ours', {
      config: {
        notifications: {
          endpoints: [
            {
              name: 'ci',
              url: receiver.url,
              headers: { Authorization: ['Bearer receiver-token'] },
              // Longer than the test allows a push: a push that waited for a delivery would fail it.
              timeout: '30s',
              threshold: 2,
              backoff: '300ms',
              signingsecret: SIGNING_SECRET,
            },
          ],
          eventbridge: { eventbus: 'registry', region: REGION, endpoint: bus.url },
        },
      },
      env: {
        AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      },
    });
    const check = (events: Event[]) => {
      // The same events went to EventBridge, one entry each, as distribution's event JSON.
      const ids = new Set(bus.received.map((entry) => (entry.detail as unknown as Event).id));
      for (const event of events) expect(ids.has(event.id), `event ${event.id} at EventBridge`).toBe(true);
      for (const entry of bus.received) {
        expect(entry.source).toBe('registry');
        expect(entry.detailType).toMatch(/^Registry (Push|Pull|Mount|Delete)$/);
      }
      // Each delivery: distribution's media type, one event, the configured header, a valid signature.
      for (const delivery of receiver.deliveries) {
        expect(delivery.headers['content-type']).toBe('application/vnd.docker.distribution.events.v2+json');
        expect(delivery.events).toHaveLength(1);
        expect(delivery.headers.authorization).toBe('Bearer receiver-token');
        const id = String(delivery.headers['webhook-id']);
        const timestamp = String(delivery.headers['webhook-timestamp']);
        expect(id).toBe(delivery.events[0]?.id);
        const key = Buffer.from(SIGNING_SECRET.slice('whsec_'.length), 'base64');
        const signature = createHmac('sha256', key)
          .update(`${id}.${timestamp}.${delivery.body}`)
          .digest('base64');
        expect(delivery.headers['webhook-signature']).toBe(`v1,${signature}`);
      }
    };
    return { registry, check };
  });

  notificationSuite('AWS deployment: EventBridge, then the construct webhook', async (receiver) => {
    await run('npx', ESBUILD_ARGS, { cwd: REPO_ROOT, timeoutMs: 120_000 });
    const registry = await RegistryUnderTest.start('local-aws', { s3: 'fauxqs', webhooks: [receiver.url] });
    const check = (events: Event[]) => {
      for (const delivery of receiver.deliveries) {
        // What an API destination sends: JSON, and the envelope the rule's input transformer makes.
        expect(delivery.headers['content-type']).toBe('application/json; charset=utf-8');
        expect(delivery.events).toHaveLength(1);
      }
      // Pulls of blobs are answered with redirects to S3 on AWS, and count as pulls all the same.
      expect(events.every((e) => e.source.addr !== undefined)).toBe(true);
    };
    return { registry, check };
  });
});
