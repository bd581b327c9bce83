// A throwaway certificate authority for suites that serve the registry over HTTPS, made with the openssl CLI
// in a temp dir: a CA (EC P-256, self-signed, valid 2 days) and a server certificate it signs for the IP
// 127.0.0.1 and the names localhost and REGISTRY_HOSTNAME. Clients are told to trust the CA, never to skip
// verification.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir, removeTempDir, requireBinary, run } from './exec.js';

/**
 * A name for the registry that never resolves (RFC 6761 reserves .test), for clients that treat every
 * loopback address as an insecure registry (dockerd): they reach it through a CONNECT proxy instead.
 */
export const REGISTRY_HOSTNAME = 'registry.e2e.test';

export interface TestCa {
  readonly dir: string;
  /** The CA certificate (PEM file): what clients are told to trust. */
  readonly caCert: string;
  /** The server certificate (PEM file) the CA signed, and its private key. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** A directory holding only ca.crt: the --cert-dir layout of skopeo and podman. */
  readonly certDir: string;
  /** An empty directory: a --cert-dir that trusts nothing beyond the system roots. */
  readonly emptyCertDir: string;
  /** The CA certificate's PEM text. */
  caPem(): Promise<string>;
  dispose(): Promise<void>;
}

export async function createTestCa(): Promise<TestCa> {
  const openssl = requireBinary('openssl', 'openssl');
  const dir = await makeTempDir('ca');
  try {
    const path = (name: string) => join(dir, name);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    await run(openssl, [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      path('ca.key'),
      '-out',
      path('ca.crt'),
      '-days',
      '2',
      '-subj',
      '/CN=registry e2e test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    await run(openssl, [
      'req',
      '-new',
      ...ec,
      '-keyout',
      path('server.key'),
      '-out',
      path('server.csr'),
      '-subj',
      '/CN=registry e2e',
    ]);
    await writeFile(
      path('server.ext'),
      [
        `subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:${REGISTRY_HOSTNAME}`,
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=serverAuth',
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid',
        '',
      ].join('\n'),
    );
    await run(openssl, [
      'x509',
      '-req',
      '-in',
      path('server.csr'),
      '-CA',
      path('ca.crt'),
      '-CAkey',
      path('ca.key'),
      '-set_serial',
      `0x${Date.now().toString(16)}`,
      '-days',
      '2',
      '-extfile',
      path('server.ext'),
      '-out',
      path('server.crt'),
    ]);
    await run(openssl, ['verify', '-CAfile', path('ca.crt'), path('server.crt')]);
    const certDir = path('trust');
    await mkdir(certDir);
    await writeFile(join(certDir, 'ca.crt'), await readFile(path('ca.crt')));
    await mkdir(path('no-trust'));
    return {
      dir,
      caCert: path('ca.crt'),
      serverCert: path('server.crt'),
      serverKey: path('server.key'),
      certDir,
      emptyCertDir: path('no-trust'),
      caPem: () => readFile(path('ca.crt'), 'utf8'),
      dispose: () => removeTempDir(dir),
    };
  } catch (err) {
    await removeTempDir(dir);
    throw err;
  }
}
