/**
 * The S3 driver against a real local S3: the shared conformance suite against a one-node Ceph RGW (the
 * faithful one: SigV4, presigned URLs, multipart rules) and against fauxqs (fast, no authentication),
 * then S3-specific behaviour against RGW: appends resumed by other driver instances (other processes),
 * presigned URLs refused when tampered with or expired, the hidden writer state, multipart copies, and
 * the `storage.s3` parameters.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { ConfigError } from '../../functions/config.js';
import { PathNotFoundError, StorageError } from '../../functions/storage/driver.js';
import {
  PART_SIZE,
  S3Driver,
  s3DriverFromParameters,
  type S3DriverOptions,
  s3OptionsFromParameters,
} from '../../functions/storage/s3.js';
import { type S3Service, startFauxqs, startRgw } from '../../bin/local/s3-local.js';
import { describeStorageDriver } from './driver-suite.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A driver (and a raw client for looking behind it) on one bucket of a running service. */
class Bucket {
  readonly drivers: S3Driver[] = [];
  readonly client: S3Client;

  constructor(
    readonly service: S3Service,
    readonly name: string,
  ) {
    this.client = new S3Client({
      endpoint: service.endpoint,
      region: service.region,
      forcePathStyle: true,
      credentials: { accessKeyId: service.accessKeyId, secretAccessKey: service.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  /** A new driver instance on the bucket, as another process would make. */
  driver(options: Partial<S3DriverOptions> = {}): S3Driver {
    const driver = new S3Driver({
      bucket: this.name,
      region: this.service.region,
      endpoint: this.service.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: this.service.accessKeyId, secretAccessKey: this.service.secretAccessKey },
      ...options,
    });
    this.drivers.push(driver);
    return driver;
  }

  /** Every key in the bucket below prefix. */
  async keys(prefix = ''): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.name, Prefix: prefix, ContinuationToken: token }),
      );
      for (const { Key } of page.Contents ?? []) if (Key !== undefined) keys.push(Key);
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return keys;
  }

  /** The keys of the multipart uploads in progress below prefix. */
  async uploads(prefix = ''): Promise<{ key: string; uploadId: string }[]> {
    const page = await this.client.send(
      new ListMultipartUploadsCommand({ Bucket: this.name, Prefix: prefix }),
    );
    return (page.Uploads ?? []).map(({ Key, UploadId }) => ({ key: Key ?? '', uploadId: UploadId ?? '' }));
  }

  /** The sizes of the parts uploaded so far to the one multipart upload of key. */
  async partSizes(key: string): Promise<number[]> {
    const uploads = (await this.uploads(key)).filter((upload) => upload.key === key);
    expect(uploads, `multipart uploads of ${key}`).toHaveLength(1);
    const page = await this.client.send(
      new ListPartsCommand({ Bucket: this.name, Key: key, UploadId: uploads[0]?.uploadId }),
    );
    return (page.Parts ?? []).map(({ Size }) => Size ?? -1);
  }

  destroy(): void {
    for (const driver of this.drivers) driver.destroy();
    this.client.destroy();
  }
}

/** The shared suite on a fresh bucket of a service; the bucket must be empty afterwards. */
function describeSuiteOn(
  label: string,
  start: () => Promise<S3Service>,
  { multipartListing }: { multipartListing: boolean },
): { bucket: () => Bucket } {
  let service: S3Service | undefined;
  let bucket: Bucket | undefined;
  const current = (): Bucket => {
    if (bucket === undefined) throw new Error(`${label} is not running`);
    return bucket;
  };

  beforeAll(async () => {
    service = await start();
    await service.createBucket('registry');
    bucket = new Bucket(service, 'registry');
  }, 180_000);

  afterAll(async () => {
    try {
      if (bucket !== undefined) {
        // Everything the suite and the tests wrote was deleted, hidden writer state included.
        expect(await bucket.keys(), 'objects left in the bucket').toEqual([]);
        if (multipartListing) expect(await bucket.uploads(), 'multipart uploads left').toEqual([]);
      }
    } finally {
      bucket?.destroy();
      await service?.stop();
    }
  }, 60_000);

  describeStorageDriver(
    label,
    () => {
      const driver = current().driver();
      return Promise.resolve({
        driver,
        cleanup: () => {
          driver.destroy();
          return Promise.resolve();
        },
      });
    },
    { sharedAcrossInstances: true, readableWhenClosed: false },
  );
  return { bucket: current };
}

