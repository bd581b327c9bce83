import { randomUUID } from 'node:crypto';
import type { ClientInfo } from '../auth/access.js';
import { errorFields, type Logger } from '../log.js';
import type { ManifestRecord } from '../metadata/store.js';
import { isDigest } from '../registry/digest.js';
import { type Descriptor, parseManifest } from '../registry/manifest.js';
import type { Event, EventDescriptor, EventSink, EventTarget } from './events.js';
import type { Commit, Journal } from './journal.js';

/** The media type distribution gives blobs in events: the registry does not know a blob's own. */
const BLOB_MEDIA_TYPE = 'application/octet-stream';

export interface NotifierOptions {
  sink: EventSink;
  log: Logger;
  /** notifications.events.includereferences: manifest events list the manifest's references. */
  includeReferences: boolean;
  /** This registry instance, as events name their source. */
  source: { addr?: string; instanceID: string };
  /** http.host, the base of the events' URLs; without it, the origin the request addressed. */
  host: string | undefined;
  /** http.relativeurls: the events' URLs are paths, as the API's Locations are. */
  relativeUrls: boolean;
}

/** The API call a request made, as the registry routed it. */
export interface RoutedRequest {
  /** distribution's handler name: manifest, blob, blob_upload, … */
  route: string;
  repository: string | undefined;
  /** A manifest route's tag or digest. */
  reference: string | undefined;
}

/**
 * Turns what a request did (its Journal) into distribution's events and hands them to the sink:
 * a commit becomes a push, mount or delete; a manifest or blob served becomes a pull, as distribution
 * counts them (HEAD included, a blob redirected to storage included). Never throws: a notification
 * must not fail the request it is about.
 */
export class Notifier {
  constructor(private readonly options: NotifierOptions) {}

  async notify(
    journal: Journal,
    request: Request,
    response: Response,
    client: ClientInfo,
    routed: RoutedRequest,
  ): Promise<void> {
    try {
      const events = this.events(journal, request, response, client, routed);
      if (events.length > 0) await this.options.sink.publish(events);
    } catch (error) {
      // Sinks log their own failures; this is a defect, reported without failing the request.
      this.options.log.error('notifying a request failed', {
        requestId: client.requestId,
        ...errorFields(error),
      });
    }
  }

  private events(
    journal: Journal,
    request: Request,
    response: Response,
    client: ClientInfo,
    routed: RoutedRequest,
  ): Event[] {
    const url = new URL(request.url);
    const make = (action: Event['action'], target: EventTarget): Event => ({
      id: randomUUID(),
      timestamp: new Date().toISOString(),
      action,
      target,
      request: {
        id: client.requestId ?? '',
        ...(client.address !== undefined && { addr: client.address }),
        host: url.host,
        method: request.method,
        useragent: request.headers.get('user-agent') ?? '',
      },
      actor: client.user === undefined ? {} : { name: client.user },
      source: this.options.source,
    });
    const base = this.options.relativeUrls ? '' : (this.options.host ?? url.origin).replace(/\/+$/, '');
    const link = (repository: string, kind: 'manifests' | 'blobs', digest: string) =>
      `${base}/v2/${repository}/${kind}/${digest}`;
    const blob = (repository: string, digest: string, size: number): EventTarget => ({
      mediaType: BLOB_MEDIA_TYPE,
      digest,
      size,
      length: size,
      repository,
      url: link(repository, 'blobs', digest),
    });
    const manifest = (repository: string, record: ManifestRecord, tag: string | undefined): EventTarget => ({
      ...this.manifestTarget(record, journal.content(record)),
      repository,
      url: link(repository, 'manifests', record.digest),
      ...(tag !== undefined && { tag }),
    });

    const events: Event[] = [];
    for (const commit of journal.commits) events.push(...commitEvents(commit, make, blob, manifest));

    // A pull is content served: a manifest or blob answered with its digest.
    const served = response.headers.get('docker-content-digest');
    const pulled = (request.method === 'GET' || request.method === 'HEAD') && response.status < 400;
    if (pulled && served !== null && routed.repository !== undefined) {
      const repository = routed.repository;
      if (routed.route === 'manifest') {
        const record = journal.manifestRead(repository, served);
        const tag =
          routed.reference !== undefined && !isDigest(routed.reference) ? routed.reference : undefined;
        if (record) events.push(make('pull', manifest(repository, record, tag)));
      } else if (routed.route === 'blob') {
        const found = journal.linkRead(repository, served);
        if (found) events.push(make('pull', blob(repository, served, found.size)));
      }
    }
    return events;
  }

  /** A manifest's descriptor, and from its bytes its OCI 1.1 subject and (if asked) its references. */
  private manifestTarget(
    record: ManifestRecord,
    content: Uint8Array | undefined,
  ): Omit<EventTarget, 'repository'> {
    const target: Omit<EventTarget, 'repository'> = {
      mediaType: record.mediaType,
      digest: record.digest,
      size: record.size,
      length: record.size,
      ...(record.artifactType !== undefined && { artifactType: record.artifactType }),
    };
    const wantsContent = record.subject !== undefined || this.options.includeReferences;
    if (!wantsContent || content === undefined) return target;
    const parsed = parseManifest(content, record.mediaType);
    if (parsed.subject) target.subject = descriptor(parsed.subject);
    if (this.options.includeReferences) {
      target.references = parsed.references.map(descriptor);
    }
    return target;
  }
}

/** distribution's events for one commit. */
function commitEvents(
  commit: Commit,
  make: (action: Event['action'], target: EventTarget) => Event,
  blob: (repository: string, digest: string, size: number) => EventTarget,
  manifest: (repository: string, record: ManifestRecord, tag: string | undefined) => EventTarget,
): Event[] {
  const { repository } = commit;
  switch (commit.kind) {
    case 'manifest':
      return [make('push', manifest(repository, commit.record, commit.tag))];
    case 'manifest-deleted':
      // As distribution: the manifest's deletion, then each tag's that pointed at it.
      return [
        make('delete', { repository, digest: commit.digest }),
        ...commit.tags.map((tag) => make('delete', { repository, tag })),
      ];
    case 'tag-deleted':
      return [make('delete', { repository, tag: commit.tag })];
    case 'blob-deleted':
      return [make('delete', { repository, digest: commit.digest })];
    case 'blob': {
      const target = blob(repository, commit.link.digest, commit.link.size);
      return commit.from === undefined
        ? [make('push', target)]
        : [make('mount', { ...target, fromRepository: commit.from })];
    }
  }
}

function descriptor(d: Descriptor): EventDescriptor {
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: d.size,
    ...(d.artifactType !== undefined && { artifactType: d.artifactType }),
  };
}
