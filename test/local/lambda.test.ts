// The local Lambda (bin/local/lambda.ts) driven by the real SDK client: it verifies SigV4, resolves
// functions as Invoke does, answers asynchronous invocations with 202 and runs them one at a time in
// the background (with retries), and synchronous ones with the handler's result or error.
import { randomBytes } from 'node:crypto';
import { InvokeCommand, LambdaClient, LambdaServiceException } from '@aws-sdk/client-lambda';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type LocalLambda, startLocalLambda } from '../../bin/local/lambda.js';

const REGION = 'eu-west-1';
const ACCOUNT = '123456789012';
const credentials = { accessKeyId: 'AKLOCALTEST', secretAccessKey: randomBytes(20).toString('hex') };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The AWS error a command failed with: its name and HTTP status. */
async function failure(promise: Promise<unknown>): Promise<{ name: string; status: number | undefined }> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof LambdaServiceException))
    throw new Error(`expected an AWS error, got ${String(error)}`);
  return { name: error.name, status: error.$metadata.httpStatusCode };
}

const payload = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const decoded = (bytes: Uint8Array | undefined) => JSON.parse(new TextDecoder().decode(bytes)) as unknown;

describe('the local Lambda', () => {
  let lambda: LocalLambda;
  const clients: LambdaClient[] = [];
  /** What the handlers saw: event, remaining time and ARN, and how many ran at once at most. */
  const seen: { event: unknown; remainingMs: number; arn: string; requestId: string }[] = [];
  let running = 0;
  let mostAtOnce = 0;
  let failuresLeft = 0;

  const client = (overrides: { credentials?: typeof credentials; region?: string } = {}) => {
    const made = new LambdaClient({
      endpoint: lambda.url,
      region: overrides.region ?? REGION,
      credentials: overrides.credentials ?? credentials,
      maxAttempts: 1,
    });
    clients.push(made);
    return made;
  };

  beforeAll(async () => {
    lambda = await startLocalLambda({
      region: REGION,
      credentials,
      accountId: ACCOUNT,
      retryDelayMs: 10,
      functions: [
        {
          name: 'echo',
          timeoutMs: 60_000,
          handler: async (event: unknown, context: Context) => {
            running++;
            mostAtOnce = Math.max(mostAtOnce, running);
            seen.push({
              event,
              remainingMs: context.getRemainingTimeInMillis(),
              arn: context.invokedFunctionArn,
              requestId: context.awsRequestId,
            });
            await sleep(20);
            running--;
            if (failuresLeft > 0) {
              failuresLeft--;
              throw new Error('failing as asked');
            }
            return { echoed: event };
          },
        },
        { name: 'slow', timeoutMs: 50, handler: () => sleep(1_000).then(() => 'late') },
        {
          name: 'once',
          retryAttempts: 0,
          handler: () => Promise.reject(new Error('always fails')),
        },
      ],
    });
  });

  beforeEach(() => {
    seen.length = 0;
    mostAtOnce = 0;
    failuresLeft = 0;
  });

  afterAll(async () => {
    for (const made of clients) made.destroy();
    await lambda.close();
  });

  it('answers an asynchronous invocation with 202, then runs the handler with the event and a context', async () => {
    const output = await client().send(
      new InvokeCommand({ FunctionName: 'echo', InvocationType: 'Event', Payload: payload({ run: 'r1' }) }),
    );
    expect(output.StatusCode).toBe(202);
    await lambda.idle();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      event: { run: 'r1' },
      arn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:echo`,
    });
    expect(seen[0]?.remainingMs).toBeGreaterThan(59_000);
    expect(seen[0]?.remainingMs).toBeLessThanOrEqual(60_000);
    const invocation = lambda.invocations.find((entry) => entry.requestId === seen[0]?.requestId);
    expect(invocation).toMatchObject({
      type: 'Event',
      attempts: 1,
      outcome: { result: { echoed: { run: 'r1' } } },
    });
  });

  it("runs a function's asynchronous invocations one at a time, in order", async () => {
    const lambdaClient = client();
    for (const n of [1, 2, 3, 4]) {
      await lambdaClient.send(
        new InvokeCommand({ FunctionName: 'echo', InvocationType: 'Event', Payload: payload({ n }) }),
      );
    }
    lambda.invokeAsync('echo', { n: 5 });
    await lambda.idle();
    expect(seen.map((entry) => entry.event)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }]);
    expect(mostAtOnce).toBe(1);
  });

  it('tries a failed asynchronous invocation again, twice by default, or not at all', async () => {
    failuresLeft = 2;
    const requestId = lambda.invokeAsync('echo', { retried: true });
    lambda.invokeAsync('once', {});
    await lambda.idle();
    expect(lambda.invocations.find((entry) => entry.requestId === requestId)).toMatchObject({
      attempts: 3,
      outcome: { result: { echoed: { retried: true } } },
    });
    expect(lambda.invocations.filter((entry) => entry.functionName === 'once')).toMatchObject([
      { attempts: 1, outcome: { error: 'always fails' } },
    ]);
  });

  it('answers a synchronous invocation with the result, or the error as a function error', async () => {
    const ok = await client().send(new InvokeCommand({ FunctionName: 'echo', Payload: payload({ a: 1 }) }));
    expect(ok.StatusCode).toBe(200);
    expect(ok.FunctionError).toBeUndefined();
    expect(ok.ExecutedVersion).toBe('$LATEST');
    expect(decoded(ok.Payload)).toEqual({ echoed: { a: 1 } });

    const failed = await client().send(new InvokeCommand({ FunctionName: 'once' }));
    expect(failed.StatusCode).toBe(200);
    expect(failed.FunctionError).toBe('Unhandled');
    expect(decoded(failed.Payload)).toEqual({ errorType: 'Error', errorMessage: 'always fails' });

    const late = await client().send(new InvokeCommand({ FunctionName: 'slow' }));
    expect(late.FunctionError).toBe('Unhandled');
    expect(decoded(late.Payload)).toMatchObject({ errorMessage: 'Task timed out after 0.05 seconds' });

    const dry = await client().send(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'DryRun' }));
    expect(dry.StatusCode).toBe(204);
  });

  it('finds a function by name, ARN or partial ARN, with $LATEST or no qualifier, and nothing else', async () => {
    const lambdaClient = client();
    for (const name of [
      `arn:aws:lambda:${REGION}:${ACCOUNT}:function:echo`,
      `arn:aws:lambda:${REGION}:${ACCOUNT}:function:echo:$LATEST`,
      `${ACCOUNT}:function:echo`,
    ]) {
      const output = await lambdaClient.send(
        new InvokeCommand({ FunctionName: name, Payload: payload({ name }) }),
      );
      expect(decoded(output.Payload)).toEqual({ echoed: { name } });
    }
    for (const name of [
      'missing',
      `arn:aws:lambda:us-east-1:${ACCOUNT}:function:echo`,
      `arn:aws:lambda:${REGION}:999999999999:function:echo`,
      `arn:aws:lambda:${REGION}:${ACCOUNT}:function:echo:live`,
    ]) {
      expect(await failure(lambdaClient.send(new InvokeCommand({ FunctionName: name })))).toEqual({
        name: 'ResourceNotFoundException',
        status: 404,
      });
    }
    expect(
      await failure(lambdaClient.send(new InvokeCommand({ FunctionName: 'echo', Qualifier: '1' }))),
    ).toMatchObject({ name: 'ResourceNotFoundException' });
  });

  it('refuses payloads that are not JSON, or over the asynchronous limit of 1 MB', async () => {
    expect(
      await failure(
        client().send(new InvokeCommand({ FunctionName: 'echo', Payload: new TextEncoder().encode('{') })),
      ),
    ).toEqual({ name: 'InvalidRequestContentException', status: 400 });
    const large = payload({ data: 'x'.repeat(1024 * 1024) });
    expect(
      await failure(
        client().send(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'Event', Payload: large })),
      ),
    ).toEqual({ name: 'RequestTooLargeException', status: 413 });
    expect(seen).toHaveLength(0);
  });

  it('refuses requests signed with other credentials or for another region', async () => {
    const command = () => new InvokeCommand({ FunctionName: 'echo', InvocationType: 'Event' });
    expect(
      await failure(client({ credentials: { ...credentials, accessKeyId: 'AKOTHER' } }).send(command())),
    ).toEqual({ name: 'UnrecognizedClientException', status: 400 });
    expect(
      await failure(client({ credentials: { ...credentials, secretAccessKey: 'wrong' } }).send(command())),
    ).toEqual({ name: 'InvalidSignatureException', status: 400 });
    expect(await failure(client({ region: 'us-east-1' }).send(command()))).toMatchObject({
      name: 'InvalidSignatureException',
    });
    await lambda.idle();
    expect(seen).toHaveLength(0);
  });
});
