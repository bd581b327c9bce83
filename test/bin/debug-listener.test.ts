/**
 * The standalone server's debug listener (http.debug), through the built server: /debug/health as
 * distribution answers it, Prometheus metrics of the requests the registry served, no second port
 * unless configured, and the listener closed with the server.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, RegistryProcess } from '../support/registry-process.js';

const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

let dir: string;
const running: RegistryProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'registry-debug-'));
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((server) => server.stop()));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts the built server with env, and a debug listener unless told not to; the listener's origin. */
async function start(
  env: Record<string, string>,
  { debugListener = true } = {},
): Promise<{ server: RegistryProcess; debug: string }> {
  const [port, debugPort] = [await freePort(), await freePort()];
  const server = await RegistryProcess.start({
    env: {
      REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, String(port)),
      ...(debugListener && { REGISTRY_HTTP_DEBUG_ADDR: `127.0.0.1:${debugPort}` }),
      ...env,
    },
    url: `http://127.0.0.1:${port}`,
  });
  running.push(server);
  return { server, debug: `http://127.0.0.1:${debugPort}` };
}

/** The TCP ports a process listens on, from /proc (Linux): its socket inodes in the kernel's tables. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set(
    readdirSync(`/proc/${pid}/fd`)
      .map((fd) => {
        try {
          return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        } catch {
          return undefined; // closed meanwhile
        }
      })
      .filter((inode) => inode !== undefined),
  );
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const row of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').trim().split('\n').slice(1)) {
      const fields = row.trim().split(/\s+/);
      // local_address is hex ip:port; state 0A is LISTEN; the inode is the tenth field.
      if (fields[3] === '0A' && inodes.has(fields[9] ?? '')) {
        ports.push(parseInt(fields[1]?.split(':')[1] ?? '', 16));
      }
    }
  }
  return ports.sort((a, b) => a - b);
}

/** The samples of a metric in a scrape, as `name{labels} value` lines. */
function samples(text: string, name: string): string[] {
  return text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

describe('debug listener', () => {
  it('serves Prometheus metrics of the requests served, by distribution’s handler names', async () => {
    const { server, debug } = await start({ REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED: 'true' });
    expect((await fetch(`${server.url}/v2/`)).status).toBe(200);
    expect((await fetch(`${server.url}/v2/`)).status).toBe(200);
    expect((await fetch(`${server.url}/v2/app/manifests/latest`)).status).toBe(404);
    const blob = randomBytes(5000);
    const pushed = await fetch(`${server.url}/v2/app/blobs/uploads/?digest=${sha256(blob)}`, {
      method: 'POST',
      body: blob,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    expect(pushed.status).toBe(201);
    expect((await fetch(`${server.url}/v2/app/blobs/${sha256(blob)}`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${server.url}/nowhere`)).status).toBe(404);

    // A request's metrics are recorded once its response has gone: poll until the last one shows.
    const scrape = async () => {
      const response = await fetch(`${debug}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      return response.text();
    };
    await expect
      .poll(async () => samples(await scrape(), 'registry_http_requests_total'))
      .toEqual([
        'registry_http_requests_total{code="200",handler="base",method="get"} 2',
        'registry_http_requests_total{code="200",handler="blob",method="head"} 1',
        'registry_http_requests_total{code="201",handler="blob_upload",method="post"} 1',
        'registry_http_requests_total{code="404",handler="manifest",method="get"} 1',
        'registry_http_requests_total{code="404",handler="unknown",method="get"} 1',
      ]);
    const text = await scrape();
    expect(samples(text, 'registry_http_request_size_bytes_sum')).toContain(
      'registry_http_request_size_bytes_sum{handler="blob_upload"} 5000',
    );
    expect(samples(text, 'registry_http_request_duration_seconds_count')).toContain(
      'registry_http_request_duration_seconds_count{handler="base",method="get"} 2',
    );
    expect(samples(text, 'registry_blob_upload_bytes_sum')).toEqual(['registry_blob_upload_bytes_sum 5000']);
    expect(samples(text, 'registry_blob_upload_bytes_count')).toEqual(['registry_blob_upload_bytes_count 1']);
    expect(samples(text, 'process_resident_memory_bytes')).toHaveLength(1);
    // The debug listener's own requests are not the registry's.
    expect(text).not.toContain('handler="debug');
    expect(server.logs).toContain('"msg":"debug listening"');
  });

  it('answers GET /debug/health 200 {} while storage answers, and 404 to anything else', async () => {
    const { debug } = await start({ REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED: 'false' });
    const health = await fetch(`${debug}/debug/health`);
    expect(health.status).toBe(200);
    expect(health.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await health.text()).toBe('{}');
    expect((await fetch(`${debug}/debug/health`, { method: 'POST' })).status).toBe(404);
    // Without prometheus.enabled there are no metrics.
    expect((await fetch(`${debug}/metrics`)).status).toBe(404);
    expect((await fetch(`${debug}/v2/`)).status).toBe(404);
  });

  it('answers 503 naming storagedriver_filesystem when storage cannot be reached, on demand and from the monitor', async () => {
    const unreachable = join(dir, 'x'.repeat(300), 'root');
    for (const monitor of ['false', 'true']) {
      const { debug } = await start({
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: unreachable,
        REGISTRY_HEALTH_STORAGEDRIVER_ENABLED: monitor,
        REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL: '20ms',
        REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD: '2',
      });
      await expect.poll(async () => (await fetch(`${debug}/debug/health`)).status).toBe(503);
      const body = (await (await fetch(`${debug}/debug/health`)).json()) as Record<string, string>;
      expect(Object.keys(body)).toEqual(['storagedriver_filesystem']);
      expect(body.storagedriver_filesystem).toMatch(/ENAMETOOLONG/);
    }
  });

  it('opens no second port without http.debug', async () => {
    const plain = await start({}, { debugListener: false });
    const pid = plain.server.child.pid ?? 0;
    expect(listeningPorts(pid)).toEqual([Number(new URL(plain.server.url).port)]);
    expect(plain.server.logs).not.toContain('debug listening');

    const withDebug = await start({});
    expect(listeningPorts(withDebug.server.child.pid ?? 0)).toEqual(
      [Number(new URL(withDebug.server.url).port), Number(new URL(withDebug.debug).port)].sort(
        (a, b) => a - b,
      ),
    );
  });

  it('closes the debug listener on SIGTERM and exits 0', async () => {
    const { server, debug } = await start({ REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED: 'true' });
    expect((await fetch(`${debug}/debug/health`)).status).toBe(200);
    expect(await server.stop('SIGTERM')).toBe(0);
    expect(server.logs).toContain('"msg":"stopped"');
    await expect(fetch(`${debug}/debug/health`)).rejects.toThrow();
  });
});
