/** A bucket of a running local S3 with drivers on it, and the shared driver suite run on a fresh one. */
import { randomBytes } from 'node:crypto';
import {
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { PART_SIZE, S3Driver, type S3DriverOptions } from '../../functions/storage/s3.js';
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

  /** The multipart upload named in the hidden writer state of path (driver without a root directory). */
  async stateUploadId(path: string): Promise<string | undefined> {
    const response = await this.client.send(
      new GetObjectCommand({ Bucket: this.name, Key: `~appends${path}` }),
    );
    const body = (await response.Body?.transformToString('latin1')) ?? '';
    return (JSON.parse(body.slice(0, body.indexOf('\n'))) as { uploadId?: string }).uploadId;
  }

  /** Uploads a small part to a multipart upload: fails (NoSuchUpload) once it is aborted. */
  async uploadPart(key: string, uploadId: string): Promise<void> {
    await this.client.send(
      new UploadPartCommand({ Bucket: this.name, Key: key, UploadId: uploadId, PartNumber: 9, Body: 'part' }),
    );
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

  describe(`${label}: deleting a directory`, () => {
    it(
      'aborts the multipart uploads of the writers below it, and removes their state',
      { timeout: 60_000 },
      async () => {
        // As the registry purges abandoned uploads: by deleting /uploads/<id>.
        const directory = `/uploads-${randomBytes(6).toString('hex')}`;
        const paths = [`${directory}/first/data`, `${directory}/second/nested/data`];
        const driver = current().driver();
        const uploads: { key: string; uploadId: string }[] = [];
        for (const path of paths) {
          const writer = await driver.writer(path, false);
          await writer.write(randomBytes(PART_SIZE + 10 * KiB)); // One part uploaded, the rest in the state.
          await writer.close();
          const uploadId = await current().stateUploadId(path);
          expect(uploadId, path).toEqual(expect.any(String));
          uploads.push({ key: path.slice(1), uploadId: uploadId ?? '' });
        }
        for (const { key, uploadId } of uploads) await current().uploadPart(key, uploadId);
        if (multipartListing) expect(await current().uploads(directory.slice(1))).toHaveLength(2);

        // Nothing committed: the directory holds only the writers' uploads, and still counts as found.
        await driver.delete(directory);
        for (const { key, uploadId } of uploads) {
          await expect(current().uploadPart(key, uploadId), key).rejects.toMatchObject({
            name: 'NoSuchUpload',
          });
        }
        if (multipartListing) expect(await current().uploads(directory.slice(1))).toEqual([]);
        expect(await current().keys(directory.slice(1))).toEqual([]);
        expect(await current().keys(`~appends${directory}/`)).toEqual([]);
        expect(await collectPaths(driver.walk(directory))).toEqual([]);
      },
    );
  });
  return { bucket: current };
}

async function collectPaths(files: AsyncIterable<{ path: string }>): Promise<string[]> {
  const paths: string[] = [];
  for await (const { path } of files) paths.push(path);
  return paths;
}
