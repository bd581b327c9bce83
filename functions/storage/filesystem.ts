/**
 * FilesystemDriver: a StorageDriver over a directory of a local file system. The path "/a/b" is the
 * file <root>/a/b.
 *
 * - putContent writes a temporary file in the target's directory, syncs it and renames it over the
 *   target, so readers see the old or the new content, never a part.
 * - A writer streams into the file itself through a FileHandle opened with O_APPEND (append) or
 *   O_TRUNC; a later writer(path, true), in this process or another, continues after the bytes on disk.
 *   commit() fsyncs; cancel() removes the file.
 * - Temporary files are named "~tmp-<uuid>": "~" is outside the path alphabet, so no registry path
 *   can name them, and list and walk hide every directory entry that is not a valid path segment.
 * - walk reads one directory at a time, sorted so that the order is that of the full paths (a directory
 *   "a" sorts as "a/", after "a-b" and "a.b" and before "a0"), and stats each file as it is reached.
 * - delete and move prune the directories they leave empty, up to (not including) the root, so that
 *   a directory exists only while a file lies below it, as in an object store.
 *
 * Containment: checkPath already keeps paths from naming anything outside the root by themselves.
 * Beyond that, symlinks found inside the root are resolved (realpath) before every operation and the
 * operation is refused (PathNotFoundError for reads; StorageError for writes) if the resolved location
 * is outside the root; directories are created one level at a time below an already-checked
 * directory, files a writer opens are opened with O_NOFOLLOW, and delete and move act on a symlink
 * itself (in a checked directory), never on what it points to, so nothing is created, read or
 * written outside the root through a symlink that exists when the operation starts. Symlinks that
 * stay inside the root are followed. What is not guaranteed: a process that can write inside the
 * root and swaps a directory for a symlink while an operation is under way (Node has no openat or
 * RESOLVE_BENEATH to close that window).
 */
import { randomUUID } from 'node:crypto';
import { constants, type Dirent, type Stats } from 'node:fs';
import {
  lstat,
  mkdir,
  open,
  readdir,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  type FileHandle,
} from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';

import { CheckedDriver } from './checked.js';
import { InvalidOffsetError, PathNotFoundError, StorageError } from './driver.js';
import type { FileInfo, FileWriter, StorageDriver, WalkOptions } from './driver.js';

const NAME = 'filesystem';
const CHUNK = 256 * 1024;
const TEMP_PREFIX = '~tmp-';
const SEGMENT = /^[A-Za-z0-9._-]+$/;
// O_NOFOLLOW is missing on Windows.
const NOFOLLOW = (constants as { O_NOFOLLOW?: number }).O_NOFOLLOW ?? 0;

class FilesystemBackend implements StorageDriver {
  readonly name = NAME;
  readonly #root: string;
  #realRoot: string | undefined;

  constructor(root: string) {
    this.#root = resolve(root);
  }

  async getContent(path: string): Promise<Uint8Array> {
    const file = await this.#existing(path);
    try {
      const buffer = await readWhole(file);
      return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    } catch (error) {
      throw notFound(error, path, ['ENOENT', 'ENOTDIR', 'EISDIR']);
    }
  }

