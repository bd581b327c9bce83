import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export { freePort } from '../../bin/local/free-port.js';

/** The built standalone server (npm run build; `npm test` builds it first). */
export const SERVER_ENTRY = fileURLToPath(new URL('../../dist/registry.mjs', import.meta.url));

/** A registry server process started from the built bundle, with its output captured. */
export class RegistryProcess {
  private output = '';
  private readonly exit: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
  ) {
    const append = (chunk: Buffer) => {
      this.output += chunk.toString();
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    this.exit = new Promise((resolve) => {
      child.once('exit', resolve);
    });
  }

  /**
   * Starts `node dist/registry.mjs [args]` with env (on top of an environment without REGISTRY_*
   * variables) and waits until it logs that it listens, or fails with its output.
   */
  static async start(options: {
    env: Record<string, string>;
    args?: string[];
    url: string;
  }): Promise<RegistryProcess> {
    const server = new RegistryProcess(spawnServer(options), options.url);
    const deadline = Date.now() + 10_000;
    while (!server.output.includes('"msg":"registry listening"')) {
      if (server.child.exitCode !== null) {
        throw new Error(`the registry exited (${server.child.exitCode}):\n${server.output}`);
      }
      if (Date.now() > deadline) {
        await server.stop();
        throw new Error(`the registry did not start listening:\n${server.output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return server;
  }

  /** Runs the server to completion (for configurations that must fail) and gives its exit code and output. */
  static async run(options: {
    env: Record<string, string>;
    args?: string[];
  }): Promise<{ code: number | null; output: string }> {
    const server = new RegistryProcess(spawnServer(options), '');
    const code = await server.exit;
    return { code, output: server.output };
  }

  get logs(): string {
    return this.output;
  }

  /** Sends a signal (SIGTERM by default) and waits for the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill(signal);
    return this.exit;
  }
}

function spawnServer(options: { env: Record<string, string>; args?: string[] }): ChildProcess {
  if (!existsSync(SERVER_ENTRY)) throw new Error(`${SERVER_ENTRY} is missing: run npm run build first`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('REGISTRY_')));
  return spawn(process.execPath, [SERVER_ENTRY, ...(options.args ?? [])], {
    env: { ...env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}
