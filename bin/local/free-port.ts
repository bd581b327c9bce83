import { createServer, type AddressInfo, type Server } from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago, for services started locally. */
export async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listenOnLoopback(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts server (net, http or https) on a free port of 127.0.0.1; the port. */
export async function listenOnLoopback(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

/** host:port (host may be [v6], or empty for 127.0.0.1; port 0 picks a free one), as REGISTRY_HTTP_ADDR gives it. */
export function parseAddr(addr: string): { host: string; port: number } {
  const colon = addr.lastIndexOf(':');
  const host = (colon < 0 ? '' : addr.slice(0, colon)).replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = Number(addr.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`not a host:port: ${addr}`);
  return { host, port };
}
