import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import bcrypt from 'bcryptjs';
import type { Logger } from '../log.js';

/** An htpasswd file that is not usable: the message names the line, never a hash. */
export class PasswordFileError extends Error {
  override readonly name = 'PasswordFileError';
}

const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

/** Hash kinds htpasswd can write that this registry refuses, by their prefix. */
const WEAK: [RegExp, string][] = [
  [/^\$apr1\$/, 'MD5 (htpasswd -m)'],
  [/^\{SHA\}/, 'SHA-1 (htpasswd -s)'],
  [/^\$[156]\$/, 'crypt(3) MD5/SHA (htpasswd -2/-5)'],
  [/^[./A-Za-z0-9]{13}$/, 'DES crypt (htpasswd -d)'],
];

/** How long a verified user:password pair is remembered, so a client's every request does not cost a bcrypt. */
const VERIFIED_TTL_MS = 60_000;
const VERIFIED_CAPACITY = 1024;

/** Where Logins finds the users: a PasswordFile itself, or one that follows a file as it changes. */
export interface PasswordSource {
  current(): Promise<PasswordFile>;
}

/**
 * Users and bcrypt password hashes, as `htpasswd -B` writes them (`name:$2y$...`). Other hash kinds
 * are refused when the file is read, so a user is never left with a weak hash that seems to work.
 */
export class PasswordFile implements PasswordSource {
  private readonly hashes = new Map<string, string>();
  /** HMACs (under a key of this process) of recently verified user:password pairs, with their expiry. */
  private readonly verified = new Map<string, number>();
  private readonly cacheKey = randomBytes(32);
  /**
   * Compared against when the user is unknown, so that an unknown name takes as long as a wrong
   * password: it has the cost of the file's hashes (htpasswd -B writes cost 5 unless told -C).
   */
  private readonly decoy: string;

  constructor(text: string, source = 'htpasswd') {
    const lines = text.split(/\r?\n/);
    lines.forEach((raw, index) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const where = `${source} line ${index + 1}`;
      const colon = line.indexOf(':');
      if (colon <= 0) throw new PasswordFileError(`${where}: expected user:hash`);
      const user = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      if (!BCRYPT.test(hash)) {
        const kind = WEAK.find(([pattern]) => pattern.test(hash))?.[1] ?? 'an unrecognised hash';
        throw new PasswordFileError(
          `${where} (user ${JSON.stringify(user)}): ${kind} is refused; only bcrypt entries are accepted ` +
            `(create them with htpasswd -B)`,
        );
      }
      const cost = bcrypt.getRounds(hash);
      if (cost < 4 || cost > 31) {
        // bcrypt cannot compute it: every login of this user would fail with an error, not a refusal.
        throw new PasswordFileError(
          `${where} (user ${JSON.stringify(user)}): bcrypt cost ${cost} is outside 4-31`,
        );
      }
      if (this.hashes.has(user))
        throw new PasswordFileError(`${where}: user ${JSON.stringify(user)} appears twice`);
      this.hashes.set(user, hash);
    });
    this.decoy = bcrypt.hashSync(randomBytes(16).toString('hex'), typicalCost([...this.hashes.values()]));
  }

  current(): Promise<PasswordFile> {
    return Promise.resolve(this);
  }

  get size(): number {
    return this.hashes.size;
  }

  has(user: string): boolean {
    return this.hashes.has(user);
  }

  /**
   * A short fingerprint of the user's current hash: tokens carry it, so changing a password (or
   * removing the user) revokes the refresh tokens issued before.
   */
  fingerprint(user: string): string | undefined {
    const hash = this.hashes.get(user);
    return hash === undefined
      ? undefined
      : createHash('sha256').update(hash).digest('base64url').slice(0, 16);
  }

  /** Whether password is user's. Takes a bcrypt comparison's time whether or not the user exists. */
  async verify(user: string, password: string): Promise<boolean> {
    const pair = createHmac('sha256', this.cacheKey)
      .update(user)
      .update('\0')
      .update(password)
      .digest('base64');
    const now = Date.now();
    const expires = this.verified.get(pair);
    if (expires !== undefined && expires > now && this.hashes.has(user)) return true;
    const hash = this.hashes.get(user);
    // bcrypt's own rules, as htpasswd -B hashed: a password is read up to its 72nd byte.
    const ok = (await bcrypt.compare(password, hash ?? this.decoy)) && hash !== undefined;
    if (ok) this.remember(pair, now + VERIFIED_TTL_MS);
    return ok;
  }

  private remember(pair: string, expires: number): void {
    if (this.verified.size >= VERIFIED_CAPACITY) {
      const oldest = this.verified.keys().next();
      if (!oldest.done) this.verified.delete(oldest.value);
    }
    this.verified.set(pair, expires);
  }
}

/**
 * An htpasswd file on disk, read again when it changes (looked at no more than once per checkMs), so
 * users are added, removed or given new passwords without a restart. A change that does not parse is
 * reported and the users read before are kept, so a half-edited file never locks everyone out.
 */
export class WatchedPasswordFile implements PasswordSource {
  private nextCheck: number;

  private constructor(
    private readonly path: string,
    private file: PasswordFile,
    private version: string,
    private readonly checkMs: number,
    private readonly log: Logger,
  ) {
    this.nextCheck = Date.now() + checkMs;
  }

  /** Reads path now: a missing or malformed file is an error here, at start. */
  static async open(path: string, log: Logger, checkMs = 5000): Promise<WatchedPasswordFile> {
    const version = await versionOf(path);
    const file = new PasswordFile(await readFile(path, 'utf8'), path);
    return new WatchedPasswordFile(path, file, version, checkMs, log);
  }

  async current(): Promise<PasswordFile> {
    const now = Date.now();
    if (now < this.nextCheck) return this.file;
    // Set first: requests arriving while the file is read keep using the users they have.
    this.nextCheck = now + this.checkMs;
    try {
      const version = await versionOf(this.path);
      if (version !== this.version) {
        this.version = version;
        this.file = new PasswordFile(await readFile(this.path, 'utf8'), this.path);
        this.log.info('htpasswd file read again', { path: this.path, users: this.file.size });
      }
    } catch (error) {
      this.log.warn('htpasswd file changed but not read again: the users read before still apply', {
        path: this.path,
        error: (error as Error).message,
      });
    }
    return this.file;
  }
}

async function versionOf(path: string): Promise<string> {
  const stats = await stat(path);
  return `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
}

/** The cost most hashes have (the higher on a tie); 10 for no hash. */
function typicalCost(hashes: string[]): number {
  const counts = new Map<number, number>();
  for (const hash of hashes) {
    const cost = bcrypt.getRounds(hash);
    counts.set(cost, (counts.get(cost) ?? 0) + 1);
  }
  let typical = 10;
  let most = 0;
  for (const [cost, count] of counts) {
    if (count > most || (count === most && cost > typical)) [typical, most] = [cost, count];
  }
  return typical;
}
