import { parseDigest } from './digest.js';
import { RegistryError } from './errors.js';

export const MediaType = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
} as const;

const SCHEMA1 = new Set([
  'application/vnd.docker.distribution.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
]);
const INDEXES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);
const IMAGES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
/** Content-Types that say nothing about the manifest kind; the body's mediaType decides then. */
const GENERIC = new Set(['', 'application/json', 'application/octet-stream']);

/** The largest manifest accepted, as distribution and most registries cap it. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  artifactType?: string;
}

/** What the registry needs to know of a manifest to store it and answer for it. */
export interface ParsedManifest {
  mediaType: string;
  /** Blobs the manifest references (config and layers) that must be present in the repository. */
  blobs: Descriptor[];
  /** Manifests an index references, which must be present in the repository. */
  manifests: Descriptor[];
  /** Everything it references, as distribution lists it: config and every layer, or an index's manifests. */
  references: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/**
 * Parses and validates a manifest body against its Content-Type. Throws MANIFEST_INVALID (400) for
 * malformed JSON, a wrong structure, an unsupported or disagreeing media type, and schema 1.
 */
export function parseManifest(body: Uint8Array, contentType: string | null): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (error) {
    throw invalid(`manifest is not valid UTF-8 JSON: ${(error as Error).message}`);
  }
  if (!isObject(json)) throw invalid('manifest must be a JSON object');

  const declared = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const inBody = json.mediaType;
  if (inBody !== undefined && typeof inBody !== 'string') throw invalid('mediaType must be a string');
  if (json.schemaVersion === 1 || SCHEMA1.has(declared) || (inBody !== undefined && SCHEMA1.has(inBody))) {
    throw invalid(
      'Docker image manifest schema 1 is not supported: push with a current client, which sends schema 2 or OCI manifests',
    );
  }
  if (inBody !== undefined && !GENERIC.has(declared) && inBody !== declared) {
    throw invalid(
      `manifest mediaType ${JSON.stringify(inBody)} does not match Content-Type ${JSON.stringify(declared)}`,
    );
  }
  const mediaType = GENERIC.has(declared) ? (inBody ?? inferMediaType(json)) : declared;
  if (json.schemaVersion !== 2) throw invalid('schemaVersion must be 2');

  if (IMAGES.has(mediaType)) return parseImageManifest(json, mediaType);
  if (INDEXES.has(mediaType)) return parseIndex(json, mediaType);
  throw invalid(`unsupported manifest media type ${JSON.stringify(mediaType)}`, {
    supported: [...IMAGES, ...INDEXES],
  });
}

function parseImageManifest(json: Record<string, unknown>, mediaType: string): ParsedManifest {
  if (mediaType === MediaType.dockerManifest && json.mediaType !== mediaType) {
    throw invalid(`a Docker schema 2 manifest must carry "mediaType": "${mediaType}"`);
  }
  if (json.manifests !== undefined) throw invalid('an image manifest has no "manifests"');
  const config = descriptor(json.config, 'config');
  if (!Array.isArray(json.layers)) throw invalid('layers must be an array');
  const layers = json.layers.map((layer, i) => descriptor(layer, `layers[${i}]`));
  const artifactType = optionalString(json.artifactType, 'artifactType');
  return {
    mediaType,
    // Layers with URLs are non-distributable ("foreign"): their bytes live elsewhere, as distribution allows.
    blobs: [config, ...layers.filter((layer) => !layer.urls?.length)],
    manifests: [],
    references: [config, ...layers],
    subject: json.subject === undefined ? undefined : descriptor(json.subject, 'subject'),
    artifactType: artifactType ?? config.mediaType,
    annotations: annotations(json.annotations, 'annotations'),
  };
}

function parseIndex(json: Record<string, unknown>, mediaType: string): ParsedManifest {
  if (mediaType === MediaType.dockerManifestList && json.mediaType !== mediaType) {
    throw invalid(`a Docker manifest list must carry "mediaType": "${mediaType}"`);
  }
  if (json.config !== undefined || json.layers !== undefined)
    throw invalid('an index has no config or layers');
  if (!Array.isArray(json.manifests)) throw invalid('manifests must be an array');
  const manifests = json.manifests.map((entry, i) => descriptor(entry, `manifests[${i}]`));
  return {
    mediaType,
    blobs: [],
    manifests,
    references: manifests,
    subject: json.subject === undefined ? undefined : descriptor(json.subject, 'subject'),
    artifactType: optionalString(json.artifactType, 'artifactType'),
    annotations: annotations(json.annotations, 'annotations'),
  };
}

/** A body without mediaType or a telling Content-Type: decide by shape, as the OCI spec allows. */
function inferMediaType(json: Record<string, unknown>): string {
  if (Array.isArray(json.manifests)) return MediaType.ociIndex;
  if (json.config !== undefined) return MediaType.ociManifest;
  throw invalid('cannot tell the manifest type: set Content-Type or mediaType');
}

function descriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw invalid(`${where} must be a descriptor object`);
  const mediaType = value.mediaType;
  if (typeof mediaType !== 'string' || mediaType === '') throw invalid(`${where}.mediaType must be a string`);
  if (typeof value.digest !== 'string') throw invalid(`${where}.digest must be a string`);
  let digest: string;
  try {
    digest = parseDigest(value.digest).value;
  } catch (error) {
    throw invalid(`${where}.digest: ${(error as Error).message}`);
  }
  const size = value.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer`);
  }
  if (
    value.urls !== undefined &&
    (!Array.isArray(value.urls) || !value.urls.every((u) => typeof u === 'string'))
  ) {
    throw invalid(`${where}.urls must be an array of strings`);
  }
  return {
    mediaType,
    digest,
    size,
    urls: value.urls,
    annotations: annotations(value.annotations, `${where}.annotations`),
    artifactType: optionalString(value.artifactType, `${where}.artifactType`),
  };
}

function annotations(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw invalid(`${where} must be a map of strings`);
  }
  return value as Record<string, string>;
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value !== undefined && typeof value !== 'string') throw invalid(`${where} must be a string`);
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(message: string, detail?: unknown): RegistryError {
  return new RegistryError('MANIFEST_INVALID', message, { detail });
}
