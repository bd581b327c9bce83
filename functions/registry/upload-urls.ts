import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed upload URLs: the registry signs an upload session's repository, id and an expiry into the
 * Location it hands out, as the query parameter `_upload=<kid>.<expires>.<signature>`. Whoever holds
 * the URL may continue that one upload, with no other credentials: the upload edge (a CloudFront
 * Function, functions/edge/upload-request.js, which verifies the same format with the secret from its
 * KeyValueStore) and the upload service (this registry with uploads.only) both check it. Clients that
 * drop credentials on a change of host (containerd) can then upload to another host.
 *
 * - kid: the first 16 hex characters of SHA-256(secret), naming the secret so that it can be rotated;
 * - expires: Unix seconds;
 * - signature: hex HMAC-SHA256 of `${repository}\n${id}\n${expires}` keyed with the secret's UTF-8 bytes.
 */
export const UPLOAD_URL_PARAMETER = '_upload';

/** The kid naming a secret in signed URLs and in the edge's KeyValueStore. */
export function uploadSecretId(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex').slice(0, 16);
}

export type UploadUrlCheck = 'valid' | 'expired' | 'invalid';

export class UploadUrlSigner {
  /** Names the secret in a signed URL (and in the edge's KeyValueStore). */
  readonly kid: string;

  constructor(
    private readonly secret: string,
    /** How long a signed URL stays usable. */
    readonly expirySeconds: number,
  ) {
    if (secret.length < 32) {
      throw new Error('the upload URL secret (http.secret) must have at least 32 characters');
    }
    this.kid = uploadSecretId(secret);
  }

  /** The `_upload` value for an upload of repository, valid from now for expirySeconds. */
  sign(repository: string, id: string, now = Date.now()): string {
    const expires = Math.floor(now / 1000) + this.expirySeconds;
    return `${this.kid}.${expires}.${this.signature(repository, id, expires)}`;
  }

  /** The upload's path with its signed parameter. */
  signedPath(repository: string, id: string, now = Date.now()): string {
    return `/v2/${repository}/blobs/uploads/${id}?${UPLOAD_URL_PARAMETER}=${this.sign(repository, id, now)}`;
  }

  check(repository: string, id: string, value: string | null, now = Date.now()): UploadUrlCheck {
    const match = /^([0-9a-f]{16})\.(\d{1,12})\.([0-9a-f]{64})$/.exec(value ?? '');
    if (!match || match[1] !== this.kid) return 'invalid';
    const expires = Number(match[2]);
    const expected = Buffer.from(this.signature(repository, id, expires), 'hex');
    if (!timingSafeEqual(expected, Buffer.from(match[3] ?? '', 'hex'))) return 'invalid';
    return expires * 1000 < now ? 'expired' : 'valid';
  }

  private signature(repository: string, id: string, expires: number): string {
    return createHmac('sha256', Buffer.from(this.secret, 'utf8'))
      .update(`${repository}\n${id}\n${expires}`)
      .digest('hex');
  }
}
