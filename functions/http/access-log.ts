import type { Logger } from '../log.js';

/** One request as every runtime adapter logs it, so operators parse one schema wherever it runs. */
export interface AccessLogEntry {
  requestId: string;
  method: string | undefined;
  path: string | undefined;
  status: number;
  bytesIn: number;
  bytesOut: number | undefined;
  /** performance.now() when the request arrived. */
  started: number;
  remote: string | undefined;
  userAgent: string | undefined;
  /** The user the request was authenticated as; absent when anonymous or refused. */
  user: string | undefined;
  /** Whether the whole response reached the client (false when it went away first). */
  completed?: boolean;
}

export function logRequest(log: Logger, { started, ...entry }: AccessLogEntry): void {
  log.info('request', { ...entry, durationMs: Math.round((performance.now() - started) * 10) / 10 });
}
