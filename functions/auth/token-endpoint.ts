import type { ClientInfo, Scope } from './access.js';
import { formatScope, parseScope } from './access.js';
import { basicCredentials, type Logins } from './credentials.js';
import type { AccessPolicy } from './policy.js';
import { TokenError, type TokenIssuer } from './tokens.js';
import { RegistryError } from '../registry/errors.js';
import { readBody } from '../registry/request.js';

/** A request asks for at most this many scopes (docker asks for two or three). */
const MAX_SCOPES = 32;
const MAX_FORM_BYTES = 64 * 1024;

export interface TokenEndpointOptions {
  /** The path the endpoint answers on (the realm's path). */
  path: string;
  /** The `service` tokens are issued for (their audience). */
  service: string;
  /** The realm of the Basic challenge when credentials are wrong. */
  realm: string;
}

/**
 * The built-in token server of the Docker token spec: `GET` with basic credentials (or none, for an
 * anonymous token) and `scope` parameters, and the OAuth2 `POST` form with password and refresh-token
 * grants. A token grants the intersection of the scopes asked for and what the access policy allows
 * the user; asking for more is not an error, it just is not granted.
 */
export class TokenEndpoint {
  constructor(
    private readonly options: TokenEndpointOptions,
    private readonly issuer: TokenIssuer,
    private readonly logins: Logins,
    private readonly policy: AccessPolicy,
  ) {}

  matches(url: URL): boolean {
    return url.pathname === this.options.path;
  }

  async handle(request: Request, client: ClientInfo): Promise<Response> {
    try {
      if (request.method === 'GET') return await this.get(request, client);
      if (request.method === 'POST') return await this.post(request, client);
      throw new RegistryError('UNSUPPORTED', `${request.method} is not supported on the token endpoint`, {
        headers: { Allow: 'GET, POST' },
      });
    } catch (error) {
      if (error instanceof RegistryError) return tokenErrorResponse(error);
      throw error;
    }
  }

  /** The token spec's GET: `?service=&scope=&offline_token=` with optional basic credentials. */
  private async get(request: Request, client: ClientInfo): Promise<Response> {
    const query = new URL(request.url).searchParams;
    this.checkService(query.get('service'));
    const scopes = parseScopes(query.getAll('scope'));
    const challenge = { 'WWW-Authenticate': `Basic realm="${this.options.realm.replace(/"/g, '')}"` };
    const credentials = basicCredentials(request.headers.get('authorization'), challenge);
    if (credentials && !(await this.logins.check(credentials, client.address))) {
      throw new RegistryError('UNAUTHORIZED', 'invalid username or password', { headers: challenge });
    }
    const user = credentials?.user;
    client.user = user;
    const offline = query.get('offline_token') === 'true' && user !== undefined;
    return this.issue(user, scopes, offline);
  }

  /** The OAuth2 form: grant_type password (username, password) or refresh_token (refresh_token). */
  private async post(request: Request, client: ClientInfo): Promise<Response> {
    const type = request.headers.get('content-type') ?? '';
    if (!/^application\/x-www-form-urlencoded\b/i.test(type)) {
      throw invalidRequest('the token request must be an application/x-www-form-urlencoded form');
    }
    const form = new URLSearchParams(
      Buffer.from(await readBody(request, MAX_FORM_BYTES, 'the token request')).toString('utf8'),
    );
    this.checkService(form.get('service'));
    const scopes = parseScopes(form.getAll('scope'));
    const grant = form.get('grant_type');
    let user: string;
    if (grant === 'password') {
      const username = form.get('username');
      const password = form.get('password');
      if (!username || password === null) throw invalidRequest('username and password are required');
      if (!(await this.logins.check({ user: username, password }, client.address))) {
        throw invalidGrant('invalid username or password');
      }
      user = username;
    } else if (grant === 'refresh_token') {
      user = await this.refreshed(form.get('refresh_token'));
    } else {
      throw invalidRequest(
        `grant_type must be password or refresh_token, got ${JSON.stringify(grant ?? '')}`,
      );
    }
    client.user = user;
    const offline = grant === 'password' && form.get('access_type') === 'offline';
    return this.issue(user, scopes, offline);
  }

