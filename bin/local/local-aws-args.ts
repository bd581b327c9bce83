/** The command line of `npm run local:aws` (bin/local-aws.ts): flags to the options of startLocalAws. */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { parseAge, parseGoDuration } from '../../functions/config.js';
import { readAccessFile } from '../../lib/auth-environment.js';
import type { ImmutabilityRuleSection, RetentionPolicySection } from '../../lib/registry-policies.js';
import type { LocalAwsAuthOptions, LocalAwsGcOptions, LocalAwsTls } from './local-aws.js';

/** What `npm run local:aws -- --help` prints. */
export const LOCAL_AWS_USAGE = `usage: local-aws [--edge] [--upload-service] [--webhook URL] [--immutability FILE] [--gc-every DURATION [gc options]] [--auth token|htpasswd --htpasswd FILE [options]]

  --edge                    the upload edge in front (CloudFront and its functions): one-PUT uploads
                            (containerd, BuildKit) go straight to S3
  --upload-service          the upload service beside the function (Fargate): PATCH uploads (docker,
                            podman, skopeo) stream to S3 through it
  --webhook URL             deliver the registry's events to URL (repeatable), as the construct's
                            notifications.webhooks do: EventBridge rules with API destinations
  --immutability FILE       tags that cannot be moved once pushed: a JSON (or YAML) file with the
                            immutability section, as the context key immutability takes it
  --gc-every DURATION       run garbage collection every DURATION (e.g. 10m), as the construct's
                            garbageCollection schedule does: its function in a local Lambda, which
                            the local Lambda's Invoke API also runs on demand
  --gc-timeout DURATION     the garbage collection function's timeout (default 15m); a run stops
                            a minute before it and continues in a new invocation
  --gc-grace DURATION       gc.grace, as the context key gcGrace (default 1h)
  --gc-delete-untagged      remove manifests no tag reaches, as the context key gcDeleteUntagged
  --gc-dry-run              runs remove nothing, as the context key gcDryRun
  --retention FILE          retention policies: a JSON (or YAML) file with the retention section,
                            as the context key retention takes it

  --auth token              Docker token auth: the token endpoint at /auth/token, as deployed
  --auth htpasswd           HTTP basic auth on every request
  --htpasswd FILE           the users: an htpasswd file of bcrypt entries (htpasswd -nbB USER PASSWORD)
  --access FILE             access rules: a YAML or JSON file with groups and rules (the access section)
  --anonymous-pull PATTERN  repositories anyone may pull (repeatable), e.g. 'public/**'
  --service NAME            the token service, or the basic realm (default ServerlessRegistry)
  --issuer NAME             token: the tokens' issuer (default: the service)
  --token-expiration SECS   token: access token lifetime in seconds (default 300)
  --tls-certificate FILE    serve HTTPS with this certificate (PEM), as API Gateway does
  --tls-key FILE            and its private key (PEM)

The functions get the variables the construct sets from these flags; other REGISTRY_* variables of
local-aws's environment reach them too, as variables set on the functions by hand would on AWS (e.g.
REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true, REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE=24h).
`;

