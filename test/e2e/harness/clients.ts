// Wrappers for the real registry clients. Each keeps all of its state under its own temp dir:
//   skopeo / podman - run in a private mount namespace with a temp dir bind-mounted over the system blob-info
//                     cache (/var/lib/containers/cache), so a push is cold unless the test warms that cache;
//                     podman also gets its own --root/--runroot/--tmpdir and vfs storage
//   docker          - a dockerd 20.10 per suite (vfs storage, own data-root/exec-root/pidfile/socket);
//                     127.0.0.0/8 registries are insecure (plain http) by default
//   containerd      - a containerd 1.6 per suite (generated config.toml: own root/state/socket, cri plugin
//                     disabled, content not shared between namespaces so a pull in a new namespace really
//                     downloads), driven with `ctr -a SOCKET --plain-http`
// By default registries are reached over plain HTTP (or TLS without verification). For HTTPS with a test
// CA, each client is told to trust the CA and verifies the registry's certificate: skopeo and podman get
// --cert-dir (Skopeo/Podman.create({ caCert })), ctr a hosts.toml per registry (Containerd.trust), and
// dockerd, which never verifies loopback registries, reaches the registry by name through a forward proxy
// with the CA in its certs.d (DockerDaemon.start({ httpsProxy }), trustCa).
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Login } from './auth.js';
import {
  hashCommandOutput,
  makeTempDir,
  removeTempDir,
  requireBinary,
  requireRoot,
  run,
  startDaemon,
  waitFor,
  type Daemon,
  type RunResult,
} from './exec.js';
import { writeDirTar } from './images.js';

const SYSTEM_BLOB_CACHE = '/var/lib/containers/cache';
const LONG = 300_000;

/** How skopeo and podman reach registries over TLS. */
export interface TlsTrustOptions {
  /** Verify registries' certificates against this CA (PEM file) instead of turning TLS verification off. */
  caCert?: string;
}

/**
 * A directory holding only the CA as ca.crt (the --cert-dir layout), under `dir`; undefined without a CA.
 * Also creates `dir/no-certs`, an empty --cert-dir that trusts nothing beyond the system roots.
 */
async function certDirFor(dir: string, caCert: string | undefined): Promise<string | undefined> {
  await mkdir(join(dir, 'no-certs'));
  if (caCert === undefined) return undefined;
  await mkdir(join(dir, 'certs'));
  await copyFile(caCert, join(dir, 'certs', 'ca.crt'));
  return join(dir, 'certs');
}

/** `--[prefix]cert-dir DIR` (TLS verified against the CA), or `--[prefix]tls-verify=false` without one. */
function tlsFlags(certDir: string | undefined, prefix = ''): string[] {
  return certDir === undefined ? [`--${prefix}tls-verify=false`] : [`--${prefix}cert-dir`, certDir];
}

/** Login flags for skopeo and podman; `trustCa: false` verifies TLS against the system roots only. */
function loginFlags(dir: string, certDir: string | undefined, login: Login, trustCa: boolean): string[] {
  return [
    '--authfile',
    join(dir, 'auth.json'),
    ...(trustCa ? tlsFlags(certDir) : ['--tls-verify=true', '--cert-dir', join(dir, 'no-certs')]),
    '--username',
    login.user,
    '--password',
    login.password,
  ];
}

/** Credentials for one side of a skopeo copy: a login, or 'anonymous' (no credentials, not even the auth file's). */
export type CopyCredentials = Login | 'anonymous';

function credentialFlags(side: 'src' | 'dest', creds: CopyCredentials | undefined): string[] {
  if (creds === undefined) return [];
  if (creds === 'anonymous') return [`--${side}-no-creds`];
  return [`--${side}-creds`, `${creds.user}:${creds.password}`];
}

async function isolatedCacheCommand(
  cacheDir: string,
  bin: string,
  args: readonly string[],
): Promise<string[]> {
  requireBinary('unshare', 'util-linux');
  requireBinary('mount', 'mount');
  // The mount point must exist; skopeo and podman create this directory themselves on first use anyway.
  await mkdir(SYSTEM_BLOB_CACHE, { recursive: true });
  return [
    '--mount',
    '--propagation',
    'private',
    '--',
    'sh',
    '-c',
    `mount --bind "$0" ${SYSTEM_BLOB_CACHE} && exec "$@"`,
    cacheDir,
    bin,
    ...args,
  ];
}

