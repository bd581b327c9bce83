/**
 * Small helpers for the API suite: the target abstraction, digests, pushes and error assertions.
 * Everything here talks to a registry only through ApiTarget.request, so the same code drives the
 * core (Registry.handle) and a real HTTP server.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, expect } from 'vitest';
import type { RegistryOptions } from '../../functions/registry/context.js';

/** A registry to talk to: the core called directly, or a server behind an HTTP adapter. */
export interface ApiTarget {
  /** Sends a request for path (starting with /v2) and answers the registry's response. */
  request(path: string, init?: RequestInit): Promise<Response>;
  /**
   * Another registry with other options over this target's storage, as a second process sharing it
   * would be (used to seed data through a writable registry and read it through a read-only one).
   * Closed together with this target.
   */
  reopen(options: Partial<RegistryOptions>): Promise<ApiTarget>;
  /** Stops the target and removes its storage. */
  close(): Promise<void>;
}

/** Builds a fresh target, with empty storage, whose registry has the given options. */
export type MakeTarget = (options?: Partial<RegistryOptions>) => Promise<ApiTarget>;

/** What a test uses: a fresh target per test, closed after it. */
export type Api = Pick<ApiTarget, 'request' | 'reopen'>;

/** Registers a fresh target for every test of the enclosing describe; the returned object reaches the current one. */
export function useTarget(makeTarget: MakeTarget, options?: Partial<RegistryOptions>): Api {
  let current: ApiTarget | undefined;
  beforeEach(async () => {
    current = await makeTarget(options);
  });
  afterEach(async () => {
    const target = current;
    current = undefined;
    await target?.close();
  });
  const target = (): ApiTarget => {
    if (current === undefined) throw new Error('the target is only available inside a test');
    return current;
  };
  return {
    request: (path, init) => target().request(path, init),
    reopen: (reopenOptions) => target().reopen(reopenOptions),
  };
}

// Media types.

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

// Bytes and digests.

export function encode(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function sha256(content: Uint8Array): string {
  return `sha256:${createHash('sha256').update(content).digest('hex')}`;
}

export function sha512(content: Uint8Array): string {
  return `sha512:${createHash('sha512').update(content).digest('hex')}`;
}

/** Random bytes, so that blobs of different tests never share a digest by accident. */
export function randomContent(size: number): Uint8Array {
  return new Uint8Array(randomBytes(size));
}

export const EMPTY_DIGEST = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** The whole body of a response. */
export async function bodyOf(response: Response): Promise<Uint8Array> {
  return new Uint8Array(await response.arrayBuffer());
}

/** Asserts two byte sequences are equal, with a readable failure for small ones and a digest for large ones. */
export function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.byteLength).toBe(expected.byteLength);
  if (expected.byteLength <= 4096) {
    expect(Buffer.from(actual).toString('hex')).toBe(Buffer.from(expected).toString('hex'));
  } else {
    expect(sha256(actual)).toBe(sha256(expected));
    expect(Buffer.compare(Buffer.from(actual), Buffer.from(expected))).toBe(0);
  }
}

/** A body that arrives in chunks, with no Content-Length: `{ ...streamed(bytes), method: 'PATCH' }`. */
export function streamed(content: Uint8Array, chunkSize = 64 * 1024): Pick<RequestInit, 'body' | 'duplex'> {
  let position = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (position >= content.byteLength) {
        controller.close();
        return;
      }
      const end = Math.min(content.byteLength, position + chunkSize);
      controller.enqueue(content.slice(position, end));
      position = end;
    },
  });
  return { body, duplex: 'half' };
}

// Headers and URLs.

/** The path and query of a Location (which the spec allows to be absolute), to request it again. */
export function pathOf(location: string | null): string {
  if (location === null) throw new Error('the response has no Location header');
  const url = new URL(location, 'http://registry.test');
  return `${url.pathname}${url.search}`;
}

/** path with query parameters added, keeping any query it has (upload locations may carry state). */
export function withQuery(path: string, query: Record<string, string>): string {
  const url = new URL(path, 'http://registry.test');
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  return `${url.pathname}${url.search}`;
}

/** The target of a `Link: <url>; rel="next"` header, or undefined when there is none. */
export function nextPage(response: Response): string | undefined {
  const link = response.headers.get('link');
  if (link === null) return undefined;
  const match = /^<([^>]+)>;\s*rel="next"$/.exec(link);
  if (!match?.[1]) throw new Error(`malformed Link header ${JSON.stringify(link)}`);
  return pathOf(match[1]);
}

// Errors.

/** Asserts the response is the spec's error body carrying code (and the status, when given). */
export async function expectError(response: Response, code: string, status?: number): Promise<void> {
  if (status !== undefined) expect(response.status).toBe(status);
  expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await response.json()) as { errors?: { code?: unknown; message?: unknown }[] };
  expect(Array.isArray(body.errors)).toBe(true);
  expect(body.errors?.map((error) => error.code)).toContain(code);
}

