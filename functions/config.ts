/**
 * The registry's configuration: distribution's (registry:2) `config.yml` format, read unchanged,
 * plus REGISTRY_* environment overrides, validated and defaulted into one typed RegistryConfig.
 * See distribution's configuration/configuration.go and docs/content/about/configuration.md.
 *
 * Without a file, an embedded default for a laptop applies; with a file, distribution's defaults
 * apply to whatever it leaves out. Unknown keys, and distribution features this registry does not
 * support yet, are accepted with a warning so an existing registry:2 configuration runs as it is.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { type AccessPolicyConfig, accessRulesError } from './auth/policy.js';
import { DEFAULT_ALGORITHMS } from './auth/tokens.js';
import { DEFAULT_EVENT_SOURCE, EVENT_ACTIONS } from './notifications/events.js';
import {
  globProblem,
  type ImmutabilityRule,
  type RetentionPolicy,
  type RetentionRule,
} from './maintenance/policies.js';
import type { Context, Infer } from './config-schema.js';
import {
  ConfigError,
  applyEnv,
  bool,
  decode,
  duration,
  field,
  int,
  isRecord,
  list,
  map,
  object,
  oneOf,
  optInt,
  optAge,
  optList,
  optMap,
  optObject,
  optStr,
  raw,
  reqStr,
  str,
} from './config-schema.js';

export { ConfigError, parseAge, parseGoDuration } from './config-schema.js';
export type {
  ImmutabilityRule,
  RetentionPolicy,
  RetentionRule,
  TagRetentionRule,
  UntaggedRetentionRule,
} from './maintenance/policies.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** Parameters of a storage driver implemented later, kept as given (distribution's lower-case keys). */
export type DriverParameters = Record<string, unknown>;

/** `storage.<driver>`: exactly one driver section. */
export type StorageDriverConfig =
  /** `storage.filesystem.rootdirectory` (resolved to an absolute path), `.maxthreads` (at least 25). */
  | { type: 'filesystem'; rootDirectory: string; maxThreads?: number }
  | { type: 'inmemory' }
  | { type: 's3'; parameters: DriverParameters }
  | { type: 'azure'; parameters: DriverParameters }
  | { type: 'gcs'; parameters: DriverParameters };

/**
 * `metadata.<store>`, this registry's own section (distribution keeps all metadata in storage):
 * `storage` (the default) keeps tags, links and sessions as small files beside the blobs;
 * `dynamodb` keeps them in a DynamoDB table.
 */
export type MetadataConfig =
  | { type: 'storage' }
  | { type: 'dynamodb'; table: string; region: string | undefined; endpoint: string | undefined };

/** `http.tls`, present when a certificate and key are configured. */
export interface TlsConfig {
  certificate: string; // certificate
  key: string; // key
  clientCas: string[]; // clientcas
  minimumTls: 'tls1.0' | 'tls1.1' | 'tls1.2' | 'tls1.3'; // minimumtls
}

/** `auth.<type>`. */
export type AuthConfig =
  | { type: 'htpasswd'; realm: string; path: string }
  | {
      type: 'token';
      /** Where clients get tokens: an absolute URL, or a path on this registry for the built-in issuer. */
      realm: string;
      service: string;
      issuer: string;
      /** Certificates whose keys sign tokens of an external issuer (a file, or a Secrets Manager ARN). */
      rootCertBundle: string | undefined; // rootcertbundle
      /** A JWKS of an external issuer: a file, a Secrets Manager ARN, or an https URL. */
      jwks: string | undefined;
      autoRedirect: boolean; // autoredirect
      autoRedirectPath: string; // autoredirectpath
      signingAlgorithms: string[]; // signingalgorithms
      /** This registry's own: the built-in issuer's private key (PEM), which turns the token endpoint on. */
      signingKey: string | undefined; // signingkey
      /** The built-in issuer's users, an htpasswd file (or a Secrets Manager ARN holding one). */
      htpasswd: string | undefined;
      /** Lifetime of the access tokens the built-in issuer signs (default 5 minutes). */
      expirationMs: number; // expiration
      /** Lifetime of its refresh tokens, what `docker login` keeps (default 30 days). */
      refreshExpirationMs: number; // refreshexpiration
    };

