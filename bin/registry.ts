#!/usr/bin/env node
/**
 * The standalone registry server: `registry [serve] [config.yml]`, configured like distribution's
 * registry:2 (a config file from the argument or REGISTRY_CONFIGURATION_PATH, REGISTRY_* overrides).
 */
import { readFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type SecureContextOptions, type TlsOptions } from 'node:tls';
import { composeRegistry, type Composition, type RuntimeParts } from '../functions/compose.js';
import { ConfigError, loadConfig, type RegistryConfig } from '../functions/config.js';
import { checkHealth, HealthMonitor, healthResponse, healthTargets } from '../functions/health.js';
import { nodeListener } from '../functions/http/node.js';
import { purgeUploads } from '../functions/maintenance/gc.js';
import { BlobStore } from '../functions/registry/blob-store.js';
import { errorFields, jsonLogger, type Logger } from '../functions/log.js';
import { PROMETHEUS_CONTENT_TYPE, PrometheusMetrics } from '../functions/metrics/prometheus.js';

const USAGE = `Usage: registry [serve] [CONFIG.yml]

Runs the registry. Without a configuration file (argument or REGISTRY_CONFIGURATION_PATH) it listens on
127.0.0.1:5000 and stores in ./data. REGISTRY_<SECTION>_<KEY> variables override any setting,
e.g. REGISTRY_HTTP_ADDR=0.0.0.0:5000 or REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/srv/registry.`;

/** The cloud drivers beyond S3, loaded when configured (the Lambda function has none: see RuntimeParts). */
const STORAGE_DRIVERS: RuntimeParts['storageDrivers'] = {
  azure: async (parameters) =>
    (await import('../functions/storage/azure.js')).azureDriverFromParameters(parameters),
  gcs: async (parameters) =>
    (await import('../functions/storage/gcs.js')).gcsDriverFromParameters(parameters),
};

/** How long a shutdown waits for requests in flight when http.draintimeout is not set. */
const DEFAULT_DRAIN_MS = 30_000;
/** How long after the drain timeout the process exits, even if closing the event sinks still hangs. */
const SHUTDOWN_GRACE_MS = 5_000;

async function main(argv: string[]): Promise<void> {
  const args = argv[0] === 'serve' ? argv.slice(1) : argv;
  if (args.includes('--help') || args.includes('-h') || args.length > 1) {
    process.stdout.write(USAGE + '\n');
    process.exitCode = args.length > 1 ? 2 : 0;
    return;
  }

  let config: RegistryConfig;
  let warnings: string[];
  try {
    ({ config, warnings } = await loadConfig({ path: args[0] }));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`registry: configuration error: ${error.message}\n`);
    process.exitCode = 2;
    return;
  }

  const log = jsonLogger(config.log.level, config.log.fields);
  for (const warning of warnings) log.warn(warning);
  const metrics = config.http.debug?.prometheus.enabled ? new PrometheusMetrics() : undefined;
  const composition = await composeRegistry(
    config,
    log,
    {},
    { ...(metrics && { metrics }), storageDrivers: STORAGE_DRIVERS },
  );
  if (config.auth && !config.http.tls) {
    log.warn(
      'auth is configured without http.tls: passwords and tokens cross the network in clear text unless a ' +
        'TLS proxy in front terminates HTTPS',
    );
  }
  const listener = nodeListener(composition.handler, {
    log,
    accessLog: !config.log.accessLog.disabled,
    headers: config.http.headers,
    metrics,
  });
  const server = config.http.tls
    ? createHttpsServer(await tlsOptions(config), listener)
    : createHttpServer(listener);
  // Uploads of large layers over slow links take long: never cut a request for its total time.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  // Longer than the idle timeout of a load balancer in front (ALB's default 60 s; the upload service's
  // 300 s), which must close idle connections first or it answers 502 on one this server just closed:
  // https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html
  server.keepAliveTimeout = config.uploads.only ? 310_000 : 65_000;

  const debug = config.http.debug ? await startDebugServer(config, composition, metrics, log) : undefined;
  try {
    await listen(server, 'http.addr', config.http.addr, config.http.net);
  } catch (error) {
    await debug?.close();
    throw error;
  }
  log.info('registry listening', {
    addr: config.http.addr,
    tls: config.http.tls !== undefined,
    storage: config.storage.driver.type,
    ...(config.storage.driver.type === 'filesystem'
      ? { rootDirectory: config.storage.driver.rootDirectory }
      : {}),
  });
  const purger = startUploadPurging(config, composition, log);
  handleShutdown(server, log, config.http.drainTimeoutMs || DEFAULT_DRAIN_MS, async (remainingMs) => {
    clearInterval(purger);
    // Webhook events still queued go out before the process ends, within what is left of the drain time.
    await composition.events.close(remainingMs);
    await debug?.close();
  });
}