  /** The user a refresh token stands for, while their password is still the one it was issued under. */
  private async refreshed(token: string | null): Promise<string> {
    if (!token) throw invalidRequest('refresh_token is required');
    try {
      const { user, fingerprint } = await this.issuer.verifyRefreshToken(token);
      if ((await this.logins.fingerprint(user)) !== fingerprint) throw new TokenError('revoked');
      return user;
    } catch (error) {
      if (!(error instanceof TokenError)) throw error;
      throw invalidGrant(`invalid refresh token (${error.message}); log in again`);
    }
  }

  private checkService(service: string | null): void {
    if (service !== null && service !== this.options.service) {
      throw invalidRequest(
        `unknown service ${JSON.stringify(service.slice(0, 200))}; this is ${this.options.service}`,
      );
    }
  }

  private async issue(user: string | undefined, asked: Scope[], offline: boolean): Promise<Response> {
    const granted = asked
      .map((scope) => this.policy.grant(user, scope))
      .filter((scope) => scope.actions.length > 0);
    const { token, expiresIn, issuedAt } = await this.issuer.accessToken(user, granted);
    const fingerprint = user === undefined ? undefined : await this.logins.fingerprint(user);
    const refresh =
      offline && user !== undefined && fingerprint !== undefined
        ? await this.issuer.refreshToken(user, fingerprint)
        : undefined;
    return json(200, {
      token,
      access_token: token,
      token_type: 'Bearer',
      expires_in: expiresIn,
      issued_at: issuedAt.toISOString(),
      scope: granted.map(formatScope).join(' '),
      ...(refresh ? { refresh_token: refresh } : {}),
    });
  }
}

/** Each scope parameter may hold several scopes separated by spaces (the OAuth2 form's way). */
function parseScopes(values: string[]): Scope[] {
  const texts = values.flatMap((value) => value.split(' ')).filter((text) => text !== '');
  if (texts.length > MAX_SCOPES)
    throw invalidRequest(`at most ${MAX_SCOPES} scopes may be asked for at once`);
  return texts.map((text) => {
    try {
      return parseScope(text);
    } catch (error) {
      throw new RegistryError('UNSUPPORTED', (error as Error).message, {
        status: 400,
        detail: { error: 'invalid_scope' },
      });
    }
  });
}

const invalidRequest = (message: string) =>
  new RegistryError('UNSUPPORTED', message, { status: 400, detail: { error: 'invalid_request' } });

const invalidGrant = (message: string) =>
  new RegistryError('UNAUTHORIZED', message, { status: 400, detail: { error: 'invalid_grant' } });

/**
 * The registry's error body, which docker and containerd read, plus RFC 6749's `error` and
 * `error_description` for OAuth2 clients. Never cached.
 */
function tokenErrorResponse(error: RegistryError): Response {
  const oauth =
    (error.detail as { error?: string } | undefined)?.error ??
    (error.code === 'UNAUTHORIZED'
      ? 'invalid_client'
      : error.code === 'TOOMANYREQUESTS'
        ? 'slow_down'
        : 'invalid_request');
  return json(
    error.status,
    {
      errors: [{ code: error.code, message: error.message, detail: null }],
      error: oauth,
      error_description: error.message,
    },
    error.headers,
  );
}

/** A JSON answer of the token endpoint: never cached, as it holds or concerns credentials. */
function json(status: number, value: unknown, headers: Record<string, string> = {}): Response {
  const body = JSON.stringify(value);
  return new Response(body, {
    status,
    headers: {
      ...headers,
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
      'Cache-Control': 'no-store',
    },
  });
}
