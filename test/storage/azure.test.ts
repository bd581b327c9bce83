/**
 * The Azure driver against Azurite (npm; it checks shared keys, tokens' claims and SAS): the shared
 * conformance suite on a fresh container; what is particular to block blobs (staged blocks resumed in
 * another instance, uncommitted blobs removed, the block limit); reads at the end answered 416 as Azure
 * does (through a proxy); redirect SAS that Azurite refuses once tampered with, expired or used to write;
 * user delegation SAS with Entra ID credentials (a second Azurite, over HTTPS with OAuth); refused
 * credentials; and the `storage.azure` parameters.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { globalAgent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BlobServiceClient,
  ContainerSASPermissions,
  type ContainerClient,
  generateBlobSASQueryParameters,
  SASProtocol,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { ClientSecretCredential, DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { ConfigError } from '../../functions/config.js';
import {
  AzureDriver,
  azureDriverFromParameters,
  azureOptionsFromParameters,
  type AzureDriverOptions,
} from '../../functions/storage/azure.js';
import { azureSettingsFromParameters } from '../../functions/storage/azure-parameters.js';
import { InvalidOffsetError, PathNotFoundError, StorageError } from '../../functions/storage/driver.js';
import { listenOnLoopback } from '../../bin/local/free-port.js';
import { startAzurite, type Azurite } from '../support/azurite.js';
import { selfSignedCertificate } from '../support/tls.js';
import { describeStorageDriver } from './driver-suite.js';

const KiB = 1024;

describe('AzureDriver on Azurite', () => {
  let azurite: Azurite | undefined;
  let container: ContainerClient | undefined;
  const containerName = `registry-${randomBytes(4).toString('hex')}`;

  const running = (): { azurite: Azurite; container: ContainerClient } => {
    if (azurite === undefined || container === undefined) throw new Error('Azurite is not running');
    return { azurite, container };
  };

  /** A new driver on the test container, as another process would make. */
  function driver(options: Partial<AzureDriverOptions> = {}): AzureDriver {
    return new AzureDriver({
      container: containerName,
      account: { connectionString: running().azurite.connectionString },
      ...options,
    });
  }

  /** Every blob in the container below prefix, uncommitted ones (staged blocks only) included. */
  async function blobs(prefix = ''): Promise<string[]> {
    const names: string[] = [];
    for await (const blob of running().container.listBlobsFlat({ prefix, includeUncommitedBlobs: true })) {
      names.push(blob.name);
    }
    return names;
  }

  beforeAll(async () => {
    azurite = await startAzurite();
    await azurite.createContainer(containerName);
    container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
      containerName,
    );
  }, 30_000);

  afterAll(async () => {
    try {
      if (container !== undefined) {
        expect(await blobs(), 'blobs left in the container, uncommitted ones included').toEqual([]);
      }
    } finally {
      await azurite?.stop();
    }
  }, 30_000);

  describeStorageDriver(
    'azure (Azurite)',
    () => Promise.resolve({ driver: driver(), cleanup: () => Promise.resolve() }),
    { sharedAcrossInstances: true, readableWhenClosed: false },
  );

  describe('block blobs', () => {
    const root = `/azure-${randomBytes(6).toString('hex')}`;

    afterEach(async () => {
      await driver()
        .delete(root)
        .catch((error: unknown) => {
          if (!(error instanceof PathNotFoundError)) throw error;
        });
    });

    function blockBlob(path: string) {
      return running().container.getBlockBlobClient(path.slice(1));
    }

    async function uncommitted(path: string): Promise<{ id: string; size: number }[]> {
      const list = await blockBlob(path).getBlockList('uncommitted');
      return (list.uncommittedBlocks ?? []).map(({ name, size }) => ({
        id: Buffer.from(name, 'base64').toString('latin1'),
        size,
      }));
    }

    it('stages full blocks as bytes arrive, and the rest on close, never an empty block', async () => {
      const path = `${root}/staged`;
      const writer = await driver({ blockSizeBytes: 4 * KiB }).writer(path, false);
      await writer.write(random(3 * KiB));
      expect(await blobs(path.slice(1)), 'nothing staged before a block is full').toEqual([]);
      await writer.write(random(6 * KiB));
      expect(await uncommitted(path)).toEqual([
        { id: 'block-000000000', size: 4 * KiB },
        { id: 'block-000000001', size: 4 * KiB },
      ]);
      await writer.close();
      expect((await uncommitted(path)).map(({ size }) => size)).toEqual([4 * KiB, 4 * KiB, KiB]);
      await expect(driver().stat(path)).rejects.toBeInstanceOf(PathNotFoundError);

      const exact = `${root}/exact`;
      const full = await driver({ blockSizeBytes: 4 * KiB }).writer(exact, false);
      await full.write(random(4 * KiB));
      await full.close();
      expect((await uncommitted(exact)).map(({ size }) => size)).toEqual([4 * KiB]);

      const empty = await driver().writer(`${root}/empty`, false);
      await empty.write(new Uint8Array(0));
      await empty.close();
      expect(await blobs(`${root.slice(1)}/empty`)).toEqual([]);
      expect((await driver().writer(`${root}/empty`, true)).size).toBe(0);
    });

    it('resumes staged blocks in a second driver instance and commits them as one blob', async () => {
      const path = `${root}/resumed`;
      const first = random(10 * KiB);
      const second = random(5 * KiB);
      const writer = await driver({ blockSizeBytes: 4 * KiB }).writer(path, false);
      await writer.write(first);
      await writer.close();

      const resumed = await driver({ blockSizeBytes: 4 * KiB }).writer(path, true);
      expect(resumed.size).toBe(first.length);
      await resumed.write(second);
      expect(resumed.size).toBe(first.length + second.length);
      await resumed.commit();

      expect(await driver().getContent(path)).toEqual(concat(first, second));
      const list = await blockBlob(path).getBlockList('all');
      expect(list.uncommittedBlocks ?? []).toEqual([]);
      expect((list.committedBlocks ?? []).map(({ size }) => size)).toEqual([
        4 * KiB,
        4 * KiB,
        2 * KiB,
        4 * KiB,
        KiB,
      ]);
      const properties = await blockBlob(path).getProperties();
      expect(properties.contentType).toBe('application/octet-stream');
    });

    it('orders resumed blocks by their sequence, not by the order the service lists them in', async () => {
      const path = `${root}/out-of-order`;
      const [a, b, c] = [random(100), random(200), random(300)];
      const id = (n: number): string => Buffer.from(`block-${String(n).padStart(9, '0')}`).toString('base64');
      await blockBlob(path).stageBlock(id(2), c, c.length);
      await blockBlob(path).stageBlock(id(0), a, a.length);
      await blockBlob(path).stageBlock(id(1), b, b.length);
      const writer = await driver().writer(path, true);
      expect(writer.size).toBe(600);
      await writer.commit();
      expect(await driver().getContent(path)).toEqual(concat(a, b, c));
    });

    it('refuses to resume blocks it did not stage', async () => {
      const path = `${root}/foreign`;
      await blockBlob(path).stageBlock(Buffer.from('someone-else').toString('base64'), random(10), 10);
      await expect(driver().writer(path, true)).rejects.toThrow(/did not stage/);
      const writer = await driver().writer(path, false);
      expect(writer.size).toBe(0);
      await writer.write(random(4));
      await writer.commit();
      expect((await driver().stat(path)).size).toBe(4);
    });

    it('removes a blob with only uncommitted blocks on cancel, on a fresh writer, and on delete', async () => {
      const staged = async (path: string): Promise<void> => {
        const writer = await driver().writer(path, false);
        await writer.write(random(KiB));
        await writer.close();
        expect(await blobs(path.slice(1)), `${path} is staged`).toEqual([path.slice(1)]);
      };

      await staged(`${root}/cancelled`);
      await (await driver().writer(`${root}/cancelled`, true)).cancel();
      expect(await blobs(`${root.slice(1)}/cancelled`)).toEqual([]);

      await staged(`${root}/restarted`);
      const writer = await driver().writer(`${root}/restarted`, false);
      expect(writer.size).toBe(0);
      expect(await blobs(`${root.slice(1)}/restarted`)).toEqual([]);
      await writer.cancel();

      await staged(`${root}/dir/upload/data`);
      await staged(`${root}/single`);
      await driver().delete(`${root}/dir`);
      await driver().delete(`${root}/single`);
      expect(await blobs(root.slice(1))).toEqual([]);
      await expect(driver().delete(`${root}/dir`)).rejects.toBeInstanceOf(PathNotFoundError);
    });

    it('treats a committed file as finished: its size, no appends, a second commit leaves it', async () => {
      const path = `${root}/committed`;
      const content = random(3 * KiB);
      await driver().putContent(path, content);
      const writer = await driver().writer(path, true);
      expect(writer.size).toBe(content.length);
      await expect(writer.write(random(1))).rejects.toThrow(/committed/);
      await writer.commit();
      expect(await driver().getContent(path)).toEqual(content);
      const cancelled = await driver().writer(path, true);
      await cancelled.cancel();
      await expect(driver().stat(path)).rejects.toBeInstanceOf(PathNotFoundError);
    });

    it('refuses a block beyond the block limit with a StorageError', async () => {
      const path = `${root}/limited`;
      const writer = await driver({ blockSizeBytes: KiB, maxBlocks: 3 }).writer(path, false);
      await writer.write(random(3 * KiB));
      const error = await writer.write(random(KiB)).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(StorageError);
      expect((error as Error).message).toMatch(/limited to 3 blocks/);
      await writer.cancel();
    });

    it('keeps every path below rootDirectory', async () => {
      const rooted = driver({ rootDirectory: `/${root.slice(1)}/nested/` });
      await rooted.putContent('/a/b', random(5));
      expect(await blobs(root.slice(1))).toEqual([`${root.slice(1)}/nested/a/b`]);
      expect(await rooted.list('/')).toEqual(['/a']);
      const url = await rooted.redirectURL('/a/b', { method: 'GET' });
      expect(new URL(url ?? '').pathname).toBe(`/devstoreaccount1/${containerName}${root}/nested/a/b`);
    });
  });

  describe('redirect SAS', () => {
    const path = `/redirect-${randomBytes(6).toString('hex')}/blob`;
    const content = random(2 * KiB);

    beforeAll(async () => {
      await driver().putContent(path, content);
    });

    afterAll(async () => {
      await driver().delete(path);
    });

    async function signed(options: { expiresInSeconds?: number } = {}): Promise<URL> {
      const url = await driver().redirectURL(path, { method: 'GET', ...options });
      if (url === undefined) throw new Error('no redirect URL');
      return new URL(url);
    }

    it('is read-only, starts 5 minutes ago, expires as asked (20 minutes by default), http allowed on http', async () => {
      const before = Date.now();
      const url = await signed();
      expect(url.searchParams.get('sp')).toBe('r');
      expect(url.searchParams.get('sr')).toBe('b');
      expect(url.searchParams.get('spr')).toBe('https,http');
      const start = Date.parse(url.searchParams.get('st') ?? '');
      const expiry = Date.parse(url.searchParams.get('se') ?? '');
      expect(Math.abs(start - (before - 5 * 60_000))).toBeLessThan(5_000);
      expect(Math.abs(expiry - (before + 20 * 60_000))).toBeLessThan(5_000);
      const short = await signed({ expiresInSeconds: 60 });
      expect(Math.abs(Date.parse(short.searchParams.get('se') ?? '') - (before + 60_000))).toBeLessThan(
        5_000,
      );
      const configured = await driver({ redirectExpirySeconds: 120 }).redirectURL(path, { method: 'HEAD' });
      const se = new URL(configured ?? '').searchParams.get('se') ?? '';
      expect(Math.abs(Date.parse(se) - (before + 120_000))).toBeLessThan(5_000);

      const response = await fetch(url);
      expect(response.status).toBe(200);
      expect(new Uint8Array(await response.arrayBuffer())).toEqual(content);
    });

    it('gets 403 once its signature or blob name is tampered with', async () => {
      const url = await signed();
      const signature = url.searchParams.get('sig') ?? '';
      const tampered = new URL(url);
      tampered.searchParams.set('sig', `${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`);
      expect((await fetch(tampered)).status).toBe(403);

      const widened = new URL(url);
      widened.searchParams.set('sp', 'rw');
      expect((await fetch(widened)).status).toBe(403);

      await driver().putContent(`${path}2`, random(10));
      const elsewhere = new URL(url);
      elsewhere.pathname = `${url.pathname}2`;
      expect((await fetch(elsewhere)).status).toBe(403);
      await driver().delete(`${path}2`);
    });

    it('gets 403 once expired', async () => {
      const now = Date.now();
      const spy = vi.spyOn(Date, 'now').mockReturnValue(now - 60 * 60_000);
      let url: URL;
      try {
        url = await signed({ expiresInSeconds: 60 });
      } finally {
        spy.mockRestore();
      }
      expect(Date.parse(url.searchParams.get('se') ?? '')).toBeLessThan(now);
      expect((await fetch(url)).status).toBe(403);
    });

    it('gets 403 when used to write or delete', async () => {
      const url = await signed();
      const put = await fetch(url, {
        method: 'PUT',
        headers: { 'x-ms-blob-type': 'BlockBlob', 'content-type': 'application/octet-stream' },
        body: random(10),
      });
      expect(put.status).toBe(403);
      expect((await fetch(url, { method: 'DELETE' })).status).toBe(403);
      expect(await driver().getContent(path)).toEqual(content);
    });

    it('is not given with a SAS connection string, which the driver otherwise works with', async () => {
      const { azurite: service } = running();
      const sas = generateBlobSASQueryParameters(
        {
          containerName,
          permissions: ContainerSASPermissions.parse('racwdl'),
          expiresOn: new Date(Date.now() + 10 * 60_000),
          protocol: SASProtocol.HttpsAndHttp,
        },
        new StorageSharedKeyCredential(service.accountName, service.accountKey),
      ).toString();
      const sasDriver = driver({
        account: { connectionString: `BlobEndpoint=${service.blobEndpoint};SharedAccessSignature=${sas}` },
      });
      expect(await sasDriver.getContent(path)).toEqual(content);
      expect(await sasDriver.redirectURL(path, { method: 'GET' })).toBeUndefined();
    });
  });

  describe('reads at the end', () => {
    it('gives an empty stream at the size also when the service answers 416, as Azure does', async () => {
      // Azurite answers a range starting at the size with 200 and nothing; Azure with 416 InvalidRange.
      const { azurite: service } = running();
      const proxy = await startRangeProxy(service.port);
      const path = `/ends-${randomBytes(6).toString('hex')}`;
      const through = driver({
        account: {
          serviceURL: `${proxy.url}/${service.accountName}`,
          accountName: service.accountName,
          accountKey: service.accountKey,
        },
      });
      try {
        await through.putContent(`${path}/three`, random(3));
        await through.putContent(`${path}/empty`, new Uint8Array(0));
        expect(await readAll(await through.reader(`${path}/three`, 3))).toEqual(new Uint8Array(0));
        expect(await readAll(await through.reader(`${path}/three`, 3, 10))).toEqual(new Uint8Array(0));
        expect(await readAll(await through.reader(`${path}/empty`))).toEqual(new Uint8Array(0));
        await expect(through.reader(`${path}/three`, 4)).rejects.toBeInstanceOf(InvalidOffsetError);
        await expect(through.reader(`${path}/empty`, 1)).rejects.toBeInstanceOf(InvalidOffsetError);
        expect(proxy.refused(), 'ranges answered 416 by the proxy').toBe(2);
      } finally {
        await driver()
          .delete(path)
          .finally(() => proxy.close());
      }
    });
  });

  describe('refused access', () => {
    it('fails with a StorageError naming the refusal for a wrong account key', async () => {
      const { azurite: service } = running();
      const wrong = driver({
        account: {
          serviceURL: service.blobEndpoint,
          accountName: service.accountName,
          accountKey: randomBytes(64).toString('base64'),
        },
      });
      for (const call of [
        () => wrong.getContent('/any/file'),
        () => wrong.stat('/any/file'),
        () => wrong.putContent('/any/file', random(3)),
        () => wrong.list('/'),
        () => wrong.writer('/any/file', true),
      ]) {
        const error = await call().catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(StorageError);
        expect(error).not.toBeInstanceOf(PathNotFoundError);
        expect((error as Error).message).toMatch(
          /^azure: .*access refused, AuthorizationFailure \(HTTP 403\): check the account name and key/,
        );
      }
    });

    it('fails with a StorageError, not PathNotFoundError, when the container does not exist', async () => {
      const missing = driver({ container: 'no-such-container' });
      for (const call of [() => missing.getContent('/file'), () => missing.stat('/file')]) {
        const error = await call().catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(StorageError);
        expect(error).not.toBeInstanceOf(PathNotFoundError);
        expect((error as Error).message).toMatch(/container does not exist/);
      }
    });
  });

  describe('azureDriverFromParameters', () => {
    it('makes a working driver from a connection string, and from an account name and key', async () => {
      const { azurite: service } = running();
      const fromString = await azureDriverFromParameters({
        container: containerName,
        connectionstring: service.connectionString,
        rootdirectory: 'params',
      });
      await fromString.putContent('/file', random(7));
      const fromKey = await azureDriverFromParameters({
        container: containerName,
        accountname: service.accountName,
        accountkey: service.accountKey,
        serviceurl: service.blobEndpoint,
        rootdirectory: 'params',
      });
      expect((await fromKey.stat('/file')).size).toBe(7);
      await fromKey.delete('/file');
    });
  });
});

