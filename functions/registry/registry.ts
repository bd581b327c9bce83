import { randomUUID } from 'node:crypto';
import {
  type Access,
  type Authorizer,
  CATALOG_SCOPE,
  type ClientInfo,
  OPEN_ACCESS,
  repositoryScope,
  type Scope,
} from '../auth/access.js';
import type { MetadataStore } from '../metadata/store.js';
import { errorFields, type Logger, silentLogger } from '../log.js';
import { Journal } from '../notifications/journal.js';
import type { Notifier, RoutedRequest } from '../notifications/notifier.js';
import {
  InvalidOffsetError,
  InvalidPathError,
  PathNotFoundError,
  type StorageDriver,
} from '../storage/driver.js';
import { BlobStore } from './blob-store.js';
import { deleteBlob, getBlob } from './blobs.js';
import {
  type Context,
  DEFAULT_OPTIONS,
  HashCache,
  type RegistryOptions,
  type UploadRouting,
} from './context.js';
import { errorResponse, RegistryError } from './errors.js';
import { listReferrers, listRepositories, listTags } from './listings.js';
import { deleteManifest, getManifest, putManifest } from './manifests.js';
import { checkRepositoryName } from './names.js';
import { UPLOAD_URL_PARAMETER } from './upload-urls.js';
import { cancelUpload, patchUpload, putUpload, startUpload, uploadStatus } from './uploads.js';

type Params = Record<string, string>;
type Handler = (
  ctx: Context,
  request: Request,
  url: URL,
  params: Params,
  access: Access,
) => Promise<Response>;

/**
 * What a method needs: the scope it acts under (distribution's: reads pull, writes pull and push,
 * deletes delete, the catalog registry:catalog:*) and its handler. The version check needs
 * authentication only.
 */
interface Method {
  scopes: (params: Params) => Scope[];
  handle: Handler;
}

interface Route {
  /** distribution's name for the route (its metrics' handler label). */
  name: string;
  pattern: RegExp;
  methods: Partial<Record<string, Method>>;
}

const name = (p: Params) => p.name ?? '';

const pull = (handle: Handler): Method => ({ scopes: (p) => [repositoryScope(name(p), 'pull')], handle });
const push = (handle: Handler): Method => ({
  scopes: (p) => [repositoryScope(name(p), 'pull', 'push')],
  handle,
});
const remove = (handle: Handler): Method => ({
  scopes: (p) => [repositoryScope(name(p), 'delete')],
  handle: deleting(handle),
});

const VERSION_ROUTE: Route = {
  name: 'base',
  pattern: /^\/v2\/?$/,
  methods: {
    GET: { scopes: () => [], handle: apiVersion },
    HEAD: { scopes: () => [], handle: apiVersion },
  },
};

const UPLOAD_SESSION_ROUTE: Route = {
  name: 'blob_upload_chunk',
  pattern: /^\/v2\/(?<name>.+)\/blobs\/uploads\/(?<uuid>[^/]+)$/,
  methods: {
    GET: push((ctx, _req, _url, p) => uploadStatus(ctx, name(p), p.uuid ?? '')),
    PATCH: push((ctx, req, _url, p) => patchUpload(ctx, req, name(p), p.uuid ?? '')),
    PUT: push((ctx, req, url, p) => putUpload(ctx, req, name(p), p.uuid ?? '', url)),
    DELETE: push((ctx, _req, _url, p) => cancelUpload(ctx, name(p), p.uuid ?? '')),
  },
};

