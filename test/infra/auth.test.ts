// Authentication on AWS (lib/registry-auth.ts): the users and the signing key in Secrets Manager, created or
// referenced; the function configured by their ARNs, never their values; least-privilege grants; the
// custom resource that fills a created signing key once; the warning without auth; Lambda's 4 KB limit.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type App, Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AccessRule, TOKEN_REALM } from '../../lib/auth-environment.js';
import { NO_USERS } from '../../lib/registry-auth.js';
import { RegistryStack } from '../../lib/registry-stack.js';
import { ServerlessRegistry, type ServerlessRegistryProps } from '../../lib/serverless-registry.js';
import {
  allowedActions,
  app,
  cleanUpApps,
  type Json,
  logicalId,
  NO_BUNDLING,
  onlyResource,
  outputValue,
  SYNTH_TIMEOUT,
} from './support.js';

afterAll(cleanUpApps);

const HTPASSWD_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:registry/htpasswd-AbCdEf';

/** The variables every registry function has, whatever its authentication. */
const BASE_VARIABLES = [
  'REGISTRY_STORAGE',
  'REGISTRY_STORAGE_S3_BUCKET',
  'REGISTRY_STORAGE_S3_REGION',
  'REGISTRY_STORAGE_DELETE_ENABLED',
  'REGISTRY_STORAGE_REDIRECT_EXPIRY',
  'REGISTRY_METADATA',
  'REGISTRY_METADATA_DYNAMODB_TABLE',
  'REGISTRY_LOG_LEVEL',
  'NODE_OPTIONS',
];

function registryIn(props: ServerlessRegistryProps, build?: (stack: Stack) => ServerlessRegistryProps) {
  const stack = new Stack(app({ context: NO_BUNDLING }), 'Auth');
  const registry = new ServerlessRegistry(stack, 'Registry', { ...props, ...build?.(stack) });
  return { stack, registry, template: Template.fromStack(stack) };
}

/** The registry function's variables, by name. */
function variables(template: Template, registry: ServerlessRegistry): Json {
  const functions = template.findResources('AWS::Lambda::Function') as Record<
    string,
    { Properties: { Environment: { Variables: Json } } }
  >;
  const fn = functions[logicalId(registry.function)];
  if (!fn) throw new Error('no registry function');
  return fn.Properties.Environment.Variables;
}

