/**
 * What the registry measures, whatever records it: CloudWatch embedded metric format lines on Lambda
 * (emf.ts), a Prometheus registry on the standalone server (prometheus.ts), or nothing.
 */

/** One finished request, as the runtime adapter saw it. */
export interface RequestObservation {
  /** distribution's handler name (see ClientInfo.route), or `unknown` for requests that matched no route. */
  route: string;
  method: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** Bytes of blobs whose upload this request finished (upload sizes), when it finished any. */
  blobBytesPushed?: number | undefined;
}

/** What a notification sink reports of its deliveries, named by the sink (`eventbridge`, or an endpoint's name). */
export type DeliveryOutcome =
  /** Events accepted for delivery. */
  | 'events'
  /** Events the receiver took. */
  | 'successes'
  /** Attempts the receiver refused (a non-2xx/3xx status, or EventBridge's FailedEntryCount). */
  | 'failures'
  /** Attempts that got no answer (network errors, timeouts). */
  | 'errors'
  /** Events given up on: logged whole at error level, never silently lost. */
  | 'dropped';

export interface Metrics {
  request(observation: RequestObservation): void;
  delivery(sink: string, outcome: DeliveryOutcome, count: number): void;
  /** Events a sink holds, not yet delivered. */
  pending(sink: string, count: number): void;
}

export const NO_METRICS: Metrics = { request() {}, delivery() {}, pending() {} };
