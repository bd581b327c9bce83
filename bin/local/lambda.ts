/**
 * A local AWS Lambda for tests and the local AWS deployment: the Invoke API
 * (`POST /2015-03-31/functions/<name>/invocations`, REST JSON) on a free port of 127.0.0.1, for the SDK
 * client pointed at it (`endpoint`, or AWS_ENDPOINT_URL_LAMBDA), running handlers of this process.
 * What it does as Lambda does:
 *
 * - it authenticates every request first: the SigV4 signature (service `lambda`, its region) is
 *   computed again (aws-json.ts) with the one set of credentials it was started with; an unknown access
 *   key is `UnrecognizedClientException`, a wrong secret key, a tampered body or a stale date
 *   `InvalidSignatureException`;
 * - a function is named by its name, its ARN or a partial ARN (`<account>:function:<name>`), with the
 *   qualifier `$LATEST` or none; any other function, region, account or qualifier is
 *   `404 ResourceNotFoundException`; a payload that is not JSON is `400 InvalidRequestContentException`;
 * - `X-Amz-Invocation-Type: Event` queues the event and answers `202` at once; the function's events run
 *   one at a time in order of arrival, as with a reserved concurrency of 1 (an event that arrives while
 *   one runs waits, as Lambda keeps a throttled event in its queue), and a failed one (an error, or its
 *   timeout) is tried again `retryAttempts` times (Lambda's default 2, after a minute and two; here after
 *   `retryDelayMs`). Payloads over 1 MB are `413 RequestTooLargeException`;
 * - `RequestResponse` (the default) runs the handler at once and answers `200` with its result, or with
 *   `X-Amz-Function-Error: Unhandled` and `{errorType, errorMessage}` when it throws or times out; over
 *   6 MB is `413`. `DryRun` answers `204`.
 *
 * Each run gets a Lambda context whose getRemainingTimeInMillis counts down the function's timeout.
 * What it does not: stop a handler at its timeout (it is reported as timed out and its result ignored,
 * but it runs on in this process), other operations, versions and aliases, destinations and dead-letter
 * queues, maximum event age, ClientContext, response streaming.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Context } from 'aws-lambda';
import { errorFields, type Logger, silentLogger } from '../../functions/log.js';
import { authenticate, AwsError, header, type LocalCredentials, readBody } from './aws-json.js';
import { listenOnLoopback } from './free-port.js';

/**
 * A function's handler. Its event is whatever the invocation carries (JSON), so handlers of any event
 * type fit here.
 */
export type LocalHandler = (event: never, context: Context) => Promise<unknown>;

export interface LocalFunction {
  /** The function's name, in its ARN. */
  name: string;
  handler: LocalHandler;
  /** How long an invocation may run (Lambda's default: 3 s). @default 3 s */
  timeoutMs?: number;
  /** The memory the context reports. @default 128 */
  memoryMb?: number;
  /** Attempts after an asynchronous invocation failed (the function's MaximumRetryAttempts). @default 2 */
  retryAttempts?: number;
}

export interface LocalLambdaOptions {
  /** The region requests must be signed for, and the functions' ARNs name. */
  region: string;
  /** The only credentials requests may be signed with. */
  credentials: LocalCredentials;
  /** The account the functions' ARNs name. @default 000000000000 */
  accountId?: string;
  functions: LocalFunction[];
  /** The wait before an asynchronous invocation that failed is tried again. @default 1 s */
  retryDelayMs?: number;
  /** Where failed invocations are logged. @default silent */
  log?: Logger;
}

/** One invocation, as it was asked for and, once it ran, how it ended. */
export interface LocalInvocation {
  requestId: string;
  functionName: string;
  type: 'Event' | 'RequestResponse';
  event: unknown;
  /** Runs so far (more than 1 when an asynchronous invocation was retried). */
  attempts: number;
  /** Set once it ended: the handler's result, or why it failed (its last attempt's). */
  outcome?: { result: unknown } | { error: string };
}

export interface LocalLambda {
  /** http://127.0.0.1:PORT: AWS_ENDPOINT_URL_LAMBDA, or the client's `endpoint`. */
  readonly url: string;
  /** Every invocation so far, in order of arrival. */
  readonly invocations: readonly LocalInvocation[];
  /** The function's ARN, as Lambda gives it to the handler (context.invokedFunctionArn). */
  arn(name: string): string;
  /** Queues an asynchronous invocation, as EventBridge Scheduler's (InvocationType Event); its request id. */
  invokeAsync(name: string, event: unknown): string;
  /** Resolves once every queued invocation has run (retries included). */
  idle(): Promise<void>;
  /** Stops listening and drops the queued invocations; one that runs goes on, but is not retried. */
  close(): Promise<void>;
}

