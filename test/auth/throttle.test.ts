/** Failed-login throttling, on an injected clock; and Logins, which puts it in front of the password file. */
import { describe, expect, it } from 'vitest';
import { Logins } from '../../functions/auth/credentials.js';
import { PasswordFile } from '../../functions/auth/htpasswd.js';
import { LoginThrottle } from '../../functions/auth/throttle.js';
import { RegistryError } from '../../functions/registry/errors.js';
import { bcryptLine } from './fixtures.js';

/** A clock the test moves by hand. */
function clock(start = 1_700_000_000_000) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const LIMITS = { perUser: 3, perClient: 5, windowMs: 60_000 };

/** A distinct wrong guess each time. */
let guesses = 0;
const guess = () => `guess-${++guesses}`;

describe('LoginThrottle', () => {
  it('counts a wrong guess once however often it is retried, as ctr retries one password', () => {
    const time = clock();
    const throttle = new LoginThrottle(LIMITS, time.now);
    for (let i = 0; i < 10; i++) throttle.failed('10.0.0.1', 'bob', 'same-guess');
    expect(throttle.retryAfter('10.0.0.1', 'bob')).toBe(0);
    throttle.failed('10.0.0.1', 'bob', guess());
    throttle.failed('10.0.0.1', 'bob', guess());
    expect(throttle.retryAfter('10.0.0.1', 'bob')).toBe(60);
  });

  it('lets a user fail up to the limit, then asks to wait until the window ends', () => {
    const time = clock();
    const throttle = new LoginThrottle(LIMITS, time.now);
    for (let i = 0; i < 3; i++) {
      expect(throttle.retryAfter('10.0.0.1', 'bob')).toBe(0);
      throttle.failed('10.0.0.1', 'bob', guess());
      time.advance(10_000);
    }
    // The window began with the first failure, 30 s ago.
    expect(throttle.retryAfter('10.0.0.1', 'bob')).toBe(30);
    expect(throttle.retryAfter('10.0.0.2', 'bob')).toBe(30);
    time.advance(29_500);
    expect(throttle.retryAfter('10.0.0.1', 'bob')).toBe(1);
    time.advance(500);
    expect(throttle.retryAfter('10.0.0.1', 'bob')).toBe(0);
  });

  it('counts afresh once a window has ended', () => {
    const time = clock();
    const throttle = new LoginThrottle(LIMITS, time.now);
    throttle.failed('c', 'bob', guess());
    throttle.failed('c', 'bob', guess());
    time.advance(60_000);
    throttle.failed('c', 'bob', guess());
    throttle.failed('c', 'bob', guess());
    expect(throttle.retryAfter('c', 'bob')).toBe(0);
    throttle.failed('c', 'bob', guess());
    expect(throttle.retryAfter('c', 'bob')).toBe(60);
  });

  it('throttles a client address that fails for many users, and only that address', () => {
    const time = clock();
    const throttle = new LoginThrottle(LIMITS, time.now);
    for (const user of ['a', 'b', 'c', 'd', 'e']) throttle.failed('10.0.0.1', user, guess());
    expect(throttle.retryAfter('10.0.0.1', 'fresh-user')).toBe(60);
    expect(throttle.retryAfter('10.0.0.2', 'fresh-user')).toBe(0);
    expect(throttle.retryAfter('10.0.0.2', 'a')).toBe(0);
  });

  it('clears the user count on success, but not the client count', () => {
    const time = clock();
    const throttle = new LoginThrottle(LIMITS, time.now);
    throttle.failed('10.0.0.1', 'bob', guess());
    throttle.failed('10.0.0.1', 'bob', guess());
    throttle.succeeded('bob');
    throttle.failed('10.0.0.1', 'bob', guess());
    throttle.failed('10.0.0.1', 'bob', guess());
    expect(throttle.retryAfter('10.0.0.9', 'bob')).toBe(0);
    // Four failures from the address so far: one more from anyone reaches its limit of five.
    throttle.failed('10.0.0.1', 'alice', guess());
    expect(throttle.retryAfter('10.0.0.1', 'carol')).toBe(60);
    throttle.succeeded('alice');
    expect(throttle.retryAfter('10.0.0.1', 'carol')).toBe(60);
  });

  it('counts by user alone when the client address is unknown', () => {
    const throttle = new LoginThrottle(LIMITS, clock().now);
    for (let i = 0; i < 3; i++) throttle.failed(undefined, 'bob', guess());
    expect(throttle.retryAfter(undefined, 'bob')).toBe(60);
    expect(throttle.retryAfter(undefined, 'alice')).toBe(0);
    expect(throttle.retryAfter(undefined, undefined)).toBe(0);
  });

  it('forgets the oldest windows first when it holds too many', () => {
    const time = clock();
    const throttle = new LoginThrottle({ perUser: 1, perClient: 1000, windowMs: 60_000 }, time.now);
    throttle.failed(undefined, 'victim', guess());
    throttle.failed(undefined, 'second', guess());
    expect(throttle.retryAfter(undefined, 'victim')).toBe(60);
    // The capacity is 10,000 windows: these fill it, and the next one pushes out the oldest.
    for (let i = 0; i < 9_998; i++) throttle.failed(undefined, `user-${i}`, guess());
    expect(throttle.retryAfter(undefined, 'victim')).toBe(60);
    throttle.failed(undefined, 'one-more', guess());
    expect(throttle.retryAfter(undefined, 'victim')).toBe(0);
    expect(throttle.retryAfter(undefined, 'second')).toBe(60);
    expect(throttle.retryAfter(undefined, 'one-more')).toBe(60);
  });

  it('makes room by dropping ended windows, keeping the live ones', () => {
    const time = clock();
    const throttle = new LoginThrottle({ perUser: 1, perClient: 1000, windowMs: 60_000 }, time.now);
    for (let i = 0; i < 9_999; i++) throttle.failed(undefined, `old-${i}`, guess());
    time.advance(60_000);
    throttle.failed(undefined, 'live', guess());
    throttle.failed(undefined, 'newer', guess());
    expect(throttle.retryAfter(undefined, 'live')).toBe(60);
    expect(throttle.retryAfter(undefined, 'newer')).toBe(60);
  });
});

