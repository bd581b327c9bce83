import { createHash, randomUUID } from 'node:crypto';
import { type Access, repositoryScope } from '../auth/access.js';
import type { BlobLink, UploadSession } from '../metadata/store.js';
import type { Context } from './context.js';
import { type Digest, NativeHash, parseDigest, PortableHash, type RunningHash } from './digest.js';
import { RegistryError } from './errors.js';
import { checkRepositoryName } from './names.js';
import { chunks } from './request.js';

/**
 * Blob uploads: POST starts one (or uploads monolithically, or mounts), PATCH appends, PUT finishes,
 * GET reports progress, DELETE cancels. A session lives in the MetadataStore (offset and the SHA-256
 * of the bytes so far) and its bytes in the BlobStore, so any process can serve any step.
 */

const UPLOAD_ID = /^[A-Za-z0-9-]{1,64}$/;

export async function startUpload(
  ctx: Context,
  request: Request,
  name: string,
  url: URL,
  access: Access,
): Promise<Response> {
  const mount = url.searchParams.get('mount');
  const from = url.searchParams.get('from');
  // Without pull on the source, a mount is not refused: it becomes a normal upload, as the spec allows.
  if (mount !== null && from !== null && access.allows(repositoryScope(from, 'pull'))) {
    const mounted = await mountBlob(ctx, name, parseDigest(mount), from);
    if (mounted) return blobCreated(name, mounted);
  }
  const digest = url.searchParams.get('digest');
  const session = await createSession(ctx, name);
  if (digest !== null) {
    // Monolithic upload: the whole blob in the POST body.
    return finishUpload(ctx, request, session, parseDigest(digest));
  }
  return uploadAccepted(ctx, session, 202, true);
}

export async function patchUpload(
  ctx: Context,
  request: Request,
  name: string,
  id: string,
): Promise<Response> {
  const session = await getSession(ctx, name, id);
  const updated = await appendBody(ctx, request, session, false);
  return uploadAccepted(ctx, updated, 202);
}

export async function putUpload(
  ctx: Context,
  request: Request,
  name: string,
  id: string,
  url: URL,
): Promise<Response> {
  const digest = url.searchParams.get('digest');
  if (digest === null) throw new RegistryError('DIGEST_INVALID', 'the digest query parameter is required');
  const parsed = parseDigest(digest);
  const session = await getSession(ctx, name, id);
  return finishUpload(ctx, request, session, parsed);
}

export async function uploadStatus(ctx: Context, name: string, id: string): Promise<Response> {
  return uploadAccepted(ctx, await getSession(ctx, name, id), 204);
}

export async function cancelUpload(ctx: Context, name: string, id: string): Promise<Response> {
  const session = await getSession(ctx, name, id);
  await ctx.metadata.deleteUpload(name, session.id);
  await ctx.blobs.deleteUpload(session.id);
  return new Response(null, { status: 204, headers: { 'Content-Length': '0' } });
}

/**
 * Links a blob that the upload edge stored straight into storage, on the first request that needs it
 * (a blob HEAD or GET, a manifest PUT). The object's metadata names the repository and the upload
 * session it came from; that session must still be open in this repository, so a cancelled, finished or
 * foreign upload links nothing. Storage checked the bytes against the digest as they arrived.
 */
export async function linkDirectUpload(
  ctx: Context,
  name: string,
  digest: Digest,
): Promise<BlobLink | undefined> {
  if (ctx.uploads?.edge !== true || digest.algorithm !== 'sha256') return undefined;
  // Marked before its bytes are looked at, as garbage collection requires (see BlobStore.markUsed).
  await ctx.blobs.markUsed([digest]);
  const stored = await ctx.blobs.directUpload(digest);
  if (stored?.repository !== name) return undefined;
  const session = UPLOAD_ID.test(stored.upload)
    ? await ctx.metadata.getUpload(name, stored.upload)
    : undefined;
  if (!session) return undefined;
  const link: BlobLink = { digest: digest.value, size: stored.size };
  await ctx.metadata.linkBlob(name, link);
  await discard(ctx, session);
  ctx.log.info('linked a blob stored by the upload edge', {
    repository: name,
    digest: digest.value,
    size: stored.size,
    upload: session.id,
  });
  return link;
}

/** Links a blob from another repository; undefined (so a normal upload follows) when from cannot give it. */
async function mountBlob(
  ctx: Context,
  name: string,
  digest: Digest,
  from: string,
): Promise<Digest | undefined> {
  try {
    checkRepositoryName(from);
  } catch {
    return undefined;
  }
  const link = await ctx.metadata.getBlobLink(from, digest.value);
  if (!link) return undefined;
  await ctx.blobs.markUsed([digest]);
  if ((await ctx.blobs.size(digest)) === undefined) return undefined;
  await ctx.metadata.linkBlob(name, link);
  return digest;
}

