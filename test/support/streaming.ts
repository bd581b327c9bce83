import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Agent, request } from 'node:http';

/** Large-blob traffic for tests and benchmarks: bodies are produced and hashed chunk by chunk, never held whole. */

export interface Exchange {
  status: number;
  location: string;
  /** Hex SHA-256 of the response body. */
  sha256: string;
}

/** One HTTP exchange with a streamed request body; the response body is hashed as it streams. */
export function exchange(
  url: string,
  method: string,
  agent?: Agent,
  body?: () => Iterable<Uint8Array>,
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    // Clients say which manifest types they take; distribution refuses OCI manifests to those that don't.
    const headers = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
    const req = request(url, { method, agent, headers }, (res) => {
      const hash = createHash('sha256');
      res.on('data', (chunk: Buffer) => hash.update(chunk));
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          location: res.headers.location ?? '',
          sha256: hash.digest('hex'),
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (!body) {
      req.end();
      return;
    }
    void (async () => {
      for (const chunk of body()) {
        if (!req.write(chunk)) await new Promise((resolve) => req.once('drain', resolve));
      }
      req.end();
    })();
  });
}

/** A deterministic, incompressible layer of mib MiB, produced chunk by chunk. */
export function layer(mib: number): { chunks: () => Iterable<Uint8Array>; digest: string } {
  const block = randomBytes(1024 * 1024);
  const chunks = function* () {
    for (let i = 0; i < mib; i++) {
      block.writeUInt32BE(i, 0);
      yield block;
    }
  };
  const hash = createHash('sha256');
  for (const chunk of chunks()) hash.update(chunk);
  return { chunks, digest: `sha256:${hash.digest('hex')}` };
}

/**
 * Pushes a layer as skopeo, podman and docker do (POST, one streamed PATCH, PUT ?digest=), then pulls
 * it with one GET; throws unless the registry answers as the spec says and returns the same bytes.
 */
export async function pushAndPull(
  base: string,
  repository: string,
  data: ReturnType<typeof layer>,
  agent?: Agent,
): Promise<{ pushSeconds: number; pullSeconds: number }> {
  let start = performance.now();
  const post = await exchange(`${base}/v2/${repository}/blobs/uploads/`, 'POST', agent);
  const patch = await exchange(new URL(post.location, base).href, 'PATCH', agent, data.chunks);
  const put = new URL(patch.location, base);
  put.searchParams.set('digest', data.digest);
  const done = await exchange(put.href, 'PUT', agent);
  if (post.status !== 202 || patch.status !== 202 || done.status !== 201) {
    throw new Error(`push answered ${post.status}, ${patch.status}, ${done.status}`);
  }
  const pushSeconds = (performance.now() - start) / 1000;
  start = performance.now();
  const pulled = await exchange(`${base}/v2/${repository}/blobs/${data.digest}`, 'GET', agent);
  if (`sha256:${pulled.sha256}` !== data.digest)
    throw new Error(`pulled sha256:${pulled.sha256}, pushed ${data.digest}`);
  return { pushSeconds, pullSeconds: (performance.now() - start) / 1000 };
}

/** A process's peak resident memory (VmHWM) in MiB. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) / 1024;
}
