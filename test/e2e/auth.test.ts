// Real clients (skopeo 1.9, podman 4.3, docker 20.10, containerd 1.6 / ctr) against the registry with
// authentication, over HTTPS verified against a test CA made with openssl in a temp dir: no client is told
// to skip verification or to treat the registry as insecure. For each registry under test (an AuthTarget)
// and each client, in order:
//   - the client refuses the registry's certificate until it trusts the test CA;
//   - a writer logs in and pushes a small image to a private and a public repository; the registry serves
//     the digest the client reports; every exchange went over TLS;
//   - the writer pulls the image back, into an empty local store, with the same digest;
//   - a wrong password is refused;
//   - anonymously, the public image pulls and the private one is refused as unauthorized;
//   - a pull-only user pulls the private image, and is denied a push.
// The targets here are the standalone server (dist/registry.mjs: npm run build) with token auth (its
// built-in issuer) and with htpasswd (basic) auth, and the local AWS emulation (dist/local-aws.mjs, built
// here: API Gateway front -> Lambda handler -> fauxqs as S3, DynamoDB Local, a local Secrets Manager) with
// token auth, the AWS default; all with the same `access` policy and users. Each joins through
// describeAuthTarget, with the same matrix.
//
// dockerd 20.10 treats every 127.0.0.0/8 registry as insecure (it skips certificate verification there,
// ignores certs.d, and falls back to plain HTTP), so docker reaches the registry by a name that never
// resolves, through a CONNECT proxy, with the CA in its private certs.d: see DockerOptions.httpsProxy.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildLocalAws } from '../../bin/local/local-aws-process.js';
import { LOCAL_AWS_SERVICE } from '../../bin/local/local-aws.js';
import { RegistryApi, writeHtpasswd, writeSigningKey, type AuthMode, type Login } from './harness/auth.js';
import { Containerd, DockerDaemon, Podman, Skopeo } from './harness/clients.js';
import { CommandError, removeTempDir, Timings } from './harness/exec.js';
import { httpRequestOnce } from './harness/http.js';
import { verifyLayoutBlobs, writeRandomImage, type ImageInfo } from './harness/images.js';
import { startConnectProxy, type ConnectProxy } from './harness/proxy.js';
import { RegistryUnderTest } from './harness/registry.js';
import { createTestCa, REGISTRY_HOSTNAME, type TestCa } from './harness/tls.js';

const WRITER: Login = { user: 'alice', password: 'alice-e2e-password' };
const READER: Login = { user: 'reader', password: 'reader-e2e-password' };
const SERVICE = 'registry.test';

/** The policy under test: writers may do everything, the reader only pull, anyone pull public/**. */
const ACCESS = {
  groups: { writers: [WRITER.user] },
  rules: [
    { repositories: ['**'], groups: ['writers'], actions: ['pull', 'push', 'delete', 'catalog'] },
    { repositories: ['**'], users: [READER.user], actions: ['pull'] },
    { repositories: ['public/**'], anonymous: true, actions: ['pull'] },
  ],
};

/** A registry with authentication, served over HTTPS with a certificate of the test CA. */
interface AuthTarget {
  /** Short and unique: names ctr namespaces and temp files. */
  id: string;
  mode: AuthMode;
  /** Serves HTTPS only, behind the recording proxy (which serves the same certificate). */
  registry: RegistryUnderTest;
  /** The CA (PEM file) that signed the registry's certificate. */
  caCert: string;
  /** May pull and push everything. */
  writer: Login;
  /** May only pull. */
  reader: Login;
}

type ClientName = 'skopeo' | 'podman' | 'docker' | 'ctr';
const CLIENTS: readonly ClientName[] = ['skopeo', 'podman', 'docker', 'ctr'];

/**
 * An anonymous pull of a public repository under htpasswd (basic) auth, per client (under token auth,
 * every client pulls it).
 */
const ANONYMOUS_PUBLIC_PULL_UNDER_BASIC: Record<
  ClientName,
  { pulls: true } | { refusedBy: 'client' | 'registry'; message: RegExp }