describe('token authentication with the secrets created by the construct', () => {
  let stack: Stack;
  let registry: ServerlessRegistry;
  let template: Template;
  let htpasswdRef: Json;
  let keyRef: Json;

  beforeAll(() => {
    ({ stack, registry, template } = registryIn({
      auth: { type: 'token', anonymousPull: ['public/**'], tokenExpiration: Duration.minutes(15) },
    }));
    const auth = registry.auth;
    if (!auth?.signingKey) throw new Error('no auth');
    htpasswdRef = { Ref: logicalId(auth.htpasswd) };
    keyRef = { Ref: logicalId(auth.signingKey) };
  }, SYNTH_TIMEOUT);

  it('creates the users secret with no users, and the signing key secret, both retained by default', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 2);
    const secrets = template.findResources('AWS::SecretsManager::Secret') as Record<string, Json>;
    const users = secrets[htpasswdRef.Ref as string] as { Properties: Json; DeletionPolicy: string };
    expect(users.Properties.SecretString).toBe(NO_USERS);
    // A comment line: an htpasswd file that matches no user until the operator puts one in.
    expect(
      NO_USERS.trim()
        .split('\n')
        .every((line) => line.startsWith('#')),
    ).toBe(true);
    expect(users.DeletionPolicy).toBe('Retain');
    const key = secrets[keyRef.Ref as string] as { Properties: Json; DeletionPolicy: string };
    expect(String(key.Properties.SecretString)).not.toContain('PRIVATE KEY');
    expect(key.DeletionPolicy).toBe('Retain');
  });

  it('configures the function with the realm, service, issuer, lifetime, access rules and ARNs only', () => {
    const env = variables(template, registry);
    expect(Object.keys(env).sort()).toEqual(
      [
        ...BASE_VARIABLES,
        'REGISTRY_AUTH_TOKEN_REALM',
        'REGISTRY_AUTH_TOKEN_SERVICE',
        'REGISTRY_AUTH_TOKEN_ISSUER',
        'REGISTRY_AUTH_TOKEN_SIGNINGKEY',
        'REGISTRY_AUTH_TOKEN_HTPASSWD',
        'REGISTRY_AUTH_TOKEN_EXPIRATION',
        'REGISTRY_ACCESS',
      ].sort(),
    );
    expect(env).toMatchObject({
      REGISTRY_AUTH_TOKEN_REALM: TOKEN_REALM,
      // Without a custom domain: the stack's name, stable across deployments.
      REGISTRY_AUTH_TOKEN_SERVICE: 'Auth',
      REGISTRY_AUTH_TOKEN_ISSUER: 'Auth',
      REGISTRY_AUTH_TOKEN_SIGNINGKEY: keyRef,
      REGISTRY_AUTH_TOKEN_HTPASSWD: htpasswdRef,
      REGISTRY_AUTH_TOKEN_EXPIRATION: '900s',
    });
    expect(JSON.parse(String(env.REGISTRY_ACCESS))).toEqual({
      rules: [
        { repositories: ['**'], users: ['*'], actions: ['*'] },
        { repositories: ['public/**'], anonymous: true, actions: ['pull'] },
      ],
    });
    // No secret value anywhere in the function's configuration.
    const fnJson = JSON.stringify(
      template.findResources('AWS::Lambda::Function')[logicalId(registry.function)],
    );
    expect(fnJson).not.toContain(NO_USERS.slice(0, 20));
    expect(fnJson).not.toMatch(/PRIVATE KEY|\$2[aby]\$/);
  });

  it('lets the registry function read the two secrets, and nothing more of Secrets Manager', () => {
    const role = logicalId(registry.function.role as never);
    const secretActions = allowedActions(template, role).filter(([action]) =>
      action.startsWith('secretsmanager:'),
    );
    expect(secretActions).toEqual([['secretsmanager:GetSecretValue', [htpasswdRef, keyRef]]]);
  });

  it('fills the key once with a custom resource whose function may only put that secret', () => {
    const generator = registry.auth?.signingKeyGenerator;
    if (!generator) throw new Error('no generator');
    expect(allowedActions(template, logicalId(generator.role as never))).toEqual([
      ['secretsmanager:PutSecretValue', [keyRef]],
    ]);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Handler: 'index.handler',
      Runtime: 'nodejs22.x',
      Description: Match.stringLikeRegexp('signing key'),
    });
    const resource = onlyResource(template, 'Custom::RegistrySigningKey') as { Properties: Json };
    // The ARN and the service token only: no key material goes through CloudFormation.
    expect(Object.keys(resource.Properties).sort()).toEqual(['SecretArn', 'ServiceToken']);
    expect(resource.Properties.SecretArn).toEqual(keyRef);
  });

  it('starts the registry function only once the key is in its secret', () => {
    const fn = template.findResources('AWS::Lambda::Function')[logicalId(registry.function)] as {
      DependsOn?: string[];
    };
    const customResource = registry.auth?.signingKeyValue;
    if (!customResource) throw new Error('no custom resource');
    expect(fn.DependsOn).toContain(logicalId(customResource));
  });

  it('outputs the ARNs of the secrets and the function name, for the operator to add users and rotate keys', () => {
    const auth = registry.auth;
    if (!auth?.signingKey) throw new Error('no auth');
    expect(outputValue(template, registry, 'HtpasswdSecretArn')).toEqual(htpasswdRef);
    expect(outputValue(template, registry, 'SigningKeySecretArn')).toEqual(keyRef);
    expect(outputValue(template, registry, 'FunctionName')).toEqual({ Ref: logicalId(registry.function) });
  });

  it('does not warn about an unauthenticated registry', () => {
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('unauthenticated'))).toEqual(
      [],
    );
  });
});

describe('token authentication with secrets the operator made', () => {
  let registry: ServerlessRegistry;
  let template: Template;

  beforeAll(() => {
    ({ registry, template } = registryIn({}, (stack) => ({
      auth: {
        type: 'token',
        htpasswd: Secret.fromSecretCompleteArn(stack, 'Users', HTPASSWD_ARN),
        signingKey: Secret.fromSecretNameV2(stack, 'Key', 'registry/signing-key'),
        service: 'registry.example.com',
        issuer: 'registry.example.com token issuer',
      },
    })));
  }, SYNTH_TIMEOUT);

  it('creates no secret, no custom resource and no function but the registry', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    template.resourceCountIs('Custom::RegistrySigningKey', 0);
    template.resourceCountIs('AWS::Lambda::Function', 1);
    expect(registry.auth?.signingKeyGenerator).toBeUndefined();
  });

  it('configures the function with the given ARNs, service and issuer', () => {
    const env = variables(template, registry);
    expect(env.REGISTRY_AUTH_TOKEN_HTPASSWD).toBe(HTPASSWD_ARN);
    expect(env.REGISTRY_AUTH_TOKEN_SIGNINGKEY).toEqual({
      'Fn::Join': [
        '',
        [
          'arn:',
          { Ref: 'AWS::Partition' },
          ':secretsmanager:',
          { Ref: 'AWS::Region' },
          ':',
          { Ref: 'AWS::AccountId' },
          ':secret:registry/signing-key',
        ],
      ],
    });
    expect(env.REGISTRY_AUTH_TOKEN_SERVICE).toBe('registry.example.com');
    expect(env.REGISTRY_AUTH_TOKEN_ISSUER).toBe('registry.example.com token issuer');
    expect(env.REGISTRY_ACCESS).toBeUndefined();
  });

  it('grants GetSecretValue on exactly those secrets (a secret known by name with its suffix pattern)', () => {
    const role = logicalId(registry.function.role as never);
    const [statement, ...others] = allowedActions(template, role).filter(([action]) =>
      action.startsWith('secretsmanager:'),
    );
    expect(others).toEqual([]);
    expect(statement?.[0]).toBe('secretsmanager:GetSecretValue');
    expect(statement?.[1]).toHaveLength(2);
    expect(statement?.[1]).toContain(HTPASSWD_ARN);
    expect(JSON.stringify(statement?.[1])).toContain(':secret:registry/signing-key-??????');
  });
});

