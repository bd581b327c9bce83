import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeRegistry } from '../functions/compose.js';
import { ConfigError, loadConfig, parseAge, parseGoDuration } from '../functions/config.js';
import { silentLogger } from '../functions/log.js';
import { type Api, expectError, pushImage, putManifest } from './api/helpers.js';

let dir: string;
let counter = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'registry-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a configuration file and returns its path. */
async function configFile(content: string): Promise<string> {
  const path = join(dir, `config-${++counter}.yml`);
  await writeFile(path, content);
  return path;
}

/** Loads YAML content as a configuration file, with the given environment. */
async function load(content: string, env: Record<string, string> = {}) {
  return loadConfig({ path: await configFile(content), env });
}

const minimal = 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/data\n';

// The configuration shipped in the registry:2 image at /etc/docker/registry/config.yml.
const registry2Config = `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`;

const notSupportedYet = /accepted but not supported by this registry yet/;

describe('loadConfig without a file', () => {
  it('uses the embedded laptop default', async () => {
    const { config, warnings } = await loadConfig({ env: {} });
    expect(warnings).toEqual([]);
    expect(config.http.addr).toBe('127.0.0.1:5000');
    expect(config.http.tls).toBeUndefined();
    expect(config.storage.driver).toEqual({
      type: 'filesystem',
      rootDirectory: resolve(process.cwd(), 'data'),
    });
    expect(config.storage.delete.enabled).toBe(true);
    expect(config.log.level).toBe('info');
    expect(config.auth).toBeUndefined();
  });

  it('reads the file named by REGISTRY_CONFIGURATION_PATH without warning about that variable', async () => {
    const path = await configFile(minimal);
    const { config, warnings } = await loadConfig({ env: { REGISTRY_CONFIGURATION_PATH: path } });
    expect(warnings).toEqual([]);
    expect(config.storage.driver).toEqual({ type: 'filesystem', rootDirectory: '/srv/data' });
  });

  it('prefers the path option over REGISTRY_CONFIGURATION_PATH', async () => {
    const path = await configFile(minimal);
    const { config } = await loadConfig({
      path,
      env: { REGISTRY_CONFIGURATION_PATH: join(dir, 'nope.yml') },
    });
    expect(config.storage.driver.type).toBe('filesystem');
  });
});

