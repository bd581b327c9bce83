/** Listings: tags, the catalog and the referrers API. */
import { describe, expect, it } from 'vitest';
import {
  type Api,
  type Descriptor,
  encode,
  expectError,
  type MakeTarget,
  manifestDescriptor,
  nextPage,
  OCI_EMPTY,
  OCI_INDEX,
  OCI_MANIFEST,
  pushDescriptor,
  pushImage,
  pushManifest,
  putManifest,
  randomContent,
  required,
  sha256,
  startUpload,
  useTarget,
} from './helpers.js';

const REPO = 'listings/app';
/** Tags in code point order: uppercase sorts before lowercase, "v10" before "v2". */
const TAGS = ['B', 'a', 'latest', 'v1', 'v10', 'v2'];

async function tagAll(api: Api, repository: string, tags: readonly string[]): Promise<void> {
  const image = await pushImage(api, repository);
  // Pushed in an order that is not the listing's.
  for (const tag of [...tags].reverse()) {
    expect((await putManifest(api, repository, tag, image.bytes)).status).toBe(201);
  }
}

/** The body of a tag or catalog listing. */
interface Listing {
  name?: string;
  tags?: string[];
  repositories?: string[];
}

async function listing(api: Api, path: string): Promise<{ response: Response; body: Listing }> {
  const response = await api.request(path);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  return { response, body: (await response.json()) as Listing };
}

/** Follows Link headers from path, answering every page's entries and the number of pages. */
async function walk(
  api: Api,
  path: string,
  key: 'tags' | 'repositories',
): Promise<{ all: string[]; pages: number }> {
  const all: string[] = [];
  let pages = 0;
  let next: string | undefined = path;
  while (next !== undefined) {
    const { response, body } = await listing(api, next);
    all.push(...required(body[key], key));
    pages += 1;
    expect(pages).toBeLessThan(20);
    next = nextPage(response);
  }
  return { all, pages };
}

interface Index {
  schemaVersion: number;
  mediaType: string;
  manifests: Descriptor[];
}

async function referrers(api: Api, repository: string, digest: string, query = ''): Promise<Response> {
  return api.request(`/v2/${repository}/referrers/${digest}${query}`);
}

async function referrersIndex(response: Response): Promise<Index> {
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe(OCI_INDEX);
  const index = (await response.json()) as Index;
  expect(index.schemaVersion).toBe(2);
  expect(index.mediaType).toBe(OCI_INDEX);
  return index;
}

function byDigest(descriptors: Descriptor[]): Descriptor[] {
  return [...descriptors].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
}