describe('htpasswd authentication', () => {
  let registry: ServerlessRegistry;
  let template: Template;

  beforeAll(() => {
    ({ registry, template } = registryIn({
      auth: {
        type: 'htpasswd',
        service: 'Team: registry',
        access: {
          groups: { ci: ['builder'] },
          rules: [
            { repositories: ['team/**'], groups: ['ci'], actions: ['pull', 'push'] },
            { users: ['admin'], actions: ['catalog'] },
          ],
        },
      },
    }));
  }, SYNTH_TIMEOUT);

  it('creates the users secret only, and points the basic realm and path at it', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 1);
    template.resourceCountIs('Custom::RegistrySigningKey', 0);
    const env = variables(template, registry);
    expect(Object.keys(env).filter((name) => name.startsWith('REGISTRY_AUTH_'))).toEqual([
      'REGISTRY_AUTH_HTPASSWD_REALM',
      'REGISTRY_AUTH_HTPASSWD_PATH',
    ]);
    // Quoted: the registry parses REGISTRY_* values as YAML, where "Team: registry" would be a map.
    expect(env.REGISTRY_AUTH_HTPASSWD_REALM).toBe('"Team: registry"');
    expect(env.REGISTRY_AUTH_HTPASSWD_PATH).toEqual({ Ref: logicalId(registry.auth?.htpasswd as never) });
    expect(JSON.parse(String(env.REGISTRY_ACCESS))).toEqual({
      groups: { ci: ['builder'] },
      rules: [
        { repositories: ['team/**'], groups: ['ci'], actions: ['pull', 'push'] },
        { users: ['admin'], actions: ['catalog'] },
      ],
    });
  });

  it('refuses token settings, and access rules the registry would refuse', () => {
    const stack = new Stack(app({ context: NO_BUNDLING }), 'Invalid');
    expect(
      () =>
        new ServerlessRegistry(stack, 'A', {
          auth: { type: 'htpasswd', tokenExpiration: Duration.minutes(1) },
        }),
    ).toThrow(/auth.tokenExpiration is for token authentication only/);
    const rule = (r: Partial<AccessRule>): { rules: AccessRule[] } => ({
      rules: [{ actions: ['pull'], ...r }],
    });
    expect(
      () => new ServerlessRegistry(stack, 'B', { auth: { type: 'token', access: rule({ users: ['a'] }) } }),
    ).toThrow(/auth.access.rules\[0\].repositories/);
    expect(
      () =>
        new ServerlessRegistry(stack, 'C', {
          auth: { type: 'token', access: rule({ repositories: ['x'], groups: ['nobody'] }) },
        }),
    ).toThrow(/"nobody" is not in access.groups/);
    expect(
      () =>
        new ServerlessRegistry(stack, 'D', {
          auth: {
            type: 'token',
            access: { rules: [{ repositories: ['x'], users: ['a'], actions: ['write' as 'push'] }] },
          },
        }),
    ).toThrow(/unknown write/);
  });
});

describe('without authentication', () => {
  it('keeps the open registry, and warns at synth that anyone may push, pull and delete', () => {
    const { stack, registry, template } = registryIn({});
    expect(registry.auth).toBeUndefined();
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    expect(Object.keys(variables(template, registry)).sort()).toEqual([...BASE_VARIABLES].sort());
    const warnings = Annotations.fromStack(stack).findWarning(
      '/Auth/Registry',
      Match.stringLikeRegexp('The registry is unauthenticated'),
    );
    expect(warnings).toHaveLength(1);
  });
});

