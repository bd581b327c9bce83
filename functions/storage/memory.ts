/**
 * MemoryDriver: a StorageDriver that keeps everything in the process's memory, for tests and
 * ephemeral registries. Directories are implied by the files below them, as in an object store: a
 * directory exists while a file lies below it. A path cannot be both a file and a directory.
 * Content is copied on the way in and out, so callers may reuse their buffers.
 */
import { CheckedDriver } from './checked.js';
import { InvalidOffsetError, PathNotFoundError, StorageError } from './driver.js';
import type { FileInfo, FileWriter, StorageDriver, WalkOptions } from './driver.js';

const NAME = 'inmemory';
const CHUNK = 64 * 1024;

/** A growable byte buffer with the time of its last change. */
class MemoryFile {
  #data: Uint8Array;
  size: number;
  modTime = new Date();

  constructor(content: Uint8Array = new Uint8Array(0)) {
    // A copy into a plain Uint8Array: Buffer's slice() would share memory.
    this.#data = new Uint8Array(content.length);
    this.#data.set(content);
    this.size = content.length;
  }

  append(chunk: Uint8Array): void {
    const needed = this.size + chunk.length;
    if (needed > this.#data.length) {
      const grown = new Uint8Array(Math.max(needed, this.#data.length * 2, 1024));
      grown.set(this.#data.subarray(0, this.size));
      this.#data = grown;
    }
    this.#data.set(chunk, this.size);
    this.size = needed;
    this.modTime = new Date();
  }

  /** A copy of bytes [start, end). */
  slice(start = 0, end = this.size): Uint8Array {
    return this.#data.slice(start, Math.min(end, this.size));
  }
}

class MemoryBackend implements StorageDriver {
  readonly name = NAME;
  /** Files by full path; directories are the prefixes of these paths. */
  readonly #files = new Map<string, MemoryFile>();

  getContent(path: string): Promise<Uint8Array> {
    return Promise.resolve(this.#file(path).slice());
  }

  putContent(path: string, content: Uint8Array): Promise<void> {
    this.#checkWritable(path);
    this.#files.set(path, new MemoryFile(content));
    return Promise.resolve();
  }

  reader(path: string, offset = 0, length?: number): Promise<ReadableStream<Uint8Array>> {
    const file = this.#file(path);
    if (offset > file.size) throw new InvalidOffsetError(NAME, path, offset);
    const end = length === undefined ? file.size : Math.min(file.size, offset + length);
    let position = offset;
    return Promise.resolve(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (position >= end) {
            controller.close();
            return;
          }
          const next = Math.min(end, position + CHUNK);
          controller.enqueue(file.slice(position, next));
          position = next;
        },
      }),
    );
  }

  writer(path: string, append: boolean): Promise<FileWriter> {
    this.#checkWritable(path);
    const existing = this.#files.get(path);
    const file = append && existing !== undefined ? existing : new MemoryFile();
    this.#files.set(path, file);
    const files = this.#files;
    const publish = (): void => {
      // Keep the file at path even if it was deleted or replaced while this writer was open.
      if (files.get(path) !== file) files.set(path, file);
    };
    return Promise.resolve({
      get size() {
        return file.size;
      },
      write(chunk: Uint8Array) {
        file.append(chunk);
        publish();
        return Promise.resolve();
      },
      close() {
        publish();
        return Promise.resolve();
      },
      commit() {
        publish();
        return Promise.resolve();
      },
      cancel() {
        if (files.get(path) === file) files.delete(path);
        return Promise.resolve();
      },
    });
  }

  stat(path: string): Promise<FileInfo> {
    const file = this.#files.get(path);
    if (file !== undefined) {
      return Promise.resolve({ path, size: file.size, modTime: file.modTime, isDir: false });
    }
    let modTime: Date | undefined;
    for (const [key, below] of this.#files) {
      if (key.startsWith(`${path}/`) && (modTime === undefined || below.modTime > modTime)) {
        modTime = below.modTime;
      }
    }
    if (modTime === undefined) throw new PathNotFoundError(NAME, path);
    return Promise.resolve({ path, size: 0, modTime, isDir: true });
  }

  list(path: string): Promise<string[]> {
    const prefix = path === '/' ? '/' : `${path}/`;
    const children = new Set<string>();
    for (const key of this.#files.keys()) {
      if (!key.startsWith(prefix)) continue;
      const slash = key.indexOf('/', prefix.length);
      children.add(slash === -1 ? key : key.slice(0, slash));
    }
    if (children.size === 0) throw new PathNotFoundError(NAME, path);
    return Promise.resolve([...children].sort());
  }

  walk(path: string, { startAfter }: WalkOptions = {}): AsyncIterable<FileInfo> {
    const prefix = path === '/' ? '/' : `${path}/`;
    const files = this.#files;
    function* found(): Generator<FileInfo> {
      const paths = [...files.keys()]
        .filter((key) => key.startsWith(prefix) && (startAfter === undefined || key > startAfter))
        .sort();
      for (const key of paths) {
        // Taken when reached, so that a file deleted meanwhile is left out, as a listing would.
        const file = files.get(key);
        if (file !== undefined) yield { path: key, size: file.size, modTime: file.modTime, isDir: false };
      }
    }
    // Nothing to wait for: a synchronous generator behind the asynchronous interface.
    return {
      [Symbol.asyncIterator]: () => {
        const iterator = found();
        return {
          next: () => Promise.resolve(iterator.next()),
          return: () => Promise.resolve(iterator.return(undefined)),
        };
      },
    };
  }

  move(source: string, dest: string): Promise<void> {
    const file = this.#file(source);
    if (source === dest) return Promise.resolve();
    this.#checkWritable(dest);
    this.#files.delete(source);
    this.#files.set(dest, file);
    return Promise.resolve();
  }

  delete(path: string): Promise<void> {
    let found = this.#files.delete(path);
    const prefix = `${path}/`;
    for (const key of [...this.#files.keys()]) {
      if (!key.startsWith(prefix)) continue;
      this.#files.delete(key);
      found = true;
    }
    if (!found) throw new PathNotFoundError(NAME, path);
    return Promise.resolve();
  }

  redirectURL(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }

  #file(path: string): MemoryFile {
    const file = this.#files.get(path);
    if (file === undefined) throw new PathNotFoundError(NAME, path);
    return file;
  }

  /** Refuses a file where a directory is, or below a file, as a file system would. */
  #checkWritable(path: string): void {
    for (let slash = path.indexOf('/', 1); slash !== -1; slash = path.indexOf('/', slash + 1)) {
      if (this.#files.has(path.slice(0, slash))) {
        throw new StorageError(NAME, `${path}: ${path.slice(0, slash)} is a file`);
      }
    }
    const prefix = `${path}/`;
    for (const key of this.#files.keys()) {
      if (key.startsWith(prefix)) throw new StorageError(NAME, `${path}: is a directory`);
    }
  }
}

/** An in-memory StorageDriver ("inmemory"); each instance has its own, initially empty, storage. */
export class MemoryDriver extends CheckedDriver {
  constructor() {
    super(new MemoryBackend());
  }
}
