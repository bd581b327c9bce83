/**
 * Benchmarks this registry against CNCF distribution (Debian's docker-registry) in the same run, on
 * the same machine, with filesystem storage in temp dirs. Absolute times on a shared machine are
 * noisy, so read the ratios. Usage: npm run bench [-- --layer-mib 1024 --requests 4000]
 *
 * - large layer: one POST + one streamed PATCH + PUT of a layer (what skopeo, podman and docker
 *   send), then one GET, with the server's peak RSS (VmHWM) sampled from /proc;
 * - small requests: manifest GET by tag and blob HEAD, keep-alive, fixed concurrency.
 *
 * With --webhook, both servers send their notifications (a pull event per request here) to a webhook
 * receiver in this process, which counts them: what events cost each registry.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import {
  Agent,
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/registry-process.js';
import { exchange, layer, peakRssMiB, pushAndPull } from '../support/streaming.js';

const { values: args } = parseArgs({
  options: {
    'layer-mib': { type: 'string', default: '1024' },
    requests: { type: 'string', default: '4000' },
    concurrency: { type: 'string', default: '8' },
    webhook: { type: 'boolean', default: false },
  },
});
const LAYER_MIB = Number(args['layer-mib']);
const REQUESTS = Number(args.requests);
const CONCURRENCY = Number(args.concurrency);
// npm run bench bundles this file into dist/, beside the server it starts.
const SERVER_ENTRY = fileURLToPath(new URL('./registry.mjs', import.meta.url));

interface Server {
  name: string;
  url: string;
  process: ChildProcess;
}

/** The webhook receiver of --webhook: counts the events it is sent. */
const webhook = args.webhook ? await startReceiver() : undefined;

async function startReceiver(): Promise<{ url: string; events: number; server: HttpServer }> {
  const receiver = { url: '', events: 0, server: createServer() };
  receiver.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      receiver.events += (JSON.parse(body) as { events: unknown[] }).events.length;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}/`;
  return receiver;
}

async function startOurs(dir: string): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, [SERVER_ENTRY], {
    env: {
      PATH: process.env.PATH,
      REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'ours'),
      REGISTRY_LOG_LEVEL: 'warn',
      REGISTRY_LOG_ACCESSLOG_DISABLED: 'true',
      ...(webhook && {
        REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME: 'bench',
        REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL: webhook.url,
      }),
    },
    stdio: 'inherit',
  });
  return ready({ name: 'this registry', url: `http://127.0.0.1:${port}`, process: child });
}

async function startDistribution(dir: string): Promise<Server> {
  const port = await freePort();
  const config = join(dir, 'distribution.yml');
  await writeFile(
    config,
    `version: 0.1
log: { level: warn, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: ${join(dir, 'distribution')} }, delete: { enabled: true } }
http: { addr: 127.0.0.1:${port}, secret: bench }
${webhook ? `notifications: { endpoints: [{ name: bench, url: '${webhook.url}', timeout: 1s }] }\n` : ''}`,
  );
  const child = spawn('docker-registry', ['serve', config], { stdio: 'inherit' });
  child.on('error', () => {
    console.error('docker-registry is not installed: apt-get install docker-registry');
    process.exit(1);
  });
  return ready({ name: 'distribution', url: `http://127.0.0.1:${port}`, process: child });
}

async function ready(server: Server): Promise<Server> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${server.url}/v2/`)).ok) return server;
    } catch {
      // not yet listening
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${server.name} did not start`);
}

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });

async function largeLayer(server: Server, data: ReturnType<typeof layer>) {
  const times = await pushAndPull(server.url, 'bench/large', data, agent);
  return { ...times, peakRssMiB: peakRssMiB(server.process.pid ?? 0) };
}

async function smallRequests(server: Server) {
  // A one-layer image to ask about.
  const blob = randomBytes(1024);
  const blobDigest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
  const config = Buffer.from('{}');
  const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
  for (const [bytes, digest] of [
    [blob, blobDigest],
    [config, configDigest],
  ] as const) {
    // POST then PUT with the body: distribution 2.8 has no monolithic POST.
    const post = await exchange(`${server.url}/v2/bench/small/blobs/uploads/`, 'POST', agent);
    const location = new URL(post.location, server.url);
    location.searchParams.set('digest', digest);
    const res = await exchange(location.href, 'PUT', agent, () => [bytes]);
    if (res.status !== 201) throw new Error(`${server.name}: blob push answered ${res.status}`);
  }
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: configDigest,
      size: config.length,
    },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: blobDigest, size: blob.length }],
  });
  const put = await fetch(`${server.url}/v2/bench/small/manifests/latest`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    body: manifest,
  });
  if (put.status !== 201) throw new Error(`${server.name}: manifest push answered ${put.status}`);

  const rate = async (path: string, method: string) => {
    let left = REQUESTS;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (left-- > 0) {
          const res = await exchange(`${server.url}${path}`, method, agent);
          if (res.status !== 200) throw new Error(`${server.name}: ${method} ${path} answered ${res.status}`);
        }
      }),
    );
    return REQUESTS / ((performance.now() - start) / 1000);
  };
  return {
    manifestGetPerSecond: await rate('/v2/bench/small/manifests/latest', 'GET'),
    blobHeadPerSecond: await rate(`/v2/bench/small/blobs/${blobDigest}`, 'HEAD'),
  };
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'registry-bench-'));
  const data = layer(LAYER_MIB);
  const results: Record<string, Record<string, number>> = {};
  try {
    // One server at a time, so neither competes with the other for the two cores.
    for (const start of [startOurs, startDistribution]) {
      const server = await start(dir);
      try {
        const before = webhook?.events ?? 0;
        const small = await smallRequests(server);
        const large = await largeLayer(server, data);
        results[server.name] = { ...large, ...small };
        if (webhook) {
          // What reached the receiver while this server ran (its queue may still be sending).
          await new Promise((resolve) => setTimeout(resolve, 2000));
          results[server.name] = { ...results[server.name], eventsReceived: webhook.events - before };
        }
      } finally {
        server.process.kill('SIGTERM');
        await new Promise((resolve) => server.process.once('exit', resolve));
      }
    }
  } finally {
    agent.destroy();
    webhook?.server.close();
    await rm(dir, { recursive: true, force: true });
  }

  const ours = results['this registry'] ?? {};
  const theirs = results.distribution ?? {};
  const rows = Object.keys(ours).map((metric) => {
    const a = ours[metric] ?? NaN;
    const b = theirs[metric] ?? NaN;
    // Ratios read "how many times better than distribution": rates divide ours by theirs, times and memory the reverse.
    const better = metric.endsWith('PerSecond') || metric === 'eventsReceived' ? a / b : b / a;
    return `| ${metric} | ${a.toFixed(2)} | ${b.toFixed(2)} | ${better.toFixed(2)} |`;
  });
  console.log(
    `\nlayer ${LAYER_MIB} MiB, ${REQUESTS} small requests at concurrency ${CONCURRENCY}, node ${process.version}` +
      (webhook ? ', notifications to a webhook' : ''),
  );
  console.log('| metric | this registry | distribution | ratio (>1: this registry better) |');
  console.log('|---|---|---|---|');
  console.log(rows.join('\n'));
}

await main();