describe('loadConfig with a distribution config file', () => {
  it('loads the registry:2 example config with only "not supported yet" warnings', async () => {
    const { config, warnings } = await load(registry2Config);
    expect(warnings.length).toBe(1);
    for (const warning of warnings) expect(warning).toMatch(notSupportedYet);
    expect(warnings.join('\n')).toContain('storage.cache');
    expect(config.health.storageDriver).toEqual({ enabled: true, intervalMs: 10_000, threshold: 3 });
    expect(config.http.addr).toBe(':5000');
    expect(config.http.headers).toEqual({ 'X-Content-Type-Options': ['nosniff'] });
    expect(config.log.fields).toEqual({ service: 'registry' });
    expect(config.storage.driver).toEqual({ type: 'filesystem', rootDirectory: '/var/lib/registry' });
  });

  it("applies distribution's defaults to what the file leaves out", async () => {
    const { config } = await load('version: 0.1\nstorage: inmemory\n');
    expect(config.storage.driver).toEqual({ type: 'inmemory' });
    expect(config.storage.delete.enabled).toBe(false);
    expect(config.storage.redirect).toEqual({ disable: false, expiryMs: 20 * 60_000 });
    expect(config.storage.maintenance).toEqual({
      uploadPurging: { enabled: true, ageMs: 168 * 3_600_000, intervalMs: 24 * 3_600_000, dryRun: false },
      readOnly: { enabled: false },
    });
    expect(config.http).toMatchObject({ addr: ':5000', net: 'tcp', prefix: '', relativeUrls: false });
    expect(config.http.drainTimeoutMs).toBe(0);
    expect(config.log.level).toBe('info');
    expect(config.catalog.maxEntries).toBe(1000);
    expect(config.notifications.endpoints).toEqual([]);
    expect(config.notifications.eventBridge).toBeUndefined();
    expect(config.http.debug).toBeUndefined();
    expect(config.health.storageDriver).toEqual({ enabled: false, intervalMs: 10_000, threshold: 1 });
    expect(config.metrics.namespace).toBeUndefined();
  });

  it('defaults the filesystem root directory to /var/lib/registry', async () => {
    const { config } = await load('version: 0.1\nstorage:\n  filesystem:\n');
    expect(config.storage.driver).toEqual({ type: 'filesystem', rootDirectory: '/var/lib/registry' });
  });

  it('parses http.tls, auth and notification endpoints into typed values', async () => {
    const { config, warnings } = await load(`version: 0.1
storage: {inmemory: {}}
http:
  draintimeout: 1m30s
  tls: {certificate: /certs/a.crt, key: /certs/a.key, clientcas: [/certs/ca.pem]}
auth:
  htpasswd: {realm: basic-realm, path: /auth/htpasswd}
notifications:
  endpoints:
    - name: listener
      url: https://hooks.example.com/events
      headers: {Authorization: [Bearer secret]}
      timeout: 500ms
      ignore: {actions: [pull]}
`);
    expect(warnings).toEqual([]);
    expect(config.http.drainTimeoutMs).toBe(90_000);
    expect(config.http.tls).toEqual({
      certificate: '/certs/a.crt',
      key: '/certs/a.key',
      clientCas: ['/certs/ca.pem'],
      minimumTls: 'tls1.2',
    });
    expect(config.auth).toEqual({ type: 'htpasswd', realm: 'basic-realm', path: '/auth/htpasswd' });
    expect(config.notifications.endpoints).toEqual([
      {
        name: 'listener',
        url: 'https://hooks.example.com/events',
        disabled: false,
        headers: { Authorization: ['Bearer secret'] },
        timeoutMs: 500,
        threshold: 10,
        backoffMs: 1000,
        ignoredMediaTypes: [],
        ignore: { mediaTypes: [], actions: ['pull'] },
        signingSecret: undefined,
      },
    ]);
  });

  it('parses the debug listener, health checks, EventBridge and webhook signing', async () => {
    const { config, warnings } = await load(`version: 0.1
storage: {inmemory: {}}
http:
  debug: {addr: '127.0.0.1:5001', prometheus: {enabled: true}}
health:
  storagedriver: {enabled: true, interval: 30s, threshold: 3}
notifications:
  events: {includereferences: true}
  eventbridge:
    eventbus: arn:aws:events:eu-west-1:123456789012:event-bus/registry
    ignore: {actions: [pull]}
  endpoints:
    - {name: ci, url: 'https://ci.example.com/hook', signingsecret: whsec_c2VjcmV0}
metrics: {namespace: Registry/prod}
`);
    expect(warnings).toEqual([]);
    expect(config.http.debug).toEqual({
      addr: '127.0.0.1:5001',
      prometheus: { enabled: true, path: '/metrics' },
    });
    expect(config.health.storageDriver).toEqual({ enabled: true, intervalMs: 30_000, threshold: 3 });
    expect(config.notifications.events.includeReferences).toBe(true);
    expect(config.notifications.eventBridge).toEqual({
      eventBus: 'arn:aws:events:eu-west-1:123456789012:event-bus/registry',
      source: 'registry',
      region: undefined,
      endpoint: undefined,
      ignore: { mediaTypes: [], actions: ['pull'] },
    });
    expect(config.notifications.endpoints[0]?.signingSecret).toBe('whsec_c2VjcmV0');
    expect(config.metrics.namespace).toBe('Registry/prod');
  });

  it('refuses notification and debug settings that cannot work, naming the key', async () => {
    const bad = (yaml: string) => load(`version: 0.1\nstorage: {inmemory: {}}\n${yaml}`);
    await expect(bad('notifications: {endpoints: [{name: a, url: ftp://x}]}\n')).rejects.toThrow(
      'notifications.endpoints[0].url: expected an http(s) URL, got "ftp://x"',
    );
    await expect(
      bad('notifications: {endpoints: [{name: a, url: http://x, ignore: {actions: [pul]}}]}\n'),
    ).rejects.toThrow(
      'notifications.endpoints[0].ignore.actions: unknown action pul; use push, pull, mount, delete',
    );
    await expect(
      bad('notifications: {endpoints: [{name: a, url: http://x}, {name: a, url: http://y}]}\n'),
    ).rejects.toThrow('notifications.endpoints: the name "a" is used twice');
    await expect(bad('notifications: {eventbridge: {source: x}}\n')).rejects.toThrow(
      'notifications.eventbridge.eventbus: the event bus (name or ARN) is required',
    );
    await expect(bad('notifications: {eventbridge: {eventbus: b, source: aws.ecr}}\n')).rejects.toThrow(
      'notifications.eventbridge.source: must be set and not start with "aws."',
    );
    await expect(bad('http: {debug: {prometheus: {enabled: true}}}\n')).rejects.toThrow(
      'http.debug.prometheus: metrics are served on the debug listener; set http.debug.addr',
    );
    await expect(bad('http: {debug: {addr: ":5001", prometheus: {path: metrics}}}\n')).rejects.toThrow(
      'http.debug.prometheus.path: expected a path, got "metrics"',
    );
  });

  it('keeps s3 parameters raw', async () => {
    const { config } = await load(
      'version: 0.1\nstorage:\n  s3: {region: eu-west-1, bucket: images, secure: true}\n',
    );
    expect(config.storage.driver).toEqual({
      type: 's3',
      parameters: { region: 'eu-west-1', bucket: 'images', secure: true },
    });
  });

  it('maps the panic and fatal log levels to error and warns about non-JSON formatters', async () => {
    const { config, warnings } = await load(`${minimal}log: {level: fatal, formatter: text}\n`);
    expect(config.log.level).toBe('error');
    expect(warnings).toEqual([expect.stringContaining('always writes JSON lines')]);
  });

  it('accepts YAML 1.1 booleans as distribution does', async () => {
    const { config } = await load(`${minimal}  delete: {enabled: yes}\n`);
    expect(config.storage.delete.enabled).toBe(true);
  });
});

