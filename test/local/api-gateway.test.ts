/** The local API Gateway front's request limits, as a client streaming a large layer meets them. */
import { request } from 'node:http';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiGatewayFront, LIMITS } from '../../bin/local/api-gateway.js';
import { listenOnLoopback } from '../../bin/local/free-port.js';

describe('apiGatewayFront limits', () => {
  let server: Server;
  let port: number;
  let invocations = 0;

  beforeAll(async () => {
    server = createServer(
      apiGatewayFront(() => {
        invocations++;
        return Promise.resolve({ statusCode: 200 });
      }),
    );
    port = await listenOnLoopback(server);
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** Sends headers and then chunks until the response arrives; the status and how many bytes were sent. */
  function stream(headers: Record<string, string>): Promise<{ status: number; body: string; sent: number }> {
    return new Promise((resolve, reject) => {
      let sent = 0;
      let answered = false;
      const req = request({
        port,
        host: '127.0.0.1',
        method: 'PATCH',
        path: '/v2/a/blobs/uploads/x',
        headers,
      });
      req.on('response', (res) => {
        answered = true;
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body, sent });
        });
      });
      req.on('error', (error) => {
        if (!answered) reject(error);
      });
      const chunk = Buffer.alloc(256 * 1024);
      const write = () => {
        // Never more than 64 MiB: the answer must come long before.
        while (!answered && sent < 64 * 1024 * 1024) {
          sent += chunk.byteLength;
          if (!req.write(chunk)) {
            req.once('drain', write);
            return;
          }
        }
      };
      write();
    });
  }

  it('refuses a declared length over 10 MB with 413 before the body is sent, without invoking the function', async () => {
    const before = invocations;
    const { status, body, sent } = await stream({ 'content-length': String(1024 * 1024 * 1024) });
    expect(status).toBe(413);
    expect(JSON.parse(body)).toEqual({ message: 'Request Entity Too Large' });
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    expect(invocations).toBe(before);
  });

  it('refuses a chunked body once it passes 10 MB, while the client still sends', async () => {
    const before = invocations;
    const { status, sent } = await stream({ 'transfer-encoding': 'chunked' });
    expect(status).toBe(413);
    expect(sent).toBeGreaterThan(LIMITS.requestBodyBytes);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    expect(invocations).toBe(before);
  });
});
