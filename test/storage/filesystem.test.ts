import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  mkdir,
  lstat,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  realpath,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { InvalidPathError, PathNotFoundError, StorageError } from '../../functions/storage/driver.js';
import { FilesystemDriver } from '../../functions/storage/filesystem.js';
import { describeStorageDriver } from './driver-suite.js';

let suiteRoot: string;
beforeAll(async () => {
  suiteRoot = await mkdtemp(join(tmpdir(), 'storage-suite-'));
});
afterAll(async () => {
  await rm(suiteRoot, { recursive: true, force: true });
});

// Every driver the factory makes shares the directory, as two registry processes would.
describeStorageDriver(
  'filesystem',
  () => Promise.resolve({ driver: new FilesystemDriver(suiteRoot), cleanup: () => Promise.resolve() }),
  { sharedAcrossInstances: true },
);

describe('FilesystemDriver', () => {
  let base: string;
  let root: string;
  let outside: string;
  let driver: FilesystemDriver;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'storage-fs-'));
    root = join(base, 'root');
    outside = join(base, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret'), 'secret');
    driver = new FilesystemDriver(root);
  });

  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('stores the path /a/b/c as the file <root>/a/b/c', async () => {
    await driver.putContent('/a/b/c', new TextEncoder().encode('hello'));
    expect(await readFile(join(root, 'a', 'b', 'c'), 'utf8')).toBe('hello');
  });

  it('treats a missing root directory as empty and creates it on the first write', async () => {
    await expect(driver.list('/')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.stat('/x')).rejects.toBeInstanceOf(PathNotFoundError);
    await driver.putContent('/x', new Uint8Array([1]));
    expect(await driver.list('/')).toEqual(['/x']);
  });

  it('leaves no temporary file after putContent and never lists temporary files', async () => {
    await Promise.all(
      Array.from({ length: 10 }, (_, index) => driver.putContent(`/dir/f${index}`, randomBytes(64 * 1024))),
    );
    expect((await readdir(join(root, 'dir'))).filter((name) => name.startsWith('~'))).toEqual([]);

    // What a putContent interrupted by a crash leaves behind.
    await writeFile(join(root, 'dir', '~tmp-crashed'), 'partial');
    await writeFile(join(root, '~tmp-crashed'), 'partial');
    expect(await driver.list('/')).toEqual(['/dir']);
    expect(await driver.list('/dir')).toEqual(
      Array.from({ length: 10 }, (_, index) => `/dir/f${index}`).sort(),
    );
    await mkdir(join(root, 'only-temp'));
    await writeFile(join(root, 'only-temp', '~tmp-crashed'), 'partial');
    await expect(driver.list('/only-temp')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.stat('/dir/~tmp-crashed')).rejects.toBeInstanceOf(InvalidPathError);
  });

  it('does not follow a directory symlink out of the root', async () => {
    await mkdir(root);
    await symlink(outside, join(root, 'escape'));
    await expect(driver.getContent('/escape/secret')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.reader('/escape/secret')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.stat('/escape')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.list('/escape')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.delete('/escape/secret')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.move('/escape/secret', '/stolen')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.putContent('/escape/planted', new Uint8Array([1]))).rejects.toBeInstanceOf(
      StorageError,
    );
    await expect(driver.putContent('/escape/deep/planted', new Uint8Array([1]))).rejects.toBeInstanceOf(
      StorageError,
    );
    await expect(driver.writer('/escape/planted', true)).rejects.toBeInstanceOf(StorageError);
    await driver.putContent('/inside', new Uint8Array([1]));
    await expect(driver.move('/inside', '/escape/moved')).rejects.toBeInstanceOf(StorageError);

    expect((await readdir(outside)).sort()).toEqual(['secret']);
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret');
    expect(await readlink(join(root, 'escape'))).toBe(outside);

    // Deleting the symlink removes the link, not what it points to.
    await driver.delete('/escape');
    await expect(lstat(join(root, 'escape'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret');
  });

  it('does not read or append through a file symlink out of the root, and replaces it on put', async () => {
    await mkdir(root);
    await symlink(join(outside, 'secret'), join(root, 'link'));
    await expect(driver.getContent('/link')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.writer('/link', true)).rejects.toBeInstanceOf(StorageError);
    await expect(driver.writer('/link', false)).rejects.toBeInstanceOf(StorageError);
    await driver.putContent('/link', new TextEncoder().encode('mine'));
    expect(new TextDecoder().decode(await driver.getContent('/link'))).toBe('mine');
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret');
  });

  it('follows a symlink that stays inside the root', async () => {
    await driver.putContent('/real/file', new TextEncoder().encode('data'));
    await symlink(join(root, 'real'), join(root, 'alias'));
    expect(new TextDecoder().decode(await driver.getContent('/alias/file'))).toBe('data');
    await driver.delete('/alias');
    expect(new TextDecoder().decode(await driver.getContent('/real/file'))).toBe('data');
  });

  it("keeps a closed writer's content for another driver instance, which can append to it", async () => {
    const writer = await driver.writer('/upload/data', false);
    await writer.write(new TextEncoder().encode('first '));
    await writer.close();

    const second = new FilesystemDriver(root);
    expect(new TextDecoder().decode(await second.getContent('/upload/data'))).toBe('first ');
    const resumed = await second.writer('/upload/data', true);
    expect(resumed.size).toBe(6);
    await resumed.write(new TextEncoder().encode('second'));
    await resumed.commit();
    expect(await readFile(join(root, 'upload', 'data'), 'utf8')).toBe('first second');
  });

  it.runIf(existsSync('/proc/self/fd'))('closes the file when a reader is cancelled', async () => {
    await driver.putContent('/big', randomBytes(4 * 1024 * 1024));
    const file = await realpath(join(root, 'big'));
    const reader = (await driver.reader('/big')).getReader();
    expect((await reader.read()).done).toBe(false);
    expect(await openDescriptors(file)).toBeGreaterThan(0);
    await reader.cancel();
    expect(await openDescriptors(file)).toBe(0);

    const whole = (await driver.reader('/big', 0, 10)).getReader();
    while (!(await whole.read()).done);
    expect(await openDescriptors(file)).toBe(0);
  });
});

/** How many of this process's file descriptors are open on file (Linux). */
async function openDescriptors(file: string): Promise<number> {
  let count = 0;
  for (const fd of await readdir('/proc/self/fd')) {
    try {
      if ((await readlink(join('/proc/self/fd', fd))) === file) count++;
    } catch {
      // Closed meanwhile.
    }
  }
  return count;
}
