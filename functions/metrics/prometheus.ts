/**
 * Metrics for Prometheus on the standalone server, rendered in the text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/). The HTTP and notification families
 * carry distribution's names, labels and buckets, so that dashboards and alerts made for registry:2
 * work unchanged.
 */
import type { DeliveryOutcome, Metrics, RequestObservation } from './metrics.js';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** distribution's request duration buckets, in seconds. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60];
/** distribution's request and response size buckets: 1 KiB to 2 GiB, doubling. */
const SIZE_BUCKETS = Array.from({ length: 22 }, (_, k) => 1024 * 2 ** k);

/** The `type` label of registry_notifications_events_total, capitalised as distribution's. */
const EVENT_TYPES: Record<DeliveryOutcome, string> = {
  events: 'Events',
  successes: 'Successes',
  failures: 'Failures',
  errors: 'Errors',
  dropped: 'Dropped',
};

type Kind = 'counter' | 'gauge' | 'histogram';

interface Series {
  /** Label values, in the order of the family's (sorted) label names. */
  values: string[];
  /** A counter's or gauge's value; a histogram's count. */
  value: number;
  /** A histogram's cumulative counts, one per bucket bound. */
  buckets: number[];
  sum: number;
}

/** One metric family: its series by label values. */
class Family {
  private readonly series = new Map<string, Series>();
  private readonly labelNames: string[];

  constructor(
    readonly name: string,
    private readonly kind: Kind,
    private readonly help: string,
    labelNames: string[] = [],
    private readonly bounds: readonly number[] = [],
  ) {
    // client_golang writes labels sorted by name; so do we, for output that compares line by line.
    this.labelNames = [...labelNames].sort();
  }

  add(labels: Record<string, string>, amount: number): void {
    this.at(labels).value += amount;
  }

  set(labels: Record<string, string>, value: number): void {
    this.at(labels).value = value;
  }

  observe(labels: Record<string, string>, value: number): void {
    const series = this.at(labels);
    series.value += 1;
    series.sum += value;
    this.bounds.forEach((bound, i) => {
      if (value <= bound) series.buckets[i] = (series.buckets[i] ?? 0) + 1;
    });
  }

