// Deterministic OCI image layouts, written by hand (a small ustar writer + gzip + JSON), no daemon needed:
//   multiLayer - 3 gzip layers (small files; 100 MiB of incompressible pseudo-random bytes; a whiteout and a
//                replaced file), linux/amd64
//   small      - 1 small layer, linux/amd64
//   multiArch  - an OCI index with linux/amd64 and linux/arm64 images (tag v1; per-platform tags amd64/arm64)
// The bytes are identical on every run (fixed mtimes/owners, an AES-CTR keystream as "random" data, fixed
// gzip level), so they are built once into a cache dir under the OS temp dir and reused by every suite and
// every later run; each process re-verifies every blob's sha256 before use.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlibConstants, createGunzip, createGzip } from 'node:zlib';

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

const REF_NAME = 'org.opencontainers.image.ref.name';
const GENERATOR_VERSION = 1;
const MTIME = 1_704_067_200; // 2024-01-01T00:00:00Z
const CREATED = '2024-01-01T00:00:00Z';
const MIB = 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface LayerInfo extends Descriptor {
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: string;
}

export interface ImageInfo {
  /** OCI layout directory; use `oci:${layout}:${tag}`. */
  layout: string;
  tag: string;
  platform: { os: string; architecture: string };
  manifest: Descriptor;
  config: Descriptor;
  layers: LayerInfo[];
}

export interface IndexInfo {
  layout: string;
  tag: string;
  index: Descriptor;
  /** One image per platform, tagged in the layout by architecture (amd64, arm64). */
  images: ImageInfo[];
}

export interface TestImages {
  multiLayer: ImageInfo;
  small: ImageInfo;
  multiArch: IndexInfo;
  /** Size of the big incompressible layer's file in bytes. */
  bigFileBytes: number;
}

// ---------------------------------------------------------------------------------------------------------
// A minimal ustar writer.

interface TarEntry {
  path: string;
  type: 'dir' | 'file';
  mode?: number;
  size?: number;
  /** File content, as one buffer or a stream of chunks totalling `size` bytes. */
  content?: Buffer | (() => AsyncIterable<Buffer> | Iterable<Buffer>);
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function tarHeader(path: string, type: '0' | '5', mode: number, size: number): Buffer {
  const header = Buffer.alloc(512);
  if (Buffer.byteLength(path) > 100) throw new Error(`tar path too long for this writer: ${path}`);
  header.write(path, 0, 100, 'utf8');
  header.write(octal(mode, 8), 100, 8, 'ascii');
  header.write(octal(0, 8), 108, 8, 'ascii'); // uid
  header.write(octal(0, 8), 116, 8, 'ascii'); // gid
  header.write(octal(size, 12), 124, 12, 'ascii');
  header.write(octal(MTIME, 12), 136, 12, 'ascii');
  header.write('        ', 148, 8, 'ascii'); // checksum placeholder
  header.write(type, 156, 1, 'ascii');
  header.write('ustar\0', 257, 6, 'ascii');
  header.write('00', 263, 2, 'ascii');
  header.write('root', 265, 32, 'ascii');
  header.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return header;
}

async function* tarStream(entries: readonly TarEntry[]): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    if (entry.type === 'dir') {
      yield tarHeader(entry.path.endsWith('/') ? entry.path : `${entry.path}/`, '5', entry.mode ?? 0o755, 0);
      continue;
    }
    const content = entry.content ?? Buffer.alloc(0);
    const size = Buffer.isBuffer(content) ? content.length : (entry.size ?? 0);
    yield tarHeader(entry.path, '0', entry.mode ?? 0o644, size);
    let written = 0;
    if (Buffer.isBuffer(content)) {
      yield content;
      written = content.length;
    } else {
      for await (const chunk of content()) {
        written += chunk.length;
        yield chunk;
      }
    }
    if (written !== size)
      throw new Error(`tar entry ${entry.path}: wrote ${written} bytes, declared ${size}`);
    if (size % 512 !== 0) yield Buffer.alloc(512 - (size % 512));
  }
  yield Buffer.alloc(1024);
}

