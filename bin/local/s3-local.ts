/**
 * Local S3 services for tests, started by the test run and stopped after it (see TESTING.md):
 *
 * - startRgw(): a one-node Ceph cluster (one monitor, one memstore OSD) with the RADOS gateway, the
 *   faithful local S3: SigV4 and presigned URLs are verified, multipart rules (EntityTooSmall) enforced.
 *   About 12 s to start. Needs the Debian packages radosgw, ceph-mon and ceph-osd (.ci/install-services).
 * - startFauxqs(): the npm emulator fauxqs, fast (under a second) but without any authentication.
 *
 * Both listen on free ports of 127.0.0.1 and keep their data in a temporary directory (RGW) or in memory.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

import { freePort } from './free-port.js';

export interface S3Service {
  /** http://127.0.0.1:PORT, to be used with forcePathStyle. */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** Creates a bucket (path style). */
  createBucket(name: string): Promise<void>;
  /** Stops every process of the service and removes its data. */
  stop(): Promise<void>;
}

const REGION = 'us-east-1';
const CEPH_BINARIES = [
  'ceph-mon',
  'ceph-osd',
  'radosgw',
  'radosgw-admin',
  'ceph',
  'monmaptool',
  'ceph-authtool',
];
const INSTALL_HINT =
  'install them with: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd (or run .ci/install-services)';
// Resolved through the package, so this works from the sources and from a bundle in dist/.
const FAUXQS_CLI = join(dirname(fileURLToPath(import.meta.resolve('fauxqs'))), 'cli.js');
const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

/** Processes and directories made here, killed and removed if the test process exits without stopping them. */
const running = new Set<ChildProcess>();
const directories = new Set<string>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
});