  /** The family's lines, or none while it has no series (as client_golang leaves out an empty vector). */
  render(): string[] {
    if (this.series.size === 0) return [];
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.kind}`];
    const ordered = [...this.series.values()].sort((a, b) => compareValues(a.values, b.values));
    for (const series of ordered) {
      const pairs = this.labelNames.map((name, i) => `${name}="${escapeLabel(series.values[i] ?? '')}"`);
      const labels = (extra: string[] = []) => {
        const all = [...pairs, ...extra];
        return all.length === 0 ? '' : `{${all.join(',')}}`;
      };
      if (this.kind !== 'histogram') {
        lines.push(`${this.name}${labels()} ${formatNumber(series.value)}`);
        continue;
      }
      this.bounds.forEach((bound, i) => {
        const le = `le="${formatNumber(bound)}"`;
        lines.push(`${this.name}_bucket${labels([le])} ${formatNumber(series.buckets[i] ?? 0)}`);
      });
      lines.push(`${this.name}_bucket${labels(['le="+Inf"'])} ${formatNumber(series.value)}`);
      lines.push(`${this.name}_sum${labels()} ${formatNumber(series.sum)}`);
      lines.push(`${this.name}_count${labels()} ${formatNumber(series.value)}`);
    }
    return lines;
  }

  private at(labels: Record<string, string>): Series {
    const values = this.labelNames.map((name) => labels[name] ?? '');
    const key = JSON.stringify(values);
    let series = this.series.get(key);
    if (series === undefined) {
      series = { values, value: 0, buckets: this.bounds.map(() => 0), sum: 0 };
      this.series.set(key, series);
    }
    return series;
  }
}

/** The registry's metrics for a Prometheus scrape: what the adapters and notification sinks report, and the process's basics. */
export class PrometheusMetrics implements Metrics {
  private readonly requests = new Family(
    'registry_http_requests_total',
    'counter',
    'Total number of HTTP requests made.',
    ['handler', 'code', 'method'],
  );
  private readonly durations = new Family(
    'registry_http_request_duration_seconds',
    'histogram',
    'The HTTP request latencies in seconds.',
    ['handler', 'method'],
    DURATION_BUCKETS,
  );
  private readonly requestSizes = new Family(
    'registry_http_request_size_bytes',
    'histogram',
    'The HTTP request sizes in bytes.',
    ['handler'],
    SIZE_BUCKETS,
  );
  private readonly responseSizes = new Family(
    'registry_http_response_size_bytes',
    'histogram',
    'The HTTP response sizes in bytes.',
    ['handler'],
    SIZE_BUCKETS,
  );
  private readonly blobUploads = new Family(
    'registry_blob_upload_bytes',
    'histogram',
    'The sizes of the blobs whose uploads finished, in bytes.',
    [],
    SIZE_BUCKETS,
  );
  private readonly events = new Family(
    'registry_notifications_events_total',
    'counter',
    'The number of total events',
    ['type', 'endpoint'],
  );
  private readonly pendingEvents = new Family(
    'registry_notifications_pending_total',
    'gauge',
    'The gauge of pending events in queue',
    ['endpoint'],
  );
  private readonly cpu = new Family(
    'process_cpu_seconds_total',
    'counter',
    'Total user and system CPU time spent in seconds.',
  );
  private readonly residentMemory = new Family(
    'process_resident_memory_bytes',
    'gauge',
    'Resident memory size in bytes.',
  );
  private readonly startTime = new Family(
    'process_start_time_seconds',
    'gauge',
    'Start time of the process since unix epoch in seconds.',
  );
  private readonly heapTotal = new Family(
    'nodejs_heap_size_total_bytes',
    'gauge',
    'Process heap size from Node.js in bytes.',
  );
  private readonly heapUsed = new Family(
    'nodejs_heap_size_used_bytes',
    'gauge',
    'Process heap size used from Node.js in bytes.',
  );

  request(observation: RequestObservation): void {
    const handler = observation.route;
    // promhttp's labels: the status code as a number, the method in lower case.
    const method = observation.method.toLowerCase();
    this.requests.add({ handler, code: String(observation.status), method }, 1);
    this.durations.observe({ handler, method }, observation.durationMs / 1000);
    this.requestSizes.observe({ handler }, observation.bytesIn);
    this.responseSizes.observe({ handler }, observation.bytesOut);
    if (observation.blobBytesPushed !== undefined) this.blobUploads.observe({}, observation.blobBytesPushed);
  }

  delivery(sink: string, outcome: DeliveryOutcome, count: number): void {
    this.events.add({ type: EVENT_TYPES[outcome], endpoint: sink }, count);
  }

  pending(sink: string, count: number): void {
    this.pendingEvents.set({ endpoint: sink }, count);
  }

  /** Every family with a series, sorted by name, in the text format (serve it as PROMETHEUS_CONTENT_TYPE). */
  render(): string {
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    this.cpu.set({}, (cpu.user + cpu.system) / 1e6);
    this.residentMemory.set({}, memory.rss);
    this.startTime.set({}, Math.round(Date.now() / 1000 - process.uptime()));
    this.heapTotal.set({}, memory.heapTotal);
    this.heapUsed.set({}, memory.heapUsed);
    const families = [
      this.requests,
      this.durations,
      this.requestSizes,
      this.responseSizes,
      this.blobUploads,
      this.events,
      this.pendingEvents,
      this.cpu,
      this.residentMemory,
      this.startTime,
      this.heapTotal,
      this.heapUsed,
    ].sort((a, b) => (a.name < b.name ? -1 : 1));
    return families.flatMap((family) => family.render()).join('\n') + '\n';
  }
}

/**
 * A number as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it, as client_golang does: the
 * shortest digits, with an exponent from 1e6 up (so bucket bounds read le="4.194304e+06", as a
 * dashboard made for distribution expects).
 */
export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  const [mantissa = '0', exponent = '0'] = value.toExponential().split('e');
  const power = Number(exponent);
  if (power < -4 || power >= 6) {
    return `${mantissa}e${power < 0 ? '-' : '+'}${String(Math.abs(power)).padStart(2, '0')}`;
  }
  return String(value);
}

/** A label value between double quotes: backslash, double quote and line feed escaped. */
function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** HELP text: backslash and line feed escaped. */
function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

function compareValues(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) {
    const [x = '', y = ''] = [a[i], b[i]];
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}
