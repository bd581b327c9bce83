// Starts the registry under test on a free 127.0.0.1 port with filesystem storage in a temp dir and deletes
// enabled, behind a recording proxy (see proxy.ts). E2E_REGISTRY selects it:
//   (unset) or "ours"  -> node dist/registry.mjs  (build it first: npm run build)
//   "distribution"     -> docker-registry serve config.yml  (CNCF distribution 2.8, Debian docker-registry)
// RegistryUnderTest.start('local-aws') (not selectable with E2E_REGISTRY) starts the AWS deployment's shape
// instead: node dist/local-aws.mjs (API Gateway front -> Lambda handler -> S3 + DynamoDB Local), built first
// with the esbuild command of `npm run local:aws`.
// StartOptions.tls serves HTTPS ("ours" and local-aws; the proxy then serves HTTPS with the same
// certificate). Authentication: for "ours", StartOptions.config adds configuration sections (auth,
// access) through a config.yml; local-aws takes StartOptions.auth as `npm run local:aws` takes it, by its
// command-line flags (--auth, --htpasswd, --access, ...), and so StartOptions.immutability and .gc
// (--immutability, --gc-every, --retention, ...). StartOptions.env gives local-aws the functions' other
// REGISTRY_* variables, and StartOptions.sharedWith starts a second local-aws over the first's S3 and
// DynamoDB: the same registry with the function's environment changed, as an operator changes it on AWS.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import { stringify } from 'yaml';
import {
  descendantProcesses,
  GaveUp,
  makeTempDir,
  processAlive,
  removeTempDir,
  requireBinary,
  startDaemon,
  tailText,
  waitFor,
  type Daemon,
  type ProcessInfo,
} from './exec.js';
import { startAzurite } from '../../support/azurite.js';
import { freePort } from '../../support/registry-process.js';
import type { AuthMode } from './auth.js';
import { httpRequestOnce } from './http.js';
import { formatExchange, startRecordingProxy, type Exchange, type RecordingProxy } from './proxy.js';

export type RegistryKind = 'ours' | 'distribution' | 'local-aws';

export interface StartOptions {
  /** local-aws only: the S3 it starts (LOCAL_AWS_S3). Default 'rgw', the one that verifies presigned URLs. */
  s3?: 'rgw' | 'fauxqs';
  /** local-aws only: how long to wait for it to listen. Default 120 s (Ceph and DynamoDB Local start). */
  startTimeoutMs?: number;
  /** ours and local-aws: serve HTTPS only, with this certificate (PEM files), verified against `ca`. */
  tls?: RegistryTls;
  /**
   * ours only: configuration sections (auth, access, ...) written to the config.yml the server starts with;
   * the REGISTRY_* settings (address, storage, deletes, log level) still apply over it.
   */
  config?: Record<string, unknown>;
  /** local-aws only: authentication, given by the command-line flags of `npm run local:aws`. */
  auth?: LocalAwsAuth;
  /** local-aws only: --immutability, the immutability section (written to a JSON file). */
  immutability?: readonly Record<string, unknown>[];
  /** local-aws only: the garbage collection function (--gc-every and its settings). */
  gc?: LocalAwsGc;
  /**
   * local-aws only: no S3 or DynamoDB of its own, but those of this running local-aws (started with
   * s3 'fauxqs', which takes the credentials DynamoDB Local keys its data by): the same bucket and
   * table served by a function of its own, with `env`. Stop it before that one.
   */
  sharedWith?: RegistryUnderTest;
  /** local-aws only: --edge, the upload edge (CloudFront and its functions) in front. */
  edge?: boolean;
  /** local-aws only: --upload-service, the upload service beside the function. */
  uploadService?: boolean;
  /**
   * local-aws only: --webhook, once per URL: the construct's webhooks (EventBridge rules with API
   * destinations), which get the events the function sends to the local EventBridge.
   */
  webhooks?: readonly string[];
  /**
   * ours: more environment variables for the server (credentials for EventBridge, say). local-aws: the
   * functions' REGISTRY_* variables that no flag sets, as an operator sets them on the function on AWS
   * (REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED, say); the harness passes none of its own.
   */
  env?: Record<string, string>;
  /**
   * ours only: 'azurite' stores in Azure Blob Storage, on an Azurite started (and stopped) with the
   * registry, instead of the filesystem; blob GETs then redirect to Azurite with a read-only SAS.
   */
  storage?: 'azurite';
}