describe('loadConfig environment overrides', () => {
  it('overrides http.addr, the filesystem root, delete, log level and read-only mode', async () => {
    const { config, warnings } = await load(minimal, {
      REGISTRY_HTTP_ADDR: '127.0.0.1:5001',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/srv/registry',
      REGISTRY_STORAGE_DELETE_ENABLED: 'true',
      REGISTRY_LOG_LEVEL: 'debug',
      REGISTRY_STORAGE_MAINTENANCE_READONLY: '{"enabled": true}',
    });
    expect(warnings).toEqual([]);
    expect(config.http.addr).toBe('127.0.0.1:5001');
    expect(config.storage.driver).toEqual({ type: 'filesystem', rootDirectory: '/srv/registry' });
    expect(config.storage.delete.enabled).toBe(true);
    expect(config.log.level).toBe('debug');
    expect(config.storage.maintenance.readOnly.enabled).toBe(true);
  });

  it('overrides the embedded default too', async () => {
    const { config } = await loadConfig({ env: { REGISTRY_HTTP_ADDR: ':6000' } });
    expect(config.http.addr).toBe(':6000');
    expect(config.storage.delete.enabled).toBe(true);
  });

  it('switches the storage driver with REGISTRY_STORAGE and keeps the other storage sections', async () => {
    const { config, warnings } = await load(`${minimal}  delete: {enabled: true}\n`, {
      REGISTRY_STORAGE: 'inmemory',
    });
    expect(warnings).toEqual([]);
    expect(config.storage.driver).toEqual({ type: 'inmemory' });
    expect(config.storage.delete.enabled).toBe(true);
  });

  it('takes the parameters of a driver selected by REGISTRY_STORAGE from REGISTRY_STORAGE_<DRIVER>_*', async () => {
    const { config } = await load(minimal, {
      REGISTRY_STORAGE: 's3',
      REGISTRY_STORAGE_S3_REGION: 'us-east-1',
      REGISTRY_STORAGE_S3_BUCKET: 'images',
      REGISTRY_STORAGE_S3_CHUNKSIZE: '10485760',
    });
    expect(config.storage.driver).toEqual({
      type: 's3',
      parameters: { region: 'us-east-1', bucket: 'images', chunksize: 10485760 },
    });
  });

  it('keeps metadata in storage by default and selects DynamoDB with REGISTRY_METADATA', async () => {
    expect((await loadConfig({ env: {} })).config.metadata).toEqual({ type: 'storage' });
    const { config, warnings } = await loadConfig({
      env: {
        REGISTRY_METADATA: 'dynamodb',
        REGISTRY_METADATA_DYNAMODB_TABLE: 'registry',
        REGISTRY_METADATA_DYNAMODB_ENDPOINT: 'http://127.0.0.1:8000',
      },
    });
    expect(warnings).toEqual([]);
    expect(config.metadata).toEqual({
      type: 'dynamodb',
      table: 'registry',
      region: undefined,
      endpoint: 'http://127.0.0.1:8000',
    });
    await expect(loadConfig({ env: { REGISTRY_METADATA: 'dynamodb' } })).rejects.toThrow(
      /metadata\.dynamodb\.table/,
    );
  });

  it('sets how long redirect URLs stay valid with storage.redirect.expiry', async () => {
    const { config } = await loadConfig({ env: { REGISTRY_STORAGE_REDIRECT_EXPIRY: '5m' } });
    expect(config.storage.redirect.expiryMs).toBe(300_000);
  });

  it('matches keys case-insensitively and fills list entries by index', async () => {
    const { config } = await load(`${minimal}HTTP:\n  Addr: :1\n`, {
      REGISTRY_HTTP_ADDR: ':2',
      REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME: 'hook',
      REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL: 'http://localhost:9000/',
      REGISTRY_NOTIFICATIONS_ENDPOINTS_0_TIMEOUT: '2s',
    });
    expect(config.http.addr).toBe(':2');
    expect(config.notifications.endpoints).toMatchObject([
      { name: 'hook', url: 'http://localhost:9000/', timeoutMs: 2000 },
    ]);
  });

  it('warns about variables that match no configuration key', async () => {
    const { warnings } = await load(minimal, {
      REGISTRY_HTTP_FOO: 'x',
      REGISTRY_PORT: 'tcp://10.0.0.1:5000',
    });
    expect(warnings).toEqual([
      'environment variable REGISTRY_HTTP_FOO matches no configuration key (ignored)',
      'environment variable REGISTRY_PORT matches no configuration key (ignored)',
    ]);
  });

  it('names the variable when its value is invalid', async () => {
    await expect(load(minimal, { REGISTRY_STORAGE_DELETE_ENABLED: 'maybe' })).rejects.toThrow(
      'storage.delete.enabled: expected a boolean, got "maybe" (from environment variable REGISTRY_STORAGE_DELETE_ENABLED)',
    );
  });
});

describe('loadConfig validation', () => {
  it('names the key path of an invalid value', async () => {
    const loading = load(`${minimal}  delete:\n    enabled: maybe\n`);
    await expect(loading).rejects.toBeInstanceOf(ConfigError);
    await expect(loading).rejects.toThrow('storage.delete.enabled: expected a boolean, got "maybe"');
    await expect(load(`${minimal}http: {addr: [a]}\n`)).rejects.toThrow(
      'http.addr: expected a string, got a list',
    );
    await expect(load(`${minimal}log: {level: loud}\n`)).rejects.toThrow(
      'log.level: expected one of error, warn, info, debug, panic, fatal, got "loud"',
    );
    await expect(load(`${minimal}http: {draintimeout: soon}\n`)).rejects.toThrow(
      'http.draintimeout: expected a duration',
    );
    await expect(load(`${minimal}http: {host: not a url}\n`)).rejects.toThrow(
      'http.host: expected an absolute URL',
    );
  });

  it('warns about unknown keys with their full path', async () => {
    const { warnings } = await load(`${minimal}http:\n  foo: 1\n  tls: {bar: 2}\nextra: true\n`);
    expect(warnings).toEqual([
      'unknown configuration key http.foo (ignored)',
      'unknown configuration key http.tls.bar (ignored)',
      'unknown configuration key extra (ignored)',
    ]);
  });

  it('accepts known but unsupported distribution features with a warning', async () => {
    const { warnings } = await load(`${minimal}proxy: {remoteurl: https://registry-1.docker.io}
redis: {addr: localhost:6379}
http: {http2: {disabled: true}}
health: {file: [{file: /tmp/down}]}
middleware: {registry: []}
auth: {silly: {realm: r, service: s}}
`);
    expect(warnings.map((w) => w.split(' ')[2])).toEqual([
      'proxy',
      'redis',
      'http.http2',
      'health.file',
      'middleware',
      'auth.silly',
    ]);
    for (const warning of warnings) expect(warning).toMatch(notSupportedYet);
  });

  it('names the file when it is missing or not valid YAML', async () => {
    const missing = join(dir, 'missing.yml');
    await expect(loadConfig({ path: missing, env: {} })).rejects.toThrow(
      `cannot read configuration file ${missing}`,
    );
    const bad = await configFile('version: 0.1\nstorage: [unclosed\n');
    await expect(loadConfig({ path: bad, env: {} })).rejects.toThrow(
      `invalid YAML in configuration file ${bad}`,
    );
  });

  it('refuses a version other than 0.1', async () => {
    await expect(load('version: 0.2\nstorage: inmemory\n')).rejects.toThrow(
      'version: expected 0.1, got "0.2"',
    );
    await expect(load('storage: inmemory\n')).rejects.toThrow('version: expected 0.1, got nothing');
  });

  it('refuses zero, several or unknown storage drivers', async () => {
    await expect(load('version: 0.1\nstorage: {delete: {enabled: true}}\n')).rejects.toThrow(
      'storage: no storage driver configured',
    );
    await expect(load(`${minimal}  inmemory:\n`)).rejects.toThrow(
      'storage: several storage drivers configured (filesystem, inmemory)',
    );
    await expect(load('version: 0.1\nstorage: {swift: {}}\n')).rejects.toThrow(
      'storage: unsupported storage driver "swift"',
    );
  });

  it('refuses TLS with a certificate but no key', async () => {
    await expect(load(`${minimal}http:\n  tls:\n    certificate: /certs/a.crt\n`)).rejects.toThrow(
      'http.tls: a certificate and a key are both required; key is missing',
    );
  });

  it('refuses token auth without signing keys and htpasswd auth without a path', async () => {
    await expect(load(`${minimal}auth: {token: {realm: r, service: s, issuer: i}}\n`)).rejects.toThrow(
      'auth.token: the keys that sign tokens are required',
    );
    await expect(load(`${minimal}auth: {htpasswd: {realm: r}}\n`)).rejects.toThrow(
      'auth.htpasswd.path: is required',
    );
  });
});