describe('S3Driver on Ceph RGW', () => {
  const { bucket } = describeSuiteOn('s3 (Ceph RGW)', startRgw, { multipartListing: true });

  describe('appends across driver instances', () => {
    const orders: [string, number[]][] = [
      ['1 KiB, 3 MiB, 4 MiB, 7 MiB', [KiB, 3 * MiB, 4 * MiB, 7 * MiB]],
      ['7 MiB, 1 KiB, 4 MiB, 3 MiB, 1 KiB', [7 * MiB, KiB, 4 * MiB, 3 * MiB, KiB]],
      ['4 MiB, 4 MiB, 1 KiB, 3 MiB, 7 MiB, 3 MiB', [4 * MiB, 4 * MiB, KiB, 3 * MiB, 7 * MiB, 3 * MiB]],
      ['3 MiB, 1 KiB, 1 KiB, 1 KiB', [3 * MiB, KiB, KiB, KiB]],
    ];

    it.each(orders)(
      'makes one correct object of chunks of %s, each from a new instance',
      { timeout: 120_000 },
      async (_, sizes) => {
        const path = `/appends-${randomBytes(6).toString('hex')}/data`;
        const key = path.slice(1);
        const whole = createHash('sha256');
        let total = 0;
        for (const size of sizes) {
          const chunk = randomBytes(size);
          whole.update(chunk);
          const writer = await bucket().driver().writer(path, true);
          expect(writer.size).toBe(total);
          await writer.write(chunk);
          total += size;
          expect(writer.size).toBe(total);
          await writer.close();

          // Every part uploaded so far has exactly the part size; the rest is in the hidden state.
          const parts = Math.floor(total / PART_SIZE);
          if (parts > 0)
            expect(await bucket().partSizes(key)).toEqual(new Array<number>(parts).fill(PART_SIZE));
          else expect(await bucket().uploads(key)).toEqual([]);
          await expect(bucket().driver().stat(path)).rejects.toBeInstanceOf(PathNotFoundError);
        }

        const last = await bucket().driver().writer(path, true);
        expect(last.size).toBe(total);
        await last.commit();

        const reader = bucket().driver();
        expect((await reader.stat(path)).size).toBe(total);
        const read = createHash('sha256');
        for await (const chunk of await reader.reader(path)) read.update(chunk);
        expect(read.digest('hex')).toBe(whole.digest('hex'));
        // Completed from its parts (RGW refuses a completion with a part under 5 MiB but the last: EntityTooSmall).
        const head = await bucket().client.send(new HeadObjectCommand({ Bucket: bucket().name, Key: key }));
        const parts = Math.ceil(total / PART_SIZE);
        expect(head.ETag).toMatch(total > PART_SIZE ? new RegExp(`-${parts}"$`) : /^"[0-9a-f]{32}"$/);
        expect(await bucket().uploads(key)).toEqual([]);
        expect((await bucket().keys()).filter((found) => found.includes('~'))).toEqual([]);
        await reader.delete(path.slice(0, path.lastIndexOf('/')));
      },
    );

    it('proves the part rule is enforced: RGW refuses to complete an upload with a small middle part', async () => {
      // The check above relies on RGW enforcing the rule; make sure it does.
      const client = bucket().client;
      const Key = `small-part-${randomBytes(6).toString('hex')}`;
      const { UploadId } = await client.send(
        new CreateMultipartUploadCommand({ Bucket: bucket().name, Key }),
      );
      try {
        const etags: string[] = [];
        for (const [index, size] of [KiB, KiB].entries()) {
          const { ETag } = await client.send(
            new UploadPartCommand({
              Bucket: bucket().name,
              Key,
              UploadId,
              PartNumber: index + 1,
              Body: randomBytes(size),
            }),
          );
          etags.push(ETag ?? '');
        }
        await expect(
          client.send(
            new CompleteMultipartUploadCommand({
              Bucket: bucket().name,
              Key,
              UploadId,
              MultipartUpload: { Parts: etags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) },
            }),
          ),
        ).rejects.toMatchObject({ name: 'EntityTooSmall' });
      } finally {
        await client.send(new AbortMultipartUploadCommand({ Bucket: bucket().name, Key, UploadId }));
      }
    });

    it('never shows the hidden writer state in list or stat', async () => {
      const dir = `/hidden-${randomBytes(6).toString('hex')}`;
      const driver = bucket().driver();
      await driver.putContent(`${dir}/visible`, new Uint8Array([1]));
      const writer = await driver.writer(`${dir}/upload/data`, false);
      await writer.write(randomBytes(6 * MiB));
      await writer.close();

      expect((await bucket().keys()).some((key) => key.includes('~'))).toBe(true);
      expect(await driver.list(dir)).toEqual([`${dir}/visible`]);
      expect((await driver.list('/')).every((path) => !path.includes('~'))).toBe(true);
      await expect(driver.list(`${dir}/upload`)).rejects.toBeInstanceOf(PathNotFoundError);
      await expect(driver.stat(`${dir}/upload`)).rejects.toBeInstanceOf(PathNotFoundError);
      await expect(driver.stat(`${dir}/upload/data`)).rejects.toBeInstanceOf(PathNotFoundError);

      // Deleting the directory aborts the upload and removes the state with it.
      await driver.delete(dir);
      expect(await bucket().keys(dir.slice(1))).toEqual([]);
      expect(await bucket().uploads(dir.slice(1))).toEqual([]);
      expect((await bucket().keys()).filter((key) => key.includes('~'))).toEqual([]);
    });

    it('leaves no multipart upload and no hidden object when cancelled', { timeout: 60_000 }, async () => {
      const path = `/cancelled-${randomBytes(6).toString('hex')}/data`;
      const first = await bucket().driver().writer(path, false);
      await first.write(randomBytes(7 * MiB));
      await first.close();
      expect(await bucket().uploads(path.slice(1))).toHaveLength(1);

      const resumed = await bucket().driver().writer(path, true);
      expect(resumed.size).toBe(7 * MiB);
      await resumed.write(randomBytes(4 * MiB));
      await resumed.cancel();

      expect(await bucket().uploads(path.slice(1))).toEqual([]);
      expect(await bucket().keys(path.slice(1))).toEqual([]);
      expect((await bucket().keys()).filter((key) => key.includes('~'))).toEqual([]);
      const again = await bucket().driver().writer(path, true);
      expect(again.size).toBe(0);
      await again.cancel();
    });

    it(
      'aborts the earlier upload when a writer starts over (append false)',
      { timeout: 60_000 },
      async () => {
        const path = `/restarted-${randomBytes(6).toString('hex')}/data`;
        const first = await bucket().driver().writer(path, false);
        await first.write(randomBytes(6 * MiB));
        await first.close();
        const [earlier] = await bucket().uploads(path.slice(1));

        const fresh = await bucket().driver().writer(path, false);
        expect(fresh.size).toBe(0);
        expect(await bucket().uploads(path.slice(1))).toEqual([]);
        const content = randomBytes(6 * MiB);
        await fresh.write(content);
        await fresh.commit();
        expect(earlier).toBeDefined();
        expect(Buffer.from(await bucket().driver().getContent(path)).equals(content)).toBe(true);
        await bucket().driver().delete(path);
      },
    );

    it('refuses to append to a committed file, but lets it be committed again or cancelled', async () => {
      const path = `/committed-${randomBytes(6).toString('hex')}`;
      const driver = bucket().driver();
      const writer = await driver.writer(path, false);
      await writer.write(new Uint8Array([1, 2, 3]));
      await writer.commit();

      // A retried final request: resumed, nothing written, committed again.
      const again = await driver.writer(path, true);
      expect(again.size).toBe(3);
      await again.write(new Uint8Array(0));
      await again.commit();
      expect(await driver.getContent(path)).toEqual(new Uint8Array([1, 2, 3]));

      const appending = await driver.writer(path, true);
      const refused = appending.write(new Uint8Array([4]));
      await expect(refused).rejects.toBeInstanceOf(StorageError);
      await expect(refused).rejects.toThrow(/committed/);
      await appending.close();
      expect(await driver.getContent(path)).toEqual(new Uint8Array([1, 2, 3]));

      const cancelled = await driver.writer(path, true);
      await cancelled.cancel();
      await expect(driver.stat(path)).rejects.toBeInstanceOf(PathNotFoundError);
    });

    it('reports damaged writer state instead of resuming from it', async () => {
      const path = `/damaged-${randomBytes(6).toString('hex')}`;
      const driver = bucket().driver();
      const writer = await driver.writer(path, false);
      await writer.write(new Uint8Array(10));
      await writer.close();
      const [stateKey] = (await bucket().keys()).filter((key) => key.includes('~') && key.endsWith(path));
      expect(stateKey).toBeDefined();
      await bucket().client.send(
        new PutObjectCommand({ Bucket: bucket().name, Key: stateKey, Body: 'not a state' }),
      );
      await expect(driver.writer(path, true)).rejects.toThrow(/damaged/);
      await driver.delete(path);
      expect((await bucket().keys()).filter((key) => key.includes('~'))).toEqual([]);
    });
  });

  describe('presigned URLs', () => {
    const path = '/presigned/blob';
    const content = randomBytes(64 * KiB);

    beforeAll(async () => {
      await bucket().driver().putContent(path, content);
    });
    afterAll(async () => {
      await bucket().driver().delete('/presigned');
    });

    it('serves the bytes by GET and the size by HEAD, for 20 minutes by default', async () => {
      const driver = bucket().driver();
      const url = await driver.redirectURL(path, { method: 'GET' });
      expect(url).toBeDefined();
      expect(new URL(url ?? '').searchParams.get('X-Amz-Expires')).toBe('1200');
      const response = await fetch(url ?? '');
      expect(response.status).toBe(200);
      expect(Buffer.from(await response.arrayBuffer()).equals(content)).toBe(true);

      const head = await fetch((await driver.redirectURL(path, { method: 'HEAD' })) ?? '', {
        method: 'HEAD',
      });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe(String(content.length));

      const custom = bucket().driver({ redirectExpirySeconds: 90 });
      expect(
        new URL((await custom.redirectURL(path, { method: 'GET' })) ?? '').searchParams.get('X-Amz-Expires'),
      ).toBe('90');
    });

    it('is refused with 403 once one character of its signature is changed', async () => {
      const url = new URL((await bucket().driver().redirectURL(path, { method: 'GET' })) ?? '');
      const signature = url.searchParams.get('X-Amz-Signature') ?? '';
      expect(signature).toMatch(/^[0-9a-f]{64}$/);
      const tampered = `${signature.slice(0, 10)}${signature[10] === '0' ? '1' : '0'}${signature.slice(11)}`;
      url.searchParams.set('X-Amz-Signature', tampered);
      const response = await fetch(url);
      expect(response.status).toBe(403);
      expect(await response.text()).toContain('SignatureDoesNotMatch');
    });

    it('is refused with 403 once expired', async () => {
      const url = await bucket().driver().redirectURL(path, { method: 'GET', expiresInSeconds: 1 });
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const response = await fetch(url ?? '');
      expect(response.status).toBe(403);
      await response.arrayBuffer();
    });
  });

  describe('layout', () => {
    it('stores every key, writer state included, below rootDirectory', { timeout: 60_000 }, async () => {
      const root = `root-${randomBytes(6).toString('hex')}/registry`;
      const driver = bucket().driver({ rootDirectory: `/${root}/` });
      await driver.putContent('/a/b', new Uint8Array([1]));
      const writer = await driver.writer('/uploads/u1/data', false);
      await writer.write(randomBytes(6 * MiB));
      await writer.close();

      const keys = await bucket().keys(root.split('/')[0]);
      expect(keys.length).toBeGreaterThanOrEqual(2);
      for (const key of keys) expect(key.startsWith(`${root}/`)).toBe(true);
      expect(keys).toContain(`${root}/a/b`);
      expect((await bucket().uploads(root)).map(({ key }) => key)).toEqual([`${root}/uploads/u1/data`]);
      expect(await driver.list('/')).toEqual(['/a']);
      expect(await bucket().driver().list(`/${root}`)).toEqual([`/${root}/a`]);

      await driver.delete('/uploads');
      await driver.delete('/a');
      expect(await bucket().keys(root.split('/')[0])).toEqual([]);
      expect(await bucket().uploads(root)).toEqual([]);
    });

    it(
      'moves an object in parts (UploadPartCopy) above the copy threshold',
      { timeout: 60_000 },
      async () => {
        const dir = `/copy-${randomBytes(6).toString('hex')}`;
        const driver = bucket().driver({
          multipartCopyThresholdBytes: 6 * MiB,
          multipartCopyPartBytes: 5 * MiB,
        });
        const content = randomBytes(12 * MiB + 5);
        await driver.putContent(`${dir}/source`, content);
        await driver.move(`${dir}/source`, `${dir}/dest`);
        expect(await driver.list(dir)).toEqual([`${dir}/dest`]);
        expect(Buffer.from(await driver.getContent(`${dir}/dest`)).equals(content)).toBe(true);
        const head = await bucket().client.send(
          new HeadObjectCommand({ Bucket: bucket().name, Key: `${dir.slice(1)}/dest` }),
        );
        expect(head.ETag).toMatch(/-3"$/);

        // Below the threshold, one CopyObject.
        await driver.putContent(`${dir}/small`, content.subarray(0, MiB));
        await driver.move(`${dir}/small`, `${dir}/moved`);
        const small = await bucket().client.send(
          new GetObjectCommand({ Bucket: bucket().name, Key: `${dir.slice(1)}/moved` }),
        );
        expect(small.ETag).toMatch(/^"[0-9a-f]{32}"$/);
        await small.Body?.transformToByteArray();
        await driver.delete(dir);
      },
    );

    it('reads and writes through a driver made from storage.s3 parameters', async () => {
      const service = bucket().service;
      const driver = s3DriverFromParameters({
        bucket: bucket().name,
        region: service.region,
        regionendpoint: service.endpoint,
        forcepathstyle: 'true',
        accesskey: service.accessKeyId,
        secretkey: service.secretAccessKey,
        rootdirectory: '/from-parameters',
        chunksize: 10 * MiB,
        encrypt: false,
      });
      try {
        await driver.putContent('/x', new Uint8Array([7]));
        expect(await bucket().keys('from-parameters')).toEqual(['from-parameters/x']);
        await driver.delete('/x');
      } finally {
        driver.destroy();
      }
      const wrongKey = s3DriverFromParameters({
        bucket: bucket().name,
        regionendpoint: service.endpoint,
        forcepathstyle: true,
        accesskey: service.accessKeyId,
        secretkey: 'wrong',
      });
      try {
        await expect(wrongKey.putContent('/x', new Uint8Array([7]))).rejects.toThrow(
          /SignatureDoesNotMatch \(HTTP 403\)/,
        );
      } finally {
        wrongKey.destroy();
      }
    });
  });
});

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
