/**
 * The rules of CloudWatch's embedded metric format, checked on one log line as CloudWatch Logs would
 * before extracting metrics from it:
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
 */
import { expect } from 'vitest';

const UNITS = new Set([
  'Seconds',
  'Microseconds',
  'Milliseconds',
  'Bytes',
  'Kilobytes',
  'Megabytes',
  'Gigabytes',
  'Terabytes',
  'Bits',
  'Kilobits',
  'Megabits',
  'Gigabits',
  'Terabits',
  'Percent',
  'Count',
  'Bytes/Second',
  'Kilobytes/Second',
  'Megabytes/Second',
  'Gigabytes/Second',
  'Terabytes/Second',
  'Bits/Second',
  'Kilobits/Second',
  'Megabits/Second',
  'Gigabits/Second',
  'Terabits/Second',
  'Count/Second',
  'None',
]);

export interface EmfDirective {
  Namespace: string;
  Dimensions: string[][];
  Metrics: { Name: string; Unit?: string }[];
}

export type EmfLine = Record<string, unknown> & {
  _aws: { Timestamp: number; CloudWatchMetrics: EmfDirective[] };
};

/** Parses one line (with its newline) and fails the test on any rule it breaks. */
export function parseEmf(line: string): EmfLine {
  expect(line.endsWith('\n')).toBe(true);
  expect(line.slice(0, -1)).not.toContain('\n');
  const root = JSON.parse(line) as Record<string, unknown>;
  const aws = root._aws as Record<string, unknown> | undefined;
  expect(aws).toBeTypeOf('object');
  // Milliseconds since the epoch (a date in seconds would be in 1970).
  expect(Number.isInteger(aws?.Timestamp)).toBe(true);
  expect(Math.abs(Number(aws?.Timestamp) - Date.now())).toBeLessThan(60_000);
  const directives = aws?.CloudWatchMetrics as EmfDirective[];
  expect(Array.isArray(directives)).toBe(true);
  for (const directive of directives) {
    expect(directive.Namespace).toMatch(/^[^:].{0,1023}$/);
    expect(directive.Dimensions.length).toBeGreaterThan(0);
    for (const set of directive.Dimensions) {
      expect(set.length).toBeLessThanOrEqual(30);
      // Every dimension is a string member of the root.
      for (const key of set) expect(root[key], key).toBeTypeOf('string');
    }
    expect(directive.Metrics.length).toBeGreaterThan(0);
    expect(directive.Metrics.length).toBeLessThanOrEqual(100);
    for (const metric of directive.Metrics) {
      expect(metric.Name.length).toBeGreaterThan(0);
      expect(metric.Name.length).toBeLessThanOrEqual(1024);
      if (metric.Unit !== undefined) expect(UNITS.has(metric.Unit), metric.Unit).toBe(true);
      // Every metric has a numeric member of the root (or an array of at most 100 numbers).
      const value = root[metric.Name];
      const values = Array.isArray(value) ? (value as unknown[]) : [value];
      expect(values.length).toBeLessThanOrEqual(100);
      for (const each of values) expect(Number.isFinite(each), metric.Name).toBe(true);
    }
  }
  return root as EmfLine;
}
