/**
 * A local stand-in for API Gateway (HTTP API, payload format 2.0) in front of a Lambda handler: it
 * builds the events API Gateway builds and enforces the limits the deployed registry lives with, so
 * what works here works deployed, and what fails there fails here the same way:
 *
 * - a request body over 10 MB: API Gateway's 413, before the function runs;
 * - an event over Lambda's 6 MB synchronous payload (binary bodies arrive base64-encoded, so about
 *   4.4 MB of raw body fits): 413, the function never runs;
 * - a result over Lambda's response limit: 502; a function that takes longer than the integration
 *   timeout (30 s): 503. The bodies are API Gateway's own ({"message": ...}), not the registry's.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';

export type LambdaHandler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

export const LIMITS = {
  /** API Gateway's request body limit. */
  requestBodyBytes: 10 * 1024 * 1024,
  /** Lambda's synchronous invocation payload limit (the event JSON). */
  eventBytes: 6 * 1024 * 1024,
  /** Lambda's synchronous response payload limit (the result JSON). */
  resultBytes: 6 * 1024 * 1024 + 100,
  /** API Gateway's integration timeout. */
  timeoutMs: 30_000,
};

/**
 * A node:http listener that answers like an HTTP API whose $default route invokes handler. API Gateway
 * serves HTTPS only: behind another local front (the edge), `https` makes the events say so, as they
 * would deployed, whatever the local hop speaks.
 */
export function apiGatewayFront(handler: LambdaHandler, limits = LIMITS, scheme?: 'https') {
  return (req: IncomingMessage, res: ServerResponse): void => {
    void invoke(handler, limits, req, res, scheme).catch((error: unknown) => {
      process.stderr.write(`api gateway: ${String(error)}\n`);
      if (!res.headersSent) gatewayError(res, 500, 'Internal Server Error');
      else res.destroy();
    });
  };
}

async function invoke(
  handler: LambdaHandler,
  limits: typeof LIMITS,
  req: IncomingMessage,
  res: ServerResponse,
  scheme: 'https' | undefined,
) {
  const body = await readBody(req, limits.requestBodyBytes);
  if (body === undefined) {
    gatewayError(res, 413, 'Request Entity Too Large');
    return;
  }
  const event = toEvent(req, body, scheme);
  const payload = JSON.stringify(event);
  if (Buffer.byteLength(payload) > limits.eventBytes) {
    gatewayError(res, 413, 'Request Entity Too Large');
    return;
  }

  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => {
      resolve('timeout');
    }, limits.timeoutMs);
  });
  const context = lambdaContext(event.requestContext.requestId, limits.timeoutMs);
  // The function sees a fresh copy of the event, as it would after crossing the wire.
  const result = await Promise.race([
    handler(JSON.parse(payload) as APIGatewayProxyEventV2, context),
    timeout,
  ]);
  clearTimeout(timer);
  if (result === 'timeout') {
    gatewayError(res, 503, 'Service Unavailable');
    return;
  }
  if (Buffer.byteLength(JSON.stringify(result)) > limits.resultBytes) {
    gatewayError(res, 502, 'Internal Server Error');
    return;
  }
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) headers[name] = String(value);
  if (result.cookies?.length) headers['set-cookie'] = result.cookies;
  headers['apigw-requestid'] = event.requestContext.requestId;
  const bytes =
    result.body === undefined
      ? undefined
      : Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8');
  res.writeHead(result.statusCode ?? 200, headers);
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

/**
 * The whole body, or undefined when it is over limit bytes: then the rest is read and dropped, and the
 * caller answers at once (a declared length over the limit is refused before any body byte is read), so
 * a client streaming a large layer learns of the refusal while it sends, not after.
 */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  if (Number(req.headers['content-length'] ?? 0) > limit) {
    req.resume();
    return undefined;
  }
  const parts: Buffer[] = [];
  let size = 0;
  // Leaving the loop early must not destroy the request: its response is still to be sent.
  for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > limit) {
      req.resume();
      return undefined;
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

/** The event API Gateway sends for an HTTP API with payload format 2.0. */
function toEvent(req: IncomingMessage, body: Buffer, scheme: 'https' | undefined): APIGatewayProxyEventV2 {
  const url = new URL(req.url ?? '/', 'http://local');
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = (req.rawHeaders[i] ?? '').toLowerCase();
    const value = req.rawHeaders[i + 1] ?? '';
    if (name === 'cookie') cookies.push(...value.split(/;\s*/));
    // API Gateway joins repeated headers with commas.
    else headers[name] = name in headers ? `${headers[name]},${value}` : value;
  }
  // As API Gateway adds them. API Gateway serves HTTPS only; this front serves plain HTTP unless it was
  // given a certificate, and says which, so URLs built from the request (the token realm) match.
  const sourceIp = req.socket.remoteAddress ?? '127.0.0.1';
  headers['x-forwarded-for'] = headers['x-forwarded-for']
    ? `${headers['x-forwarded-for']}, ${sourceIp}`
    : sourceIp;
  headers['x-forwarded-port'] = String(req.socket.localPort ?? '');
  headers['x-forwarded-proto'] = scheme ?? ((req.socket as Partial<TLSSocket>).encrypted ? 'https' : 'http');
  const now = new Date();
  const requestId = randomUUID();
  const rawQueryString = url.search.slice(1);
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString,
    ...(cookies.length ? { cookies } : {}),
    headers,
    ...(rawQueryString ? { queryStringParameters: Object.fromEntries(url.searchParams) } : {}),
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      domainName: headers.host ?? 'localhost',
      domainPrefix: (headers.host ?? 'localhost').split('.')[0] ?? 'localhost',
      http: {
        method: req.method ?? 'GET',
        path: url.pathname,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      routeKey: '$default',
      stage: '$default',
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    ...(body.byteLength
      ? { body: textual(headers['content-type']) ? body.toString('utf8') : body.toString('base64') }
      : {}),
    isBase64Encoded: body.byteLength > 0 && !textual(headers['content-type']),
  };
}

/** Bodies API Gateway passes as text; everything else (blob bytes) arrives base64-encoded. */
function textual(contentType: string | undefined): boolean {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  return /^text\/|^application\/(json|xml|javascript|x-www-form-urlencoded)$|\+(json|xml)$/.test(type);
}

/** What the Node.js runtime passes an async handler, for requestId, with timeoutMs to run. */
export function lambdaContext(
  requestId: string = randomUUID(),
  timeoutMs: number = LIMITS.timeoutMs,
): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'registry',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:local:000000000000:function:registry',
    memoryLimitInMB: '1024',
    awsRequestId: requestId,
    logGroupName: '/aws/lambda/registry',
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  } as Context; // without the long-deprecated done/fail/succeed callbacks
}

function gatewayError(res: ServerResponse, status: number, message: string): void {
  const body = JSON.stringify({ message });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
