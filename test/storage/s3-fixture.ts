/** A bucket of a running local S3 with drivers on it, and the shared driver suite run on a fresh one. */
import {
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect } from 'vitest';

import { S3Driver, type S3DriverOptions } from '../../functions/storage/s3.js';
import { type S3Service } from '../../bin/local/s3-local.js';
import { describeStorageDriver } from './driver-suite.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** A driver (and a raw client for looking behind it) on one bucket of a running service. */
export class Bucket {
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
export function describeSuiteOn(
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
