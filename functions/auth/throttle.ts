import { createHash } from 'node:crypto';

/**
 * Failed-login throttling: after too many failures in a window, from one client address or for one
 * user name, further attempts are refused (429 with Retry-After) until the window ends, without
 * spending a password check on them. Counts live in this process: on Lambda each container counts
 * its own, which still bounds an attacker's rate per container.
 */
export interface ThrottleLimits {
  /** Failures allowed per user name in a window. */
  perUser: number;
  /** Failures allowed per client address in a window (a shared NAT has many users). */
  perClient: number;
  windowMs: number;
}

export const DEFAULT_THROTTLE: ThrottleLimits = { perUser: 10, perClient: 30, windowMs: 5 * 60_000 };

/** Bounds memory under a flood of distinct names or addresses; the oldest windows go first. */
const CAPACITY = 10_000;

interface Window {
  failures: number;
  ends: number;
}

export class LoginThrottle {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly limits: ThrottleLimits = DEFAULT_THROTTLE,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until a login for user from client may be tried again; 0 when it may be tried now. */
  retryAfter(client: string | undefined, user: string | undefined): number {
    const now = this.now();
    const waits = this.keys(client, user).map(([key, limit]) => {
      const window = this.windows.get(key);
      return window && window.ends > now && window.failures >= limit ? window.ends - now : 0;
    });
    return Math.ceil(Math.max(0, ...waits) / 1000);
  }

  failed(client: string | undefined, user: string | undefined): void {
    const now = this.now();
    for (const [key] of this.keys(client, user)) {
      let window = this.windows.get(key);
      if (!window || window.ends <= now) {
        this.windows.delete(key);
        if (this.windows.size >= CAPACITY) this.evict(now);
        window = { failures: 0, ends: now + this.limits.windowMs };
        this.windows.set(key, window);
      }
      window.failures += 1;
    }
  }

  /** A successful login clears the user's count (not the client's: one valid account must not reset it). */
  succeeded(user: string): void {
    this.windows.delete(userKey(user));
  }

  private keys(client: string | undefined, user: string | undefined): [string, number][] {
    const keys: [string, number][] = [];
    if (client !== undefined) keys.push([`client:${client}`, this.limits.perClient]);
    if (user !== undefined) keys.push([userKey(user), this.limits.perUser]);
    return keys;
  }

  private evict(now: number): void {
    for (const [key, window] of this.windows) {
      if (window.ends <= now) this.windows.delete(key);
    }
    while (this.windows.size >= CAPACITY) {
      const oldest = this.windows.keys().next();
      if (oldest.done) break;
      this.windows.delete(oldest.value);
    }
  }
}

/** User names as sent can be long: their windows are kept under a hash, so memory stays bounded. */
function userKey(user: string): string {
  return `user:${createHash('sha256').update(user).digest('base64url')}`;
}