/**
 * distribution's upload purger: every storage.maintenance.uploadpurging.interval, expired upload
 * sessions and upload bytes older than its age are removed (logged only with dryrun). Off in
 * read-only mode, as in distribution. The first run is one interval after start.
 */
function startUploadPurging(
  config: RegistryConfig,
  composition: Composition,
  log: Logger,
): NodeJS.Timeout | undefined {
  const purging = config.storage.maintenance.uploadPurging;
  if (!purging.enabled || config.storage.maintenance.readOnly.enabled) return undefined;
  const parts = { blobs: new BlobStore(composition.storage), metadata: composition.metadata, log };
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    purgeUploads(parts, purging.ageMs, purging.dryRun)
      .catch((error: unknown) => {
        log.error('upload purge failed', errorFields(error));
      })
      .finally(() => {
        running = false;
      });
  }, purging.intervalMs);
  timer.unref();
  return timer;
}

/** How long an on-demand health check's answer is reused: scrapes and probes need not hit storage each time. */
const HEALTH_CACHE_MS = 1000;

/**
 * The debug listener (http.debug.addr), for operators only: GET /debug/health as distribution
 * answers it, and with http.debug.prometheus.enabled the metrics at its path. Anything else is 404.
 */
async function startDebugServer(
  config: RegistryConfig,
  composition: Composition,
  metrics: PrometheusMetrics | undefined,
  log: Logger,
): Promise<{ close(): Promise<void> }> {
  const debug = config.http.debug;
  if (!debug) throw new Error('unreachable: no http.debug');
  const targets = healthTargets(config, composition);
  const { storageDriver } = config.health;
  const monitor = storageDriver.enabled
    ? new HealthMonitor(() => checkHealth(targets), storageDriver, log)
    : undefined;
  let cached: { at: number; failing: Promise<Record<string, string>> } | undefined;
  const health = (): Promise<Record<string, string>> => {
    if (monitor) return Promise.resolve(monitor.status());
    if (cached === undefined || performance.now() - cached.at > HEALTH_CACHE_MS) {
      cached = { at: performance.now(), failing: checkHealth(targets) };
    }
    return cached.failing;
  };

  const answer = async (req: IncomingMessage): Promise<Response> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/debug/health') return healthResponse(await health());
    if (req.method === 'GET' && metrics && path === debug.prometheus.path) {
      return new Response(metrics.render(), { headers: { 'Content-Type': PROMETHEUS_CONTENT_TYPE } });
    }
    return new Response('404 page not found\n', {
      status: 404,
      headers: { 'Content-Type': 'text/plain; charset=utf-8' },
    });
  };
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    answer(req)
      .then(async (response) => {
        const body = Buffer.from(await response.arrayBuffer());
        res.writeHead(response.status, {
          ...Object.fromEntries(response.headers),
          'content-length': String(body.byteLength),
        });
        res.end(body);
      })
      .catch((error: unknown) => {
        log.error('debug request failed', errorFields(error));
        res.destroy();
      });
  });
  await listen(server, 'http.debug.addr', debug.addr, 'tcp');
  const { address, port } = server.address() as AddressInfo;
  log.info('debug listening', {
    addr: `${address.includes(':') ? `[${address}]` : address}:${port}`,
    health: '/debug/health',
    ...(metrics && { prometheus: debug.prometheus.path }),
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        monitor?.stop();
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

/**
 * The HTTPS server's options from http.tls, checked now so that an unreadable file, a key that is
 * not the certificate's, or a bad client CA stops the start with a message naming the key.
 */
async function tlsOptions(config: RegistryConfig): Promise<SecureContextOptions & TlsOptions> {
  const tls = config.http.tls;
  if (!tls) throw new Error('unreachable: no TLS configuration');
  const read = async (key: string, path: string) => {
    try {
      return await readFile(path);
    } catch (error) {
      throw new ConfigError(`${key}: cannot read ${path}: ${(error as Error).message}`);
    }
  };
  const cert = await read('http.tls.certificate', tls.certificate);
  const key = await read('http.tls.key', tls.key);
  const ca = await Promise.all(tls.clientCas.map((path) => read('http.tls.clientcas', path)));
  const options = {
    cert,
    key,
    minVersion: MIN_VERSION[tls.minimumTls],
    // With client CAs, every client must present a certificate one of them signed (mutual TLS).
    ...(ca.length > 0 ? { ca, requestCert: true, rejectUnauthorized: true } : {}),
  };
  try {
    createSecureContext(options);
  } catch (error) {
    const reason = (error as Error).message;
    const hint = /key values mismatch/i.test(reason)
      ? 'http.tls.key is not the private key of http.tls.certificate'
      : 'http.tls.certificate, key or clientcas is not valid PEM';
    throw new ConfigError(`${hint} (${reason})`);
  }
  return options;
}

const MIN_VERSION = {
  'tls1.0': 'TLSv1',
  'tls1.1': 'TLSv1.1',
  'tls1.2': 'TLSv1.2',
  'tls1.3': 'TLSv1.3',
} as const;

/** Listens on addr (the setting named key), a socket path when net is unix. */
function listen(server: Server, key: string, addr: string, net: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(new ConfigError(`${key}: cannot listen on ${addr}: ${error.code ?? error.message}`));
    });
    if (net === 'unix') {
      server.listen(addr, resolve);
      return;
    }
    const { host, port } = parseAddress(key, addr);
    server.listen(port, host, resolve);
  });
}

