// Process helpers for the end-to-end suite: run a command with a timeout, start a daemon with its output in
// a log file, stop it, and find binaries (failing with the Debian package to install, never skipping).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RunOptions {
  /** Kill the command (SIGKILL) after this many milliseconds. Default 180 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolve instead of throwing when the command exits non-zero. */
  allowFailure?: boolean;
}

export interface RunResult {
  command: string;
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

const MAX_CAPTURE = 4 * 1024 * 1024;

export class CommandError extends Error {
  constructor(readonly result: RunResult) {
    super(
      `command failed (exit ${String(result.code)}, ${(result.ms / 1000).toFixed(1)} s): ${result.command}\n` +
        `--- stderr (tail) ---\n${tailText(result.stderr, 40)}\n--- stdout (tail) ---\n${tailText(result.stdout, 15)}`,
    );
    this.name = 'CommandError';
  }
}

export function tailText(text: string, lines: number): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function commandLine(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map(quote).join(' ');
}

/** Runs a command to completion, capturing stdout and stderr; throws CommandError on a non-zero exit. */
export async function run(
  cmd: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 180_000;
  const command = commandLine(cmd, args);
  const started = performance.now();
  const child = spawn(cmd, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    if (stdout.length < MAX_CAPTURE) stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < MAX_CAPTURE) stderr += chunk;
  });
  const state = { timedOut: false };
  const timer = setTimeout(() => {
    state.timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (exitCode) => {
      resolve(exitCode);
    });
  }).finally(() => {
    clearTimeout(timer);
  });
  if (state.timedOut) stderr += `\n[killed after ${timeoutMs} ms timeout]`;
  const result: RunResult = { command, code, stdout, stderr, ms: performance.now() - started };
  if ((code !== 0 || state.timedOut) && options.allowFailure !== true) throw new CommandError(result);
  return result;
}

/** Runs a command and returns the sha256 digest (`sha256:hex`) and size of everything it writes to stdout. */
export async function hashCommandOutput(
  cmd: string,
  args: readonly string[],
  timeoutMs = 120_000,
): Promise<{ digest: string; size: number }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const hash = createHash('sha256');
  let size = 0;
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    size += chunk.length;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  }).finally(() => {
    clearTimeout(timer);
  });
  if (code !== 0) {
    throw new CommandError({ command: commandLine(cmd, args), code, stdout: '', stderr, ms: 0 });
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * Finds an executable on PATH (and the usual sbin directories). Fails with the Debian package to install:
 * the suite never skips a client silently.
 */
export function requireBinary(name: string, debianPackage: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SYSTEM_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(
    `e2e: '${name}' was not found on PATH. Install the Debian package '${debianPackage}' ` +
      `(apt-get install -y --no-install-recommends ${debianPackage}, or run .ci/install-clients).`,
  );
}

/** The suite drives root-only tools (dockerd, containerd, podman with its own storage). */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('e2e: the real-client suite must run as root (dockerd, containerd, podman storage).');
  }
}

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `registry-e2e-${prefix}-`));
}

