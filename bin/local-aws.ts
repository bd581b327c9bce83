/**
 * `npm run local:aws [-- --auth token|htpasswd --htpasswd FILE ...] [--tls-certificate F --tls-key F]`: the AWS
 * deployment on one machine. The real Lambda handler runs behind a local API Gateway front
 * (bin/local/api-gateway.ts, with API Gateway's and Lambda's limits), with DynamoDB Local for metadata and
 * a local S3 for blobs, so the registry behaves as deployed (bin/local/local-aws.ts).
 *
 * It listens where REGISTRY_HTTP_ADDR says (default 127.0.0.1:5000). LOCAL_AWS_S3 chooses the S3:
 * `fauxqs` (default without --edge; fast, from npm, checks no signatures), `rgw` (default with --edge: a one-node Ceph RGW from Debian
 * packages, which verifies SigV4, presigned URLs and upload bodies) or `aws`; LOCAL_AWS_DYNAMODB is `local` (default)
 * or `aws`. AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB point at services already running instead
 * (LocalStack). Services not started here must already have the bucket and table named by
 * LOCAL_AWS_BUCKET and LOCAL_AWS_TABLE (default `registry`).
 *
 * --edge puts the upload edge in front (bin/local/cloudfront.ts runs the real CloudFront Function code),
 * --upload-service starts the upload service beside the function (dist/registry.mjs with uploads.only):
 * together, layers of any size push with every client, as deployed with both options.
 *
 * --gc-every DURATION runs scheduled garbage collection as the construct's garbageCollection prop deploys
 * it: the real GC handler in a local Lambda (bin/local/lambda.ts) invoked every DURATION against the same S3
 * and DynamoDB, continuing a long run through the local Lambda's Invoke API (where an Invoke, signed with
 * the function's credentials, also starts a run on demand). --gc-grace, --gc-delete-untagged, --gc-dry-run
 * and --retention FILE set it up as the stack's context keys gcGrace, gcDeleteUntagged, gcDryRun and
 * retention do; --immutability FILE is the context key immutability. Settings the construct does not
 * have are the functions' REGISTRY_* variables, taken from this process's environment (as an operator sets
 * them on the functions on AWS): REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true for read-only mode,
 * REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE for the age past which uploads expire.
 *
 * With --auth, the users (the htpasswd file) and a freshly generated signing key are stored in a local
 * Secrets Manager (bin/local/secrets-manager.ts; or the one AWS_ENDPOINT_URL_SECRETS_MANAGER names), and
 * the function is configured as the ServerlessRegistry construct configures it: by their ARNs.
 */
import { LOCAL_AWS_USAGE, parseLocalAwsArgs } from './local/local-aws-args.js';
import { LOCAL_AWS_LISTENING_MESSAGE, startLocalAws } from './local/local-aws.js';

async function main(): Promise<void> {
  const { help, auth, ...front } = parseLocalAwsArgs(process.argv.slice(2));
  if (help) {
    process.stdout.write(LOCAL_AWS_USAGE);
    return;
  }
  const registry = await startLocalAws({ ...(auth && { auth }), ...front });
  process.stderr.write(
    JSON.stringify({
      time: new Date().toISOString(),
      level: 'info',
      msg: LOCAL_AWS_LISTENING_MESSAGE,
      ...registry.description,
    }) + '\n',
  );

  const stop = () => {
    void registry.stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `local:aws: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