/** Writes a tar of a directory tree (files and dirs, sorted) to `out`, e.g. an OCI layout for `ctr import`. */
export async function writeDirTar(dir: string, out: string): Promise<void> {
  const entries: TarEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(dir, rel))).sort();
    for (const name of names) {
      const relPath = rel === '' ? name : `${rel}/${name}`;
      const info = await stat(join(dir, relPath));
      if (info.isDirectory()) {
        entries.push({ path: relPath, type: 'dir' });
        await walk(relPath);
      } else {
        entries.push({
          path: relPath,
          type: 'file',
          size: info.size,
          content: () => createReadStream(join(dir, relPath)) as AsyncIterable<Buffer>,
        });
      }
    }
  };
  await walk('');
  await pipeline(Readable.from(tarStream(entries)), createWriteStream(out));
}

// ---------------------------------------------------------------------------------------------------------
// Blobs

function hashTap(onChunk: (chunk: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      onChunk(chunk);
      callback(null, chunk);
    },
  });
}

function* pseudoRandom(bytes: number, seed: string): Generator<Buffer> {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(MIB);
  for (let left = bytes; left > 0; left -= MIB) {
    yield cipher.update(left >= MIB ? zeros : zeros.subarray(0, left));
  }
}

class LayoutWriter {
  readonly blobs: string;
  private readonly refs: (Descriptor & { annotations: Record<string, string> })[] = [];

  constructor(readonly dir: string) {
    this.blobs = join(dir, 'blobs', 'sha256');
  }

  async init(): Promise<void> {
    await mkdir(this.blobs, { recursive: true });
    await writeFile(join(this.dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  }

  async json(mediaType: string, value: unknown): Promise<Descriptor> {
    const bytes = Buffer.from(JSON.stringify(value));
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(this.blobs, hex), bytes);
    return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
  }

  async layer(entries: readonly TarEntry[]): Promise<LayerInfo> {
    const diff = createHash('sha256');
    const compressed = createHash('sha256');
    let size = 0;
    const tmp = join(this.blobs, `.tmp-${randomBytes(6).toString('hex')}`);
    await pipeline(
      Readable.from(tarStream(entries)),
      hashTap((chunk) => diff.update(chunk)),
      createGzip({ level: zlibConstants.Z_BEST_SPEED }),
      hashTap((chunk) => {
        compressed.update(chunk);
        size += chunk.length;
      }),
      createWriteStream(tmp),
    );
    const hex = compressed.digest('hex');
    await rename(tmp, join(this.blobs, hex));
    return {
      mediaType: MEDIA.ociLayerGzip,
      digest: `sha256:${hex}`,
      size,
      diffId: `sha256:${diff.digest('hex')}`,
    };
  }

  async image(
    name: string,
    architecture: string,
    layerEntries: readonly (readonly TarEntry[])[],
  ): Promise<Omit<ImageInfo, 'layout' | 'tag'>> {
    const layers: LayerInfo[] = [];
    for (const entries of layerEntries) layers.push(await this.layer(entries));
    const config = await this.json(MEDIA.ociConfig, {
      created: CREATED,
      architecture,
      os: 'linux',
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Cmd: ['/bin/sh'],
        Labels: { 'org.opencontainers.image.title': name },
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: CREATED, created_by: `e2e ${name} layer ${i + 1}` })),
    });
    const manifest = await this.json(MEDIA.ociManifest, {
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
      layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
    });
    return { platform: { os: 'linux', architecture }, manifest, config, layers };
  }

  tag(descriptor: Descriptor, tag: string): void {
    const { mediaType, digest, size } = descriptor;
    this.refs.push({ mediaType, digest, size, annotations: { [REF_NAME]: tag } });
  }

  async finish(): Promise<void> {
    await writeFile(
      join(this.dir, 'index.json'),
      JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: this.refs }),
    );
  }
}

function file(path: string, text: string): TarEntry {
  return { path, type: 'file', content: Buffer.from(text) };
}

function dir(path: string): TarEntry {
  return { path, type: 'dir' };
}

