/**
 * The Lambda entry point for every /v2/ request (API Gateway HTTP API, $default route). The
 * configuration comes from REGISTRY_* variables; the registry is built once per container, at init,
 * and reused by every invocation the container serves.
 */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { composeRegistry } from '../compose.js';
import { ConfigError, loadConfig } from '../config.js';
import { errorResult, lambdaAdapter, type LambdaHandler } from '../http/lambda.js';
import { errorFields, jsonLogger } from '../log.js';

/** Logs until the configuration says how (and what it says when it is wrong). */
const startLog = jsonLogger('info');

async function start(): Promise<LambdaHandler> {
  const { config, warnings } = await loadConfig({ env: process.env });
  const log = jsonLogger(config.log.level, config.log.fields);
  for (const warning of warnings) log.warn(warning);
  const { handler } = await composeRegistry(config, log, { persistHashState: true });
  return lambdaAdapter(handler, {
    log,
    accessLog: !config.log.accessLog.disabled,
    headers: config.http.headers,
  });
}

function starting(): Promise<LambdaHandler> {
  const started = start();
  // Reported by each invocation: a rejection nobody awaits yet must not end the process at init.
  started.catch(() => undefined);
  return started;
}

let ready: Promise<LambdaHandler> | undefined = starting();

export async function handler(
  event: APIGatewayProxyEventV2,
  context: Context,
): Promise<APIGatewayProxyStructuredResultV2> {
  ready ??= starting();
  let serve: LambdaHandler;
  try {
    serve = await ready;
  } catch (error) {
    const requestId = context.awsRequestId;
    if (error instanceof ConfigError) {
      // The environment will not change in this container: every invocation answers the same.
      startLog.error('configuration error: the registry cannot start', { requestId, error: error.message });
      return errorResult(500, 'UNKNOWN', `configuration error: ${error.message}`, requestId);
    }
    // Anything else may be passing: the next invocation tries again.
    ready = undefined;
    startLog.error('the registry failed to start', { requestId, ...errorFields(error) });
    return errorResult(500, 'UNKNOWN', `the registry failed to start (request ${requestId})`, requestId);
  }
  return serve(event, context);
}
