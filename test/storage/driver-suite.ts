/**
 * The one conformance suite every StorageDriver passes, in the spirit of distribution's
 * registry/storage/driver/testsuites. It assumes nothing about the backend beyond the interface:
 * every test keeps its data below a random top-level prefix, so that runs against a shared bucket or
 * emulator do not collide, and the teardown deletes that prefix and fails the test if anything is
 * left below it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  InvalidOffsetError,
  InvalidPathError,
  isValidPath,
  PathNotFoundError,
  StorageError,
  type FileInfo,
  type StorageDriver,
} from '../../functions/storage/driver.js';

export interface DriverUnderTest {
  driver: StorageDriver;
  /** Releases what making the driver took (not the data, which the suite deletes itself). */
  cleanup(): Promise<void>;
}

export interface SuiteOptions {
  /**
   * Whether two drivers made by the factory see the same storage (true for a directory or bucket,
   * false for in-memory drivers); enables the tests that resume a writer from another instance.
   */
  sharedAcrossInstances: boolean;
  /**
   * Whether what a writer closed (without committing) is readable at its path before the commit; true
   * when left out. Only the S3 driver sets it to false: its closed bytes are in an incomplete multipart
   * upload, which S3 cannot read (they still resume, and writer.size still counts them).
   */
  readableWhenClosed?: boolean;
}

const KiB = 1024;
const MiB = 1024 * KiB;

const INVALID_PATHS = [
  '',
  'relative',
  'relative/path',
  '/a//b',
  '//a',
  '/a/../b',
  '/..',
  '/a/./b',
  '/.',
  '/a/b/',
  '/a b',
  '/a\\b',
  '/a\nb',
  '/a\0b',
  '/a:b',
  '/caf\u00e9',
  '/\u{1F4E6}',
];

