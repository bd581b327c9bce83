// Authentication material for suites against a registry with auth: htpasswd files written by the real
// `htpasswd -B` (apache2-utils: what operators use), token signing keys made by openssl, and a small API
// client that answers challenges the way registry clients do (Basic credentials, or a token from the
// realm), to check from the registry's side what a client did.
import { writeFile } from 'node:fs/promises';
import { requireBinary, run } from './exec.js';
import { httpRequestOnce, type HttpResponse } from './http.js';

export interface Login {
  user: string;
  password: string;
}

export type AuthMode = 'token' | 'htpasswd';

/** Writes an htpasswd file with bcrypt hashes (`htpasswd -B`) of every login, in order. */
export async function writeHtpasswd(path: string, logins: readonly Login[]): Promise<void> {
  const htpasswd = requireBinary('htpasswd', 'apache2-utils');
  await writeFile(path, '');
  for (const { user, password } of logins) await run(htpasswd, ['-B', '-b', path, user, password]);
}

/** Writes an EC P-256 private key (PEM) for the built-in token issuer. */
export async function writeSigningKey(path: string): Promise<void> {
  const openssl = requireBinary('openssl', 'openssl');
  await run(openssl, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

/** The parameters of a WWW-Authenticate challenge (one challenge; quoted values unescaped). */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const space = header.indexOf(' ');
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  const params: Record<string, string> = {};
  const pattern = /([a-z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/gi;
  for (const match of header.slice(space + 1).matchAll(pattern)) {
    const name = match[1]?.toLowerCase();
    if (name !== undefined) params[name] = (match[2] ?? match[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme, params };
}

/**
 * Requests to the registry API (`/v2/...`) as one user, or anonymously: a 401 is answered once, as
 * registry clients do, with Basic credentials or with a token fetched from the challenge's realm for its
 * scope. Verifies TLS against the given CA.
 */
export class RegistryApi {
  constructor(
    private readonly baseUrl: string,
    private readonly caPem: string | undefined,
    private readonly login: Login | undefined,
  ) {}

  async request(method: string, path: string, headers: Record<string, string> = {}): Promise<HttpResponse> {
    const url = `${this.baseUrl}${path}`;
    const first = await this.send(url, method, headers);
    const header = first.headers['www-authenticate'];
    if (first.status !== 401 || typeof header !== 'string') return first;
    const { scheme, params } = parseChallenge(header);
    if (scheme === 'basic') {
      if (this.login === undefined) return first;
      return this.send(url, method, { ...headers, authorization: this.basic(this.login) });
    }
    if (scheme !== 'bearer' || params.realm === undefined) return first;
    const tokenUrl = new URL(params.realm);
    if (params.service !== undefined) tokenUrl.searchParams.set('service', params.service);
    for (const scope of (params.scope ?? '').split(' ').filter(Boolean)) {
      tokenUrl.searchParams.append('scope', scope);
    }
    const tokenResponse = await this.send(
      tokenUrl.href,
      'GET',
      this.login === undefined ? {} : { authorization: this.basic(this.login) },
    );
    if (tokenResponse.status !== 200) {
      throw new Error(
        `e2e: GET ${tokenUrl.href} answered ${tokenResponse.status}: ${tokenResponse.body.toString('utf8')}`,
      );
    }
    const { token } = JSON.parse(tokenResponse.body.toString('utf8')) as { token: string };
    return this.send(url, method, { ...headers, authorization: `Bearer ${token}` });
  }

  /** HEAD of a manifest: its status and Docker-Content-Digest ('' when absent). */
  async manifestDigest(repo: string, reference: string): Promise<{ status: number; digest: string }> {
    const res = await this.request('HEAD', `/v2/${repo}/manifests/${reference}`, {
      accept: [
        'application/vnd.oci.image.manifest.v1+json',
        'application/vnd.oci.image.index.v1+json',
        'application/vnd.docker.distribution.manifest.v2+json',
        'application/vnd.docker.distribution.manifest.list.v2+json',
      ].join(', '),
    });
    const digest = res.headers['docker-content-digest'];
    return { status: res.status, digest: typeof digest === 'string' ? digest : '' };
  }

  private basic(login: Login): string {
    return `Basic ${Buffer.from(`${login.user}:${login.password}`).toString('base64')}`;
  }

  private send(url: string, method: string, headers: Record<string, string>): Promise<HttpResponse> {
    return httpRequestOnce(url, { method, headers, ...(this.caPem === undefined ? {} : { ca: this.caPem }) });
  }
}
