/**
 * The API suite through the Node adapter: a real node:http server on 127.0.0.1 over the filesystem
 * driver in a temporary directory, spoken to with fetch. Then what only a real HTTP connection can
 * show: clients that go away mid-body, large streamed bodies, HEAD framing and methods WHATWG refuses.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeListener } from '../../functions/http/node.js';
import { silentLogger } from '../../functions/log.js';
import { StorageBackedMetadataStore } from '../../functions/metadata/storage-backed.js';
import type { RegistryOptions } from '../../functions/registry/context.js';
import { Registry } from '../../functions/registry/registry.js';
import { FilesystemDriver } from '../../functions/storage/filesystem.js';
import {
  type ApiTarget,
  bodyOf,
  expectError,
  expectSameBytes,
  pathOf,
  pushBlob,
  pushImage,
  randomContent,
  sha256,
  startUpload,
  streamed,
  withQuery,
} from './helpers.js';
import { describeRegistryApi } from './suite.js';

const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

interface NodeTarget extends ApiTarget {
  /** http://127.0.0.1:port */
  readonly origin: string;
  /** Resolves once the registry has finished every request it started (the session is recorded, for instance). */
  idle(timeoutMs?: number): Promise<void>;
}

/** One server over root: its registry is wrapped only to know when no request is in flight. */
async function startServer(root: string, options?: Partial<RegistryOptions>) {
  const storage = new FilesystemDriver(root);
  const registry = new Registry({ storage, metadata: new StorageBackedMetadataStore(storage), options });
  let inFlight = 0;
  let waiters: (() => void)[] = [];
  const handler = {
    async handle(request: Request): Promise<Response> {
      inFlight += 1;
      try {
        return await registry.handle(request);
      } finally {
        inFlight -= 1;
        if (inFlight === 0) for (const wake of waiters.splice(0)) wake();
      }
    },
  };
  const server = createServer(nodeListener(handler, { log: silentLogger, accessLog: false }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;

  return {
    origin,
    async request(path: string, init?: RequestInit): Promise<Response> {
      const response = await fetch(`${origin}${path}`, { redirect: 'manual', ...init });
      // Read the body now, so that no test leaves a connection half-read.
      const body = response.body === null ? null : await bodyOf(response);
      return new Response(NULL_BODY_STATUSES.has(response.status) ? null : body, {
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
      });
    },
    idle(timeoutMs = 5000): Promise<void> {
      if (inFlight === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`the registry still has ${inFlight} request(s) in flight after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    async stop(): Promise<void> {
      waiters = [];
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => {
        server.close((error) => {
          if (error) reject(error);
          else resolve();
        });
      });
    },
  };
}

/** A fresh temporary directory and a server over it; reopen() starts more servers over the same directory. */
async function makeNodeTarget(options?: Partial<RegistryOptions>): Promise<NodeTarget> {
  const root = await mkdtemp(join(tmpdir(), 'registry-api-'));
  const primary = await startServer(root, options);
  const servers = [primary];

  const asTarget = (server: typeof primary): NodeTarget => ({
    origin: server.origin,
    request: (path, init) => server.request(path, init),
    idle: (timeoutMs) => server.idle(timeoutMs),
    async reopen(reopenOptions) {
      const other = await startServer(root, reopenOptions);
      servers.push(other);
      return { ...asTarget(other), close: () => Promise.resolve() };
    },
    async close() {
      await Promise.all(servers.splice(0).map((each) => each.stop()));
      await rm(root, { recursive: true, force: true });
    },
  });
  return asTarget(primary);
}

describeRegistryApi('node adapter (filesystem driver)', makeNodeTarget);

/** Raw HTTP/1.1 over a socket: the status line, headers and every byte after them, until the server closes. */
function rawExchange(origin: string, head: string): Promise<{ head: string; body: Buffer }> {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(head);
    });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      if (split < 0) {
        reject(new Error(`no complete response: ${JSON.stringify(all.toString('latin1'))}`));
        return;
      }
      resolve({ head: all.subarray(0, split).toString('latin1'), body: all.subarray(split + 4) });
    });
  });
}

function headerOf(head: string, name: string): string | undefined {
  const line = head.split('\r\n').find((entry) => entry.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line?.slice(line.indexOf(':') + 1).trim();
}

describe('node adapter only', () => {
  const targets: NodeTarget[] = [];
  afterEach(async () => {
    await Promise.all(targets.splice(0).map((target) => target.close()));
  });
  async function target(): Promise<NodeTarget> {
    const made = await makeNodeTarget();
    targets.push(made);
    return made;
  }

  it('keeps no blob, and a consistent session, when the client disconnects mid-PATCH', async () => {
    const api = await target();
    const repository = 'node/abort';
    const content = randomContent(1024 * 1024);
    const digest = sha256(content);
    const sent = 256 * 1024;
    const location = await startUpload(api, repository);

    // Announce the whole blob, send a quarter of it, and go away.
    await new Promise<void>((resolve, reject) => {
      const request = httpRequest(`${api.origin}${location}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(content.byteLength) },
      });
      request.on('error', () => {
        // Expected: the socket is destroyed below.
      });
      request.on('response', () => {
        reject(new Error('the registry answered a PATCH whose body never completed'));
      });
      request.write(content.subarray(0, sent), (error) => {
        if (error) {
          reject(error);
          return;
        }
        setTimeout(() => {
          request.destroy();
          resolve();
        }, 300);
      });
    });
    await api.idle();

    expect((await api.request(`/v2/${repository}/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);
    expect(
      (await api.request(`/v2/${repository}/blobs/${sha256(content.subarray(0, sent))}`, { method: 'HEAD' }))
        .status,
    ).toBe(404);

    const status = await api.request(location);
    if (status.status === 404) {
      // Forgetting the session is acceptable: the client starts again.
      await expectError(status, 'BLOB_UPLOAD_UNKNOWN', 404);
      return;
    }
    expect(status.status).toBe(204);
    const range = /^0-(\d+)$/.exec(status.headers.get('range') ?? '');
    expect(range).not.toBeNull();
    const end = Number(range?.[1]);
    const received = end === 0 ? 0 : end + 1;
    expect(received).toBeLessThanOrEqual(sent);

    // The session reports what arrived: the client resumes from there and finishes.
    const resumed = await api.request(pathOf(status.headers.get('location')), {
      method: 'PATCH',
      body: content.subarray(received),
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Range': `${received}-${content.byteLength - 1}`,
      },
    });
    expect(resumed.status).toBe(202);
    expect(resumed.headers.get('range')).toBe(`0-${content.byteLength - 1}`);
    const finished = await api.request(withQuery(pathOf(resumed.headers.get('location')), { digest }), {
      method: 'PUT',
    });
    expect(finished.status).toBe(201);
    const blob = await api.request(`/v2/${repository}/blobs/${digest}`);
    expectSameBytes(await bodyOf(blob), content);
  });

  it('takes a 20 MiB streamed PATCH body', async () => {
    const api = await target();
    const repository = 'node/large';
    const content = randomContent(20 * 1024 * 1024);
    const digest = sha256(content);
    const location = await startUpload(api, repository);
    const patched = await api.request(location, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/octet-stream' },
      ...streamed(content, 256 * 1024),
    });
    expect(patched.status).toBe(202);
    expect(patched.headers.get('range')).toBe(`0-${content.byteLength - 1}`);
    const finished = await api.request(withQuery(pathOf(patched.headers.get('location')), { digest }), {
      method: 'PUT',
    });
    expect(finished.status).toBe(201);

    const head = await api.request(`/v2/${repository}/blobs/${digest}`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(content.byteLength));
    const blob = await api.request(`/v2/${repository}/blobs/${digest}`);
    expectSameBytes(await bodyOf(blob), content);
  });

  it('sends no body after a HEAD response, whatever its status', async () => {
    const api = await target();
    const image = await pushImage(api, 'node/head', { tag: 'v1' });
    const blob = await pushBlob(api, 'node/head', randomContent(1000));
    const cases: [path: string, status: number, length: string | undefined][] = [
      ['/v2/', 200, undefined],
      ['/v2/node/head/manifests/v1', 200, String(image.bytes.byteLength)],
      [`/v2/node/head/blobs/${blob.digest}`, 200, '1000'],
      ['/v2/node/head/manifests/missing', 404, undefined],
      ['/v2/Invalid/manifests/v1', 400, undefined],
    ];
    for (const [path, status, length] of cases) {
      const { head, body } = await rawExchange(
        api.origin,
        `HEAD ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      );
      expect(head.split('\r\n')[0]).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      if (length !== undefined) expect(headerOf(head, 'content-length')).toBe(length);
      expect(headerOf(head, 'docker-distribution-api-version')).toBe('registry/2.0');
      expect(body.byteLength).toBe(0);
    }
  });

  it.each([['TRACE'], ['PROPFIND']])(
    'answers an unknown method (%s) with a 4xx, not a 500',
    async (method) => {
      const api = await target();
      const status = await new Promise<number>((resolve, reject) => {
        const request = httpRequest(`${api.origin}/v2/`, { method });
        request.on('error', reject);
        request.on('response', (response) => {
          response.resume();
          response.on('end', () => {
            resolve(response.statusCode ?? 0);
          });
        });
        request.end();
      });
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(500);
    },
  );
});