describe('Logins', () => {
  it('refuses even the right password with 429 and Retry-After while throttled, without checking it', async () => {
    const time = clock();
    const logins = new Logins(
      new PasswordFile(bcryptLine('bob', 'right')),
      new LoginThrottle(LIMITS, time.now),
    );
    for (let i = 0; i < 3; i++)
      expect(await logins.check({ user: 'bob', password: `wrong-${i}` }, 'c')).toBe(false);
    const refused = await logins.check({ user: 'bob', password: 'right' }, 'c').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RegistryError);
    expect((refused as RegistryError).status).toBe(429);
    expect((refused as RegistryError).code).toBe('TOOMANYREQUESTS');
    expect((refused as RegistryError).headers).toEqual({ 'Retry-After': '60' });
    expect((refused as RegistryError).message).toBe('too many failed logins; try again in 60 s');
    time.advance(60_000);
    expect(await logins.check({ user: 'bob', password: 'right' }, 'c')).toBe(true);
  });

  it('counts one wrong password retried as one guess', async () => {
    const logins = new Logins(new PasswordFile(bcryptLine('bob', 'right')), new LoginThrottle(LIMITS));
    for (let i = 0; i < 10; i++)
      expect(await logins.check({ user: 'bob', password: 'typo' }, 'c')).toBe(false);
    expect(await logins.check({ user: 'bob', password: 'right' }, 'c')).toBe(true);
  });

  it('counts an unknown user like a wrong password', async () => {
    const logins = new Logins(new PasswordFile(bcryptLine('bob', 'right')), new LoginThrottle(LIMITS));
    for (let i = 0; i < 3; i++)
      expect(await logins.check({ user: 'ghost', password: `x-${i}` }, 'c')).toBe(false);
    await expect(logins.check({ user: 'ghost', password: 'x' }, 'c')).rejects.toThrow(
      'too many failed logins',
    );
    expect(await logins.check({ user: 'bob', password: 'right' }, 'c')).toBe(true);
  });
});
