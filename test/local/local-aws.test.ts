// The local AWS registry started in this process (bin/local/local-aws.ts) with htpasswd authentication:
// the real Lambda handler behind the local API Gateway front, with fauxqs, DynamoDB Local (java) and the
// local Secrets Manager. Token authentication is covered end to end in test/e2e/local-aws-auth.test.ts.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLocalAwsArgs } from '../../bin/local/local-aws-args.js';
import { htpasswdFile, type LocalAws, startLocalAws } from '../../bin/local/local-aws.js';

const PASSWORD = 'correct horse battery staple';
const IMMUTABILITY = [{ repositories: ['prod/**'], except: ['latest'] }];
const RETENTION = [
  {
    repositories: ['ci/**'],
    protect: ['latest'],
    rules: [
      { tags: ['main-*'], keeplast: 2 },
      { untagged: true, olderthan: '2d' },
    ],
  },
];

describe('startLocalAws with htpasswd authentication, in-process', () => {
  let registry: LocalAws;
  let htpasswd: string;
  const before = { ...process.env };

  beforeAll(async () => {
    // Only local services, whatever this machine's environment says; quiet function logs.
    for (const key of Object.keys(process.env)) {
      if (/^(AWS_|LOCAL_AWS_|REGISTRY_)/.test(key)) Reflect.deleteProperty(process.env, key);
    }
    process.env.REGISTRY_LOG_LEVEL = 'error';
    htpasswd = htpasswdFile({ bob: PASSWORD });
    registry = await startLocalAws({
      addr: '127.0.0.1:0',
      s3: 'fauxqs',
      auth: {
        type: 'htpasswd',
        htpasswd,
        access: { rules: [{ repositories: ['${user}/**'], users: ['*'], actions: ['*'] }] },
        service: 'local test registry',
      },
    });
  }, 120_000);

  afterAll(async () => {
    await registry.stop();
    for (const key of Object.keys(process.env))
      if (!(key in before)) Reflect.deleteProperty(process.env, key);
    Object.assign(process.env, before);
  });

  const get = (path: string, authorization?: string) =>
    fetch(new URL(path, registry.url), {
      headers: authorization ? { authorization } : {},
      signal: AbortSignal.timeout(30_000),
    });
  const basic = (user: string, password: string) =>
    `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  it('configures the function as the construct does: by the secret ARN, never the users', () => {
    const { environment } = registry;
    expect(environment.REGISTRY_AUTH_HTPASSWD_PATH).toMatch(
      /^arn:aws:secretsmanager:us-east-1:000000000000:secret:local-aws\/[0-9a-f]+\/htpasswd-[A-Za-z0-9]{6}$/,
    );
    expect(environment.REGISTRY_AUTH_HTPASSWD_REALM).toBe('local test registry');
    expect(JSON.parse(environment.REGISTRY_ACCESS ?? '')).toEqual({
      rules: [{ repositories: ['${user}/**'], users: ['*'], actions: ['*'] }],
    });
    expect(environment.AWS_ENDPOINT_URL_SECRETS_MANAGER).toBe(registry.description.secretsManager);
    expect(process.env.REGISTRY_AUTH_HTPASSWD_PATH).toBe(environment.REGISTRY_AUTH_HTPASSWD_PATH);
    const hash = htpasswd.slice(htpasswd.indexOf(':') + 1).trim();
    for (const value of Object.values(environment)) {
      expect(value).not.toContain(hash);
      expect(value).not.toContain(PASSWORD);
    }
  });

  it('challenges with Basic, serves the right password, and refuses a wrong one', async () => {
    const anonymous = await get('/v2/');
    await anonymous.arrayBuffer();
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toBe(
      'Basic realm="local test registry", charset="UTF-8"',
    );

    const signedIn = await get('/v2/', basic('bob', PASSWORD));
    await signedIn.arrayBuffer();
    expect(signedIn.status).toBe(200);

    const wrong = await get('/v2/', basic('bob', 'Tr0ub4dor&3'));
    await wrong.arrayBuffer();
    expect(wrong.status).toBe(401);
  });

  it('applies the access rules from REGISTRY_ACCESS: bob may use bob/**, not alice/**', async () => {
    const own = await get('/v2/bob/app/tags/list', basic('bob', PASSWORD));
    await own.arrayBuffer();
    expect(own.status).toBe(404);
    const other = await get('/v2/alice/app/tags/list', basic('bob', PASSWORD));
    const body = (await other.json()) as { errors: { code: string }[] };
    expect(other.status).toBe(403);
    expect(body.errors[0]?.code).toBe('DENIED');
  });

  it('starts once per process: the handler has read its environment', async () => {
    await expect(startLocalAws({ addr: '127.0.0.1:0' })).rejects.toThrow(
      /one local AWS registry per process/,
    );
  });
});

describe('the local:aws command line', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'local-aws-args-'));
    writeFileSync(join(dir, 'users'), htpasswdFile({ carol: 'pw' }));
    writeFileSync(
      join(dir, 'access.yaml'),
      'access:\n  rules:\n    - repositories: [team/**]\n      users: ["*"]\n      actions: [pull]\n',
    );
    writeFileSync(join(dir, 'immutability.json'), JSON.stringify(IMMUTABILITY));
    writeFileSync(join(dir, 'retention.json'), JSON.stringify(RETENTION));
    writeFileSync(
      join(dir, 'retention.yaml'),
      'retention:\n  - repositories: [ci/**]\n    rules:\n      - tags: [pr-*]\n        olderthan: 14d\n',
    );
    writeFileSync(join(dir, 'not-a-list.json'), JSON.stringify({ repositories: ['ci/**'] }));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('asks for nothing without flags: the open registry, as before', () => {
    expect(parseLocalAwsArgs([])).toEqual({ help: false });
  });

  it('reads the users and the access rules from files', () => {
    const { auth } = parseLocalAwsArgs([
      '--auth',
      'token',
      '--htpasswd',
      join(dir, 'users'),
      '--access',
      join(dir, 'access.yaml'),
      '--anonymous-pull',
      'public/**',
      '--token-expiration',
      '900',
    ]);
    expect(auth).toMatchObject({
      type: 'token',
      htpasswd: expect.stringMatching(/^carol:\$2[aby]\$10\$/) as unknown,
      access: { rules: [{ repositories: ['team/**'], users: ['*'], actions: ['pull'] }] },
      anonymousPull: ['public/**'],
      tokenExpirationSeconds: 900,
    });
  });

  it('serves HTTPS with a certificate and key, with or without auth', () => {
    const tls = { certificate: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
    expect(parseLocalAwsArgs(['--tls-certificate', tls.certificate, '--tls-key', tls.key])).toEqual({
      help: false,
      tls,
    });
    expect(() => parseLocalAwsArgs(['--tls-certificate', tls.certificate])).toThrow(/go together/);
  });

  it('runs garbage collection every --gc-every, with --gc-timeout, with or without auth', () => {
    expect(parseLocalAwsArgs(['--gc-every', '10m'])).toEqual({ help: false, gc: { everyMs: 600_000 } });
    expect(parseLocalAwsArgs(['--gc-every', '30s', '--gc-timeout', '90s', '--edge'])).toEqual({
      help: false,
      edge: true,
      gc: { everyMs: 30_000, timeoutMs: 90_000 },
    });
    const { gc, auth } = parseLocalAwsArgs([
      '--auth',
      'htpasswd',
      '--htpasswd',
      join(dir, 'users'),
      '--gc-every',
      '1h',
    ]);
    expect(gc).toEqual({ everyMs: 3_600_000 });
    expect(auth?.type).toBe('htpasswd');
    expect(() => parseLocalAwsArgs(['--gc-every', 'daily'])).toThrow(/--gc-every: expected a duration/);
    expect(() => parseLocalAwsArgs(['--gc-every', '0s'])).toThrow(/--gc-every: expected a duration/);
    expect(() => parseLocalAwsArgs(['--gc-timeout', '5m'])).toThrow(/--gc-timeout goes with --gc-every/);
  });

  it('takes the settings the construct gives the functions: --immutability, and gc settings with --gc-every', () => {
    expect(parseLocalAwsArgs(['--immutability', join(dir, 'immutability.json')])).toEqual({
      help: false,
      immutability: IMMUTABILITY,
    });
    expect(
      parseLocalAwsArgs([
        '--gc-every',
        '1h',
        '--gc-grace',
        '0s',
        '--gc-delete-untagged',
        '--gc-dry-run',
        '--retention',
        join(dir, 'retention.json'),
      ]),
    ).toEqual({
      help: false,
      gc: { everyMs: 3_600_000, graceMs: 0, deleteUntagged: true, dryRun: true, retention: RETENTION },
    });
    // YAML too, and the section under its key; with auth, as the other settings.
    const { gc, auth, immutability } = parseLocalAwsArgs([
      '--auth',
      'htpasswd',
      '--htpasswd',
      join(dir, 'users'),
      '--immutability',
      join(dir, 'immutability.json'),
      '--gc-every',
      '10m',
      '--gc-grace',
      '1d',
      '--retention',
      join(dir, 'retention.yaml'),
    ]);
    expect(auth?.type).toBe('htpasswd');
    expect(immutability).toEqual(IMMUTABILITY);
    expect(gc).toEqual({
      everyMs: 600_000,
      graceMs: 86_400_000,
      retention: [{ repositories: ['ci/**'], rules: [{ tags: ['pr-*'], olderthan: '14d' }] }],
    });
  });

  it('refuses gc settings without --gc-every, a grace that is not whole seconds, and files without a list', () => {
    expect(() => parseLocalAwsArgs(['--retention', join(dir, 'retention.json')])).toThrow(
      /^--retention goes with --gc-every/,
    );
    expect(() => parseLocalAwsArgs(['--gc-grace', '0s', '--gc-dry-run'])).toThrow(
      /^--gc-grace, --gc-dry-run go with --gc-every/,
    );
    for (const grace of ['soon', '1.5s', '500ms']) {
      expect(() => parseLocalAwsArgs(['--gc-every', '1h', '--gc-grace', grace])).toThrow(
        /--gc-grace: expected a duration in whole seconds/,
      );
    }
    expect(() => parseLocalAwsArgs(['--immutability', join(dir, 'not-a-list.json')])).toThrow(
      /--immutability .*not-a-list\.json: expected a list/,
    );
    expect(() => parseLocalAwsArgs(['--gc-every', '1h', '--retention', join(dir, 'missing.json')])).toThrow(
      /--retention .*missing\.json: cannot read it/,
    );
  });

  it("checks the functions' settings as the registry does, before it starts anything", async () => {
    await expect(
      startLocalAws({
        addr: '127.0.0.1:0',
        gc: {
          everyMs: 60_000,
          retention: [{ repositories: ['ci/**'], rules: [{ tags: ['x'], keeplast: 0 }] }],
        },
      }),
    ).rejects.toThrow(
      /the functions' configuration: retention\[0\]\.rules\[0\]\.keeplast: must be at least 1/,
    );
    await expect(
      startLocalAws({ addr: '127.0.0.1:0', immutability: [{ repositories: [] }] }),
    ).rejects.toThrow(/the functions' configuration: immutability\[0\]\.repositories/);
  });

  it('refuses auth without users, an unknown type, and options without --auth', () => {
    expect(() => parseLocalAwsArgs(['--auth', 'token'])).toThrow(/needs --htpasswd FILE/);
    expect(() => parseLocalAwsArgs(['--auth', 'ldap', '--htpasswd', join(dir, 'users')])).toThrow(
      /--auth must be token or htpasswd/,
    );
    expect(() => parseLocalAwsArgs(['--htpasswd', join(dir, 'users')])).toThrow(/go with --auth/);
    expect(() => parseLocalAwsArgs(['--auth', 'token', '--htpasswd', join(dir, 'missing')])).toThrow(
      /ENOENT/,
    );
  });
});
