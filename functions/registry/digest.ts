import { createHash } from 'node:crypto';
import { createSHA256, type IHasher } from 'hash-wasm';
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

/** A running SHA-256 of an upload that can report the digest so far without ending. */
export interface RunningHash {
  /** Bytes hashed so far. */
  readonly size: number;
  update(chunk: Uint8Array): void;
  /** Hex digest of everything so far; the hash goes on. */
  hexSoFar(): string;
  /** The hash state, serialized for another process to resume, when this kind of hash can give it. */
  state(): string | undefined;
}

/** Node's native SHA-256: fastest, but its state cannot leave the process. */
export class NativeHash implements RunningHash {
  private readonly hash = createHash('sha256');
  size = 0;

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.byteLength;
  }

  hexSoFar(): string {
    return this.hash.copy().digest('hex');
  }

  state(): undefined {
    return undefined;
  }
}

/**
 * A SHA-256 whose state serializes (hash-wasm's save/load), for runtimes where the next chunk of an
 * upload usually lands on another process (Lambda). About a tenth of native speed, which is plenty
 * for the chunks one request can carry there.
 */
export class PortableHash implements RunningHash {
  private constructor(
    private readonly hash: IHasher,
    public size: number,
  ) {}

  static async start(): Promise<PortableHash> {
    const hash = await createSHA256();
    hash.init();
    return new PortableHash(hash, 0);
  }

  static async resume(state: string, size: number): Promise<PortableHash> {
    const hash = await createSHA256();
    hash.load(Buffer.from(state, 'base64'));
    return new PortableHash(hash, size);
  }

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.byteLength;
  }

  hexSoFar(): string {
    const saved = this.hash.save();
    const hex = this.hash.digest('hex');
    this.hash.load(saved);
    return hex;
  }

  state(): string {
    return Buffer.from(this.hash.save()).toString('base64');
  }
}