export function describeStorageDriver(
  name: string,
  makeDriver: () => Promise<DriverUnderTest>,
  options: SuiteOptions,
): void {
  describe(`StorageDriver conformance: ${name}`, () => {
    let driver: StorageDriver;
    let prefix: string;
    let cleanups: (() => Promise<void>)[] = [];

    /** A driver from the factory, released after the test. */
    async function makeAnother(): Promise<StorageDriver> {
      const made = await makeDriver();
      cleanups.push(() => made.cleanup());
      return made.driver;
    }

    /** A path below the test's prefix. */
    function at(...segments: string[]): string {
      return [prefix, ...segments].join('/');
    }

    beforeEach(async () => {
      cleanups = [];
      driver = await makeAnother();
      prefix = `/suite-${randomBytes(8).toString('hex')}`;
    });

    afterEach(async () => {
      try {
        await driver.delete(prefix).catch(ignoreNotFound);
        await expect(driver.list(prefix), 'data left behind').rejects.toBeInstanceOf(PathNotFoundError);
        await expect(driver.stat(prefix), 'data left behind').rejects.toBeInstanceOf(PathNotFoundError);
      } finally {
        for (const cleanup of cleanups.reverse()) await cleanup();
      }
    });

    describe('content', () => {
      it('returns the content that was put', async () => {
        const path = at(randomName(), randomName());
        const content = random(100);
        await driver.putContent(path, content);
        expect(await driver.getContent(path)).toEqual(content);
      });

      it('stores empty content as an empty file', async () => {
        const path = at('empty');
        await driver.putContent(path, new Uint8Array(0));
        expect(await driver.getContent(path)).toEqual(new Uint8Array(0));
        expect(await driver.stat(path)).toMatchObject({ path, size: 0, isDir: false });
        expect(await readAll(await driver.reader(path))).toEqual(new Uint8Array(0));
        await expect(driver.reader(path, 1)).rejects.toBeInstanceOf(InvalidOffsetError);
      });

      it('round-trips more than 1 MiB of random, non-UTF-8 bytes', async () => {
        const path = at('big');
        const content = random(MiB + 123);
        content[0] = 0xff; // never valid UTF-8
        await driver.putContent(path, content);
        expectBytes(await driver.getContent(path), content);
        expectBytes(await readAll(await driver.reader(path)), content);
        expect((await driver.stat(path)).size).toBe(content.length);
      });

      it('replaces earlier content, also with shorter content', async () => {
        const path = at('overwritten');
        await driver.putContent(path, random(4 * KiB));
        const shorter = random(10);
        await driver.putContent(path, shorter);
        expect(await driver.getContent(path)).toEqual(shorter);
        expect((await driver.stat(path)).size).toBe(10);
      });

      it('keeps its own copy of the content put and returned', async () => {
        const path = at('copied');
        const content = new Uint8Array([1, 2, 3]);
        await driver.putContent(path, content);
        content[0] = 9;
        const read = await driver.getContent(path);
        expect(read).toEqual(new Uint8Array([1, 2, 3]));
        read[1] = 9;
        expect(await driver.getContent(path)).toEqual(new Uint8Array([1, 2, 3]));
      });

      it('accepts every character of the path alphabet', async () => {
        const path = at('AZaz09._-', '...', '.hidden', '-_');
        await driver.putContent(path, random(3));
        expect(await driver.list(at('AZaz09._-'))).toEqual([at('AZaz09._-', '...')]);
        expect((await driver.stat(path)).isDir).toBe(false);
      });

      it('reports a missing path as PathNotFoundError from every read', async () => {
        const path = at('missing', 'file');
        await expectNotFound(driver.getContent(path), path);
        await expectNotFound(driver.stat(path), path);
        await expectNotFound(driver.reader(path), path);
        await expectNotFound(driver.list(path), path);
        await expectNotFound(driver.delete(path), path);
      });

      it('gives a directory no content', async () => {
        await driver.putContent(at('dir', 'file'), random(5));
        await expect(driver.getContent(at('dir'))).rejects.toBeInstanceOf(PathNotFoundError);
        await expect(driver.reader(at('dir'))).rejects.toBeInstanceOf(PathNotFoundError);
      });

      it('replaces content atomically under concurrent puts and reads', async () => {
        const path = at('contended');
        const versions = Array.from({ length: 6 }, () => random(256 * KiB));
        const hashes = new Set(versions.map(sha256));
        const first = versions[0];
        if (first === undefined) throw new Error('no versions');
        await driver.putContent(path, first);
        const reads: Promise<Uint8Array>[] = [];
        await Promise.all(
          versions.map(async (version) => {
            reads.push(driver.getContent(path));
            await driver.putContent(path, version);
          }),
        );
        for (const read of await Promise.all(reads)) expect(hashes.has(sha256(read))).toBe(true);
        expect(hashes.has(sha256(await driver.getContent(path)))).toBe(true);
      });

      it('stores concurrent puts to different paths independently', async () => {
        const contents = Array.from({ length: 16 }, (_, index) => ({
          path: at('many', `f${index}`),
          data: random(KiB),
        }));
        await Promise.all(contents.map(({ path, data }) => driver.putContent(path, data)));
        for (const { path, data } of contents) expect(await driver.getContent(path)).toEqual(data);
        expect(await driver.list(at('many'))).toEqual(contents.map(({ path }) => path).sort());
      });
    });

    describe('paths', () => {
      it('refuses every invalid path in every method with InvalidPathError', async () => {
        const valid = at('valid');
        await driver.putContent(valid, random(4));
        for (const path of INVALID_PATHS) {
          const calls: [string, () => Promise<unknown>][] = [
            ['getContent', () => driver.getContent(path)],
            ['putContent', () => driver.putContent(path, random(4))],
            ['reader', () => driver.reader(path)],
            ['writer', () => driver.writer(path, false)],
            ['writer (append)', () => driver.writer(path, true)],
            ['stat', () => driver.stat(path)],
            ['list', () => driver.list(path)],
            ['move (source)', () => driver.move(path, at('elsewhere'))],
            ['move (destination)', () => driver.move(valid, path)],
            ['delete', () => driver.delete(path)],
            ['redirectURL', () => driver.redirectURL(path, { method: 'GET' })],
            ['walk', () => collect(driver.walk(path))],
            ['walk (startAfter)', () => collect(driver.walk(prefix, { startAfter: path }))],
          ];
          for (const [method, call] of calls) {
            const error = await rejection(call());
            const where = `${method}(${JSON.stringify(path)})`;
            expect(error, where).toBeInstanceOf(InvalidPathError);
            expect(error, where).toMatchObject({ path, driver: driver.name });
          }
        }
        expect(await driver.list(prefix)).toEqual([valid]);
      });

      it('lists the root, but refuses it as a file, a move end or a deletion', async () => {
        await driver.putContent(at('file'), random(4));
        expect(await driver.list('/')).toContain(prefix);
        for (const call of [
          () => driver.getContent('/'),
          () => driver.putContent('/', random(1)),
          () => driver.reader('/'),
          () => driver.writer('/', false),
          () => driver.stat('/'),
          () => driver.move('/', at('x')),
          () => driver.move(at('file'), '/'),
          () => driver.delete('/'),
          () => driver.redirectURL('/', { method: 'GET' }),
        ]) {
          await expect(call()).rejects.toBeInstanceOf(InvalidPathError);
        }
        expect(await driver.list(prefix)).toEqual([at('file')]);
      });
    });

    describe('reader', () => {
      const size = 300 * KiB + 7;
      let content: Uint8Array;
      let path: string;

      beforeEach(async () => {
        content = random(size);
        path = at('read', 'me');
        await driver.putContent(path, content);
      });

      it('streams the whole content from offset 0', async () => {
        expectBytes(await readAll(await driver.reader(path, 0)), content);
      });

      it('streams the rest of the content from a middle offset', async () => {
        const offset = Math.floor(size / 3);
        expectBytes(await readAll(await driver.reader(path, offset)), content.subarray(offset));
      });

      it('streams at most length bytes from an offset', async () => {
        expectBytes(await readAll(await driver.reader(path, 1000, 5000)), content.subarray(1000, 6000));
        expectBytes(await readAll(await driver.reader(path, size - 10, 100)), content.subarray(size - 10));
        expect(await readAll(await driver.reader(path, 17, 0))).toEqual(new Uint8Array(0));
      });

      it('gives an empty stream at an offset equal to the size', async () => {
        expect(await readAll(await driver.reader(path, size))).toEqual(new Uint8Array(0));
      });

      it('refuses an offset past the end, or a negative offset or length, with InvalidOffsetError', async () => {
        for (const [offset, length] of [
          [size + 1, undefined],
          [size + MiB, undefined],
          [-1, undefined],
          [1.5, undefined],
          [0, -1],
        ] as const) {
          const error = await rejection(driver.reader(path, offset, length));
          expect(error, `offset ${offset}, length ${length}`).toBeInstanceOf(InvalidOffsetError);
          expect(error).toMatchObject({ path, driver: driver.name });
        }
      });

      it('serves concurrent readers of one file the same bytes', async () => {
        const reads = await Promise.all(
          Array.from({ length: 8 }, async () => sha256(await readAll(await driver.reader(path)))),
        );
        expect(new Set(reads)).toEqual(new Set([sha256(content)]));
      });

      it('lets a reader be cancelled midway, leaving the file usable', async () => {
        const stream = await driver.reader(path);
        const reader = stream.getReader();
        const first = await reader.read();
        expect(first.done).toBe(false);
        await reader.cancel();
        expectBytes(await driver.getContent(path), content);
        await driver.delete(path);
        await expect(driver.stat(path)).rejects.toBeInstanceOf(PathNotFoundError);
      });
    });

    describe('writer', () => {
      it('stores many written chunks once committed', async () => {
        const path = at('written');
        const writer = await driver.writer(path, false);
        const chunks = Array.from({ length: 60 }, (_, index) =>
          random(index === 7 ? 0 : randomInt(1, 8 * KiB)),
        );
        let written = 0;
        for (const chunk of chunks) {
          await writer.write(chunk);
          written += chunk.length;
          expect(writer.size).toBe(written);
        }
        await writer.commit();
        expectBytes(await driver.getContent(path), concat(chunks));
        expect(await driver.stat(path)).toMatchObject({ size: written, isDir: false });
      });

      it('stores writes issued without waiting in the order they were issued', async () => {
        const path = at('ordered');
        const writer = await driver.writer(path, false);
        const chunks = Array.from({ length: 20 }, () => random(3 * KiB));
        await Promise.all(chunks.map((chunk) => writer.write(chunk)));
        await writer.commit();
        expectBytes(await driver.getContent(path), concat(chunks));
      });

      it('resumes a closed writer with append, continuing its size and content', async () => {
        const path = at('resumed');
        const parts = [random(10 * KiB), random(KiB + 1), random(77)];
        let total = 0;
        for (const part of parts) {
          const writer = await driver.writer(path, true);
          expect(writer.size).toBe(total);
          await writer.write(part);
          total += part.length;
          expect(writer.size).toBe(total);
          await writer.close();
          if (options.readableWhenClosed !== false) {
            expectBytes(await driver.getContent(path), concat(parts.slice(0, parts.indexOf(part) + 1)));
          }
        }
        const last = await driver.writer(path, true);
        expect(last.size).toBe(total);
        await last.commit();
        expectBytes(await driver.getContent(path), concat(parts));
      });

      // Only drivers whose instances share storage (a directory, a bucket) can hand a file over.
      if (options.sharedAcrossInstances)
        it('resumes, in another driver instance, what a writer closed', async () => {
          const path = at('handed-over');
          const first = random(5 * KiB);
          const second = random(3 * KiB);
          const writer = await driver.writer(path, false);
          await writer.write(first);
          await writer.close();

          const other = await makeAnother();
          const resumed = await other.writer(path, true);
          expect(resumed.size).toBe(first.length);
          await resumed.write(second);
          await resumed.commit();
          expectBytes(await other.getContent(path), concat([first, second]));
          expectBytes(await driver.getContent(path), concat([first, second]));
        });

      it('starts an append to a missing path empty', async () => {
        const path = at('fresh');
        const writer = await driver.writer(path, true);
        expect(writer.size).toBe(0);
        await writer.write(random(10));
        await writer.commit();
        expect((await driver.stat(path)).size).toBe(10);
      });

      it('discards earlier content when append is false', async () => {
        const path = at('truncated');
        const earlier = await driver.writer(path, false);
        await earlier.write(random(8 * KiB));
        await earlier.close();
        const writer = await driver.writer(path, false);
        expect(writer.size).toBe(0);
        const fresh = random(100);
        await writer.write(fresh);
        await writer.commit();
        expect(await driver.getContent(path)).toEqual(fresh);
      });

      it('removes the path, earlier appends included, when cancelled', async () => {
        const path = at('cancelled', 'file');
        const earlier = await driver.writer(path, false);
        await earlier.write(random(KiB));
        await earlier.close();
        const writer = await driver.writer(path, true);
        await writer.write(random(KiB));
        await writer.cancel();
        await expect(driver.stat(path)).rejects.toBeInstanceOf(PathNotFoundError);
        await expect(driver.list(at('cancelled'))).rejects.toBeInstanceOf(PathNotFoundError);
      });

      it('refuses use once closed, committed or cancelled', async () => {
        for (const finish of ['close', 'commit', 'cancel'] as const) {
          const writer = await driver.writer(at(finish), false);
          await writer.write(random(1));
          await writer[finish]();
          for (const call of [
            () => writer.write(random(1)),
            () => writer.close(),
            () => writer.commit(),
            () => writer.cancel(),
          ]) {
            await expect(call(), finish).rejects.toBeInstanceOf(StorageError);
          }
        }
      });

      it('keeps concurrent writers to different paths apart', async () => {
        const files = Array.from({ length: 6 }, (_, index) => ({
          path: at('parallel', `w${index}`),
          chunks: Array.from({ length: 12 }, () => random(randomInt(1, 16 * KiB))),
        }));
        await Promise.all(
          files.map(async ({ path, chunks }) => {
            const writer = await driver.writer(path, false);
            for (const chunk of chunks) await writer.write(chunk);
            await writer.commit();
          }),
        );
        for (const { path, chunks } of files) expectBytes(await driver.getContent(path), concat(chunks));
      });

      it('streams a 20 MiB write and read without corruption', { timeout: 120_000 }, async () => {
        const path = at('large', 'blob');
        const chunkSize = 64 * KiB;
        const chunks = (20 * MiB) / chunkSize;
        const written = createHash('sha256');
        const writer = await driver.writer(path, false);
        for (let index = 0; index < chunks; index++) {
          const chunk = random(chunkSize);
          written.update(chunk);
          await writer.write(chunk);
        }
        expect(writer.size).toBe(20 * MiB);
        await writer.commit();
        expect((await driver.stat(path)).size).toBe(20 * MiB);

        const read = createHash('sha256');
        let size = 0;
        const reader = (await driver.reader(path)).getReader();
        for (let next = await reader.read(); !next.done; next = await reader.read()) {
          read.update(next.value);
          size += next.value.length;
        }
        expect(size).toBe(20 * MiB);
        expect(read.digest('hex')).toBe(written.digest('hex'));
      });
    });

    describe('stat', () => {
      it('describes a file by size and modification time', async () => {
        const path = at('stat', 'file');
        await driver.putContent(path, random(1234));
        const info = await driver.stat(path);
        expect(info).toMatchObject({ path, size: 1234, isDir: false });
        expect(info.modTime).toBeInstanceOf(Date);
        expect(Math.abs(info.modTime.getTime() - Date.now())).toBeLessThan(5 * 60_000);
      });

      it('describes a directory as such', async () => {
        await driver.putContent(at('stat', 'sub', 'file'), random(10));
        const info = await driver.stat(at('stat', 'sub'));
        expect(info).toMatchObject({ path: at('stat', 'sub'), isDir: true });
        expect(info.modTime).toBeInstanceOf(Date);
        expect((await driver.stat(at('stat'))).isDir).toBe(true);
      });
    });

    describe('list', () => {
      it('lists the full paths of direct children, each directory once, sorted', async () => {
        for (const path of [
          at('a', 'b', 'c1'),
          at('a', 'b', 'c2'),
          at('a', 'b', 'deeper', 'c3'),
          at('a', 'bc', 'x'),
          at('a', 'f'),
          at('z'),
        ]) {
          await driver.putContent(path, random(3));
        }
        expect(await driver.list(prefix)).toEqual([at('a'), at('z')]);
        expect(await driver.list(at('a'))).toEqual([at('a', 'b'), at('a', 'bc'), at('a', 'f')]);
        expect(await driver.list(at('a', 'b'))).toEqual([
          at('a', 'b', 'c1'),
          at('a', 'b', 'c2'),
          at('a', 'b', 'deeper'),
        ]);
        expect(await driver.list(at('a', 'bc'))).toEqual([at('a', 'bc', 'x')]);
      });

      it('sorts entries by code point', async () => {
        const names = ['b', 'a', 'B', 'A', '10', '9', '1', 'a-b', 'a.b', 'a_b', 'ab', '_', '-', '.x'];
        for (const [index, name] of names.entries()) {
          await driver.putContent(
            index % 2 === 0 ? at('sorted', name) : at('sorted', name, 'inner'),
            random(1),
          );
        }
        const expected = names.map((name) => at('sorted', name)).sort();
        expect(await driver.list(at('sorted'))).toEqual(expected);
      });

      it('reports a missing directory, or a file, as PathNotFoundError', async () => {
        await driver.putContent(at('present', 'file'), random(3));
        await expectNotFound(driver.list(at('absent')), at('absent'));
        await expectNotFound(driver.list(at('present', 'file')), at('present', 'file'));
        await expectNotFound(driver.list(at('pres')), at('pres'));
      });
    });

    describe('move', () => {
      it('moves content from source to destination', async () => {
        const content = random(2 * KiB);
        await driver.putContent(at('from', 'file'), content);
        await driver.putContent(at('from', 'stays'), random(1));
        await driver.move(at('from', 'file'), at('to', 'file'));
        expect(await driver.getContent(at('to', 'file'))).toEqual(content);
        await expect(driver.stat(at('from', 'file'))).rejects.toBeInstanceOf(PathNotFoundError);
        expect(await driver.list(at('from'))).toEqual([at('from', 'stays')]);
      });

      it('replaces an existing destination', async () => {
        const content = random(100);
        await driver.putContent(at('source'), content);
        await driver.putContent(at('dest'), random(5000));
        await driver.move(at('source'), at('dest'));
        expect(await driver.getContent(at('dest'))).toEqual(content);
        expect(await driver.list(prefix)).toEqual([at('dest')]);
      });

      it('fails for a missing source and leaves the destination intact', async () => {
        const content = random(100);
        await driver.putContent(at('dest'), content);
        await expectNotFound(driver.move(at('nothing'), at('dest')), at('nothing'));
        expect(await driver.getContent(at('dest'))).toEqual(content);
      });

      it('creates a new deep destination directory', async () => {
        const content = random(10);
        await driver.putContent(at('shallow'), content);
        const deep = at('d1', 'd2', 'd3', 'd4', 'file');
        await driver.move(at('shallow'), deep);
        expect(await driver.getContent(deep)).toEqual(content);
        expect(await driver.list(prefix)).toEqual([at('d1')]);
      });

      it('leaves no empty source directory behind', async () => {
        await driver.putContent(at('old', 'nested', 'file'), random(10));
        await driver.move(at('old', 'nested', 'file'), at('new'));
        await expect(driver.list(at('old'))).rejects.toBeInstanceOf(PathNotFoundError);
        expect(await driver.list(prefix)).toEqual([at('new')]);
      });
    });

    describe('delete', () => {
      it('deletes a file and leaves its siblings', async () => {
        await driver.putContent(at('dir', 'gone'), random(10));
        await driver.putContent(at('dir', 'kept'), random(10));
        await driver.delete(at('dir', 'gone'));
        await expect(driver.getContent(at('dir', 'gone'))).rejects.toBeInstanceOf(PathNotFoundError);
        expect(await driver.list(at('dir'))).toEqual([at('dir', 'kept')]);
      });

      it('deletes a directory tree and nothing else, even a sibling sharing its name as a prefix', async () => {
        for (const path of [
          at('a', 'b', 'c'),
          at('a', 'b', 'd', 'e'),
          at('a', 'bc', 'f'),
          at('a', 'b.x'),
          at('a', 'c'),
        ]) {
          await driver.putContent(path, random(3));
        }
        await driver.delete(at('a', 'b'));
        expect(await driver.list(at('a'))).toEqual([at('a', 'b.x'), at('a', 'bc'), at('a', 'c')]);
        await expect(driver.stat(at('a', 'b'))).rejects.toBeInstanceOf(PathNotFoundError);
        await expect(driver.stat(at('a', 'b', 'd', 'e'))).rejects.toBeInstanceOf(PathNotFoundError);
        expect((await driver.stat(at('a', 'bc', 'f'))).size).toBe(3);
      });

      it('removes directories left empty by deleting their last file', async () => {
        await driver.putContent(at('x', 'y', 'z'), random(3));
        await driver.delete(at('x', 'y', 'z'));
        await expect(driver.list(at('x'))).rejects.toBeInstanceOf(PathNotFoundError);
        await expect(driver.stat(at('x', 'y'))).rejects.toBeInstanceOf(PathNotFoundError);
      });

      it('reports a missing path as PathNotFoundError', async () => {
        await driver.putContent(at('file'), random(3));
        await expectNotFound(driver.delete(at('fil')), at('fil'));
        await expectNotFound(driver.delete(at('file', 'below')), at('file', 'below'));
        expect(await driver.list(prefix)).toEqual([at('file')]);
      });
    });

    describe('walk', () => {
      // Names around "/" in code point order ("-" < "." < "/" < "0"), where sorting the names of one
      // directory ("a" < "a-b") differs from sorting full paths ("a-b" < "a/b"); sizes tell files apart.
      const names = [
        'a-b',
        'a.b',
        'a/b',
        'a/c-d',
        'a/c.d',
        'a/c/d',
        'a0',
        'A',
        'Z/z',
        '_x',
        '-',
        '.x',
        'z/y/x/w',
        'z/y0',
        'z/y-',
      ];
      let files: { path: string; size: number }[];

      beforeEach(async () => {
        files = names.map((name, index) => ({ path: at('walk', ...name.split('/')), size: index }));
        await forEachBounded(files, 8, ({ path, size }) => driver.putContent(path, random(size)));
        files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      });

      it('yields every file below, recursively, in code point order of the full path, with its size', async () => {
        const walked = await collect(driver.walk(at('walk')));
        expect(walked.map(({ path, size, isDir }) => ({ path, size, isDir }))).toEqual(
          files.map(({ path, size }) => ({ path, size, isDir: false })),
        );
        // The order that matters, spelled out.
        const order = walked.map(({ path }) => path.slice(at('walk').length + 1));
        expect(order.filter((name) => /^a(-b|\.b|\/b|0)$/.test(name))).toEqual(['a-b', 'a.b', 'a/b', 'a0']);
        expect(order.filter((name) => name.startsWith('a/c'))).toEqual(['a/c-d', 'a/c.d', 'a/c/d']);
        expect(order.filter((name) => name.startsWith('z/y'))).toEqual(['z/y-', 'z/y/x/w', 'z/y0']);
      });

      it('gives each file a modification time consistent with stat', async () => {
        for (const info of await collect(driver.walk(at('walk')))) {
          expect(info.modTime).toBeInstanceOf(Date);
          expect(Math.abs(info.modTime.getTime() - Date.now()), info.path).toBeLessThan(5 * 60_000);
          const stat = await driver.stat(info.path);
          expect(stat.size).toBe(info.size);
          // Listings and HEAD-like calls may differ in precision (milliseconds, seconds).
          expect(Math.abs(stat.modTime.getTime() - info.modTime.getTime()), info.path).toBeLessThan(2000);
        }
      });

      it('yields only what lies below the directory, not siblings sharing its name as a prefix', async () => {
        const below = (directory: string): string[] =>
          files.map(({ path }) => path).filter((path) => path.startsWith(`${directory}/`));
        for (const directory of [
          at('walk', 'a'),
          at('walk', 'a', 'c'),
          at('walk', 'z'),
          at('walk', 'z', 'y'),
        ]) {
          expect(await walkedPaths(driver.walk(directory)), directory).toEqual(below(directory));
        }
        expect(await walkedPaths(driver.walk(at('walk', 'z', 'y')))).toEqual([
          at('walk', 'z', 'y', 'x', 'w'),
        ]);
      });

      it('resumes after startAfter: in the middle, at the last file, before the first', async () => {
        const all = files.map(({ path }) => path);
        for (const [index, startAfter] of all.entries()) {
          expect(await walkedPaths(driver.walk(at('walk'), { startAfter })), startAfter).toEqual(
            all.slice(index + 1),
          );
        }
        expect(await walkedPaths(driver.walk(at('walk'), { startAfter: all.at(-1) }))).toEqual([]);
        // Paths that are not files: before everything, directories, missing paths, beyond everything.
        for (const startAfter of [
          '/',
          prefix,
          at('walk'),
          at('walk', '-'),
          at('walk', 'a'),
          at('walk', 'a', 'c'),
          at('walk', 'a', 'c', 'd', 'e'),
          at('walk', 'a1'),
          at('walk', 'z', 'y'),
          at('walk', 'zz'),
          at('walk0'),
        ]) {
          expect(await walkedPaths(driver.walk(at('walk'), { startAfter })), startAfter).toEqual(
            all.filter((path) => path > startAfter),
          );
        }
      });

      it('yields nothing for a missing path, a file, or a name prefix of a directory', async () => {
        for (const path of [
          at('absent'),
          at('absent', 'deeper'),
          at('walk', 'a.b'),
          at('walk', 'a.b', 'below'),
          at('wal'),
          at('walk', 'a', 'c', 'd'),
        ]) {
          expect(await collect(driver.walk(path)), path).toEqual([]);
        }
      });

      it('walks a directory that is only the parent of one file', async () => {
        const path = at('only', 'parent', 'file');
        await driver.putContent(path, random(7));
        expect(await walkedPaths(driver.walk(at('only', 'parent')))).toEqual([path]);
        expect(await walkedPaths(driver.walk(at('only')))).toEqual([path]);
      });

      it('walks the root, showing no hidden object', async () => {
        const walked = await collect(driver.walk('/'));
        expect(walked.map(({ path }) => path).filter((path) => path.startsWith(`${prefix}/`))).toEqual(
          files.map(({ path }) => path),
        );
        for (const { path, isDir } of walked) {
          expect(isValidPath(path), path).toBe(true);
          expect(isDir).toBe(false);
        }
        const paths = walked.map(({ path }) => path);
        expect(paths).toEqual([...paths].sort());
      });

      it('can be stopped early', async () => {
        const first: string[] = [];
        for await (const { path } of driver.walk(at('walk'))) {
          first.push(path);
          if (first.length === 3) break;
        }
        expect(first).toEqual(files.slice(0, 3).map(({ path }) => path));
      });

      it('shows what a writer closed only where it is readable, and once committed', async () => {
        const data = at('walk', 'upload', 'data');
        const writer = await driver.writer(data, false);
        await writer.write(random(64 * KiB));
        await writer.close();
        const closed = await collect(driver.walk(at('walk', 'upload')));
        if (options.readableWhenClosed === false) {
          expect(closed).toEqual([]);
        } else {
          expect(closed.map(({ path, size }) => ({ path, size }))).toEqual([{ path: data, size: 64 * KiB }]);
        }
        // Whatever the driver keeps for the writer is not shown, below the root included.
        for (const { path } of await collect(driver.walk('/'))) expect(isValidPath(path), path).toBe(true);
        expect((await walkedPaths(driver.walk(at('walk')))).filter((path) => path !== data)).toEqual(
          files.map(({ path }) => path),
        );

        const resumed = await driver.writer(data, true);
        await resumed.write(random(KiB));
        await resumed.commit();
        const committed = await collect(driver.walk(at('walk', 'upload')));
        expect(committed.map(({ path, size }) => ({ path, size }))).toEqual([{ path: data, size: 65 * KiB }]);
      });

      it(
        'walks more than a thousand files, across listing pages, in order',
        { timeout: 180_000 },
        async () => {
          // Fixed-width names, so that they sort alike everywhere; four directories, each below a name
          // that is a prefix of another ("d1" of "d10").
          const bulk = Array.from({ length: 1100 }, (_, index) => {
            const directory = ['d1', 'd10', 'd1-', 'd2'][index % 4] ?? 'd1';
            return at('bulk', directory, `f${String(index).padStart(4, '0')}`);
          }).sort();
          await forEachBounded(bulk, 32, (path) => driver.putContent(path, new Uint8Array([1])));

          const walked = await collect(driver.walk(at('bulk')));
          expect(walked).toHaveLength(bulk.length);
          expect(walked.map(({ path }) => path)).toEqual(bulk);
          expect(walked.every(({ size, isDir }) => size === 1 && !isDir)).toBe(true);
          for (const index of [0, 998, 999, 1000, 1001, 1098]) {
            const startAfter = bulk[index] ?? '';
            expect(await walkedPaths(driver.walk(at('bulk'), { startAfter })), startAfter).toEqual(
              bulk.slice(index + 1),
            );
          }
          expect(await walkedPaths(driver.walk(at('bulk'), { startAfter: at('bulk', 'd10') }))).toEqual(
            bulk.filter((path) => path > at('bulk', 'd10')),
          );
          expect(await walkedPaths(driver.walk(at('bulk', 'd1')))).toEqual(
            bulk.filter((path) => path.startsWith(`${at('bulk', 'd1')}/`)),
          );
          // Here rather than in the teardown, whose time is shorter.
          await driver.delete(at('bulk'));
          expect(await collect(driver.walk(at('bulk')))).toEqual([]);
        },
      );
    });

    describe('redirectURL', () => {
      it('gives undefined, or a URL serving the content', async () => {
        const path = at('redirect', 'blob');
        const content = random(10 * KiB);
        await driver.putContent(path, content);
        const url = await driver.redirectURL(path, { method: 'GET', expiresInSeconds: 300 });
        if (url === undefined) return;
        const response = await fetch(url);
        expect(response.status).toBe(200);
        expectBytes(new Uint8Array(await response.arrayBuffer()), content);
        const head = await driver.redirectURL(path, { method: 'HEAD' });
        if (head === undefined) return;
        const headResponse = await fetch(head, { method: 'HEAD' });
        expect(headResponse.status).toBe(200);
        expect(headResponse.headers.get('content-length')).toBe(String(content.length));
      });
    });
  });
}

