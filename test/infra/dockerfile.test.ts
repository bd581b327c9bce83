// The repository's Dockerfile (the upload service's image, and a registry:2-like image on its own). No
// base image is at hand to build it in a test, so this checks what the build relies on, and runs the
// runtime stage's layout as the image would: the bundle, the production packages only, the image's
// configuration, its command and its health check.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bin/local/free-port.js';
import { loadConfig } from '../../functions/config.js';
import { PROJECT_ROOT } from '../../lib/project-root.js';
import { ServerlessRegistry } from '../../lib/serverless-registry.js';
import { UPLOAD_SERVICE_PORT } from '../../lib/upload-service.js';
import { SERVER_ENTRY } from '../support/registry-process.js';
import { app, cleanUpApps, NO_BUNDLING, onlyResource } from './support.js';

afterAll(cleanUpApps);

interface Instruction {
  keyword: string;
  args: string;
}

/** The Dockerfile's instructions by stage (FROM starts one), continuation lines joined, comments dropped. */
function stages(text: string): Instruction[][] {
  const lines = text
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const result: Instruction[][] = [];
  for (const line of lines) {
    const [keyword = '', ...rest] = line.split(/\s+/);
    const instruction = { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    if (instruction.keyword === 'FROM') result.push([]);
    result.at(-1)?.push(instruction);
  }
  return result;
}

const DOCKERFILE = readFileSync(join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
const [buildStage = [], runtimeStage = []] = stages(DOCKERFILE);
const args = (stage: Instruction[], keyword: string) =>
  stage.filter((instruction) => instruction.keyword === keyword).map((instruction) => instruction.args);
const only = (stage: Instruction[], keyword: string): string => {
  const found = args(stage, keyword);
  expect(found, keyword).toHaveLength(1);
  return found[0] ?? '';
};
/** The runtime stage's COPY of a repository file into the image: the image path it lands at. */
const imagePathOf = (source: string): string => {
  const copy = args(runtimeStage, 'COPY').find((line) => line.split(/\s+/)[0] === source);
  if (!copy) throw new Error(`the runtime stage copies no ${source}`);
  return copy.split(/\s+/)[1] ?? '';
};
const execForm = (line: string) => JSON.parse(line) as string[];

describe('the Dockerfile', () => {
  it('builds in one node:20-bookworm-slim stage and runs in another', () => {
    expect(args(buildStage, 'FROM')).toEqual(['node:20-bookworm-slim AS build']);
    expect(args(runtimeStage, 'FROM')).toEqual(['node:20-bookworm-slim']);
    expect(args(buildStage, 'RUN')).toEqual([
      'npm ci --ignore-scripts --no-audit --no-fund',
      'npm run build',
    ]);
    expect(args(runtimeStage, 'RUN')[0]).toMatch(/^npm ci --omit=dev /);
  });

  it('runs as the unprivileged node user, after everything that needs root', () => {
    expect(only(runtimeStage, 'USER')).toBe('node');
    const keywords = runtimeStage.map((instruction) => instruction.keyword);
    expect(keywords.lastIndexOf('RUN')).toBeLessThan(keywords.indexOf('USER'));
  });

  it('copies only files that exist and that .dockerignore lets into the build context', () => {
    const allowed = readFileSync(join(PROJECT_ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('!'))
      .map((line) => line.slice(1).replace(/\/$/, ''));
    const sources = [...buildStage, ...runtimeStage]
      .filter((instruction) => instruction.keyword === 'COPY' && !instruction.args.startsWith('--from'))
      .flatMap((instruction) => instruction.args.split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(4);
    for (const source of sources) {
      const path = source.replace(/\/$/, '');
      expect(existsSync(join(PROJECT_ROOT, path)), path).toBe(true);
      expect(allowed, path).toContain(path);
    }
    // The build script bundles what it copies: the server, the garbage collector and what they import.
    const build = (
      JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts.build;
    expect(build).toMatch(
      /^esbuild bin\/registry\.ts bin\/gc\.ts .*--outdir=dist --out-extension:\.js=\.mjs/,
    );
    expect(args(runtimeStage, 'COPY')).toContain('--from=build /build/dist/ dist/');
  });

  it("names the port and the volume the image's configuration uses, and the upload service's port", async () => {
    const configPath = imagePathOf('bin/image-config.yml');
    expect(execForm(only(runtimeStage, 'CMD'))).toEqual([configPath]);
    expect(execForm(only(runtimeStage, 'ENTRYPOINT'))).toEqual([
      'node',
      '--enable-source-maps',
      'dist/registry.mjs',
    ]);
    const { config, warnings } = await loadConfig({
      path: join(PROJECT_ROOT, 'bin/image-config.yml'),
      env: {},
    });
    expect(warnings).toEqual([]);
    expect(config.http.addr).toBe(`:${only(runtimeStage, 'EXPOSE')}`);
    expect(only(runtimeStage, 'EXPOSE')).toBe(String(UPLOAD_SERVICE_PORT));
    expect(config.storage.driver).toEqual({
      type: 'filesystem',
      rootDirectory: only(runtimeStage, 'VOLUME'),
    });
  });

  it("becomes the upload service with the task's environment: S3, DynamoDB, upload-only", async () => {
    const stack = new Stack(app({ context: NO_BUNDLING }), 'Image', {
      env: { account: '123456789012', region: 'eu-west-1' },
    });
    new ServerlessRegistry(stack, 'Registry', {
      uploadService: {
        domainName: 'uploads.example.com',
        certificate: Certificate.fromCertificateArn(
          stack,
          'Certificate',
          'arn:aws:acm:eu-west-1:1:certificate/x',
        ),
        image: ContainerImage.fromRegistry('example/registry'),
      },
    });
    const task = onlyResource(Template.fromStack(stack), 'AWS::ECS::TaskDefinition') as {
      Properties: { ContainerDefinitions: { Environment: { Name: string; Value: unknown }[] }[] };
    };
    // What CloudFormation resolves the references to.
    const resolved: Record<string, string> = {
      REGISTRY_STORAGE_S3_BUCKET: 'registry-bucket',
      REGISTRY_METADATA_DYNAMODB_TABLE: 'registry-table',
      REGISTRY_HTTP_SECRET: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:upload-AbCdEf',
    };
    const env = Object.fromEntries(
      (task.Properties.ContainerDefinitions[0]?.Environment ?? []).map(({ Name, Value }) => [
        Name,
        typeof Value === 'string' ? Value : (resolved[Name] ?? ''),
      ]),
    );
    const { config, warnings } = await loadConfig({ path: join(PROJECT_ROOT, 'bin/image-config.yml'), env });
    expect(warnings).toEqual([]);
    expect(config.storage.driver).toEqual({
      type: 's3',
      parameters: expect.objectContaining({ bucket: 'registry-bucket', region: 'eu-west-1' }) as unknown,
    });
    expect(config.metadata).toMatchObject({ type: 'dynamodb', table: 'registry-table' });
    expect(config.http.addr).toBe(`:${UPLOAD_SERVICE_PORT}`);
    expect(config.http.secret).toBe(resolved.REGISTRY_HTTP_SECRET);
    expect(config.uploads).toMatchObject({ only: true, edge: false, service: undefined });
  });
});

describe("the image's runtime layout", () => {
  let root: string;
  let server: ChildProcess | undefined;
  let output = '';
  let url: string;
  let port: number;

  beforeAll(async () => {
    if (!existsSync(SERVER_ENTRY)) throw new Error(`${SERVER_ENTRY} is missing: run npm run build first`);
    root = mkdtempSync(join(tmpdir(), 'registry-image-'));
    const appDir = join(root, 'app');
    // What the runtime stage holds: package.json and the lock file, the bundle, the configuration...
    mkdirSync(join(appDir, 'dist'), { recursive: true });
    for (const file of ['package.json', 'package-lock.json']) {
      copyFileSync(join(PROJECT_ROOT, file), join(appDir, file));
    }
    copyFileSync(SERVER_ENTRY, join(appDir, 'dist', 'registry.mjs'));
    copyFileSync(`${SERVER_ENTRY}.map`, join(appDir, 'dist', 'registry.mjs.map'));
    // ...and what `npm ci --omit=dev` installs: the lock file's packages not marked dev. Linked from this
    // checkout rather than installed, which needs the registry (npm's offline cache lacks some of them):
    // the bundle's own imports resolve only against these, so one of them missing fails the start.
    const lock = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (!path.startsWith('node_modules/') || entry.dev) continue;
      const target = join(appDir, path);
      mkdirSync(dirname(target), { recursive: true });
      if (!existsSync(target)) symlinkSync(join(PROJECT_ROOT, path), target, 'dir');
    }
    mkdirSync(join(root, 'registry'));

    // The Dockerfile's ENV, ENTRYPOINT and CMD, with the configuration at its place in this layout and,
    // since the volume and port 5000 may not be free here, a data directory and a free loopback port.
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const imageEnv = Object.fromEntries(
      args(runtimeStage, 'ENV').map((line) => line.split('=', 2) as [string, string]),
    );
    const [command = '', ...commandArgs] = [
      ...execForm(only(runtimeStage, 'ENTRYPOINT')),
      ...execForm(only(runtimeStage, 'CMD')).map((arg) =>
        arg === imagePathOf('bin/image-config.yml') ? join(PROJECT_ROOT, 'bin/image-config.yml') : arg,
      ),
    ];
    expect(command).toBe('node');
    const inherited = Object.entries(process.env).filter(([key]) => !key.startsWith('REGISTRY_'));
    server = spawn(process.execPath, commandArgs, {
      cwd: appDir,
      env: {
        ...Object.fromEntries(inherited),
        ...imageEnv,
        REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(root, 'registry'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const append = (chunk: Buffer) => {
      output += chunk.toString();
    };
    server.stdout?.on('data', append);
    server.stderr?.on('data', append);
    const deadline = Date.now() + 10_000;
    while (!output.includes('"msg":"registry listening"')) {
      if (server.exitCode !== null) throw new Error(`the registry exited (${server.exitCode}):\n${output}`);
      if (Date.now() > deadline) throw new Error(`the registry did not start:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  });

  afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((resolve) => server?.once('exit', resolve));
      server.kill('SIGTERM');
      await exited;
    }
    rmSync(root, { recursive: true, force: true });
  });

  it('starts with the production packages only, and answers GET /v2/ with 200', async () => {
    const response = await fetch(`${url}/v2/`);
    expect(response.status).toBe(200);
    expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(output).toContain('"storage":"filesystem"');
  });

  it('stores a pushed blob in its data directory and serves it back', async () => {
    const blob = Buffer.from(`layer ${Date.now()}`);
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const push = await fetch(`${url}/v2/image-test/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      body: blob,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(push.status).toBe(201);
    const pull = await fetch(`${url}/v2/image-test/blobs/${digest}`);
    expect(pull.status).toBe(200);
    expect(Buffer.from(await pull.arrayBuffer())).toEqual(blob);
  });

  it('passes its HEALTHCHECK', async () => {
    const healthCheck = only(runtimeStage, 'HEALTHCHECK');
    const [command = '', ...checkArgs] = execForm(healthCheck.slice(healthCheck.indexOf('CMD ') + 4));
    expect(command).toBe('node');
    const local = checkArgs.map((arg) => arg.replace(':5000/', `:${port}/`));
    await expect(promisify(execFile)(process.execPath, local)).resolves.toBeDefined();
    // And fails when nothing answers.
    const unused = await freePort();
    const closed = checkArgs.map((arg) => arg.replace(':5000/', `:${unused}/`));
    await expect(promisify(execFile)(process.execPath, closed)).rejects.toMatchObject({ code: 1 });
  });
});
