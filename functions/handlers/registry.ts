/**
 * The Lambda entry point for every /v2/ request (API Gateway HTTP API, $default route), and for the
 * scheduled health check (an EventBridge rule's Scheduled Event). The configuration comes from
 * REGISTRY_* variables; the registry is built once per container, at init, and reused by every
 * invocation the container serves.
 */
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
  ScheduledEvent,
} from 'aws-lambda';
import { composeRegistry } from '../compose.js';
import { ConfigError, loadConfig } from '../config.js';
import { checkHealth, healthTargets } from '../health.js';
import { errorResult, lambdaAdapter, type LambdaHandler } from '../http/lambda.js';
import { errorFields, jsonLogger } from '../log.js';
import { EmbeddedMetrics } from '../metrics/emf.js';

/** Logs until the configuration says how (and what it says when it is wrong). */
const startLog = jsonLogger('info');

/** What a container serves once the registry is built. */
interface Container {
  serve: LambdaHandler;
  /** The failing health checks by name (empty when healthy), also written as the `Healthy` metric. */
  checkHealth(requestId: string): Promise<Record<string, string>>;
}

async function start(): Promise<Container> {
  const { config, warnings } = await loadConfig({ env: process.env });
  const log = jsonLogger(config.log.level, config.log.fields);
  for (const warning of warnings) log.warn(warning);
  // Metrics only where asked for (the construct's monitoring): CloudWatch bills each custom metric.
  const { namespace } = config.metrics;
  const metrics = namespace === undefined ? undefined : new EmbeddedMetrics(namespace);
  // Events go out before the response does: Lambda may freeze the container as soon as it returns.
  const composition = await composeRegistry(
    config,
    log,
    { persistHashState: true },
    { ...(metrics && { metrics }), deliverInBackground: false },
  );
  const targets = healthTargets(config, composition);
  return {
    serve: lambdaAdapter(composition.handler, {
      log,
      accessLog: !config.log.accessLog.disabled,
      headers: config.http.headers,
      metrics,
    }),
    async checkHealth(requestId) {
      const failing = await checkHealth(targets);
      metrics?.health(failing);
      if (Object.keys(failing).length > 0) log.error('health check failed', { requestId, failing });
      return failing;
    },
  };
}

function starting(): Promise<Container> {
  const started = start();
  // Reported by each invocation: a rejection nobody awaits yet must not end the process at init.
  started.catch(() => undefined);
  return started;
}

let ready: Promise<Container> | undefined = starting();

/** An API Gateway request, answered with its HTTP result. */
export function handler(
  event: APIGatewayProxyEventV2,
  context: Context,
): Promise<APIGatewayProxyStructuredResultV2>;
/** The scheduled health check, answered with the failing checks (`{}` when healthy). */
export function handler(event: ScheduledEvent, context: Context): Promise<Record<string, string>>;
export async function handler(
  event: APIGatewayProxyEventV2 | ScheduledEvent,
  context: Context,
): Promise<APIGatewayProxyStructuredResultV2 | Record<string, string>> {
  ready ??= starting();
  let container: Container;
  try {
    container = await ready;
  } catch (error) {
    const requestId = context.awsRequestId;
    const scheduled = isScheduled(event);
    if (error instanceof ConfigError) {
      // The environment will not change in this container: every invocation answers the same.
      startLog.error('configuration error: the registry cannot start', { requestId, error: error.message });
      return scheduled
        ? { registry: `configuration error: ${error.message}` }
        : errorResult(500, 'UNKNOWN', `configuration error: ${error.message}`, requestId);
    }
    // Anything else may be passing: the next invocation tries again.
    ready = undefined;
    startLog.error('the registry failed to start', { requestId, ...errorFields(error) });
    return scheduled
      ? { registry: 'the registry failed to start' }
      : errorResult(500, 'UNKNOWN', `the registry failed to start (request ${requestId})`, requestId);
  }
  if (isScheduled(event)) return container.checkHealth(context.awsRequestId);
  return container.serve(event, context);
}

/** An EventBridge schedule's event (the rule's default input), which asks for the health check. */
function isScheduled(event: unknown): event is ScheduledEvent {
  const record = event as Partial<Record<string, unknown>> | null;
  return (
    typeof record === 'object' &&
    record !== null &&
    record['detail-type'] === 'Scheduled Event' &&
    record.source === 'aws.events'
  );
}