// ---------------------------------------------------------------------------------------------------------

/**
 * What skopeo and podman share as containers/image tools: a temp dir with their auth file, an optional
 * --cert-dir with the CA registries are verified against, and the same login and logout.
 */
abstract class ContainersImageTool {
  protected constructor(
    readonly dir: string,
    protected readonly bin: string,
    /** A --cert-dir holding the CA registries are verified against; undefined: TLS verification off. */
    readonly certDir: string | undefined,
  ) {}

  abstract run(args: readonly string[], timeoutMs?: number): Promise<RunResult>;

  /** Logs in into this instance's auth file; `trustCa: false` checks TLS against the system roots only. */
  async login(host: string, login: Login, options: { trustCa?: boolean } = {}): Promise<RunResult> {
    return this.run(
      ['login', ...loginFlags(this.dir, this.certDir, login, options.trustCa ?? true), host],
      60_000,
    );
  }

  async logout(host: string): Promise<RunResult> {
    return this.run(['logout', '--authfile', join(this.dir, 'auth.json'), host], 60_000);
  }

  async dispose(): Promise<void> {
    await removeTempDir(this.dir);
  }
}

// ---------------------------------------------------------------------------------------------------------

export class Skopeo extends ContainersImageTool {
  static async create(options: TlsTrustOptions = {}): Promise<Skopeo> {
    requireRoot();
    const bin = requireBinary('skopeo', 'skopeo');
    const dir = await makeTempDir('skopeo');
    await mkdir(join(dir, 'cache'));
    await mkdir(join(dir, 'tmp'));
    await writeFile(join(dir, 'auth.json'), '{}\n');
    return new Skopeo(dir, bin, await certDirFor(dir, options.caCert));
  }

  get cacheDir(): string {
    return join(this.dir, 'cache');
  }

  /** Forgets every blob location: the next push is cold (no cross-repository mount attempts). */
  async clearBlobCache(): Promise<void> {
    for (const name of await readdir(this.cacheDir)) await rm(join(this.cacheDir, name), { force: true });
  }

  async run(args: readonly string[], timeoutMs = LONG): Promise<RunResult> {
    return run('unshare', await isolatedCacheCommand(this.cacheDir, this.bin, args), {
      timeoutMs,
      env: {
        ...process.env,
        TMPDIR: join(this.dir, 'tmp'),
        REGISTRY_AUTH_FILE: join(this.dir, 'auth.json'),
      },
    });
  }

  /**
   * skopeo copy between transports (docker:// refs use plain http, or TLS verified against the CA);
   * --preserve-digests by default. Without credentials for a side, skopeo uses its auth file (login).
   */
  async copy(
    src: string,
    dest: string,
    options: {
      all?: boolean;
      preserveDigests?: boolean;
      extra?: string[];
      srcCreds?: CopyCredentials;
      destCreds?: CopyCredentials;
    } = {},
  ): Promise<RunResult> {
    const args = [
      'copy',
      '--quiet',
      '--retry-times',
      '0',
      ...tlsFlags(this.certDir, 'src-'),
      ...tlsFlags(this.certDir, 'dest-'),
      ...credentialFlags('src', options.srcCreds),
      ...credentialFlags('dest', options.destCreds),
    ];
    if (options.preserveDigests ?? true) args.push('--preserve-digests');
    if (options.all === true) args.push('--all');
    args.push(...(options.extra ?? []), src, dest);
    return this.run(args);
  }

  async inspectRaw(ref: string): Promise<Buffer> {
    const result = await this.run(
      ['inspect', '--raw', '--retry-times', '0', ...tlsFlags(this.certDir), ref],
      60_000,
    );
    return Buffer.from(result.stdout, 'utf8');
  }

  async delete(ref: string): Promise<RunResult> {
    return this.run(['delete', ...tlsFlags(this.certDir), ref], 60_000);
  }
}

// ---------------------------------------------------------------------------------------------------------

export interface PodmanImage {
  Id: string;
  Digest: string;
  RepoDigests: string[];
  Architecture: string;
  Os: string;
  RootFS: { Layers: string[] };
}

