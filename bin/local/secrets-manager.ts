/**
 * A local AWS Secrets Manager for `npm run local:aws` and tests: the AWS JSON 1.1 protocol (`POST /`
 * with `X-Amz-Target: secretsmanager.<Operation>`) on a free port of 127.0.0.1, for the operations the
 * registry and its tooling call: CreateSecret, GetSecretValue, PutSecretValue and DescribeSecret.
 *
 * Like AWS, it authenticates every request before anything else: the SigV4 signature is computed again
 * (aws-json.ts, with @smithy/signature-v4, the SDK's own signer) with the one set of credentials it was
 * started with, and a request that does not match is refused with AWS's error
 * (`400`, `{"__type": ..., "message": ...}`): an unknown access key is UnrecognizedClientException, a
 * wrong secret key, a tampered body or a stale date InvalidSignatureException. An unknown secret is
 * ResourceNotFoundException. Secrets live in memory; nothing is logged, so no secret value leaves the
 * process but through GetSecretValue.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import {
  authenticate,
  AwsError,
  header,
  type LocalCredentials,
  readBody,
  respond,
  respondWithError,
} from './aws-json.js';
import { listenOnLoopback } from './free-port.js';

export type { LocalCredentials };

export interface SecretsManagerOptions {
  /** The only credentials requests may be signed with. */
  credentials: LocalCredentials;
  /** The region requests must be signed for, and the secrets' ARNs name. @default us-east-1 */
  region?: string;
  /** The account the secrets' ARNs name. @default 000000000000 */
  accountId?: string;
}

export interface LocalSecretsManager {
  /** http://127.0.0.1:PORT: AWS_ENDPOINT_URL_SECRETS_MANAGER, or the client's `endpoint`. */
  readonly endpoint: string;
  readonly region: string;
  readonly accountId: string;
  /** Requests answered so far, refused ones included. */
  readonly requestCount: number;
  /** Stops listening and forgets every secret. */
  stop(): Promise<void>;
}

const SERVICE = 'secretsmanager';
const TARGET_PREFIX = 'secretsmanager.';
/** Secrets Manager's limit on a secret value. */
const MAX_SECRET_BYTES = 65_536;
const MAX_REQUEST_BYTES = 1024 * 1024;

interface SecretVersion {
  id: string;
  value: string;
  created: Date;
}

interface StoredSecret {
  arn: string;
  name: string;
  description: string | undefined;
  created: Date;
  changed: Date;
  /** Oldest first; the last is AWSCURRENT, the one before it AWSPREVIOUS. */
  versions: SecretVersion[];
}

const notFound = () =>
  new AwsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
const invalidParameter = (message: string) => new AwsError('InvalidParameterException', message);

