/**
 * The embedded metric format lines the Lambda function writes: one per request, one per delivery
 * outcome, one per health check, each valid by the specification's rules (test/support/emf.ts).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EmbeddedMetrics } from '../../functions/metrics/emf.js';
import { type EmfLine, parseEmf } from '../support/emf.js';

function recording(namespace = 'Registry') {
  const lines: string[] = [];
  const metrics = new EmbeddedMetrics(namespace, (line) => {
    lines.push(line);
  });
  return { metrics, lines, parsed: () => lines.map(parseEmf) };
}

/** A line's members besides the metadata: its dimensions and values. */
const members = ({ _aws, ...rest }: EmfLine) => rest;

const request = { route: 'blob', method: 'GET', status: 200, bytesIn: 0, bytesOut: 2048, durationMs: 12.5 };

describe('EMF metrics', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('writes one line per request: requests by route and status, latency and errors by route, all over all', () => {
    const { metrics, lines, parsed } = recording('Registry/Test');
    metrics.request(request);

    expect(lines).toHaveLength(1);
    const [line] = parsed();
    expect(line?._aws.CloudWatchMetrics).toEqual([
      {
        Namespace: 'Registry/Test',
        Dimensions: [['Route', 'Status']],
        Metrics: [{ Name: 'Requests', Unit: 'Count' }],
      },
      {
        Namespace: 'Registry/Test',
        Dimensions: [['Route']],
        Metrics: [
          { Name: 'Latency', Unit: 'Milliseconds' },
          { Name: 'Errors', Unit: 'Count' },
        ],
      },
      {
        Namespace: 'Registry/Test',
        Dimensions: [[]],
        Metrics: [
          { Name: 'Requests', Unit: 'Count' },
          { Name: 'Errors', Unit: 'Count' },
          { Name: 'ClientErrors', Unit: 'Count' },
          { Name: 'Latency', Unit: 'Milliseconds' },
          { Name: 'BytesIn', Unit: 'Bytes' },
          { Name: 'BytesOut', Unit: 'Bytes' },
        ],
      },
    ]);
    expect(line && members(line)).toEqual({
      Route: 'blob',
      Status: '200',
      Requests: 1,
      Errors: 0,
      ClientErrors: 0,
      Latency: 12.5,
      BytesIn: 0,
      BytesOut: 2048,
    });
  });

  it('counts a 5xx as an error and a 4xx as a client error', () => {
    const { metrics, parsed } = recording();
    metrics.request({ ...request, status: 503 });
    metrics.request({ ...request, route: 'manifest', status: 404 });
    metrics.request({ ...request, route: 'unknown', status: 400 });
    metrics.request({ ...request, status: 307 });
    expect(
      parsed().map(({ Route, Status, Errors, ClientErrors }) => [Route, Status, Errors, ClientErrors]),
    ).toEqual([
      ['blob', '503', 1, 0],
      ['manifest', '404', 0, 1],
      ['unknown', '400', 0, 1],
      ['blob', '307', 0, 0],
    ]);
  });

  it('adds BlobBytesPushed only to the line of a request that finished an upload', () => {
    const { metrics, parsed } = recording();
    metrics.request(request);
    metrics.request({
      ...request,
      route: 'blob_upload_chunk',
      method: 'PUT',
      status: 201,
      blobBytesPushed: 7000,
    });
    const [plain, pushed] = parsed();
    expect(plain).not.toHaveProperty('BlobBytesPushed');
    expect(plain?._aws.CloudWatchMetrics.at(-1)?.Metrics.map((m) => m.Name)).not.toContain('BlobBytesPushed');
    expect(pushed?.BlobBytesPushed).toBe(7000);
    // Over all routes only: the registry's upload sizes.
    expect(pushed?._aws.CloudWatchMetrics.at(-1)?.Metrics).toContainEqual({
      Name: 'BlobBytesPushed',
      Unit: 'Bytes',
    });
  });

  it('writes delivery outcomes per sink, failures and errors as NotificationsFailed, nothing for zero or accepted', () => {
    const { metrics, parsed } = recording();
    metrics.delivery('eventbridge', 'events', 3);
    metrics.delivery('eventbridge', 'successes', 2);
    metrics.delivery('eventbridge', 'failures', 1);
    metrics.delivery('eventbridge', 'errors', 1);
    metrics.delivery('eventbridge', 'dropped', 0);
    metrics.delivery('eventbridge', 'dropped', 4);
    metrics.pending('eventbridge', 9);

    const lines = parsed();
    expect(lines.map((line) => line._aws.CloudWatchMetrics[0]?.Dimensions)).toEqual([
      [['Sink']],
      [['Sink']],
      [['Sink']],
      [['Sink']],
    ]);
    expect(lines.map(members)).toEqual([
      { Sink: 'eventbridge', NotificationsDelivered: 2 },
      { Sink: 'eventbridge', NotificationsFailed: 1 },
      { Sink: 'eventbridge', NotificationsFailed: 1 },
      { Sink: 'eventbridge', NotificationsDropped: 4 },
    ]);
    expect(lines.map((line) => line._aws.CloudWatchMetrics[0]?.Metrics)).toEqual([
      [{ Name: 'NotificationsDelivered', Unit: 'Count' }],
      [{ Name: 'NotificationsFailed', Unit: 'Count' }],
      [{ Name: 'NotificationsFailed', Unit: 'Count' }],
      [{ Name: 'NotificationsDropped', Unit: 'Count' }],
    ]);
  });

  it('writes the health check as Healthy with no dimensions, and the failing checks beside it', () => {
    const { metrics, parsed } = recording();
    metrics.health({});
    metrics.health({ storagedriver_s3: 'Access Denied' });
    const [healthy, unhealthy] = parsed();
    expect(healthy?._aws.CloudWatchMetrics[0]).toMatchObject({
      Dimensions: [[]],
      Metrics: [{ Name: 'Healthy', Unit: 'Count' }],
    });
    expect(healthy).toMatchObject({ Healthy: 1, Failing: {} });
    expect(unhealthy).toMatchObject({ Healthy: 0, Failing: { storagedriver_s3: 'Access Denied' } });
  });

  it('writes to stdout itself, not through console.log (which Lambda’s JSON log format would wrap)', () => {
    const written: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    const log = vi.spyOn(console, 'log');
    new EmbeddedMetrics('Registry').request(request);
    expect(log).not.toHaveBeenCalled();
    expect(written).toHaveLength(1);
    expect(parseEmf(written[0] ?? '').Route).toBe('blob');
  });
});