describe("Lambda's 4 KB environment limit", () => {
  it('refuses at synth access rules that do not fit, saying how big they are', () => {
    const stack = new Stack(app({ context: NO_BUNDLING }), 'TooBig');
    const rules: AccessRule[] = Array.from({ length: 40 }, (_, i) => ({
      repositories: [`team-${i}/service-${i}/**`],
      users: [`user-number-${i}`],
      actions: ['pull', 'push'],
    }));
    expect(
      () => new ServerlessRegistry(stack, 'Registry', { auth: { type: 'token', access: { rules } } }),
    ).toThrow(
      /environment would take about \d+ bytes, of which the access rules \(REGISTRY_ACCESS\) take \d+: over Lambda's limit of 4096 bytes/,
    );
  });

  it('accepts rules that fit', () => {
    const stack = new Stack(app({ context: NO_BUNDLING }), 'Fits');
    const rules: AccessRule[] = Array.from({ length: 10 }, (_, i) => ({
      repositories: [`team-${i}/**`],
      users: [`user-${i}`],
      actions: ['pull', 'push'],
    }));
    expect(
      () => new ServerlessRegistry(stack, 'Registry', { auth: { type: 'token', access: { rules } } }),
    ).not.toThrow();
  });
});

describe('the registry stack with authentication from context', () => {
  let dir: string;
  let withAuth: App;
  let stack: RegistryStack;
  let template: Template;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'registry-auth-context-'));
    const accessFile = join(dir, 'access.yaml');
    writeFileSync(
      accessFile,
      'rules:\n  - repositories: ["${user}/**"]\n    users: ["*"]\n    actions: ["*"]\n',
    );
    // Bundled, as `cdk synth` does, to see the signing key generator's code.
    withAuth = app({
      context: {
        'aws:cdk:enable-asset-metadata': true,
        auth: 'token',
        accessFile,
        anonymousPull: 'public/**, mirror/**',
      },
    });
    stack = new RegistryStack(withAuth, 'Registry');
    template = Template.fromStack(stack);
  }, SYNTH_TIMEOUT);

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('takes the access file and the anonymous pull patterns', () => {
    const env = variables(template, stack.registry);
    expect(JSON.parse(String(env.REGISTRY_ACCESS))).toEqual({
      rules: [
        { repositories: ['${user}/**'], users: ['*'], actions: ['*'] },
        { repositories: ['public/**', 'mirror/**'], anonymous: true, actions: ['pull'] },
      ],
    });
    expect(env.REGISTRY_AUTH_TOKEN_SERVICE).toBe('Registry');
  });

  it('bundles the signing key generator: an ESM handler that puts the secret, and nothing of the registry', () => {
    const generator = stack.registry.auth?.signingKeyGenerator;
    if (!generator) throw new Error('no generator');
    const resource = template.findResources('AWS::Lambda::Function')[logicalId(generator)] as {
      Metadata: Json;
    };
    const dir = join(withAuth.synth().directory, String(resource.Metadata['aws:asset:path']));
    expect(readdirSync(dir).sort()).toEqual(['index.mjs', 'index.mjs.map']);
    const code = readFileSync(join(dir, 'index.mjs'), 'utf8');
    expect(code).toMatch(/export\s*\{[^}]*\bhandler\b[^}]*\}/);
    expect(code).toContain('PutSecretValue');
    expect(code).not.toContain('GetSecretValue');
    expect(code).not.toContain('/v2/');
  });

  it('passes cdk-nag, with each finding on the secrets and the custom resource acknowledged', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => v.ruleName)).toEqual([]);
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('unauthenticated'))).toEqual(
      [],
    );
  });

  it('references the secrets whose ARNs context gives, and creates none', () => {
    const referenced = new RegistryStack(
      app({ context: { ...NO_BUNDLING, auth: 'htpasswd', htpasswdSecretArn: HTPASSWD_ARN } }),
      'Registry',
    );
    const referencedTemplate = Template.fromStack(referenced);
    referencedTemplate.resourceCountIs('AWS::SecretsManager::Secret', 0);
    expect(variables(referencedTemplate, referenced.registry).REGISTRY_AUTH_HTPASSWD_PATH).toBe(HTPASSWD_ARN);
    expect(new AwsSolutionsChecks().validateScope(referenced).violations).toEqual([]);
  });

  it('deploys token authentication when context says nothing, and an open registry only for auth=none', () => {
    const byDefault = new RegistryStack(app({ context: NO_BUNDLING }), 'Registry');
    expect(variables(Template.fromStack(byDefault), byDefault.registry).REGISTRY_AUTH_TOKEN_REALM).toBe(
      '/auth/token',
    );
    const open = new RegistryStack(app({ context: { ...NO_BUNDLING, auth: 'none' } }), 'Registry');
    expect(open.registry.auth).toBeUndefined();
  });

  it('refuses an unknown auth type', () => {
    expect(() => new RegistryStack(app({ context: { ...NO_BUNDLING, auth: 'ldap' } }), 'Registry')).toThrow(
      /context auth must be token, htpasswd or none/,
    );
  });
});