  async putContent(path: string, content: Uint8Array): Promise<void> {
    await this.#inDirectory(path, async (directory) => {
      const temp = join(directory, `${TEMP_PREFIX}${randomUUID()}`);
      try {
        const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW);
        try {
          await handle.writeFile(content);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temp, join(directory, basename(path)));
      } catch (error) {
        await rm(temp, { force: true });
        throw error;
      }
    });
  }

  async reader(path: string, offset = 0, length?: number): Promise<ReadableStream<Uint8Array>> {
    const file = await this.#existing(path);
    let handle: FileHandle;
    let info: Stats;
    try {
      handle = await open(file, constants.O_RDONLY);
      info = await handle.stat().catch(async (error: unknown) => {
        await handle.close();
        throw error;
      });
    } catch (error) {
      throw notFound(error, path, ['ENOENT', 'ENOTDIR']);
    }
    if (!info.isFile()) {
      await handle.close();
      throw new PathNotFoundError(NAME, path);
    }
    if (offset > info.size) {
      await handle.close();
      throw new InvalidOffsetError(NAME, path, offset);
    }
    return fileStream(handle, offset, length === undefined ? Infinity : offset + length);
  }

  async writer(path: string, append: boolean): Promise<FileWriter> {
    const flags =
      constants.O_WRONLY | constants.O_CREAT | NOFOLLOW | (append ? constants.O_APPEND : constants.O_TRUNC);
    const { directory, file, handle } = await this.#inDirectory(path, async (directory) => {
      const file = join(directory, basename(path));
      return { directory, file, handle: await open(file, flags) };
    });
    let size: number;
    try {
      size = append ? (await handle.stat()).size : 0;
    } catch (error) {
      await handle.close();
      throw error;
    }
    const prune = (): Promise<void> => this.#prune(directory);
    return {
      get size() {
        return size;
      },
      async write(chunk: Uint8Array) {
        for (let done = 0; done < chunk.length;) {
          const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, null);
          done += bytesWritten;
          size += bytesWritten;
        }
      },
      async close() {
        await handle.close();
      },
      async commit() {
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
      },
      async cancel() {
        await handle.close();
        await rm(file, { force: true });
        await prune();
      },
    };
  }

  async stat(path: string): Promise<FileInfo> {
    const file = await this.#existing(path);
    let info: Stats;
    try {
      info = await stat(file);
    } catch (error) {
      throw notFound(error, path, ['ENOENT', 'ENOTDIR']);
    }
    const isDir = info.isDirectory();
    return { path, size: isDir ? 0 : info.size, modTime: info.mtime, isDir };
  }

  async list(path: string): Promise<string[]> {
    const directory = await this.#existing(path);
    let names: string[];
    try {
      names = await readdir(directory);
    } catch (error) {
      throw notFound(error, path, ['ENOENT', 'ENOTDIR']);
    }
    const base = path === '/' ? '' : path;
    const children = names
      .filter((name) => SEGMENT.test(name) && name !== '.' && name !== '..')
      .map((name) => `${base}/${name}`)
      .sort();
    if (children.length === 0) throw new PathNotFoundError(NAME, path);
    return children;
  }

  async *walk(path: string, { startAfter }: WalkOptions = {}): AsyncIterable<FileInfo> {
    let directory: string;
    try {
      directory = await this.#existing(path);
    } catch (error) {
      if (error instanceof PathNotFoundError) return;
      throw error;
    }
    yield* this.#walkDirectory(directory, path === '/' ? '' : path, startAfter, new Set([directory]));
  }

  /**
   * The files below directory (resolved, inside the root), whose path is base, in code point order of their
   * paths: the entries are sorted with "/" after each directory's name, as it is in the paths below it
   * ("a-b" < "a.b" < "a/…" < "a0"), and each directory is walked when its turn comes. Symlinks inside the
   * root are followed, except to a directory being walked (a cycle); those leading out are left out.
   */
  async *#walkDirectory(
    directory: string,
    base: string,
    startAfter: string | undefined,
    ancestors: ReadonlySet<string>,
  ): AsyncGenerator<FileInfo> {
    let dirents: Dirent[];
    try {
      dirents = await readdir(directory, { withFileTypes: true });
    } catch (error) {
      if (hasCode(error, ['ENOENT', 'ENOTDIR'])) return; // Deleted meanwhile, or a file.
      throw error;
    }
    const entries: { name: string; key: string; location: string; isDir: boolean }[] = [];
    for (const dirent of dirents) {
      const name = dirent.name;
      if (!SEGMENT.test(name) || name === '.' || name === '..') continue; // Temporary files, foreign names.
      let location = join(directory, name);
      let isDir = dirent.isDirectory();
      if (dirent.isSymbolicLink()) {
        const target = await this.#symlinkTarget(location);
        if (target === undefined) continue;
        location = target.location;
        isDir = target.isDir;
      } else if (!isDir && !dirent.isFile()) {
        continue; // A socket, a FIFO, a device.
      }
      if (isDir && ancestors.has(location)) continue;
      entries.push({ name, key: isDir ? `${name}/` : name, location, isDir });
    }
    entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const { name, location, isDir } of entries) {
      const path = `${base}/${name}`;
      if (isDir) {
        // Every path below lies between path + "/" and path + "0" ("0" follows "/"): skip what is all behind.
        if (startAfter !== undefined && startAfter >= `${path}0`) continue;
        yield* this.#walkDirectory(location, path, startAfter, new Set([...ancestors, location]));
        continue;
      }
      if (startAfter !== undefined && path <= startAfter) continue;
      let info: Stats;
      try {
        info = await stat(location);
      } catch (error) {
        if (hasCode(error, ['ENOENT', 'ENOTDIR'])) continue; // Deleted meanwhile.
        throw error;
      }
      if (info.isFile()) yield { path, size: info.size, modTime: info.mtime, isDir: false };
    }
  }

  /** Where a symlink found while walking leads, if it resolves inside the root to a file or directory. */
  async #symlinkTarget(link: string): Promise<{ location: string; isDir: boolean } | undefined> {
    try {
      const realRoot = await this.#resolvedRoot(false);
      const location = await realpath(link);
      if (!this.#inside(realRoot, location)) return undefined;
      const info = await stat(location);
      if (info.isDirectory()) return { location, isDir: true };
      return info.isFile() ? { location, isDir: false } : undefined;
    } catch (error) {
      if (hasCode(error, ['ENOENT', 'ENOTDIR', 'ELOOP'])) return undefined; // Dangling, or a loop.
      throw error;
    }
  }

  async move(source: string, dest: string): Promise<void> {
    const from = await this.#entry(source);
    let info: Stats;
    try {
      info = await lstat(from);
    } catch (error) {
      throw notFound(error, source, ['ENOENT', 'ENOTDIR']);
    }
    if (info.isDirectory()) throw new PathNotFoundError(NAME, source);
    if (source === dest) return;
    try {
      await this.#inDirectory(dest, (directory) => rename(from, join(directory, basename(dest))));
    } catch (error) {
      throw notFound(error, source, ['ENOENT']);
    }
    await this.#prune(dirname(from));
  }

  async delete(path: string): Promise<void> {
    const target = await this.#entry(path);
    // rm without force reports a missing path. It removes symlinks (target itself included), never what they point to.
    try {
      await rm(target, { recursive: true });
    } catch (error) {
      throw notFound(error, path, ['ENOENT', 'ENOTDIR']);
    }
    await this.#prune(dirname(target));
  }

  redirectURL(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }

  /** The location of path below the (configured, not yet resolved) root. path is valid (checkPath). */
  #local(path: string): string {
    return path === '/' ? this.#root : join(this.#root, ...path.slice(1).split('/'));
  }

  /** The root with symlinks resolved, creating it if create is set. */
  async #resolvedRoot(create: boolean): Promise<string> {
    if (this.#realRoot !== undefined) return this.#realRoot;
    if (create) await mkdir(this.#root, { recursive: true });
    this.#realRoot = await realpath(this.#root);
    return this.#realRoot;
  }

  #inside(realRoot: string, location: string): boolean {
    return location === realRoot || location.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep);
  }

  /** The resolved location of an existing path inside the root; PathNotFoundError if missing or outside. */
  async #existing(path: string): Promise<string> {
    let realRoot: string;
    let location: string;
    try {
      realRoot = await this.#resolvedRoot(false);
      location = await realpath(this.#local(path));
    } catch (error) {
      throw notFound(error, path, ['ENOENT', 'ENOTDIR', 'ELOOP']);
    }
    if (!this.#inside(realRoot, location)) throw new PathNotFoundError(NAME, path);
    return location;
  }

  /**
   * The location of the directory entry path names, in its resolved parent directory inside the root,
   * without following the entry itself if it is a symlink; PathNotFoundError if the parent is missing or outside.
   */
  async #entry(path: string): Promise<string> {
    const local = this.#local(path);
    let realRoot: string;
    let parent: string;
    try {
      realRoot = await this.#resolvedRoot(false);
      parent = await realpath(dirname(local));
    } catch (error) {
      throw notFound(error, path, ['ENOENT', 'ENOTDIR', 'ELOOP']);
    }
    if (!this.#inside(realRoot, parent)) throw new PathNotFoundError(NAME, path);
    return join(parent, basename(local));
  }

  /** Creates directory (below the root) as needed, one level at a time, and returns its resolved location. */
  async #makeDirectory(directory: string): Promise<string> {
    const realRoot = await this.#resolvedRoot(true);
    let location: string | undefined;
    try {
      location = await realpath(directory);
    } catch (error) {
      if (!hasCode(error, ['ENOENT'])) throw error;
    }
    if (location === undefined) {
      const parent = await this.#makeDirectory(dirname(directory));
      const created = join(parent, basename(directory));
      try {
        await mkdir(created);
      } catch (error) {
        if (!hasCode(error, ['EEXIST'])) throw error;
      }
      location = await realpath(created);
    }
    if (!this.#inside(realRoot, location)) {
      throw new StorageError(NAME, `${directory} resolves outside the root directory`);
    }
    return location;
  }

  /**
   * Runs action in the (resolved) directory of path, made as needed. A concurrent delete may prune
   * that directory, or one of its parents, between its making and its use; then it is made again.
   */
  async #inDirectory<T>(path: string, action: (directory: string) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let directory: string | undefined;
      try {
        // Making it can fail too: a parent pruned between its making and the mkdir below it.
        directory = await this.#makeDirectory(dirname(this.#local(path)));
        return await action(directory);
      } catch (error) {
        const pruned = directory === undefined || !(await exists(directory));
        if (attempt >= MAKE_ATTEMPTS || !hasCode(error, ['ENOENT']) || !pruned) throw error;
      }
    }
  }

  /** Removes directory and its ancestors while they are empty, stopping below the root. */
  async #prune(directory: string): Promise<void> {
    const realRoot = await this.#resolvedRoot(false);
    for (let current = directory; current !== realRoot && this.#inside(realRoot, current);) {
      try {
        await rmdir(current);
      } catch {
        return; // Not empty (or already gone, or in use): leave it and everything above.
      }
      current = dirname(current);
    }
  }
}