const inmemory = 'version: 0.1\nstorage: {inmemory: {}}\n';
const builtIn =
  'auth:\n  token: {realm: /auth/token, service: s, issuer: i, signingkey: /k.pem, htpasswd: /users}\n';

describe('loadConfig auth and access sections', () => {
  it('reads the built-in token issuer keys, with their defaults', async () => {
    const { config, warnings } = await load(`${inmemory}${builtIn}`);
    expect(warnings).toEqual([]);
    expect(config.auth).toEqual({
      type: 'token',
      realm: '/auth/token',
      service: 's',
      issuer: 'i',
      rootCertBundle: undefined,
      jwks: undefined,
      autoRedirect: false,
      autoRedirectPath: '/auth/token',
      signingAlgorithms: [],
      signingKey: '/k.pem',
      htpasswd: '/users',
      expirationMs: 5 * 60_000,
      refreshExpirationMs: 30 * 24 * 3_600_000,
    });
    expect(config.access).toBeUndefined();
  });

  it('takes token settings and lifetimes from REGISTRY_AUTH_TOKEN_* variables alone', async () => {
    const { config } = await load(inmemory, {
      REGISTRY_AUTH_TOKEN_REALM: 'https://auth.example.com/token',
      REGISTRY_AUTH_TOKEN_SERVICE: 'registry.example.com',
      REGISTRY_AUTH_TOKEN_ISSUER: 'auth.example.com',
      REGISTRY_AUTH_TOKEN_JWKS: 'https://auth.example.com/jwks.json',
      REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS_0: 'RS256',
      REGISTRY_AUTH_TOKEN_EXPIRATION: '10m',
      REGISTRY_AUTH_TOKEN_REFRESHEXPIRATION: '24h',
    });
    expect(config.auth).toMatchObject({
      type: 'token',
      jwks: 'https://auth.example.com/jwks.json',
      signingAlgorithms: ['RS256'],
      expirationMs: 600_000,
      refreshExpirationMs: 86_400_000,
    });
  });

  it('reads access groups and rules, defaulting what a rule leaves out', async () => {
    const { config } = await load(`${inmemory}${builtIn}access:
  groups: {admins: [alice, bob]}
  rules:
    - {repositories: ['**'], groups: [admins], actions: ['*']}
    - {repositories: ['public/*'], anonymous: true, actions: [pull]}
    - {users: [auditor], actions: [catalog]}
`);
    expect(config.access).toEqual({
      groups: { admins: ['alice', 'bob'] },
      rules: [
        { repositories: ['**'], users: [], groups: ['admins'], anonymous: false, actions: ['*'] },
        { repositories: ['public/*'], users: [], groups: [], anonymous: true, actions: ['pull'] },
        { repositories: [], users: ['auditor'], groups: [], anonymous: false, actions: ['catalog'] },
      ],
    });
  });

  it.each([
    [
      'htpasswd without signingkey',
      'auth: {token: {realm: /t, service: s, issuer: i, jwks: /j, htpasswd: /u}}',
      'auth.token.htpasswd: users are only for the built-in token endpoint; set signingkey too',
    ],
    [
      'signingkey without htpasswd',
      'auth: {token: {realm: /t, service: s, issuer: i, signingkey: /k}}',
      'auth.token.htpasswd: the built-in token endpoint (signingkey) needs its users',
    ],
    [
      'a path realm for an external issuer',
      'auth: {token: {realm: /auth/token, service: s, issuer: i, jwks: /j}}',
      'auth.token.realm: expected an absolute URL, got "/auth/token"',
    ],
    [
      'a relative realm',
      'auth: {token: {realm: auth/token, service: s, issuer: i, signingkey: /k, htpasswd: /u}}',
      'auth.token.realm: expected an absolute URL or a path on this registry, got "auth/token"',
    ],
    [
      'an expiration under 1s',
      'auth: {token: {realm: https://a/t, service: s, issuer: i, jwks: /j, expiration: 500ms}}',
      'auth.token: expiration must be at least 1s, and refreshexpiration at least expiration',
    ],
    [
      'a refreshexpiration under expiration',
      'auth: {token: {realm: https://a/t, service: s, issuer: i, jwks: /j, expiration: 1h, refreshexpiration: 30m}}',
      'auth.token: expiration must be at least 1s, and refreshexpiration at least expiration',
    ],
    [
      'HS256 and none as signing algorithms',
      'auth: {token: {realm: https://a/t, service: s, issuer: i, jwks: /j, signingalgorithms: [ES256, HS256, none]}}',
      'auth.token.signingalgorithms: HS256, none not accepted (never none or a symmetric algorithm); use ES256, ES384',
    ],
    [
      'both htpasswd and token',
      'auth: {htpasswd: {realm: r, path: /p}, token: {realm: https://a/t, service: s, issuer: i, jwks: /j}}',
      'auth: several authentication types configured (htpasswd, token)',
    ],
    [
      'a token section without service',
      'auth: {token: {realm: https://a/t, issuer: i, jwks: /j}}',
      'auth.token.service: is required',
    ],
  ])('refuses %s, naming the key', async (_what, yaml, message) => {
    const loading = load(`${inmemory}${yaml}\n`);
    await expect(loading).rejects.toBeInstanceOf(ConfigError);
    await expect(loading).rejects.toThrow(message);
  });

  it.each([
    [
      'an unknown action',
      '{repositories: [a], users: [u], actions: [pull, write]}',
      'access.rules[0].actions: unknown write; use pull, push, delete, catalog, *',
    ],
    [
      'no action',
      '{repositories: [a], users: [u], actions: []}',
      'access.rules[0].actions: no action granted',
    ],
    [
      'nobody',
      '{repositories: [a], actions: [pull]}',
      'access.rules[0]: name users, groups, or anonymous: true',
    ],
    [
      'repository actions without repositories',
      '{users: [u], actions: [catalog, pull]}',
      "access.rules[0].repositories: the repositories the rule's actions apply to are required",
    ],
    [
      'a group not defined',
      '{repositories: [a], groups: [ops], actions: [pull]}',
      'access.rules[0].groups: "ops" is not in access.groups',
    ],
  ])('refuses an access rule with %s', async (_what, rule, message) => {
    await expect(load(`${inmemory}${builtIn}access:\n  rules:\n    - ${rule}\n`)).rejects.toThrow(message);
  });

  it('refuses access rules without auth when the registry is composed', async () => {
    const { config } = await load(`${inmemory}access:\n  rules:\n    - {users: [u], actions: [catalog]}\n`);
    await expect(composeRegistry(config, silentLogger)).rejects.toThrow(
      new ConfigError('access: access rules need authentication; configure auth too'),
    );
  });
});

