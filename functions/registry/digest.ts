import { createHash, type Hash } from 'node:crypto';
import { RegistryError } from './errors.js';

/** The digest algorithms this registry accepts, with the length of their hex encoding. */
const ALGORITHMS = { sha256: 64, sha512: 128 } as const;
export type Algorithm = keyof typeof ALGORITHMS;

export interface Digest {
  algorithm: Algorithm;
  hex: string;
  /** "algorithm:hex", the canonical form. */
  value: string;
}

const DIGEST = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/** Parses a digest, or throws DIGEST_INVALID (400) naming what is wrong. */
export function parseDigest(value: string): Digest {
  const match = DIGEST.exec(value);
  if (!match) {
    throw new RegistryError(
      'DIGEST_INVALID',
      `invalid digest ${JSON.stringify(value)}: expected algorithm:hex`,
    );
  }
  const [, algorithm = '', hex = ''] = match;
  if (!(algorithm in ALGORITHMS)) {
    throw new RegistryError('DIGEST_INVALID', `unsupported digest algorithm ${JSON.stringify(algorithm)}`, {
      detail: { supported: Object.keys(ALGORITHMS) },
    });
  }
  const length = ALGORITHMS[algorithm as Algorithm];
  if (hex.length !== length || !/^[a-f0-9]+$/.test(hex)) {
    throw new RegistryError(
      'DIGEST_INVALID',
      `invalid ${algorithm} digest: expected ${length} lowercase hex digits`,
    );
  }
  return { algorithm: algorithm as Algorithm, hex, value };
}

export function isDigest(reference: string): boolean {
  return reference.includes(':');
}

export function digestOf(content: Uint8Array, algorithm: Algorithm = 'sha256'): Digest {
  const hex = createHash(algorithm).update(content).digest('hex');
  return { algorithm, hex, value: `${algorithm}:${hex}` };
}

/** A running SHA-256 that can report the digest so far without ending. */
export class RunningHash {
  private constructor(
    private readonly hash: Hash,
    private bytes: number,
  ) {}

  static start(): RunningHash {
    return new RunningHash(createHash('sha256'), 0);
  }

  get size(): number {
    return this.bytes;
  }

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.bytes += chunk.byteLength;
  }

  /** Hex digest of everything so far; the hash goes on. */
  hexSoFar(): string {
    return this.hash.copy().digest('hex');
  }

  copy(): RunningHash {
    return new RunningHash(this.hash.copy(), this.bytes);
  }
}
