/**
 * Notification events, in the shape of distribution's (notifications/event.go), so that receivers
 * written for distribution work unchanged: the JSON keys, their spelling and which are always present
 * are distribution's. Additions are OCI 1.1's `artifactType` and `subject` on manifest targets.
 */

/** The envelope's media type, as the Content-Type of a webhook POST. */
export const EVENTS_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v2+json';

/** The Source of the registry's EventBridge entries unless configured (notifications.eventbridge.source). */
export const DEFAULT_EVENT_SOURCE = 'registry';

export type EventAction = 'push' | 'pull' | 'mount' | 'delete';
export const EVENT_ACTIONS: readonly EventAction[] = ['push', 'pull', 'mount', 'delete'];

/** A content descriptor (OCI image-spec). */
export interface EventDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
}

/**
 * What an event is about. A blob or manifest push, pull or mount has the descriptor, `length`
 * (= size, for older receivers), repository and url; a delete has only repository and digest, or
 * repository and tag for a tag's deletion.
 */
export interface EventTarget {
  mediaType?: string;
  digest?: string;
  size?: number;
  /** The same as size; distribution keeps it for receivers older than `size`. */
  length?: number;
  repository: string;
  /** The repository a mounted blob came from. */
  fromRepository?: string;
  /** The content by digest, absolute: `<base>/v2/<repository>/manifests|blobs/<digest>`. */
  url?: string;
  /** The tag a manifest was pushed or pulled by, or the tag deleted. */
  tag?: string;
  /** A manifest's artifactType (OCI 1.1), or for an image manifest without one its config's media type. */
  artifactType?: string;
  /** The manifest this one refers to (OCI 1.1 subject), for signatures, SBOMs and other referrers. */
  subject?: EventDescriptor;
  /** A manifest's config and layers, or an index's manifests, with notifications.events.includereferences. */
  references?: EventDescriptor[];
}

export interface Event {
  /** Unique per event (a random UUID); receivers may deduplicate retried deliveries by it. */
  id: string;
  /** RFC 3339, UTC. */
  timestamp: string;
  action: EventAction;
  target: EventTarget;
  request: {
    id: string;
    /** The client's address. */
    addr?: string;
    /** The host the client addressed (Host, or X-Forwarded-Host behind the edge). */
    host?: string;
    method: string;
    useragent: string;
  };
  /** The authenticated user; {} for anonymous requests. */
  actor: { name?: string };
  /** The registry instance that emitted the event. */
  source: { addr?: string; instanceID?: string };
}

/** distribution's envelope; a webhook POST carries one event, as distribution sends them. */
export interface Envelope {
  events: Event[];
}

/**
 * Where events go. publish() is called once per request that produced events, after the request's
 * operations committed and before its response is returned; it never throws. A sink that delivers
 * synchronously (EventBridge from Lambda) resolves once delivery succeeded or was given up and
 * logged; a queueing sink (webhooks) resolves at once and delivers in the background.
 */
export interface EventSink {
  publish(events: readonly Event[]): Promise<void>;
  /** Delivers what is queued, for up to deadlineMs, then stops; what is left is logged. */
  close(deadlineMs: number): Promise<void>;
}

/** Events a sink does not want: by target media type or by action (distribution's `ignore`). */
export interface EventFilter {
  mediaTypes: readonly string[];
  actions: readonly string[];
}

export function wanted(filter: EventFilter, event: Event): boolean {
  return (
    !filter.actions.includes(event.action) &&
    !(event.target.mediaType !== undefined && filter.mediaTypes.includes(event.target.mediaType))
  );
}

/** Sends every event to every sink. */
export function broadcast(sinks: readonly EventSink[]): EventSink {
  return {
    async publish(events) {
      await Promise.all(sinks.map((sink) => sink.publish(events)));
    },
    async close(deadlineMs) {
      await Promise.all(sinks.map((sink) => sink.close(deadlineMs)));
    },
  };
}
