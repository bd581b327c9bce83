// A transparent HTTP/1.1 recording proxy in front of the registry under test. Clients talk to the proxy (its
// address is "the registry" for them); every exchange is recorded (method, URL, status, the headers that
// matter to the distribution protocol, bytes each way), so tests can assert what happened on the wire (e.g.
// a cross-repository mount answered 201) whatever the registry's own log format, and failures can show
// the HTTP exchange. The Host header is passed through unchanged, so Location URLs point back at the proxy.
// With `tls`, the proxy serves HTTPS with the registry's own certificate and talks HTTPS to it, so clients
// verify the same chain either way; it records the TLS version of each exchange and every failed handshake.
// startConnectProxy is a forward proxy for clients that must reach the registry by name (see tls.ts).
import { appendFileSync } from 'node:fs';
import {
  Agent,
  createServer,
  request,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { Agent as HttpsAgent, createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { listenOnLoopback } from '../../../bin/local/free-port.js';

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
  /** The TLS version of the client's connection (e.g. TLSv1.3); absent over plain HTTP. */
  tls?: string;
  /** The scheme of the request's Authorization header (Basic, Bearer), never the credentials. */
  authScheme?: string;
  /** The first `errors[].code` of a JSON error response (UNAUTHORIZED, DENIED, ...). */
  errorCode?: string;
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
  'www-authenticate',
];

/** Error bodies are read (for their code) up to this size. */
const MAX_ERROR_BODY = 16 * 1024;

function errorCodeOf(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown }[] };
    const code = parsed.errors?.[0]?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

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
  const extra = [
    e.tls === undefined ? '' : ` ${e.tls}`,
    e.authScheme === undefined ? '' : ` auth=${e.authScheme}`,
    e.errorCode === undefined ? '' : ` code=${e.errorCode}`,
  ].join('');
  return (
    `#${e.seq} ${e.method} ${e.url.length > 200 ? `${e.url.slice(0, 200)}...` : e.url} -> ${e.status} (${e.ms.toFixed(0)} ms, up ${e.reqBytes} B, down ${e.resBytes} B)` +
    ` [${e.userAgent.slice(0, 40)}]${extra} req{${req}} res{${res}}${e.error === undefined ? '' : ` ERROR ${e.error}`}`
  );
}

/** TLS for the recording proxy: what it presents to clients, and what it trusts upstream. */
export interface ProxyTls {
  /** PEM certificate and key the proxy serves (the registry's own). */
  cert: string;
  key: string;
  /** PEM of the CA the registry's certificate is verified against. */
  ca: string;
}

export interface RecordingProxy {
  port: number;
  exchanges: Exchange[];
  /** TLS handshakes that failed (a client that does not trust the certificate aborts one), in order. */
  handshakeFailures: string[];
  close(): Promise<void>;
}

export async function startRecordingProxy(
  upstreamPort: number,
  logFile: string,
  upstreamHost = '127.0.0.1',
  tls?: ProxyTls,
): Promise<RecordingProxy> {
  const exchanges: Exchange[] = [];
  const handshakeFailures: string[] = [];
  const agent = tls
    ? new HttpsAgent({ keepAlive: true, maxSockets: 64, ca: tls.ca })
    : new Agent({ keepAlive: true, maxSockets: 64 });
  const send = tls ? httpsRequest : request;
  let seq = 0;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const started = performance.now();
    const authorization = req.headers.authorization;
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
      ...(req.socket instanceof TLSSocket ? { tls: req.socket.getProtocol() ?? 'unknown' } : {}),
      ...(authorization === undefined ? {} : { authScheme: authorization.split(' ')[0] ?? '' }),
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
    const upstream = send({
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
      const errorBody: Buffer[] = [];
      const keepError = exchange.status >= 400 && /json/i.test(up.headers['content-type'] ?? '');
      up.on('data', (chunk: Buffer) => {
        if (keepError && exchange.resBytes < MAX_ERROR_BODY) errorBody.push(chunk);
        exchange.resBytes += chunk.length;
      });
      up.pipe(res);
      up.on('end', () => {
        const code = keepError ? errorCodeOf(Buffer.concat(errorBody)) : undefined;
        if (code !== undefined) exchange.errorCode = code;
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
  };
  const server = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, handle) : createServer(handle);
  // Docker probes https first on insecure registries: answer the TLS hello with a plain close.
  server.on('clientError', (_err, socket) => {
    socket.destroy();
  });
  server.on('tlsClientError', (err: Error) => {
    handshakeFailures.push(err.message);
    appendFileSync(logFile, `TLS handshake failed: ${err.message}\n`);
  });
  server.keepAliveTimeout = 30_000;
  const port = await listenOnLoopback(server);
  return {
    port,
    exchanges,
    handshakeFailures,
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

export interface ConnectProxy {
  port: number;
  /** Every CONNECT asked for (host:port), in order, and whether it was let through. */
  tunnels: { target: string; allowed: boolean }[];
  /** Lets `CONNECT ${hostname}:${port}` through to 127.0.0.1:port. */
  allow(port: number): void;
  close(): Promise<void>;
}

/**
 * A forward proxy (HTTP CONNECT) that only tunnels `hostname:PORT` to 127.0.0.1:PORT for allowed ports and
 * refuses anything else (nothing else is contacted): a client that never resolves hostname reaches a
 * registry on this machine by that name, and verifies its certificate for that name.
 */
export async function startConnectProxy(hostname: string): Promise<ConnectProxy> {
  const tunnels: ConnectProxy['tunnels'] = [];
  const allowed = new Set<number>();
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  const server = createServer((_req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain' });
    res.end('e2e connect proxy: only CONNECT is served\n');
  });
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    track(client);
    const target = req.url ?? '';
    const match = /^([^:]+):(\d+)$/.exec(target);
    const port = Number(match?.[2]);
    const ok = match?.[1] === hostname && allowed.has(port);
    tunnels.push({ target, allowed: ok });
    if (!ok) {
      client.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const upstream = connect(port, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    track(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  const port = await listenOnLoopback(server);
  return {
    port,
    tunnels,
    allow: (p) => allowed.add(p),
    async close() {
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    },
  };
}