describe('storage.redirect.expiry with gcs', () => {
  it('is refused beyond the 7 days GCS signs URLs for', async () => {
    const gcs = 'version: 0.1\nstorage:\n  gcs: {bucket: b}\n  redirect:\n';
    await expect(load(`${gcs}    expiry: 169h\n`)).rejects.toThrow(
      'storage.redirect.expiry: Google Cloud Storage signs URLs for at most 7 days (168h)',
    );
    expect((await load(`${gcs}    expiry: 168h\n`)).config.storage.redirect.expiryMs).toBe(168 * 3_600_000);
    expect((await load(`${gcs}    expiry: 169h\n    disable: true\n`)).config.storage.redirect.disable).toBe(
      true,
    );
  });
});

describe('composing notifications', () => {
  it('refuses webhooks where the process may freeze between requests (Lambda)', async () => {
    const { config } = await load(
      'version: 0.1\nstorage: {inmemory: {}}\nnotifications: {endpoints: [{name: ci, url: http://ci/hook}]}\n',
    );
    await expect(composeRegistry(config, silentLogger, {}, { deliverInBackground: false })).rejects.toThrow(
      /notifications.endpoints: webhooks need a process that runs between requests; on AWS, send events to EventBridge/,
    );
    const composed = await composeRegistry(config, silentLogger);
    await composed.events.close(0);
  });
});

describe('loadConfig uploads', () => {
  const secret = 'http:\n  secret: a-secret-of-at-least-thirty-two-characters\n';

  it('is off by default, with URLs valid for an hour once on', async () => {
    expect((await load(minimal)).config.uploads).toEqual({
      edge: false,
      service: undefined,
      only: false,
      urlExpiryMs: 3_600_000,
    });
  });

  it('takes the edge, the upload service and the upload-only mode from the file or the environment', async () => {
    const { config } = await load(`${minimal}${secret}uploads: {edge: true, urlexpiry: 15m}\n`, {
      REGISTRY_UPLOADS_SERVICE: 'https://uploads.example.com',
    });
    expect(config.uploads).toEqual({
      edge: true,
      service: 'https://uploads.example.com',
      only: false,
      urlExpiryMs: 900_000,
    });
    const service = await load(minimal, {
      REGISTRY_UPLOADS_ONLY: 'true',
      REGISTRY_HTTP_SECRET: 'a-secret-of-at-least-thirty-two-characters',
    });
    expect(service.config.uploads.only).toBe(true);
  });

  it.each([
    ['no http.secret', 'uploads: {edge: true}', 'uploads: signed upload URLs need http.secret'],
    [
      'a service that is not http(s)',
      `${secret}uploads: {service: 'ftp://x'}`,
      'uploads.service: expected an http(s) URL',
    ],
    [
      'an upload service that routes',
      `${secret}uploads: {only: true, edge: true}`,
      'uploads.only: the upload service takes',
    ],
    [
      'a URL lifetime too short to start with',
      `${secret}uploads: {edge: true, urlexpiry: 10s}`,
      'uploads.urlexpiry: at least 1m',
    ],
  ])('refuses %s', async (_what, yaml, message) => {
    const loading = load(`${minimal}${yaml}\n`);
    await expect(loading).rejects.toBeInstanceOf(ConfigError);
    await expect(loading).rejects.toThrow(message);
  });

  it('refuses a short secret when the registry is composed', async () => {
    const { config } = await load(`${inmemory}http: {secret: short}\nuploads: {edge: true}\n`);
    await expect(composeRegistry(config, silentLogger)).rejects.toThrow(
      new ConfigError('http.secret: the upload URL secret (http.secret) must have at least 32 characters'),
    );
  });
});