async function build(root: string, bigFileBytes: number): Promise<TestImages> {
  const tag = 'v1';

  const multi = new LayoutWriter(join(root, 'multi-layer'));
  await multi.init();
  const multiImage = await multi.image('multi-layer', 'amd64', [
    [
      dir('etc'),
      dir('etc/e2e'),
      file('etc/e2e/hello.txt', 'hello from layer 1\n'),
      file('etc/e2e/remove-me', 'layer 3 deletes this file\n'),
      file('etc/e2e/replace-me', 'layer 1 version\n'),
    ],
    [
      dir('data'),
      {
        path: 'data/random.bin',
        type: 'file',
        size: bigFileBytes,
        content: () => pseudoRandom(bigFileBytes, `registry-e2e big layer v${GENERATOR_VERSION}`),
      },
    ],
    [
      dir('etc'),
      dir('etc/e2e'),
      file('etc/e2e/.wh.remove-me', ''),
      file('etc/e2e/replace-me', 'layer 3 version\n'),
      file('etc/e2e/layer3.txt', 'hello from layer 3\n'),
    ],
  ]);
  multi.tag(multiImage.manifest, tag);
  await multi.finish();

  const small = new LayoutWriter(join(root, 'small'));
  await small.init();
  const smallImage = await small.image('small', 'amd64', [
    [dir('etc'), dir('etc/e2e'), file('etc/e2e/small.txt', 'a small image\n')],
  ]);
  small.tag(smallImage.manifest, tag);
  await small.finish();

  const arch = new LayoutWriter(join(root, 'multi-arch'));
  await arch.init();
  const platformImages: ImageInfo[] = [];
  for (const architecture of ['amd64', 'arm64']) {
    const image = await arch.image(`multi-arch-${architecture}`, architecture, [
      [dir('etc'), dir('etc/e2e'), file('etc/e2e/arch.txt', `${architecture}\n`)],
    ]);
    arch.tag(image.manifest, architecture);
    platformImages.push({ ...image, layout: arch.dir, tag: architecture });
  }
  const index = await arch.json(MEDIA.ociIndex, {
    schemaVersion: 2,
    mediaType: MEDIA.ociIndex,
    manifests: platformImages.map((image) => ({ ...image.manifest, platform: image.platform })),
  });
  arch.tag(index, tag);
  await arch.finish();

  return {
    multiLayer: { ...multiImage, layout: multi.dir, tag },
    small: { ...smallImage, layout: small.dir, tag },
    multiArch: { layout: arch.dir, tag, index, images: platformImages },
    bigFileBytes,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Cache

/** sha256 (`sha256:hex`) of a file's bytes, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/** sha256 of a gzip file's uncompressed bytes: a layer's diff ID. */
export async function diffIdOfGzip(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(
    createReadStream(path),
    createGunzip(),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        callback();
      },
    }),
  );
  return `sha256:${hash.digest('hex')}`;
}

/** Checks that every blob file of an OCI layout hashes to its name; returns the digests. */
export async function verifyLayoutBlobs(layout: string): Promise<string[]> {
  const blobs = join(layout, 'blobs', 'sha256');
  const digests: string[] = [];
  for (const name of (await readdir(blobs)).sort()) {
    if (name.startsWith('.')) continue;
    const actual = await sha256File(join(blobs, name));
    if (actual !== `sha256:${name}`) throw new Error(`blob ${blobs}/${name} hashes to ${actual}`);
    digests.push(actual);
  }
  return digests;
}

