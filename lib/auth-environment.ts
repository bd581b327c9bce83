/**
 * The registry function's authentication settings as the REGISTRY_* variables it is configured by. The
 * ServerlessRegistry construct sets these on Lambda and `npm run local:aws -- --auth ...` sets them
 * locally: one function, so the two cannot drift apart. It imports no CDK, so the local emulation can
 * bundle it; a value may be a CDK token (a secret's ARN, resolved at deploy time).
 *
 * Secrets never appear here: the htpasswd file and the signing key are Secrets Manager ARNs, which
 * the registry reads once per container (functions/secrets.ts). The access rules are not secret and
 * travel as JSON in REGISTRY_ACCESS.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { type AccessRuleInput, accessRulesError, type POLICY_ACTIONS } from '../functions/auth/policy.js';

/**
 * `token`: the registry's built-in token endpoint (Docker token auth), at TOKEN_REALM on the registry's
 * own origin; clients log in once and pull and push with short-lived tokens. `htpasswd`: HTTP basic
 * authentication on every request.
 */
export type AuthType = 'token' | 'htpasswd';

/** Where the built-in token endpoint answers; the registry resolves it against each request's origin. */
export const TOKEN_REALM = '/auth/token';

/** What an access rule may grant: repository actions, `catalog` (listing every repository), or `*`. */
export type AccessAction = (typeof POLICY_ACTIONS)[number];

/** One rule of the registry's `access` section (functions/auth/policy.ts); rules only grant. */
export type AccessRule = AccessRuleInput & { readonly actions: AccessAction[] };

/**
 * The registry's `access` section: per-repository access control. Without one, every signed-in user
 * may do everything and anonymous requests nothing.
 */
export interface AccessPolicy {
  /** Group name to its members (user names). */
  readonly groups?: Record<string, string[]>;
  readonly rules: AccessRule[];
}

export interface AuthSettings {
  readonly type: AuthType;
  /** The secret (ARN) holding the htpasswd file of the registry's users (bcrypt entries). */
  readonly htpasswdSecretArn: string;
  /** token: the secret (ARN) holding the token signing key, a PEM private key. */
  readonly signingKeySecretArn?: string | undefined;
  /** The name tokens are issued for (their audience); with htpasswd, the basic realm. */
  readonly service: string;
  /** token: the tokens' issuer. @default service */
  readonly issuer?: string | undefined;
  /** token: access token lifetime in seconds. @default the registry's (5 minutes) */
  readonly tokenExpirationSeconds?: number | undefined;
  readonly access?: AccessPolicy | undefined;
  /** Repository patterns anyone may pull from without signing in: a rule added to `access`. */
  readonly anonymousPull?: readonly string[] | undefined;
}

/** The REGISTRY_* variables that configure authentication and access control as settings describe. */
export function authEnvironment(settings: AuthSettings): Record<string, string> {
  const env: Record<string, string> = {};
  const service = yamlString(settings.service, 'service');
  if (settings.type === 'htpasswd') {
    for (const key of ['signingKeySecretArn', 'issuer', 'tokenExpirationSeconds'] as const) {
      if (settings[key] !== undefined) throw new Error(`auth: ${key} is for token authentication only`);
    }
    env.REGISTRY_AUTH_HTPASSWD_REALM = service;
    env.REGISTRY_AUTH_HTPASSWD_PATH = settings.htpasswdSecretArn;
  } else {
    if (settings.signingKeySecretArn === undefined) {
      throw new Error('auth: token authentication needs the signing key secret');
    }
    env.REGISTRY_AUTH_TOKEN_REALM = TOKEN_REALM;
    env.REGISTRY_AUTH_TOKEN_SERVICE = service;
    env.REGISTRY_AUTH_TOKEN_ISSUER = yamlString(settings.issuer ?? settings.service, 'issuer');
    env.REGISTRY_AUTH_TOKEN_SIGNINGKEY = settings.signingKeySecretArn;
    env.REGISTRY_AUTH_TOKEN_HTPASSWD = settings.htpasswdSecretArn;
    const seconds = settings.tokenExpirationSeconds;
    if (seconds !== undefined) {
      if (!Number.isInteger(seconds) || seconds < 1) {
        throw new Error(
          `auth: tokenExpiration must be a whole number of seconds, at least 1 (got ${seconds})`,
        );
      }
      env.REGISTRY_AUTH_TOKEN_EXPIRATION = `${seconds}s`;
    }
  }
  const access = accessSection(settings.access, settings.anonymousPull);
  if (access !== undefined) env.REGISTRY_ACCESS = JSON.stringify(access);
  return env;
}

/**
 * The access section with the anonymous pull rule added, checked as the registry checks it when it
 * starts (so a mistake fails the synthesis, not every request), in the compact form REGISTRY_ACCESS
 * carries: fields left at their defaults are left out.
 */
export function accessSection(
  access: AccessPolicy | undefined,
  anonymousPull: readonly string[] = [],
): AccessPolicy | undefined {
  if (access === undefined && anonymousPull.length === 0) return undefined;
  const rules: AccessRule[] = access
    ? [...access.rules]
    : // What the registry does without an access section, which an anonymous rule would otherwise end.
      [{ repositories: ['**'], users: ['*'], actions: ['*'] }];
  if (anonymousPull.length > 0) {
    rules.push({ repositories: [...anonymousPull], anonymous: true, actions: ['pull'] });
  }
  const groups = access?.groups ?? {};
  const error = accessRulesError(groups, rules, 'auth.access.rules');
  if (error !== undefined) throw new Error(error);
  return {
    ...(Object.keys(groups).length > 0 ? { groups } : {}),
    rules: rules.map((rule) => ({
      ...(rule.repositories?.length ? { repositories: rule.repositories } : {}),
      ...(rule.users?.length ? { users: rule.users } : {}),
      ...(rule.groups?.length ? { groups: rule.groups } : {}),
      ...(rule.anonymous ? { anonymous: true } : {}),
      actions: rule.actions,
    })),
  };
}

/**
 * A string as a REGISTRY_* value, which the registry parses as YAML: as it is when YAML reads it back
 * unchanged, else JSON-quoted (JSON is YAML). A CDK token is left alone: it resolves to a name or ARN.
 */
function yamlString(value: string, what: string): string {
  if (value === '') throw new Error(`auth: ${what} must not be empty`);
  if (value.includes('${Token[')) return value;
  let parsed: unknown;
  try {
    parsed = parseYaml(value);
  } catch {
    parsed = undefined;
  }
  return parsed === value ? value : JSON.stringify(value);
}

/**
 * An access section from a YAML or JSON file: `groups` and `rules` at the top, or under `access` (a
 * registry configuration file). Checked further by accessSection, when REGISTRY_ACCESS is made.
 */
export function readAccessFile(path: string): AccessPolicy {
  let document: unknown;
  try {
    document = parseYaml(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`access file ${path}: cannot read it: ${(error as Error).message}`);
  }
  const isRecord = (value: unknown): value is Record<string, unknown> =>
    typeof value === 'object' && value !== null && !Array.isArray(value);
  const access = isRecord(document) && isRecord(document.access) ? document.access : document;
  if (!isRecord(access) || !Array.isArray(access.rules)) {
    throw new Error(`access file ${path}: no access rules (a rules list, and optionally groups)`);
  }
  return access as unknown as AccessPolicy;
}
