/**
 * What the local AWS services that speak the AWS JSON 1.1 protocol (secrets-manager.ts, eventbridge.ts)
 * share: AWS's errors and how they are answered (`{"__type": ..., "message": ...}` with
 * `application/x-amz-json-1.1`), reading a request's body, and authenticating a request as AWS does, by
 * computing its SigV4 signature again with @smithy/signature-v4 (the SDK's own signer) and the one set
 * of credentials the service was started with.
 */
import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';

export interface LocalCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** Who may call a service: requests must be signed for this service and region with these credentials. */
export interface SigningScope {
  /** The service in the credential scope, as AWS names it for SigV4 (`secretsmanager`, `events`). */
  service: string;
  region: string;
  credentials: LocalCredentials;
}

/** An AWS error: its `__type` and message, with the status AWS answers it with. */
export class AwsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/** How far a request's date may be from this clock, as AWS allows. */
const MAX_SKEW_MS = 15 * 60_000;

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;_.-]+),\s*Signature=([0-9a-f]{64})$/;

/**
 * Checks the request's SigV4 signature as AWS does; throws AWS's error when it is not valid: an unknown
 * access key is UnrecognizedClientException, a wrong secret key, a tampered body, a stale date or a
 * scope for another service or region InvalidSignatureException.
 */
export async function authenticate(req: IncomingMessage, body: Buffer, scope: SigningScope): Promise<void> {
  const { service, region, credentials } = scope;
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
  const [, accessKeyId = '', day = '', scopeRegion = '', scopeService = '', signedList = '', signature = ''] =
    match;
  if (accessKeyId !== credentials.accessKeyId) {
    throw new AwsError(
      'UnrecognizedClientException',
      'The security token included in the request is invalid.',
    );
  }
  if (scopeService !== service) {
    throw new AwsError(
      'InvalidSignatureException',
      `Credential should be scoped to correct service: '${service}'.`,
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
  // A claimed payload hash is what the signer signs; it must also be the body's.
  const claimedHash = header(req, 'x-amz-content-sha256');
  if (claimedHash !== undefined && claimedHash !== createHash('sha256').update(body).digest('hex')) {
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
  const signer = new SignatureV4({ credentials, region, service, sha256: Sha256, applyChecksum: false });
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

/** SHA-256 and HMAC-SHA-256 from node:crypto, in the shape @smithy/signature-v4 asks for. */
export class Sha256 {
  readonly #hash;
  constructor(secret?: SourceData) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.#hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.#hash.digest()));
  }
}

function bytes(data: SourceData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

// ---- HTTP -----------------------------------------------------------------------------------------

/** A request header, its repeated values joined with commas; undefined when absent. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** The request body; undefined when it is over maxBytes (the rest is not read). */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer | undefined> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > maxBytes) return undefined;
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

/** Answers with a JSON body, as AWS JSON 1.1 services do. */
export function respond(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': randomUUID(),
  });
  res.end(text);
}

/**
 * Answers with the error a request failed with: an AwsError as itself, anything else as
 * `500 internalType` (each service names its own internal error).
 */
export function respondWithError(res: ServerResponse, error: unknown, internalType: string): void {
  const failure = error instanceof AwsError ? error : new AwsError(internalType, String(error), 500);
  respond(res, failure.status, { __type: failure.type, message: failure.message });
}
