// Token authentication in the AWS deployment's shape, on one machine: `node dist/local-aws.mjs --auth token`
// (bin/local/local-aws-process.ts) runs the real Lambda handler behind the local API Gateway front, with
// fauxqs, DynamoDB Local and the local Secrets Manager holding the users and a freshly generated signing
// key. The function is configured as the CDK construct configures it: by the secrets' ARNs, read through
// AWS_ENDPOINT_URL_SECRETS_MANAGER with signed requests. Driven over HTTP as a client would: challenge,
// token, push, pull.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalAwsProcess, startLocalAwsProcess } from '../../bin/local/local-aws-process.js';
import { htpasswdFile } from '../../bin/local/local-aws.js';
import { selfSignedCertificate } from '../support/tls.js';

const USER = 'alice';
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
const SERVICE = 'ServerlessRegistry';
const REPOSITORY = 'e2e/app';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

const sha256 = (data: Uint8Array | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('local AWS with --auth token (API Gateway -> Lambda -> Secrets Manager, S3, DynamoDB Local)', () => {
  let registry: LocalAwsProcess | undefined;
  let htpasswd: string;

  const reg = (): LocalAwsProcess => {
    if (registry === undefined) throw new Error('local AWS did not start');
    return registry;
  };

  async function token(scope: string, authorization?: string): Promise<Response> {
    const url = new URL('/auth/token', reg().url);
    url.searchParams.set('service', SERVICE);
    url.searchParams.append('scope', scope);
    return fetch(url, {
      headers: authorization ? { authorization } : {},
      signal: AbortSignal.timeout(30_000),
    });
  }

  async function bearer(scope: string): Promise<string> {
    const res = await token(scope, basic(USER, PASSWORD));
    expect(res.status, `token for ${scope}`).toBe(200);
    const body = (await res.json()) as { token: string; scope: string };
    expect(body.scope).toBe(scope);
    return `Bearer ${body.token}`;
  }

  async function call(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(new URL(path, reg().url), {
      redirect: 'manual',
      signal: AbortSignal.timeout(30_000),
      ...init,
    });
  }

  /** Pushes a blob in two requests (POST, then PUT with the body and digest), as skopeo and crane do. */
  async function pushBlob(authorization: string, bytes: Uint8Array): Promise<string> {
    const digest = sha256(bytes);
    const started = await call(`/v2/${REPOSITORY}/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization },
    });
    expect(started.status, 'POST blobs/uploads/').toBe(202);
    const location = new URL(started.headers.get('location') ?? '', reg().url);
    location.searchParams.set('digest', digest);
    const put = await call(location.href, {
      method: 'PUT',
      headers: { authorization, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(put.status, `PUT ${digest}`).toBe(201);
    expect(put.headers.get('docker-content-digest')).toBe(digest);
    return digest;
  }

  beforeAll(async () => {
    htpasswd = htpasswdFile({ [USER]: PASSWORD });
    registry = await startLocalAwsProcess({
      auth: { type: 'token', htpasswd, anonymousPull: ['public/**'] },
      // Everything the function logs, so that the checks on the logs below see the most.
      logLevel: 'debug',
    });
  });

  afterAll(async () => {
    const code = await registry?.stop();
    expect(code, 'local-aws exit code after SIGTERM').toBe(0);
  });

  it('is configured by the secrets ARNs, in the local Secrets Manager', () => {
    const { description } = reg();
    expect(description).toMatchObject({
      auth: 'token',
      realm: `${reg().url}/auth/token`,
      secretsManager: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) as unknown,
      htpasswdSecret: expect.stringMatching(
        /^arn:aws:secretsmanager:us-east-1:000000000000:secret:.+-[A-Za-z0-9]{6}$/,
      ) as unknown,
      signingKeySecret: expect.stringMatching(
        /^arn:aws:secretsmanager:us-east-1:000000000000:secret:.+-[A-Za-z0-9]{6}$/,
      ) as unknown,
    });
  });

  it('answers /v2/ without credentials with 401 and a Bearer challenge naming its own token endpoint', async () => {
    const res = await call('/v2/');
    await res.arrayBuffer();
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(
      `Bearer realm="http://${reg().host}/auth/token",service="${SERVICE}"`,
    );
  });

  it('refuses a wrong password at the token endpoint with 401 and a Basic challenge', async () => {
    const res = await token(`repository:${REPOSITORY}:pull`, basic(USER, 'not-the-password'));
    const body = (await res.json()) as { errors: { code: string }[] };
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    expect(body.errors[0]?.code).toBe('UNAUTHORIZED');
    const unknown = await token(`repository:${REPOSITORY}:pull`, basic('mallory', PASSWORD));
    await unknown.arrayBuffer();
    expect(unknown.status).toBe(401);
  });

  it('pushes a blob and a manifest with a token, and pulls them back with one', async () => {
    const push = await bearer(`repository:${REPOSITORY}:pull,push`);
    const layer = randomBytes(64 * 1024);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'arm64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
      }),
    );
    const configDigest = await pushBlob(push, config);
    const layerDigest = await pushBlob(push, layer);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: configDigest,
          size: config.length,
        },
        layers: [
          { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length },
        ],
      }),
    );
    const put = await call(`/v2/${REPOSITORY}/manifests/v1`, {
      method: 'PUT',
      headers: { authorization: push, 'content-type': OCI_MANIFEST },
      body: manifest,
    });
    expect(put.status, 'PUT manifest').toBe(201);
    expect(put.headers.get('docker-content-digest')).toBe(sha256(manifest));

    // Without a token, the pull is challenged with the scope it needs.
    const anonymous = await call(`/v2/${REPOSITORY}/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
    await anonymous.arrayBuffer();
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toContain(`scope="repository:${REPOSITORY}:pull"`);

    const pull = await bearer(`repository:${REPOSITORY}:pull`);
    const got = await call(`/v2/${REPOSITORY}/manifests/v1`, {
      headers: { authorization: pull, accept: OCI_MANIFEST },
    });
    const bytes = Buffer.from(await got.arrayBuffer());
    expect(got.status).toBe(200);
    expect(sha256(bytes)).toBe(sha256(manifest));
    expect(got.headers.get('docker-content-digest')).toBe(sha256(manifest));

    // A blob GET is a redirect to a presigned S3 URL; the bytes come from S3, not through the function.
    const blob = await call(`/v2/${REPOSITORY}/blobs/${layerDigest}`, { headers: { authorization: pull } });
    await blob.arrayBuffer();
    expect(blob.status).toBe(307);
    const download = await fetch(blob.headers.get('location') ?? '', { signal: AbortSignal.timeout(30_000) });
    expect(download.status).toBe(200);
    expect(sha256(Buffer.from(await download.arrayBuffer()))).toBe(layerDigest);

    // A pull token does not push.
    const refused = await call(`/v2/${REPOSITORY}/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: pull },
    });
    await refused.arrayBuffer();
    expect(refused.status).toBe(403);
  });

  it('lets anyone pull from the anonymous pull repositories, and nobody push there without signing in', async () => {
    const pull = await call('/v2/public/app/manifests/v1', { headers: { accept: OCI_MANIFEST } });
    const body = (await pull.json()) as { errors: { code: string }[] };
    expect(pull.status, 'an anonymous pull of a missing manifest is answered, not challenged').toBe(404);
    expect(body.errors[0]?.code).toBe('MANIFEST_UNKNOWN');
    const push = await call('/v2/public/app/blobs/uploads/', { method: 'POST' });
    await push.arrayBuffer();
    expect(push.status).toBe(401);
  });

  it('never writes the signing key, the password or the password hash to its logs', async () => {
    const { credentials, description } = reg();
    const client = new SecretsManagerClient({
      endpoint: description.secretsManager ?? '',
      region: description.region ?? '',
      credentials,
    });
    let key: string;
    try {
      const secret = await client.send(new GetSecretValueCommand({ SecretId: description.signingKeySecret }));
      key = secret.SecretString ?? '';
    } finally {
      client.destroy();
    }
    expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const logs = reg().logs();
    expect(logs, 'the function logged its requests').toContain('"msg":"request"');
    // Who each authenticated request was, for audit: the token's subject.
    const signedIn = logs
      .split('\n')
      .filter((line) => line.startsWith('{') && line.includes('"msg":"request"'))
      .map((line) => JSON.parse(line) as { path?: string; user?: string })
      .filter((entry) => entry.path?.includes('/manifests/'));
    expect(signedIn.length).toBeGreaterThan(0);
    expect(signedIn.some((entry) => entry.user === USER)).toBe(true);
    const keyLines = key.split('\n').filter((line) => line !== '' && !line.startsWith('-----'));
    expect(keyLines.length).toBeGreaterThan(0);
    for (const line of keyLines) expect(logs).not.toContain(line);
    expect(logs).not.toContain(PASSWORD);
    expect(logs).not.toContain(Buffer.from(`${USER}:${PASSWORD}`).toString('base64'));
    const hash = htpasswd.slice(htpasswd.indexOf(':') + 1).trim();
    expect(logs).not.toContain(hash);
  });
});

describe('local AWS with --auth token over HTTPS, as API Gateway serves it', () => {
  let registry: LocalAwsProcess | undefined;
  let dir: string;
  let ca: string;

  /** A GET over HTTPS that trusts only the test certificate. */
  function get(
    path: string,
    authorization?: string,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        new URL(path, registry?.url),
        { ca, headers: authorization ? { authorization } : {}, timeout: 30_000 },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'local-aws-tls-'));
    // A self-signed certificate for 127.0.0.1, trusted by nothing but these requests.
    const { certificate, key } = selfSignedCertificate(dir);
    ca = readFileSync(certificate, 'utf8');
    registry = await startLocalAwsProcess({
      auth: { type: 'token', htpasswd: htpasswdFile({ [USER]: PASSWORD }) },
      tls: { certificate, key },
    });
  });

  afterAll(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('challenges with an https realm and issues tokens over HTTPS', async () => {
    const host = registry?.host ?? '';
    expect(registry?.url).toBe(`https://${host}`);
    const challenge = await get('/v2/');
    expect(challenge.status).toBe(401);
    expect(challenge.headers['www-authenticate']).toBe(
      `Bearer realm="https://${host}/auth/token",service="${SERVICE}"`,
    );
    const issued = await get(
      `/auth/token?service=${SERVICE}&scope=repository:${REPOSITORY}:pull`,
      basic(USER, PASSWORD),
    );
    expect(issued.status).toBe(200);
    const { token: jwt } = JSON.parse(issued.body) as { token: string };
    const pulled = await get(`/v2/${REPOSITORY}/tags/list`, `Bearer ${jwt}`);
    expect(pulled.status, 'a pull-scoped token passes authorization (the repository is empty)').toBe(404);
  });
});