describe('AzureDriver with Entra ID credentials, on Azurite over HTTPS with OAuth', () => {
  let azurite: Azurite | undefined;
  let dir: string | undefined;
  let certificate: Buffer | undefined;
  let previousCa: unknown;
  const containerName = 'delegated';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'azurite-tls-'));
    const tls = selfSignedCertificate(dir);
    certificate = await readFile(tls.certificate);
    azurite = await startAzurite({ tls, oauth: 'basic' });
    await azurite.createContainer(containerName);
    // Without keep-alive the SDK connects through https.globalAgent: make it trust Azurite's certificate.
    previousCa = globalAgent.options.ca;
    globalAgent.options.ca = certificate;
  }, 30_000);

  afterAll(async () => {
    globalAgent.options.ca = previousCa as typeof globalAgent.options.ca;
    await azurite?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  }, 30_000);

  afterEach(() => {
    vi.restoreAllMocks();
  });

  function tokenDriver(): AzureDriver {
    if (azurite === undefined) throw new Error('Azurite is not running');
    return new AzureDriver({
      container: containerName,
      account: {
        serviceURL: azurite.blobEndpoint,
        accountName: azurite.accountName,
        credential: fakeEntraId,
      },
      clientOptions: { keepAliveOptions: { enable: false } },
    });
  }

  it('signs redirects with a user delegation key, HTTPS only, which Azurite accepts', async () => {
    const keys = vi.spyOn(BlobServiceClient.prototype, 'getUserDelegationKey');
    const driver = tokenDriver();
    const content = random(3 * KiB);
    await driver.putContent('/delegated/blob', content);
    const urls = await Promise.all(
      [0, 1, 2].map(() => driver.redirectURL('/delegated/blob', { method: 'GET' })),
    );
    expect(keys, 'one key for concurrent redirects').toHaveBeenCalledTimes(1);
    const url = new URL(urls[0] ?? '');
    expect(url.protocol).toBe('https:');
    expect(url.searchParams.get('spr')).toBe('https');
    expect(url.searchParams.get('sp')).toBe('r');
    expect(url.searchParams.get('skoid')).toBe(OBJECT_ID);
    expect(url.searchParams.get('sktid')).toBe(TENANT_ID);

    const got = await httpsFetch(url, 'GET');
    expect(got.status).toBe(200);
    expect(new Uint8Array(got.body)).toEqual(content);
    const head = await httpsFetch(
      new URL((await driver.redirectURL('/delegated/blob', { method: 'HEAD' })) ?? ''),
      'HEAD',
    );
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(content.length));

    const tampered = new URL(url);
    tampered.searchParams.set('skoid', '00000000-0000-0000-0000-000000000000');
    expect((await httpsFetch(tampered, 'GET')).status).toBe(403);
    expect(keys, 'the key is kept').toHaveBeenCalledTimes(1);
    await driver.delete('/delegated/blob');
  });

  it('keeps a user delegation key 48 hours, renewing it when less than 30 minutes are left', async () => {
    const keys = vi.spyOn(BlobServiceClient.prototype, 'getUserDelegationKey');
    const driver = tokenDriver();
    const start = Date.now();
    await driver.redirectURL('/any', { method: 'GET' });
    expect(keys).toHaveBeenCalledTimes(1);
    const [keyStart, keyExpiry] = keys.mock.calls[0] as unknown as [Date, Date];
    expect(Math.abs(keyStart.getTime() - (start - 5 * 60_000))).toBeLessThan(5_000);
    expect(Math.abs(keyExpiry.getTime() - (start + 48 * 3600_000))).toBeLessThan(5_000);

    // From here on the key is not asked for from Azurite, whose clock does not move.
    keys.mockResolvedValue({
      signedObjectId: OBJECT_ID,
      signedTenantId: TENANT_ID,
      signedStartsOn: new Date(),
      signedExpiresOn: new Date(),
      signedService: 'b',
      signedVersion: '2025-11-05',
      value: randomBytes(32).toString('base64'),
    } as Awaited<ReturnType<BlobServiceClient['getUserDelegationKey']>>);
    const now = vi.spyOn(Date, 'now');
    now.mockReturnValue(start + 47 * 3600_000);
    await driver.redirectURL('/any', { method: 'GET' });
    expect(keys, 'still an hour left').toHaveBeenCalledTimes(1);
    await driver.redirectURL('/any', { method: 'GET', expiresInSeconds: 2 * 3600 });
    expect(keys, 'a SAS outliving the key gets a new one').toHaveBeenCalledTimes(2);
    now.mockReturnValue(start + 47 * 3600_000 + 60 * 60_000 + 31 * 60_000);
    await driver.redirectURL('/any', { method: 'GET' });
    expect(keys, 'the new key has more than 30 minutes left').toHaveBeenCalledTimes(2);
    now.mockReturnValue(start + 47 * 3600_000 + 48 * 3600_000 - 29 * 60_000);
    await driver.redirectURL('/any', { method: 'GET' });
    expect(keys, 'less than 30 minutes left').toHaveBeenCalledTimes(3);
  });
});

