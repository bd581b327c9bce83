/**
 * The registry's errors: one table of the OCI distribution-spec error codes, one error type that
 * code throws, and one function that turns it into the spec's JSON body and status.
 */
const CODES = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: {
    status: 400,
    message: 'manifest references a manifest or blob unknown to registry',
  },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  // Not in the spec's table, but distribution's.
  PAGINATION_NUMBER_INVALID: { status: 400, message: 'invalid number of results requested' },
  // Also distribution's: for failures that are the registry's, not the client's.
  UNKNOWN: { status: 500, message: 'unknown error' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
} as const;

export type ErrorCode = keyof typeof CODES;

export interface RegistryErrorOptions {
  /** Overrides the code's usual status (413 for a body too large, 416 for a range, ...). */
  status?: number;
  /** Extra structured detail for the error body. */
  detail?: unknown;
  /** Headers the response must carry (Range on a 416, Allow on a 405, ...). */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class RegistryError extends Error {
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;

  constructor(
    readonly code: ErrorCode,
    message?: string,
    options: RegistryErrorOptions = {},
  ) {
    super(message ?? CODES[code].message, { cause: options.cause });
    this.name = 'RegistryError';
    this.status = options.status ?? CODES[code].status;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }
}

/** The spec's error body: {"errors":[{"code","message","detail"}]}. */
export function errorResponse(error: RegistryError): Response {
  const body = JSON.stringify({
    errors: [{ code: error.code, message: error.message, detail: error.detail ?? null }],
  });
  const headers = new Headers(error.headers);
  headers.set('Content-Type', 'application/json; charset=utf-8');
  headers.set('Content-Length', String(Buffer.byteLength(body)));
  return new Response(body, { status: error.status, headers });
}