describe('parseGoDuration', () => {
  it('parses Go duration syntax to milliseconds', () => {
    expect(parseGoDuration('1m30s')).toBe(90_000);
    expect(parseGoDuration('300ms')).toBe(300);
    expect(parseGoDuration('10s')).toBe(10_000);
    expect(parseGoDuration('2h')).toBe(7_200_000);
    expect(parseGoDuration('24h')).toBe(86_400_000);
    expect(parseGoDuration('1.5h')).toBe(5_400_000);
    expect(parseGoDuration('1500us')).toBe(1.5);
    expect(parseGoDuration('0')).toBe(0);
  });

  it('refuses what Go refuses', () => {
    for (const text of ['', '10', 'ms', '1d', '1m30', 'soon']) expect(parseGoDuration(text)).toBeUndefined();
  });

  it('reads a bare integer in the file as nanoseconds, as Go does', async () => {
    const { config } = await load(`${minimal}http: {draintimeout: 2000000000}\n`);
    expect(config.http.drainTimeoutMs).toBe(2000);
  });
});

describe('loadConfig gc, retention and immutability', () => {
  const designExample = `gc:
  grace: 1h
  deleteuntagged: false
retention:
  - repositories: ["ci/**"]
    protect: ["latest", "v*"]
    rules:
      - tags: ["main-*"]
        keeplast: 10
      - tags: ["pr-*"]
        olderthan: 14d
      - untagged: true
        olderthan: 7d
immutability:
  - repositories: ["prod/**"]
    tags: ["*"]
    except: ["latest"]
`;

  it('is off by default: an hour of grace, no untagged removal, no policies, no immutable tags', async () => {
    const { config, warnings } = await load(minimal);
    expect(warnings).toEqual([]);
    expect(config.gc).toEqual({ graceMs: 3_600_000, deleteUntagged: false });
    expect(config.retention).toEqual([]);
    expect(config.immutability).toEqual([]);
  });

  it('reads the sections into typed values', async () => {
    const { config, warnings } = await load(`${minimal}${designExample}`);
    expect(warnings).toEqual([]);
    expect(config.gc).toEqual({ graceMs: 3_600_000, deleteUntagged: false });
    expect(config.retention).toEqual([
      {
        repositories: ['ci/**'],
        protect: ['latest', 'v*'],
        rules: [
          { kind: 'tags', tags: ['main-*'], keepLast: 10, olderThanMs: undefined },
          { kind: 'tags', tags: ['pr-*'], keepLast: undefined, olderThanMs: 14 * 86_400_000 },
          { kind: 'untagged', olderThanMs: 7 * 86_400_000 },
        ],
      },
    ]);
    expect(config.immutability).toEqual([{ repositories: ['prod/**'], tags: ['*'], except: ['latest'] }]);
  });

  it('takes a Go duration for gc.grace, 0s included, and YAML 1.1 booleans', async () => {
    const gc = async (yaml: string) => (await load(`${minimal}gc: ${yaml}\n`)).config.gc;
    expect(await gc('{grace: 0s}')).toEqual({ graceMs: 0, deleteUntagged: false });
    expect(await gc('{grace: 1h30m, deleteuntagged: yes}')).toEqual({
      graceMs: 5_400_000,
      deleteUntagged: true,
    });
    expect(await gc('')).toEqual({ graceMs: 3_600_000, deleteUntagged: false });
  });

  it('defaults a policy without protect to none, and reads keeplast with olderthan together', async () => {
    const { config } = await load(`${minimal}retention:
  - repositories: ['**']
    rules:
      - {tags: ['*'], keeplast: 1, olderthan: 336h}
      - {untagged: true, olderthan: 0d}
`);
    expect(config.retention).toEqual([
      {
        repositories: ['**'],
        protect: [],
        rules: [
          { kind: 'tags', tags: ['*'], keepLast: 1, olderThanMs: 336 * 3_600_000 },
          { kind: 'untagged', olderThanMs: 0 },
        ],
      },
    ]);
  });

  it('defaults an immutability rule to every tag, excepting none', async () => {
    const { config } = await load(`${minimal}immutability:\n  - repositories: [prod/*, 'releases/**']\n`);
    expect(config.immutability).toEqual([
      { repositories: ['prod/*', 'releases/**'], tags: ['*'], except: [] },
    ]);
  });

  it('takes the sections from the environment', async () => {
    const { config, warnings } = await load(minimal, {
      REGISTRY_GC_GRACE: '30m',
      REGISTRY_GC_DELETEUNTAGGED: 'true',
      REGISTRY_RETENTION: '[{repositories: [ci/**], rules: [{tags: [pr-*], olderthan: 14d}]}]',
      REGISTRY_RETENTION_0_PROTECT: '[latest]',
      REGISTRY_IMMUTABILITY_0_REPOSITORIES: '[prod/**]',
      REGISTRY_IMMUTABILITY_0_EXCEPT_0: 'latest',
    });
    expect(warnings).toEqual([]);
    expect(config.gc).toEqual({ graceMs: 1_800_000, deleteUntagged: true });
    expect(config.retention).toEqual([
      {
        repositories: ['ci/**'],
        protect: ['latest'],
        rules: [{ kind: 'tags', tags: ['pr-*'], keepLast: undefined, olderThanMs: 14 * 86_400_000 }],
      },
    ]);
    expect(config.immutability).toEqual([{ repositories: ['prod/**'], tags: ['*'], except: ['latest'] }]);
  });

  it('names the variable a wrong value came from', async () => {
    await expect(load(minimal, { REGISTRY_GC_GRACE: '1d' })).rejects.toThrow(
      'gc.grace: expected a duration such as 300ms, 10s, 1m30s or 24h, got "1d" (from environment variable REGISTRY_GC_GRACE)',
    );
  });

  const policyWith = (rule: string) => `retention:\n  - repositories: [ci/**]\n    rules:\n      - ${rule}\n`;

  it.each([
    // gc
    [
      'gc.grace: soon',
      'gc: {grace: soon}',
      'gc.grace: expected a duration such as 300ms, 10s, 1m30s or 24h, got "soon"',
    ],
    ['gc.grace in days (Go durations only)', 'gc: {grace: 2d}', 'gc.grace: expected a duration'],
    [
      'gc.deleteuntagged: maybe',
      'gc: {deleteuntagged: maybe}',
      'gc.deleteuntagged: expected a boolean, got "maybe"',
    ],
    [
      'an unknown gc key',
      'gc: {grace: 1h, dryrun: true}',
      'gc.dryrun: unknown key; expected grace, deleteuntagged',
    ],
    ['gc as a list', 'gc: [grace]', 'gc: expected a map, got a list'],
    // retention policies
    ['retention as a map', 'retention: {repositories: [a]}', 'retention: expected a list, got a map'],
    ['a policy as a string', 'retention: [ci]', 'retention[0]: expected a map, got "ci"'],
    [
      'a policy without repositories',
      'retention: [{rules: [{untagged: true, olderthan: 1d}]}]',
      'retention[0].repositories: is required',
    ],
    [
      'a policy with no repositories',
      'retention: [{repositories: [], rules: [{untagged: true, olderthan: 1d}]}]',
      'retention[0].repositories: expected at least one entry, got []',
    ],
    [
      'repositories as a string',
      'retention: [{repositories: ci/**, rules: [{untagged: true, olderthan: 1d}]}]',
      'retention[0].repositories: expected a list, got "ci/**"',
    ],
    [
      'an invalid repository pattern',
      "retention: [{repositories: [a, 'b/[z-a]'], rules: [{untagged: true, olderthan: 1d}]}]",
      'retention[0].repositories[1]: invalid pattern "b/[z-a]": Range out of order in character class',
    ],
    [
      'an empty repository pattern',
      "retention: [{repositories: [''], rules: [{untagged: true, olderthan: 1d}]}]",
      'retention[0].repositories[0]: invalid pattern "": a pattern cannot be empty',
    ],
    [
      'a missing repository pattern',
      'retention: [{repositories: [~], rules: [{untagged: true, olderthan: 1d}]}]',
      'retention[0].repositories[0]: is required',
    ],
    [
      'an invalid protect pattern',
      "retention: [{repositories: [a], protect: ['{v1'], rules: [{untagged: true, olderthan: 1d}]}]",
      'retention[0].protect[0]: invalid pattern "{v1": Unterminated group',
    ],
    ['a policy without rules', 'retention: [{repositories: [a]}]', 'retention[0].rules: is required'],
    [
      'a policy with no rules',
      'retention: [{repositories: [a], rules: []}]',
      'retention[0].rules: expected at least one entry, got []',
    ],
    [
      'an unknown policy key',
      'retention: [{repositories: [a], protects: [latest], rules: [{untagged: true, olderthan: 1d}]}]',
      'retention[0].protects: unknown key; expected repositories, protect, rules',
    ],
    // retention rules
    [
      'a rule with tags only',
      policyWith('{tags: [main-*]}'),
      'retention[0].rules[0]: tags need keeplast, olderthan or both',
    ],
    [
      'a rule with neither tags nor untagged',
      policyWith('{keeplast: 3}'),
      'retention[0].rules[0]: expected tags (with keeplast and/or olderthan) or untagged: true (with olderthan)',
    ],
    [
      'a rule with untagged: false',
      policyWith('{untagged: false, olderthan: 7d}'),
      'retention[0].rules[0]: expected tags (with keeplast and/or olderthan) or untagged: true',
    ],
    [
      'a rule with no tags',
      policyWith('{tags: [], keeplast: 3}'),
      'retention[0].rules[0].tags: expected at least one entry, got []',
    ],
    [
      'an invalid tag pattern',
      policyWith("{tags: ['v[z-a]'], keeplast: 3}"),
      'retention[0].rules[0].tags[0]: invalid pattern "v[z-a]": Range out of order in character class',
    ],
    [
      'keeplast: 0',
      policyWith('{tags: [a], keeplast: 0}'),
      'retention[0].rules[0].keeplast: must be at least 1, got 0',
    ],
    [
      'keeplast: -2',
      policyWith('{tags: [a], keeplast: -2}'),
      'retention[0].rules[0].keeplast: must be at least 1, got -2',
    ],
    [
      'keeplast: 2.5',
      policyWith('{tags: [a], keeplast: 2.5}'),
      'retention[0].rules[0].keeplast: expected an integer, got 2.5',
    ],
    [
      'keeplast: all',
      policyWith('{tags: [a], keeplast: all}'),
      'retention[0].rules[0].keeplast: expected an integer, got "all"',
    ],
    [
      'olderthan in weeks',
      policyWith('{tags: [a], olderthan: 2w}'),
      'retention[0].rules[0].olderthan: expected a duration such as 12h or 14d (days), got "2w"',
    ],
    [
      'olderthan in fractional days',
      policyWith('{tags: [a], olderthan: 1.5d}'),
      'retention[0].rules[0].olderthan: expected a duration such as 12h or 14d (days), got "1.5d"',
    ],
    [
      'olderthan as a bare number',
      policyWith('{tags: [a], olderthan: 14}'),
      'retention[0].rules[0].olderthan: expected a duration such as 12h or 14d (days), got 14',
    ],
    [
      'untagged without olderthan',
      policyWith('{untagged: true}'),
      'retention[0].rules[0].olderthan: is required with untagged: true',
    ],
    [
      'untagged with tags',
      policyWith('{untagged: true, tags: [a], olderthan: 1d}'),
      'retention[0].rules[0].tags: not with untagged: true',
    ],
    [
      'untagged with keeplast',
      policyWith('{untagged: true, keeplast: 3, olderthan: 1d}'),
      'retention[0].rules[0].keeplast: not with untagged: true',
    ],
    [
      'untagged: maybe',
      policyWith('{untagged: maybe, olderthan: 1d}'),
      'retention[0].rules[0].untagged: expected a boolean, got "maybe"',
    ],
    [
      'an unknown rule key',
      policyWith('{tags: [a], keeplast: 3, olderthen: 1d}'),
      'retention[0].rules[0].olderthen: unknown key; expected tags, keeplast, olderthan, untagged',
    ],
    [
      'a wrong rule in a later policy',
      `retention:\n  - {repositories: [a], rules: [{untagged: true, olderthan: 1d}]}\n  - {repositories: [b], rules: [{untagged: true, olderthan: 1d}, {tags: [x]}]}`,
      'retention[1].rules[1]: tags need keeplast, olderthan or both',
    ],
    // immutability
    [
      'immutability as a map',
      'immutability: {repositories: [a]}',
      'immutability: expected a list, got a map',
    ],
    [
      'an immutability rule without repositories',
      'immutability: [{tags: [v*]}]',
      'immutability[0].repositories: is required',
    ],
    [
      'an immutability rule with no repositories',
      'immutability: [{repositories: []}]',
      'immutability[0].repositories: expected at least one entry, got []',
    ],
    [
      'an immutability rule with no tags',
      'immutability: [{repositories: [a], tags: []}]',
      'immutability[0].tags: expected at least one entry, got []',
    ],
    [
      'an invalid immutability tag pattern',
      "immutability: [{repositories: [a], tags: ['{v']}]",
      'immutability[0].tags[0]: invalid pattern "{v": Unterminated group',
    ],
    [
      'an invalid except pattern',
      "immutability: [{repositories: [a], except: ['[z-a]']}]",
      'immutability[0].except[0]: invalid pattern "[z-a]": Range out of order in character class',
    ],
    [
      'except as a string',
      'immutability: [{repositories: [a], except: latest}]',
      'immutability[0].except: expected a list, got "latest"',
    ],
    [
      'an unknown immutability key',
      'immutability: [{repositories: [a], exept: [latest]}]',
      'immutability[0].exept: unknown key; expected repositories, tags, except',
    ],
  ])('refuses %s, naming the key', async (_what, yaml, message) => {
    const loading = load(`${minimal}${yaml}\n`);
    await expect(loading).rejects.toBeInstanceOf(ConfigError);
    await expect(loading).rejects.toThrow(message);
  });
});

