// A transparent HTTP/1.1 recording proxy in front of the registry under test. Clients talk to the proxy (its
// address is "the registry" for them); every exchange is recorded (method, URL, status, the headers that
// matter to the distribution protocol, bytes each way), so tests can assert what happened on the wire (e.g.
// a cross-repository mount answered 201) whatever the registry's own log format, and failures can show
// the HTTP exchange. The Host header is passed through unchanged, so Location URLs point back at the proxy.
import { appendFileSync } from 'node:fs';
import { Agent, createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Exchange {
  seq: number;
  method: string;
  url: string;
  status: number;
  /** Selected request headers (lower-case names). */
  req: Record<string, string>;
  /** Selected response headers (lower-case names). */
  res: Record<string, string>;
  reqBytes: number;
  resBytes: number;
  ms: number;
  userAgent: string;
  error?: string;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'expect',
]);
const REQ_KEEP = ['content-type', 'content-length', 'transfer-encoding', 'content-range', 'accept'];
const RES_KEEP = [
  'content-type',
  'content-length',
  'transfer-encoding',
  'location',
  'range',
  'docker-content-digest',
  'docker-upload-uuid',
  'oci-subject',
];

function pick(headers: IncomingHttpHeaders, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = headers[name];
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function forwardHeaders(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (!HOP_BY_HOP.has(name.toLowerCase())) out.push(name, raw[i + 1] ?? '');
  }
  return out;
}

export function formatExchange(e: Exchange): string {
  const req = Object.entries(e.req)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  const res = Object.entries(e.res)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return (
    `#${e.seq} ${e.method} ${e.url.length > 200 ? `${e.url.slice(0, 200)}...` : e.url} -> ${e.status} (${e.ms.toFixed(0)} ms, up ${e.reqBytes} B, down ${e.resBytes} B)` +
    ` [${e.userAgent.slice(0, 40)}] req{${req}} res{${res}}${e.error === undefined ? '' : ` ERROR ${e.error}`}`
  );
}

export interface RecordingProxy {
  port: number;
  exchanges: Exchange[];
  close(): Promise<void>;
}

export async function startRecordingProxy(
  upstreamPort: number,
  logFile: string,
  upstreamHost = '127.0.0.1',
): Promise<RecordingProxy> {
  const exchanges: Exchange[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  let seq = 0;

  const server = createServer((req, res) => {
    const started = performance.now();
    const exchange: Exchange = {
      seq: ++seq,
      method: req.method ?? '?',
      url: req.url ?? '',
      status: 0,
      req: pick(req.headers, REQ_KEEP),
      res: {},
      reqBytes: 0,
      resBytes: 0,
      ms: 0,
      userAgent: req.headers['user-agent'] ?? '',
    };
    let done = false;
    const finish = (error?: string): void => {
      if (done) return;
      done = true;
      exchange.ms = performance.now() - started;
      if (error !== undefined) exchange.error = error;
      exchanges.push(exchange);
      appendFileSync(logFile, `${formatExchange(exchange)}\n`);
    };

    const headers = forwardHeaders(req.rawHeaders);
    // A request with neither Content-Length nor chunked framing has no body (RFC 9112 6.3); without this,
    // Node would frame an empty POST/PUT/PATCH as chunked. Content-Length and chunked requests keep their
    // framing (Node re-chunks a chunked body).
    if (
      ['POST', 'PUT', 'PATCH'].includes(req.method ?? '') &&
      req.headers['content-length'] === undefined &&
      req.headers['transfer-encoding'] === undefined
    ) {
      headers.push('Content-Length', '0');
    }
    const upstream = request({
      host: upstreamHost,
      port: upstreamPort,
      method: req.method,
      path: req.url,
      headers,
      agent,
      setHost: false,
    });
    req.on('data', (chunk: Buffer) => {
      exchange.reqBytes += chunk.length;
    });
    req.pipe(upstream);

    upstream.on('response', (up) => {
      exchange.status = up.statusCode ?? 0;
      exchange.res = pick(up.headers, RES_KEEP);
      // Without Content-Length, Node frames the body as chunked again.
      res.writeHead(up.statusCode ?? 502, up.statusMessage, forwardHeaders(up.rawHeaders));
      up.on('data', (chunk: Buffer) => {
        exchange.resBytes += chunk.length;
      });
      up.pipe(res);
      up.on('end', () => {
        finish();
      });
      up.on('error', (err) => {
        finish(`upstream response: ${err.message}`);
        res.destroy(err);
      });
    });
    upstream.on('error', (err) => {
      finish(`upstream: ${err.message}`);
      if (!res.headersSent) {
        exchange.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`e2e proxy: upstream error: ${err.message}\n`);
      } else {
        res.destroy(err);
      }
    });
    req.on('error', (err) => {
      finish(`client: ${err.message}`);
      upstream.destroy(err);
    });
    res.on('close', () => {
      if (!res.writableFinished) {
        finish('client closed the connection before the response ended');
        upstream.destroy();
      }
    });
  });
  // Docker probes https first on insecure registries: answer the TLS hello with a plain close.
  server.on('clientError', (_err, socket) => {
    socket.destroy();
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    exchanges,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
      agent.destroy();
    },
  };
}