describe('azure parameters (storage.azure)', () => {
  const KEY = Buffer.from('a key').toString('base64');

  function configError(parameters: Record<string, unknown>): string {
    try {
      azureSettingsFromParameters(parameters);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error('expected a ConfigError');
  }

  it('maps an account name and key, with the service URL from the realm', () => {
    expect(
      azureSettingsFromParameters({ accountname: 'acct1', accountkey: KEY, container: 'registry' }),
    ).toEqual({
      container: 'registry',
      account: { serviceURL: 'https://acct1.blob.core.windows.net', accountName: 'acct1', accountKey: KEY },
    });
    expect(
      azureSettingsFromParameters({
        accountname: 'acct1',
        accountkey: KEY,
        container: 'registry',
        realm: 'core.chinacloudapi.cn',
        credentials: { type: 'shared_key' },
        rootdirectory: '/docker',
      }),
    ).toEqual({
      container: 'registry',
      account: {
        serviceURL: 'https://acct1.blob.core.chinacloudapi.cn',
        accountName: 'acct1',
        accountKey: KEY,
      },
      rootDirectory: '/docker',
    });
    expect(
      azureSettingsFromParameters({
        accountname: 'acct1',
        accountkey: KEY,
        container: 'registry',
        serviceurl: 'https://acct1.privatelink.blob.core.windows.net/',
        realm: 'ignored.example',
      }).account,
    ).toEqual({
      serviceURL: 'https://acct1.privatelink.blob.core.windows.net',
      accountName: 'acct1',
      accountKey: KEY,
    });
  });

  it('maps a connection string alone', () => {
    const connectionString = 'UseDevelopmentStorage=true';
    expect(azureSettingsFromParameters({ connectionstring: connectionString, container: 'abc' })).toEqual({
      container: 'abc',
      account: { connectionString },
    });
  });

  it('maps Entra ID credentials, and makes them into @azure/identity credentials', async () => {
    const clientSecret = {
      accountname: 'acct1',
      container: 'registry',
      credentials: { type: 'client_secret', clientid: 'c', tenantid: 't', secret: 's' },
    };
    expect(azureSettingsFromParameters(clientSecret).account).toEqual({
      serviceURL: 'https://acct1.blob.core.windows.net',
      accountName: 'acct1',
      identity: { type: 'client_secret', clientId: 'c', tenantId: 't', secret: 's' },
    });
    const options = await azureOptionsFromParameters(clientSecret);
    expect(options.account).toMatchObject({ accountName: 'acct1' });
    expect('credential' in options.account && options.account.credential).toBeInstanceOf(
      ClientSecretCredential,
    );

    const managed = {
      accountname: 'acct1',
      container: 'registry',
      credentials: { type: 'default_credentials', clientid: 'identity-id' },
    };
    expect(azureSettingsFromParameters(managed).account).toMatchObject({
      identity: { type: 'default_credentials', clientId: 'identity-id' },
    });
    const defaults = await azureOptionsFromParameters(managed);
    expect('credential' in defaults.account && defaults.account.credential).toBeInstanceOf(
      DefaultAzureCredential,
    );
    const made = await azureDriverFromParameters(managed);
    expect(made.name).toBe('azure');
  });

  it('accepts and ignores the distribution keys it does not use', () => {
    expect(
      azureSettingsFromParameters({
        connectionstring: 'UseDevelopmentStorage=true',
        container: 'abc',
        max_retries: 5,
        retry_delay: '100ms',
        copy_status_poll_max_retry: 5,
        copy_status_poll_delay: '100ms',
        skipverify: false,
      }),
    ).toEqual({ container: 'abc', account: { connectionString: 'UseDevelopmentStorage=true' } });
  });

  it('names the key that is missing, unknown, invalid or in conflict', () => {
    const base = { accountname: 'acct1', accountkey: KEY };
    expect(configError(base)).toBe('storage.azure.container: required');
    expect(configError({ ...base, container: '' })).toBe('storage.azure.container: required');
    expect(configError({ ...base, container: 'Not_Valid' })).toMatch(/^storage\.azure\.container: invalid/);
    expect(configError({ ...base, container: 'a--b' })).toMatch(/^storage\.azure\.container: invalid/);
    expect(configError({ ...base, container: ['x'] })).toMatch(
      /^storage\.azure\.container: expected a string/,
    );
    expect(configError({ ...base, container: 'abc', accountName: 'x' })).toBe(
      'storage.azure.accountName: unknown parameter',
    );
    expect(configError({ container: 'abc' })).toMatch(/^storage\.azure\.accountname: required/);
    expect(configError({ container: 'abc', accountname: 'Bad-Name' })).toMatch(
      /^storage\.azure\.accountname: invalid/,
    );
    expect(configError({ container: 'abc', accountname: 'acct1' })).toMatch(
      /^storage\.azure\.accountkey: required/,
    );
    expect(configError({ ...base, container: 'abc', accountkey: 'not base64!' })).toMatch(
      /^storage\.azure\.accountkey: expected a base64 key/,
    );
    expect(configError({ ...base, container: 'abc', realm: 'not a realm' })).toMatch(
      /^storage\.azure\.realm: /,
    );
    expect(configError({ ...base, container: 'abc', serviceurl: 'ftp://x' })).toMatch(
      /^storage\.azure\.serviceurl: /,
    );
    expect(configError({ ...base, container: 'abc', serviceurl: 'https://x/?sig=1' })).toMatch(
      /^storage\.azure\.serviceurl: /,
    );
    expect(configError({ ...base, container: 'abc', rootdirectory: 'a\nb' })).toMatch(
      /^storage\.azure\.rootdirectory: /,
    );

    // Credentials.
    expect(configError({ ...base, container: 'abc', credentials: 'shared_key' })).toMatch(
      /^storage\.azure\.credentials: expected a map/,
    );
    expect(configError({ ...base, container: 'abc', credentials: { type: 'default' } })).toBe(
      'storage.azure.credentials.type: expected shared_key, client_secret or default_credentials, got "default"',
    );
    expect(configError({ ...base, container: 'abc', credentials: { kind: 'x' } })).toBe(
      'storage.azure.credentials.kind: unknown parameter',
    );
    expect(configError({ container: 'abc', accountname: 'acct1', credentials: { type: 'shared_key' } })).toBe(
      'storage.azure.accountkey: required with credentials.type shared_key',
    );
    expect(configError({ ...base, container: 'abc', credentials: { type: 'shared_key', secret: 's' } })).toBe(
      'storage.azure.credentials.secret: not used with credentials.type shared_key',
    );
    expect(configError({ ...base, container: 'abc', credentials: { type: 'default_credentials' } })).toBe(
      'storage.azure.accountkey: not used with credentials.type default_credentials',
    );
    const secret = { container: 'abc', accountname: 'acct1' };
    expect(
      configError({ ...secret, credentials: { type: 'client_secret', clientid: 'c', tenantid: 't' } }),
    ).toBe('storage.azure.credentials.secret: required with credentials.type client_secret');
    expect(
      configError({ ...secret, credentials: { type: 'client_secret', secret: 's', tenantid: 't' } }),
    ).toBe('storage.azure.credentials.clientid: required with credentials.type client_secret');
    expect(configError({ ...secret, credentials: { type: 'default_credentials', secret: 's' } })).toBe(
      'storage.azure.credentials.secret: only used with credentials.type client_secret',
    );

    // Connection strings.
    const connection = { container: 'abc', connectionstring: 'UseDevelopmentStorage=true' };
    for (const key of ['accountname', 'accountkey', 'serviceurl', 'realm']) {
      expect(configError({ ...connection, [key]: key === 'accountkey' ? KEY : 'acct1' })).toMatch(
        new RegExp(`^storage\\.azure\\.${key}: not allowed with storage\\.azure\\.connectionstring`),
      );
    }
    expect(configError({ ...connection, credentials: { type: 'default_credentials' } })).toMatch(
      /^storage\.azure\.credentials: not allowed with storage\.azure\.connectionstring/,
    );
    expect(configError({ container: 'abc', connectionstring: 'just text' })).toMatch(
      /^storage\.azure\.connectionstring: expected Key=Value pairs/,
    );
    expect(configError({ container: 'abc', connectionstring: 'AccountName=a1b;' })).toMatch(
      /^storage\.azure\.connectionstring: carries no credentials/,
    );
    expect(configError({ container: 'abc', connectionstring: 'AccountKey=abc;' })).toMatch(
      /^storage\.azure\.connectionstring: names no account/,
    );
  });

  it('refuses, as a ConfigError naming the key, a connection string the SDK cannot use', async () => {
    await expect(
      azureDriverFromParameters({ container: 'abc', connectionstring: 'AccountName=acct1;AccountKey=a2V5' }),
    ).rejects.toThrow(/^storage\.azure\.connectionstring: /);
  });
});

function random(size: number): Uint8Array {
  const bytes = randomBytes(size);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function concat(...chunks: Uint8Array[]): Uint8Array {
  const result = new Uint8Array(chunks.reduce((total, chunk) => total + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    result.set(chunk, offset);
    offset += chunk.length;
  }
  return result;
}

const TENANT_ID = 'ab1f708d-50f6-404c-a006-d71b2ac7a606';
const OBJECT_ID = '4d1c1c5c-8f60-4c59-9c4f-7e3c1f1ad2b6';

/**
 * A TokenCredential giving what Azurite's "basic" OAuth checks (issuer, audience, validity; not the
 * signature): an unsigned token for the storage audience.
 */
const fakeEntraId: TokenCredential = {
  getToken() {
    const now = Math.floor(Date.now() / 1000);
    const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
    const token = [
      part({ alg: 'RS256', typ: 'JWT' }),
      part({
        aud: 'https://storage.azure.com',
        iss: `https://sts.windows.net/${TENANT_ID}/`,
        iat: now - 60,
        nbf: now - 60,
        exp: now + 3600,
        oid: OBJECT_ID,
        tid: TENANT_ID,
      }),
      Buffer.from('not signed').toString('base64url'),
    ].join('.');
    return Promise.resolve({ token, expiresOnTimestamp: (now + 3600) * 1000 });
  },
};

/** A GET or HEAD over HTTPS trusting the https.globalAgent's CA (fetch cannot be told to trust one). */
function httpsFetch(
  url: URL,
  method: 'GET' | 'HEAD',
): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(url, { method, agent: globalAgent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) });
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

/**
 * An HTTP proxy to Azurite on 127.0.0.1 that answers a ranged Get Blob starting at the blob's size as
 * Azure does (416 InvalidRange), where Azurite gives 200 and nothing.
 */
async function startRangeProxy(
  target: number,
): Promise<{ url: string; refused: () => number; close: () => Promise<void> }> {
  let refused = 0;
  const server = createServer((incoming, outgoing) => {
    const upstream = httpRequest(
      {
        host: '127.0.0.1',
        port: target,
        method: incoming.method,
        path: incoming.url,
        headers: incoming.headers,
      },
      (response) => {
        const range = incoming.headers['x-ms-range'];
        if (
          incoming.method === 'GET' &&
          typeof range === 'string' &&
          /^bytes=[1-9]\d*-/.test(range) &&
          (response.statusCode ?? 0) < 300 &&
          response.headers['content-length'] === '0'
        ) {
          response.resume();
          refused++;
          outgoing.writeHead(416, { 'x-ms-error-code': 'InvalidRange', 'content-type': 'application/xml' });
          outgoing.end(
            '<?xml version="1.0" encoding="utf-8"?><Error><Code>InvalidRange</Code>' +
              '<Message>The range specified is invalid for the current size of the resource.</Message></Error>',
          );
          return;
        }
        outgoing.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(outgoing);
      },
    );
    upstream.on('error', (error) => outgoing.destroy(error));
    incoming.pipe(upstream);
  });
  const port = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    refused: () => refused,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const reader = stream.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) chunks.push(next.value);
  return concat(...chunks);
}