/** What the command line asks for: help, or the options (none without flags: the open registry on HTTP). */
export function parseLocalAwsArgs(args: readonly string[]): {
  help: boolean;
  auth?: LocalAwsAuthOptions;
  tls?: LocalAwsTls;
  edge?: boolean;
  uploadService?: boolean;
  webhooks?: string[];
  immutability?: ImmutabilityRuleSection[];
  gc?: LocalAwsGcOptions;
} {
  const { values } = parseArgs({
    args: [...args],
    options: {
      auth: { type: 'string' },
      htpasswd: { type: 'string' },
      access: { type: 'string' },
      service: { type: 'string' },
      issuer: { type: 'string' },
      'token-expiration': { type: 'string' },
      'anonymous-pull': { type: 'string', multiple: true },
      'tls-certificate': { type: 'string' },
      'tls-key': { type: 'string' },
      edge: { type: 'boolean' },
      'upload-service': { type: 'boolean' },
      webhook: { type: 'string', multiple: true },
      immutability: { type: 'string' },
      'gc-every': { type: 'string' },
      'gc-timeout': { type: 'string' },
      'gc-grace': { type: 'string' },
      'gc-delete-untagged': { type: 'boolean' },
      'gc-dry-run': { type: 'boolean' },
      retention: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return { help: true };
  const certificate = values['tls-certificate'];
  const key = values['tls-key'];
  if ((certificate === undefined) !== (key === undefined)) {
    throw new Error(`--tls-certificate and --tls-key go together\n${LOCAL_AWS_USAGE}`);
  }
  const tls = {
    ...(certificate !== undefined && key !== undefined && { tls: { certificate, key } }),
    ...(values.edge === true && { edge: true }),
    ...(values['upload-service'] === true && { uploadService: true }),
    ...(values.webhook !== undefined && { webhooks: values.webhook.map(webhookUrl) }),
    ...(values.immutability !== undefined && {
      immutability: sectionFile<ImmutabilityRuleSection>('immutability', values.immutability),
    }),
    ...gcOptions(values),
  };
  const { auth: type, htpasswd, access, service, issuer } = values;
  const expiration = values['token-expiration'];
  const anonymousPull = values['anonymous-pull'];
  if (type === undefined) {
    const authOptions = Object.keys(values).filter(
      (name) =>
        !name.startsWith('tls-') &&
        !name.startsWith('gc-') &&
        !['edge', 'upload-service', 'webhook', 'immutability', 'retention'].includes(name),
    );
    if (authOptions.length > 0) {
      throw new Error(`--${authOptions.join(', --')} go with --auth\n${LOCAL_AWS_USAGE}`);
    }
    return { help: false, ...tls };
  }
  if (type !== 'token' && type !== 'htpasswd')
    throw new Error(`--auth must be token or htpasswd\n${LOCAL_AWS_USAGE}`);
  if (htpasswd === undefined)
    throw new Error(`--auth ${type} needs --htpasswd FILE (the users)\n${LOCAL_AWS_USAGE}`);
  let users: string;
  try {
    users = readFileSync(htpasswd, 'utf8');
  } catch (error) {
    throw new Error(`--htpasswd ${htpasswd}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  const seconds = expiration === undefined ? undefined : Number(expiration);
  if (seconds !== undefined && !(Number.isInteger(seconds) && seconds > 0)) {
    throw new Error(`--token-expiration takes a whole number of seconds, not ${expiration ?? ''}`);
  }
  const auth: LocalAwsAuthOptions = {
    type,
    htpasswd: users,
    ...(access !== undefined && { access: readAccessFile(access) }),
    ...(service !== undefined && { service }),
    ...(issuer !== undefined && { issuer }),
    ...(seconds !== undefined && { tokenExpirationSeconds: seconds }),
    ...(anonymousPull !== undefined && { anonymousPull }),
  };
  return { help: false, auth, ...tls };
}

function webhookUrl(url: string): string {
  if (!/^https?:\/\//.test(url))
    throw new Error(`--webhook: expected an http(s) URL, got ${url}\n${LOCAL_AWS_USAGE}`);
  return url;
}

/** The garbage collection flags, as the gc option; nothing without --gc-every. */
function gcOptions(values: {
  'gc-every'?: string;
  'gc-timeout'?: string;
  'gc-grace'?: string;
  'gc-delete-untagged'?: boolean;
  'gc-dry-run'?: boolean;
  retention?: string;
}): { gc?: LocalAwsGcOptions } {
  const every = values['gc-every'];
  const timeout = values['gc-timeout'];
  const grace = values['gc-grace'];
  const { retention } = values;
  if (every === undefined) {
    const settings = (
      ['gc-timeout', 'gc-grace', 'gc-delete-untagged', 'gc-dry-run', 'retention'] as const
    ).filter((name) => values[name] !== undefined);
    if (settings.length > 0) {
      throw new Error(
        `--${settings.join(', --')} go${settings.length === 1 ? 'es' : ''} with --gc-every\n${LOCAL_AWS_USAGE}`,
      );
    }
    return {};
  }
  const duration = (flag: string, value: string) => {
    const ms = parseGoDuration(value);
    if (ms === undefined || ms <= 0) {
      throw new Error(
        `--${flag}: expected a duration such as 30s, 10m or 1h, got ${value}\n${LOCAL_AWS_USAGE}`,
      );
    }
    return ms;
  };
  // As the stack takes its context key gcGrace: 0s allowed, whole seconds, days as 1d.
  const graceMs = grace === undefined ? undefined : parseAge(grace);
  if (grace !== undefined && (graceMs === undefined || graceMs < 0 || graceMs % 1000 !== 0)) {
    throw new Error(`--gc-grace: expected a duration in whole seconds such as 0s, 30m or 1d, got ${grace}`);
  }
  return {
    gc: {
      everyMs: duration('gc-every', every),
      ...(timeout !== undefined && { timeoutMs: duration('gc-timeout', timeout) }),
      ...(graceMs !== undefined && { graceMs }),
      ...(values['gc-delete-untagged'] === true && { deleteUntagged: true }),
      ...(values['gc-dry-run'] === true && { dryRun: true }),
      ...(retention !== undefined && {
        retention: sectionFile<RetentionPolicySection>('retention', retention),
      }),
    },
  };
}

/**
 * The list a --retention or --immutability file holds: the configuration section as JSON (or YAML),
 * bare as the context key takes it, or under its key. What is in it is checked when local-aws starts,
 * by the registry's own configuration (startLocalAws).
 */
function sectionFile<T>(flag: 'retention' | 'immutability', path: string): T[] {
  let document: unknown;
  try {
    document = parseYaml(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`--${flag} ${path}: cannot read it: ${(error as Error).message}`);
  }
  const section =
    typeof document === 'object' && document !== null && !Array.isArray(document) && flag in document
      ? (document as Record<string, unknown>)[flag]
      : document;
  if (!Array.isArray(section)) {
    throw new Error(`--${flag} ${path}: expected a list (the ${flag} section), as the context key takes it`);
  }
  return section as T[];
}