/** `access`, this registry's own: per-repository access control for htpasswd and the built-in token issuer. */
export type AccessConfig = AccessPolicyConfig;

/** `notifications.endpoints[]`. */
export interface NotificationEndpoint {
  name: string;
  url: string;
  disabled: boolean;
  headers: Record<string, string[]>;
  timeoutMs: number; // timeout (default 1s)
  threshold: number; // (default 10)
  backoffMs: number; // backoff (default 1s)
  ignoredMediaTypes: string[]; // ignoredmediatypes
  ignore: { mediaTypes: string[]; actions: string[] }; // ignore.mediatypes, ignore.actions
  /**
   * `signingsecret`, this registry's own: the key of a Standard Webhooks signature on every delivery
   * (`whsec_<base64>`, or any other text used as is; a literal or a Secrets Manager ARN).
   */
  signingSecret: string | undefined;
}

/** `notifications.eventbridge`, this registry's own: events to an Amazon EventBridge bus. */
export interface EventBridgeConfig {
  /** `eventbus`: the bus's name or ARN. */
  eventBus: string;
  /** `source` (default `registry`): every entry's Source. */
  source: string;
  /** `region`: the bus's region (default: the SDK's, from AWS_REGION). */
  region: string | undefined;
  /** `endpoint`: another EventBridge endpoint URL (a VPC endpoint, or a local one for tests). */
  endpoint: string | undefined;
  /** `ignore.mediatypes`, `ignore.actions`: as an endpoint's. */
  ignore: { mediaTypes: string[]; actions: string[] };
}

export interface RegistryConfig {
  log: {
    /** `log.level` (or the deprecated top-level `loglevel`); distribution's panic and fatal become error. */
    level: LogLevel;
    /** `log.formatter`. This registry always writes JSON lines; other values are accepted with a warning. */
    formatter: 'text' | 'json' | 'logstash';
    /** `log.accesslog.disabled` */
    accessLog: { disabled: boolean };
    /** `log.fields`: static fields added to every log line. */
    fields: Record<string, unknown>;
  };
  http: {
    /** `http.addr`: host:port (`:5000` means all interfaces), or a socket path when net is unix. */
    addr: string;
    net: 'tcp' | 'unix';
    /** `http.prefix`: the path before /v2/, e.g. `/registry/`. */
    prefix: string;
    /** `http.host`: the externally reachable URL. */
    host: string | undefined;
    /**
     * `http.secret`: the key upload URLs are signed with (a literal, or a Secrets Manager ARN); needed
     * by the uploads section, and the same on the registry and its upload service.
     */
    secret: string | undefined;
    /** `http.relativeurls` */
    relativeUrls: boolean;
    /** `http.draintimeout`, as configured (0: not set; the caller chooses). */
    drainTimeoutMs: number;
    /** `http.headers`: added to every response. */
    headers: Record<string, string[]>;
    tls: TlsConfig | undefined;
    /**
     * `http.debug`: a second listener, for operators only, serving /debug/health and (with
     * prometheus.enabled) Prometheus metrics at prometheus.path (default /metrics). Off unless addr is set.
     */
    debug: { addr: string; prometheus: { enabled: boolean; path: string } } | undefined;
  };
  storage: {
    driver: StorageDriverConfig;
    /** `storage.delete.enabled` */
    delete: { enabled: boolean };
    /**
     * `storage.redirect.disable`, and `storage.redirect.expiry` (this registry's own: how long the
     * presigned URLs blob downloads are redirected to stay valid; default 20m).
     */
    redirect: { disable: boolean; expiryMs: number };
    maintenance: {
      /** `storage.maintenance.uploadpurging`: enabled, age, interval, dryrun. */
      uploadPurging: { enabled: boolean; ageMs: number; intervalMs: number; dryRun: boolean };
      /** `storage.maintenance.readonly.enabled` */
      readOnly: { enabled: boolean };
    };
  };
  metadata: MetadataConfig;
  auth: AuthConfig | undefined;
  /** Undefined: every authenticated user may do everything, and anonymous requests nothing. */
  access: AccessConfig | undefined;
  notifications: {
    /** `notifications.events.includereferences` */
    events: { includeReferences: boolean };
    endpoints: NotificationEndpoint[];
    eventBridge: EventBridgeConfig | undefined;
  };
  /**
   * `health.storagedriver`: a background check that storage (and the metadata store) answers,
   * every interval; after threshold failures in a row, /debug/health reports it (distribution's).
   */
  health: { storageDriver: { enabled: boolean; intervalMs: number; threshold: number } };
  /**
   * `metrics.namespace`, this registry's own: the CloudWatch namespace of the metrics the Lambda
   * function writes in embedded metric format; without one it writes none (custom metrics are billed).
   */
  metrics: { namespace: string | undefined };
  /** `catalog.maxentries` (default 1000). */
  catalog: { maxEntries: number };
  /**
   * `uploads`: where blob uploads may go besides this API, for fronts that cannot carry large bodies
   * (the AWS deployment). All of it signs upload URLs with http.secret.
   */
  uploads: {
    /** `uploads.edge`: the upload edge is in front; sign new uploads' URLs for it, link what it stores. */
    edge: boolean;
    /** `uploads.service`: the upload service's URL; new uploads' Locations point there. */
    service: string | undefined;
    /** `uploads.only`: this server is the upload service: it serves signed upload URLs only. */
    only: boolean;
    /** `uploads.urlexpiry` (default 1h): how long a signed upload URL may be used. */
    urlExpiryMs: number;
  };
  /** `gc`, this registry's own: online garbage collection. */
  gc: {
    /**
     * `gc.grace` (default 1h, `0s` allowed): nothing written, pushed or used more recently than this
     * before a run starts is removed by it.
     */
    graceMs: number;
    /** `gc.deleteuntagged` (default false): remove manifests no tag reaches, in every repository. */
    deleteUntagged: boolean;
  };
  /** `retention`, this registry's own: per repository, the first policy whose repositories match applies. */
  retention: RetentionPolicy[];
  /** `immutability`, this registry's own: tags that, once pushed, cannot be moved to another manifest. */
  immutability: ImmutabilityRule[];
}