async function createSession(ctx: Context, name: string): Promise<UploadSession> {
  const now = new Date();
  const session: UploadSession = {
    id: randomUUID(),
    repository: name,
    offset: 0,
    sha256: createHash('sha256').digest('hex'),
    startedAt: now.toISOString(),
    expiresAt: expiry(ctx, now),
  };
  await ctx.metadata.createUpload(session);
  return session;
}

async function getSession(ctx: Context, name: string, id: string): Promise<UploadSession> {
  const session = UPLOAD_ID.test(id) ? await ctx.metadata.getUpload(name, id) : undefined;
  if (!session) {
    throw new RegistryError('BLOB_UPLOAD_UNKNOWN', 'upload session unknown or expired', {
      detail: { uuid: id },
    });
  }
  return session;
}

/**
 * Appends the request body to the session's bytes, hashing as it streams. A Content-Range must start
 * where the session stands, or the chunk is refused with 416 and the session is kept as it was. When
 * the client goes away mid-body, what arrived is kept and counted, so the upload can resume. With
 * finish, the upload's bytes are committed (made whole and readable) for the final PUT.
 */
async function appendBody(
  ctx: Context,
  request: Request,
  session: UploadSession,
  finish: boolean,
): Promise<UploadSession> {
  const range = contentRange(ctx, request, session);
  if (!request.body && !(finish && session.offset > 0)) return session;
  const hash = request.body ? await runningHash(ctx, session) : undefined;
  const writer = await ctx.blobs.uploadWriter(session.id, true);
  if (writer.size !== session.offset) {
    // Only a crash between storing bytes and recording them leads here: the session cannot be trusted.
    await writer.close();
    await discard(ctx, session);
    throw new RegistryError(
      'BLOB_UPLOAD_INVALID',
      'the upload was interrupted inconsistently: start it again',
      {
        status: 416,
      },
    );
  }
  let failure: Error | undefined;
  try {
    if (hash) {
      for await (const chunk of chunks(request)) {
        await writer.write(chunk);
        hash.update(chunk);
      }
    }
  } catch (error) {
    // Usually the client went away; keep what arrived, then fail this request.
    failure = error instanceof Error ? error : new Error(String(error));
  }
  await (finish && !failure ? writer.commit() : writer.close());
  if (!hash) return session;

  const updated: UploadSession = {
    ...session,
    offset: hash.size,
    sha256: hash.hexSoFar(),
    hashState: hash.state(),
    expiresAt: expiry(ctx, new Date()),
  };
  if (!(await ctx.metadata.updateUpload(updated, session.offset))) {
    // Another request moved this session on while we wrote: both appended, so neither can be trusted.
    await discard(ctx, session);
    throw new RegistryError(
      'BLOB_UPLOAD_INVALID',
      'concurrent writes to one upload session: start it again',
      {
        status: 416,
      },
    );
  }
  ctx.hashes.put(session.id, hash);
  if (failure !== undefined) throw failure;
  if (range && hash.size !== range.end + 1) {
    throw new RegistryError(
      'SIZE_INVALID',
      `Content-Range ends at ${range.end} but the body ended at ${hash.size - 1}`,
      { status: 416, headers: progressHeaders(ctx, updated) },
    );
  }
  return updated;
}

/** Appends a final chunk if the request has one, checks the digest, and makes the bytes a blob of the repository. */
async function finishUpload(
  ctx: Context,
  request: Request,
  session: UploadSession,
  digest: Digest,
): Promise<Response> {
  const final = await appendBody(ctx, request, session, true);
  const actual =
    digest.algorithm === 'sha256' ? `sha256:${final.sha256}` : await rehash(ctx, final, digest.algorithm);
  if (actual !== digest.value) {
    await discard(ctx, final);
    throw new RegistryError(
      'DIGEST_INVALID',
      `the uploaded content has digest ${actual}, not ${digest.value}`,
      {
        detail: { expected: digest.value, actual },
      },
    );
  }
  await ctx.blobs.markUsed([digest]);
  await ctx.blobs.commitUpload(final.id, digest, final.offset);
  await ctx.metadata.linkBlob(final.repository, { digest: digest.value, size: final.offset });
  await ctx.metadata.deleteUpload(final.repository, final.id);
  return blobCreated(final.repository, digest);
}

