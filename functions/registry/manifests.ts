import { type ManifestRecord, TagExistsError } from '../metadata/store.js';
import type { Context } from './context.js';
import { digestOf, isDigest, parseDigest } from './digest.js';
import { RegistryError } from './errors.js';
import { MAX_MANIFEST_BYTES, parseManifest, type ParsedManifest } from './manifest.js';
import { checkTag, isTag } from './names.js';
import { readBody } from './request.js';
import { linkDirectUpload } from './uploads.js';

/** GET and HEAD of a manifest by tag or digest. */
export async function getManifest(ctx: Context, name: string, reference: string): Promise<Response> {
  const record = await resolve(ctx, name, reference);
  const content = record.content ?? (await ctx.blobs.getContent(parseDigest(record.digest)));
  const headers = {
    'Content-Type': record.mediaType,
    'Content-Length': String(content.byteLength),
    'Docker-Content-Digest': record.digest,
    ETag: `"${record.digest}"`,
  };
  return new Response(content, { status: 200, headers });
}

/**
 * PUT of a manifest: validated, its blobs and child manifests checked to be in the repository, its
 * digest checked against a digest reference, then stored and (for a tag reference) tagged.
 */
export async function putManifest(
  ctx: Context,
  request: Request,
  name: string,
  reference: string,
): Promise<Response> {
  const byDigest = isDigest(reference);
  const expected = byDigest ? parseDigest(reference) : undefined;
  if (!byDigest) checkTag(reference);

  const body = await readBody(request, MAX_MANIFEST_BYTES, 'manifest');
  const manifest = parseManifest(body, request.headers.get('content-type'));
  const digest = digestOf(body, expected?.algorithm);
  if (expected && expected.value !== digest.value) {
    throw new RegistryError(
      'DIGEST_INVALID',
      `the manifest has digest ${digest.value}, not ${expected.value}`,
      {
        detail: { expected: expected.value, actual: digest.value },
      },
    );
  }
  // Marked before anything is checked, so that garbage collection running meanwhile keeps (or puts
  // back) what this manifest names; see BlobStore.markUsed.
  await ctx.blobs.markUsed([
    digest,
    ...[...manifest.blobs, ...manifest.manifests].map((descriptor) => parseDigest(descriptor.digest)),
  ]);
  await checkReferences(ctx, name, manifest);

  await ctx.blobs.putContent(digest, body);
  const record: ManifestRecord = {
    digest: digest.value,
    mediaType: manifest.mediaType,
    size: body.byteLength,
    subject: manifest.subject?.digest,
    artifactType: manifest.artifactType,
    annotations: manifest.annotations,
    pushedAt: new Date().toISOString(),
    // Stores that can keep small manifests inline (DynamoDB) serve a pull from one read.
    content: body,
  };
  await storeManifest(ctx, name, reference, byDigest, record);

  const headers: Record<string, string> = {
    Location: `/v2/${name}/manifests/${digest.value}`,
    'Docker-Content-Digest': digest.value,
    'Content-Length': '0',
  };
  if (manifest.subject) headers['OCI-Subject'] = manifest.subject.digest;
  return new Response(null, { status: 201, headers });
}

/**
 * Records the manifest, and tags it unless pushed by digest. An immutable tag (the `immutability`
 * configuration) is never moved: the store refuses, atomically, to point it at another manifest than
 * the one it names, so that a second push of the same manifest succeeds and any other is denied.
 */
async function storeManifest(
  ctx: Context,
  name: string,
  reference: string,
  byDigest: boolean,
  record: ManifestRecord,
): Promise<void> {
  if (byDigest) return ctx.metadata.putManifest(name, record, []);
  if (!ctx.options.immutableTags(name, reference)) return ctx.metadata.putManifest(name, record, [reference]);
  try {
    await ctx.metadata.putManifest(name, record, [reference], { keepTags: true });
  } catch (error) {
    if (!(error instanceof TagExistsError)) throw error;
    throw new RegistryError(
      'DENIED',
      `tag ${reference} in repository ${name} is immutable: it already points at ${error.digest}; ` +
        'push a new tag instead',
      { detail: { tag: reference, digest: error.digest }, cause: error },
    );
  }
}

/** DELETE by digest removes the manifest and its tags; DELETE by tag removes only the tag. */
export async function deleteManifest(ctx: Context, name: string, reference: string): Promise<Response> {
  let deleted: boolean;
  if (isDigest(reference)) {
    deleted = (await ctx.metadata.deleteManifest(name, parseDigest(reference).value)) !== undefined;
  } else {
    deleted = isTag(reference) && (await ctx.metadata.deleteTag(name, reference));
  }
  if (!deleted) throw manifestUnknown(reference);
  return new Response(null, { status: 202, headers: { 'Content-Length': '0' } });
}

async function resolve(ctx: Context, name: string, reference: string): Promise<ManifestRecord> {
  let record: ManifestRecord | undefined;
  if (isDigest(reference)) {
    record = await ctx.metadata.getManifest(name, parseDigest(reference).value);
  } else if (isTag(reference)) {
    record = await ctx.metadata.getTag(name, reference);
  }
  // A reference that is not a valid tag names no manifest: 404, as the conformance suite expects.
  if (!record) throw manifestUnknown(reference);
  return record;
}

/**
 * Every blob a manifest names must be linked into the repository with its size and stored; every child
 * manifest stored there.
 */
async function checkReferences(ctx: Context, name: string, manifest: ParsedManifest): Promise<void> {
  const missing = (digest: string) =>
    new RegistryError('MANIFEST_BLOB_UNKNOWN', `${digest} is not in repository ${name}`, {
      detail: { digest },
    });
  await Promise.all([
    ...manifest.blobs.map(async (blob) => {
      const link =
        (await ctx.metadata.getBlobLink(name, blob.digest)) ??
        (await linkDirectUpload(ctx, name, parseDigest(blob.digest)));
      // The link says the repository may serve it; the bytes must still be there too.
      if (!link || (await ctx.blobs.size(parseDigest(blob.digest))) === undefined) throw missing(blob.digest);
      if (link.size !== blob.size) {
        throw new RegistryError(
          'MANIFEST_INVALID',
          `${blob.digest} has size ${link.size}, not ${blob.size}`,
          {
            detail: { digest: blob.digest, size: link.size },
          },
        );
      }
    }),
    ...manifest.manifests.map(async (child) => {
      if (!(await ctx.metadata.getManifest(name, child.digest))) throw missing(child.digest);
    }),
  ]);
}

function manifestUnknown(reference: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { reference } });
}