export interface LoadOptions {
  /** The configuration file; when undefined, REGISTRY_CONFIGURATION_PATH, then the embedded default. */
  path?: string | undefined;
  /** The environment to read REGISTRY_* overrides from (default process.env). */
  env?: Record<string, string | undefined>;
}

export interface LoadedConfig {
  config: RegistryConfig;
  warnings: string[];
}

const strings = () => list(str());
const headers = () => map(list(str()));
const ignore = () =>
  object({ mediaTypes: field('mediatypes', strings()), actions: field('actions', strings()) });
const absoluteUrl = (v: string) =>
  URL.canParse(v) ? undefined : `expected an absolute URL, got ${JSON.stringify(v)}`;
/** Glob patterns (see maintenance/policies.ts), compiled while loading, so that invalid ones are refused. */
const globs = (options: { nonEmpty?: boolean; default?: string[] } = {}) =>
  list(reqStr(globProblem), options);

const schema = object(
  {
    version: field('version', str()),
    loglevel: field('loglevel', oneOf(['error', 'warn', 'info', 'debug', 'panic', 'fatal'], undefined)),
    log: field(
      'log',
      object(
        {
          level: field('level', oneOf(['error', 'warn', 'info', 'debug', 'panic', 'fatal'], undefined)),
          formatter: field('formatter', oneOf(['text', 'json', 'logstash'], undefined)),
          accessLog: field('accesslog', object({ disabled: field('disabled', bool()) })),
          fields: field('fields', map(raw())),
        },
        { unsupported: { hooks: 'log hooks', reportcaller: 'caller reporting' } },
      ),
    ),
    http: field(
      'http',
      object(
        {
          addr: field('addr', str(':5000')),
          net: field('net', oneOf(['tcp', 'unix'], 'tcp')),
          prefix: field('prefix', str()),
          host: field('host', optStr(absoluteUrl)),
          secret: field('secret', optStr()),
          relativeUrls: field('relativeurls', bool()),
          drainTimeoutMs: field('draintimeout', duration(0)),
          headers: field('headers', headers()),
          tls: field(
            'tls',
            optObject(
              {
                certificate: field('certificate', optStr()),
                key: field('key', optStr()),
                clientCas: field('clientcas', strings()),
                minimumTls: field('minimumtls', oneOf(['tls1.0', 'tls1.1', 'tls1.2', 'tls1.3'], 'tls1.2')),
              },
              { unsupported: { ciphersuites: 'TLS cipher suites', letsencrypt: "Let's Encrypt" } },
            ),
          ),
          debug: field(
            'debug',
            optObject({
              addr: field('addr', str()),
              prometheus: field(
                'prometheus',
                object({ enabled: field('enabled', bool()), path: field('path', str('/metrics')) }),
              ),
            }),
          ),
        },
        { unsupported: { http2: 'HTTP/2 settings' } },
      ),
    ),
    storage: field(
      'storage',
      object(
        {
          filesystem: field(
            'filesystem',
            optObject({
              rootDirectory: field('rootdirectory', str('/var/lib/registry')),
              maxThreads: field('maxthreads', optInt()),
            }),
          ),
          inmemory: field('inmemory', optObject({})),
          s3: field('s3', optMap(raw())),
          azure: field('azure', optMap(raw())),
          gcs: field('gcs', optMap(raw())),
          delete: field('delete', object({ enabled: field('enabled', bool(false)) })),
          redirect: field(
            'redirect',
            object({
              disable: field('disable', bool(false)),
              expiryMs: field('expiry', duration(20 * 60_000)),
            }),
          ),
          maintenance: field(
            'maintenance',
            object({
              uploadPurging: field(
                'uploadpurging',
                object({
                  enabled: field('enabled', bool(true)),
                  ageMs: field('age', duration(168 * 3_600_000)),
                  intervalMs: field('interval', duration(24 * 3_600_000)),
                  dryRun: field('dryrun', bool(false)),
                }),
              ),
              readOnly: field('readonly', object({ enabled: field('enabled', bool(false)) })),
            }),
          ),
        },
        {
          unsupported: { cache: 'blob descriptor cache' },
          variants: {
            noun: 'storage driver',
            keys: ['filesystem', 'inmemory', 's3', 'azure', 'gcs'],
            required: true,
          },
        },
      ),
    ),
    metadata: field(
      'metadata',
      object(
        {
          storage: field('storage', optObject({})),
          dynamodb: field(
            'dynamodb',
            optObject({
              table: field('table', reqStr()),
              region: field('region', optStr()),
              endpoint: field('endpoint', optStr(absoluteUrl)),
            }),
          ),
        },
        { variants: { noun: 'metadata store', keys: ['storage', 'dynamodb'], required: false } },
      ),
    ),
    auth: field(
      'auth',
      object(
        {
          htpasswd: field(
            'htpasswd',
            optObject({ realm: field('realm', reqStr()), path: field('path', reqStr()) }),
          ),
          token: field(
            'token',
            optObject({
              realm: field('realm', reqStr()),
              service: field('service', reqStr()),
              issuer: field('issuer', reqStr()),
              rootCertBundle: field('rootcertbundle', optStr()),
              jwks: field('jwks', optStr()),
              autoRedirect: field('autoredirect', bool()),
              autoRedirectPath: field('autoredirectpath', str('/auth/token')),
              signingAlgorithms: field('signingalgorithms', strings()),
              signingKey: field('signingkey', optStr()),
              htpasswd: field('htpasswd', optStr()),
              expirationMs: field('expiration', duration(5 * 60_000)),
              refreshExpirationMs: field('refreshexpiration', duration(30 * 24 * 3_600_000)),
            }),
          ),
        },
        {
          unsupported: { silly: 'silly (test-only) authentication' },
          variants: { noun: 'authentication type', keys: ['htpasswd', 'token'], required: false },
        },
      ),
    ),
    access: field(
      'access',
      optObject({
        groups: field('groups', map(strings())),
        rules: field(
          'rules',
          list(
            object({
              repositories: field('repositories', strings()),
              users: field('users', strings()),
              groups: field('groups', strings()),
              anonymous: field('anonymous', bool()),
              actions: field('actions', strings()),
            }),
          ),
        ),
      }),
    ),
    notifications: field(
      'notifications',
      object({
        events: field(
          'events',
          object({ includeReferences: field('includereferences', bool()) }),
          'EVENTCONFIG',
        ),
        endpoints: field(
          'endpoints',
          list(
            object({
              name: field('name', reqStr()),
              url: field('url', reqStr()),
              disabled: field('disabled', bool()),
              headers: field('headers', headers()),
              timeoutMs: field('timeout', duration(0)),
              threshold: field('threshold', int(0)),
              backoffMs: field('backoff', duration(0)),
              ignoredMediaTypes: field('ignoredmediatypes', strings()),
              ignore: field('ignore', ignore()),
              signingSecret: field('signingsecret', optStr()),
            }),
          ),
        ),
        eventBridge: field(
          'eventbridge',
          optObject({
            eventBus: field('eventbus', str()),
            source: field('source', str(DEFAULT_EVENT_SOURCE)),
            region: field('region', optStr()),
            endpoint: field('endpoint', optStr(absoluteUrl)),
            ignore: field('ignore', ignore()),
          }),
        ),
      }),
    ),
    health: field(
      'health',
      object(
        {
          storageDriver: field(
            'storagedriver',
            object({
              enabled: field('enabled', bool()),
              intervalMs: field('interval', duration(10_000)),
              threshold: field('threshold', int(1, 1)),
            }),
          ),
        },
        { unsupported: { file: 'file health checks', http: 'HTTP health checks', tcp: 'TCP health checks' } },
      ),
    ),
    metrics: field('metrics', object({ namespace: field('namespace', optStr()) })),
    catalog: field('catalog', object({ maxEntries: field('maxentries', int(0)) })),
    uploads: field(
      'uploads',
      object({
        edge: field('edge', bool()),
        service: field('service', optStr(absoluteUrl)),
        only: field('only', bool()),
        urlExpiryMs: field('urlexpiry', duration(3_600_000)),
      }),
    ),
    gc: field(
      'gc',
      object(
        {
          graceMs: field('grace', duration(3_600_000)),
          deleteUntagged: field('deleteuntagged', bool(false)),
        },
        { strict: true },
      ),
    ),
    retention: field(
      'retention',
      list(
        object(
          {
            repositories: field('repositories', globs({ nonEmpty: true })),
            protect: field('protect', globs()),
            rules: field(
              'rules',
              list(
                object(
                  {
                    tags: field('tags', optList(reqStr(globProblem))),
                    keepLast: field('keeplast', optInt(1)),
                    olderThanMs: field('olderthan', optAge()),
                    untagged: field('untagged', bool(false)),
                  },
                  { strict: true },
                ),
                { nonEmpty: true },
              ),
            ),
          },
          { strict: true },
        ),
      ),
    ),
    immutability: field(
      'immutability',
      list(
        object(
          {
            repositories: field('repositories', globs({ nonEmpty: true })),
            tags: field('tags', globs({ nonEmpty: true, default: ['*'] })),
            except: field('except', globs()),
          },
          { strict: true },
        ),
      ),
    ),
  },
  {
    unsupported: {
      proxy: 'pull-through cache',
      redis: 'redis',
      validation: 'manifest validation',
      compatibility: 'schema1 compatibility',
      middleware: 'middleware',
      reporting: 'error reporting',
      policy: 'repository policy',
    },
  },
);

