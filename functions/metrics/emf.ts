/**
 * Metrics on Lambda, in CloudWatch's embedded metric format: one JSON line on stdout per request,
 * which CloudWatch Logs turns into metrics with no API call in the request's path.
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
 */
import type { DeliveryOutcome, Metrics, RequestObservation } from './metrics.js';

/** The units this file uses, of those the specification allows. */
type Unit = 'Count' | 'Milliseconds' | 'Bytes' | 'None';

/** The notification metric each delivery outcome counts in; accepted events are not a metric of their own. */
const DELIVERY_METRICS: Partial<Record<DeliveryOutcome, string>> = {
  successes: 'NotificationsDelivered',
  failures: 'NotificationsFailed',
  errors: 'NotificationsFailed',
  dropped: 'NotificationsDropped',
};

/**
 * Writes EMF lines to write, which defaults to process.stdout.write and not console.log: with the
 * function's JSON log format, Lambda wraps console output in an object of its own, where CloudWatch
 * would no longer find the `_aws` member at the root.
 */
export class EmbeddedMetrics implements Metrics {
  constructor(
    /** The CloudWatch namespace (metrics.namespace). */
    private readonly namespace: string,
    private readonly write: (line: string) => void = (line) => {
      process.stdout.write(line);
    },
  ) {}

  /**
   * Requests by route and status; latency and errors by route; and over all routes, requests, errors
   * (5xx), client errors (4xx), latency, bytes in and out, and the bytes of blobs whose upload the
   * request finished. Each name and dimension value is a custom metric CloudWatch bills by the hour
   * it gets data: the sets are as small as what they answer (about 50 metrics for a busy registry).
   */
  request(observation: RequestObservation): void {
    const { route, status } = observation;
    const values: Record<string, [number, Unit]> = {
      Requests: [1, 'Count'],
      Errors: [status >= 500 ? 1 : 0, 'Count'],
      ClientErrors: [status >= 400 && status < 500 ? 1 : 0, 'Count'],
      Latency: [observation.durationMs, 'Milliseconds'],
      BytesIn: [observation.bytesIn, 'Bytes'],
      BytesOut: [observation.bytesOut, 'Bytes'],
    };
    if (observation.blobBytesPushed !== undefined) {
      values.BlobBytesPushed = [observation.blobBytesPushed, 'Bytes'];
    }
    this.emit({ Route: route, Status: String(status) }, values, [
      [[['Route', 'Status']], ['Requests']],
      [[['Route']], ['Latency', 'Errors']],
      [[[]], Object.keys(values)],
    ]);
  }

  delivery(sink: string, outcome: DeliveryOutcome, count: number): void {
    const name = DELIVERY_METRICS[outcome];
    if (name === undefined || count === 0) return;
    this.emit({ Sink: sink }, { [name]: [count, 'Count'] }, [[[['Sink']], [name]]]);
  }

  /** Lambda delivers while the request waits: nothing stays pending between invocations. */
  pending(_sink: string, _count: number): void {}

  /** The scheduled health check's line: Healthy (1 or 0) over the whole registry, and what failed. */
  health(failing: Record<string, string>): void {
    const healthy = Object.keys(failing).length === 0;
    this.emit({}, { Healthy: [healthy ? 1 : 0, 'Count'] }, [[[[]], ['Healthy']]], { Failing: failing });
  }

  /** One line: the dimensions and values at its root, and which values go by which dimension sets. */
  private emit(
    dimensions: Record<string, string>,
    values: Record<string, [number, Unit]>,
    directives: [dimensionSets: string[][], names: string[]][],
    extra: Record<string, unknown> = {},
  ): void {
    const line = {
      _aws: {
        Timestamp: Date.now(),
        CloudWatchMetrics: directives.map(([dimensionSets, names]) => ({
          Namespace: this.namespace,
          Dimensions: dimensionSets,
          Metrics: names.map((name) => ({ Name: name, Unit: values[name]?.[1] ?? 'None' })),
        })),
      },
      ...dimensions,
      ...Object.fromEntries(Object.entries(values).map(([name, [value]]) => [name, value])),
      ...extra,
    };
    this.write(JSON.stringify(line) + '\n');
  }
}
