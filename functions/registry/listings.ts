import type { Page } from '../metadata/store.js';
import type { Context } from './context.js';
import { parseDigest } from './digest.js';
import { RegistryError } from './errors.js';
import { MediaType } from './manifest.js';
import { nextLink, pageRequest } from './request.js';

/** Without n, tag listings return every tag up to this many; catalog pages are smaller, as in distribution. */
const MAX_PAGE = 10_000;
const DEFAULT_CATALOG_PAGE = 100;
const MAX_CATALOG_PAGE = 1_000;

export async function listTags(ctx: Context, name: string, url: URL): Promise<Response> {
  const request = pageRequest(url, MAX_PAGE, MAX_PAGE);
  const page = await ctx.metadata.listTags(name, request);
  if (!page) throw new RegistryError('NAME_UNKNOWN', undefined, { detail: { name } });
  return json({ name, tags: page.items }, pagination(url.pathname, request.limit, page));
}

export async function listRepositories(ctx: Context, url: URL): Promise<Response> {
  const request = pageRequest(url, DEFAULT_CATALOG_PAGE, MAX_CATALOG_PAGE);
  const page = await ctx.metadata.listRepositories(request);
  return json({ repositories: page.items }, pagination(url.pathname, request.limit, page));
}

/** The referrers API: an OCI index of the manifests whose subject is the digest, optionally by artifactType. */
export async function listReferrers(
  ctx: Context,
  name: string,
  reference: string,
  url: URL,
): Promise<Response> {
  const subject = parseDigest(reference);
  const artifactType = url.searchParams.get('artifactType');
  let referrers = await ctx.metadata.listReferrers(name, subject.value);
  const headers: Record<string, string> = { 'Content-Type': MediaType.ociIndex };
  if (artifactType !== null) {
    referrers = referrers.filter((record) => record.artifactType === artifactType);
    headers['OCI-Filters-Applied'] = 'artifactType';
  }
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: referrers.map(({ mediaType, digest, size, artifactType, annotations }) => ({
      mediaType,
      digest,
      size,
      ...(artifactType === undefined ? {} : { artifactType }),
      ...(annotations === undefined ? {} : { annotations }),
    })),
  };
  return json(index, headers);
}

function pagination(path: string, limit: number, page: Page<string>): Record<string, string> {
  const last = page.items.at(-1);
  return page.more && last !== undefined ? { Link: nextLink(path, limit, last) } : {};
}

function json(value: unknown, headers: Record<string, string> = {}): Response {
  const body = JSON.stringify(value);
  return new Response(body, {
    status: 200,
    headers: {
      'Content-Type': 'application/json',
      'Content-Length': String(Buffer.byteLength(body)),
      ...headers,
    },
  });
}
