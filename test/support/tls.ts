import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** Runs openssl (a Debian package CI installs), failing with how to install it when it is missing. */
export function openssl(args: string[]): void {
  if (spawnSync('openssl', ['version']).error) {
    throw new Error('openssl is needed to make test certificates: apt-get install -y openssl');
  }
  execFileSync('openssl', args, { stdio: 'pipe' });
}

/**
 * A self-signed EC P-256 certificate for 127.0.0.1, valid for a day, written to dir as cert.pem and
 * key.pem: clients of the test trust it as its own CA.
 */
export function selfSignedCertificate(dir: string): { certificate: string; key: string } {
  const certificate = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    key,
    '-out',
    certificate,
  ]);
  return { certificate, key };
}