/** The API, most specific patterns first: repository names contain "/", so they are matched from the end. */
const ROUTES: Route[] = [
  VERSION_ROUTE,
  {
    name: 'catalog',
    pattern: /^\/v2\/_catalog$/,
    methods: {
      GET: { scopes: () => [CATALOG_SCOPE], handle: (ctx, _req, url) => listRepositories(ctx, url) },
    },
  },
  {
    name: 'tags',
    pattern: /^\/v2\/(?<name>.+)\/tags\/list$/,
    methods: { GET: pull((ctx, _req, url, p) => listTags(ctx, name(p), url)) },
  },
  {
    name: 'manifest',
    pattern: /^\/v2\/(?<name>.+)\/manifests\/(?<reference>[^/]+)$/,
    methods: {
      GET: pull((ctx, _req, _url, p) => getManifest(ctx, name(p), p.reference ?? '')),
      HEAD: pull((ctx, _req, _url, p) => getManifest(ctx, name(p), p.reference ?? '')),
      PUT: push((ctx, req, _url, p) => putManifest(ctx, req, name(p), p.reference ?? '')),
      DELETE: remove((ctx, _req, _url, p) => deleteManifest(ctx, name(p), p.reference ?? '')),
    },
  },
  {
    name: 'blob_upload',
    pattern: /^\/v2\/(?<name>.+)\/blobs\/uploads\/?$/,
    methods: { POST: push((ctx, req, url, p, access) => startUpload(ctx, req, name(p), url, access)) },
  },
  UPLOAD_SESSION_ROUTE,
  {
    name: 'blob',
    pattern: /^\/v2\/(?<name>.+)\/blobs\/(?<digest>[^/]+)$/,
    methods: {
      GET: pull((ctx, req, _url, p) => getBlob(ctx, req, name(p), p.digest ?? '')),
      HEAD: pull((ctx, req, _url, p) => getBlob(ctx, req, name(p), p.digest ?? '')),
      DELETE: remove((ctx, _req, _url, p) => deleteBlob(ctx, name(p), p.digest ?? '')),
    },
  },
  {
    name: 'referrers',
    pattern: /^\/v2\/(?<name>.+)\/referrers\/(?<digest>[^/]+)$/,
    methods: { GET: pull((ctx, _req, url, p) => listReferrers(ctx, name(p), p.digest ?? '', url)) },
  },
];

const READS = new Set(['GET', 'HEAD']);

export interface RegistryDependencies {
  storage: StorageDriver;
  metadata: MetadataStore;
  options?: Partial<RegistryOptions>;
  log?: Logger;
  /** Who may do what; without one, the registry is open to anyone. */
  authorizer?: Authorizer;
  /** Signed upload URLs for the upload edge and the upload service (see upload-urls.ts). */
  uploads?: UploadRouting;
  /** Where events about what requests did go; without one, none are made. */
  notifier?: Notifier;
}

/**
 * The registry: the OCI Distribution API as a function from Request to Response, with no runtime,
 * storage backend or database of its own. Runtime adapters (node:http, API Gateway) call handle().
 */
export class Registry {
  private readonly ctx: Context;
  private readonly authorizer: Authorizer;
  private readonly notifier: Notifier | undefined;

  constructor(deps: RegistryDependencies) {
    this.authorizer = deps.authorizer ?? OPEN_ACCESS;
    this.notifier = deps.notifier;
    this.ctx = {
      blobs: new BlobStore(deps.storage),
      metadata: deps.metadata,
      options: { ...DEFAULT_OPTIONS, ...deps.options },
      log: deps.log ?? silentLogger,
      uploads: deps.uploads,
      hashes: new HashCache(),
    };
  }

  /**
   * Serves one request. The request's handler works on stores decorated with a Journal, which
   * records what it committed and read: the request's events (and the upload sizes the adapter
   * measures) come from that record once the handler is done, so no handler reports anything.
   */
  async handle(request: Request, client: ClientInfo = {}): Promise<Response> {
    const journal = new Journal();
    const ctx: Context = {
      ...this.ctx,
      metadata: journal.metadata(this.ctx.metadata),
      blobs: journal.blobs(this.ctx.blobs),
    };
    const routed: RoutedRequest = { route: 'unknown', repository: undefined, reference: undefined };
    let response: Response;
    try {
      response = await this.route(ctx, request, client, routed);
    } catch (error) {
      response = errorResponse(this.toRegistryError(error, request));
    }
    client.route = routed.route;
    client.repository = routed.repository;
    const pushed = journal.blobBytesPushed();
    if (pushed > 0) client.blobBytesPushed = pushed;
    await this.notifier?.notify(journal, request, response, client, routed);
    response.headers.set('Docker-Distribution-API-Version', 'registry/2.0');
    if (request.method === 'HEAD' && response.body) {
      // A HEAD answer has the GET's headers and no content, whatever produced it.
      await response.body.cancel();
      return new Response(null, { status: response.status, headers: response.headers });
    }
    return response;
  }

