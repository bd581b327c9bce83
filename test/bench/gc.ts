/**
 * Garbage collection, this registry against CNCF distribution (Debian's docker-registry), in the same
 * run, over the same logical content, each on its own fresh filesystem root in a temp dir.
 * Usage: npm run bench:gc [-- --repos 10 --manifests 50 --layer-kib 4 --concurrency 16]
 *
 * Per registry, one at a time (so neither competes with the other for the cores): the server is
 * started (delete enabled) and populated through the HTTP API, R repositories × M image manifests,
 * each with a config blob and 2 layers of its own (random bytes) and one layer shared by every image of
 * its repository, every manifest tagged; then half of the manifests are deleted by digest. Blobs are
 * pushed with a monolithic POST ?digest= and the body; a registry that answers 202 (distribution 2.8
 * has no monolithic POST) gets the body again in a PUT ?digest= to the upload's location.
 *
 * Then: this registry's collector, `node dist/gc.mjs gc --grace 0s --json`, runs against the server's
 * storage while the server keeps serving (a dry run, then two runs: the first removes what the
 * deleted manifests held, the second finds nothing, the steady-state scan); distribution's collector
 * is offline, so its server is stopped and `docker-registry garbage-collect` runs likewise (a dry run,
 * then twice). Each is timed as a whole process, start to exit.
 *
 * What is on disk is walked before and after, and checked: the blobs left must be exactly those the
 * kept images name (manifest, config and layers), in both registries. The results are printed as a
 * markdown table, as npm run bench prints its own. A push answered with 5xx is retried (up to 3 times)
 * and counted in the output.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, lstat, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { GcReport } from '../../functions/maintenance/gc.js';
import { freePort } from '../support/registry-process.js';

const { values: args } = parseArgs({
  options: {
    repos: { type: 'string', default: '10' },
    manifests: { type: 'string', default: '50' },
    'layer-kib': { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '16' },
  },
});
const REPOS = Number(args.repos);
const MANIFESTS = Number(args.manifests);
const LAYER_BYTES = Number(args['layer-kib']) * 1024;
const CONCURRENCY = Number(args.concurrency);
for (const [name, value] of [
  ['--repos', REPOS],
  ['--manifests', MANIFESTS],
  ['--layer-kib', LAYER_BYTES],
  ['--concurrency', CONCURRENCY],
] as const) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} needs a whole number ≥ 1`);
}
// npm run bench:gc bundles this file into dist/, beside the server and the collector it starts.
const SERVER_ENTRY = fileURLToPath(new URL('./registry.mjs', import.meta.url));
const GC_ENTRY = fileURLToPath(new URL('./gc.mjs', import.meta.url));

const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const CONFIG_TYPE = 'application/vnd.oci.image.config.v1+json';
const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar';

const log = (line: string) => process.stderr.write(`${line}\n`);
const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

// The content, made once and pushed to both registries.

interface Blob {
  digest: string;
  bytes: Buffer;
}

interface Image {
  repository: string;
  tag: string;
  /** Its own blobs: the config and two layers. */
  blobs: Blob[];
  manifest: Blob;
  /** Deleted by digest before the collection. */
  deleted: boolean;
}

interface Repository {
  name: string;
  shared: Blob;
  images: Image[];
}

function blob(bytes: Buffer): Blob {
  return { digest: sha256(bytes), bytes };
}

function makeContent(): Repository[] {
  return Array.from({ length: REPOS }, (_, r) => {
    const name = `bench/gc-${String(r).padStart(3, '0')}`;
    const shared = blob(randomBytes(LAYER_BYTES));
    const images = Array.from({ length: MANIFESTS }, (_, m): Image => {
      const layers = [blob(randomBytes(LAYER_BYTES)), blob(randomBytes(LAYER_BYTES))];
      const all = [shared, ...layers];
      const config = blob(
        Buffer.from(
          JSON.stringify({
            architecture: 'amd64',
            os: 'linux',
            config: { Labels: { 'bench.id': randomBytes(16).toString('hex') } },
            rootfs: { type: 'layers', diff_ids: all.map((layer) => layer.digest) },
          }),
        ),
      );
      const manifest = blob(
        Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: MANIFEST_TYPE,
            config: { mediaType: CONFIG_TYPE, digest: config.digest, size: config.bytes.length },
            layers: all.map((layer) => ({
              mediaType: LAYER_TYPE,
              digest: layer.digest,
              size: layer.bytes.length,
            })),
          }),
        ),
      );
      return { repository: name, tag: `v${m}`, blobs: [config, ...layers], manifest, deleted: m % 2 === 1 };
    });
    return { name, shared, images };
  });
}