/** Garbage collection for local-aws, as its command line takes it (see bin/local/local-aws-args.ts). */
export interface LocalAwsGc {
  /** --gc-every: how often the schedule starts a run (e.g. 1h; runs are also started by Invoke). */
  every: string;
  /** --gc-timeout */
  timeout?: string;
  /** --gc-grace */
  grace?: string;
  /** --gc-delete-untagged */
  deleteUntagged?: boolean;
  /** --gc-dry-run */
  dryRun?: boolean;
  /** --retention: the retention section (written to a JSON file). */
  retention?: readonly Record<string, unknown>[];
}

/** Authentication for local-aws, as its command line takes it (see bin/local/local-aws-args.ts). */
export interface LocalAwsAuth {
  /** --auth */
  type: AuthMode;
  /** --htpasswd: an htpasswd file of bcrypt entries (e.g. made by `htpasswd -B`, see writeHtpasswd). */
  htpasswd: string;
  /** --access: the access section (groups and rules), written to a JSON file. */
  access?: Record<string, unknown>;
  /** --anonymous-pull, once per pattern. */
  anonymousPull?: readonly string[];
}

export interface RegistryTls {
  certificate: string;
  key: string;
  /** The CA that signed the certificate: what the harness trusts when it talks to the registry. */
  ca: string;
}

/** The line dist/local-aws.mjs logs once it serves. */
export const LOCAL_AWS_LISTENING = '"msg":"local AWS registry listening"';

/**
 * The credentials local-aws is started with: what the function signs with and its local services
 * (DynamoDB Local, Lambda, Secrets Manager) accept. local-aws's own default, given explicitly.
 */
export const LOCAL_AWS_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' } as const;

/** The S3 each local-aws started here uses. */
const localAwsS3 = new WeakMap<RegistryUnderTest, 'rgw' | 'fauxqs'>();

export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export function registryKind(): RegistryKind {
  const value = (process.env.E2E_REGISTRY ?? 'ours').trim();
  if (value === '' || value === 'ours') return 'ours';
  if (value === 'distribution') return 'distribution';
  throw new Error(`e2e: E2E_REGISTRY must be "ours" (default) or "distribution", not "${value}"`);
}

export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface ManifestResponse {
  status: number;
  contentType: string;
  /** The Docker-Content-Digest header ('' when absent). */
  headerDigest: string;
  body: Buffer;
  /** sha256 of the body bytes. */
  bodyDigest: string;
}

export class RegistryUnderTest {
  private constructor(
    readonly kind: RegistryKind,
    /** Temp dir holding the config, the storage root and the logs. */
    readonly dir: string,
    readonly dataDir: string,
    private readonly daemon: Daemon,
    private readonly proxy: RecordingProxy,
    readonly directPort: number,
    /** local-aws: the processes it had started when it was ready (Ceph daemons, java); otherwise empty. */
    readonly childProcesses: readonly ProcessInfo[] = [],
    /** The PEM of the CA that signed its certificate when it serves HTTPS. */
    readonly caPem?: string,
    /** What else the registry runs on (Azurite), stopped after it. */
    private readonly services: { stop(): Promise<void> }[] = [],
  ) {}

  /** local-aws: the child processes still running after stop() (and then killed); otherwise empty. */
  leftoverProcesses: ProcessInfo[] = [];

  /** The registry's combined stdout and stderr. */
  get logFile(): string {
    return this.daemon.logFile;
  }

  /** host:port the clients use (the recording proxy in front of the registry). */
  get host(): string {
    return `127.0.0.1:${this.proxy.port}`;
  }

  get url(): string {
    return `${this.caPem === undefined ? 'http' : 'https'}://${this.host}`;
  }

  /** The registry's own address, without the proxy: `https://` when it serves TLS. */
  get directUrl(): string {
    return `${this.caPem === undefined ? 'http' : 'https'}://127.0.0.1:${this.directPort}`;
  }

  /** TLS handshakes the proxy saw fail (clients that do not trust the certificate abort them). */
  get handshakeFailures(): readonly string[] {
    return this.proxy.handshakeFailures;
  }

  get exchanges(): readonly Exchange[] {
    return this.proxy.exchanges;
  }

  /** A position in the exchange log, for `since`. */
  mark(): number {
    return this.proxy.exchanges.length;
  }

  since(mark: number): Exchange[] {
    return this.proxy.exchanges.slice(mark);
  }

