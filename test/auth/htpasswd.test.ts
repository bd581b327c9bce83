/** The htpasswd file (bcrypt only) and the parsing of basic credentials. */
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { basicCredentials } from '../../functions/auth/credentials.js';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PasswordFile, PasswordFileError, WatchedPasswordFile } from '../../functions/auth/htpasswd.js';
import { jsonLogger } from '../../functions/log.js';
import { RegistryError } from '../../functions/registry/errors.js';
import { basic, bcryptLine, HTPASSWD_B, WEAK_HTPASSWD } from './fixtures.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('PasswordFile', () => {
  it('accepts the password of a line written by htpasswd -B, and refuses any other', async () => {
    const file = new PasswordFile(`# users\n\n${HTPASSWD_B.line}\n`);
    expect(file.size).toBe(1);
    expect(file.has('alice')).toBe(true);
    expect(await file.verify('alice', HTPASSWD_B.password)).toBe(true);
    expect(await file.verify('alice', 'correct horse battery stapler')).toBe(false);
    expect(await file.verify('alice', '')).toBe(false);
    expect(await file.verify('Alice', HTPASSWD_B.password)).toBe(false);
  });

  it.each(['2a', '2b'] as const)('accepts $%s$ hashes made by bcryptjs', async (variant) => {
    const line = bcryptLine('bob', 'pässwörd: with colon', 4, variant);
    expect(line).toMatch(new RegExp(`^bob:\\$${variant}\\$04\\$`));
    const file = new PasswordFile(`${line}\r\n${bcryptLine('carol', 'x')}\r\n`);
    expect(file.size).toBe(2);
    expect(await file.verify('bob', 'pässwörd: with colon')).toBe(true);
    expect(await file.verify('bob', 'pässwörd')).toBe(false);
    expect(await file.verify('carol', 'x')).toBe(true);
  });

  it.each(WEAK_HTPASSWD)(
    'refuses a line from htpasswd $option ($kind), naming line and user but not the hash',
    ({ kind, hash }) => {
      const text = `${HTPASSWD_B.line}\n# a comment\nmallory:${hash}\n`;
      let error: unknown;
      try {
        new PasswordFile(text, '/etc/registry/htpasswd');
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(PasswordFileError);
      const message = (error as Error).message;
      expect(message).toBe(
        `/etc/registry/htpasswd line 3 (user "mallory"): ${kind} is refused; only bcrypt entries are ` +
          'accepted (create them with htpasswd -B)',
      );
      expect(message).not.toContain(hash);
    },
  );

  it('refuses a bcrypt hash with a cost bcrypt cannot compute, rather than fail at each login', () => {
    for (const cost of ['03', '32']) {
      const line = HTPASSWD_B.line.replace('$05$', `$${cost}$`);
      expect(() => new PasswordFile(`${line}\n`)).toThrow(
        new PasswordFileError(`htpasswd line 1 (user "alice"): bcrypt cost ${Number(cost)} is outside 4-31`),
      );
    }
  });

  it('refuses a user that appears twice, and a line that is not user:hash', () => {
    expect(() => new PasswordFile(`${HTPASSWD_B.line}\n${bcryptLine('alice', 'other')}`)).toThrow(
      'htpasswd line 2: user "alice" appears twice',
    );
    expect(() => new PasswordFile('just-a-name\n')).toThrow('htpasswd line 1: expected user:hash');
    expect(() => new PasswordFile(':$2y$05$abc\n')).toThrow('htpasswd line 1: expected user:hash');
  });

  it('refuses an unknown user, after a bcrypt comparison as costly as a real one', async () => {
    const file = new PasswordFile(HTPASSWD_B.line);
    const compare = vi.spyOn(bcrypt, 'compare');
    expect(await file.verify('nobody', HTPASSWD_B.password)).toBe(false);
    expect(compare).toHaveBeenCalledTimes(1);
    const compared = compare.mock.calls[0]?.[1];
    expect(typeof compared).toBe('string');
    // The decoy hash has the file's cost, so an unknown name takes as long as a wrong password.
    expect(bcrypt.getRounds(compared as string)).toBe(5);
    expect(file.has('nobody')).toBe(false);
    expect(file.fingerprint('nobody')).toBeUndefined();

    // With mixed costs, the one most users have.
    const mixed = new PasswordFile(
      [bcryptLine('a', 'x', 4), bcryptLine('b', 'x', 4), bcryptLine('c', 'x', 6)].join('\n'),
    );
    expect(await mixed.verify('nobody', 'x')).toBe(false);
    expect(bcrypt.getRounds(compare.mock.calls[1]?.[1] as string)).toBe(4);
  });

  it('remembers a verified password, and forgets nothing it should not', async () => {
    const file = new PasswordFile(bcryptLine('bob', 'right'));
    const compare = vi.spyOn(bcrypt, 'compare');
    expect(await file.verify('bob', 'right')).toBe(true);
    expect(await file.verify('bob', 'right')).toBe(true);
    expect(compare).toHaveBeenCalledTimes(1);
    // A wrong password is never remembered, and never turns into a right one.
    expect(await file.verify('bob', 'wrong')).toBe(false);
    expect(await file.verify('bob', 'wrong')).toBe(false);
    expect(compare).toHaveBeenCalledTimes(3);
  });

  it('fingerprints the current hash: the same for the same line, different after a password change', () => {
    const line = bcryptLine('bob', 'one');
    const fingerprint = new PasswordFile(line).fingerprint('bob');
    expect(fingerprint).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(new PasswordFile(line).fingerprint('bob')).toBe(fingerprint);
    expect(new PasswordFile(bcryptLine('bob', 'two')).fingerprint('bob')).not.toBe(fingerprint);
  });
});

