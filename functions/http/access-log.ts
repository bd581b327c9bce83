import type { Logger } from '../log.js';
import { UPLOAD_URL_PARAMETER } from '../registry/upload-urls.js';

/** One request as every runtime adapter logs it, so operators parse one schema wherever it runs. */
export interface AccessLogEntry {
  requestId: string;
  method: string | undefined;
  /** The path and query as the client sent them; upload URL signatures are left out (see loggedPath). */
  path: string | undefined;
  status: number;
  bytesIn: number;
  bytesOut: number | undefined;
  durationMs: number;
  remote: string | undefined;
  userAgent: string | undefined;
  /** The user the request was authenticated as; absent when anonymous or refused. */
  user: string | undefined;
  /** distribution's handler name for the API route (see ClientInfo.route); absent for other paths. */
  route: string | undefined;
  /** The repository the request named, if any. */
  repository: string | undefined;
  /** Whether the whole response reached the client (false when it went away first). */
  completed?: boolean;
}

export function logRequest(log: Logger, { path, durationMs, ...entry }: AccessLogEntry): void {
  log.info('request', {
    ...entry,
    path: path === undefined ? undefined : loggedPath(path),
    durationMs: Math.round(durationMs * 10) / 10,
  });
}

/**
 * The path for a log: a signed upload URL grants its upload to whoever holds it, so the signature of
 * `_upload=<kid>.<expires>.<signature>` is replaced, keeping the kid and expiry that explain a refusal.
 * A value of another shape is replaced whole. Keys are read as the registry reads them (`%5Fupload` too).
 */
export function loggedPath(path: string): string {
  const start = path.indexOf('?');
  if (start < 0) return path;
  const parameters = path
    .slice(start + 1)
    .split('&')
    .map((parameter) => {
      const equals = parameter.indexOf('=');
      if (equals < 0 || [...new URLSearchParams(parameter).keys()][0] !== UPLOAD_URL_PARAMETER) {
        return parameter;
      }
      const value = parameter.slice(equals + 1);
      const kept = /^[^.]*\.[^.]*\./.exec(value)?.[0] ?? '';
      return `${parameter.slice(0, equals)}=${kept}redacted`;
    });
  return `${path.slice(0, start)}?${parameters.join('&')}`;
}