/** Runs task over items with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await task(items[next++] as T);
    }),
  );
}

// The servers.

interface Registry {
  name: string;
  /** The storage root the walk measures. */
  root: string;
  /** Where blob directories sit below root. */
  blobsDir: string;
  start(): Promise<ChildProcess>;
  /** The collector's command line: [command, args, env]. */
  gc(options: { dryRun: boolean }): [string, string[], NodeJS.ProcessEnv];
  /** Whether the collector runs while the server serves. */
  online: boolean;
  url: string;
}

async function ours(dir: string): Promise<Registry> {
  const port = await freePort();
  const root = join(dir, 'ours');
  const env = {
    PATH: process.env.PATH,
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root,
    REGISTRY_STORAGE_DELETE_ENABLED: 'true',
    REGISTRY_LOG_LEVEL: 'warn',
    REGISTRY_LOG_ACCESSLOG_DISABLED: 'true',
  };
  return {
    name: 'this registry',
    root,
    blobsDir: join(root, 'blobs'),
    url: `http://127.0.0.1:${port}`,
    online: true,
    start: () =>
      Promise.resolve(
        spawn(process.execPath, [SERVER_ENTRY], {
          env: { ...env, REGISTRY_HTTP_ADDR: `127.0.0.1:${port}` },
          stdio: 'inherit',
        }),
      ),
    gc: ({ dryRun }) => [
      process.execPath,
      [GC_ENTRY, 'gc', '--grace', '0s', '--json', ...(dryRun ? ['--dry-run'] : [])],
      env,
    ],
  };
}

async function distribution(dir: string): Promise<Registry> {
  const port = await freePort();
  const root = join(dir, 'distribution');
  const config = join(dir, 'distribution.yml');
  await writeFile(
    config,
    `version: 0.1
log: { level: warn, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: ${root} }, delete: { enabled: true } }
http: { addr: 127.0.0.1:${port}, secret: bench }
`,
  );
  return {
    name: 'distribution',
    root,
    blobsDir: join(root, 'docker', 'registry', 'v2', 'blobs'),
    url: `http://127.0.0.1:${port}`,
    online: false,
    start: () => {
      const child = spawn('docker-registry', ['serve', config], { stdio: 'inherit' });
      child.on('error', () => {
        console.error('docker-registry is not installed: apt-get install docker-registry');
        process.exit(1);
      });
      return Promise.resolve(child);
    },
    gc: ({ dryRun }) => [
      'docker-registry',
      ['garbage-collect', ...(dryRun ? ['--dry-run'] : []), config],
      { PATH: process.env.PATH },
    ],
  };
}