/** Removes a temp dir, first unmounting anything a daemon left mounted beneath it. */
export async function removeTempDir(dir: string | undefined): Promise<void> {
  if (dir === undefined) return;
  if (process.env.E2E_KEEP_TMP === '1') {
    console.log(`e2e: keeping ${dir} (E2E_KEEP_TMP=1)`);
    return;
  }
  let mounts: string[] = [];
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((line) => (line.split(' ')[1] ?? '').replace(/\\040/g, ' '))
      .filter((target) => target === dir || target.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
  } catch {
    // no /proc: nothing to unmount
  }
  for (const target of mounts) await run('umount', ['-l', target], { allowFailure: true, timeoutMs: 30_000 });
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

export interface Daemon {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Last lines of the daemon's combined stdout/stderr. */
  tail(lines?: number): Promise<string>;
  exited(): boolean;
  stop(timeoutMs?: number): Promise<void>;
}

/** Starts a long-running process with stdout and stderr appended to logFile. */
export function startDaemon(
  name: string,
  cmd: string,
  args: readonly string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): Daemon {
  const log = createWriteStream(logFile, { flags: 'a' });
  log.write(`$ ${commandLine(cmd, args)}\n`);
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  let exitedFlag = false;
  const closed = new Promise<void>((resolve) => {
    child.on('close', (code, signal) => {
      exitedFlag = true;
      log.end(`[${name} exited: code ${String(code)} signal ${String(signal)}]\n`, () => {
        resolve();
      });
    });
  });
  child.on('error', (err) => {
    log.write(`[${name} failed to start: ${err.message}]\n`);
  });
  return {
    name,
    child,
    logFile,
    exited: () => exitedFlag,
    async tail(lines = 60) {
      try {
        return tailText(await readFile(logFile, 'utf8'), lines);
      } catch {
        return '(no log)';
      }
    },
    async stop(timeoutMs = 20_000) {
      if (exitedFlag || child.exitCode !== null) return;
      child.kill('SIGTERM');
      const killed = await Promise.race([closed.then(() => true), sleep(timeoutMs).then(() => false)]);
      if (!killed) {
        child.kill('SIGKILL');
        await closed;
      }
    },
  };
}

/** A probe's way of saying that waiting longer is pointless (the process it waits for exited). */
export class GaveUp extends Error {}

/** Polls `probe` until it returns true; throws with `describe()` after timeoutMs, or when it throws GaveUp. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  describe: () => Promise<string>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ready = await probe().catch((error: unknown) => {
      if (error instanceof GaveUp) return error;
      return false;
    });
    if (ready instanceof GaveUp)
      throw new Error(`e2e: ${ready.message} while waiting for ${what}\n${await describe()}`);
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`e2e: timed out waiting for ${what}\n${await describe()}`);
    await sleep(100);
  }
}

/** Wall-clock timings of named steps, printed at the end of a suite. */
export class Timings {
  private readonly entries: { step: string; ms: number }[] = [];

  constructor(private readonly suite: string) {}

  async time<T>(step: string, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await fn();
    } finally {
      this.entries.push({ step, ms: performance.now() - started });
    }
  }

  report(): string {
    const width = Math.max(0, ...this.entries.map((e) => e.step.length));
    return [
      `e2e timings [${this.suite}]`,
      ...this.entries.map((e) => `  ${e.step.padEnd(width)}  ${(e.ms / 1000).toFixed(1).padStart(6)} s`),
    ].join('\n');
  }
}

/** A process as /proc shows it; pid and startTime together identify it (pids are reused). */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** The command name (comm, at most 15 characters). */
  name: string;
  /** Start time in clock ticks after boot. */
  startTime: string;
}

function readProcess(pid: number): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    // After "pid (comm) ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
    // stime cutime cstime priority nice num_threads itrealvalue starttime ...
    const fields = stat.slice(close + 2).split(' ');
    return {
      pid,
      ppid: Number(fields[1]),
      name: stat.slice(open + 1, close),
      startTime: fields[19] ?? '',
    };
  } catch {
    return undefined;
  }
}

/** Every living process descending from `pid` (Linux /proc; empty elsewhere). */
export function descendantProcesses(pid: number): ProcessInfo[] {
  let all: ProcessInfo[];
  try {
    all = readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .flatMap((name) => readProcess(Number(name)) ?? []);
  } catch {
    return [];
  }
  const found: ProcessInfo[] = [];
  const parents = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const info of all) {
      if (parents.has(info.ppid) && !parents.has(info.pid)) {
        parents.add(info.pid);
        found.push(info);
        grew = true;
      }
    }
  }
  return found;
}

/** Whether that very process (same pid and start time) is still running (a zombie counts as gone). */
export function processAlive(info: ProcessInfo): boolean {
  const now = readProcess(info.pid);
  if (now?.startTime !== info.startTime) return false;
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${info.pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}