  static async start(
    kind: RegistryKind = registryKind(),
    options: StartOptions = {},
  ): Promise<RegistryUnderTest> {
    if (kind === 'local-aws') return RegistryUnderTest.startLocalAws(options);
    if (
      kind !== 'ours' &&
      (options.tls !== undefined ||
        options.config !== undefined ||
        options.env !== undefined ||
        options.storage !== undefined)
    ) {
      throw new Error(
        `e2e: StartOptions.tls and .config are only for the registry of this project, not ${kind}`,
      );
    }
    if (options.auth !== undefined) {
      throw new Error(`e2e: StartOptions.auth is for local-aws; ${kind} takes config.auth (ours) or none`);
    }
    if (options.immutability !== undefined || options.gc !== undefined || options.sharedWith !== undefined) {
      throw new Error(
        `e2e: StartOptions.immutability, .gc and .sharedWith are for local-aws; ${kind} takes config sections (ours)`,
      );
    }
    const dir = await makeTempDir(`registry-${kind}`);
    const dataDir = join(dir, 'data');
    const services: { stop(): Promise<void> }[] = [];
    const port = await freePort();
    const addr = `127.0.0.1:${port}`;
    const logFile = join(dir, 'registry.log');
    let daemon: Daemon;
    if (kind === 'ours') {
      const entry = join(REPO_ROOT, 'dist', 'registry.mjs');
      if (!existsSync(entry)) {
        await removeTempDir(dir);
        throw new Error(
          `e2e: ${entry} does not exist: build the server first (npm run build), ` +
            'or run the suite against CNCF distribution with E2E_REGISTRY=distribution',
        );
      }
      const args = ['--enable-source-maps', entry];
      const { tls } = options;
      let { config } = options;
      if (options.storage === 'azurite') {
        const azurite = await startAzurite();
        services.push(azurite);
        await azurite.createContainer('registry');
        const storage = { azure: { connectionstring: azurite.connectionString, container: 'registry' } };
        config = { ...config, storage };
      }
      if (tls !== undefined || config !== undefined) {
        const configFile = join(dir, 'config.yml');
        const http = { ...(config?.http as object | undefined) };
        if (tls !== undefined) Object.assign(http, { tls: { certificate: tls.certificate, key: tls.key } });
        const sections = { version: '0.1', ...config, ...(Object.keys(http).length > 0 ? { http } : {}) };
        await writeFile(configFile, stringify(sections));
        args.push(configFile);
      }
      daemon = startDaemon('registry', process.execPath, args, logFile, {
        ...process.env,
        REGISTRY_HTTP_ADDR: addr,
        ...(options.storage === undefined && { REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: dataDir }),
        REGISTRY_STORAGE_DELETE_ENABLED: 'true',
        REGISTRY_LOG_LEVEL: process.env.E2E_REGISTRY_LOG_LEVEL ?? 'info',
        ...options.env,
      });
    } else {
      const bin = requireBinary('docker-registry', 'docker-registry');
      const config = join(dir, 'config.yml');
      await writeFile(
        config,
        [
          'version: 0.1',
          'log:',
          `  level: ${process.env.E2E_REGISTRY_LOG_LEVEL ?? 'info'}`,
          '  accesslog:',
          '    disabled: false',
          'storage:',
          '  filesystem:',
          `    rootdirectory: ${dataDir}`,
          '  delete:',
          '    enabled: true',
          '  maintenance:',
          '    uploadpurging:',
          '      enabled: false',
          'http:',
          `  addr: ${addr}`,
          '  secret: e2e-not-a-secret',
          '',
        ].join('\n'),
      );
      daemon = startDaemon('docker-registry', bin, ['serve', config], logFile);
    }
    const caPem = options.tls === undefined ? undefined : await readFile(options.tls.ca, 'utf8');
    // With authentication, the version check answers 401 with a challenge.
    const ready = options.config?.auth === undefined ? [200] : [401];
    try {
      await waitFor(
        `the ${kind} registry to answer GET /v2/ with ${ready.join(' or ')} on ${addr}`,
        async () => {
          if (daemon.exited()) throw new GaveUp('it exited');
          const res = await httpRequestOnce(`${caPem === undefined ? 'http' : 'https'}://${addr}/v2/`, {
            timeoutMs: 2_000,
            ...(caPem === undefined ? {} : { ca: caPem }),
          });
          return ready.includes(res.status);
        },
        30_000,
        async () => `--- registry log (tail) ---\n${await daemon.tail()}`,
      );
    } catch (err) {
      await daemon.stop();
      for (const service of services) await service.stop();
      await removeTempDir(dir);
      throw err;
    }
    const proxyTls =
      options.tls === undefined || caPem === undefined
        ? undefined
        : {
            cert: await readFile(options.tls.certificate, 'utf8'),
            key: await readFile(options.tls.key, 'utf8'),
            ca: caPem,
          };
    const proxy = await startRecordingProxy(port, join(dir, 'exchanges.log'), '127.0.0.1', proxyTls);
    return new RegistryUnderTest(kind, dir, dataDir, daemon, proxy, port, [], caPem, services);
  }

