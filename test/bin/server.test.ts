import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bcryptLine, ecKey } from '../auth/fixtures.js';
import { freePort, RegistryProcess } from '../support/registry-process.js';
import { openssl, selfSignedCertificate } from '../support/tls.js';

const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

let dir: string;
const running: RegistryProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'registry-server-'));
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((server) => server.stop()));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function start(env: Record<string, string> = {}, args: string[] = []): Promise<RegistryProcess> {
  const port = await freePort();
  const server = await RegistryProcess.start({
    env: { REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`, ...env },
    args,
    url: `http://127.0.0.1:${port}`,
  });
  running.push(server);
  return server;
}

describe('two server processes sharing one data directory', () => {
  it('finish each other’s uploads and serve each other’s pushes', async () => {
    const env = { REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'shared') };
    const [a, b] = await Promise.all([start(env), start(env)]);
    const blob = randomBytes(3 * 1024 * 1024 + 17);
    const digest = sha256(blob);
    const [first, second, third] = [
      blob.subarray(0, 1_000_000),
      blob.subarray(1_000_000, 2_000_000),
      blob.subarray(2_000_000),
    ];

    const post = await fetch(`${a.url}/v2/shared/app/blobs/uploads/`, { method: 'POST' });
    expect(post.status).toBe(202);
    const location = post.headers.get('location') ?? '';

    // A chunk on A, the next on B (which has no running hash and must re-derive it from storage) ...
    const patch = (server: RegistryProcess, body: Uint8Array, start: number) =>
      fetch(`${server.url}${location}`, {
        method: 'PATCH',
        body,
        headers: { 'Content-Range': `${start}-${start + body.byteLength - 1}` },
      });
    expect((await patch(a, first, 0)).status).toBe(202);
    const onB = await patch(b, second, 1_000_000);
    expect(onB.status).toBe(202);
    expect(onB.headers.get('range')).toBe('0-1999999');
    // ... and the last chunk with the final PUT on A again.
    const put = await fetch(`${a.url}${location}?digest=${digest}`, { method: 'PUT', body: third });
    expect(put.status).toBe(201);

    const fromB = await fetch(`${b.url}/v2/shared/app/blobs/${digest}`);
    expect(fromB.status).toBe(200);
    expect(sha256(new Uint8Array(await fromB.arrayBuffer()))).toBe(digest);
  });

  it('completes an upload whose bytes all went to the other process with an empty PUT', async () => {
    const env = { REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'shared2') };
    const [a, b] = await Promise.all([start(env), start(env)]);
    const blob = randomBytes(512 * 1024);
    const post = await fetch(`${a.url}/v2/app/blobs/uploads/`, { method: 'POST' });
    const location = post.headers.get('location') ?? '';
    expect((await fetch(`${a.url}${location}`, { method: 'PATCH', body: blob })).status).toBe(202);
    const put = await fetch(`${b.url}${location}?digest=${sha256(blob)}`, { method: 'PUT' });
    expect(put.status).toBe(201);
    expect((await fetch(`${a.url}/v2/app/blobs/${sha256(blob)}`, { method: 'HEAD' })).status).toBe(200);
  });
});