export function describeListings(makeTarget: MakeTarget): void {
  describe('tag listing', () => {
    const api = useTarget(makeTarget);

    it('lists every tag in lexical order without a Link header', async () => {
      await tagAll(api, REPO, TAGS);
      const { response, body } = await listing(api, `/v2/${REPO}/tags/list`);
      expect(body).toEqual({ name: REPO, tags: TAGS });
      expect(response.headers.get('link')).toBeNull();
    });

    it('pages with n and last, with a Link header exactly when more tags remain', async () => {
      await tagAll(api, REPO, TAGS);
      const first = await listing(api, `/v2/${REPO}/tags/list?n=2`);
      expect(first.body.tags).toEqual(['B', 'a']);
      expect(first.response.headers.get('link')).toBe(`</v2/${REPO}/tags/list?n=2&last=a>; rel="next"`);

      const middle = await listing(api, `/v2/${REPO}/tags/list?n=2&last=a`);
      expect(middle.body.tags).toEqual(['latest', 'v1']);
      expect(middle.response.headers.get('link')).toBe(`</v2/${REPO}/tags/list?n=2&last=v1>; rel="next"`);

      const end = await listing(api, `/v2/${REPO}/tags/list?n=2&last=v1`);
      expect(end.body.tags).toEqual(['v10', 'v2']);
      expect(end.response.headers.get('link')).toBeNull();

      const all = await listing(api, `/v2/${REPO}/tags/list?n=${TAGS.length}`);
      expect(all.body.tags).toEqual(TAGS);
      expect(all.response.headers.get('link')).toBeNull();

      const larger = await listing(api, `/v2/${REPO}/tags/list?n=100`);
      expect(larger.body.tags).toEqual(TAGS);
      expect(larger.response.headers.get('link')).toBeNull();
    });

    it('answers last between tags with the tags after it', async () => {
      await tagAll(api, REPO, TAGS);
      const { body } = await listing(api, `/v2/${REPO}/tags/list?last=b`);
      expect(body.tags).toEqual(['latest', 'v1', 'v10', 'v2']);
    });

    it('walks every tag by following the Link headers', async () => {
      await tagAll(api, REPO, TAGS);
      const { all, pages } = await walk(api, `/v2/${REPO}/tags/list?n=4`, 'tags');
      expect(all).toEqual(TAGS);
      expect(pages).toBe(2);
    });

    it('answers an unknown repository with 404 NAME_UNKNOWN', async () => {
      await tagAll(api, REPO, ['v1']);
      await expectError(await api.request('/v2/listings/unknown/tags/list'), 'NAME_UNKNOWN', 404);
    });

    it.each([['abc'], ['-1'], ['1.5']])('answers n=%s with 400 PAGINATION_NUMBER_INVALID', async (n) => {
      await tagAll(api, REPO, ['v1']);
      await expectError(await api.request(`/v2/${REPO}/tags/list?n=${n}`), 'PAGINATION_NUMBER_INVALID', 400);
    });
  });

  describe('catalog', () => {
    const api = useTarget(makeTarget);
    // Code point order: "-" (0x2d) sorts before "/" (0x2f).
    const REPOSITORIES = ['alpha', 'alpha-beta', 'alpha/beta', 'mid/x/y', 'zeta'];

    async function pushRepositories(): Promise<void> {
      for (const repository of [...REPOSITORIES].reverse()) await pushImage(api, repository, { tag: 'v1' });
    }

    it('lists repositories in lexical order', async () => {
      await pushRepositories();
      const { response, body } = await listing(api, '/v2/_catalog');
      expect(body).toEqual({ repositories: REPOSITORIES });
      expect(response.headers.get('link')).toBeNull();
    });

    it('pages with n and last, with a Link header exactly when more repositories remain', async () => {
      await pushRepositories();
      const first = await listing(api, '/v2/_catalog?n=2');
      expect(first.body.repositories).toEqual(['alpha', 'alpha-beta']);
      expect(first.response.headers.get('link')).toBe('</v2/_catalog?n=2&last=alpha-beta>; rel="next"');

      const next = await listing(api, required(nextPage(first.response), 'Link'));
      expect(next.body.repositories).toEqual(['alpha/beta', 'mid/x/y']);
      expect(next.response.headers.get('link')).not.toBeNull();

      const exact = await listing(api, '/v2/_catalog?n=2&last=mid/x/y');
      expect(exact.body.repositories).toEqual(['zeta']);
      expect(exact.response.headers.get('link')).toBeNull();
    });

    it('walks every repository by following the Link headers', async () => {
      await pushRepositories();
      const { all, pages } = await walk(api, '/v2/_catalog?n=2', 'repositories');
      expect(all).toEqual(REPOSITORIES);
      expect(pages).toBe(3);
    });

    it('leaves out a repository that has only an upload in progress', async () => {
      await pushImage(api, 'alpha', { tag: 'v1' });
      await startUpload(api, 'uploading/only');
      const { body } = await listing(api, '/v2/_catalog');
      expect(body.repositories).toEqual(['alpha']);
    });

    it('answers an invalid n with 400 PAGINATION_NUMBER_INVALID', async () => {
      await expectError(await api.request('/v2/_catalog?n=many'), 'PAGINATION_NUMBER_INVALID', 400);
    });
  });

  describe('referrers', () => {
    const api = useTarget(makeTarget);
    const SBOM = 'application/vnd.example.sbom.v1+json';
    const SIGNATURE_CONFIG = 'application/vnd.example.signature.config.v1+json';

    /** An artifact manifest (empty config) whose subject is the given descriptor. */
    async function pushArtifact(
      subject: Descriptor,
      artifactType: string,
      annotations?: Record<string, string>,
      repository = REPO,
    ) {
      const empty = await pushDescriptor(api, repository, OCI_EMPTY, encode('{}'));
      const layer = await pushDescriptor(api, repository, 'application/vnd.example.data', randomContent(40));
      return pushManifest(
        api,
        repository,
        {
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType,
          config: empty,
          layers: [layer],
          subject,
          ...(annotations === undefined ? {} : { annotations }),
        },
        OCI_MANIFEST,
      );
    }

    it('answers a digest without referrers with 200 and an empty OCI index', async () => {
      const subject = await pushImage(api, REPO, { tag: 'v1' });
      expect((await referrersIndex(await referrers(api, REPO, subject.digest))).manifests).toEqual([]);
      // The spec forbids a 404 from the referrers API: an unknown subject or repository has none.
      const unknown = sha256(encode('no such manifest'));
      expect((await referrersIndex(await referrers(api, REPO, unknown))).manifests).toEqual([]);
      expect((await referrersIndex(await referrers(api, 'listings/none', unknown))).manifests).toEqual([]);
    });

    it('lists referrers with mediaType, digest, size, artifactType and annotations', async () => {
      const subject = manifestDescriptor(await pushImage(api, REPO, { tag: 'v1' }));
      const annotations = {
        'org.opencontainers.image.created': '2024-01-01T00:00:00Z',
        'org.example': 'sbom',
      };
      const sbom = await pushArtifact(subject, SBOM, annotations);
      // An image manifest without artifactType: its config's media type stands in for it.
      const signature = await pushImage(api, REPO, {
        configMediaType: SIGNATURE_CONFIG,
        fields: { subject },
      });
      await pushImage(api, REPO, { tag: 'unrelated' });

      const index = await referrersIndex(await referrers(api, REPO, subject.digest));
      expect(byDigest(index.manifests)).toEqual(
        byDigest([
          { ...manifestDescriptor(sbom), artifactType: SBOM, annotations },
          { ...manifestDescriptor(signature), artifactType: SIGNATURE_CONFIG },
        ]),
      );
    });

    it('lists referrers pushed before their subject', async () => {
      const subject = { mediaType: OCI_MANIFEST, digest: sha256(encode('pushed later')), size: 12 };
      const sbom = await pushArtifact(subject, SBOM);
      const index = await referrersIndex(await referrers(api, REPO, subject.digest));
      expect(index.manifests).toEqual([{ ...manifestDescriptor(sbom), artifactType: SBOM }]);
    });

    it('filters by ?artifactType= and says so with OCI-Filters-Applied', async () => {
      const subject = manifestDescriptor(await pushImage(api, REPO, { tag: 'v1' }));
      const sbom = await pushArtifact(subject, SBOM);
      await pushArtifact(subject, 'application/vnd.example.other');

      const unfiltered = await referrers(api, REPO, subject.digest);
      expect(unfiltered.headers.get('oci-filters-applied')).toBeNull();
      expect((await referrersIndex(unfiltered)).manifests).toHaveLength(2);

      const filtered = await referrers(
        api,
        REPO,
        subject.digest,
        `?artifactType=${encodeURIComponent(SBOM)}`,
      );
      expect(filtered.headers.get('oci-filters-applied')).toBe('artifactType');
      expect((await referrersIndex(filtered)).manifests).toEqual([
        { ...manifestDescriptor(sbom), artifactType: SBOM },
      ]);

      const none = await referrers(api, REPO, subject.digest, '?artifactType=application%2Fnothing');
      expect(none.headers.get('oci-filters-applied')).toBe('artifactType');
      expect((await referrersIndex(none)).manifests).toEqual([]);
    });

    it('drops a referrer once it is deleted', async () => {
      const subject = manifestDescriptor(await pushImage(api, REPO, { tag: 'v1' }));
      const sbom = await pushArtifact(subject, SBOM);
      const other = await pushArtifact(subject, 'application/vnd.example.other');
      expect((await api.request(`/v2/${REPO}/manifests/${sbom.digest}`, { method: 'DELETE' })).status).toBe(
        202,
      );
      const index = await referrersIndex(await referrers(api, REPO, subject.digest));
      expect(index.manifests.map((descriptor) => descriptor.digest)).toEqual([other.digest]);
    });

    it('lists only the referrers of the repository asked about', async () => {
      const subject = { mediaType: OCI_MANIFEST, digest: sha256(encode('shared subject')), size: 12 };
      await pushArtifact(subject, SBOM, undefined, 'listings/elsewhere');
      expect((await referrersIndex(await referrers(api, REPO, subject.digest))).manifests).toEqual([]);
    });

    it('answers an invalid digest with 400 DIGEST_INVALID', async () => {
      await expectError(await referrers(api, REPO, 'sha256:nothex'), 'DIGEST_INVALID', 400);
      await expectError(await referrers(api, REPO, 'latest'), 'DIGEST_INVALID', 400);
    });
  });
}