export class Podman extends ContainersImageTool {
  static async create(options: TlsTrustOptions = {}): Promise<Podman> {
    requireRoot();
    const bin = requireBinary('podman', 'podman');
    const dir = await makeTempDir('podman');
    for (const sub of ['root', 'run', 'tmp', 'cache']) await mkdir(join(dir, sub));
    await writeFile(join(dir, 'auth.json'), '{}\n');
    await writeFile(join(dir, 'registries.conf'), 'unqualified-search-registries = []\n');
    await writeFile(join(dir, 'containers.conf'), '[engine]\nevents_logger = "file"\n');
    return new Podman(dir, bin, await certDirFor(dir, options.caCert));
  }

  async run(args: readonly string[], timeoutMs = LONG, allowFailure = false): Promise<RunResult> {
    const global = [
      '--root',
      join(this.dir, 'root'),
      '--runroot',
      join(this.dir, 'run'),
      '--storage-driver',
      'vfs',
      '--tmpdir',
      join(this.dir, 'tmp'),
      '--cgroup-manager',
      'cgroupfs',
      '--events-backend',
      'file',
    ];
    return run(
      'unshare',
      await isolatedCacheCommand(join(this.dir, 'cache'), this.bin, [...global, ...args]),
      {
        timeoutMs,
        allowFailure,
        env: {
          ...process.env,
          TMPDIR: join(this.dir, 'tmp'),
          REGISTRY_AUTH_FILE: join(this.dir, 'auth.json'),
          CONTAINERS_REGISTRIES_CONF: join(this.dir, 'registries.conf'),
          CONTAINERS_CONF: join(this.dir, 'containers.conf'),
        },
      },
    );
  }

  /** Loads an image from an OCI layout into local storage under `name`; returns the image ID. */
  async loadOci(layout: string, tag: string, name: string): Promise<string> {
    const result = await this.run(['pull', '--quiet', `oci:${layout}:${tag}`]);
    const id = result.stdout.trim().split('\n').pop() ?? '';
    await this.run(['tag', id, name]);
    return id;
  }

  /** podman push; returns the manifest digest podman wrote to --digestfile. */
  async push(name: string, dest: string, extra: string[] = []): Promise<string> {
    const digestFile = join(this.dir, `digest-${Date.now()}`);
    await this.run([
      'push',
      '--quiet',
      ...tlsFlags(this.certDir),
      '--digestfile',
      digestFile,
      ...extra,
      name,
      dest,
    ]);
    return (await readFile(digestFile, 'utf8')).trim();
  }

  async pull(ref: string, extra: string[] = [], allowFailure = false): Promise<RunResult> {
    return this.run(['pull', '--quiet', ...tlsFlags(this.certDir), ...extra, ref], LONG, allowFailure);
  }

  async inspect(ref: string): Promise<PodmanImage> {
    const result = await this.run(['image', 'inspect', ref], 60_000);
    const [image] = JSON.parse(result.stdout) as PodmanImage[];
    if (image === undefined) throw new Error(`podman image inspect ${ref}: no image`);
    return image;
  }

  async removeAllImages(): Promise<void> {
    await this.run(['rmi', '--all', '--force'], 120_000);
  }

  /** Builds a manifest list from images (transport refs, e.g. oci:DIR:TAG) and pushes it with --all. */
  async pushManifestList(listName: string, images: string[], dest: string): Promise<string> {
    await this.run(['manifest', 'create', listName], 60_000);
    for (const image of images) await this.run(['manifest', 'add', listName, image], 60_000);
    const digestFile = join(this.dir, `digest-${Date.now()}`);
    await this.run([
      'manifest',
      'push',
      '--all',
      '--quiet',
      ...tlsFlags(this.certDir),
      '--digestfile',
      digestFile,
      listName,
      dest,
    ]);
    return (await readFile(digestFile, 'utf8')).trim();
  }
}

// ---------------------------------------------------------------------------------------------------------

export interface DockerImage {
  Id: string;
  RepoDigests: string[];
  Architecture: string;
  RootFS: { Layers: string[] };
}

export interface DockerOptions {
  /**
   * A forward proxy (http://127.0.0.1:PORT, see startConnectProxy) dockerd reaches registries through.
   * dockerd then runs in a private mount namespace with its own /etc/docker (so certs.d is this daemon's,
   * see trustCa) and a /etc/resolv.conf that resolves nothing: a registry name is never looked up, so
   * dockerd does not take it for an insecure loopback registry and verifies its certificate against
   * certs.d/NAME/ca.crt. (dockerd 20.10 treats 127.0.0.0/8 as insecure: it skips verification there,
   * ignores certs.d, and would fall back to plain HTTP.)
   */
  httpsProxy?: string;
}

