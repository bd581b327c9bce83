import { RegistryError } from './errors.js';
import type { PageRequest } from '../metadata/store.js';

/** The request body's chunks. Runtime adapters give bodies of bytes; WHATWG types them loosely. */
export function chunks(request: Request): AsyncIterable<Uint8Array> {
  return (request.body ?? []) as AsyncIterable<Uint8Array>;
}

/** Reads a whole small body (a manifest), refusing with 413 anything over limit bytes. */
export async function readBody(request: Request, limit: number, what: string): Promise<Uint8Array> {
  const declared = request.headers.get('content-length');
  const tooLarge = () =>
    new RegistryError('SIZE_INVALID', `${what} is larger than the ${limit} byte limit`, { status: 413 });
  if (declared !== null && Number(declared) > limit) throw tooLarge();
  if (!request.body) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks(request)) {
    size += chunk.byteLength;
    if (size > limit) throw tooLarge();
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

/**
 * The `n` and `last` query parameters of tag and catalog listings. Without n, a listing returns up to
 * defaultLimit entries; n above maxLimit is lowered to it. Either way a Link header offers the rest.
 */
export function pageRequest(url: URL, defaultLimit: number, maxLimit: number): PageRequest {
  const n = url.searchParams.get('n');
  const last = url.searchParams.get('last') ?? undefined;
  if (n === null || n === '') return { last, limit: defaultLimit };
  if (!/^\d+$/.test(n)) {
    throw new RegistryError(
      'PAGINATION_NUMBER_INVALID',
      `n must be a non-negative integer, got ${JSON.stringify(n)}`,
    );
  }
  return { last, limit: Math.min(Number(n), maxLimit) };
}

/** An RFC 5988 Link header to the next page, as the spec describes. */
export function nextLink(path: string, limit: number, last: string): string {
  const query = new URLSearchParams({ n: String(limit), last });
  return `<${path}?${query.toString()}>; rel="next"`;
}