describe('composing immutability', () => {
  it('makes the configured tags immutable, and only those', async () => {
    const { config } = await load(
      `${inmemory}immutability:\n  - {repositories: ['prod/**'], except: [latest]}\n`,
    );
    const { handler, events } = await composeRegistry(config, silentLogger);
    const api: Api = {
      request: (path, init = {}) => {
        const headers = new Headers(init.headers);
        if (init.body instanceof Uint8Array) headers.set('content-length', String(init.body.byteLength));
        return handler.handle(new Request(`http://registry.test${path}`, { ...init, headers }));
      },
      reopen: () => Promise.reject(new Error('not needed')),
    };
    const first = await pushImage(api, 'prod/app', { tag: 'v1' });
    const other = await pushImage(api, 'prod/app');
    await expectError(await putManifest(api, 'prod/app', 'v1', other.bytes), 'DENIED', 403);
    expect((await putManifest(api, 'prod/app', 'v1', first.bytes)).status).toBe(201);
    expect((await putManifest(api, 'prod/app', 'latest', first.bytes)).status).toBe(201);
    expect((await putManifest(api, 'prod/app', 'latest', other.bytes)).status).toBe(201);
    await pushImage(api, 'dev/app', { tag: 'v1' });
    await pushImage(api, 'dev/app', { tag: 'v1' });
    await events.close(0);
  });
});

