#!/usr/bin/env node
/**
 * The standalone registry server: `registry [serve] [config.yml]`, configured like distribution's
 * registry:2 (a config file from the argument or REGISTRY_CONFIGURATION_PATH, REGISTRY_* overrides).
 */
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext, type SecureContextOptions, type TlsOptions } from 'node:tls';
import { composeRegistry } from '../functions/compose.js';
import { ConfigError, loadConfig, type RegistryConfig } from '../functions/config.js';
import { nodeListener } from '../functions/http/node.js';
import { errorFields, jsonLogger, type Logger } from '../functions/log.js';

const USAGE = `Usage: registry [serve] [CONFIG.yml]

Runs the registry. Without a configuration file (argument or REGISTRY_CONFIGURATION_PATH) it listens on
127.0.0.1:5000 and stores in ./data. REGISTRY_<SECTION>_<KEY> variables override any setting,
e.g. REGISTRY_HTTP_ADDR=0.0.0.0:5000 or REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/srv/registry.`;

/** How long a shutdown waits for requests in flight when http.draintimeout is not set. */
const DEFAULT_DRAIN_MS = 30_000;

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
  const { handler } = await composeRegistry(config, log);
  if (config.auth && !config.http.tls) {
    log.warn(
      'auth is configured without http.tls: passwords and tokens cross the network in clear text unless a ' +
        'TLS proxy in front terminates HTTPS',
    );
  }
  const listener = nodeListener(handler, {
    log,
    accessLog: !config.log.accessLog.disabled,
    headers: config.http.headers,
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

  await listen(server, config);
  log.info('registry listening', {
    addr: config.http.addr,
    tls: config.http.tls !== undefined,
    storage: config.storage.driver.type,
    ...(config.storage.driver.type === 'filesystem'
      ? { rootDirectory: config.storage.driver.rootDirectory }
      : {}),
  });
  handleShutdown(server, log, config.http.drainTimeoutMs || DEFAULT_DRAIN_MS);
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

function listen(server: Server, config: RegistryConfig): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        new ConfigError(`http.addr: cannot listen on ${config.http.addr}: ${error.code ?? error.message}`),
      );
    });
    if (config.http.net === 'unix') {
      server.listen(config.http.addr, resolve);
      return;
    }
    const { host, port } = parseAddress(config.http.addr);
    server.listen(port, host, resolve);
  });
}

/** "host:port", ":port" (every interface) or "[v6]:port", as Go's net.Listen takes them. */
function parseAddress(addr: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  const port = Number(match?.[3]);
  if (!match || port > 65535)
    throw new ConfigError(`http.addr: expected host:port, got ${JSON.stringify(addr)}`);
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

/** On SIGTERM or SIGINT: stop accepting, let requests in flight finish for up to drainMs, then exit. */
function handleShutdown(server: Server, log: Logger, drainMs: number): void {
  const stop = (signal: string) => {
    log.info('shutting down', { signal, drainMs });
    server.close(() => {
      log.info('stopped');
      process.exit(0);
    });
    // Keep-alive connections become idle as their requests finish: close each as soon as it does.
    server.closeIdleConnections();
    setInterval(() => {
      server.closeIdleConnections();
    }, 100).unref();
    setTimeout(() => {
      log.warn('drain timeout: closing connections still open');
      server.closeAllConnections();
      process.exit(0);
    }, drainMs).unref();
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