/** A child process whose output is kept (the last 64 KiB) for error messages. */
class Service {
  #output = '';
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    running.add(child);
    const keep = (chunk: Buffer): void => {
      this.#output = (this.#output + chunk.toString()).slice(-64 * 1024);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        running.delete(child);
        resolve(code);
      });
      child.once('error', (error) => {
        this.#output += `\n${error.message}`;
        running.delete(child);
        resolve(null);
      });
    });
  }

  static start(name: string, command: string, args: string[], env?: NodeJS.ProcessEnv): Service {
    return new Service(
      name,
      spawn(command, args, {
        env: { ...process.env, PATH: SBIN_PATH, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
  }

  get output(): string {
    return this.#output;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && running.has(this.child);
  }

  /** SIGTERM, then SIGKILL if it is still running after graceMs (the data is thrown away anyway). */
  async stop(graceMs = 1500): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Starts fauxqs (npm, no authentication) on a free port and waits until it answers. */
export async function startFauxqs(): Promise<S3Service> {
  const port = await freePort();
  const service = Service.start('fauxqs', process.execPath, [FAUXQS_CLI], {
    FAUXQS_PORT: String(port),
    FAUXQS_HOST: '127.0.0.1',
    FAUXQS_LOGGER: 'false',
  });
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    await waitFor('fauxqs to answer', 15_000, async () => {
      if (!service.running) throw new Error(`fauxqs exited:\n${service.output}`);
      return answers(endpoint);
    });
  } catch (error) {
    await service.stop();
    throw error;
  }
  return makeService(endpoint, { accessKeyId: 'fauxqs', secretAccessKey: 'fauxqs' }, () => service.stop());
}

/**
 * Starts a one-node Ceph RGW as TESTING.md describes: in a temporary directory, a monitor and an RGW on
 * free ports of 127.0.0.1, one memstore OSD (8 GiB by default, taken as it fills); waits until the gateway answers and creates a user
 * with fresh keys. Throws (saying how to install them) when the Ceph binaries are missing.
 */
export async function startRgw(): Promise<S3Service> {
  const missing = await missingBinaries(CEPH_BINARIES);
  if (missing.length > 0) throw new Error(`Ceph binaries missing (${missing.join(', ')}): ${INSTALL_HINT}`);

  const dir = await mkdtemp(join(tmpdir(), 'rgw-'));
  directories.add(dir);
  const services: Service[] = [];
  const stop = async (): Promise<void> => {
    // The gateway first, the monitor last: daemons without their monitor hang on shutdown.
    for (const service of [...services].reverse()) await service.stop();
    await rm(dir, { recursive: true, force: true });
    directories.delete(dir);
  };
  try {
    const monPort = await freePort();
    let rgwPort = await freePort();
    while (rgwPort === monPort) rgwPort = await freePort();
    const fsid = randomUUID();
    const conf = join(dir, 'ceph.conf');
    for (const sub of ['run', 'log', 'mon', 'osd', 'rgw']) await mkdir(join(dir, sub));
    await writeFile(conf, cephConf(dir, fsid, monPort, rgwPort));
    const ceph = (...args: string[]): Promise<string> =>
      run('ceph', ['-c', conf, '--connect-timeout', '10', ...args], 30_000);

    await run('ceph-authtool', [
      '--create-keyring',
      join(dir, 'keyring'),
      '--gen-key',
      '-n',
      'mon.',
      '--cap',
      'mon',
      'allow *',
    ]);
    await run('monmaptool', [
      '--create',
      '--addv',
      'a',
      `[v1:127.0.0.1:${monPort}]`,
      '--fsid',
      fsid,
      join(dir, 'monmap'),
    ]);
    await run('ceph-mon', [
      '-c',
      conf,
      '--mkfs',
      '-i',
      'a',
      '--monmap',
      join(dir, 'monmap'),
      '--keyring',
      join(dir, 'keyring'),
    ]);
    const mon = Service.start('ceph-mon', 'ceph-mon', ['-c', conf, '-i', 'a', '-f']);
    services.push(mon);
    await waitFor('the Ceph monitor', 30_000, async () => {
      if (!mon.running) throw new Error(`ceph-mon exited:\n${mon.output}`);
      return (await ceph('mon', 'stat').catch(() => '')).includes('quorum 0');
    });

    // Just after quorum the monitor can still refuse commands (EPERM "problem getting command
    // descriptions from mon"): ask again until it takes one.
    const id = String(
      await waitFor(
        'the Ceph monitor to take commands',
        30_000,
        async () => (await ceph('osd', 'create').catch(() => '')).trim() || false,
      ),
    );
    if (!/^\d+$/.test(id)) throw new Error(`ceph osd create gave ${JSON.stringify(id)}`);
    await mkdir(join(dir, 'osd', `ceph-${id}`), { recursive: true });
    await run('ceph-osd', ['-c', conf, '-i', id, '--mkfs']);
    // The OSD can quit at its first start (with "wrong fsid", a start-up race): start it again.
    for (let attempt = 1; ; attempt++) {
      const osd = Service.start('ceph-osd', 'ceph-osd', ['-c', conf, '-i', id, '-f']);
      services.push(osd);
      const state = await waitFor('the Ceph OSD', 60_000, async () => {
        if (!osd.running) return 'exited';
        return (await ceph('osd', 'stat').catch(() => '')).includes('1 up') ? 'up' : false;
      });
      if (state === 'up') break;
      if (attempt >= 5) {
        const how = `code ${osd.child.exitCode}, signal ${osd.child.signalCode}`;
        throw new Error(`ceph-osd exited ${attempt} times (${how}):\n${await logOf(dir, `osd.${id}`, osd)}`);
      }
    }

    const rgw = Service.start('radosgw', 'radosgw', ['-c', conf, '-n', 'client.rgw.test', '-f']);
    services.push(rgw);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await waitFor('the RADOS gateway to answer', 90_000, async () => {
      if (!rgw.running) throw new Error(`radosgw exited:\n${await logOf(dir, 'client.rgw.test', rgw)}`);
      return answers(endpoint);
    });

    const accessKeyId = `AK${randomUUID().replaceAll('-', '').slice(0, 18).toUpperCase()}`;
    const secretAccessKey = randomUUID().replaceAll('-', '') + randomUUID().replaceAll('-', '').slice(0, 8);
    await run('radosgw-admin', [
      '-c',
      conf,
      '-n',
      'client.rgw.test',
      'user',
      'create',
      '--uid=test',
      '--display-name=test',
      `--access-key=${accessKeyId}`,
      `--secret-key=${secretAccessKey}`,
    ]);
    return makeService(endpoint, { accessKeyId, secretAccessKey }, stop);
  } catch (error) {
    await stop();
    throw error;
  }
}

function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = v1:127.0.0.1:${monPort}
public addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
paxos propose interval = 0.05
paxos min wait = 0.01
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
osd objectstore = memstore
memstore device bytes = ${memstoreBytes()}
osd max object name len = 256
run dir = ${dir}/run
log file = ${dir}/log/$name.log
admin socket = ${dir}/run/$name.$pid.asok
mon data = ${dir}/mon/$cluster-$id
osd data = ${dir}/osd/$cluster-$id
keyring = ${dir}/keyring

[client.rgw.test]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort} tcp_nodelay=1
rgw data = ${dir}/rgw
`;
}

/**
 * The memstore OSD's capacity: memory is only taken as objects are written, so the default is roomy
 * enough for gigabyte layers (an upload's parts, the blob it becomes, and a copy in flight).
 * LOCAL_AWS_RGW_MEMSTORE_MIB changes it.
 */
function memstoreBytes(): number {
  const mib = Number(process.env.LOCAL_AWS_RGW_MEMSTORE_MIB ?? 8192);
  if (!Number.isInteger(mib) || mib < 256)
    throw new Error('LOCAL_AWS_RGW_MEMSTORE_MIB: a whole number of MiB, at least 256');
  return mib * 1024 * 1024;
}

function makeService(
  endpoint: string,
  credentials: { accessKeyId: string; secretAccessKey: string },
  stop: () => Promise<void>,
): S3Service {
  return {
    endpoint,
    ...credentials,
    region: REGION,
    async createBucket(name) {
      const client = new S3Client({ endpoint, region: REGION, forcePathStyle: true, credentials });
      try {
        await client.send(new CreateBucketCommand({ Bucket: name }));
      } finally {
        client.destroy();
      }
    },
    stop,
  };
}

/** Whether anything answers HTTP at url (any status). */
async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await response.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

/** Polls check until it gives a truthy value, which is returned; fails after timeoutMs. */
async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Runs a command to completion and gives its stdout; fails with its output. */
function run(command: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { env: { ...process.env, PATH: SBIN_PATH }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** The daemon's log file (its last 8 KiB) and its captured output, for error messages. */
async function logOf(dir: string, name: string, service: Service): Promise<string> {
  const log = await readFile(join(dir, 'log', `${name}.log`), 'utf8').catch(() => '');
  return `${log.slice(-8192)}\n${service.output}`;
}

async function missingBinaries(binaries: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const binary of binaries) {
    const found = await run('sh', ['-c', 'command -v "$1"', 'sh', binary], 5000).then(
      () => true,
      () => false,
    );
    if (!found) missing.push(binary);
  }
  return missing;
}
