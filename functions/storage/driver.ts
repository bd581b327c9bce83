/**
 * The StorageDriver: a small file-system-like interface over a flat key space, modelled on
 * distribution's storagedriver. Every driver passes the one conformance suite in
 * test/storage/driver-suite.ts; the registry reaches storage only through this interface.
 *
 * Paths are absolute, slash-separated, and made of the characters [A-Za-z0-9._-] between single
 * slashes ("/blobs/sha256/ab/abcd/data"). A path that is not of that form is refused with
 * InvalidPathError before any driver code runs (see checkPath), so no key can escape a driver's root.
 */
export interface StorageDriver {
  /** A short name for logs and errors ("filesystem", "inmemory", "s3", ...). */
  readonly name: string;

  /**
   * How precise the times stat gives are, in ms: 1000 for stores that answer in whole seconds (S3's and
   * Azure's HEAD). Garbage collection reads a time as the latest it may stand for. Default 1.
   */
  readonly timeResolutionMs?: number;

  /** The whole content at path. Throws PathNotFoundError if nothing is stored there. Meant for small objects. */
  getContent(path: string): Promise<Uint8Array>;

  /** Stores content at path, replacing what was there. Atomic: readers see the old or the new content, never a part. */
  putContent(path: string, content: Uint8Array): Promise<void>;

  /**
   * A stream of the content at path from offset, of at most length bytes (to the end when length
   * is undefined). Throws PathNotFoundError if nothing is stored there and InvalidOffsetError if
   * offset is negative or past the end. An offset equal to the size gives an empty stream.
   */
  reader(path: string, offset?: number, length?: number): Promise<ReadableStream<Uint8Array>>;

  /**
   * A writer for path. With append false, any earlier content is discarded; with append true, writing
   * resumes after the content written (and closed) by an earlier writer, possibly in another process,
   * and its size counts that content. Content written through a writer is readable at path once the
   * writer is committed; after close() a driver may keep it unreadable until a later commit (S3 holds
   * it in an incomplete multipart upload), so callers must not read a file between close and commit.
   */
  writer(path: string, append: boolean): Promise<FileWriter>;

  /** Size and modification time of the file at path, or that path is a directory. Throws PathNotFoundError. */
  stat(path: string): Promise<FileInfo>;

  /**
   * The full paths of the direct children of the directory at path, sorted. The root "/" lists the
   * top level. Throws PathNotFoundError if no file lies below path.
   */
  list(path: string): Promise<string[]>;

  /**
   * Every file below the directory at path, recursively, in lexical (code point) order of the full path:
   * files only (isDir false), each with its size and modTime (metadata is not filled in). With startAfter
   * (a full path; it need not exist), only the files whose paths are greater than it, to resume an
   * interrupted walk. Nothing below path (a missing path, or a file) yields nothing, without an error. The
   * root "/" walks everything. What list hides, walk hides too: files a writer closed but did not commit,
   * on drivers that keep those unreadable, and the drivers' own hidden objects. Files are fetched as the
   * iteration proceeds (a page of a listing, or a directory, at a time), never collected first.
   */
  walk(path: string, options?: WalkOptions): AsyncIterable<FileInfo>;

  /** Moves the file at source to dest, replacing dest. Throws PathNotFoundError if source does not exist. */
  move(source: string, dest: string): Promise<void>;

  /** Deletes the file at path, or everything below the directory at path. Throws PathNotFoundError. */
  delete(path: string): Promise<void>;

  /**
   * A URL from which a client can GET the content at path directly (a presigned or signed URL), or
   * undefined when the driver does not redirect and the registry should stream the content itself.
   */
  redirectURL(
    path: string,
    options: { method: 'GET' | 'HEAD'; expiresInSeconds?: number },
  ): Promise<string | undefined>;
}

export interface WalkOptions {
  /** Only files whose full paths are greater than this full path (code point order). */
  startAfter?: string;
}

export interface FileWriter {
  /** Bytes stored at the path so far: earlier appends plus everything written through this writer. */
  readonly size: number;
  /** Appends a chunk. Resolves once the driver has taken it, which gives the caller backpressure. */
  write(chunk: Uint8Array): Promise<void>;
  /** Keeps what was written so that a later writer(path, true) can resume. The writer is unusable afterwards. */
  close(): Promise<void>;
  /** Discards everything at the path, earlier appends included. */
  cancel(): Promise<void>;
  /** Finishes the file: no later append is possible, and the content is durable at the path. */
  commit(): Promise<void>;
}

export interface FileInfo {
  path: string;
  size: number;
  modTime: Date;
  isDir: boolean;
  /**
   * The object's user metadata, for drivers whose objects carry it (S3's x-amz-meta-*, keys without
   * the prefix). The registry writes none itself; the upload edge records who uploaded a blob there.
   */
  metadata?: Readonly<Record<string, string>>;
}

/** Base of the typed errors every driver throws; the registry maps these, never leaking them as 500s. */
export class StorageError extends Error {
  constructor(
    readonly driver: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`${driver}: ${message}`, options);
    this.name = new.target.name;
  }
}

export class PathNotFoundError extends StorageError {
  constructor(
    driver: string,
    readonly path: string,
  ) {
    super(driver, `path not found: ${path}`);
  }
}

export class InvalidPathError extends StorageError {
  constructor(
    driver: string,
    readonly path: string,
  ) {
    super(driver, `invalid path: ${JSON.stringify(path)}`);
  }
}

export class InvalidOffsetError extends StorageError {
  constructor(
    driver: string,
    readonly path: string,
    readonly offset: number,
  ) {
    super(driver, `invalid offset ${offset} for ${path}`);
  }
}

const PATH = /^(\/[A-Za-z0-9._-]+)+$/;

/** Refuses any path that is not absolute, has empty, "." or ".." segments, or characters outside [A-Za-z0-9._-]. */
export function checkPath(driver: string, path: string, { allowRoot = false } = {}): void {
  if (allowRoot && path === '/') return;
  if (!isValidPath(path)) throw new InvalidPathError(driver, path);
}

/**
 * Whether checkPath accepts path (the root aside). Listings use it to leave out what no path can name: the
 * drivers' own objects ("~appends/…", "~tmp-…") and foreign keys (empty segments, other characters).
 */
export function isValidPath(path: string): boolean {
  return PATH.test(path) && !path.split('/').some((segment) => segment === '.' || segment === '..');
}
