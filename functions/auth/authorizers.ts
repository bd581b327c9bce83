import { RegistryError } from '../registry/errors.js';
import {
  type Access,
  type Authorizer,
  type ClientInfo,
  formatScope,
  type Scope,
  ScopeGrant,
} from './access.js';
import { basicCredentials, type Logins, unauthorized } from './credentials.js';
import type { AccessPolicy } from './policy.js';
import { TokenError, type TokenVerifier } from './tokens.js';

/**
 * Basic authentication against an htpasswd file (distribution's `auth.htpasswd`), with the access
 * policy deciding what each user, or an anonymous request, may do.
 */
export class BasicAuthorizer implements Authorizer {
  private readonly challenge: Record<string, string>;

  constructor(
    realm: string,
    private readonly logins: Logins,
    private readonly policy: AccessPolicy,
  ) {
    this.challenge = { 'WWW-Authenticate': `Basic realm=${quoted(realm)}, charset="UTF-8"` };
  }

  async authorize(request: Request, client: ClientInfo, required: Scope[]): Promise<Access> {
    const authorization = request.headers.get('authorization');
    const credentials = basicCredentials(authorization, this.challenge);
    if (authorization !== null && !/^Basic /i.test(authorization)) {
      throw unauthorized('this registry takes basic credentials', this.challenge);
    }
    if (credentials && !(await this.logins.check(credentials, client.address))) {
      throw unauthorized('invalid username or password', this.challenge);
    }
    const user = credentials?.user;
    // The version check is how clients learn that a registry wants credentials: never anonymous.
    const denied =
      user === undefined && required.length === 0
        ? 'login'
        : firstDenied((scope) => this.policy.allows(user, scope), required);
    if (denied === undefined) return this.policy.accessFor(user);
    if (user === undefined || denied === 'login')
      throw unauthorized('authentication required', this.challenge);
    throw deniedError(user, denied);
  }
}

export interface BearerOptions {
  /** Where clients get tokens: an absolute URL, or a path on this registry (the built-in token endpoint). */
  realm: string;
  service: string;
  /** The registry's external URL (http.host), which a path realm is resolved against; else the request's own. */
  externalUrl?: string | undefined;
}

/**
 * Docker token authentication (distribution's `auth.token`): requests carry a JWT from the realm's
 * token endpoint, whose access claim must hold every scope the request needs. Without a token, the
 * access policy's anonymous rules (when there is a policy) decide.
 */
export class BearerAuthorizer implements Authorizer {
  constructor(
    private readonly options: BearerOptions,
    private readonly verifier: TokenVerifier,
    private readonly anonymous: AccessPolicy | undefined,
  ) {}

  async authorize(request: Request, _client: ClientInfo, required: Scope[]): Promise<Access> {
    const authorization = request.headers.get('authorization');
    const token = /^Bearer +([A-Za-z0-9._~+/=-]+) *$/i.exec(authorization ?? '')?.[1];
    if (token === undefined) {
      const policy = this.anonymous;
      const anonymous = (scope: Scope) => policy?.allows(undefined, scope) ?? false;
      if (policy && required.length > 0 && firstDenied(anonymous, required) === undefined) {
        return policy.accessFor(undefined);
      }
      const message =
        authorization === null ? 'authentication required' : 'this registry takes bearer tokens';
      throw unauthorized(message, this.challenge(request, required));
    }
    let access: ScopeGrant;
    try {
      const claims = await this.verifier.verify(token);
      access = new ScopeGrant(claims.user, claims.access);
    } catch (error) {
      if (!(error instanceof TokenError)) throw error;
      throw unauthorized(
        `invalid token: ${error.message}`,
        this.challenge(request, required, 'invalid_token'),
      );
    }
    const denied = firstDenied((scope) => access.allows(scope), required);
    if (denied === undefined) return access;
    const challenge = this.challenge(request, required, 'insufficient_scope');
    if (access.user === undefined) throw unauthorized('authentication required', challenge);
    throw deniedError(access.user, denied, challenge);
  }

  /** `Bearer realm=...,service=...,scope=...`: what to ask the token endpoint for. */
  private challenge(request: Request, required: Scope[], error?: string): Record<string, string> {
    const { realm, service, externalUrl } = this.options;
    const parameters = [
      `realm=${quoted(new URL(realm, externalUrl ?? request.url).href)}`,
      `service=${quoted(service)}`,
      ...(required.length > 0 ? [`scope=${quoted(required.map(formatScope).join(' '))}`] : []),
      ...(error ? [`error=${quoted(error)}`] : []),
    ];
    return { 'WWW-Authenticate': `Bearer ${parameters.join(',')}` };
  }
}

/** The first required scope not allowed, narrowed to the actions missing; undefined when all are allowed. */
function firstDenied(allows: (scope: Scope) => boolean, required: Scope[]): Scope | undefined {
  for (const scope of required) {
    const actions = scope.actions.filter((action) => !allows({ ...scope, actions: [action] }));
    if (actions.length > 0) return { ...scope, actions };
  }
  return undefined;
}

function deniedError(user: string, scope: Scope, headers?: Record<string, string>): RegistryError {
  const what =
    scope.type === 'repository' ? `${scope.actions.join(',')} on ${scope.name}` : formatScope(scope);
  return new RegistryError('DENIED', `requested access to the resource is denied: ${user} may not ${what}`, {
    ...(headers ? { headers } : {}),
  });
}

/** An RFC 7230 quoted-string. */
function quoted(value: string): string {
  return `"${value.replace(/[\\"]/g, '\\$&')}"`;
}
