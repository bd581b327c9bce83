/**
 * A local AWS Secrets Manager for `npm run local:aws` and tests: the AWS JSON 1.1 protocol (`POST /`
 * with `X-Amz-Target: secretsmanager.<Operation>`) on a free port of 127.0.0.1, for the operations the
 * registry and its tooling call: CreateSecret, GetSecretValue, PutSecretValue and DescribeSecret.
 *
 * Like AWS, it authenticates every request before anything else: the SigV4 signature is computed again
 * (@smithy/signature-v4, the SDK's own signer) with the one set of credentials it was started with, and
 * a request that does not match is refused with AWS's error (`400`, `{"__type": ..., "message": ...}`):
 * an unknown access key is UnrecognizedClientException, a wrong secret key, a tampered body or a stale
 * date InvalidSignatureException. An unknown secret is ResourceNotFoundException. Secrets live in memory;
 * nothing is logged, so no secret value leaves the process but through GetSecretValue.
 */
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import { listenOnLoopback } from './free-port.js';

export interface LocalCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

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
/** How far a request's date may be from this clock, as AWS allows. */
const MAX_SKEW_MS = 15 * 60_000;

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

/** An AWS error: its `__type` and message, with the status AWS answers it with. */
class AwsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
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
      const failure =
        error instanceof AwsError ? error : new AwsError('InternalServiceError', String(error), 500);
      respond(res, failure.status, { __type: failure.type, message: failure.message });
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') {
      throw new AwsError(
        'UnknownOperationException',
        `${req.method ?? ''} ${req.url ?? ''} is not an operation`,
        404,
      );
    }
    await authenticate(req, body, options.credentials, region);
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

// ---- SigV4 ----------------------------------------------------------------------------------------

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;_.-]+),\s*Signature=([0-9a-f]{64})$/;

/** Checks the request's SigV4 signature as AWS does; throws AWS's error when it is not valid. */
async function authenticate(
  req: IncomingMessage,
  body: Buffer,
  credentials: LocalCredentials,
  region: string,
): Promise<void> {
  const authorization = header(req, 'authorization');
  if (authorization === undefined) {
    throw new AwsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
  }
  const match = AUTHORIZATION.exec(authorization.trim());
  if (!match) {
    throw new AwsError(
      'IncompleteSignatureException',
      'Authorization header requires Credential, SignedHeaders and Signature, signed with AWS4-HMAC-SHA256.',
    );
  }
  const [, accessKeyId = '', day = '', scopeRegion = '', service = '', signedList = '', signature = ''] =
    match;
  if (accessKeyId !== credentials.accessKeyId) {
    throw new AwsError(
      'UnrecognizedClientException',
      'The security token included in the request is invalid.',
    );
  }
  if (service !== SERVICE) {
    throw new AwsError(
      'InvalidSignatureException',
      `Credential should be scoped to correct service: '${SERVICE}'.`,
    );
  }
  if (scopeRegion !== region) {
    throw new AwsError(
      'InvalidSignatureException',
      `Credential should be scoped to a valid region, not '${scopeRegion}'.`,
    );
  }
  const amzDate = header(req, 'x-amz-date') ?? '';
  const signingDate = parseAmzDate(amzDate);
  if (signingDate === undefined || !amzDate.startsWith(day)) {
    throw new AwsError(
      'IncompleteSignatureException',
      'The request must carry an X-Amz-Date matching its credential scope.',
    );
  }
  if (Math.abs(Date.now() - signingDate.getTime()) > MAX_SKEW_MS) {
    throw new AwsError(
      'InvalidSignatureException',
      `Signature expired: ${amzDate} is now earlier or later than 15 minutes from now.`,
    );
  }
  const signed = signedList.split(';');
  if (!signed.includes('host')) {
    throw new AwsError('InvalidSignatureException', "'Host' must be a signed header.");
  }
  const bodyHash = createHash('sha256').update(body).digest('hex');
  const claimedHash = header(req, 'x-amz-content-sha256');
  if (claimedHash !== undefined && claimedHash !== bodyHash) {
    throw signatureMismatch();
  }

  // Sign the same request again, with the headers it says it signed and the body it carried.
  const headers: Record<string, string> = {};
  for (const name of signed) {
    const value = header(req, name);
    if (value === undefined) throw signatureMismatch();
    headers[name] = value;
  }
  const url = new URL(req.url ?? '/', 'http://local');
  const query: Record<string, string | string[]> = {};
  for (const key of new Set(url.searchParams.keys())) {
    const values = url.searchParams.getAll(key);
    query[key] = values.length === 1 ? (values[0] ?? '') : values;
  }
  const signer = new SignatureV4({
    credentials,
    region,
    service: SERVICE,
    sha256: Sha256,
    applyChecksum: false,
  });
  const expected = await signer.sign(
    {
      method: req.method ?? 'POST',
      protocol: 'http:',
      hostname: 'local',
      path: url.pathname,
      query,
      headers,
      body,
    },
    { signingDate, signableHeaders: new Set(signed) },
  );
  const expectedMatch = AUTHORIZATION.exec(String(expected.headers.authorization));
  const expectedSignature = Buffer.from(expectedMatch?.[6] ?? '', 'utf8');
  const given = Buffer.from(signature, 'utf8');
  if (
    expectedMatch?.[5] !== signedList ||
    expectedSignature.length !== given.length ||
    !timingSafeEqual(expectedSignature, given)
  ) {
    throw signatureMismatch();
  }
}

const signatureMismatch = () =>
  new AwsError(
    'InvalidSignatureException',
    'The request signature we calculated does not match the signature you provided. Check your AWS Secret ' +
      'Access Key and signing method. Consult the service documentation for details.',
  );

/** `20240102T030405Z` as a Date; undefined when malformed. */
function parseAmzDate(text: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  return Number.isNaN(date.getTime()) ? undefined : date;
}

type SourceData = string | ArrayBuffer | ArrayBufferView;

/** SHA-256 and HMAC-SHA-256 from node:crypto, in the shape the signer asks for. */
class Sha256 {
  private hash;

  constructor(private readonly secret?: SourceData) {
    this.hash = Sha256.create(secret);
  }

  private static create(secret: SourceData | undefined) {
    return secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }

  update(data: SourceData): void {
    this.hash.update(bytes(data));
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.hash.digest()));
  }

  reset(): void {
    this.hash = Sha256.create(this.secret);
  }
}

function bytes(data: SourceData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

// ---- HTTP -----------------------------------------------------------------------------------------

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > MAX_REQUEST_BYTES) throw invalidParameter('The request is too large.');
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

function respond(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': randomUUID(),
  });
  res.end(text);
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
