import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort, RegistryProcess } from '../support/registry-process.js';
import { layer, peakRssMiB, pushAndPull } from '../support/streaming.js';

// The standalone server streams blobs: a 1 GiB layer pushed the way skopeo, podman and docker push it
// (one streamed PATCH) and pulled back must not grow the server much past its idle size.
const LAYER_MIB = Number(process.env.E2E_LARGE_LAYER_MIB ?? 1024);
const PEAK_RSS_LIMIT_MIB = 150;

let dir: string;
let server: RegistryProcess;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'registry-large-'));
  const port = await freePort();
  server = await RegistryProcess.start({
    env: {
      REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'data'),
      REGISTRY_LOG_ACCESSLOG_DISABLED: 'true',
    },
    url: `http://127.0.0.1:${port}`,
  });
});

afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

it(`pushes and pulls a ${LAYER_MIB} MiB layer byte for byte with the server's peak RSS under ${PEAK_RSS_LIMIT_MIB} MiB`, async () => {
  const data = layer(LAYER_MIB);
  const times = await pushAndPull(server.url, 'large/layer', data);
  const peak = peakRssMiB(server.child.pid ?? 0);
  console.log(
    `${LAYER_MIB} MiB layer: push ${times.pushSeconds.toFixed(1)} s, pull ${times.pullSeconds.toFixed(1)} s, peak RSS ${peak.toFixed(1)} MiB`,
  );
  expect(peak).toBeLessThan(PEAK_RSS_LIMIT_MIB);
});