type Decoded = Infer<typeof schema>;

/** The configuration without a file: a registry for a laptop. */
const embeddedDefault = (): Record<string, unknown> => ({
  version: '0.1',
  log: { level: 'info' },
  http: { addr: '127.0.0.1:5000' },
  storage: { filesystem: { rootdirectory: './data' }, delete: { enabled: true } },
});

export async function loadConfig(options: LoadOptions = {}): Promise<LoadedConfig> {
  const env = options.env ?? process.env;
  const path = options.path ?? (env.REGISTRY_CONFIGURATION_PATH || undefined);
  const ctx: Context = { warnings: [], origins: new Map(), file: path };
  const file = path === undefined ? embeddedDefault() : await readConfigFile(path);
  const version =
    typeof file.version === 'number' || typeof file.version === 'string' ? String(file.version) : '';
  if (version !== '0.1') {
    const got = version === '' ? 'nothing' : JSON.stringify(version);
    throw new ConfigError(`version: expected 0.1, got ${got}${path === undefined ? '' : ` (in ${path})`}`);
  }
  const merged = applyEnv(schema, file, env, ctx, ['REGISTRY_CONFIGURATION_PATH']);
  const config = resolveConfig(decode(schema, merged, ctx), ctx);
  return { config, warnings: ctx.warnings };
}