  private async route(
    ctx: Context,
    request: Request,
    client: ClientInfo,
    routed: RoutedRequest,
  ): Promise<Response> {
    const url = new URL(request.url);
    const only = ctx.uploads?.only === true;
    for (const route of only ? [VERSION_ROUTE, UPLOAD_SESSION_ROUTE] : ROUTES) {
      const match = route.pattern.exec(url.pathname);
      if (!match) continue;
      const params = decodeParams(match.groups ?? {});
      routed.route = route.name;
      routed.repository = params.name;
      routed.reference = params.reference;
      const method = route.methods[request.method];
      if (!method) {
        throw new RegistryError('UNSUPPORTED', `${request.method} is not supported on ${url.pathname}`, {
          headers: { Allow: Object.keys(route.methods).join(', ') },
        });
      }
      if (params.name !== undefined) checkRepositoryName(params.name);
      const access = only
        ? this.uploadUrlAccess(url, params)
        : await this.authorizer.authorize(request, client, method.scopes(params));
      client.user = access.user;
      if (ctx.options.readOnly && !READS.has(request.method)) {
        // A 405 names what is allowed: here, the route's reads (none for the upload start).
        const reads = Object.keys(route.methods).filter((allowed) => READS.has(allowed));
        throw new RegistryError(
          'UNSUPPORTED',
          `the registry is in read-only mode for maintenance: ${request.method} refused, pulls only`,
          { headers: { Allow: reads.join(', ') } },
        );
      }
      return method.handle(ctx, request, url, params, access);
    }
    throw new RegistryError(
      'UNSUPPORTED',
      only
        ? `no API endpoint at ${url.pathname}: this is an upload service, serving only the upload URLs its registry hands out`
        : `no API endpoint at ${url.pathname}`,
      { status: 404 },
    );
  }

  /**
   * The upload service's authorization: the URL itself, signed by the registry that started the upload,
   * grants that one upload (and nothing else); no credentials are asked for, since clients may drop them
   * when an upload moves to another host. The version check is open, as the load balancer's health check.
   */
  private uploadUrlAccess(url: URL, params: Params): Access {
    const { name: repository, uuid } = params;
    if (repository === undefined || uuid === undefined) return { user: undefined, allows: () => false };
    const check = this.ctx.uploads?.signer.check(
      repository,
      uuid,
      url.searchParams.get(UPLOAD_URL_PARAMETER),
    );
    if (check !== 'valid') {
      throw new RegistryError(
        'DENIED',
        check === 'expired'
          ? 'the upload URL has expired: start the upload again'
          : 'not an upload URL signed by this registry',
      );
    }
    return {
      user: undefined,
      allows: (scope) => scope.type === 'repository' && scope.name === repository,
    };
  }

  /** Errors in one place: registry errors as they are, storage errors by kind, anything else a logged 500. */
  private toRegistryError(error: unknown, request: Request): RegistryError {
    if (error instanceof RegistryError) return error;
    if (error instanceof PathNotFoundError)
      return new RegistryError('BLOB_UNKNOWN', undefined, { cause: error });
    if (error instanceof InvalidPathError)
      return new RegistryError('NAME_INVALID', undefined, { cause: error });
    if (error instanceof InvalidOffsetError)
      return new RegistryError('SIZE_INVALID', undefined, { status: 416 });
    const id = randomUUID();
    this.ctx.log.error('request failed', {
      errorId: id,
      method: request.method,
      url: request.url,
      ...errorFields(error),
    });
    return new RegistryError('UNKNOWN', `internal error (id ${id}); the registry's log has the details`);
  }
}

function apiVersion(): Promise<Response> {
  return Promise.resolve(
    new Response('{}', {
      status: 200,
      headers: { 'Content-Type': 'application/json', 'Content-Length': '2' },
    }),
  );
}

/** DELETE handlers answer 405 unless deletes are enabled, as distribution's storage.delete.enabled does. */
function deleting(handler: Handler): Handler {
  return (ctx, request, url, params, access) => {
    if (!ctx.options.deleteEnabled) {
      throw new RegistryError(
        'UNSUPPORTED',
        'deletes are disabled on this registry (storage.delete.enabled)',
      );
    }
    return handler(ctx, request, url, params, access);
  };
}

function decodeParams(groups: Record<string, string | undefined>): Params {
  const params: Params = {};
  for (const [key, value] of Object.entries(groups)) {
    if (value === undefined) continue;
    try {
      params[key] = decodeURIComponent(value);
    } catch {
      throw new RegistryError('NAME_INVALID', `malformed percent-encoding in ${JSON.stringify(value)}`);
    }
  }
  return params;
}
