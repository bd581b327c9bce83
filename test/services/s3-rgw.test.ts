/**
 * The S3 driver against a one-node Ceph RGW (Debian's radosgw, ceph-mon and ceph-osd; .ci/install-services):
 * the shared conformance suite, then what only a faithful S3 shows: appends resumed by other driver
 * instances (other processes) with every part but the last at 5 MiB, presigned URLs refused when tampered
 * with or expired, the hidden writer state, and multipart copies.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { PathNotFoundError, StorageError } from '../../functions/storage/driver.js';
import { PART_SIZE, s3DriverFromParameters } from '../../functions/storage/s3.js';
import { startRgw } from '../../bin/local/s3-local.js';

import { describeSuiteOn, KiB, MiB } from '../storage/s3-fixture.js';

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
