import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { pipeline } from 'node:stream/promises';
import type { ClientInfo } from '../auth/access.js';
import { errorFields, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { logRequest } from './access-log.js';
import type { RequestHandler } from './handler.js';

export interface NodeAdapterOptions {
  log: Logger;
  /** One JSON line per request (distribution's log.accesslog.disabled turns it off). */
  accessLog: boolean;
  /** Headers added to every response (distribution's http.headers). */
  headers?: Record<string, string[]>;
  /** Told of every request once its response is done, whether or not the access log is on. */
  metrics?: Metrics | undefined;
}

/**
 * node:http <-> Web Request/Response. Bodies stream both ways with backpressure: an upload is read
 * only as fast as storage takes it and a download written only as fast as the client reads it, so a
 * blob is never held in memory. A client that goes away aborts the request's body, which the
 * registry sees as a failed read.
 */
export function nodeListener(handler: RequestHandler, options: NodeAdapterOptions) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    void serve(handler, options, req, res);
  };
}

async function serve(
  handler: RequestHandler,
  options: NodeAdapterOptions,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const started = performance.now();
  const requestId = headerValue(req.headers['x-request-id']) ?? randomUUID();
  const counter = { bytesIn: 0 };
  const client: ClientInfo = { address: req.socket.remoteAddress, requestId };
  let status = 500;
  try {
    let request: Request;
    try {
      request = toRequest(req, counter);
    } catch (error) {
      // Only what WHATWG Request refuses lands here (TRACE, CONNECT, malformed header values).
      status = sendError(res, 400, 'UNSUPPORTED', (error as Error).message);
      return;
    }
    const response = await handler.handle(request, client);
    status = response.status;
    res.statusCode = response.status;
    for (const [name, values] of Object.entries(options.headers ?? {})) res.setHeader(name, values);
    response.headers.forEach((value, name) => {
      res.setHeader(name, value);
    });
    res.setHeader('X-Request-Id', requestId);
    if (response.body && req.method !== 'HEAD') {
      await pipeline(Readable.fromWeb(response.body), res);
    } else {
      await response.body?.cancel();
      res.end();
    }
  } catch (error) {
    if (!res.headersSent) {
      status = sendError(res, 500, 'UNKNOWN', `internal error (request ${requestId})`);
      options.log.error('request failed in the HTTP adapter', { requestId, ...errorFields(error) });
    } else {
      // The client went away mid-response, or the stream broke: nothing more can be sent.
      res.destroy();
    }
  } finally {
    const durationMs = performance.now() - started;
    const contentLength = res.getHeader('content-length');
    // A HEAD answer announces the GET's length and sends nothing; a length not announced is not known.
    const bytesOut =
      req.method === 'HEAD' ? 0 : contentLength === undefined ? undefined : Number(contentLength);
    options.metrics?.request({
      route: client.route ?? 'unknown',
      method: req.method ?? 'unknown',
      status,
      bytesIn: counter.bytesIn,
      bytesOut: bytesOut ?? 0,
      durationMs,
      blobBytesPushed: client.blobBytesPushed,
    });
    if (options.accessLog) {
      logRequest(options.log, {
        requestId,
        method: req.method,
        path: req.url,
        status,
        bytesIn: counter.bytesIn,
        bytesOut,
        durationMs,
        remote: req.socket.remoteAddress,
        userAgent: req.headers['user-agent'],
        user: client.user,
        route: client.route,
        repository: client.repository,
        completed: res.writableFinished,
      });
    }
  }
}

function toRequest(req: IncomingMessage, counter: { bytesIn: number }): Request {
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    headers.append(req.rawHeaders[i] ?? '', req.rawHeaders[i + 1] ?? '');
  }
  const host = /^[A-Za-z0-9.:[\]-]+$/.test(req.headers.host ?? '') ? req.headers.host : 'localhost';
  // The scheme matters to URLs the registry builds from the request (a token realm, a Location).
  const scheme = req.socket instanceof TLSSocket ? 'https' : 'http';
  const url = `${scheme}://${host}${req.url?.startsWith('/') ? req.url : '/'}`;
  const hasBody =
    req.method !== 'GET' &&
    req.method !== 'HEAD' &&
    (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0);
  const body = hasBody ? ReadableStream.from(counted(req, counter)) : null;
  return new Request(url, { method: req.method, headers, body, duplex: 'half' });
}

async function* counted(req: IncomingMessage, counter: { bytesIn: number }): AsyncGenerator<Uint8Array> {
  for await (const chunk of req as AsyncIterable<Buffer>) {
    counter.bytesIn += chunk.byteLength;
    yield chunk;
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  const first = Array.isArray(value) ? value[0] : value;
  return first !== undefined && /^[\w.:-]{1,128}$/.test(first) ? first : undefined;
}

/** The adapter's own errors, in the registry's error format, for requests that never reached it. */
function sendError(res: ServerResponse, status: number, code: string, message: string): number {
  const body = JSON.stringify({ errors: [{ code, message, detail: null }] });
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Docker-Distribution-API-Version': 'registry/2.0',
  });
  res.end(body);
  return status;
}