const SERVICE = 'lambda';
const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;
/** Invoke's payload limits. */
const MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024;
const MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 3_000;

/** What runs a function's queue: its pending asynchronous invocations and whether one is running. */
interface Queue {
  fn: LocalFunction;
  pending: LocalInvocation[];
  draining: Promise<void> | undefined;
}

export async function startLocalLambda(options: LocalLambdaOptions): Promise<LocalLambda> {
  const { region, credentials } = options;
  const accountId = options.accountId ?? '000000000000';
  const retryDelayMs = options.retryDelayMs ?? 1_000;
  const log = options.log ?? silentLogger;
  const queues = new Map<string, Queue>(
    options.functions.map((fn) => [fn.name, { fn, pending: [], draining: undefined }]),
  );
  const invocations: LocalInvocation[] = [];
  const closing = new AbortController();
  const arn = (name: string) => `arn:aws:lambda:${region}:${accountId}:function:${name}`;

  const server = createServer((req, res) => {
    void serve(req, res).catch((error: unknown) => {
      respondWithError(res, error);
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, MAX_SYNC_PAYLOAD_BYTES);
    if (body === undefined) throw tooLarge(MAX_SYNC_PAYLOAD_BYTES);
    await authenticate(req, body, { service: SERVICE, region, credentials });
    const url = new URL(req.url ?? '/', 'http://local');
    const match = INVOKE_PATH.exec(url.pathname);
    if (req.method !== 'POST' || !match) {
      throw new AwsError(
        'UnknownOperationException',
        `${req.method ?? ''} ${url.pathname} is not an operation`,
        404,
      );
    }
    const queue = find(decodeURIComponent(match[1] ?? ''), url.searchParams.get('Qualifier'));
    const type = header(req, 'x-amz-invocation-type') ?? 'RequestResponse';
    if (type !== 'Event' && type !== 'RequestResponse' && type !== 'DryRun') {
      throw new AwsError('InvalidParameterValueException', `Unsupported invocation type ${type}`);
    }
    if (type === 'Event' && body.byteLength > MAX_ASYNC_PAYLOAD_BYTES)
      throw tooLarge(MAX_ASYNC_PAYLOAD_BYTES);
    let event: unknown;
    try {
      event = body.byteLength === 0 ? {} : (JSON.parse(body.toString('utf8')) as unknown);
    } catch {
      throw new AwsError('InvalidRequestContentException', 'Could not parse request body into json');
    }
    const requestId = randomUUID();
    if (type === 'DryRun') {
      res.writeHead(204, { 'x-amzn-requestid': requestId });
      res.end();
      return;
    }
    if (type === 'Event') {
      enqueue(queue, requestId, event);
      res.writeHead(202, { 'x-amzn-requestid': requestId, 'content-length': 0 });
      res.end();
      return;
    }
    const invocation: LocalInvocation = {
      requestId,
      functionName: queue.fn.name,
      type: 'RequestResponse',
      event,
      attempts: 0,
    };
    invocations.push(invocation);
    await run(queue.fn, invocation);
    const outcome = invocation.outcome ?? { error: 'not run' };
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-amzn-requestid': requestId,
      'x-amz-executed-version': '$LATEST',
    };
    let text: string;
    if ('result' in outcome) {
      text = JSON.stringify(outcome.result ?? null);
    } else {
      headers['x-amz-function-error'] = 'Unhandled';
      text = JSON.stringify({ errorType: 'Error', errorMessage: outcome.error });
    }
    res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  /** The function a request names, as Lambda resolves a name, an ARN or a partial ARN. */
  function find(reference: string, qualifierParameter: string | null): Queue {
    const parsed =
      /^(?:arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):)?(?:(\d{12}):)?(?:function:)?([a-zA-Z0-9_.-]+)(?::([a-zA-Z0-9_$.-]+))?$/.exec(
        reference,
      );
    const [, arnRegion, account, name = '', qualifier] = parsed ?? [];
    const queue = queues.get(name);
    const wanted = qualifier ?? qualifierParameter ?? '$LATEST';
    if (
      !parsed ||
      !queue ||
      (arnRegion !== undefined && arnRegion !== region) ||
      (account !== undefined && account !== accountId) ||
      wanted !== '$LATEST'
    ) {
      throw new AwsError('ResourceNotFoundException', `Function not found: ${arn(name || reference)}`, 404);
    }
    return queue;
  }

  function enqueue(queue: Queue, requestId: string, event: unknown): void {
    const invocation: LocalInvocation = {
      requestId,
      functionName: queue.fn.name,
      type: 'Event',
      event,
      attempts: 0,
    };
    invocations.push(invocation);
    queue.pending.push(invocation);
    kick(queue);
  }

  /** Starts running the queue unless it runs already. */
  function kick(queue: Queue): void {
    if (queue.draining) return;
    queue.draining = drain(queue).finally(() => {
      queue.draining = undefined;
      // Queued between the last look at the queue and here.
      if (queue.pending.length > 0 && !closing.signal.aborted) kick(queue);
    });
  }

  /** Runs a function's queued invocations one after the other, each with its retries. */
  async function drain(queue: Queue): Promise<void> {
    // Never in the caller's turn: Invoke answers 202 before the function starts.
    await Promise.resolve();
    for (let invocation = queue.pending.shift(); invocation; invocation = queue.pending.shift()) {
      const attempts = 1 + (queue.fn.retryAttempts ?? 2);
      while (!closing.signal.aborted && invocation.attempts < attempts) {
        await run(queue.fn, invocation);
        if (invocation.outcome && 'result' in invocation.outcome) break;
        log.error('local Lambda: asynchronous invocation failed', {
          function: queue.fn.name,
          requestId: invocation.requestId,
          attempt: invocation.attempts,
          error: invocation.outcome?.error,
        });
        if (invocation.attempts < attempts) {
          const stopped = await sleep(retryDelayMs, false, { signal: closing.signal }).catch(() => true);
          if (stopped) return;
        }
      }
    }
  }

  /** One run of the handler, within the function's timeout; records its outcome on the invocation. */
  async function run(fn: LocalFunction, invocation: LocalInvocation): Promise<void> {
    invocation.attempts++;
    const timeoutMs = fn.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const context = localContext(fn, arn(fn.name), invocation.requestId, timeoutMs);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => {
        resolve('timeout');
      }, timeoutMs);
    });
    try {
      // A fresh copy of the event, as it would arrive over the wire.
      const event = JSON.parse(JSON.stringify(invocation.event ?? null)) as never;
      const result = await Promise.race([fn.handler(event, context), timedOut]);
      invocation.outcome =
        result === 'timeout'
          ? { error: `Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds` }
          : { result };
    } catch (error) {
      invocation.outcome = { error: error instanceof Error ? error.message : String(error) };
      log.debug('local Lambda: the handler threw', { function: fn.name, ...errorFields(error) });
    } finally {
      clearTimeout(timer);
    }
  }

  const port = await listenOnLoopback(server);

  return {
    url: `http://127.0.0.1:${port}`,
    invocations,
    arn,
    invokeAsync(name, event) {
      const queue = queues.get(name);
      if (!queue) throw new Error(`local Lambda: no function ${name}`);
      const requestId = randomUUID();
      enqueue(queue, requestId, event);
      return requestId;
    },
    async idle() {
      for (;;) {
        const draining = [...queues.values()].map((queue) => queue.draining).filter((d) => d !== undefined);
        if (draining.length === 0) return;
        await Promise.all(draining);
      }
    },
    async close() {
      closing.abort();
      for (const queue of queues.values()) queue.pending.length = 0;
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}

/** The context Lambda gives a handler, its remaining time counting down from now. */
function localContext(fn: LocalFunction, functionArn: string, requestId: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: fn.name,
    functionVersion: '$LATEST',
    invokedFunctionArn: functionArn,
    memoryLimitInMB: String(fn.memoryMb ?? 128),
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${fn.name}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  } as Context; // without the long-deprecated done/fail/succeed callbacks
}

const tooLarge = (limit: number) =>
  new AwsError(
    'RequestTooLargeException',
    `Request must be smaller than ${limit} bytes for the Invoke operation`,
    413,
  );

/**
 * Answers with Lambda's REST JSON error: the type in X-Amzn-ErrorType, `{"Type", "message"}` in the body.
 * Anything that is not an AwsError is `500 ServiceException`.
 */
function respondWithError(res: ServerResponse, error: unknown): void {
  const failure = error instanceof AwsError ? error : new AwsError('ServiceException', String(error), 500);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify({ Type: failure.status < 500 ? 'User' : 'Service', message: failure.message });
  res.writeHead(failure.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-amzn-errortype': failure.type,
    'x-amzn-requestid': randomUUID(),
  });
  res.end(text);
}
