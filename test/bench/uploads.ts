/**
 * Which real clients can push (and pull back) layers of which sizes to the AWS deployment, with each
 * deployment option, measured on the local AWS emulation (node dist/local-aws.mjs: the local API Gateway
 * front with its limits -> the real Lambda handler -> Ceph RGW as S3 + DynamoDB Local; with --edge the
 * CloudFront emulation and its functions in front; with --upload-service the standalone server beside it).
 *
 * For each option (Lambda only, edge, upload service, edge + upload service) local AWS is started once;
 * then, one after another, for each layer size and each client (ctr, docker with its classic store,
 * podman, skopeo), an image with one random layer of that size is pushed to a fresh repository and pulled
 * back into a fresh store, and the digests are compared. Each push and pull is bounded by a timeout (a
 * client killed by it is recorded as "hang"). Per option, the request body bytes the Lambda handler took
 * are summed from its own access log lines. The results replace docs/large-layers.md.
 *
 * Usage (from the repository root, as root: dockerd, containerd and podman's storage need it):
 *   npm run --silent build && npx esbuild test/bench/uploads.ts --bundle --platform=node --target=node20 \
 *     --format=esm --packages=external --log-level=warning --outfile=dist/test/bench/uploads.mjs \
 *     && node dist/test/bench/uploads.mjs
 * The bundle must sit three folders below the root (dist/test/bench/), as the harness it bundles does
 * (test/e2e/harness/): the harness finds dist/local-aws.mjs relative to its own URL.
 *
 * Settings (environment):
 *   BENCH_UPLOAD_SIZES_MIB=1,16,1024           layer sizes in MiB
 *   BENCH_UPLOAD_OPTIONS=lambda,edge,service,edge+service   which deployment options
 *   BENCH_UPLOAD_CLIENTS=ctr,docker,podman,skopeo           which clients
 *   BENCH_UPLOAD_OUT=docs/large-layers.md      where the results go (relative to the repository root)
 *
 * Only harness modules that work outside vitest are used (exec, images, clients, registry); the checks
 * are made here.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { buildLocalAws } from '../../bin/local/local-aws-process.js';
import { Containerd, DockerDaemon, Podman, Skopeo } from '../e2e/harness/clients.js';
import { CommandError, removeTempDir, type RunResult } from '../e2e/harness/exec.js';
import { verifyLayoutBlobs, writeRandomImage, type ImageInfo } from '../e2e/harness/images.js';
import type { Exchange } from '../e2e/harness/proxy.js';
import { REPO_ROOT, RegistryUnderTest } from '../e2e/harness/registry.js';

const MIB = 1024 * 1024;

// Settings.

interface DeploymentOption {
  key: string;
  label: string;
  edge: boolean;
  uploadService: boolean;
}

const ALL_OPTIONS: DeploymentOption[] = [
  { key: 'lambda', label: 'Lambda only', edge: false, uploadService: false },
  { key: 'edge', label: 'edge', edge: true, uploadService: false },
  { key: 'service', label: 'upload service', edge: false, uploadService: true },
  { key: 'edge+service', label: 'edge + upload service', edge: true, uploadService: true },
];

type ClientName = 'ctr' | 'docker' | 'podman' | 'skopeo';
const ALL_CLIENTS: ClientName[] = ['ctr', 'docker', 'podman', 'skopeo'];

function listSetting(name: string, fallback: string): string[] {
  return (process.env[name] ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

const SIZES_MIB = listSetting('BENCH_UPLOAD_SIZES_MIB', '1,16,1024').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`BENCH_UPLOAD_SIZES_MIB: ${s} is not a whole number ≥ 1`);
  return n;
});
const OPTIONS = listSetting('BENCH_UPLOAD_OPTIONS', ALL_OPTIONS.map((o) => o.key).join(',')).map((key) => {
  const option = ALL_OPTIONS.find((o) => o.key === key);
  if (option === undefined) {
    throw new Error(`BENCH_UPLOAD_OPTIONS: ${key} is not one of ${ALL_OPTIONS.map((o) => o.key).join(', ')}`);
  }
  return option;
});
const CLIENTS = listSetting('BENCH_UPLOAD_CLIENTS', ALL_CLIENTS.join(',')).map((name) => {
  if (!(ALL_CLIENTS as string[]).includes(name)) {
    throw new Error(`BENCH_UPLOAD_CLIENTS: ${name} is not one of ${ALL_CLIENTS.join(', ')}`);
  }
  return name as ClientName;
});
/** Where each deployment's log and HTTP exchanges are kept after the run. */
const LOGS = join(tmpdir(), `bench-uploads-logs-${new Date().toISOString().slice(0, 19).replace(/\D/g, '')}`);
const OUT = resolve(REPO_ROOT, process.env.BENCH_UPLOAD_OUT ?? join('docs', 'large-layers.md'));