describe('WatchedPasswordFile', () => {
  async function watched(text: string) {
    const dir = await mkdtemp(join(tmpdir(), 'htpasswd-'));
    const path = join(dir, 'htpasswd');
    await writeFile(path, text);
    const lines: string[] = [];
    const file = await WatchedPasswordFile.open(
      path,
      jsonLogger('info', {}, (line) => lines.push(line)),
      0,
    );
    /** Rewrites the file, with a later modification time than any write before. */
    const rewrite = async (next: string, seconds: number) => {
      await writeFile(path, next);
      const when = new Date(Date.now() + seconds * 1000);
      await utimes(path, when, when);
    };
    return { file, rewrite, lines, cleanUp: () => rm(dir, { recursive: true, force: true }) };
  }

  it('takes users added to the file without a restart, and drops removed ones', async () => {
    const { file, rewrite, lines, cleanUp } = await watched(bcryptLine('alice', 'a'));
    try {
      expect(await (await file.current()).verify('bob', 'b')).toBe(false);
      await rewrite(`${bcryptLine('alice', 'a')}\n${bcryptLine('bob', 'b')}\n`, 10);
      expect(await (await file.current()).verify('bob', 'b')).toBe(true);
      await rewrite(bcryptLine('bob', 'b'), 20);
      expect(await (await file.current()).verify('alice', 'a')).toBe(false);
      expect(lines.filter((line) => line.includes('htpasswd file read again'))).toHaveLength(2);
    } finally {
      await cleanUp();
    }
  });

  it('keeps the users it has when the changed file does not parse, and says so', async () => {
    const { file, rewrite, lines, cleanUp } = await watched(bcryptLine('alice', 'a'));
    try {
      await rewrite('alice:$apr1$weak$hash\n', 10);
      expect(await (await file.current()).verify('alice', 'a')).toBe(true);
      const warning = lines.find((line) => line.includes('not read again'));
      expect(warning).toContain('MD5 (htpasswd -m) is refused');
      expect(warning).not.toContain('$apr1$weak$hash');
    } finally {
      await cleanUp();
    }
  });
});

describe('basicCredentials', () => {
  const challenge = { 'WWW-Authenticate': 'Basic realm="r"' };

  it('decodes user and password, the password keeping its colons', () => {
    expect(basicCredentials(basic('bob', 'a:b:c'), challenge)).toEqual({ user: 'bob', password: 'a:b:c' });
    expect(basicCredentials(basic('bob', ''), challenge)).toEqual({ user: 'bob', password: '' });
    expect(basicCredentials(`basic  ${Buffer.from('u:p').toString('base64')}`, challenge)).toEqual({
      user: 'u',
      password: 'p',
    });
  });

  it('answers undefined for no header or another scheme', () => {
    expect(basicCredentials(null, challenge)).toBeUndefined();
    expect(basicCredentials('Bearer abc.def.ghi', challenge)).toBeUndefined();
  });

  it.each([
    ['Basic', 'no credentials'],
    ['Basic !!!not-base64', 'not base64'],
    [`Basic ${Buffer.from('no-colon').toString('base64')}`, 'no colon'],
    [`Basic ${Buffer.from(':password').toString('base64')}`, 'an empty user'],
  ])('refuses %j (%s) with a 401 carrying the challenge and not the header', (header) => {
    let error: unknown;
    try {
      basicCredentials(header, challenge);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(RegistryError);
    expect((error as RegistryError).status).toBe(401);
    expect((error as RegistryError).code).toBe('UNAUTHORIZED');
    expect((error as RegistryError).headers).toEqual(challenge);
    expect((error as RegistryError).message).toBe('malformed basic credentials');
  });
});
