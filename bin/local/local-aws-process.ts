/**
 * The local AWS registry (`npm run local:aws`) as a child process, for tests: built with the esbuild
 * command of `npm run local:aws`, started with the command-line flags that match the options, on a free
 * port of 127.0.0.1, with fresh credentials that the function and the local Secrets Manager share, and
 * every line it writes kept for the test to read. Its own processes (DynamoDB Local's java, fauxqs, Ceph)
 * are stopped with it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { accessSection } from '../../lib/auth-environment.js';
import { PROJECT_ROOT } from '../../lib/project-root.js';
import { LOCAL_AWS_LISTENING_MESSAGE, type LocalAwsAuthOptions, type LocalAwsTls } from './local-aws.js';

/** The bundle `npm run local:aws` builds and runs. */
export const LOCAL_AWS_BUNDLE = join(PROJECT_ROOT, 'dist', 'local-aws.mjs');

export interface LocalAwsProcessOptions {
  /** Authentication, as the construct's auth prop; none: an open registry. */
  readonly auth?: LocalAwsAuthOptions;
  /** Serve HTTPS with this certificate and key (PEM files), as API Gateway does. @default plain HTTP */
  readonly tls?: LocalAwsTls;
  /** The S3 it starts (LOCAL_AWS_S3). @default fauxqs */
  readonly s3?: 'fauxqs' | 'rgw';
  /** Scheduled garbage collection (--gc-every, --gc-timeout: Go durations such as 30s, 10m). @default none */
  readonly gc?: { readonly every: string; readonly timeout?: string };
  /** REGISTRY_LOG_LEVEL. @default info */
  readonly logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** More variables for it (they win over the ones set here). */
  readonly env?: Readonly<Record<string, string>>;
  /** Build dist/local-aws.mjs first (esbuild, about a second). @default true */
  readonly build?: boolean;
  /** How long to wait for it to listen. @default 120 s (DynamoDB Local, and Ceph, take a while) */
  readonly startTimeoutMs?: number;
}

export interface LocalAwsProcess {
  /** http://127.0.0.1:PORT (https:// with tls) */
  readonly url: string;
  /** 127.0.0.1:PORT, as clients name the registry. */
  readonly host: string;
  readonly pid: number;
  /**
   * Its listening line: addr, url, region, s3, dynamodb, bucket, table; with auth also auth, realm (token),
   * secretsManager (the endpoint), htpasswdSecret and signingKeySecret (ARNs); with gc also lambda (the
   * local Lambda's endpoint, for an Invoke of the function signed with credentials), gcFunction (its
   * ARN) and gcEvery.
   */
  readonly description: Readonly<Record<string, string>>;
  /** The credentials the function signs with, and the local Secrets Manager accepts. */
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** Everything it wrote so far, stdout and stderr: the function's JSON log lines among them. */
  logs(): string;
  /** SIGTERM, then SIGKILL after graceMs; resolves with the exit code (null when killed). */
  stop(graceMs?: number): Promise<number | null>;
}

/** Bundles bin/local-aws.ts into dist/local-aws.mjs, as `npm run local:aws` does. */
export async function buildLocalAws(): Promise<string> {
  await build({
    entryPoints: [join(PROJECT_ROOT, 'bin', 'local-aws.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    packages: 'external',
    sourcemap: true,
    logLevel: 'warning',
    outfile: LOCAL_AWS_BUNDLE,
  });
  return LOCAL_AWS_BUNDLE;
}

/** Starts `node dist/local-aws.mjs` with options and waits until it serves. */
export async function startLocalAwsProcess(options: LocalAwsProcessOptions = {}): Promise<LocalAwsProcess> {
  if (options.build ?? true) await buildLocalAws();
  const dir = await mkdtemp(join(tmpdir(), 'local-aws-'));
  const args = options.auth ? await authArgs(options.auth, dir) : [];
  if (options.tls) args.push('--tls-certificate', options.tls.certificate, '--tls-key', options.tls.key);
  if (options.gc) {
    args.push('--gc-every', options.gc.every);
    if (options.gc.timeout !== undefined) args.push('--gc-timeout', options.gc.timeout);
  }
  const credentials = {
    accessKeyId: `AKLOCAL${randomBytes(6).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(20).toString('base64url'),
  };
  // Only local services: no endpoints, credentials or settings inherited from the environment.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(AWS_|LOCAL_AWS_|REGISTRY_)/.test(name)),
  );
  const child = spawn(process.execPath, ['--enable-source-maps', LOCAL_AWS_BUNDLE, ...args], {
    env: {
      ...inherited,
      REGISTRY_HTTP_ADDR: '127.0.0.1:0',
      LOCAL_AWS_S3: options.s3 ?? 'fauxqs',
      REGISTRY_LOG_LEVEL: options.logLevel ?? 'info',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = new Output(child);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      resolve(code);
    });
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const stop = async (graceMs = 20_000): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
    process.removeListener('exit', killOnExit);
    await rm(dir, { recursive: true, force: true });
    return exited;
  };

  let description: Record<string, string>;
  try {
    description = await output.listening(options.startTimeoutMs ?? 120_000, exited);
  } catch (error) {
    await stop(2_000);
    throw error;
  }
  const host = description.addr ?? '';
  return {
    url: description.url ?? `http://${host}`,
    host,
    pid: child.pid ?? -1,
    description,
    credentials,
    logs: () => output.text,
    stop,
  };
}

/** The flags for auth, with its files written into dir. */
async function authArgs(auth: LocalAwsAuthOptions, dir: string): Promise<string[]> {
  const htpasswd = join(dir, 'htpasswd');
  await writeFile(htpasswd, auth.htpasswd, { mode: 0o600 });
  const args = ['--auth', auth.type, '--htpasswd', htpasswd];
  // The anonymous pull rule travels inside the access file, as the construct folds it into REGISTRY_ACCESS.
  const access = accessSection(auth.access, auth.anonymousPull);
  if (access !== undefined) {
    const file = join(dir, 'access.json');
    await writeFile(file, JSON.stringify(access));
    args.push('--access', file);
  }
  if (auth.service !== undefined) args.push('--service', auth.service);
  if (auth.issuer !== undefined) args.push('--issuer', auth.issuer);
  if (auth.tokenExpirationSeconds !== undefined) {
    args.push('--token-expiration', String(auth.tokenExpirationSeconds));
  }
  return args;
}

/** A child's stdout and stderr, kept whole. */
class Output {
  text = '';

  constructor(child: ChildProcess) {
    const keep = (chunk: Buffer) => {
      this.text += chunk.toString('utf8');
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  /** The listening line's fields, once it is written; fails when the child exits or time runs out. */
  async listening(timeoutMs: number, exited: Promise<number | null>): Promise<Record<string, string>> {
    let exitCode: number | null | undefined;
    void exited.then((code) => {
      exitCode = code;
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.text
        .slice(0, this.text.lastIndexOf('\n') + 1)
        .split('\n')
        .find((candidate) => candidate.includes(`"msg":"${LOCAL_AWS_LISTENING_MESSAGE}"`));
      if (line !== undefined) return JSON.parse(line) as Record<string, string>;
      if (exitCode !== undefined) {
        throw new Error(`local-aws exited (${String(exitCode)}) before it listened:\n${this.text}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`local-aws did not listen within ${timeoutMs} ms:\n${this.text}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