export class DockerDaemon {
  private constructor(
    readonly dir: string,
    private readonly cli: string,
    private readonly daemon: Daemon,
  ) {}

  get socket(): string {
    return join(this.dir, 'docker.sock');
  }

  /** This daemon's /etc/docker/certs.d (with httpsProxy; the system's otherwise). */
  get certsDir(): string {
    return join(this.dir, 'etc', 'certs.d');
  }

  static async start(options: DockerOptions = {}): Promise<DockerDaemon> {
    requireRoot();
    const dockerd = requireBinary('dockerd', 'docker.io');
    const cli = requireBinary('docker', 'docker.io');
    requireBinary('containerd', 'containerd');
    const dir = await makeTempDir('docker');
    await mkdir(join(dir, 'config'));
    let command = dockerd;
    let prefix: string[] = [];
    let env = process.env;
    if (options.httpsProxy !== undefined) {
      requireBinary('unshare', 'util-linux');
      requireBinary('mount', 'mount');
      await mkdir(join(dir, 'etc', 'certs.d'), { recursive: true });
      await writeFile(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n');
      // The mount point; the docker.io package creates it anyway.
      await mkdir('/etc/docker', { recursive: true });
      command = 'unshare';
      prefix = [
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        'mount --bind "$0" /etc/docker && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"',
        join(dir, 'etc'),
        join(dir, 'resolv.conf'),
        dockerd,
      ];
      const proxy = options.httpsProxy;
      env = {
        ...process.env,
        HTTPS_PROXY: proxy,
        https_proxy: proxy,
        HTTP_PROXY: proxy,
        http_proxy: proxy,
        NO_PROXY: '',
        no_proxy: '',
      };
    }
    const daemon = startDaemon(
      'dockerd',
      command,
      [
        ...prefix,
        '--iptables=false',
        '--ip6tables=false',
        '--bridge=none',
        '--storage-driver=vfs',
        '--data-root',
        join(dir, 'data'),
        '--exec-root',
        join(dir, 'exec'),
        '--pidfile',
        join(dir, 'docker.pid'),
        '-H',
        `unix://${join(dir, 'docker.sock')}`,
      ],
      join(dir, 'dockerd.log'),
      env,
    );
    const docker = new DockerDaemon(dir, cli, daemon);
    try {
      await waitFor(
        'dockerd to answer',
        async () => {
          if (daemon.exited()) throw new Error('dockerd exited');
          return (await docker.run(['version'], 5_000, true)).code === 0;
        },
        60_000,
        async () => `--- dockerd log (tail) ---\n${await daemon.tail()}`,
      );
    } catch (err) {
      await docker.stop();
      throw err;
    }
    return docker;
  }

  async run(args: readonly string[], timeoutMs = LONG, allowFailure = false): Promise<RunResult> {
    return run(this.cli, ['-H', `unix://${this.socket}`, ...args], {
      timeoutMs,
      allowFailure,
      env: { ...process.env, DOCKER_CONFIG: join(this.dir, 'config') },
    });
  }

  async logTail(lines = 40): Promise<string> {
    return this.daemon.tail(lines);
  }

  /** Trusts caCert for registry `host` (host:port): certs.d/HOST/ca.crt, read by dockerd on each connection. */
  async trustCa(host: string, caCert: string): Promise<void> {
    await mkdir(join(this.certsDir, host), { recursive: true });
    await copyFile(caCert, join(this.certsDir, host, 'ca.crt'));
  }

  async untrustCa(host: string): Promise<void> {
    await rm(join(this.certsDir, host), { recursive: true, force: true });
  }

  /** docker login (credentials land in this daemon's DOCKER_CONFIG/config.json). */
  async login(host: string, login: Login): Promise<RunResult> {
    return this.run(['login', '--username', login.user, '--password', login.password, host], 60_000);
  }

  async logout(host: string): Promise<RunResult> {
    return this.run(['logout', host], 60_000);
  }

  /** What docker login stored for `host` in config.json: the basic `auth` and the `identitytoken`, if any. */
  async storedLogin(host: string): Promise<{ auth?: string; identitytoken?: string } | undefined> {
    const text = await readFile(join(this.dir, 'config', 'config.json'), 'utf8').catch(() => '{}');
    const config = JSON.parse(text) as { auths?: Record<string, { auth?: string; identitytoken?: string }> };
    return config.auths?.[host];
  }

  /** `docker load -i archive`; returns the loaded image reference(s) docker printed. */
  async load(archive: string): Promise<string> {
    return (await this.run(['load', '--quiet', '-i', archive])).stdout.trim();
  }

  async tag(src: string, dest: string): Promise<void> {
    await this.run(['tag', src, dest], 60_000);
  }

  /** docker push; returns the manifest digest and size docker printed. */
  async push(ref: string): Promise<{ digest: string; size: number; output: string }> {
    const result = await this.run(['push', ref]);
    const match = /digest: (sha256:[0-9a-f]{64}) size: (\d+)/.exec(result.stdout);
    if (match?.[1] === undefined || match[2] === undefined) {
      throw new Error(`docker push ${ref}: no digest in the output:\n${result.stdout}`);
    }
    return { digest: match[1], size: Number(match[2]), output: result.stdout };
  }

  async pull(ref: string, extra: string[] = [], allowFailure = false): Promise<RunResult> {
    return this.run(['pull', ...extra, ref], LONG, allowFailure);
  }

  async inspect(ref: string): Promise<DockerImage> {
    const result = await this.run(['image', 'inspect', ref], 60_000);
    const [image] = JSON.parse(result.stdout) as DockerImage[];
    if (image === undefined) throw new Error(`docker image inspect ${ref}: no image`);
    return image;
  }

  async removeImages(...refs: string[]): Promise<void> {
    await this.run(['rmi', '--force', ...refs], 120_000, true);
  }

  /** Removes every image, so that the next pull downloads everything. */
  async removeAllImages(): Promise<void> {
    const ids = (await this.run(['images', '--all', '--quiet'], 60_000)).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await this.run(['rmi', '--force', ...new Set(ids)], 120_000);
  }

  async stop(): Promise<void> {
    await this.daemon.stop(30_000);
    await removeTempDir(this.dir);
  }
}

// ---------------------------------------------------------------------------------------------------------

function userFlags(login: Login | undefined): string[] {
  return login === undefined ? [] : ['--user', `${login.user}:${login.password}`];
}

export class Containerd {
  /** Registries (host:port) reached over HTTPS with a hosts.toml; see trust(). */
  private readonly trusted = new Set<string>();