describe('loadConfig storage.maintenance.uploadpurging', () => {
  it('keeps enabled, age, interval and dryrun', async () => {
    const { config, warnings } = await load(
      `${minimal}  maintenance:\n    uploadpurging: {enabled: false, age: 72h, interval: 12h, dryrun: true}\n`,
    );
    expect(warnings).toEqual([]);
    expect(config.storage.maintenance.uploadPurging).toEqual({
      enabled: false,
      ageMs: 72 * 3_600_000,
      intervalMs: 12 * 3_600_000,
      dryRun: true,
    });
  });

  it('takes them from the environment', async () => {
    const { config } = await load(minimal, {
      REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: '48h',
      REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL: '1h',
      REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN: 'true',
    });
    expect(config.storage.maintenance.uploadPurging).toEqual({
      enabled: true,
      ageMs: 48 * 3_600_000,
      intervalMs: 3_600_000,
      dryRun: true,
    });
  });

  it('refuses a zero interval while purging is enabled', async () => {
    const purging = (yaml: string) => load(`${minimal}  maintenance:\n    uploadpurging: ${yaml}\n`);
    await expect(purging('{interval: 0s}')).rejects.toThrow(
      'storage.maintenance.uploadpurging.interval: must be more than 0 while uploadpurging is enabled',
    );
    const disabled = await purging('{enabled: false, interval: 0s}');
    expect(disabled.config.storage.maintenance.uploadPurging.intervalMs).toBe(0);
    await expect(purging('{age: soon}')).rejects.toThrow(
      'storage.maintenance.uploadpurging.age: expected a duration',
    );
  });
});

describe('parseAge', () => {
  it('parses Go durations and whole days to milliseconds', () => {
    expect(parseAge('14d')).toBe(14 * 86_400_000);
    expect(parseAge('0d')).toBe(0);
    expect(parseAge('336h')).toBe(336 * 3_600_000);
    expect(parseAge('90m')).toBe(5_400_000);
  });

  it('refuses anything else', () => {
    for (const text of ['', 'd', '1.5d', '1d12h', '-1d', '2w', '14']) expect(parseAge(text)).toBeUndefined();
  });
});
