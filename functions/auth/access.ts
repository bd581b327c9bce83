/**
 * What a request may do. Scopes are written as the Docker token spec writes them
 * (`repository:library/alpine:pull,push`, `registry:catalog:*`); an Authorizer decides, for each
 * request, who is asking and which scopes they hold. The registry core depends on this file only.
 */

/** A resource and the actions on it. */
export interface Scope {
  /** `repository` or `registry` (the catalog). */
  type: string;
  name: string;
  actions: string[];
}

/** The actions a repository scope knows; `*` in a scope means all of them. */
export const REPOSITORY_ACTIONS = ['pull', 'push', 'delete'] as const;

/** Listing the catalog is the scope `registry:catalog:*`. */
export const CATALOG_SCOPE: Scope = { type: 'registry', name: 'catalog', actions: ['*'] };

export function repositoryScope(name: string, ...actions: string[]): Scope {
  return { type: 'repository', name, actions };
}

/**
 * One request as the runtime adapter and the registry share it: who sent it (the adapter fills that
 * in) and what it was (the registry fills that in), for the access log, metrics and events.
 */
export interface ClientInfo {
  /** The client's IP address (the socket's peer, or API Gateway's sourceIp). */
  address?: string | undefined;
  /** The adapter's id for the request (X-Request-Id, or Lambda's request id). */
  requestId?: string | undefined;
  /** Set by the registry once the request is authenticated. */
  user?: string | undefined;
  /**
   * Set by the registry: the API route, in distribution's handler names (base, catalog, tags,
   * manifest, blob, blob_upload, blob_upload_chunk, referrers), and the repository it names.
   */
  route?: string | undefined;
  repository?: string | undefined;
  /** Set by the registry: bytes of the blobs this request finished uploading (upload sizes). */
  blobBytesPushed?: number | undefined;
}

/** The outcome of authorization: who made the request, and what else they may do. */
export interface Access {
  /** The authenticated user, or undefined for an anonymous request. */
  readonly user: string | undefined;
  /** Whether every action of scope is allowed (a mount checks pull on its source this way). */
  allows(scope: Scope): boolean;
}

export interface Authorizer {
  /**
   * Authenticates the request and checks that it holds every scope in required (none for the
   * `/v2/` version check, which needs authentication only). Throws a RegistryError: UNAUTHORIZED
   * (401, with a WWW-Authenticate challenge) when the request is not authenticated enough,
   * DENIED (403) when its user is known but not allowed, TOOMANYREQUESTS (429) when throttled.
   */
  authorize(request: Request, client: ClientInfo, required: Scope[]): Promise<Access>;
}

/** Whether granted actions (possibly `*`) include every action asked for. */
export function covers(granted: readonly string[], asked: readonly string[]): boolean {
  return granted.includes('*') || asked.every((action) => granted.includes(action));
}

/** Access as a list of granted scopes, such as a token's `access` claim. */
export class ScopeGrant implements Access {
  constructor(
    readonly user: string | undefined,
    private readonly scopes: readonly Scope[],
  ) {}

  allows(scope: Scope): boolean {
    const granted = this.scopes
      .filter((s) => s.type === scope.type && s.name === scope.name)
      .flatMap((s) => s.actions);
    return covers(granted, scope.actions);
  }
}

/** A registry without authentication: anyone may do anything. */
export const OPEN_ACCESS: Authorizer = {
  authorize: () => Promise.resolve({ user: undefined, allows: () => true }),
};

/**
 * Parses `type[(class)]:name:action[,action...]`. A name may itself contain colons (a host:port
 * prefix), so the type ends at the first colon and the actions start after the last.
 */
export function parseScope(text: string): Scope {
  const first = text.indexOf(':');
  const last = text.lastIndexOf(':');
  const malformed = () =>
    new Error(`malformed scope ${JSON.stringify(text.slice(0, 200))}: expected type:name:actions`);
  if (first <= 0 || last === first || last === text.length - 1 || text.length > 1024) throw malformed();
  const type = text.slice(0, first).replace(/\([a-z0-9]+\)$/, '');
  const name = text.slice(first + 1, last);
  const actions = [
    ...new Set(
      text
        .slice(last + 1)
        .split(',')
        .filter((a) => a !== ''),
    ),
  ];
  // An empty name or no action names nothing a token could grant.
  if (name === '' || actions.length === 0) throw malformed();
  return { type, name, actions };
}

export function formatScope(scope: Scope): string {
  return `${scope.type}:${scope.name}:${scope.actions.join(',')}`;
}
