/**
 * The Prometheus registry's text exposition format (0.0.4), line for line: distribution's metric names,
 * labels and buckets, label escaping, cumulative histogram buckets, and numbers written as Go writes them.
 */
import { describe, expect, it } from 'vitest';
import { formatNumber, PrometheusMetrics } from '../../functions/metrics/prometheus.js';

/** The lines of one family: its HELP and TYPE lines and its samples. */
function family(text: string, name: string): string[] {
  return text
    .split('\n')
    .filter(
      (line) =>
        line.startsWith(`# HELP ${name} `) ||
        line.startsWith(`# TYPE ${name} `) ||
        new RegExp(`^${name}(?:_bucket|_sum|_count)?[ {]`).test(line),
    );
}

const request = { route: 'blob', method: 'GET', status: 200, bytesIn: 0, bytesOut: 0, durationMs: 30 };

describe('Prometheus metrics', () => {
  it('counts requests by handler, code and lower-case method, labels sorted and series in order', () => {
    const metrics = new PrometheusMetrics();
    metrics.request({ ...request, route: 'manifest', method: 'HEAD', status: 404 });
    metrics.request({ ...request, route: 'blob_upload_chunk', method: 'PUT', status: 201 });
    metrics.request(request);
    metrics.request(request);

    expect(family(metrics.render(), 'registry_http_requests_total')).toEqual([
      '# HELP registry_http_requests_total Total number of HTTP requests made.',
      '# TYPE registry_http_requests_total counter',
      'registry_http_requests_total{code="200",handler="blob",method="get"} 2',
      'registry_http_requests_total{code="201",handler="blob_upload_chunk",method="put"} 1',
      'registry_http_requests_total{code="404",handler="manifest",method="head"} 1',
    ]);
  });

  it('writes the duration histogram with distribution’s buckets, cumulative, then +Inf, sum and count', () => {
    const metrics = new PrometheusMetrics();
    metrics.request({ ...request, durationMs: 30 });
    metrics.request({ ...request, durationMs: 700 });
    metrics.request({ ...request, durationMs: 90_000 });

    const lines = (counts: number[]) =>
      ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '25', '60'].map(
        (le, i) =>
          `registry_http_request_duration_seconds_bucket{handler="blob",method="get",le="${le}"} ${counts[i]}`,
      );
    expect(family(metrics.render(), 'registry_http_request_duration_seconds')).toEqual([
      '# HELP registry_http_request_duration_seconds The HTTP request latencies in seconds.',
      '# TYPE registry_http_request_duration_seconds histogram',
      ...lines([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]),
      'registry_http_request_duration_seconds_bucket{handler="blob",method="get",le="+Inf"} 3',
      'registry_http_request_duration_seconds_sum{handler="blob",method="get"} 90.73',
      'registry_http_request_duration_seconds_count{handler="blob",method="get"} 3',
    ]);
  });

  it('writes size buckets from 1 KiB to 2 GiB as Go formats them, and counts an observation on a bound in it', () => {
    const metrics = new PrometheusMetrics();
    metrics.request({ ...request, bytesIn: 1024, bytesOut: 1500 });
    metrics.request({ ...request, bytesIn: 0, bytesOut: 3_000_000 });

    const responses = family(metrics.render(), 'registry_http_response_size_bytes');
    const buckets = responses.filter((line) => line.includes('_bucket'));
    expect(buckets.map((line) => /le="([^"]+)"/.exec(line)?.[1])).toEqual([
      ...['1024', '2048', '4096', '8192', '16384', '32768', '65536', '131072', '262144', '524288'],
      ...['1.048576e+06', '2.097152e+06', '4.194304e+06', '8.388608e+06', '1.6777216e+07'],
      ...['3.3554432e+07', '6.7108864e+07', '1.34217728e+08', '2.68435456e+08', '5.36870912e+08'],
      ...['1.073741824e+09', '2.147483648e+09', '+Inf'],
    ]);
    expect(responses).toContain('registry_http_response_size_bytes_bucket{handler="blob",le="1024"} 0');
    expect(responses).toContain('registry_http_response_size_bytes_bucket{handler="blob",le="2048"} 1');
    expect(responses).toContain(
      'registry_http_response_size_bytes_bucket{handler="blob",le="2.097152e+06"} 1',
    );
    expect(responses).toContain(
      'registry_http_response_size_bytes_bucket{handler="blob",le="4.194304e+06"} 2',
    );
    expect(responses).toContain('registry_http_response_size_bytes_sum{handler="blob"} 3.0015e+06');
    expect(responses).toContain('registry_http_response_size_bytes_count{handler="blob"} 2');
    // A bound is inclusive: 1024 bytes count in le="1024".
    expect(family(metrics.render(), 'registry_http_request_size_bytes')).toContain(
      'registry_http_request_size_bytes_bucket{handler="blob",le="1024"} 2',
    );
  });

  it('records finished blob uploads in their own histogram, only for requests that finished one', () => {
    const metrics = new PrometheusMetrics();
    metrics.request(request);
    expect(family(metrics.render(), 'registry_blob_upload_bytes')).toEqual([]);
    metrics.request({ ...request, route: 'blob_upload_chunk', method: 'PUT', blobBytesPushed: 5000 });
    const lines = family(metrics.render(), 'registry_blob_upload_bytes');
    expect(lines.slice(0, 2)).toEqual([
      '# HELP registry_blob_upload_bytes The sizes of the blobs whose uploads finished, in bytes.',
      '# TYPE registry_blob_upload_bytes histogram',
    ]);
    expect(lines).toContain('registry_blob_upload_bytes_bucket{le="4096"} 0');
    expect(lines).toContain('registry_blob_upload_bytes_bucket{le="8192"} 1');
    expect(lines.slice(-3)).toEqual([
      'registry_blob_upload_bytes_bucket{le="+Inf"} 1',
      'registry_blob_upload_bytes_sum 5000',
      'registry_blob_upload_bytes_count 1',
    ]);
  });

  it('counts notification events by distribution’s capitalised type, escaping label values', () => {
    const metrics = new PrometheusMetrics();
    const endpoint = 'hook "one"\\a\nb';
    metrics.delivery(endpoint, 'events', 3);
    metrics.delivery(endpoint, 'successes', 2);
    metrics.delivery(endpoint, 'failures', 1);
    metrics.delivery('eventbridge', 'errors', 1);
    metrics.delivery('eventbridge', 'dropped', 4);
    metrics.delivery('eventbridge', 'dropped', 1);
    metrics.pending(endpoint, 5);
    metrics.pending(endpoint, 1);

    const text = metrics.render();
    const escaped = 'hook \\"one\\"\\\\a\\nb';
    expect(family(text, 'registry_notifications_events_total')).toEqual([
      '# HELP registry_notifications_events_total The number of total events',
      '# TYPE registry_notifications_events_total counter',
      'registry_notifications_events_total{endpoint="eventbridge",type="Dropped"} 5',
      'registry_notifications_events_total{endpoint="eventbridge",type="Errors"} 1',
      `registry_notifications_events_total{endpoint="${escaped}",type="Events"} 3`,
      `registry_notifications_events_total{endpoint="${escaped}",type="Failures"} 1`,
      `registry_notifications_events_total{endpoint="${escaped}",type="Successes"} 2`,
    ]);
    // A gauge is set, not added to.
    expect(family(text, 'registry_notifications_pending_total')).toEqual([
      '# HELP registry_notifications_pending_total The gauge of pending events in queue',
      '# TYPE registry_notifications_pending_total gauge',
      `registry_notifications_pending_total{endpoint="${escaped}"} 1`,
    ]);
  });

  it('writes a well-formed exposition: families sorted, each once, HELP then TYPE then samples, a final newline', () => {
    const metrics = new PrometheusMetrics();
    // Before any request only the process's families are there: an empty family is left out.
    expect(metrics.render()).not.toContain('registry_');
    metrics.request(request);
    metrics.delivery('hook', 'successes', 1);
    metrics.pending('hook', 0);
    const text = metrics.render();
    expect(text.endsWith('\n')).toBe(true);

    const names: string[] = [];
    let current: { name: string; type: string } | undefined;
    for (const line of text.slice(0, -1).split('\n')) {
      const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$/.exec(line);
      const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line);
      if (help) {
        names.push(help[1] ?? '');
        current = undefined;
        continue;
      }
      if (type) {
        expect(type[1]).toBe(names.at(-1));
        current = { name: type[1] ?? '', type: type[2] ?? '' };
        continue;
      }
      const sample =
        /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$/.exec(
          line,
        );
      expect(sample, line).not.toBeNull();
      expect(current, line).toBeDefined();
      const suffixes = current?.type === 'histogram' ? ['_bucket', '_sum', '_count'] : [''];
      expect(suffixes.map((suffix) => `${current?.name}${suffix}`)).toContain(sample?.[1]);
      expect(Number.isNaN(Number(sample?.[3])) && sample?.[3] !== 'NaN').toBe(false);
    }
    expect(names).toEqual([...names].sort());
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(
      expect.arrayContaining([
        'nodejs_heap_size_used_bytes',
        'process_cpu_seconds_total',
        'process_resident_memory_bytes',
        'process_start_time_seconds',
        'registry_http_request_duration_seconds',
        'registry_http_request_size_bytes',
        'registry_http_requests_total',
        'registry_http_response_size_bytes',
        'registry_notifications_events_total',
        'registry_notifications_pending_total',
      ]),
    );
  });

  it('reports the process’s start time and memory', () => {
    const text = new PrometheusMetrics().render();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    const started = Date.now() / 1000 - process.uptime();
    expect(Math.abs(value('process_start_time_seconds') - started)).toBeLessThan(2);
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(1024 * 1024);
    expect(value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
  });
});

describe('formatNumber', () => {
  it.each([
    [0, '0'],
    [3, '3'],
    [0.005, '0.005'],
    [2.5, '2.5'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [123456, '123456'],
    [1e6, '1e+06'],
    [4194304, '4.194304e+06'],
    [1.5e21, '1.5e+21'],
    [-2048, '-2048'],
    [Infinity, '+Inf'],
    [-Infinity, '-Inf'],
    [NaN, 'NaN'],
  ])('writes %d as Go’s strconv.FormatFloat(v, g, -1) does: %s', (value, text) => {
    expect(formatNumber(value)).toBe(text);
  });
});
