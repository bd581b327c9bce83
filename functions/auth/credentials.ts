import { createHmac, randomBytes } from 'node:crypto';
import { RegistryError } from '../registry/errors.js';
import type { PasswordSource } from './htpasswd.js';
import type { LoginThrottle } from './throttle.js';

export interface BasicCredentials {
  user: string;
  password: string;
}

/**
 * The credentials of an `Authorization: Basic` header; undefined when the header is another scheme,
 * absent, or empty credentials (`Og==`, which skopeo and podman send when they have none: anonymous);
 * an UNAUTHORIZED error (that never repeats the header) when it is malformed.
 */
export function basicCredentials(
  authorization: string | null,
  challenge: Record<string, string>,
): BasicCredentials | undefined {
  const match = /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(authorization ?? '');
  if (!match?.[1]) {
    if (/^Basic\b/i.test(authorization ?? '')) throw unauthorized('malformed basic credentials', challenge);
    return undefined;
  }
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  if (decoded === ':') return undefined;
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw unauthorized('malformed basic credentials', challenge);
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Password checks, throttled: too many failures from a client or for a user answer 429 for a while. */
export class Logins {
  private readonly key = randomBytes(32);

  constructor(
    private readonly users: PasswordSource,
    private readonly throttle: LoginThrottle,
  ) {}

  /** Whether the credentials are valid; throws TOOMANYREQUESTS while the client or user is throttled. */
  async check(credentials: BasicCredentials, client: string | undefined): Promise<boolean> {
    const wait = this.throttle.retryAfter(client, credentials.user);
    if (wait > 0) {
      throw new RegistryError('TOOMANYREQUESTS', `too many failed logins; try again in ${wait} s`, {
        headers: { 'Retry-After': String(wait) },
      });
    }
    const users = await this.users.current();
    const ok = await users.verify(credentials.user, credentials.password);
    if (ok) this.throttle.succeeded(credentials.user);
    else this.throttle.failed(client, credentials.user, this.guessOf(credentials));
    return ok;
  }

  /** Identifies a guess without keeping the password: a hash under a key of this process. */
  private guessOf({ user, password }: BasicCredentials): string {
    return createHmac('sha256', this.key).update(user).update('\0').update(password).digest('base64url');
  }

  /** The password file's fingerprint of the user's current hash (undefined when the user is gone). */
  async fingerprint(user: string): Promise<string | undefined> {
    return (await this.users.current()).fingerprint(user);
  }
}

/** A 401 carrying the challenge that tells the client how to authenticate. */
export function unauthorized(message: string, challenge: Record<string, string>): RegistryError {
  return new RegistryError('UNAUTHORIZED', message, { headers: challenge });
}