async function collect(files: AsyncIterable<FileInfo>): Promise<FileInfo[]> {
  const collected: FileInfo[] = [];
  for await (const file of files) collected.push(file);
  return collected;
}

async function walkedPaths(files: AsyncIterable<FileInfo>): Promise<string[]> {
  return (await collect(files)).map(({ path }) => path);
}

/** Runs task over items, at most limit at a time. */
async function forEachBounded<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await task(items[next++] as T);
    }),
  );
}

function ignoreNotFound(error: unknown): void {
  if (!(error instanceof PathNotFoundError)) throw error;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, got a result');
}

async function expectNotFound(promise: Promise<unknown>, path: string): Promise<void> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(PathNotFoundError);
  expect(error).toMatchObject({ path });
}

function random(size: number): Uint8Array {
  const bytes = randomBytes(size);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min));
}

function randomName(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-';
  let name = '';
  for (let index = randomInt(3, 20); index > 0; index--)
    name += alphabet[randomInt(0, alphabet.length)] ?? '';
  return name === '.' || name === '..' || /^\.+$/.test(name) ? `x${name}` : name;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Compares by length and hash, so a mismatch of large contents reports briefly. */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual).toBeInstanceOf(Uint8Array);
  expect({ length: actual.length, sha256: sha256(actual) }).toEqual({
    length: expected.length,
    sha256: sha256(expected),
  });
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const result = new Uint8Array(chunks.reduce((total, chunk) => total + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    result.set(chunk, offset);
    offset += chunk.length;
  }
  return result;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const reader = stream.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    expect(next.value).toBeInstanceOf(Uint8Array);
    chunks.push(next.value);
  }
  return concat(chunks);
}