async function ready(registry: Registry, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break;
    try {
      if ((await fetch(`${registry.url}/v2/`)).ok) return;
    } catch {
      // not yet listening
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${registry.name} did not start`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

// Populating.

/** An answer of 5xx: the push is retried (up to 3 times), and counted. */
class ServerError extends Error {}

/** 5xx answers during the populating, per registry: retried, and reported. */
const serverErrors = new Map<string, string[]>();

async function call(url: string, init: RequestInit, expect: number[], what: string): Promise<Response> {
  const res = await fetch(url, init);
  const body = await res.text();
  if (expect.includes(res.status)) return res;
  if (res.status >= 500) throw new ServerError(`${what} answered ${res.status}: ${body.slice(0, 300)}`);
  throw new Error(`${what} answered ${res.status}: ${body.slice(0, 300)}`);
}

async function retried<T>(registry: Registry, action: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await action();
    } catch (error) {
      if (!(error instanceof ServerError) || attempt >= 3) throw error;
      const errors = serverErrors.get(registry.name) ?? [];
      serverErrors.set(registry.name, [...errors, error.message]);
    }
  }
}

async function pushBlob(registry: Registry, repository: string, { digest, bytes }: Blob): Promise<number> {
  const base = registry.url;
  const headers = { 'Content-Type': 'application/octet-stream' };
  return retried(registry, async () => {
    const post = await call(
      `${base}/v2/${repository}/blobs/uploads/?digest=${digest}`,
      { method: 'POST', headers, body: bytes },
      [201, 202],
      `POST of ${digest} to ${repository}`,
    );
    if (post.status === 201) return 1;
    const location = new URL(post.headers.get('location') ?? '', base);
    location.searchParams.set('digest', digest);
    await call(
      location.href,
      { method: 'PUT', headers, body: bytes },
      [201],
      `PUT of ${digest} to ${repository}`,
    );
    return 2;
  });
}

async function populate(registry: Registry, content: Repository[]) {
  const base = registry.url;
  let requests = 0;
  await pool(content, CONCURRENCY, async (repository) => {
    const sent = await pushBlob(registry, repository.name, repository.shared);
    requests += sent;
  });
  const images = content.flatMap((repository) => repository.images);
  await pool(images, CONCURRENCY, async (image) => {
    for (const b of image.blobs) {
      const sent = await pushBlob(registry, image.repository, b);
      requests += sent;
    }
    await retried(registry, () =>
      call(
        `${base}/v2/${image.repository}/manifests/${image.tag}`,
        { method: 'PUT', headers: { 'Content-Type': MANIFEST_TYPE }, body: image.manifest.bytes },
        [201],
        `PUT of ${image.repository}:${image.tag}`,
      ),
    );
    requests++;
  });
  await pool(
    images.filter((image) => image.deleted),
    CONCURRENCY,
    async (image) => {
      await retried(registry, () =>
        call(
          `${base}/v2/${image.repository}/manifests/${image.manifest.digest}`,
          { method: 'DELETE' },
          [202],
          `DELETE of ${image.repository}@${image.manifest.digest}`,
        ),
      );
      requests++;
    },
  );
  return requests;
}

/** After the collection, with the server still up: every kept image is still pulled whole. */
async function checkPulls(registry: Registry, content: Repository[]): Promise<string | undefined> {
  const images = content.flatMap((repository) => repository.images);
  const failures: string[] = [];
  await pool(images, CONCURRENCY, async (image) => {
    const res = await fetch(`${registry.url}/v2/${image.repository}/manifests/${image.tag}`, {
      headers: { Accept: MANIFEST_TYPE },
    });
    await res.arrayBuffer();
    if (res.status !== (image.deleted ? 404 : 200))
      failures.push(`${image.repository}:${image.tag} ${res.status}`);
    if (image.deleted) return;
    for (const b of image.blobs) {
      const head = await fetch(`${registry.url}/v2/${image.repository}/blobs/${b.digest}`, {
        method: 'HEAD',
      });
      await head.arrayBuffer();
      if (head.status !== 200) failures.push(`${image.repository}@${b.digest} ${head.status}`);
    }
  });
  return failures.length === 0
    ? undefined
    : `${failures.length} failed, e.g. ${failures.slice(0, 3).join('; ')}`;
}

// Measuring.

interface DiskUsage {
  files: number;
  /** Apparent sizes of every file under the root. */
  bytes: number;
  /** Blocks allocated to them (st_blocks × 512). */
  allocated: number;
  /** Digests of the blobs stored (a `data` file under blobs/), with their sizes. */
  blobs: Map<string, number>;
}

async function diskUsage(registry: Registry): Promise<DiskUsage> {
  const usage: DiskUsage = { files: 0, bytes: 0, allocated: 0, blobs: new Map() };
  const blobData = /^sha256\/[0-9a-f]{2}\/([0-9a-f]{64})\/data$/;
  const visit = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        await visit(path);
        continue;
      }
      const stats = await lstat(path);
      usage.files++;
      usage.bytes += stats.size;
      usage.allocated += stats.blocks * 512;
      if (path.startsWith(registry.blobsDir + '/')) {
        const match = blobData.exec(path.slice(registry.blobsDir.length + 1));
        if (match) usage.blobs.set(`sha256:${match[1] ?? ''}`, stats.size);
      }
    }
  };
  await visit(registry.root);
  return usage;
}

function blobBytes(usage: DiskUsage): number {
  let sum = 0;
  for (const size of usage.blobs.values()) sum += size;
  return sum;
}

interface GcRun {
  seconds: number;
  output: string;
  /** Blobs the collector says it removed (or would remove). */
  blobsRemoved: number;
  /** This registry's report only. */
  report?: GcReport;
}

async function runGc(registry: Registry, dryRun: boolean): Promise<GcRun> {
  const [command, commandArgs, env] = registry.gc({ dryRun });
  const start = performance.now();
  const child = spawn(command, commandArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  const seconds = (performance.now() - start) / 1000;
  if (code !== 0)
    throw new Error(`${registry.name}: ${command} ${commandArgs.join(' ')} exited ${code}:\n${output}`);
  if (registry.online) {
    const report = JSON.parse(output) as GcReport;
    return { seconds, output, blobsRemoved: report.removed.blobs, report };
  }
  // distribution: "N blobs marked, M blobs and K manifests eligible for deletion"
  const summary = /(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion/.exec(output);
  if (!summary)
    throw new Error(`${registry.name}: no summary line in the collector's output:\n${output.slice(-2000)}`);
  return { seconds, output, blobsRemoved: Number(summary[2]) };
}

interface Result {
  populateSeconds: number;
  requests: number;
  dryRun: GcRun;
  first: GcRun;
  second: GcRun;
  before: DiskUsage;
  after: DiskUsage;
  afterSecond: DiskUsage;
  pulls: string | undefined;
}

async function measure(registry: Registry, content: Repository[]): Promise<Result> {
  const server = await registry.start();
  try {
    await ready(registry, server);
    log(`${registry.name}: populating`);
    const start = performance.now();
    const requests = await populate(registry, content);
    const populateSeconds = (performance.now() - start) / 1000;
    log(`${registry.name}: ${requests} requests in ${populateSeconds.toFixed(1)} s`);
    if (!registry.online) await stop(server);
    const before = await diskUsage(registry);
    log(`${registry.name}: collecting`);
    const dryRun = await runGc(registry, true);
    const first = await runGc(registry, false);
    const after = await diskUsage(registry);
    const second = await runGc(registry, false);
    const afterSecond = await diskUsage(registry);
    const pulls = registry.online ? await checkPulls(registry, content) : undefined;
    return { populateSeconds, requests, dryRun, first, second, before, after, afterSecond, pulls };
  } finally {
    await stop(server);
  }
}

/** What the collection must leave: every blob a kept image names, and its manifest. */
function expectedBlobs(content: Repository[]): { kept: Set<string>; removed: Map<string, number> } {
  const kept = new Set<string>();
  const removed = new Map<string, number>();
  for (const repository of content) {
    kept.add(repository.shared.digest);
    for (const image of repository.images) {
      for (const b of [image.manifest, ...image.blobs]) {
        if (image.deleted) removed.set(b.digest, b.bytes.length);
        else kept.add(b.digest);
      }
    }
  }
  return { kept, removed };
}

function checkBlobsLeft(usage: DiskUsage, kept: Set<string>): string {
  const missing = [...kept].filter((digest) => !usage.blobs.has(digest));
  const extra = [...usage.blobs.keys()].filter((digest) => !kept.has(digest));
  return missing.length === 0 && extra.length === 0
    ? 'pass'
    : `FAIL: ${missing.length} kept blobs missing, ${extra.length} unreferenced blobs left`;
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'registry-bench-gc-'));
  const content = makeContent();
  const expected = expectedBlobs(content);
  const expectedBytes = [...expected.removed.values()].reduce((a, b) => a + b, 0);
  const results = new Map<string, { registry: Registry; result: Result }>();
  try {
    for (const make of [ours, distribution]) {
      const registry = await make(dir);
      results.set(registry.name, { registry, result: await measure(registry, content) });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const a = results.get('this registry')?.result as Result;
  const b = results.get('distribution')?.result as Result;
  const report = a.first.report as GcReport;
  const second = a.second.report as GcReport;
  const dry = a.dryRun.report as GcReport;
  const collectSeconds = (r: GcReport) => (Date.parse(r.finishedAt) - Date.parse(r.startedAt)) / 1000;

  const images = REPOS * MANIFESTS;
  const deleted = content.reduce(
    (n, repository) => n + repository.images.filter((image) => image.deleted).length,
    0,
  );
  const kib = (n: number) => (n / 1024).toFixed(1);
  const time = (label: string, x: number, y: number) =>
    `| ${label} | ${x.toFixed(2)} | ${y.toFixed(2)} | ${(y / x).toFixed(2)} |`;
  const value = (label: string, x: string | number, y: string | number) => `| ${label} | ${x} | ${y} | |`;

  console.log(
    `\n${REPOS} repositories × ${MANIFESTS} manifests (${images} images, ${images * 3 + REPOS} blobs of ` +
      `${LAYER_BYTES / 1024} KiB layers + configs, ${images} manifests), ${deleted} deleted by digest; ` +
      `concurrency ${CONCURRENCY}, node ${process.version}\n`,
  );
  console.log('| metric | this registry | distribution | ratio (>1: this registry faster) |');
  console.log('|---|---|---|---|');
  console.log(
    [
      time(
        `populate (${a.requests} / ${b.requests} requests), seconds`,
        a.populateSeconds,
        b.populateSeconds,
      ),
      time('gc dry run, seconds', a.dryRun.seconds, b.dryRun.seconds),
      time('gc first run (removes), seconds', a.first.seconds, b.first.seconds),
      time('gc second run (nothing to remove), seconds', a.second.seconds, b.second.seconds),
      value(
        'of which the collection itself (report finishedAt − startedAt): dry, first, second',
        `${collectSeconds(dry).toFixed(2)}, ${collectSeconds(report).toFixed(2)}, ${collectSeconds(second).toFixed(2)}`,
        '',
      ),
      value(
        `blobs removed by the first run, by the collector's count (expected ${expected.removed.size})`,
        a.first.blobsRemoved,
        b.first.blobsRemoved,
      ),
      value('blobs the dry run would remove', a.dryRun.blobsRemoved, b.dryRun.blobsRemoved),
      value('blobs removed by the second run', a.second.blobsRemoved, b.second.blobsRemoved),
      value(
        'blobs on disk: before, after first, after second',
        `${a.before.blobs.size}, ${a.after.blobs.size}, ${a.afterSecond.blobs.size}`,
        `${b.before.blobs.size}, ${b.after.blobs.size}, ${b.afterSecond.blobs.size}`,
      ),
      value(
        `blob bytes reclaimed, KiB (walk of blobs/; expected ${kib(expectedBytes)})`,
        kib(blobBytes(a.before) - blobBytes(a.after)),
        kib(blobBytes(b.before) - blobBytes(b.after)),
      ),
      value(
        "blob bytes removed by the first run, KiB, by the collector's count",
        kib(report.removed.blobBytes),
        '(not reported)',
      ),
      value(
        'all files under the root, KiB: before → after (reclaimed)',
        `${kib(a.before.bytes)} → ${kib(a.after.bytes)} (${kib(a.before.bytes - a.after.bytes)})`,
        `${kib(b.before.bytes)} → ${kib(b.after.bytes)} (${kib(b.before.bytes - b.after.bytes)})`,
      ),
      value(
        'allocated blocks under the root, KiB: before → after (reclaimed)',
        `${kib(a.before.allocated)} → ${kib(a.after.allocated)} (${kib(a.before.allocated - a.after.allocated)})`,
        `${kib(b.before.allocated)} → ${kib(b.after.allocated)} (${kib(b.before.allocated - b.after.allocated)})`,
      ),
      value(
        'files under the root: before → after',
        `${a.before.files} → ${a.after.files}`,
        `${b.before.files} → ${b.after.files}`,
      ),
      value(
        'check: blobs left after the first run are exactly those the kept images name',
        checkBlobsLeft(a.after, expected.kept),
        checkBlobsLeft(b.after, expected.kept),
      ),
      value(
        'check: the same after the second run',
        checkBlobsLeft(a.afterSecond, expected.kept),
        checkBlobsLeft(b.afterSecond, expected.kept),
      ),
    ].join('\n'),
  );
  console.log(
    `\nthis registry's report, first run: removed ${JSON.stringify(report.removed)}, kept ${JSON.stringify(report.kept)}` +
      `\nthis registry's report, dry run: removed ${JSON.stringify(dry.removed)}, kept ${JSON.stringify(dry.kept)}` +
      `\nthis registry's report, second run: removed ${JSON.stringify(second.removed)}, kept ${JSON.stringify(second.kept)}` +
      `\nthis registry's report, rescued (put back for a concurrent push): dry ${dry.rescued}, first ${report.rescued}, second ${second.rescued}` +
      `\nthis registry, every kept image pulled after the collection (server up throughout): ${a.pulls ?? 'pass'}`,
  );
  for (const name of results.keys()) {
    const errors = serverErrors.get(name) ?? [];
    console.log(
      `${name}: ${errors.length} answers of 5xx while populating, each retried` +
        (errors.length > 0 ? `; the first: ${errors[0] ?? ''}` : ''),
    );
  }
}

await main();