/** A pull-based stream of bytes [offset, end) of handle (or to its end), closing handle when done or cancelled. */
function fileStream(handle: FileHandle, offset: number, end: number): ReadableStream<Uint8Array> {
  let position = offset;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await handle.close();
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const wanted = Math.min(CHUNK, end - position);
          const { bytesRead, buffer } =
            wanted > 0
              ? await handle.read(new Uint8Array(wanted), 0, wanted, position)
              : { bytesRead: 0, buffer: undefined };
          if (bytesRead === 0 || buffer === undefined) {
            await close();
            controller.close();
            return;
          }
          position += bytesRead;
          controller.enqueue(bytesRead === wanted ? buffer : buffer.subarray(0, bytesRead));
        } catch (error) {
          await close().catch(() => undefined);
          controller.error(error);
        }
      },
      cancel: close,
    },
    { highWaterMark: 1 },
  );
}

async function exists(location: string): Promise<boolean> {
  try {
    await stat(location);
    return true;
  } catch {
    return false;
  }
}

async function readWhole(file: string): Promise<Buffer> {
  const handle = await open(file, constants.O_RDONLY);
  try {
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

function hasCode(error: unknown, codes: readonly string[]): boolean {
  return (
    error instanceof Error && 'code' in error && typeof error.code === 'string' && codes.includes(error.code)
  );
}

/** A PathNotFoundError for path if error has one of codes; otherwise error unchanged (the wrapper wraps it). */
function notFound(error: unknown, path: string, codes: readonly string[]): unknown {
  return hasCode(error, codes) ? new PathNotFoundError(NAME, path) : error;
}

/** A StorageDriver ("filesystem") storing path "/a/b" as the file <rootDirectory>/a/b. */
/** How often a directory pruned by a concurrent delete while in use is made again. */
const MAKE_ATTEMPTS = 5;

export class FilesystemDriver extends CheckedDriver {
  constructor(rootDirectory: string) {
    super(new FilesystemBackend(rootDirectory));
  }
}