> = {
  // ctr sends no Authorization header without credentials.
  ctr: { pulls: true },
  // docker 20.10 gives up on a Basic challenge when it has no credentials (as against distribution).
  docker: { refusedBy: 'client', message: /no basic auth credentials/ },
  // containers/image answers a Basic challenge without credentials with `Authorization: Basic Og==`
  // (an empty user and password), which the registry takes as anonymous.
  skopeo: { pulls: true },
  podman: { pulls: true },
};

const UNTRUSTED = /x509: certificate signed by unknown authority/;
const WRONG_PASSWORD = /unauthorized|invalid username/i;
// docker under basic auth refuses by itself: "no basic auth credentials".
const NOT_ANONYMOUS = /unauthorized|denied|authentication required|authorization|no basic auth credentials/i;
const DENIED = /denied|forbidden/i;

// ---------------------------------------------------------------------------------------------------------
// What every target shares: the CA, the test image, the clients (dockerd and containerd start once).

interface Fixture {
  work: string;
  ca: TestCa;
  image: ImageInfo;
  /** The image as a docker-archive (for docker load), tagged e2e/auth:v1. */
  dockerArchive: string;
  skopeo: Skopeo;
  podman: Podman;
  docker: DockerDaemon;
  containerd: Containerd;
  /** dockerd's way to the registry by name. */
  connectProxy: ConnectProxy;
  timings: Timings;
}

const timings = new Timings('auth');
const setUp: Partial<Fixture> = { timings };

function fixture(): Fixture {
  const { work, ca, image, dockerArchive, skopeo, podman, docker, containerd, connectProxy } = setUp;
  if (
    work === undefined ||
    ca === undefined ||
    image === undefined ||
    dockerArchive === undefined ||
    skopeo === undefined ||
    podman === undefined ||
    docker === undefined ||
    containerd === undefined ||
    connectProxy === undefined
  ) {
    throw new Error('e2e: the auth suite was not set up (see the beforeAll failure)');
  }
  return { work, ca, image, dockerArchive, skopeo, podman, docker, containerd, connectProxy, timings };
}

