/**
 * The upload service on one machine: the standalone server (dist/registry.mjs, what the container image
 * runs) as a child process with uploads.only, on the same bucket and table as the function, as the
 * ServerlessRegistry construct runs it on Fargate behind a load balancer. Its JSON log lines go to this
 * process's stderr with `"component":"upload-service"`, so they can be told from the function's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../lib/project-root.js';
import { freePort } from './free-port.js';

export interface LocalUploadService {
  /** http://127.0.0.1:PORT (https:// with tls): what the function's POST answers point at. */
  readonly url: string;
  stop(): Promise<void>;
}

export interface UploadServiceOptions {
  /** The container's variables: storage, metadata, REGISTRY_HTTP_SECRET, AWS endpoints and credentials. */
  readonly environment: Readonly<Record<string, string>>;
  /** Serve HTTPS with this certificate and key (PEM files), as the load balancer does. */
  readonly tls?: { readonly certificate: string; readonly key: string };
}

/** The log field that marks the upload service's lines. */
export const UPLOAD_SERVICE_COMPONENT = 'upload-service';

export async function startUploadService(options: UploadServiceOptions): Promise<LocalUploadService> {
  const entry = join(PROJECT_ROOT, 'dist', 'registry.mjs');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: build the server first (npm run build)`);
  const port = await freePort();
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('REGISTRY_')),
  );
  const child = spawn(process.execPath, ['--enable-source-maps', entry], {
    env: {
      ...inherited,
      ...options.environment,
      REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
      REGISTRY_UPLOADS_ONLY: 'true',
      REGISTRY_LOG_FIELDS_COMPONENT: UPLOAD_SERVICE_COMPONENT,
      ...(options.tls && {
        REGISTRY_HTTP_TLS_CERTIFICATE: options.tls.certificate,
        REGISTRY_HTTP_TLS_KEY: options.tls.key,
      }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await listening(child);
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Passes the child's output on, and resolves once it logs that it listens (or rejects with its output). */
function listening(child: ChildProcess): Promise<void> {
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the upload service did not start listening:\n${output}`));
    }, 15_000);
    const take = (chunk: Buffer) => {
      process.stderr.write(chunk);
      if (output.length < 64 * 1024) output += chunk.toString();
      if (output.includes('"msg":"registry listening"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the upload service exited (${String(code)}):\n${output}`));
    });
  });
}
