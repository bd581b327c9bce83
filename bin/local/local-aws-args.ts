/** The command line of `npm run local:aws` (bin/local-aws.ts): flags to the options of startLocalAws. */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readAccessFile } from '../../lib/auth-environment.js';
import type { LocalAwsAuthOptions, LocalAwsTls } from './local-aws.js';

/** What `npm run local:aws -- --help` prints. */
export const LOCAL_AWS_USAGE = `usage: local-aws [--edge] [--upload-service] [--webhook URL] [--auth token|htpasswd --htpasswd FILE [options]]

  --edge                    the upload edge in front (CloudFront and its functions): one-PUT uploads
                            (containerd, BuildKit) go straight to S3
  --upload-service          the upload service beside the function (Fargate): PATCH uploads (docker,
                            podman, skopeo) stream to S3 through it
  --webhook URL             deliver the registry's events to URL (repeatable), as the construct's
                            notifications.webhooks do: EventBridge rules with API destinations

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
`;

/** What the command line asks for: help, or the options (none without flags: the open registry on HTTP). */
export function parseLocalAwsArgs(args: readonly string[]): {
  help: boolean;
  auth?: LocalAwsAuthOptions;
  tls?: LocalAwsTls;
  edge?: boolean;
  uploadService?: boolean;
  webhooks?: string[];
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
  };
  const { auth: type, htpasswd, access, service, issuer } = values;
  const expiration = values['token-expiration'];
  const anonymousPull = values['anonymous-pull'];
  if (type === undefined) {
    const authOptions = Object.keys(values).filter(
      (name) => !name.startsWith('tls-') && !['edge', 'upload-service', 'webhook'].includes(name),
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