describe('graceful shutdown', () => {
  it('lets an upload in flight finish on SIGTERM, then exits 0', async () => {
    const server = await start({ REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'drain') });
    const location =
      (await fetch(`${server.url}/v2/drain/blobs/uploads/`, { method: 'POST' })).headers.get('location') ??
      '';
    const body = randomBytes(2 * 1024 * 1024);
    const status = new Promise<number | undefined>((resolve, reject) => {
      const req = httpRequest(`${server.url}${location}`, {
        method: 'PATCH',
        headers: { 'Content-Length': body.length },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.write(body.subarray(0, 1024 * 1024));
      // The rest arrives after the signal.
      setTimeout(() => req.end(body.subarray(1024 * 1024)), 300);
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const exit = server.stop('SIGTERM');
    expect(await status).toBe(202);
    expect(await exit).toBe(0);
    await expect(fetch(`${server.url}/v2/`)).rejects.toThrow();
    expect(server.logs).toContain('"msg":"shutting down"');
  });
});

describe('configuration', () => {
  it('reads a distribution config file given as argument, with REGISTRY_* overrides on top', async () => {
    const unused = await freePort();
    const config = join(dir, 'config.yml');
    await writeFile(
      config,
      [
        'version: 0.1',
        'log:',
        '  fields:',
        '    service: registry',
        'storage:',
        '  cache:',
        '    blobdescriptor: inmemory',
        '  filesystem:',
        `    rootdirectory: ${join(dir, 'from-file')}`,
        'http:',
        `  addr: 127.0.0.1:${unused}`,
        '  headers:',
        '    X-Content-Type-Options: [nosniff]',
        '',
      ].join('\n'),
    );
    const server = await start({}, ['serve', config]);
    const response = await fetch(`${server.url}/v2/`);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    // distribution's default for a config file: deletes are disabled.
    const del = await fetch(`${server.url}/v2/a/manifests/sha256:${'0'.repeat(64)}`, { method: 'DELETE' });
    expect(del.status).toBe(405);
    expect(server.logs).toContain('storage.cache');
    expect(server.logs).toContain(join(dir, 'from-file'));
  });

  it('refuses an invalid value with a message naming the key, and exits 2', async () => {
    const result = await RegistryProcess.run({ env: { REGISTRY_STORAGE_DELETE_ENABLED: 'maybe' } });
    expect(result.code).toBe(2);
    expect(result.output).toContain('storage.delete.enabled');
  });

  it('refuses to start, rather than run open, when its htpasswd file cannot be read', async () => {
    const result = await RegistryProcess.run({
      env: { REGISTRY_AUTH_HTPASSWD_REALM: 'basic', REGISTRY_AUTH_HTPASSWD_PATH: '/nonexistent/htpasswd' },
    });
    expect(result.code).toBe(2);
    expect(result.output).toContain('auth.htpasswd.path: cannot read /nonexistent/htpasswd: ENOENT');
  });

  it('refuses an address it cannot listen on, naming http.addr', async () => {
    const result = await RegistryProcess.run({ env: { REGISTRY_HTTP_ADDR: 'nonsense' } });
    expect(result.code).toBe(2);
    expect(result.output).toContain('http.addr');
  });
});

describe('access log', () => {
  it('writes one JSON line per request with id, method, path, status, bytes and duration', async () => {
    const server = await start({ REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'log') });
    await fetch(`${server.url}/v2/nothing/here/manifests/latest`, { headers: { 'X-Request-Id': 'req-42' } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const line = server.logs
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((entry) => entry.requestId === 'req-42');
    expect(line).toMatchObject({
      msg: 'request',
      method: 'GET',
      path: '/v2/nothing/here/manifests/latest',
      status: 404,
    });
    expect(typeof line?.durationMs).toBe('number');
    expect(typeof line?.bytesOut).toBe('number');
  });
});

interface HttpsAnswer {
  status: number | undefined;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A GET over HTTPS trusting only ca (Node's fetch cannot be given a CA). */
function httpsGet(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => {
        resolve({ status: res.statusCode, headers: res.headers, body });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TLS', () => {
  let cert: string;
  let key: string;
  let otherKey: string;
  let ca: Buffer;

  beforeAll(() => {
    otherKey = join(dir, 'other-key.pem');
    // Self-signed for 127.0.0.1: the client trusts it as its CA.
    ({ certificate: cert, key } = selfSignedCertificate(dir));
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', otherKey]);
    ca = readFileSync(cert);
  });

  /** Starts an HTTPS server with env on top of the TLS settings; its https:// origin. */
  async function startTls(env: Record<string, string>): Promise<{ origin: string; server: RegistryProcess }> {
    const port = await freePort();
    const origin = `https://127.0.0.1:${port}`;
    const server = await RegistryProcess.start({
      env: {
        REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
        REGISTRY_HTTP_TLS_CERTIFICATE: cert,
        REGISTRY_HTTP_TLS_KEY: key,
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, `tls-${port}`),
        ...env,
      },
      url: origin,
    });
    running.push(server);
    return { origin, server };
  }

  it('serves HTTPS with the configured certificate and key', async () => {
    const { origin, server } = await startTls({});
    const answer = await httpsGet(`${origin}/v2/`, ca);
    expect(answer.status).toBe(200);
    expect(answer.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(server.logs).toContain('"tls":true');
  });

  it('refuses a key that is not the certificate’s: exit 2, naming http.tls.key', async () => {
    const result = await RegistryProcess.run({
      env: {
        REGISTRY_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
        REGISTRY_HTTP_TLS_CERTIFICATE: cert,
        REGISTRY_HTTP_TLS_KEY: otherKey,
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'tls-mismatch'),
      },
    });
    expect(result.code).toBe(2);
    expect(result.output).toContain(
      'registry: configuration error: http.tls.key is not the private key of http.tls.certificate',
    );
    expect(result.output).not.toContain('PRIVATE KEY');
  });

  it('refuses a certificate it cannot read, or that is not PEM: exit 2, naming http.tls.certificate', async () => {
    const env = {
      REGISTRY_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
      REGISTRY_HTTP_TLS_KEY: key,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'tls-unreadable'),
    };
    const missing = join(dir, 'missing-cert.pem');
    const absent = await RegistryProcess.run({ env: { ...env, REGISTRY_HTTP_TLS_CERTIFICATE: missing } });
    expect(absent.code).toBe(2);
    expect(absent.output).toContain(`http.tls.certificate: cannot read ${missing}: ENOENT`);
    const directory = await RegistryProcess.run({ env: { ...env, REGISTRY_HTTP_TLS_CERTIFICATE: dir } });
    expect(directory.code).toBe(2);
    expect(directory.output).toContain(`http.tls.certificate: cannot read ${dir}: EISDIR`);
    const garbage = join(dir, 'garbage.pem');
    await writeFile(garbage, 'not a certificate\n');
    const notPem = await RegistryProcess.run({ env: { ...env, REGISTRY_HTTP_TLS_CERTIFICATE: garbage } });
    expect(notPem.code).toBe(2);
    expect(notPem.output).toContain('http.tls.certificate, key or clientcas is not valid PEM');
    const noKey = await RegistryProcess.run({
      env: { ...env, REGISTRY_HTTP_TLS_CERTIFICATE: cert, REGISTRY_HTTP_TLS_KEY: join(dir, 'missing.pem') },
    });
    expect(noKey.code).toBe(2);
    expect(noKey.output).toContain('http.tls.key: cannot read');
  });

  it('asks for basic credentials over HTTPS: 401 with the challenge, then 200 with them', async () => {
    const htpasswd = join(dir, 'tls-htpasswd');
    await writeFile(htpasswd, bcryptLine('alice', 'tls-Secret-1'));
    const { origin, server } = await startTls({
      REGISTRY_AUTH_HTPASSWD_REALM: 'Registry',
      REGISTRY_AUTH_HTPASSWD_PATH: htpasswd,
    });
    const anonymous = await httpsGet(`${origin}/v2/`, ca);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toBe('Basic realm="Registry", charset="UTF-8"');
    const authorization = `Basic ${Buffer.from('alice:tls-Secret-1').toString('base64')}`;
    const signedIn = await httpsGet(`${origin}/v2/`, ca, { authorization });
    expect(signedIn.status).toBe(200);
    expect(server.logs).not.toContain('clear text');
    expect(server.logs).not.toContain('tls-Secret-1');
    // The access log names the user of an authenticated request, and no user for the refused one.
    // A request's line is written once its response has gone, so it may trail the answer a little.
    const requests = () =>
      server.logs
        .split('\n')
        .filter((line) => line.includes('"msg":"request"'))
        .map((line) => JSON.parse(line) as { status: number; user?: string });
    await expect.poll(() => requests().length).toBe(2);
    expect(requests().map(({ status, user }) => [status, user])).toEqual([
      [401, undefined],
      [200, 'alice'],
    ]);
  });

  it('serves the built-in token endpoint over HTTPS, with an https realm', async () => {
    const htpasswd = join(dir, 'tls-token-htpasswd');
    const signingKey = join(dir, 'token.key');
    await writeFile(htpasswd, bcryptLine('alice', 'tls-Secret-2'));
    await writeFile(signingKey, ecKey().pem);
    const { origin, server } = await startTls({
      REGISTRY_AUTH_TOKEN_REALM: '/auth/token',
      REGISTRY_AUTH_TOKEN_SERVICE: 'registry.test',
      REGISTRY_AUTH_TOKEN_ISSUER: 'registry.test',
      REGISTRY_AUTH_TOKEN_SIGNINGKEY: signingKey,
      REGISTRY_AUTH_TOKEN_HTPASSWD: htpasswd,
    });
    const challenge = await httpsGet(`${origin}/v2/`, ca);
    expect(challenge.status).toBe(401);
    expect(challenge.headers['www-authenticate']).toBe(
      `Bearer realm="${origin}/auth/token",service="registry.test"`,
    );
    const authorization = `Basic ${Buffer.from('alice:tls-Secret-2').toString('base64')}`;
    const issued = await httpsGet(`${origin}/auth/token?service=registry.test`, ca, { authorization });
    expect(issued.status).toBe(200);
    const { token } = JSON.parse(issued.body) as { token: string };
    const signedIn = await httpsGet(`${origin}/v2/`, ca, { authorization: `Bearer ${token}` });
    expect(signedIn.status).toBe(200);
    // Neither the password nor the token reaches the log, whose access lines record these requests.
    expect(server.logs).toContain('/auth/token?service=registry.test');
    expect(server.logs).not.toContain('tls-Secret-2');
    expect(server.logs).not.toContain(token.split('.')[2]);
  });
});

describe('authentication without TLS', () => {
  it('logs that passwords and tokens cross the network in clear text', async () => {
    const htpasswd = join(dir, 'plain-htpasswd');
    await writeFile(htpasswd, bcryptLine('alice', 'plain-Secret-1'));
    const server = await start({
      REGISTRY_AUTH_HTPASSWD_REALM: 'Registry',
      REGISTRY_AUTH_HTPASSWD_PATH: htpasswd,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'plain'),
    });
    const warning = server.logs
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((entry) => String(entry.msg).startsWith('auth is configured without http.tls'));
    expect(warning).toMatchObject({ level: 'warn' });
    expect(String(warning?.msg)).toContain('clear text');
    const response = await fetch(`${server.url}/v2/`, {
      headers: { authorization: `Basic ${Buffer.from('alice:plain-Secret-1').toString('base64')}` },
    });
    expect(response.status).toBe(200);
  });
});