// Uploads and pushes.

export interface Pushed {
  digest: string;
  size: number;
}

/** Starts an upload session in repository and answers its Location path. */
export async function startUpload(api: Api, repository: string): Promise<string> {
  const response = await api.request(`/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  expect(response.status).toBe(202);
  return pathOf(response.headers.get('location'));
}

/** Pushes content as a blob of repository (monolithic POST) and answers its digest and size. */
export async function pushBlob(api: Api, repository: string, content: Uint8Array): Promise<Pushed> {
  const digest = sha256(content);
  const response = await api.request(`/v2/${repository}/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    body: content,
    headers: { 'Content-Type': 'application/octet-stream' },
  });
  expect(response.status).toBe(201);
  return { digest, size: content.byteLength };
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** Pushes content as a blob and answers its descriptor. */
export async function pushDescriptor(
  api: Api,
  repository: string,
  mediaType: string,
  content: Uint8Array,
): Promise<Descriptor> {
  const { digest, size } = await pushBlob(api, repository, content);
  return { mediaType, digest, size };
}

/**
 * Manifest bytes as a client would send them: indented, so a registry that re-serialized the JSON
 * instead of keeping the exact bytes would change the digest.
 */
export function manifestBytes(manifest: object): Uint8Array {
  return encode(JSON.stringify(manifest, null, 3));
}

/** PUTs a manifest (an object, serialized by manifestBytes, or exact bytes) at /v2/repository/manifests/reference. */
export function putManifest(
  api: Api,
  repository: string,
  reference: string,
  manifest: object | Uint8Array,
  mediaType: string = OCI_MANIFEST,
): Promise<Response> {
  const body = manifest instanceof Uint8Array ? manifest : manifestBytes(manifest);
  return api.request(`/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    body,
    headers: { 'Content-Type': mediaType },
  });
}

export interface PushedManifest {
  digest: string;
  bytes: Uint8Array;
  manifest: Record<string, unknown>;
}

export interface ImageOptions {
  /** Tag to push to; without it, the manifest is pushed by digest. */
  tag?: string;
  configMediaType?: string;
  /** Added to the manifest as they are (artifactType, subject, annotations, ...). */
  fields?: Record<string, unknown>;
}

/** Pushes a config and a layer blob and an OCI image manifest naming them; asserts 201. */
export async function pushImage(
  api: Api,
  repository: string,
  options: ImageOptions = {},
): Promise<PushedManifest> {
  const config = await pushDescriptor(
    api,
    repository,
    options.configMediaType ?? OCI_CONFIG,
    encode(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        nonce: Buffer.from(randomContent(8)).toString('hex'),
      }),
    ),
  );
  const layer = await pushDescriptor(api, repository, OCI_LAYER, randomContent(300));
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: [layer],
    ...options.fields,
  };
  return pushManifest(api, repository, manifest, OCI_MANIFEST, options.tag);
}

/** PUTs manifest by tag (or by its digest without one); asserts 201 and the digest. */
export async function pushManifest(
  api: Api,
  repository: string,
  manifest: Record<string, unknown>,
  mediaType: string,
  tag?: string,
): Promise<PushedManifest> {
  const bytes = manifestBytes(manifest);
  const digest = sha256(bytes);
  const response = await putManifest(api, repository, tag ?? digest, bytes, mediaType);
  expect(response.status).toBe(201);
  expect(response.headers.get('docker-content-digest')).toBe(digest);
  return { digest, bytes, manifest };
}

/** The descriptor of a pushed manifest, as an index or a subject field names it. */
export function manifestDescriptor(pushed: PushedManifest, mediaType: string = OCI_MANIFEST): Descriptor {
  return { mediaType, digest: pushed.digest, size: pushed.bytes.byteLength };
}

/** A value that must be there, without a non-null assertion. */
export function required<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`missing ${what}`);
  return value;
}

/**
 * A blob GET as clients make it: the registry answers with the bytes, or with a 307 to storage (the
 * AWS shape) that is followed with the same headers. registry is the registry's own answer, which
 * must name the digest either way; response is the one carrying the bytes.
 */
export async function getBlob(
  api: Api,
  repository: string,
  digest: string,
  headers: Record<string, string> = {},
): Promise<{ registry: Response; response: Response }> {
  const registry = await api.request(`/v2/${repository}/blobs/${digest}`, { headers, redirect: 'manual' });
  expect(registry.headers.get('docker-content-digest')).toBe(digest);
  if (registry.status !== 307) return { registry, response: registry };
  const location = registry.headers.get('location');
  if (location === null) throw new Error('a 307 without Location');
  return { registry, response: await fetch(location, { headers }) };
}