  private static async startLocalAws(options: StartOptions): Promise<RegistryUnderTest> {
    const kind = 'local-aws';
    const entry = join(REPO_ROOT, 'dist', 'local-aws.mjs');
    if (!existsSync(entry)) {
      throw new Error(
        `e2e: ${entry} does not exist: build it first (npx esbuild bin/local-aws.ts --bundle --platform=node ` +
          '--target=node20 --format=esm --packages=external --sourcemap --outfile=dist/local-aws.mjs)',
      );
    }
    const { auth, tls } = options;
    // Its S3: one it starts, or (with sharedWith) the running one's, with its DynamoDB.
    const s3 =
      options.sharedWith === undefined ? (options.s3 ?? 'rgw') : await sharedServices(options.sharedWith);
    const caPem = tls === undefined ? undefined : await readFile(tls.ca, 'utf8');
    const proxyTls =
      tls === undefined || caPem === undefined
        ? undefined
        : { cert: await readFile(tls.certificate, 'utf8'), key: await readFile(tls.key, 'utf8'), ca: caPem };
    const dir = await makeTempDir(kind);
    const port = await freePort();
    const addr = `127.0.0.1:${port}`;
    const logFile = join(dir, 'registry.log');
    // The flags of `npm run local:aws`: its own parsing and checks apply, as for an operator.
    const args = ['--enable-source-maps', entry];
    if (auth !== undefined) {
      args.push('--auth', auth.type, '--htpasswd', auth.htpasswd);
      if (auth.access !== undefined) {
        const accessFile = join(dir, 'access.json');
        await writeFile(accessFile, JSON.stringify(auth.access));
        args.push('--access', accessFile);
      }
      for (const pattern of auth.anonymousPull ?? []) args.push('--anonymous-pull', pattern);
    }
    if (tls !== undefined) args.push('--tls-certificate', tls.certificate, '--tls-key', tls.key);
    if (options.edge === true) args.push('--edge');
    if (options.uploadService === true) args.push('--upload-service');
    for (const url of options.webhooks ?? []) args.push('--webhook', url);
    if (options.immutability !== undefined) {
      const file = join(dir, 'immutability.json');
      await writeFile(file, JSON.stringify(options.immutability));
      args.push('--immutability', file);
    }
    const { gc } = options;
    if (gc !== undefined) {
      args.push('--gc-every', gc.every);
      if (gc.timeout !== undefined) args.push('--gc-timeout', gc.timeout);
      if (gc.grace !== undefined) args.push('--gc-grace', gc.grace);
      if (gc.deleteUntagged === true) args.push('--gc-delete-untagged');
      if (gc.dryRun === true) args.push('--gc-dry-run');
      if (gc.retention !== undefined) {
        const file = join(dir, 'retention.json');
        await writeFile(file, JSON.stringify(gc.retention));
        args.push('--retention', file);
      }
    }
    const directUrl = `${tls === undefined ? 'http' : 'https'}://${addr}`;
    // Only local services: no endpoints, credentials or settings inherited from the environment.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !/^(AWS_|LOCAL_AWS_|REGISTRY_)/.test(name)),
    );
    const daemon = startDaemon(kind, process.execPath, args, logFile, {
      ...env,
      ...options.env,
      REGISTRY_HTTP_ADDR: addr,
      ...(typeof s3 === 'string' ? { LOCAL_AWS_S3: s3 } : s3),
      AWS_ACCESS_KEY_ID: LOCAL_AWS_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_AWS_CREDENTIALS.secretAccessKey,
      REGISTRY_LOG_LEVEL: process.env.E2E_REGISTRY_LOG_LEVEL ?? 'info',
    });
    let childProcesses: ProcessInfo[] = [];
    let proxy: RecordingProxy;
    try {
      await waitFor(
        `${entry} to log that it listens on ${addr}`,
        async () => {
          if (daemon.exited()) throw new GaveUp('it exited');
          return (await readFile(logFile, 'utf8')).includes(LOCAL_AWS_LISTENING);
        },
        options.startTimeoutMs ?? 120_000,
        async () => `--- ${kind} log (tail) ---\n${await daemon.tail()}`,
      );
      childProcesses = descendantProcesses(daemon.child.pid ?? -1);
      // With authentication, the version check answers 401 with a challenge.
      const ready = auth === undefined ? 200 : 401;
      const res = await httpRequestOnce(`${directUrl}/v2/`, {
        timeoutMs: 10_000,
        ...(caPem === undefined ? {} : { ca: caPem }),
      });
      if (res.status !== ready) {
        throw new Error(`e2e: GET ${directUrl}/v2/ answered ${res.status}, not ${ready}`);
      }
      proxy = await startRecordingProxy(port, join(dir, 'exchanges.log'), '127.0.0.1', proxyTls);
    } catch (err) {
      const started = descendantProcesses(daemon.child.pid ?? -1);
      await daemon.stop();
      await stopProcesses(started);
      await removeTempDir(dir);
      throw err;
    }
    const registry = new RegistryUnderTest(
      kind,
      dir,
      join(dir, 'data'),
      daemon,
      proxy,
      port,
      childProcesses,
      caPem,
    );
    localAwsS3.set(registry, typeof s3 === 'string' ? s3 : 'fauxqs');
    return registry;
  }

  /** The registry's log and the last HTTP exchanges, for failure reports. */
  async diagnostics(lines = 60): Promise<string> {
    const exchanges = this.proxy.exchanges.slice(-lines).map(formatExchange).join('\n');
    return (
      `--- ${this.kind} registry log: ${this.daemon.logFile} (tail) ---\n${tailText(await this.daemon.tail(lines), lines)}\n` +
      `--- last HTTP exchanges seen by the proxy ---\n${exchanges}`
    );
  }

  async stop(): Promise<void> {
    await this.proxy.close();
    await this.daemon.stop();
    for (const service of this.services) await service.stop();
    if (this.childProcesses.length > 0) this.leftoverProcesses = await stopProcesses(this.childProcesses);
    await removeTempDir(this.dir);
  }

  /** The helpers below use the global fetch: plain HTTP and no authentication only. */
  private plainHttp(what: string): void {
    if (this.caPem !== undefined) {
      throw new Error(`e2e: ${what} speaks plain HTTP; this registry serves HTTPS (use harness/auth.ts)`);
    }
  }

  async getManifest(repo: string, ref: string, method: 'GET' | 'HEAD' = 'GET'): Promise<ManifestResponse> {
    this.plainHttp('getManifest');
    const res = await fetch(`${this.url}/v2/${repo}/manifests/${ref}`, {
      method,
      headers: { accept: MANIFEST_ACCEPT },
      signal: AbortSignal.timeout(30_000),
    });
    const body = Buffer.from(await res.arrayBuffer());
    return {
      status: res.status,
      contentType: res.headers.get('content-type') ?? '',
      headerDigest: res.headers.get('docker-content-digest') ?? '',
      body,
      bodyDigest: sha256(body),
    };
  }

  async deleteManifest(repo: string, digest: string): Promise<number> {
    this.plainHttp('deleteManifest');
    const res = await fetch(`${this.url}/v2/${repo}/manifests/${digest}`, {
      method: 'DELETE',
      signal: AbortSignal.timeout(30_000),
    });
    await res.arrayBuffer();
    return res.status;
  }

  /** GETs a blob and hashes it as it streams; with `gunzip`, also the sha256 of its decompressed bytes. */
  async blob(
    repo: string,
    digest: string,
    gunzip = false,
  ): Promise<{ status: number; digest: string; size: number; diffId?: string }> {
    this.plainHttp('blob');
    const res = await fetch(`${this.url}/v2/${repo}/blobs/${digest}`, {
      signal: AbortSignal.timeout(120_000),
    });
    if (res.status !== 200 || res.body === null) {
      await res.arrayBuffer();
      return { status: res.status, digest: '', size: 0 };
    }
    const hash = createHash('sha256');
    const diffHash = createHash('sha256');
    const inflate = gunzip ? createGunzip() : undefined;
    const inflated = new Promise<void>((resolve, reject) => {
      if (inflate === undefined) {
        resolve();
        return;
      }
      inflate.on('data', (chunk: Buffer) => diffHash.update(chunk));
      inflate.on('end', resolve);
      inflate.on('error', reject);
    });
    let size = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      size += chunk.length;
      if (inflate !== undefined && !inflate.write(chunk)) await once(inflate, 'drain');
    }
    inflate?.end();
    await inflated;
    const result = { status: res.status, digest: `sha256:${hash.digest('hex')}`, size };
    return inflate === undefined ? result : { ...result, diffId: `sha256:${diffHash.digest('hex')}` };
  }

  /** Cross-repository mount requests (POST .../blobs/uploads/?mount=D&from=R) seen since `mark`. */
  mountsSince(mark: number, repo: string): { digest: string; from: string; status: number }[] {
    return this.since(mark)
      .filter((e) => e.method === 'POST' && e.url.startsWith(`/v2/${repo}/blobs/uploads/`))
      .flatMap((e) => {
        const query = new URL(e.url, 'http://x').searchParams;
        const digest = query.get('mount');
        return digest === null ? [] : [{ digest, from: query.get('from') ?? '', status: e.status }];
      });
  }

  /** Blob bytes uploaded into `repo` (PATCH/PUT bodies to its upload URLs) since `mark`. */
  uploadedBytesSince(mark: number, repo: string): number {
    return this.since(mark)
      .filter(
        (e) => (e.method === 'PATCH' || e.method === 'PUT') && e.url.startsWith(`/v2/${repo}/blobs/uploads/`),
      )
      .reduce((sum, e) => sum + e.reqBytes, 0);
  }

  /**
   * local-aws: the access log lines of a process in its log (JSON lines with msg "request"): the Lambda
   * handler's (`function`), or the upload service's, which carry component "upload-service".
   */
  async accessLines(
    source: 'function' | 'upload-service',
  ): Promise<{ method: string; path: string; status: number; bytesIn: number }[]> {
    const lines = (await readFile(this.logFile, 'utf8')).split('\n').filter((l) => l.startsWith('{'));
    return lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter(
        (e) => e.msg === 'request' && (e.component === 'upload-service') === (source === 'upload-service'),
      )
      .map((e) => ({
        method: String(e.method),
        path: String(e.path),
        status: Number(e.status),
        bytesIn: Number(e.bytesIn),
      }));
  }

  /** Blob bytes downloaded from `repo` since `mark`. */
  downloadedBlobBytesSince(mark: number, repo: string): number {
    return this.since(mark)
      .filter((e) => e.method === 'GET' && e.url.startsWith(`/v2/${repo}/blobs/sha256:`))
      .reduce((sum, e) => sum + e.resBytes, 0);
  }
}

