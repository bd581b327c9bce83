import { createHash } from 'node:crypto';

/**
 * Failed-login throttling: after too many wrong guesses in a window, from one client address or for
 * one user name, further attempts are refused (429 with Retry-After) until the window ends, without
 * spending a password check on them. A guess is counted once however often it is retried (ctr sends
 * one wrong password five times per pull), so retries do not lock out a user, only new guesses do.
 * Counts live in this process: on Lambda each container counts its own, which still bounds an
 * attacker's rate per container.
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
  /** The distinct wrong guesses seen (opaque ids), up to the limit. */
  guesses: Set<string>;
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
      return window && window.ends > now && window.guesses.size >= limit ? window.ends - now : 0;
    });
    return Math.ceil(Math.max(0, ...waits) / 1000);
  }

  /** Records a wrong guess (an opaque id of the user and password tried, e.g. a keyed hash). */
  failed(client: string | undefined, user: string | undefined, guess: string): void {
    const now = this.now();
    for (const [key, limit] of this.keys(client, user)) {
      let window = this.windows.get(key);
      if (!window || window.ends <= now) {
        this.windows.delete(key);
        if (this.windows.size >= CAPACITY) this.evict(now);
        window = { guesses: new Set(), ends: now + this.limits.windowMs };
        this.windows.set(key, window);
      }
      if (window.guesses.size < limit) window.guesses.add(guess);
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