beforeAll(async () => {
  // Lowercase: podman names an image it loads from oci:PATH after the path.
  setUp.work = join(tmpdir(), `registry-e2e-auth-${randomBytes(6).toString('hex')}`);
  await mkdir(setUp.work);
  const work = setUp.work;
  const ca = await timings.time('make the test CA (openssl)', () => createTestCa());
  setUp.ca = ca;
  setUp.connectProxy = await startConnectProxy(REGISTRY_HOSTNAME);
  const httpsProxy = `http://127.0.0.1:${setUp.connectProxy.port}`;
  // Started together; each is kept as soon as it exists, so afterAll stops it even if another fails.
  const started = await Promise.allSettled([
    timings.time('start dockerd', async () => {
      setUp.docker = await DockerDaemon.start({ httpsProxy });
    }),
    timings.time('start containerd', async () => {
      setUp.containerd = await Containerd.start();
    }),
    (async () => {
      setUp.skopeo = await Skopeo.create({ caCert: ca.caCert });
      setUp.podman = await Podman.create({ caCert: ca.caCert });
      // One small layer: every client sends a layer in one request (one PATCH, or one PUT), and the local
      // AWS front refuses a request whose Lambda event exceeds 6 MB (API Gateway and Lambda's limits;
      // binary bodies go base64-encoded: about 4.4 MiB of raw body). 384 KiB stays well below.
      const image = await writeRandomImage(join(work, 'image'), 'auth', [384 * 1024]);
      setUp.image = image;
      const archive = join(work, 'image.docker.tar');
      await setUp.skopeo.copy(`oci:${image.layout}:${image.tag}`, `docker-archive:${archive}:e2e/auth:v1`, {
        preserveDigests: false,
      });
      setUp.dockerArchive = archive;
    })(),
  ]);
  const failed = started.find((result) => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason as Error;
});

afterAll(async () => {
  const { docker, containerd, connectProxy, skopeo, podman, ca, work } = setUp;
  const stopped = await Promise.allSettled([
    docker?.stop(),
    containerd?.stop(),
    connectProxy?.close(),
    skopeo?.dispose(),
    podman?.dispose(),
    ca?.dispose(),
  ]);
  await removeTempDir(work);
  console.log(timings.report());
  const failed = stopped.find((result) => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason as Error;
});

// ---------------------------------------------------------------------------------------------------------
// The clients, behind one interface.

/** One client against one target. Commands that fail reject with a CommandError (its output included). */
interface ClientUnderTest {
  readonly name: ClientName;
  /** The registry's host:port as this client names it. */
  readonly host: string;
  /** Logs in with TLS verified against the system roots only: must fail on the certificate. */
  loginWithoutCa(login: Login): Promise<unknown>;
  /** From now on, verifies the registry's certificate against the test CA. */
  trustCa(): Promise<void>;
  /** The client's login (ctr has none: it uses the credentials on each command). */
  login(login: Login): Promise<unknown>;
  logout(): Promise<unknown>;
  /**
   * What the wrong-password test runs: the client's login; ctr, which has none, pulls the private image
   * with the credentials (the public one needs none: ctr asks without credentials first, and gets it).
   */
  checkCredentials(login: Login): Promise<unknown>;
  /** Pushes the test image to repo:v1; the manifest digest the client reports. */
  pushImage(repo: string): Promise<string>;
  /** Pulls repo:v1 into an empty local store; the manifest digest of what it pulled. */
  pull(repo: string): Promise<string>;
  /** Pushes the image it last pulled from repo:v1 to repo:tag. */
  pushPulledAs(repo: string, tag: string): Promise<unknown>;
}

function clientUnderTest(name: ClientName, fx: Fixture, target: AuthTarget): ClientUnderTest {
  switch (name) {
    case 'skopeo':
      return skopeoClient(fx, target);
    case 'podman':
      return podmanClient(fx, target);
    case 'docker':
      return dockerClient(fx, target);
    case 'ctr':
      return ctrClient(fx, target);
  }
}

/** skopeo: `skopeo login` for the login checks; copies name their credentials (--src/--dest-creds). */
function skopeoClient(fx: Fixture, target: AuthTarget): ClientUnderTest {
  const { skopeo, image } = fx;
  const host = target.registry.host;
  let creds: Login | undefined;
  let pulls = 0;
  return {
    name: 'skopeo',
    host,
    loginWithoutCa: (login) => skopeo.login(host, login, { trustCa: false }),
    trustCa: () => Promise.resolve(),
    async login(login) {
      await skopeo.login(host, login);
      creds = login;
    },
    async logout() {
      await skopeo.logout(host);
      creds = undefined;
    },
    checkCredentials: (login) => skopeo.login(host, login),
    async pushImage(repo) {
      const digestFile = join(skopeo.dir, `digest-${target.id}-${repo.replaceAll('/', '_')}`);
      await skopeo.copy(`oci:${image.layout}:${image.tag}`, `docker://${host}/${repo}:v1`, {
        destCreds: creds ?? 'anonymous',
        extra: ['--digestfile', digestFile],
      });
      return (await readFile(digestFile, 'utf8')).trim();
    },
    async pull(repo) {
      const dest = join(skopeo.dir, `pulled-${target.id}-${++pulls}`);
      await skopeo.copy(`docker://${host}/${repo}:v1`, `oci:${dest}:v1`, { srcCreds: creds ?? 'anonymous' });
      await verifyLayoutBlobs(dest);
      const index = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      return index.manifests[0]?.digest ?? '';
    },
    pushPulledAs: (repo, tag) =>
      skopeo.copy(`docker://${host}/${repo}:v1`, `docker://${host}/${repo}:${tag}`, {
        srcCreds: creds ?? 'anonymous',
        destCreds: creds ?? 'anonymous',
      }),
  };
}

/** podman: login into its auth file (--cert-dir with the CA for every command). */
function podmanClient(fx: Fixture, target: AuthTarget): ClientUnderTest {
  const { podman, image } = fx;
  const host = target.registry.host;
  return {
    name: 'podman',
    host,
    loginWithoutCa: (login) => podman.login(host, login, { trustCa: false }),
    trustCa: () => Promise.resolve(),
    login: (login) => podman.login(host, login),
    logout: () => podman.logout(host),
    checkCredentials: (login) => podman.login(host, login),
    async pushImage(repo) {
      const ref = `${host}/${repo}:v1`;
      await podman.loadOci(image.layout, image.tag, ref);
      return podman.push(ref, `docker://${ref}`);
    },
    async pull(repo) {
      await podman.removeAllImages();
      const ref = `${host}/${repo}:v1`;
      await podman.pull(ref);
      return (await podman.inspect(ref)).Digest;
    },
    async pushPulledAs(repo, tag) {
      const ref = `${host}/${repo}:${tag}`;
      await podman.run(['tag', `${host}/${repo}:v1`, ref], 60_000);
      return podman.push(ref, `docker://${ref}`);
    },
  };
}

/** docker: by name through the CONNECT proxy, the CA in its certs.d, login into its DOCKER_CONFIG. */
function dockerClient(fx: Fixture, target: AuthTarget): ClientUnderTest {
  const { docker, connectProxy, dockerArchive } = fx;
  const port = Number(target.registry.host.split(':')[1]);
  connectProxy.allow(port);
  const host = `${REGISTRY_HOSTNAME}:${port}`;
  return {
    name: 'docker',
    host,
    async loginWithoutCa(login) {
      await docker.untrustCa(host);
      return docker.login(host, login);
    },
    trustCa: () => docker.trustCa(host, target.caCert),
    login: (login) => docker.login(host, login),
    logout: () => docker.logout(host),
    checkCredentials: (login) => docker.login(host, login),
    async pushImage(repo) {
      await docker.load(dockerArchive);
      await docker.tag('e2e/auth:v1', `${host}/${repo}:v1`);
      return (await docker.push(`${host}/${repo}:v1`)).digest;
    },
    async pull(repo) {
      await docker.removeAllImages();
      const ref = `${host}/${repo}:v1`;
      await docker.pull(ref);
      const digests = (await docker.inspect(ref)).RepoDigests;
      const prefix = `${host}/${repo}@`;
      return digests.find((d) => d.startsWith(prefix))?.slice(prefix.length) ?? '';
    },
    async pushPulledAs(repo, tag) {
      await docker.tag(`${host}/${repo}:v1`, `${host}/${repo}:${tag}`);
      return docker.push(`${host}/${repo}:${tag}`);
    },
  };
}

/** ctr: a hosts.toml with the CA; --user on each command; every pull into a fresh namespace. */
function ctrClient(fx: Fixture, target: AuthTarget): ClientUnderTest {
  const { containerd, image } = fx;
  const host = target.registry.host;
  let creds: Login | undefined;
  let namespaces = 0;
  let lastPull = '';
  return {
    name: 'ctr',
    host,
    async loginWithoutCa(login) {
      await containerd.trust(host);
      return containerd.pull(`${target.id}-untrusted`, `${host}/ctr/app:v1`, false, false, login);
    },
    trustCa: () => containerd.trust(host, target.caCert),
    login(login) {
      creds = login;
      return Promise.resolve();
    },
    logout() {
      creds = undefined;
      return Promise.resolve();
    },
    checkCredentials: (login) =>
      containerd.pull(`${target.id}-check-${++namespaces}`, `${host}/ctr/app:v1`, false, false, login),
    async pushImage(repo) {
      const namespace = `${target.id}-push`;
      await containerd.importLayout(namespace, image.layout, `${host}/${repo}`);
      const ref = `${host}/${repo}:${image.tag}`;
      await containerd.push(namespace, ref, creds);
      return (await containerd.target(namespace, ref)).digest;
    },
    async pull(repo) {
      const namespace = `${target.id}-pull-${++namespaces}`;
      const ref = `${host}/${repo}:v1`;
      await containerd.pull(namespace, ref, false, false, creds);
      lastPull = namespace;
      return (await containerd.target(namespace, ref)).digest;
    },
    async pushPulledAs(repo, tag) {
      const ref = `${host}/${repo}:${tag}`;
      await containerd.tag(lastPull, `${host}/${repo}:v1`, ref);
      return containerd.push(lastPull, ref, creds);
    },
  };
}

/** The output of a command that must fail (the test fails if it succeeds). */
async function failureOf(command: Promise<unknown>): Promise<string> {
  try {
    await command;
  } catch (err) {
    if (err instanceof CommandError) return `${err.result.stderr}\n${err.result.stdout}`;
    throw err;
  }
  return expect.fail('the command succeeded, but it was expected to fail');
}

// ---------------------------------------------------------------------------------------------------------
// The matrix: every client against one target.

/**
 * Registers the suite for one target: `start` makes it (after the shared fixture is up); it is stopped
 * after the last client. `targetTests` registers the target's own tests, run first; then the clients run
 * one after another, each through the steps in the file's header.
 */
function describeAuthTarget(
  title: string,
  start: (fx: Fixture) => Promise<AuthTarget>,
  options: { clients?: readonly ClientName[]; targetTests?: (target: () => AuthTarget) => void } = {},
): void {
  describe(title, () => {
    let starting: Promise<AuthTarget> | undefined;
    let started: AuthTarget | undefined;
    const target = (): AuthTarget => {
      if (started === undefined) throw new Error(`e2e: ${title} was not started`);
      return started;
    };

    beforeAll(async () => {
      starting = timings.time(`start ${title}`, () => start(fixture()));
      started = await starting;
    });
    afterAll(async () => {
      // Also after a failed or timed-out beforeAll: a start still under way is awaited, and what it started
      // is stopped (a start that fails stops by itself what it had started).
      const registry = (await starting?.catch(() => undefined))?.registry;
      if (registry === undefined) return;
      await registry.stop();
      expect(registry.leftoverProcesses, `processes of ${title} still running after it stopped`).toEqual([]);
    });
    beforeEach(({ onTestFailed }) => {
      onTestFailed(async () => {
        if (started === undefined) return;
        const fx = setUp;
        console.error(
          `e2e [auth: ${title}] failure diagnostics\n${await started.registry.diagnostics()}\n` +
            `--- TLS handshakes that failed ---\n${started.registry.handshakeFailures.join('\n')}\n` +
            `--- CONNECT tunnels ---\n${JSON.stringify(fx.connectProxy?.tunnels ?? [])}\n` +
            `--- dockerd log (tail) ---\n${(await fx.docker?.logTail()) ?? ''}\n` +
            `--- containerd log (tail) ---\n${(await fx.containerd?.logTail()) ?? ''}`,
        );
      });
    });

    options.targetTests?.(target);

    for (const name of options.clients ?? CLIENTS) {
      describe(name, () => {
        let client: ClientUnderTest | undefined;
        const use = (): ClientUnderTest => {
          client ??= clientUnderTest(name, fixture(), target());
          return client;
        };
        const step = <T>(what: string, fn: () => Promise<T>): Promise<T> =>
          timings.time(`${target().id} ${name}: ${what}`, fn);
        const privateRepo = `${name}/app`;
        const publicRepo = `public/${name}`;
        let pushed = '';

        it("refuses the registry's certificate until it trusts the test CA", async () => {
          const { registry } = target();
          const failedBefore = registry.handshakeFailures.length;
          const output = await step('login without the CA', () =>
            failureOf(use().loginWithoutCa(target().writer)),
          );
          expect(output).toMatch(UNTRUSTED);
          expect(
            registry.handshakeFailures.length,
            'the client aborted a TLS handshake with the registry',
          ).toBeGreaterThan(failedBefore);
          await use().trustCa();
        });

        it('a writer logs in and pushes over TLS; the registry serves the digests the client reports', async () => {
          const { registry, writer, mode, caCert } = target();
          const mark = registry.mark();
          await step('login', () => use().login(writer));
          pushed = await step('push', () => use().pushImage(privateRepo));
          const pushedPublic = await use().pushImage(publicRepo);
          expect(pushed).toMatch(/^sha256:[0-9a-f]{64}$/);
          expect(pushedPublic).toBe(pushed);
          const api = new RegistryApi(registry.directUrl, await readFile(caCert, 'utf8'), writer);
          for (const repo of [privateRepo, publicRepo]) {
            expect(await api.manifestDigest(repo, 'v1'), `HEAD /v2/${repo}/manifests/v1`).toEqual({
              status: 200,
              digest: pushed,
            });
          }
          const exchanges = registry.since(mark);
          expect(exchanges.length).toBeGreaterThan(0);
          for (const exchange of exchanges) expect(exchange.tls, `#${exchange.seq}`).toMatch(/^TLSv1\.[23]$/);
          expect(
            exchanges.filter((e) => e.method === 'PUT' && e.url === `/v2/${privateRepo}/manifests/v1`),
          ).toContainEqual(expect.objectContaining({ status: 201 }));
          if (name === 'docker') {
            expect(fixture().connectProxy.tunnels).toContainEqual({ target: use().host, allowed: true });
            const stored = await fixture().docker.storedLogin(use().host);
            if (mode === 'token') {
              // docker login keeps the refresh token the issuer returned for offline_token=true, not the password.
              expect(stored?.identitytoken, 'identity token in config.json').toMatch(/^eyJ/);
              expect(Buffer.from(stored?.auth ?? '', 'base64').toString()).toBe(`${writer.user}:`);
            } else {
              expect(Buffer.from(stored?.auth ?? '', 'base64').toString()).toBe(
                `${writer.user}:${writer.password}`,
              );
            }
          }
        });

        it('the writer pulls the image back with the same digest', async () => {
          const pulled = await step('pull', () => use().pull(privateRepo));
          expect(pulled).toBe(pushed);
        });

        it('refuses a wrong password', async () => {
          const { registry, writer } = target();
          const mark = registry.mark();
          const output = await failureOf(use().checkCredentials({ ...writer, password: 'not-the-password' }));
          expect(output).toMatch(WRONG_PASSWORD);
          // Basic credentials on a /v2/ request, or the login at the token endpoint, were refused.
          const refused = registry
            .since(mark)
            .filter(
              (e) =>
                (e.authScheme === 'Basic' || !e.url.startsWith('/v2/')) &&
                (e.status === 400 || e.status === 401),
            );
          expect(refused, 'requests the registry refused for the wrong password').not.toEqual([]);
          for (const e of refused.filter((r) => r.method !== 'HEAD')) {
            expect(e.errorCode, `#${e.seq} ${e.method} ${e.url}`).toBe('UNAUTHORIZED');
          }
        });

        it('anonymously, pulls the public image and is refused the private one', async () => {
          const { registry, mode } = target();
          await use().logout();
          const expected = mode === 'token' ? { pulls: true } : ANONYMOUS_PUBLIC_PULL_UNDER_BASIC[name];
          let mark = registry.mark();
          if ('pulls' in expected) {
            expect(await step('anonymous pull', () => use().pull(publicRepo))).toBe(pushed);
          } else {
            expect(await failureOf(use().pull(publicRepo))).toMatch(expected.message);
            if (expected.refusedBy === 'registry') {
              expect(registry.since(mark)).toContainEqual(
                expect.objectContaining({ status: 401, authScheme: 'Basic', errorCode: 'UNAUTHORIZED' }),
              );
            }
          }
          mark = registry.mark();
          expect(await failureOf(use().pull(privateRepo))).toMatch(NOT_ANONYMOUS);
          const served = registry
            .since(mark)
            .filter((e) => e.url.startsWith(`/v2/${privateRepo}/`) && e.status < 300);
          expect(served, 'what the registry served of the private repository').toEqual([]);
        });

        it('a pull-only user pulls the private image and is denied a push', async () => {
          const { registry, reader, writer, caCert } = target();
          await use().login(reader);
          expect(await step('pull as reader', () => use().pull(privateRepo))).toBe(pushed);
          const mark = registry.mark();
          expect(await failureOf(use().pushPulledAs(privateRepo, 'by-reader'))).toMatch(DENIED);
          expect(registry.since(mark)).toContainEqual(
            expect.objectContaining({ status: 403, errorCode: 'DENIED' }),
          );
          const api = new RegistryApi(registry.directUrl, await readFile(caCert, 'utf8'), writer);
          expect((await api.manifestDigest(privateRepo, 'by-reader')).status).toBe(404);
          await use().logout();
        });
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// The standalone server.

async function startStandalone(fx: Fixture, mode: AuthMode): Promise<AuthTarget> {
  const dir = join(fx.work, `standalone-${mode}`);
  await mkdir(dir);
  const htpasswd = join(dir, 'htpasswd');
  await writeHtpasswd(htpasswd, [WRITER, READER]);
  let auth: Record<string, unknown>;
  if (mode === 'token') {
    const signingKey = join(dir, 'signing-key.pem');
    await writeSigningKey(signingKey);
    auth = {
      token: { realm: '/auth/token', service: SERVICE, issuer: SERVICE, signingkey: signingKey, htpasswd },
    };
  } else {
    auth = { htpasswd: { realm: 'Registry', path: htpasswd } };
  }
  const registry = await RegistryUnderTest.start('ours', {
    tls: { certificate: fx.ca.serverCert, key: fx.ca.serverKey, ca: fx.ca.caCert },
    config: { auth, access: ACCESS },
  });
  return { id: mode, mode, registry, caCert: fx.ca.caCert, writer: WRITER, reader: READER };
}

/**
 * The registry itself (not only the proxy in front) listens for HTTPS only, and challenges: under token
 * auth with an https realm for `service`, on the host the client asked for (what the clients see through
 * the proxy, which passes the Host header on).
 */
function httpsOnlyTests(service: string): (target: () => AuthTarget) => void {
  return (target) => {
    it('answers only HTTPS: plain HTTP gets no response, HTTPS a challenge', async () => {
      const { registry, mode } = target();
      await expect(
        httpRequestOnce(`http://127.0.0.1:${registry.directPort}/v2/`, { timeoutMs: 5_000 }),
        'a plain HTTP request to the registry',
      ).rejects.toThrow();
      for (const url of [registry.directUrl, registry.url]) {
        const res = await httpRequestOnce(`${url}/v2/`, { ca: registry.caPem });
        expect(res.status, `GET ${url}/v2/`).toBe(401);
        if (mode === 'token') {
          expect(res.headers['www-authenticate'], `GET ${url}/v2/`).toBe(
            `Bearer realm="${url}/auth/token",service="${service}"`,
          );
        } else {
          expect(res.headers['www-authenticate'], `GET ${url}/v2/`).toMatch(/^Basic realm="Registry"/);
        }
      }
    });
  };
}

// ---------------------------------------------------------------------------------------------------------
// The local AWS emulation, as `npm run local:aws -- --auth token ... --tls-certificate ...` runs it.

async function startLocalAws(fx: Fixture): Promise<AuthTarget> {
  const dir = join(fx.work, 'local-aws');
  await mkdir(dir);
  const htpasswd = join(dir, 'htpasswd');
  await writeHtpasswd(htpasswd, [WRITER, READER]);
  await timings.time('build dist/local-aws.mjs (esbuild)', () => buildLocalAws());
  const registry = await RegistryUnderTest.start('local-aws', {
    s3: 'fauxqs',
    tls: { certificate: fx.ca.serverCert, key: fx.ca.serverKey, ca: fx.ca.caCert },
    // The same rules as the standalone targets (anonymous pull of public/** among them); the service
    // and token lifetime stay the construct's defaults.
    auth: { type: 'token', htpasswd, access: ACCESS },
  });
  return { id: 'aws', mode: 'token', registry, caCert: fx.ca.caCert, writer: WRITER, reader: READER };
}

describe('auth over TLS with a test CA', () => {
  const standalone = { targetTests: httpsOnlyTests(SERVICE) };
  describeAuthTarget('standalone server, token auth', (fx) => startStandalone(fx, 'token'), standalone);
  describeAuthTarget('standalone server, htpasswd auth', (fx) => startStandalone(fx, 'htpasswd'), standalone);
  describeAuthTarget('local AWS, token auth', startLocalAws, {
    targetTests: httpsOnlyTests(LOCAL_AWS_SERVICE),
  });
});
