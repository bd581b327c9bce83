/**
 * The registry's events, made in the core from what each request committed (the Journal around its
 * stores): which operations produce which events, with distribution's fields, and nothing for
 * requests that failed or only checked. Delivery (webhooks, EventBridge) has its own tests; real
 * clients' events are in test/e2e/notifications.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { ClientInfo } from '../../functions/auth/access.js';
import { jsonLogger } from '../../functions/log.js';
import { StorageBackedMetadataStore } from '../../functions/metadata/storage-backed.js';
import type { Event, EventSink } from '../../functions/notifications/events.js';
import { Notifier } from '../../functions/notifications/notifier.js';
import { Registry } from '../../functions/registry/registry.js';
import { MemoryDriver } from '../../functions/storage/memory.js';
import {
  type Api,
  OCI_CONFIG,
  OCI_EMPTY,
  OCI_LAYER,
  OCI_MANIFEST,
  encode,
  pushBlob,
  pushImage,
  putManifest,
  randomContent,
  sha256,
} from '../api/helpers.js';

const SOURCE = { addr: 'registry-1:5000', instanceID: 'a53db899-3b4b-4a62-a067-8dd013beaca4' };

interface Setup {
  api: Api;
  /** Events published, per request, in order. */
  published: Event[][];
  /** The events published since the last call. */
  take(): Event[];
  clients: ClientInfo[];
  log: string[];
}

interface Options {
  includeReferences?: boolean;
  sink?: EventSink;
  host?: string;
  /** Every request is signed in as this user. */
  user?: string;
}

function setup(options: Options = {}): Setup {
  const published: Event[][] = [];
  const log: string[] = [];
  const logger = jsonLogger('debug', {}, (line) => log.push(line));
  const storage = new MemoryDriver();
  const sink: EventSink = options.sink ?? {
    publish: (events) => {
      published.push([...events]);
      return Promise.resolve();
    },
    close: () => Promise.resolve(),
  };
  const registry = new Registry({
    storage,
    metadata: new StorageBackedMetadataStore(storage),
    log: logger,
    ...(options.user !== undefined && {
      authorizer: { authorize: () => Promise.resolve({ user: options.user, allows: () => true }) },
    }),
    notifier: new Notifier({
      sink,
      log: logger,
      includeReferences: options.includeReferences ?? false,
      source: SOURCE,
      host: options.host,
      relativeUrls: false,
    }),
  });
  const clients: ClientInfo[] = [];
  let counter = 0;
  const api: Api = {
    request: (path, init) => {
      const client: ClientInfo = { address: '192.0.2.7', requestId: `req-${++counter}` };
      clients.push(client);
      const headers = new Headers(init?.headers);
      headers.set('user-agent', 'test-client/1.0');
      return registry.handle(
        new Request(new URL(path, 'http://registry.test:5000'), { ...init, headers }),
        client,
      );
    },
    reopen: () => Promise.reject(new Error('not used')),
  };
  let seen = 0;
  const take = () => {
    const events = published.slice(seen).flat();
    seen = published.length;
    return events;
  };
  return { api, published, take, clients, log };
}

const blobUrl = (repository: string, digest: string) =>
  `http://registry.test:5000/v2/${repository}/blobs/${digest}`;
const manifestUrl = (repository: string, digest: string) =>
  `http://registry.test:5000/v2/${repository}/manifests/${digest}`;