/** A push or pull gets a minute, plus a quarter of a second per MiB: 5 minutes for 1 GiB. */
function timeoutMs(sizeMib: number): number {
  return 60_000 + sizeMib * 235;
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

// Results.

/** One push or pull: done, refused (the client exited non-zero), killed by the timeout, or wrong bytes. */
type Outcome =
  | { kind: 'ok'; ms: number }
  /** status: the one the client printed; with a star, the proxy's (the client printed none). */
  | { kind: 'failed'; ms: number; status?: string; error: string }
  | { kind: 'hang'; ms: number; error: string }
  | { kind: 'wrong'; ms: number; error: string };

interface Cell {
  push: Outcome;
  pull?: Outcome;
}

interface OptionTotals {
  /** Request body bytes in the Lambda handler's access log lines, and how many requests. */
  functionBytes: number;
  functionRequests: number;
  /** The same for the upload service (0 without it). */
  serviceBytes: number;
  serviceRequests: number;
  startMs: number;
}

const cells = new Map<string, Cell>();
const totals = new Map<string, OptionTotals>();
/** Anything unexpected that is not a cell: a failed start, a wrong digest's details. */
const notes: string[] = [];
const cellKey = (option: string, client: ClientName, sizeMib: number) => `${option}|${client}|${sizeMib}`;

/** The HTTP status a client printed, if any (the clients word it differently). */
function statusOf(output: string): string | undefined {
  const patterns = [
    /\b(?:status ?(?:code)?|HTTP status)[:= ]+(\d{3})\b/i,
    /\bHTTP (\d{3})\b/,
    /\b(\d{3}) (?:Request Entity Too Large|Payload Too Large|Bad Request|Unauthorized|Forbidden|Not Found|Method Not Allowed|Range Not Satisfiable|Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout)\b/,
  ];
  for (const pattern of patterns) {
    const match = pattern.exec(output);
    if (match?.[1] !== undefined) return match[1];
  }
  return undefined;
}

/** The line of a client's error that carries the status, else its first line; shortened for a table. */
function errorLine(result: RunResult): string {
  const lines = [...result.stderr.split('\n'), ...result.stdout.split('\n')]
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('[killed after'));
  const errorish = lines.filter((l) => /error|fatal|fail|denied|refused|unexpected/i.test(l));
  const withStatus =
    errorish.find((l) => statusOf(l) !== undefined) ?? lines.find((l) => statusOf(l) !== undefined);
  const line = (withStatus ?? errorish[0] ?? lines[0] ?? `exit ${String(result.code)}`)
    // skopeo's logrus prefix and upload URLs' signed queries: the same error reads the same in each cell.
    .replace(/^time="[^"]*" level=\w+ msg=/, '')
    .replace(/\?_upload=[^"\s\\]*/g, '?_upload=…')
    .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT');
  return line.length > 400 ? `${line.slice(0, 397)}...` : line;
}

/** Runs a client command that may fail; a CommandError becomes its result. */
async function attempt(command: () => Promise<RunResult>): Promise<RunResult> {
  try {
    return await command();
  } catch (err) {
    if (err instanceof CommandError) return err.result;
    throw err;
  }
}

function outcomeOf(result: RunResult): Outcome {
  if (result.stderr.includes('[killed after'))
    return { kind: 'hang', ms: result.ms, error: errorLine(result) };
  if (result.code !== 0) {
    const output = `${result.stderr}\n${result.stdout}`;
    const status = statusOf(output);
    return { kind: 'failed', ms: result.ms, error: errorLine(result), ...(status && { status }) };
  }
  return { kind: 'ok', ms: result.ms };
}

/** Turns an ok outcome into a wrong one when a check fails (the check returns its complaint, or nothing). */
async function checked(outcome: Outcome, check: () => Promise<string | undefined>): Promise<Outcome> {
  if (outcome.kind !== 'ok') return outcome;
  const complaint = await check().catch((err: unknown) => `the check failed: ${String(err)}`);
  return complaint === undefined ? outcome : { kind: 'wrong', ms: outcome.ms, error: complaint };
}

function describeOutcome(outcome: Outcome): string {
  switch (outcome.kind) {
    case 'ok':
      return `ok ${seconds(outcome.ms)}`;
    case 'failed':
      return `FAILED${outcome.status ? ` ${outcome.status}` : ''} after ${seconds(outcome.ms)}: ${outcome.error}`;
    case 'hang':
      return `HANG (killed after ${seconds(outcome.ms)}): ${outcome.error}`;
    case 'wrong':
      return `WRONG after ${seconds(outcome.ms)}: ${outcome.error}`;
  }
}

// The images and the clients.

interface SizedImage {
  sizeMib: number;
  image: ImageInfo;
  /** The one layer. */
  layer: { digest: string; diffId: string; size: number };
  /** Short name: layer-16m. */
  name: string;
  /** The name ctr imported it under (without tag), in the push namespace. */
  ctrBase: string;
  /** The name docker and podman loaded it under, in their push stores. */
  localName: string;
  podmanId: string;
}

interface Clients {
  containerd: Containerd;
  dockerPush: DockerDaemon;
  dockerPull: DockerDaemon;
  podmanPush: Podman;
  podmanPull: Podman;
  skopeo: Skopeo;
}

async function prepareImage(dir: string, sizeMib: number, clients: Clients): Promise<SizedImage> {
  const name = `layer-${sizeMib}m`;
  const started = performance.now();
  // Lowercase paths: podman names an image loaded from an OCI layout after the layout's path.
  const image = await writeRandomImage(join(dir, name), `bench-uploads-${name}`, [sizeMib * MIB]);
  const layer = image.layers[0];
  if (layer === undefined) throw new Error('writeRandomImage wrote no layer');
  const ctrBase = `import.local/${name}`;
  const localName = `bench/${name}:v1`;
  const needs = (client: ClientName) => CLIENTS.includes(client);
  if (needs('ctr')) await clients.containerd.importLayout('push', image.layout, ctrBase);
  if (needs('docker')) {
    const archive = join(dir, `${name}.docker.tar`);
    await clients.skopeo.run([
      'copy',
      '--quiet',
      '--retry-times',
      '0',
      `oci:${image.layout}:${image.tag}`,
      `docker-archive:${archive}:${localName}`,
    ]);
    await clients.dockerPush.load(archive);
    await rm(archive, { force: true });
  }
  const podmanId = needs('podman')
    ? await clients.podmanPush.loadOci(image.layout, image.tag, `localhost/${localName}`)
    : '';
  log(`  image with a ${sizeMib} MiB layer ready (${seconds(performance.now() - started)})`);
  return { sizeMib, image, layer, name, ctrBase, localName, podmanId };
}

// One client, one size, on one deployment: push, then pull back and compare.

interface Target {
  registry: RegistryUnderTest;
  option: DeploymentOption;
  clients: Clients;
  work: string;
}

/** The registry serves `repo:v1` with this digest (HEAD and GET agree, and the body hashes to it). */
async function registryDigestComplaint(
  registry: RegistryUnderTest,
  repo: string,
  digest: string,
): Promise<string | undefined> {
  const get = await registry.getManifest(repo, 'v1');
  if (get.status !== 200) return `GET /v2/${repo}/manifests/v1 answered ${get.status}`;
  if (get.headerDigest !== digest || get.bodyDigest !== digest) {
    return `the registry serves ${repo}:v1 as ${get.headerDigest} (body ${get.bodyDigest}), the client pushed ${digest}`;
  }
  return undefined;
}

async function runCtr(t: Target, img: SizedImage): Promise<Cell> {
  const { containerd } = t.clients;
  const repo = `ctr/${img.name}`;
  const ref = `${t.registry.host}/${repo}:v1`;
  await containerd.tag('push', `${img.ctrBase}:${img.image.tag}`, ref);
  const limit = timeoutMs(img.sizeMib);
  const push = await checked(
    outcomeOf(await containerd.ctr('push', ['images', 'push', '--plain-http', ref], limit, true)),
    () => registryDigestComplaint(t.registry, repo, img.image.manifest.digest),
  );
  await containerd.ctr('push', ['images', 'rm', ref], 60_000, true);
  if (push.kind !== 'ok') return { push };
  const namespace = `pull-${t.option.key.replace(/\W/g, '-')}-${img.name}`;
  const pull = await checked(
    outcomeOf(await containerd.ctr(namespace, ['images', 'pull', '--plain-http', ref], limit, true)),
    async () => {
      const target = await containerd.target(namespace, ref);
      if (target.digest !== img.image.manifest.digest) {
        return `ctr pulled ${target.digest}, not ${img.image.manifest.digest}`;
      }
      const got = await containerd.contentDigest(namespace, img.layer.digest);
      return got === img.layer.digest
        ? undefined
        : `the pulled layer hashes to ${got}, not ${img.layer.digest}`;
    },
  );
  await containerd.ctr(namespace, ['images', 'rm', '--sync', ref], 120_000, true);
  return { push, pull };
}

async function runSkopeo(t: Target, img: SizedImage): Promise<Cell> {
  const { skopeo } = t.clients;
  const repo = `skopeo/${img.name}`;
  const ref = `docker://${t.registry.host}/${repo}:v1`;
  const limit = timeoutMs(img.sizeMib);
  const copy = (...args: string[]) =>
    attempt(() =>
      skopeo.run(['copy', '--quiet', '--retry-times', '0', '--preserve-digests', ...args], limit),
    );
  await skopeo.clearBlobCache();
  const push = await checked(
    outcomeOf(await copy('--dest-tls-verify=false', `oci:${img.image.layout}:${img.image.tag}`, ref)),
    () => registryDigestComplaint(t.registry, repo, img.image.manifest.digest),
  );
  if (push.kind !== 'ok') return { push };
  const dest = join(t.work, `skopeo-${t.option.key.replace(/\W/g, '-')}-${img.name}`);
  const pull = await checked(
    outcomeOf(await copy('--src-tls-verify=false', ref, `oci:${dest}:v1`)),
    async () => {
      const index = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      const pulled = index.manifests[0]?.digest;
      if (pulled !== img.image.manifest.digest)
        return `skopeo pulled ${pulled}, not ${img.image.manifest.digest}`;
      // Every blob hashes to its name, and they are the image's.
      const blobs = (await verifyLayoutBlobs(dest)).sort().join(',');
      const expected = [img.image.manifest.digest, img.image.config.digest, img.layer.digest]
        .sort()
        .join(',');
      return blobs === expected ? undefined : `the pulled blobs are ${blobs}, not ${expected}`;
    },
  );
  await rm(dest, { recursive: true, force: true });
  return { push, pull };
}

async function runPodman(t: Target, img: SizedImage): Promise<Cell> {
  const { podmanPush, podmanPull } = t.clients;
  const repo = `podman/${img.name}`;
  const name = `${t.registry.host}/${repo}:v1`;
  const limit = timeoutMs(img.sizeMib);
  await podmanPush.run(['tag', img.podmanId, name], 60_000);
  const digestFile = join(podmanPush.dir, `digest-${randomBytes(4).toString('hex')}`);
  // podman recompresses the layer it stores uncompressed: its digest is its own, read from --digestfile.
  const result = await podmanPush.run(
    ['push', '--quiet', '--tls-verify=false', '--digestfile', digestFile, name, `docker://${name}`],
    limit,
    true,
  );
  let pushed = '';
  const push = await checked(outcomeOf(result), async () => {
    pushed = (await readFile(digestFile, 'utf8')).trim();
    return registryDigestComplaint(t.registry, repo, pushed);
  });
  await podmanPush.run(['untag', img.podmanId, name], 60_000, true);
  if (push.kind !== 'ok') return { push };
  const pull = await checked(
    outcomeOf(await podmanPull.run(['pull', '--quiet', '--tls-verify=false', name], limit, true)),
    async () => {
      const pulled = await podmanPull.inspect(name);
      if (pulled.Digest !== pushed) return `podman pulled ${pulled.Digest}, pushed ${pushed}`;
      const layers = pulled.RootFS.Layers.join(',');
      return layers === img.layer.diffId
        ? undefined
        : `the pulled layers are ${layers}, not ${img.layer.diffId}`;
    },
  );
  await podmanPull.removeAllImages().catch(() => undefined);
  return { push, pull };
}

async function runDocker(t: Target, img: SizedImage): Promise<Cell> {
  const { dockerPush, dockerPull } = t.clients;
  const repo = `docker/${img.name}`;
  const ref = `${t.registry.host}/${repo}:v1`;
  const limit = timeoutMs(img.sizeMib);
  await dockerPush.tag(img.localName, ref);
  const result = await dockerPush.run(['push', ref], limit, true);
  let pushed = '';
  const push = await checked(outcomeOf(result), async () => {
    pushed = /digest: (sha256:[0-9a-f]{64}) size: \d+/.exec(result.stdout)?.[1] ?? '';
    if (pushed === '')
      return `docker push printed no digest: ${result.stdout.trim().split('\n').pop() ?? ''}`;
    return registryDigestComplaint(t.registry, repo, pushed);
  });
  await dockerPush.run(['rmi', ref], 60_000, true);
  if (push.kind !== 'ok') return { push };
  const pull = await checked(outcomeOf(await dockerPull.run(['pull', ref], limit, true)), async () => {
    const pulled = await dockerPull.inspect(ref);
    if (!pulled.RepoDigests.includes(`${t.registry.host}/${repo}@${pushed}`)) {
      return `docker pulled ${pulled.RepoDigests.join(', ')}, pushed ${pushed}`;
    }
    const layers = pulled.RootFS.Layers.join(',');
    return layers === img.layer.diffId
      ? undefined
      : `the pulled layers are ${layers}, not ${img.layer.diffId}`;
  });
  await dockerPull.removeAllImages().catch(() => undefined);
  return { push, pull };
}

/**
 * Where a client printed no HTTP status (skopeo words a registry error code instead), the last error
 * status the recording proxy saw in its exchanges (uploads sent to the upload service bypass it).
 */
function addWireStatus(cell: Cell, exchanges: readonly Exchange[]): void {
  const wire = exchanges.filter((e) => e.status >= 400).pop()?.status;
  for (const outcome of [cell.push, cell.pull]) {
    if (outcome?.kind === 'failed' && outcome.status === undefined && wire !== undefined) {
      outcome.status = `${wire}*`;
    }
  }
}

/** What no option should do: a hang, wrong bytes, a server error, or a pull of a pushed image failing. */
function unexpected(cell: Cell): boolean {
  const bad = (o: Outcome | undefined) =>
    o !== undefined &&
    (o.kind === 'wrong' || o.kind === 'hang' || (o.kind === 'failed' && /^5/.test(o.status ?? '')));
  return bad(cell.push) || bad(cell.pull) || (cell.pull !== undefined && cell.pull.kind !== 'ok');
}

const RUNNERS: Record<ClientName, (t: Target, img: SizedImage) => Promise<Cell>> = {
  ctr: runCtr,
  docker: runDocker,
  podman: runPodman,
  skopeo: runSkopeo,
};

async function accessTotals(registry: RegistryUnderTest, source: 'function' | 'upload-service') {
  const lines = await registry.accessLines(source);
  return {
    bytes: lines.reduce((sum, l) => sum + (Number.isFinite(l.bytesIn) ? l.bytesIn : 0), 0),
    requests: lines.length,
  };
}

async function runOption(option: DeploymentOption, images: SizedImage[], clients: Clients, work: string) {
  log(
    `[${option.label}] starting local AWS (Ceph RGW, DynamoDB Local${option.edge ? ', edge' : ''}${option.uploadService ? ', upload service' : ''})...`,
  );
  const started = performance.now();
  const registry = await RegistryUnderTest.start('local-aws', {
    s3: 'rgw',
    edge: option.edge,
    uploadService: option.uploadService,
  });
  const startMs = performance.now() - started;
  log(`[${option.label}] serving at ${registry.url} (${seconds(startMs)})`);
  try {
    const target: Target = { registry, option, clients, work };
    for (const img of images) {
      for (const client of CLIENTS) {
        let cell: Cell;
        const mark = registry.mark();
        try {
          cell = await RUNNERS[client](target, img);
          addWireStatus(cell, registry.since(mark));
        } catch (err) {
          // Set-up steps around the client (tagging, untagging) are not what is measured: report them.
          const error = String(err instanceof Error ? err.message : err).split('\n')[0] ?? '';
          cell = {
            push: { kind: 'wrong', ms: 0, error: `the benchmark failed around the client: ${error}` },
          };
        }
        cells.set(cellKey(option.key, client, img.sizeMib), cell);
        log(
          `[${option.label}] ${client} ${img.sizeMib} MiB: push ${describeOutcome(cell.push)}` +
            (cell.pull ? `; pull ${describeOutcome(cell.pull)}` : ''),
        );
        if (unexpected(cell)) {
          notes.push(
            `${option.label}, ${client}, ${img.sizeMib} MiB: push ${describeOutcome(cell.push)}` +
              (cell.pull ? `; pull ${describeOutcome(cell.pull)}` : ''),
          );
          log(await registry.diagnostics(20));
        }
      }
    }
    const fn = await accessTotals(registry, 'function');
    const service = await accessTotals(registry, 'upload-service');
    totals.set(option.key, {
      functionBytes: fn.bytes,
      functionRequests: fn.requests,
      serviceBytes: service.bytes,
      serviceRequests: service.requests,
      startMs,
    });
    log(
      `[${option.label}] the Lambda handler took ${fn.bytes.toLocaleString('en-US')} request body bytes in ${fn.requests} requests` +
        (option.uploadService
          ? `; the upload service ${service.bytes.toLocaleString('en-US')} in ${service.requests}`
          : ''),
    );
  } finally {
    // The deployment's log and the proxy's exchanges outlive it, for what the table cannot say.
    const kept = join(LOGS, option.key.replace(/\W/g, '-'));
    await mkdir(kept, { recursive: true });
    await copyFile(registry.logFile, join(kept, 'local-aws.log')).catch(() => undefined);
    await copyFile(join(registry.dir, 'exchanges.log'), join(kept, 'exchanges.log')).catch(() => undefined);
    await registry.stop();
    if (registry.leftoverProcesses.length > 0) {
      notes.push(
        `${option.label}: local AWS left processes running after SIGTERM (killed): ${registry.leftoverProcesses.map((p) => `${p.name} ${p.pid}`).join(', ')}`,
      );
    }
  }
}

// The report.

function cellText(cell: Cell | undefined): string {
  if (cell === undefined) return 'not run';
  const failure = (o: Exclude<Outcome, { kind: 'ok' }>) => {
    if (o.kind === 'hang') return `✗ hang (killed at ${seconds(o.ms)})`;
    if (o.kind === 'wrong') return `✗ wrong (${seconds(o.ms)})`;
    return `✗ ${o.status ?? 'error'} (${seconds(o.ms)})`;
  };
  const { push, pull } = cell;
  if (push.kind !== 'ok') return failure(push);
  if (pull === undefined) return `✓ ${seconds(push.ms)} / not pulled`;
  if (pull.kind !== 'ok') return `✓ ${seconds(push.ms)} / pull ${failure(pull)}`;
  return `✓ ${seconds(push.ms)} / ${seconds(pull.ms)}`;
}

function sizeLabel(mib: number): string {
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

function table(head: string[], rows: string[][]): string {
  const line = (cols: string[]) => `| ${cols.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

function version(command: string, args: string[]): string {
  try {
    return (
      execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
        .trim()
        .split('\n')[0] ?? '?'
    );
  } catch {
    return 'not found';
  }
}

function bytesText(bytes: number): string {
  if (bytes >= MIB) return `${bytes.toLocaleString('en-US')} (${(bytes / MIB).toFixed(1)} MiB)`;
  return bytes.toLocaleString('en-US');
}

function report(machine: {
  date: string;
  minutes: number;
  versions: [string, string][];
  commit: string;
}): string {
  const out: string[] = [];
  const sizes = SIZES_MIB.map(sizeLabel).join(', ');
  out.push(`# Large layers on the AWS deployment: which clients work with which option

API Gateway takes request bodies up to 10 MB, and Lambda events up to 6 MB, in which a binary body is
base64-encoded: the function can take about 4.4 MiB of request body. Every stock client sends a whole
layer in one request (skopeo, podman and docker one PATCH, docker's chunked; containerd one PUT), so
without help a layer over about 4.4 MiB cannot be pushed. The deployment has two options for it:

- **the upload edge** (\`edge\`: CloudFront in front of API Gateway, with its functions): a one-PUT
  upload (containerd, BuildKit, Docker ≥ 29) goes straight to S3; a PATCH is refused with 413 and a
  message naming the options;
- **the upload service** (\`uploadService\`: the standalone server on Fargate behind a load balancer):
  new uploads are sent there, so PATCH clients (docker, podman, skopeo) and one-PUT clients work alike.

What was run: \`test/bench/uploads.ts\` (this file is its output; run it again to replace it). For each
option, the local AWS emulation (\`npm run local:aws -- [--edge] [--upload-service]\`: the local API
Gateway front with its limits, the real Lambda handler, one-node Ceph RGW as S3, DynamoDB Local, the
CloudFront emulation running the real CloudFront Function code, the standalone server as the upload
service) was started once; then, one after another, each client pushed an image with one random
(incompressible) layer of ${sizes} to a fresh repository, through the harness's recording proxy, and
pulled it back into an empty store (a new containerd namespace, a second dockerd, a second podman
storage, an empty OCI layout for skopeo), and the digests were compared: the manifest the registry serves
is the one the client pushed, and the pulled image has that manifest digest and that layer (containerd and
skopeo: the layer's sha256 read back; docker and podman, which recompress on push: the layer's diff ID).
Pushes and pulls are each bounded by 60 s plus 0.235 s per MiB (${seconds(timeoutMs(1024))} for 1 GiB); a client
killed by that bound would show as "hang". Push and pull times are the client commands' wall-clock times
(a pull includes unpacking, except skopeo's); on a shared 2-core machine they are indicative only.

Machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown CPU'}), ${(totalmem() / 1024 ** 3).toFixed(0)} GiB of memory; ${machine.date}; the whole run took ${machine.minutes.toFixed(1)} minutes.
Project commit ${machine.commit}.

${table(['software', 'version'], machine.versions)}

## Push / pull, by client and layer size

A cell is \`✓ push / pull\` in seconds, or \`✗\` with the HTTP status the client printed (with a star: it
printed none, and this is the last error status the recording proxy saw) and how long it took to fail;
the first line of each error is listed below the table.

`);
  const rows: string[][] = [];
  for (const size of SIZES_MIB) {
    for (const client of CLIENTS) {
      rows.push([
        `${client === 'docker' ? 'docker (classic store)' : client} · ${sizeLabel(size)}`,
        ...OPTIONS.map((o) => cellText(cells.get(cellKey(o.key, client, size)))),
      ]);
    }
  }
  out.push(table(['client · layer', ...OPTIONS.map((o) => o.label)], rows));

  // The errors, once per distinct first line.
  const errors = new Map<string, string[]>();
  for (const option of OPTIONS) {
    for (const size of SIZES_MIB) {
      for (const client of CLIENTS) {
        const cell = cells.get(cellKey(option.key, client, size));
        if (cell === undefined) continue;
        for (const [step, outcome] of [
          ['push', cell.push],
          ['pull', cell.pull],
        ] as const) {
          if (outcome === undefined || outcome.kind === 'ok') continue;
          const text = `${client} ${step}: ${outcome.error}`;
          const where = errors.get(text) ?? [];
          where.push(`${option.label}, ${sizeLabel(size)}`);
          errors.set(text, where);
        }
      }
    }
  }
  if (errors.size > 0) {
    out.push('\nThe errors (first line; where each occurred):\n');
    for (const [text, where] of errors) out.push(`- ${where.join('; ')}: \`${text.replaceAll('`', "'")}\``);
  }

  out.push(`
How to read it:

- Lambda only: a body over about 4.4 MiB is refused with API Gateway's 413 before the function runs.
  The local API Gateway front answers as soon as the declared length, or the bytes read, pass its limit
  (bin/local/api-gateway.ts), and drops the rest. podman, still sending its chunked body, may report the
  closed connection (broken pipe) instead of the 413; it fails at once either way.
- Edge: ctr's one PUT goes straight to S3. skopeo sends its PATCH with Content-Length, and the edge's
  viewer-request function refuses it with 413 SIZE_INVALID and a message naming the options (the local
  edge reads the body to its end first, so that the client reads the answer, which takes a few seconds
  for 1 GiB); docker and podman send theirs chunked (they compress on the fly), so the edge cannot see
  the size and passes the request on to API Gateway, whose 413 they print (or, podman, a broken pipe).
- Upload service: new uploads (PATCH and PUT) go to the standalone server, which streams them to S3.
`);
  out.push(`
## Request body bytes the Lambda handler took

Summed from the function's own access log lines (\`bytesIn\`) over the whole run of each option, and the
same for the upload service. A request API Gateway refuses with 413 never reaches the function, so it is
not counted. What the function does take is manifests (and, without the options, layers under the limit).
`);
  out.push(
    table(
      [
        'option',
        'Lambda handler: request body bytes',
        'requests',
        'upload service: request body bytes',
        'requests',
        'start-up',
      ],
      OPTIONS.map((o) => {
        const t = totals.get(o.key);
        if (t === undefined) return [o.label, 'not run', '', '', '', ''];
        return [
          o.label,
          bytesText(t.functionBytes),
          String(t.functionRequests),
          o.uploadService ? bytesText(t.serviceBytes) : '—',
          o.uploadService ? String(t.serviceRequests) : '—',
          seconds(t.startMs),
        ];
      }),
    ),
  );
  if (notes.length > 0) {
    out.push('\n## Unexpected\n');
    for (const note of notes) out.push(`- ${note}`);
  }
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n')}\n`;
}

// Main.

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('run as root: dockerd, containerd and podman storage need it');
  if (!existsSync(join(REPO_ROOT, 'package.json')) || !existsSync(join(REPO_ROOT, 'dist', 'registry.mjs'))) {
    throw new Error(
      `no package.json and dist/registry.mjs under ${REPO_ROOT}: build the server (npm run build) and bundle ` +
        'this script to dist/test/bench/uploads.mjs (three folders below the root, as the harness sits)',
    );
  }
  const runStarted = performance.now();
  const date = new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
  log(
    `bench uploads: sizes ${SIZES_MIB.join(', ')} MiB; options ${OPTIONS.map((o) => o.label).join(', ')}; clients ${CLIENTS.join(', ')}`,
  );
  await buildLocalAws();

  const work = join(tmpdir(), `bench-uploads-${randomBytes(6).toString('hex')}`);
  await mkdir(work);
  const stops: (() => Promise<unknown>)[] = [() => removeTempDir(work)];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse())
      await stop().catch((err: unknown) => log(`cleanup: ${String(err)}`));
  };
  const interrupted = () => {
    log('interrupted: stopping everything started...');
    void stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    log('starting containerd, two dockerds, two podman stores, skopeo...');
    const [containerd, dockerPush, dockerPull, podmanPush, podmanPull, skopeo] = await Promise.all([
      Containerd.start().then((c) => (stops.push(() => c.stop()), c)),
      DockerDaemon.start().then((d) => (stops.push(() => d.stop()), d)),
      DockerDaemon.start().then((d) => (stops.push(() => d.stop()), d)),
      Podman.create().then((p) => (stops.push(() => p.dispose()), p)),
      Podman.create().then((p) => (stops.push(() => p.dispose()), p)),
      Skopeo.create().then((s) => (stops.push(() => s.dispose()), s)),
    ]);
    const clients: Clients = { containerd, dockerPush, dockerPull, podmanPush, podmanPull, skopeo };
    const dockerVersion = (
      await dockerPush.run(
        ['version', '--format', '{{.Server.Version}} (daemon), {{.Client.Version}} (CLI)'],
        30_000,
        true,
      )
    ).stdout.trim();
    const versions: [string, string][] = [
      ['node', process.version],
      ['containerd / ctr', version('containerd', ['--version'])],
      ['docker', dockerVersion],
      ['podman', version('podman', ['--version'])],
      ['skopeo', version('skopeo', ['--version'])],
      ['Ceph (radosgw)', version('radosgw', ['--version'])],
      ['Linux', version('uname', ['-sr'])],
    ];
    let commit = version('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']);
    const changed = version('git', ['-C', REPO_ROOT, 'status', '--porcelain']);
    if (changed !== '' && changed !== 'not found') commit += ' with uncommitted changes';

    log('writing the images and loading them into the push stores...');
    const images: SizedImage[] = [];
    for (const size of SIZES_MIB) images.push(await prepareImage(work, size, clients));

    for (const option of OPTIONS) {
      try {
        await runOption(option, images, clients, work);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        notes.push(`${option.label}: the run stopped: ${message.split('\n')[0] ?? ''}`);
        log(`[${option.label}] the run stopped: ${message}`);
      }
    }

    const minutes = (performance.now() - runStarted) / 60_000;
    await writeFile(OUT, report({ date, minutes, versions, commit }));
    log(`wrote ${OUT} (${minutes.toFixed(1)} minutes in all); logs of each deployment in ${LOGS}`);
  } finally {
    await stopAll();
  }
}

await main();
// Sockets to stopped daemons may linger; nothing more is to be done.
process.exit();
