/**
 * The S3 driver against fauxqs (fast, from npm, no authentication): the shared conformance suite, and
 * the `storage.s3` parameters. test/services/s3-rgw.test.ts runs the suite against a one-node Ceph RGW
 * (the faithful one: SigV4, presigned URLs, multipart rules) with the S3-specific behaviour.
 */

import { afterEach, describe, expect, it, vi } from 'vitest';

import { ConfigError } from '../../functions/config.js';
import { S3Driver, s3DriverFromParameters, s3OptionsFromParameters } from '../../functions/storage/s3.js';
import { startFauxqs } from '../../bin/local/s3-local.js';

import { describeSuiteOn } from './s3-fixture.js';

describe('S3Driver on fauxqs', () => {
  describeSuiteOn('s3 (fauxqs)', startFauxqs, { multipartListing: false });
});

describe('s3DriverFromParameters (storage.s3)', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  function configError(parameters: Record<string, unknown>): string {
    try {
      s3OptionsFromParameters(parameters);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error('expected a ConfigError');
  }

  it('maps distribution keys to options', () => {
    const options = s3OptionsFromParameters({
      bucket: 'my-bucket',
      region: 'eu-west-1',
      regionendpoint: 'http://127.0.0.1:9000',
      forcepathstyle: true,
      accesskey: 'AK',
      secretkey: 'SK',
      rootdirectory: '/registry',
    });
    expect(options).toEqual({
      bucket: 'my-bucket',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:9000',
      forcePathStyle: true,
      credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
      rootDirectory: '/registry',
    });
    const driver = s3DriverFromParameters({ bucket: 'my-bucket', region: 'eu-west-1' });
    expect(driver).toBeInstanceOf(S3Driver);
    expect(driver.name).toBe('s3');
    driver.destroy();
  });

  it('defaults the region to AWS_REGION and leaves credentials to the default chain', () => {
    vi.stubEnv('AWS_REGION', 'ap-south-1');
    const options = s3OptionsFromParameters({ bucket: 'b-1' });
    expect(options).toMatchObject({ bucket: 'b-1', region: 'ap-south-1', forcePathStyle: false });
    expect(options.credentials).toBeUndefined();
    expect(options.endpoint).toBeUndefined();
  });

  it('accepts and ignores the distribution keys it does not use', () => {
    const options = s3OptionsFromParameters({
      bucket: 'bucket',
      region: 'us-east-1',
      encrypt: true,
      secure: 'false',
      v4auth: true,
      chunksize: 5242880,
      multipartcopychunksize: 33554432,
      multipartcopymaxconcurrency: 100,
      multipartcopythresholdsize: 33554432,
      storageclass: 'STANDARD',
      useragent: 'x',
      usedualstack: false,
      loglevel: 'debug',
      skipverify: false,
    });
    expect(options).toEqual({ bucket: 'bucket', region: 'us-east-1', forcePathStyle: false });
  });

  it('names the key that is missing or invalid', () => {
    vi.stubEnv('AWS_REGION', '');
    expect(configError({ region: 'us-east-1' })).toBe('storage.s3.bucket: required');
    expect(configError({ bucket: '', region: 'us-east-1' })).toBe('storage.s3.bucket: required');
    expect(configError({ bucket: 'Not_A_Bucket', region: 'us-east-1' })).toMatch(
      /^storage\.s3\.bucket: invalid/,
    );
    expect(configError({ bucket: ['b'], region: 'us-east-1' })).toMatch(
      /^storage\.s3\.bucket: expected a string/,
    );
    expect(configError({ bucket: 'bucket' })).toMatch(/^storage\.s3\.region: required/);
    expect(configError({ bucket: 'bucket', region: 'Mars 1' })).toMatch(/^storage\.s3\.region: invalid/);
    expect(configError({ bucket: 'bucket', region: 'us-east-1', regionendpoint: 'not a url' })).toMatch(
      /^storage\.s3\.regionendpoint: /,
    );
    expect(configError({ bucket: 'bucket', region: 'us-east-1', regionendpoint: 'ftp://x' })).toMatch(
      /^storage\.s3\.regionendpoint: /,
    );
    expect(configError({ bucket: 'bucket', region: 'us-east-1', forcepathstyle: 'maybe' })).toMatch(
      /^storage\.s3\.forcepathstyle: expected a boolean/,
    );
    expect(configError({ bucket: 'bucket', region: 'us-east-1', accesskey: 'AK' })).toMatch(
      /^storage\.s3\.secretkey: required/,
    );
    expect(configError({ bucket: 'bucket', region: 'us-east-1', secretkey: 'SK' })).toMatch(
      /^storage\.s3\.accesskey: required/,
    );
    expect(configError({ bucket: 'bucket', region: 'us-east-1', rootdirectory: 'a\nb' })).toMatch(
      /^storage\.s3\.rootdirectory: /,
    );
    expect(configError({ bucket: 'bucket', region: 'us-east-1', regionEndpoint: 'http://x' })).toBe(
      'storage.s3.regionEndpoint: unknown parameter',
    );
  });

  it('signs for us-east-1 when only an endpoint is given', () => {
    vi.stubEnv('AWS_REGION', '');
    expect(
      s3OptionsFromParameters({ bucket: 'bucket', regionendpoint: 'https://s3.example.test' }),
    ).toMatchObject({ region: 'us-east-1', endpoint: 'https://s3.example.test' });
  });
});