async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read configuration file ${path}: ${(err as Error).message}`);
  }
  const doc = parseDocument(text, { merge: true });
  const [error] = doc.errors;
  if (error) throw new ConfigError(`invalid YAML in configuration file ${path}: ${error.message}`);
  const content = doc.toJS() as unknown;
  if (!isRecord(content))
    throw new ConfigError(`configuration file ${path}: expected a YAML map at the top level`);
  return content;
}

function resolveConfig(d: Decoded, ctx: Context): RegistryConfig {
  const { filesystem, inmemory, s3, azure, gcs } = d.storage;
  const driver: StorageDriverConfig = filesystem
    ? {
        type: 'filesystem',
        rootDirectory: resolve(filesystem.rootDirectory),
        ...(filesystem.maxThreads === undefined ? {} : { maxThreads: Math.max(25, filesystem.maxThreads) }),
      }
    : inmemory
      ? { type: 'inmemory' }
      : s3
        ? { type: 's3', parameters: s3 }
        : azure
          ? { type: 'azure', parameters: azure }
          : { type: 'gcs', parameters: gcs ?? {} };

  const level = d.log.level ?? d.loglevel ?? 'info';
  if (d.loglevel !== undefined) ctx.warnings.push('configuration key loglevel is deprecated; use log.level');
  if (d.log.formatter !== undefined && d.log.formatter !== 'json') {
    ctx.warnings.push(
      `log.formatter ${d.log.formatter} is accepted, but this registry always writes JSON lines`,
    );
  }

  return {
    log: {
      level: level === 'panic' || level === 'fatal' ? 'error' : level,
      formatter: d.log.formatter ?? 'json',
      accessLog: d.log.accessLog,
      fields: d.log.fields,
    },
    http: { ...d.http, tls: resolveTls(d.http.tls, ctx), debug: resolveDebug(d.http.debug, ctx) },
    storage: {
      driver,
      delete: d.storage.delete,
      redirect: resolveRedirect(d.storage.redirect, driver, ctx),
      maintenance: resolveMaintenance(d.storage.maintenance, ctx),
    },
    metadata: d.metadata.dynamodb ? { type: 'dynamodb', ...d.metadata.dynamodb } : { type: 'storage' },
    auth: resolveAuth(d.auth, ctx),
    access: resolveAccess(d.access, ctx),
    notifications: resolveNotifications(d.notifications, ctx),
    health: d.health,
    metrics: d.metrics,
    catalog: { maxEntries: d.catalog.maxEntries > 0 ? d.catalog.maxEntries : 1000 },
    uploads: resolveUploads(d, ctx),
    gc: d.gc,
    retention: d.retention.map((policy, i) => ({
      repositories: policy.repositories,
      protect: policy.protect,
      rules: policy.rules.map((rule, j) => resolveRetentionRule(rule, `retention[${i}].rules[${j}]`, ctx)),
    })),
    immutability: d.immutability,
  };
}

/** A purge loop runs every interval: zero would never pause. */
function resolveMaintenance(
  maintenance: Decoded['storage']['maintenance'],
  ctx: Context,
): RegistryConfig['storage']['maintenance'] {
  const purging = maintenance.uploadPurging;
  if (purging.enabled && purging.intervalMs <= 0) {
    throw configError(
      ctx,
      'storage.maintenance.uploadpurging.interval: must be more than 0 while uploadpurging is enabled',
    );
  }
  return maintenance;
}

type DecodedRule = Decoded['retention'][number]['rules'][number];

/** A rule is `{tags, keeplast and/or olderthan}` or `{untagged: true, olderthan}`, nothing else. */
function resolveRetentionRule(rule: DecodedRule, key: string, ctx: Context): RetentionRule {
  const { tags, keepLast, olderThanMs, untagged } = rule;
  if (untagged) {
    if (tags !== undefined || keepLast !== undefined) {
      const which = tags !== undefined ? 'tags' : 'keeplast';
      throw configError(
        ctx,
        `${key}.${which}: not with untagged: true; a rule is either {tags, keeplast and/or olderthan} ` +
          'or {untagged: true, olderthan}',
      );
    }
    if (olderThanMs === undefined) {
      throw configError(
        ctx,
        `${key}.olderthan: is required with untagged: true (how old an untagged manifest goes)`,
      );
    }
    return { kind: 'untagged', olderThanMs };
  }
  if (tags === undefined) {
    throw configError(
      ctx,
      `${key}: expected tags (with keeplast and/or olderthan) or untagged: true (with olderthan)`,
    );
  }
  if (keepLast === undefined && olderThanMs === undefined) {
    throw configError(ctx, `${key}: tags need keeplast, olderthan or both (which of them go)`);
  }
  return { kind: 'tags', tags, keepLast, olderThanMs };
}

function resolveUploads(d: Decoded, ctx: Context): RegistryConfig['uploads'] {
  const uploads = d.uploads;
  if (!uploads.edge && uploads.service === undefined && !uploads.only) return uploads;
  if (d.http.secret === undefined) {
    throw configError(
      ctx,
      'uploads: signed upload URLs need http.secret (the same on the registry and its upload service)',
    );
  }
  if (uploads.service !== undefined && !/^https?:\/\//.test(uploads.service)) {
    throw configError(
      ctx,
      `uploads.service: expected an http(s) URL, got ${JSON.stringify(uploads.service)}`,
    );
  }
  if (uploads.only && (uploads.edge || uploads.service !== undefined)) {
    throw configError(ctx, 'uploads.only: the upload service takes neither uploads.edge nor uploads.service');
  }
  if (uploads.urlExpiryMs < 60_000) {
    throw configError(ctx, 'uploads.urlexpiry: at least 1m, so that a client can start its upload');
  }
  return uploads;
}

/** GCS refuses to sign a URL for longer than 7 days: say so at start, not on every blob GET. */
function resolveRedirect(
  redirect: Decoded['storage']['redirect'],
  driver: StorageDriverConfig,
  ctx: Context,
): RegistryConfig['storage']['redirect'] {
  const week = 7 * 24 * 3_600_000;
  if (driver.type === 'gcs' && !redirect.disable && redirect.expiryMs > week) {
    throw configError(
      ctx,
      'storage.redirect.expiry: Google Cloud Storage signs URLs for at most 7 days (168h)',
    );
  }
  return redirect;
}

function resolveNotifications(
  notifications: Decoded['notifications'],
  ctx: Context,
): RegistryConfig['notifications'] {
  const checkActions = (key: string, actions: readonly string[]) => {
    const unknown = actions.filter((action) => !(EVENT_ACTIONS as readonly string[]).includes(action));
    if (unknown.length > 0) {
      throw configError(ctx, `${key}: unknown action ${unknown.join(', ')}; use ${EVENT_ACTIONS.join(', ')}`);
    }
  };
  const endpoints = notifications.endpoints.map((e, i) => {
    const key = `notifications.endpoints[${i}]`;
    if (!/^https?:\/\//.test(e.url)) {
      throw configError(ctx, `${key}.url: expected an http(s) URL, got ${JSON.stringify(e.url)}`);
    }
    checkActions(`${key}.ignore.actions`, e.ignore.actions);
    // distribution's defaults apply to unset (zero) values.
    return {
      ...e,
      timeoutMs: e.timeoutMs || 1000,
      threshold: e.threshold || 10,
      backoffMs: e.backoffMs || 1000,
    };
  });
  const names = endpoints.map((e) => e.name);
  const repeated = names.find((name, i) => names.indexOf(name) !== i);
  if (repeated !== undefined) {
    throw configError(ctx, `notifications.endpoints: the name ${JSON.stringify(repeated)} is used twice`);
  }
  const eventBridge = notifications.eventBridge;
  if (eventBridge !== undefined) {
    if (eventBridge.eventBus === '') {
      throw configError(ctx, 'notifications.eventbridge.eventbus: the event bus (name or ARN) is required');
    }
    if (eventBridge.source === '' || eventBridge.source.startsWith('aws.')) {
      throw configError(ctx, 'notifications.eventbridge.source: must be set and not start with "aws."');
    }
    checkActions('notifications.eventbridge.ignore.actions', eventBridge.ignore.actions);
  }
  return { events: notifications.events, endpoints, eventBridge };
}

function resolveDebug(debug: Decoded['http']['debug'], ctx: Context): RegistryConfig['http']['debug'] {
  if (debug === undefined || debug.addr === '') {
    if (debug?.prometheus.enabled) {
      throw configError(
        ctx,
        'http.debug.prometheus: metrics are served on the debug listener; set http.debug.addr',
      );
    }
    return undefined;
  }
  if (!debug.prometheus.path.startsWith('/')) {
    throw configError(
      ctx,
      `http.debug.prometheus.path: expected a path, got ${JSON.stringify(debug.prometheus.path)}`,
    );
  }
  return debug;
}

function resolveTls(tls: Decoded['http']['tls'], ctx: Context): TlsConfig | undefined {
  if (tls === undefined) return undefined;
  const { certificate, key } = tls;
  if (certificate === undefined && key === undefined) return undefined;
  if (certificate === undefined || key === undefined) {
    const missing = certificate === undefined ? 'certificate' : 'key';
    throw configError(ctx, `http.tls: a certificate and a key are both required; ${missing} is missing`);
  }
  return { certificate, key, clientCas: tls.clientCas, minimumTls: tls.minimumTls };
}

function resolveAuth(auth: Decoded['auth'], ctx: Context): AuthConfig | undefined {
  if (auth.htpasswd) return { type: 'htpasswd', ...auth.htpasswd };
  const token = auth.token;
  if (!token) return undefined;
  if (token.rootCertBundle === undefined && token.jwks === undefined && token.signingKey === undefined) {
    throw configError(
      ctx,
      'auth.token: the keys that sign tokens are required: rootcertbundle or jwks (an external issuer), ' +
        'or signingkey (the built-in token endpoint)',
    );
  }
  if (token.signingKey !== undefined && token.htpasswd === undefined) {
    throw configError(ctx, 'auth.token.htpasswd: the built-in token endpoint (signingkey) needs its users');
  }
  if (token.signingKey === undefined && token.htpasswd !== undefined) {
    throw configError(
      ctx,
      'auth.token.htpasswd: users are only for the built-in token endpoint; set signingkey too',
    );
  }
  if (!URL.canParse(token.realm) && !(token.signingKey !== undefined && token.realm.startsWith('/'))) {
    throw configError(
      ctx,
      `auth.token.realm: expected an absolute URL${token.signingKey === undefined ? '' : ' or a path on this registry'}, ` +
        `got ${JSON.stringify(token.realm)}`,
    );
  }
  const refused = token.signingAlgorithms.filter((algorithm) => !DEFAULT_ALGORITHMS.includes(algorithm));
  if (refused.length > 0) {
    throw configError(
      ctx,
      `auth.token.signingalgorithms: ${refused.join(', ')} not accepted (never none or a symmetric ` +
        `algorithm); use ${DEFAULT_ALGORITHMS.join(', ')}`,
    );
  }
  if (token.expirationMs < 1000 || token.refreshExpirationMs < token.expirationMs) {
    throw configError(
      ctx,
      'auth.token: expiration must be at least 1s, and refreshexpiration at least expiration',
    );
  }
  return { type: 'token', ...token };
}

function resolveAccess(access: Decoded['access'], ctx: Context): AccessConfig | undefined {
  if (access === undefined) return undefined;
  const error = accessRulesError(access.groups, access.rules);
  if (error !== undefined) throw configError(ctx, error);
  return access;
}

const configError = (ctx: Context, message: string) =>
  new ConfigError(ctx.file === undefined ? message : `${message} (in ${ctx.file})`);