export async function startSecretsManager(options: SecretsManagerOptions): Promise<LocalSecretsManager> {
  const region = options.region ?? 'us-east-1';
  const accountId = options.accountId ?? '000000000000';
  const secrets = new Map<string, StoredSecret>();
  let requestCount = 0;

  const operations: Record<string, (input: Record<string, unknown>) => Record<string, unknown>> = {
    CreateSecret(input) {
      const name = requiredString(input, 'Name');
      if (!/^[A-Za-z0-9/_+=.@-]{1,512}$/.test(name)) {
        throw invalidParameter(
          'Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!',
        );
      }
      if (secrets.has(name)) {
        throw new AwsError(
          'ResourceExistsException',
          `The operation failed because the secret ${name} already exists.`,
        );
      }
      const now = new Date();
      const secret: StoredSecret = {
        // As AWS: the name, a hyphen and six random characters.
        arn: `arn:aws:secretsmanager:${region}:${accountId}:secret:${name}-${randomSuffix()}`,
        name,
        description: optionalString(input, 'Description'),
        created: now,
        changed: now,
        versions: [],
      };
      const value = optionalString(input, 'SecretString');
      if (value !== undefined) addVersion(secret, value, optionalString(input, 'ClientRequestToken'));
      secrets.set(name, secret);
      const version = secret.versions.at(-1);
      return { ARN: secret.arn, Name: secret.name, ...(version ? { VersionId: version.id } : {}) };
    },

    GetSecretValue(input) {
      const secret = find(requiredString(input, 'SecretId'));
      const version = findVersion(
        secret,
        optionalString(input, 'VersionId'),
        optionalString(input, 'VersionStage'),
      );
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.id,
        SecretString: version.value,
        VersionStages: stagesOf(secret, version),
        CreatedDate: epochSeconds(version.created),
      };
    },

    PutSecretValue(input) {
      const secret = find(requiredString(input, 'SecretId'));
      const value = optionalString(input, 'SecretString');
      if (value === undefined)
        throw invalidParameter('You must provide either SecretString or SecretBinary.');
      const version = addVersion(secret, value, optionalString(input, 'ClientRequestToken'));
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.id,
        VersionStages: stagesOf(secret, version),
      };
    },

    DescribeSecret(input) {
      const secret = find(requiredString(input, 'SecretId'));
      return {
        ARN: secret.arn,
        Name: secret.name,
        ...(secret.description === undefined ? {} : { Description: secret.description }),
        CreatedDate: epochSeconds(secret.created),
        LastChangedDate: epochSeconds(secret.changed),
        VersionIdsToStages: Object.fromEntries(
          secret.versions
            .map((version) => [version.id, stagesOf(secret, version)] as const)
            .filter(([, stages]) => stages.length > 0),
        ),
      };
    },
  };

  /** A secret by name, complete ARN, or partial ARN (the ARN without its random suffix). */
  function find(id: string): StoredSecret {
    const byName = secrets.get(id);
    if (byName) return byName;
    for (const secret of secrets.values()) {
      if (secret.arn === id || secret.arn.slice(0, -7) === id) return secret;
    }
    throw notFound();
  }

  const server = createServer((req, res) => {
    requestCount += 1;
    void serve(req, res).catch((error: unknown) => {
      respondWithError(res, error, 'InternalServiceError');
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, MAX_REQUEST_BYTES);
    if (body === undefined) throw invalidParameter('The request is too large.');
    if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') {
      throw new AwsError(
        'UnknownOperationException',
        `${req.method ?? ''} ${req.url ?? ''} is not an operation`,
        404,
      );
    }
    await authenticate(req, body, { service: SERVICE, region, credentials: options.credentials });
    const target = header(req, 'x-amz-target') ?? '';
    const operation = target.startsWith(TARGET_PREFIX)
      ? operations[target.slice(TARGET_PREFIX.length)]
      : undefined;
    if (operation === undefined)
      throw new AwsError('UnknownOperationException', `Unknown operation ${target}`);
    let input: unknown;
    try {
      input = body.byteLength === 0 ? {} : JSON.parse(body.toString('utf8'));
    } catch {
      throw new AwsError('SerializationException', 'The request body is not valid JSON');
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw new AwsError('SerializationException', 'The request body must be a JSON object');
    }
    respond(res, 200, operation(input as Record<string, unknown>));
  }

  const port = await listenOnLoopback(server);

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    accountId,
    get requestCount() {
      return requestCount;
    },
    async stop() {
      secrets.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}

/** A new AWSCURRENT version (the current one becomes AWSPREVIOUS); a repeated token is idempotent. */
function addVersion(secret: StoredSecret, value: string, token: string | undefined): SecretVersion {
  if (Buffer.byteLength(value, 'utf8') > MAX_SECRET_BYTES) {
    throw invalidParameter(`The secret value is longer than ${MAX_SECRET_BYTES} bytes.`);
  }
  const existing = token === undefined ? undefined : secret.versions.find((version) => version.id === token);
  if (existing) {
    if (existing.value === value) return existing;
    throw new AwsError(
      'ResourceExistsException',
      `A version with VersionId ${token} already exists with other content.`,
    );
  }
  const version = { id: token ?? randomUUID(), value, created: new Date() };
  secret.versions.push(version);
  secret.changed = version.created;
  return version;
}

function findVersion(
  secret: StoredSecret,
  versionId: string | undefined,
  stage: string | undefined,
): SecretVersion {
  const { versions } = secret;
  let version: SecretVersion | undefined;
  if (versionId !== undefined) version = versions.find((candidate) => candidate.id === versionId);
  else if (stage === undefined || stage === 'AWSCURRENT') version = versions.at(-1);
  else if (stage === 'AWSPREVIOUS') version = versions.at(-2);
  if (version === undefined || (stage !== undefined && !stagesOf(secret, version).includes(stage))) {
    throw new AwsError(
      'ResourceNotFoundException',
      `Secrets Manager can't find the specified secret value for ${versionId === undefined ? `staging label: ${stage ?? 'AWSCURRENT'}` : `VersionId: ${versionId}`}`,
    );
  }
  return version;
}

function stagesOf(secret: StoredSecret, version: SecretVersion): string[] {
  if (version === secret.versions.at(-1)) return ['AWSCURRENT'];
  if (version === secret.versions.at(-2)) return ['AWSPREVIOUS'];
  return [];
}

function requiredString(input: Record<string, unknown>, key: string): string {
  const value = input[key];
  if (typeof value !== 'string' || value === '') throw invalidParameter(`${key} is required`);
  return value;
}

function optionalString(input: Record<string, unknown>, key: string): string | undefined {
  const value = input[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalidParameter(`${key} must be a string`);
  return value;
}

const epochSeconds = (date: Date) => date.getTime() / 1000;

function randomSuffix(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(6)].map((byte) => alphabet[byte % alphabet.length]).join('');
}
