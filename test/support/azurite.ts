/**
 * Azurite (npm, a devDependency), the local Azure Blob Storage emulator, started as a child process for
 * tests and stopped after them (see TESTING.md): `startAzurite()` runs its blob service on a free port of
 * 127.0.0.1, in memory (or in a directory), with telemetry off (Azurite reports to Application Insights
 * unless told not to), and waits until it listens. It checks shared keys and SAS signatures and expiry.
 *
 * Uses nothing but Node and the azurite package, so that any harness can start it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { freePort } from '../../bin/local/free-port.js';

/** Azurite's well-known development account (its README, "Default Storage Account"). */
export const AZURITE_ACCOUNT_NAME = 'devstoreaccount1';
export const AZURITE_ACCOUNT_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
/** The x-ms-version createContainer sends: one that Azurite 3.35 knows. */
const API_VERSION = '2025-11-05';

export interface AzuriteOptions {
  /** The port of the blob service (a free one when left out). */
  port?: number;
  /** A directory to keep the data in; in memory when left out. */
  location?: string;
  /** HTTPS with this certificate and key (PEM files), for example for `oauth`. */
  tls?: { certificate: string; key: string };
  /** Accept bearer tokens ("basic": Azurite checks their issuer, audience and expiry, not their signature); needs tls. */
  oauth?: 'basic';
}

export interface Azurite {
  /** A connection string for the development account, with the blob endpoint only. */
  connectionString: string;
  accountName: string;
  accountKey: string;
  /** http(s)://127.0.0.1:PORT/devstoreaccount1 (path-style: the account is in the path). */
  blobEndpoint: string;
  port: number;
  /** Creates a container (signed with the account key); one that exists already is fine. */
  createContainer(name: string): Promise<void>;
  /** Stops Azurite (SIGTERM, SIGKILL after a grace period) and waits for it to exit. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** The blob service's entry point, from the package's bin (azurite-blob). */
function azuriteBlobMain(): string {
  const require = createRequire(import.meta.url);
  let manifest: string;
  try {
    manifest = require.resolve('azurite/package.json');
  } catch {
    throw new Error('azurite is not installed: run npm ci (it is a devDependency, pinned to 3.35.0)');
  }
  const bin = (JSON.parse(readFileSync(manifest, 'utf8')) as { bin?: Record<string, string> }).bin?.[
    'azurite-blob'
  ];
  if (bin === undefined) throw new Error(`${manifest} has no azurite-blob bin`);
  return join(dirname(manifest), bin);
}

/** Starts Azurite's blob service (see the module comment) and waits until it listens. */
export async function startAzurite(options: AzuriteOptions = {}): Promise<Azurite> {
  const port = options.port ?? (await freePort());
  const args = [
    azuriteBlobMain(),
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    String(port),
    ...(options.location === undefined ? ['--inMemoryPersistence'] : ['--location', options.location]),
    '--silent',
    // Mandatory: otherwise Azurite sends telemetry to Application Insights.
    '--disableTelemetry',
    // @azure/storage-blob 12.32 sends a newer x-ms-version than Azurite 3.35 knows.
    '--skipApiVersionCheck',
    '--loose',
    ...(options.tls === undefined ? [] : ['--cert', options.tls.certificate, '--key', options.tls.key]),
    ...(options.oauth === undefined ? [] : ['--oauth', options.oauth]),
  ];
  if (options.oauth !== undefined && options.tls === undefined) {
    throw new Error('Azurite accepts OAuth only over HTTPS: give tls too');
  }
  // Custom accounts from the environment would replace the development account.
  const env = { ...process.env };
  delete env.AZURITE_ACCOUNTS;
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.add(child);
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-16 * 1024);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      running.delete(child);
      resolve();
    });
    child.once('error', (error) => {
      output += `\n${error.message}`;
      running.delete(child);
      resolve();
    });
  });
  const alive = (): boolean => running.has(child) && child.exitCode === null && child.signalCode === null;
  const stop = async (): Promise<void> => {
    if (!alive()) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };

  const scheme = options.tls === undefined ? 'http' : 'https';
  const ca = options.tls === undefined ? undefined : readFileSync(options.tls.certificate);
  const blobEndpoint = `${scheme}://127.0.0.1:${port}/${AZURITE_ACCOUNT_NAME}`;
  try {
    // Listening is announced on stdout (even with --silent, which only turns off the access log).
    const deadline = Date.now() + 20_000;
    while (!output.includes('successfully listens on')) {
      if (!alive()) throw new Error(`Azurite exited:\n${output}`);
      if (Date.now() > deadline) throw new Error(`Azurite did not start within 20 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    connectionString:
      `DefaultEndpointsProtocol=${scheme};AccountName=${AZURITE_ACCOUNT_NAME};` +
      `AccountKey=${AZURITE_ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`,
    accountName: AZURITE_ACCOUNT_NAME,
    accountKey: AZURITE_ACCOUNT_KEY,
    blobEndpoint,
    port,
    createContainer: (name) => createContainer(blobEndpoint, name, ca),
    stop,
  };
}

/**
 * Create Container, signed with the development account's key (the Shared Key scheme, by hand so that
 * this file needs no SDK); over HTTPS trusting ca, Azurite's certificate.
 */
async function createContainer(blobEndpoint: string, name: string, ca: Buffer | undefined): Promise<void> {
  const url = new URL(`${blobEndpoint}/${name}?restype=container`);
  const date = new Date().toUTCString();
  // Verb, eleven standard headers (all empty here), canonical x-ms-* headers, canonical resource.
  const stringToSign = [
    'PUT',
    ...Array<string>(11).fill(''),
    `x-ms-date:${date}`,
    `x-ms-version:${API_VERSION}`,
    `/${AZURITE_ACCOUNT_NAME}${url.pathname}`,
    'restype:container',
  ].join('\n');
  const signature = createHmac('sha256', Buffer.from(AZURITE_ACCOUNT_KEY, 'base64'))
    .update(stringToSign, 'utf8')
    .digest('base64');
  const headers = {
    'x-ms-date': date,
    'x-ms-version': API_VERSION,
    authorization: `SharedKey ${AZURITE_ACCOUNT_NAME}:${signature}`,
  };
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      { method: 'PUT', headers, ...(ca !== undefined && { ca }) },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => {
          resolve({ status: response.statusCode ?? 0, body: text });
        });
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end();
  });
  if (status !== 201 && status !== 409) {
    throw new Error(`creating the container ${name} on Azurite: HTTP ${status}\n${body}`);
  }
}