/**
 * The session's running hash: this process's cached one, one resumed from the session's persisted
 * state, or (without persisted state) one re-derived from the stored bytes and checked against the
 * session's digest so far.
 */
async function runningHash(ctx: Context, session: UploadSession): Promise<RunningHash> {
  const cached = ctx.hashes.take(session.id, session.offset);
  if (cached) return cached;
  if (session.hashState !== undefined) return PortableHash.resume(session.hashState, session.offset);
  const hash = ctx.options.persistHashState ? await PortableHash.start() : new NativeHash();
  if (session.offset > 0) {
    for await (const chunk of await ctx.blobs.uploadReader(session.id, 0, session.offset)) hash.update(chunk);
    if (hash.size !== session.offset || hash.hexSoFar() !== session.sha256) {
      await discard(ctx, session);
      throw new RegistryError(
        'BLOB_UPLOAD_INVALID',
        'the stored upload does not match its session: start it again',
        {
          status: 416,
        },
      );
    }
  }
  return hash;
}

async function rehash(ctx: Context, session: UploadSession, algorithm: string): Promise<string> {
  const hash = createHash(algorithm);
  if (session.offset > 0) {
    for await (const chunk of await ctx.blobs.uploadReader(session.id)) hash.update(chunk);
  }
  return `${algorithm}:${hash.digest('hex')}`;
}

async function discard(ctx: Context, session: UploadSession): Promise<void> {
  await ctx.metadata.deleteUpload(session.repository, session.id);
  await ctx.blobs.deleteUpload(session.id);
}

/** Parses Content-Range ("start-end", as the spec writes it; "bytes start-end" too) and checks it continues the upload. */
function contentRange(
  ctx: Context,
  request: Request,
  session: UploadSession,
): { start: number; end: number } | undefined {
  const header = request.headers.get('content-range');
  if (header === null) return undefined;
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!match) {
    throw new RegistryError('BLOB_UPLOAD_INVALID', `malformed Content-Range ${JSON.stringify(header)}`, {
      status: 416,
      headers: progressHeaders(ctx, session),
    });
  }
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (start !== session.offset || end < start) {
    throw new RegistryError(
      'BLOB_UPLOAD_INVALID',
      `chunk ${start}-${end} does not continue the upload, which has ${session.offset} bytes`,
      { status: 416, headers: progressHeaders(ctx, session) },
    );
  }
  const length = request.headers.get('content-length');
  if (length !== null && Number(length) !== end - start + 1) {
    throw new RegistryError(
      'SIZE_INVALID',
      `Content-Length ${length} does not match Content-Range ${start}-${end}`,
      {
        status: 416,
        headers: progressHeaders(ctx, session),
      },
    );
  }
  return { start, end };
}

function uploadAccepted(ctx: Context, session: UploadSession, status: 202 | 204, started = false): Response {
  return new Response(null, {
    status,
    headers: { ...progressHeaders(ctx, session, started), 'Content-Length': '0' },
  });
}

function progressHeaders(ctx: Context, session: UploadSession, started = false): Record<string, string> {
  return {
    Location: uploadLocation(ctx, session, started),
    // docker requires Range on every answer; distribution writes "0-0" for an empty upload too.
    Range: `0-${Math.max(session.offset - 1, 0)}`,
    'Docker-Upload-UUID': session.id,
  };
}

/**
 * Where the client sends the upload's next request. A new upload's URL is signed when the upload may
 * leave this API: to the upload edge (one PUT of the whole blob straight to storage) or to the upload
 * service. Later answers of the registry's own API point back at it, unsigned: the bytes they took are
 * in the session, so the edge must not take the final PUT. The upload service keeps signing its own.
 */
function uploadLocation(ctx: Context, session: UploadSession, started: boolean): string {
  const routing = ctx.uploads;
  const path = `/v2/${session.repository}/blobs/uploads/${session.id}`;
  if (routing === undefined) return path;
  const signed = () => routing.signer.signedPath(session.repository, session.id);
  if (started && routing.service !== undefined) return `${routing.service.replace(/\/+$/, '')}${signed()}`;
  return (started && routing.edge) || routing.only ? signed() : path;
}

function blobCreated(name: string, digest: Digest): Response {
  return new Response(null, {
    status: 201,
    headers: {
      Location: `/v2/${name}/blobs/${digest.value}`,
      'Docker-Content-Digest': digest.value,
      'Content-Length': '0',
    },
  });
}

function expiry(ctx: Context, from: Date): string {
  return new Date(from.getTime() + ctx.options.uploadTTLSeconds * 1000).toISOString();
}