export function blobPath(layout: string, digest: string): string {
  return join(layout, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
}

let cached: Promise<TestImages> | undefined;

/**
 * The test images, built on first use and cached (E2E_IMAGE_CACHE overrides the cache dir; E2E_BIG_LAYER_MB
 * the big layer's size, default 100).
 */
export function testImages(): Promise<TestImages> {
  cached ??= loadOrBuild();
  return cached;
}

async function loadOrBuild(): Promise<TestImages> {
  const megabytes = Number(process.env.E2E_BIG_LAYER_MB ?? '100');
  if (!Number.isInteger(megabytes) || megabytes < 1)
    throw new Error('E2E_BIG_LAYER_MB must be a positive integer');
  const root =
    process.env.E2E_IMAGE_CACHE ?? join(tmpdir(), `registry-e2e-images-v${GENERATOR_VERSION}-${megabytes}m`);
  const description = join(root, 'images.json');
  try {
    const images = JSON.parse(await readFile(description, 'utf8')) as TestImages;
    for (const layout of [images.multiLayer.layout, images.small.layout, images.multiArch.layout]) {
      await verifyLayoutBlobs(layout);
    }
    return images;
  } catch {
    // missing or damaged: build it again
  }
  await rm(root, { recursive: true, force: true });
  const staging = `${root}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await mkdir(staging, { recursive: true });
  try {
    const built = await build(staging, megabytes * MIB);
    const relocate = (path: string): string => root + path.slice(staging.length);
    const images: TestImages = {
      ...built,
      multiLayer: { ...built.multiLayer, layout: relocate(built.multiLayer.layout) },
      small: { ...built.small, layout: relocate(built.small.layout) },
      multiArch: {
        ...built.multiArch,
        layout: relocate(built.multiArch.layout),
        images: built.multiArch.images.map((image) => ({ ...image, layout: relocate(image.layout) })),
      },
    };
    await writeFile(join(staging, 'images.json'), JSON.stringify(images, null, 2));
    await rename(staging, root);
    return images;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    // Another process may have won the race to publish the same bytes.
    const existing = await readFile(description, 'utf8').catch(() => undefined);
    if (existing !== undefined) return JSON.parse(existing) as TestImages;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Images of chosen sizes, for suites that need layers of a given size (e.g. under or over a request limit).

function randomLayer(seed: string, bytes: number): TarEntry[] {
  return [
    dir('data'),
    { path: 'data/random.bin', type: 'file', size: bytes, content: () => pseudoRandom(bytes, seed) },
  ];
}

/**
 * Writes an OCI layout in `root` (which must not exist yet, or be empty) holding one linux image tagged `tag`
 * whose layers each hold one file of `layerBytes[i]` incompressible pseudo-random bytes, seeded by `name`:
 * the same name and sizes give the same blobs.
 */
export async function writeRandomImage(
  root: string,
  name: string,
  layerBytes: readonly number[],
  options: { architecture?: string; tag?: string } = {},
): Promise<ImageInfo> {
  const architecture = options.architecture ?? 'amd64';
  const tag = options.tag ?? 'v1';
  const layout = new LayoutWriter(root);
  await layout.init();
  const image = await layout.image(
    name,
    architecture,
    layerBytes.map((bytes, i) => randomLayer(`${name} ${architecture} layer ${i + 1}`, bytes)),
  );
  layout.tag(image.manifest, tag);
  await layout.finish();
  return { ...image, layout: root, tag };
}

/**
 * Writes an OCI layout in `root` holding an OCI index tagged `tag` with one linux image per architecture
 * (each also tagged by its architecture), whose layers hold pseudo-random bytes as in writeRandomImage.
 */
export async function writeRandomIndex(
  root: string,
  name: string,
  architectures: readonly string[],
  layerBytes: readonly number[],
  tag = 'v1',
): Promise<IndexInfo> {
  const layout = new LayoutWriter(root);
  await layout.init();
  const images: ImageInfo[] = [];
  for (const architecture of architectures) {
    const image = await layout.image(
      `${name}-${architecture}`,
      architecture,
      layerBytes.map((bytes, i) => randomLayer(`${name} ${architecture} layer ${i + 1}`, bytes)),
    );
    layout.tag(image.manifest, architecture);
    images.push({ ...image, layout: root, tag: architecture });
  }
  const index = await layout.json(MEDIA.ociIndex, {
    schemaVersion: 2,
    mediaType: MEDIA.ociIndex,
    manifests: images.map((image) => ({ ...image.manifest, platform: image.platform })),
  });
  layout.tag(index, tag);
  await layout.finish();
  return { layout: root, tag, index, images };
}
