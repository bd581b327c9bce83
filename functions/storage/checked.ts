/**
 * The checks every StorageDriver shares, kept out of the concrete drivers: paths are validated with
 * checkPath before any backend code runs, offsets and lengths must be non-negative integers, a writer
 * refuses calls once it is closed, committed or cancelled (and runs its calls one at a time), and any
 * error escaping the backend that is not already a StorageError is wrapped in one (with the original
 * as `cause`). Concrete drivers are used only through this wrapper: they extend CheckedDriver, or are
 * passed to checked().
 */
import {
  checkPath,
  InvalidOffsetError,
  StorageError,
  type FileInfo,
  type FileWriter,
  type StorageDriver,
  type WalkOptions,
} from './driver.js';

/** Wraps driver so that it is used only through the shared checks; a driver already wrapped is returned as is. */
export function checked(driver: StorageDriver): StorageDriver {
  return driver instanceof CheckedDriver ? driver : new CheckedDriver(driver);
}

/** A StorageDriver that validates its arguments and normalises errors before delegating to a backend. */
export class CheckedDriver implements StorageDriver {
  readonly name: string;
  readonly timeResolutionMs: number;
  readonly #backend: StorageDriver;

  constructor(backend: StorageDriver) {
    this.#backend = backend;
    this.name = backend.name;
    this.timeResolutionMs = backend.timeResolutionMs ?? 1;
  }

  getContent(path: string): Promise<Uint8Array> {
    return this.#call('getContent', path, () => {
      checkPath(this.name, path);
      return this.#backend.getContent(path);
    });
  }

  putContent(path: string, content: Uint8Array): Promise<void> {
    return this.#call('putContent', path, () => {
      checkPath(this.name, path);
      return this.#backend.putContent(path, content);
    });
  }

  reader(path: string, offset = 0, length?: number): Promise<ReadableStream<Uint8Array>> {
    return this.#call('reader', path, async () => {
      checkPath(this.name, path);
      if (!isCount(offset)) throw new InvalidOffsetError(this.name, path, offset);
      if (length !== undefined && !isCount(length)) throw new InvalidOffsetError(this.name, path, length);
      const stream = await this.#backend.reader(path, offset, length);
      return this.#guardStream(stream, path);
    });
  }

  writer(path: string, append: boolean): Promise<FileWriter> {
    return this.#call('writer', path, async () => {
      checkPath(this.name, path);
      return new CheckedWriter(this.name, path, await this.#backend.writer(path, append));
    });
  }

  stat(path: string): Promise<FileInfo> {
    return this.#call('stat', path, () => {
      checkPath(this.name, path);
      return this.#backend.stat(path);
    });
  }

  list(path: string): Promise<string[]> {
    return this.#call('list', path, () => {
      checkPath(this.name, path, { allowRoot: true });
      return this.#backend.list(path);
    });
  }

  async *walk(path: string, options: WalkOptions = {}): AsyncIterable<FileInfo> {
    const { startAfter } = options;
    try {
      checkPath(this.name, path, { allowRoot: true });
      if (startAfter !== undefined) checkPath(this.name, startAfter, { allowRoot: true });
    } catch (error) {
      throw toStorageError(this.name, `walk ${path}`, error);
    }
    const iterator = this.#backend
      .walk(path, startAfter === undefined ? {} : { startAfter })
      [Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        let next: IteratorResult<FileInfo>;
        try {
          next = await iterator.next();
        } catch (error) {
          finished = true;
          throw toStorageError(this.name, `walk ${path}`, error);
        }
        if (next.done === true) {
          finished = true;
          return;
        }
        yield next.value;
      }
    } finally {
      // The consumer stopped early: let the backend release what it holds (an open directory, a listing).
      if (!finished) await iterator.return?.();
    }
  }

  move(source: string, dest: string): Promise<void> {
    return this.#call('move', source, () => {
      checkPath(this.name, source);
      checkPath(this.name, dest);
      return this.#backend.move(source, dest);
    });
  }

  delete(path: string): Promise<void> {
    return this.#call('delete', path, () => {
      checkPath(this.name, path);
      return this.#backend.delete(path);
    });
  }

  redirectURL(
    path: string,
    options: { method: 'GET' | 'HEAD'; expiresInSeconds?: number },
  ): Promise<string | undefined> {
    return this.#call('redirectURL', path, () => {
      checkPath(this.name, path);
      const { expiresInSeconds } = options;
      if (expiresInSeconds !== undefined && !(Number.isInteger(expiresInSeconds) && expiresInSeconds > 0)) {
        throw new StorageError(this.name, `invalid expiry ${expiresInSeconds} for ${path}`);
      }
      return this.#backend.redirectURL(path, options);
    });
  }

  async #call<T>(operation: string, path: string, body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      throw toStorageError(this.name, `${operation} ${path}`, error);
    }
  }

  /** Re-exposes a backend stream so that its errors, too, reach the consumer as StorageErrors. */
  #guardStream(stream: ReadableStream<Uint8Array>, path: string): ReadableStream<Uint8Array> {
    const reader = stream.getReader();
    const name = this.name;
    return new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          try {
            const { done, value } = await reader.read();
            if (done) controller.close();
            else controller.enqueue(value);
          } catch (error) {
            controller.error(toStorageError(name, `reader ${path}`, error));
          }
        },
        cancel(reason) {
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
  }
}

/** A writer that refuses use after it is finished and runs one call at a time, in the order they were made. */
class CheckedWriter implements FileWriter {
  #finished: string | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly driver: string,
    private readonly path: string,
    private readonly backend: FileWriter,
  ) {}

  get size(): number {
    return this.backend.size;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.#run('write', false, () => this.backend.write(chunk));
  }

  close(): Promise<void> {
    return this.#run('close', true, () => this.backend.close());
  }

  cancel(): Promise<void> {
    return this.#run('cancel', true, () => this.backend.cancel());
  }

  commit(): Promise<void> {
    return this.#run('commit', true, () => this.backend.commit());
  }

  #run(operation: string, finishes: boolean, body: () => Promise<void>): Promise<void> {
    const where = `${operation} ${this.path}`;
    if (this.#finished !== undefined) {
      return Promise.reject(new StorageError(this.driver, `${where}: writer already ${this.#finished}`));
    }
    if (finishes) this.#finished = pastTense(operation);
    const result = this.#queue.then(body).catch((error: unknown) => {
      throw toStorageError(this.driver, where, error);
    });
    this.#queue = result.catch(() => undefined);
    return result;
  }
}

function pastTense(operation: string): string {
  return operation === 'commit' ? 'committed' : operation === 'cancel' ? 'cancelled' : 'closed';
}

function isCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

/** error itself if it is a StorageError, otherwise a StorageError of driver that names where and carries it as cause. */
function toStorageError(driver: string, where: string, error: unknown): StorageError {
  if (error instanceof StorageError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new StorageError(driver, `${where}: ${message}`, { cause: error });
}