/**
 * The variables that point a local-aws at the S3 and DynamoDB of a running one (as at services already
 * running, LocalStack's say): its endpoints, region, bucket and table, from its listening line. Its S3
 * must be fauxqs: the Ceph RGW's keys are its own, and the function signs for S3 and DynamoDB alike.
 */
async function sharedServices(registry: RegistryUnderTest): Promise<Record<string, string>> {
  if (registry.kind !== 'local-aws' || localAwsS3.get(registry) !== 'fauxqs') {
    throw new Error("e2e: StartOptions.sharedWith takes a local-aws started with s3 'fauxqs'");
  }
  const line = (await readFile(registry.logFile, 'utf8'))
    .split('\n')
    .find((l) => l.includes(LOCAL_AWS_LISTENING));
  const { s3, dynamodb, region, bucket, table } = JSON.parse(line ?? '{}') as Record<
    string,
    string | undefined
  >;
  if (
    s3 === undefined ||
    dynamodb === undefined ||
    region === undefined ||
    bucket === undefined ||
    table === undefined
  ) {
    throw new Error(`e2e: no endpoints in the listening line of ${registry.logFile}`);
  }
  return {
    LOCAL_AWS_S3: 'aws',
    AWS_ENDPOINT_URL_S3: s3,
    AWS_ENDPOINT_URL_DYNAMODB: dynamodb,
    AWS_REGION: region,
    LOCAL_AWS_BUCKET: bucket,
    LOCAL_AWS_TABLE: table,
  };
}

/**
 * Waits up to graceMs for processes (that a stopped daemon had started) to exit, then SIGKILLs the ones still
 * running; returns those.
 */
async function stopProcesses(processes: readonly ProcessInfo[], graceMs = 10_000): Promise<ProcessInfo[]> {
  const deadline = Date.now() + graceMs;
  while (processes.some(processAlive) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const leftovers = processes.filter(processAlive);
  for (const info of leftovers) {
    try {
      process.kill(info.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  return leftovers;
}