  private constructor(
    readonly dir: string,
    private readonly ctrBin: string,
    private readonly daemon: Daemon,
  ) {}

  get socket(): string {
    return join(this.dir, 'containerd.sock');
  }

  static async start(): Promise<Containerd> {
    requireRoot();
    const bin = requireBinary('containerd', 'containerd');
    const ctrBin = requireBinary('ctr', 'containerd');
    const dir = await makeTempDir('containerd');
    const config = join(dir, 'config.toml');
    await writeFile(
      config,
      [
        'version = 2',
        `root = "${join(dir, 'root')}"`,
        `state = "${join(dir, 'state')}"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",',
        '  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",',
        '  "io.containerd.snapshotter.v1.aufs"]',
        '[grpc]',
        `  address = "${join(dir, 'containerd.sock')}"`,
        '[ttrpc]',
        `  address = "${join(dir, 'containerd.sock.ttrpc')}"`,
        '[debug]',
        '  address = ""',
        '[metrics]',
        '  address = ""',
        '[plugins]',
        '  [plugins."io.containerd.metadata.v1.bolt"]',
        '    content_sharing_policy = "isolated"',
        '  [plugins."io.containerd.internal.v1.opt"]',
        `    path = "${join(dir, 'opt')}"`,
        '',
      ].join('\n'),
    );
    const daemon = startDaemon('containerd', bin, ['--config', config], join(dir, 'containerd.log'));
    const containerd = new Containerd(dir, ctrBin, daemon);
    try {
      await waitFor(
        'containerd to answer',
        async () => {
          if (daemon.exited()) throw new Error('containerd exited');
          return (await containerd.ctr('default', ['version'], 5_000, true)).code === 0;
        },
        60_000,
        async () => `--- containerd log (tail) ---\n${await daemon.tail()}`,
      );
    } catch (err) {
      await containerd.stop();
      throw err;
    }
    return containerd;
  }

  async ctr(
    namespace: string,
    args: readonly string[],
    timeoutMs = LONG,
    allowFailure = false,
  ): Promise<RunResult> {
    return run(this.ctrBin, ['-a', this.socket, '-n', namespace, ...args], { timeoutMs, allowFailure });
  }

  async logTail(lines = 40): Promise<string> {
    return this.daemon.tail(lines);
  }

  /** Imports an OCI layout (as a tar) into `namespace`; its refs become `${baseName}:${tag}`. */
  async importLayout(
    namespace: string,
    layout: string,
    baseName: string,
    allPlatforms = false,
  ): Promise<void> {
    const archive = join(this.dir, `import-${Date.now()}.tar`);
    await writeDirTar(layout, archive);
    try {
      await this.ctr(namespace, [
        'images',
        'import',
        '--no-unpack',
        ...(allPlatforms ? ['--all-platforms'] : []),
        '--base-name',
        baseName,
        archive,
      ]);
    } finally {
      await rm(archive, { force: true });
    }
  }

  /**
   * Reaches registry `host` (host:port) over HTTPS, verifying its certificate against caCert (without
   * one: against the system roots only). Writes HOSTS_DIR/HOST/hosts.toml, which push and pull then use
   * (--hosts-dir): ctr 1.6 takes loopback registries for plain HTTP otherwise, even with --tlscacert.
   */
  async trust(host: string, caCert?: string): Promise<void> {
    await mkdir(join(this.hostsDir, host), { recursive: true });
    await writeFile(
      join(this.hostsDir, host, 'hosts.toml'),
      [
        `server = "https://${host}"`,
        ...(caCert === undefined ? [] : [`ca = ${JSON.stringify(caCert)}`]),
        // containerd 1.6 refuses a hosts.toml without a host table (and falls back to plain HTTP); an
        // empty one keeps the server as the only endpoint (each [host."..."] entry is tried before it).
        '[host]',
        '',
      ].join('\n'),
    );
    this.trusted.add(host);
  }

  private get hostsDir(): string {
    return join(this.dir, 'hosts');
  }

  /** --hosts-dir for registries given to trust(), --plain-http for the others. */
  private registryFlags(ref: string): string[] {
    const host = ref.split('/')[0] ?? '';
    return this.trusted.has(host) ? ['--hosts-dir', this.hostsDir] : ['--plain-http'];
  }

  async push(namespace: string, ref: string, login?: Login): Promise<RunResult> {
    return this.ctr(namespace, ['images', 'push', ...this.registryFlags(ref), ...userFlags(login), ref]);
  }

  async pull(
    namespace: string,
    ref: string,
    allPlatforms = false,
    allowFailure = false,
    login?: Login,
  ): Promise<RunResult> {
    return this.ctr(
      namespace,
      [
        'images',
        'pull',
        ...this.registryFlags(ref),
        ...userFlags(login),
        ...(allPlatforms ? ['--all-platforms'] : []),
        ref,
      ],
      LONG,
      allowFailure,
    );
  }

  async tag(namespace: string, src: string, dest: string): Promise<void> {
    await this.ctr(namespace, ['images', 'tag', src, dest], 60_000);
  }

  /** The digest an image name points at (manifest or index). */
  async target(namespace: string, ref: string): Promise<{ mediaType: string; digest: string }> {
    const result = await this.ctr(namespace, ['images', 'ls'], 60_000);
    for (const line of result.stdout.split('\n')) {
      const [name, mediaType, digest] = line.trim().split(/\s+/);
      if (name === ref && mediaType !== undefined && digest !== undefined) return { mediaType, digest };
    }
    throw new Error(`ctr: no image ${ref} in namespace ${namespace}:\n${result.stdout}`);
  }

  /** The sha256 of a blob as read back from the namespace's content store (`ctr content get`). */
  async contentDigest(namespace: string, digest: string): Promise<string> {
    return (
      await hashCommandOutput(this.ctrBin, ['-a', this.socket, '-n', namespace, 'content', 'get', digest])
    ).digest;
  }

  async stop(): Promise<void> {
    await this.daemon.stop(30_000);
    if (existsSync(this.dir)) await removeTempDir(this.dir);
  }
}