/** "host:port", ":port" (every interface) or "[v6]:port", as Go's net.Listen takes them. */
function parseAddress(key: string, addr: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  const port = Number(match?.[3]);
  if (!match || port > 65535)
    throw new ConfigError(`${key}: expected host:port, got ${JSON.stringify(addr)}`);
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

/**
 * On SIGTERM or SIGINT: stop accepting, let requests in flight finish for up to drainMs, then run
 * afterClose with what is left of drainMs (at once when the drain times out), then exit.
 */
function handleShutdown(
  server: Server,
  log: Logger,
  drainMs: number,
  afterClose: (remainingMs: number) => Promise<void>,
): void {
  const stop = (signal: string) => {
    const deadline = performance.now() + drainMs;
    log.info('shutting down', { signal, drainMs });
    server.close(() => {
      afterClose(Math.max(0, deadline - performance.now()))
        .catch((error: unknown) => {
          log.error('shutdown failed', errorFields(error));
        })
        .finally(() => {
          log.info('stopped');
          process.exit(0);
        });
    });
    // Keep-alive connections become idle as their requests finish: close each as soon as it does.
    server.closeIdleConnections();
    setInterval(() => {
      server.closeIdleConnections();
    }, 100).unref();
    setTimeout(() => {
      log.warn('drain timeout: closing connections still open');
      server.closeAllConnections();
    }, drainMs).unref();
    // Should anything still hang after the drain, the process ends regardless.
    setTimeout(() => {
      log.warn('shutdown timeout: exiting');
      process.exit(0);
    }, drainMs + SHUTDOWN_GRACE_MS).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`registry: configuration error: ${error.message}\n`);
    process.exitCode = 2;
    return;
  }
  process.stderr.write(`registry: ${JSON.stringify(errorFields(error))}\n`);
  process.exitCode = 1;
});
