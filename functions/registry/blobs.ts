import { PathNotFoundError } from '../storage/driver.js';
import type { Context } from './context.js';
import { parseDigest } from './digest.js';
import { RegistryError } from './errors.js';
import { linkDirectUpload } from './uploads.js';

/** GET and HEAD of a blob: served only when the blob is linked into the repository. */
export async function getBlob(
  ctx: Context,
  request: Request,
  name: string,
  reference: string,
): Promise<Response> {
  const digest = parseDigest(reference);
  const link =
    (await ctx.metadata.getBlobLink(name, digest.value)) ?? (await linkDirectUpload(ctx, name, digest));
  if (!link) throw blobUnknown(digest.value);
  const headers: Record<string, string> = {
    'Docker-Content-Digest': digest.value,
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: `"${digest.value}"`,
    'Cache-Control': 'max-age=31536000',
  };
  if (request.method === 'HEAD') {
    return new Response(null, { status: 200, headers: { ...headers, 'Content-Length': String(link.size) } });
  }

  if (ctx.options.redirect) {
    const location = await ctx.blobs.redirectURL(digest, 'GET', ctx.options.redirectExpirySeconds);
    if (location !== undefined) {
      return new Response(null, {
        status: 307,
        headers: { Location: location, 'Docker-Content-Digest': digest.value, 'Content-Length': '0' },
      });
    }
  }

  const range = byteRange(request.headers.get('range'), link.size);
  try {
    const body = await ctx.blobs.reader(
      digest,
      range?.start ?? 0,
      range ? range.end - range.start + 1 : undefined,
    );
    if (!range)
      return new Response(body, {
        status: 200,
        headers: { ...headers, 'Content-Length': String(link.size) },
      });
    return new Response(body, {
      status: 206,
      headers: {
        ...headers,
        'Content-Length': String(range.end - range.start + 1),
        'Content-Range': `bytes ${range.start}-${range.end}/${link.size}`,
      },
    });
  } catch (error) {
    // Linked but not stored: the bytes were lost or collected; say unknown rather than fail.
    if (error instanceof PathNotFoundError) throw blobUnknown(digest.value);
    throw error;
  }
}

/** DELETE of a blob unlinks it from the repository; its bytes go when no repository uses them (garbage collection). */
export async function deleteBlob(ctx: Context, name: string, reference: string): Promise<Response> {
  const digest = parseDigest(reference);
  if (!(await ctx.metadata.unlinkBlob(name, digest.value))) throw blobUnknown(digest.value);
  return new Response(null, { status: 202, headers: { 'Content-Length': '0' } });
}

function blobUnknown(digest: string): RegistryError {
  return new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
}

/**
 * A single "bytes=" range of RFC 9110 (first-last, first-, or -suffix), or undefined for no Range
 * header or one this registry serves whole (several ranges). An unsatisfiable range is a 416.
 */
function byteRange(header: string | null, size: number): { start: number; end: number } | undefined {
  if (header === null) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) {
    if (/^bytes=[\d\s,-]+$/.test(header.trim())) return undefined;
    throw unsatisfiable(header, size);
  }
  const [, first = '', last = ''] = match;
  let start: number;
  let end: number;
  if (first === '') {
    if (last === '' || Number(last) === 0) throw unsatisfiable(header, size);
    start = Math.max(size - Number(last), 0);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== '' && Number(last) < start) throw unsatisfiable(header, size);
  }
  if (start >= size) throw unsatisfiable(header, size);
  return { start, end };
}

function unsatisfiable(header: string, size: number): RegistryError {
  return new RegistryError('SIZE_INVALID', `range ${JSON.stringify(header)} is not satisfiable`, {
    status: 416,
    headers: { 'Content-Range': `bytes */${size}` },
  });
}