describe('events', () => {
  it('makes a push for a finished blob upload, with distribution fields', async () => {
    const s = setup();
    const content = randomContent(1234);
    const { digest } = await pushBlob(s.api, 'team/app', content);
    const [event, ...rest] = s.take();
    expect(rest).toEqual([]);
    expect(event).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown,
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/) as unknown,
      action: 'push',
      target: {
        mediaType: 'application/octet-stream',
        digest,
        size: 1234,
        length: 1234,
        repository: 'team/app',
        url: blobUrl('team/app', digest),
      },
      request: {
        id: 'req-1',
        addr: '192.0.2.7',
        host: 'registry.test:5000',
        method: 'POST',
        useragent: 'test-client/1.0',
      },
      actor: {},
      source: SOURCE,
    });
    expect(s.clients[0]?.blobBytesPushed).toBe(1234);
    expect(s.clients[0]?.route).toBe('blob_upload');
    expect(s.clients[0]?.repository).toBe('team/app');
  });

  it('makes one push for a chunked upload, on its final PUT only', async () => {
    const s = setup();
    const content = randomContent(3000);
    const started = await s.api.request('/v2/app/blobs/uploads/', { method: 'POST' });
    const location = started.headers.get('location') ?? '';
    const patched = await s.api.request(location, {
      method: 'PATCH',
      body: content.slice(0, 1000),
      headers: { 'Content-Range': '0-999', 'Content-Type': 'application/octet-stream' },
    });
    expect(patched.status).toBe(202);
    expect(s.take()).toEqual([]);
    const next = new URL(patched.headers.get('location') ?? '', 'http://x');
    next.searchParams.set('digest', sha256(content));
    const finished = await s.api.request(`${next.pathname}${next.search}`, {
      method: 'PUT',
      body: content.slice(1000),
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    expect(finished.status).toBe(201);
    const events = s.take();
    expect(events.map((e) => [e.action, e.request.method, e.target.size])).toEqual([['push', 'PUT', 3000]]);
  });

  it('makes a manifest push with its tag, the URL by digest, and no pulls for the blobs it checked', async () => {
    const s = setup();
    const image = await pushImage(s.api, 'team/app', { tag: 'v1' });
    const events = s.take();
    expect(events.map((e) => `${e.action} ${e.target.mediaType}`)).toEqual([
      `push application/octet-stream`,
      `push application/octet-stream`,
      `push ${OCI_MANIFEST}`,
    ]);
    expect(events[2]?.target).toEqual({
      mediaType: OCI_MANIFEST,
      digest: image.digest,
      size: image.bytes.byteLength,
      length: image.bytes.byteLength,
      repository: 'team/app',
      url: manifestUrl('team/app', image.digest),
      tag: 'v1',
      artifactType: OCI_CONFIG,
    });
  });

  it('makes pulls for manifests and blobs served, GET and HEAD alike, by tag or digest', async () => {
    const s = setup();
    const image = await pushImage(s.api, 'app', { tag: 'latest' });
    s.take();
    const layer = (image.manifest.layers as { digest: string; size: number }[])[0];
    expect(
      (await s.api.request('/v2/app/manifests/latest', { headers: { Accept: OCI_MANIFEST } })).status,
    ).toBe(200);
    expect((await s.api.request(`/v2/app/manifests/${image.digest}`, { method: 'HEAD' })).status).toBe(200);
    expect((await s.api.request(`/v2/app/blobs/${layer?.digest}`)).status).toBe(200);
    expect((await s.api.request(`/v2/app/blobs/${layer?.digest}`, { method: 'HEAD' })).status).toBe(200);
    const events = s.take();
    expect(events.map((e) => [e.action, e.request.method, e.target.digest, e.target.tag])).toEqual([
      ['pull', 'GET', image.digest, 'latest'],
      ['pull', 'HEAD', image.digest, undefined],
      ['pull', 'GET', layer?.digest, undefined],
      ['pull', 'HEAD', layer?.digest, undefined],
    ]);
    expect(events[2]?.target).toEqual({
      mediaType: 'application/octet-stream',
      digest: layer?.digest,
      size: layer?.size,
      length: layer?.size,
      repository: 'app',
      url: blobUrl('app', layer?.digest ?? ''),
    });
  });

  it('makes a mount, not a push, for a blob mounted from another repository', async () => {
    const s = setup();
    const { digest, size } = await pushBlob(s.api, 'base/os', randomContent(500));
    s.take();
    const mounted = await s.api.request(`/v2/app/blobs/uploads/?mount=${digest}&from=base/os`, {
      method: 'POST',
    });
    expect(mounted.status).toBe(201);
    expect(s.take()).toEqual([
      expect.objectContaining({
        action: 'mount',
        target: {
          mediaType: 'application/octet-stream',
          digest,
          size,
          length: size,
          repository: 'app',
          fromRepository: 'base/os',
          url: blobUrl('app', digest),
        },
      }),
    ]);
    expect(s.clients.at(-1)?.blobBytesPushed).toBeUndefined();
  });

  it('makes deletes: a manifest then each tag it had, a tag alone, a blob', async () => {
    const s = setup();
    const image = await pushImage(s.api, 'app', { tag: 'v1' });
    expect((await putManifest(s.api, 'app', 'stable', image.bytes)).status).toBe(201);
    expect((await putManifest(s.api, 'app', 'old', image.bytes)).status).toBe(201);
    s.take();
    expect((await s.api.request('/v2/app/manifests/old', { method: 'DELETE' })).status).toBe(202);
    expect(s.take().map((e) => [e.action, e.target])).toEqual([
      ['delete', { repository: 'app', tag: 'old' }],
    ]);
    expect((await s.api.request(`/v2/app/manifests/${image.digest}`, { method: 'DELETE' })).status).toBe(202);
    expect(s.take().map((e) => [e.action, e.target])).toEqual([
      ['delete', { repository: 'app', digest: image.digest }],
      ['delete', { repository: 'app', tag: 'stable' }],
      ['delete', { repository: 'app', tag: 'v1' }],
    ]);
    const layer = (image.manifest.layers as { digest: string }[])[0]?.digest ?? '';
    expect((await s.api.request(`/v2/app/blobs/${layer}`, { method: 'DELETE' })).status).toBe(202);
    expect(s.take().map((e) => [e.action, e.target])).toEqual([
      ['delete', { repository: 'app', digest: layer }],
    ]);
  });

  it('makes nothing for requests that failed or changed nothing', async () => {
    const s = setup();
    const image = await pushImage(s.api, 'app', { tag: 'v1' });
    s.take();
    const content = randomContent(10);
    const wrong = await s.api.request(`/v2/app/blobs/uploads/?digest=${sha256(encode('other'))}`, {
      method: 'POST',
      body: content,
    });
    expect(wrong.status).toBe(400);
    expect((await s.api.request('/v2/app/manifests/nope')).status).toBe(404);
    expect((await s.api.request(`/v2/app/blobs/${sha256(content)}`)).status).toBe(404);
    expect((await s.api.request('/v2/app/manifests/nope', { method: 'DELETE' })).status).toBe(404);
    expect((await s.api.request('/v2/app/tags/list')).status).toBe(200);
    expect((await s.api.request('/v2/_catalog')).status).toBe(200);
    expect((await s.api.request(`/v2/app/referrers/${image.digest}`)).status).toBe(200);
    const missing = {
      ...image.manifest,
      layers: [{ mediaType: OCI_LAYER, digest: sha256(content), size: 10 }],
    };
    expect((await putManifest(s.api, 'app', 'broken', missing)).status).toBe(400);
    expect(s.take()).toEqual([]);
  });

  it('describes a referrer: its artifactType and its subject', async () => {
    const s = setup();
    const image = await pushImage(s.api, 'app', { tag: 'v1' });
    const empty = await pushBlob(s.api, 'app', encode('{}'));
    s.take();
    const signature = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: 'application/vnd.example.signature',
      config: { mediaType: OCI_EMPTY, digest: empty.digest, size: 2 },
      layers: [{ mediaType: OCI_EMPTY, digest: empty.digest, size: 2 }],
      subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.bytes.byteLength },
    };
    const put = await putManifest(s.api, 'app', 'sig', signature);
    expect(put.status).toBe(201);
    const digest = put.headers.get('docker-content-digest') ?? '';
    const [pushed] = s.take();
    expect(pushed?.target).toMatchObject({
      digest,
      artifactType: 'application/vnd.example.signature',
      subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.bytes.byteLength },
    });
    expect(pushed?.target.references).toBeUndefined();
    await s.api.request(`/v2/app/manifests/${digest}`, { method: 'HEAD' });
    expect(s.take()[0]?.target.subject).toEqual(pushed?.target.subject);
  });

  it('lists references with includereferences, on pushes and pulls', async () => {
    const s = setup({ includeReferences: true });
    const image = await pushImage(s.api, 'app', { tag: 'v1' });
    const manifest = image.manifest as { config: object; layers: object[] };
    const expected = [manifest.config, ...manifest.layers];
    expect(s.take().at(-1)?.target.references).toEqual(expected);
    await s.api.request('/v2/app/manifests/v1');
    expect(s.take()[0]?.target.references).toEqual(expected);
  });

  it('lists foreign layers among the references too, as distribution does', async () => {
    const s = setup({ includeReferences: true });
    const config = await pushBlob(s.api, 'app', encode('{}'));
    const foreign = {
      mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
      digest: sha256(randomContent(16)),
      size: 16,
      urls: ['https://layers.example.com/base.tar.gz'],
    };
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: [foreign],
    };
    expect((await putManifest(s.api, 'app', 'v1', manifest)).status).toBe(201);
    expect(s.take().at(-1)?.target.references).toEqual([
      { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      { mediaType: foreign.mediaType, digest: foreign.digest, size: 16 },
    ]);
  });

  it('builds URLs on http.host when set, and names the actor', async () => {
    const s = setup({ host: 'https://registry.example.com/', user: 'alice' });
    const { digest } = await pushBlob(s.api, 'app', randomContent(5));
    const [event] = s.take();
    expect(event?.target.url).toBe(`https://registry.example.com/v2/app/blobs/${digest}`);
    expect(event?.actor).toEqual({ name: 'alice' });
  });

  it('never fails a request when events cannot be published', async () => {
    const s = setup({
      sink: { publish: () => Promise.reject(new Error('sink broke')), close: () => Promise.resolve() },
    });
    const content = randomContent(50);
    const { digest } = await pushBlob(s.api, 'app', content);
    expect((await s.api.request(`/v2/app/blobs/${digest}`)).status).toBe(200);
    expect(
      s.log.some((line) => line.includes('notifying a request failed') && line.includes('sink broke')),
    ).toBe(true);
  });
});
