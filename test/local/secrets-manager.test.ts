// The local Secrets Manager (bin/local/secrets-manager.ts) driven by the real SDK client, as the registry
// reaches it: through AWS_ENDPOINT_URL_SECRETS_MANAGER, with SigV4-signed requests it verifies.
import { randomBytes } from 'node:crypto';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalSecretsManager, startSecretsManager } from '../../bin/local/secrets-manager.js';
import { readSecret } from '../../functions/secrets.js';

const credentials = { accessKeyId: 'AKLOCALTEST', secretAccessKey: randomBytes(20).toString('hex') };

describe('the local Secrets Manager', () => {
  let service: LocalSecretsManager;
  const clients: SecretsManagerClient[] = [];
  const client = (overrides: { credentials?: typeof credentials; region?: string } = {}) => {
    const made = new SecretsManagerClient({
      endpoint: service.endpoint,
      region: overrides.region ?? 'eu-west-1',
      credentials: overrides.credentials ?? credentials,
      maxAttempts: 1,
    });
    clients.push(made);
    return made;
  };

  /** The AWS error a command failed with: its name (`__type`) and HTTP status. */
  async function failure(promise: Promise<unknown>): Promise<{ name: string; status: number | undefined }> {
    const error: unknown = await promise.then(
      () => undefined,
      (reason: unknown) => reason,
    );
    if (!(error instanceof SecretsManagerServiceException))
      throw new Error(`expected an AWS error, got ${String(error)}`);
    return { name: error.name, status: error.$metadata.httpStatusCode };
  }

  beforeAll(async () => {
    service = await startSecretsManager({ credentials, region: 'eu-west-1', accountId: '123456789012' });
  });

  afterAll(async () => {
    for (const made of clients) made.destroy();
    await service.stop();
  });

  it('creates a secret with an ARN like AWS and serves its value to a correctly signed request', async () => {
    const created = await client().send(
      new CreateSecretCommand({ Name: 'registry/htpasswd', SecretString: 'alice:$2y$05$x' }),
    );
    expect(created.ARN).toMatch(
      /^arn:aws:secretsmanager:eu-west-1:123456789012:secret:registry\/htpasswd-[A-Za-z0-9]{6}$/,
    );
    expect(created.Name).toBe('registry/htpasswd');

    const byArn = await client().send(new GetSecretValueCommand({ SecretId: created.ARN }));
    expect(byArn).toMatchObject({
      ARN: created.ARN,
      Name: 'registry/htpasswd',
      SecretString: 'alice:$2y$05$x',
      VersionStages: ['AWSCURRENT'],
      VersionId: created.VersionId,
    });
    expect(byArn.CreatedDate).toBeInstanceOf(Date);
    const byName = await client().send(new GetSecretValueCommand({ SecretId: 'registry/htpasswd' }));
    expect(byName.SecretString).toBe('alice:$2y$05$x');
  });

  it('makes a put value current and keeps the one before as AWSPREVIOUS', async () => {
    const { ARN } = await client().send(new CreateSecretCommand({ Name: 'rotated', SecretString: 'first' }));
    const put = await client().send(new PutSecretValueCommand({ SecretId: ARN, SecretString: 'second' }));
    expect(put.VersionStages).toEqual(['AWSCURRENT']);
    expect((await client().send(new GetSecretValueCommand({ SecretId: ARN }))).SecretString).toBe('second');
    const previous = await client().send(
      new GetSecretValueCommand({ SecretId: ARN, VersionStage: 'AWSPREVIOUS' }),
    );
    expect(previous.SecretString).toBe('first');
    const described = await client().send(new DescribeSecretCommand({ SecretId: 'rotated' }));
    expect(Object.values(described.VersionIdsToStages ?? {}).sort()).toEqual([
      ['AWSCURRENT'],
      ['AWSPREVIOUS'],
    ]);
  });

  it('refuses a request signed with the wrong secret key: 400 InvalidSignatureException, nothing stored', async () => {
    const wrong = client({ credentials: { ...credentials, secretAccessKey: 'not-the-secret-key' } });
    expect(await failure(wrong.send(new GetSecretValueCommand({ SecretId: 'registry/htpasswd' })))).toEqual({
      name: 'InvalidSignatureException',
      status: 400,
    });
    expect(await failure(wrong.send(new CreateSecretCommand({ Name: 'forged', SecretString: 'x' })))).toEqual(
      {
        name: 'InvalidSignatureException',
        status: 400,
      },
    );
    expect(await failure(client().send(new GetSecretValueCommand({ SecretId: 'forged' })))).toEqual({
      name: 'ResourceNotFoundException',
      status: 400,
    });
  });

  it('refuses an unknown access key, and a signature for another region', async () => {
    const stranger = client({
      credentials: { accessKeyId: 'AKSTRANGER', secretAccessKey: credentials.secretAccessKey },
    });
    expect(
      await failure(stranger.send(new GetSecretValueCommand({ SecretId: 'registry/htpasswd' }))),
    ).toEqual({
      name: 'UnrecognizedClientException',
      status: 400,
    });
    const elsewhere = client({ region: 'us-east-1' });
    expect(
      await failure(elsewhere.send(new GetSecretValueCommand({ SecretId: 'registry/htpasswd' }))),
    ).toEqual({
      name: 'InvalidSignatureException',
      status: 400,
    });
  });

  it('refuses unsigned requests and a body changed after signing', async () => {
    const unsigned = await fetch(service.endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': 'secretsmanager.GetSecretValue',
      },
      body: JSON.stringify({ SecretId: 'registry/htpasswd' }),
    });
    expect(unsigned.status).toBe(400);
    expect(await unsigned.json()).toMatchObject({ __type: 'MissingAuthenticationTokenException' });

    // A correctly signed request, replayed with another body.
    const tampering = client();
    tampering.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { body: string; headers: Record<string, string> };
        request.body = JSON.stringify({ SecretId: 'rotated' });
        request.headers['content-length'] = String(Buffer.byteLength(request.body));
        return next(args);
      },
      { step: 'finalizeRequest', priority: 'low', name: 'tamperAfterSigning' },
    );
    expect(
      await failure(tampering.send(new GetSecretValueCommand({ SecretId: 'registry/htpasswd' }))),
    ).toEqual({
      name: 'InvalidSignatureException',
      status: 400,
    });
  });

  it('answers ResourceNotFoundException for a secret it does not have', async () => {
    const error: unknown = await client()
      .send(
        new GetSecretValueCommand({
          SecretId: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:nope-AbCdEf',
        }),
      )
      .catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(ResourceNotFoundException);
    expect((error as ResourceNotFoundException).$metadata.httpStatusCode).toBe(400);
    expect(
      await failure(client().send(new PutSecretValueCommand({ SecretId: 'nope', SecretString: 'x' }))),
    ).toEqual({
      name: 'ResourceNotFoundException',
      status: 400,
    });
  });

  it("is what the registry's readSecret reaches through AWS_ENDPOINT_URL_SECRETS_MANAGER", async () => {
    const { ARN } = await client().send(
      new CreateSecretCommand({ Name: 'through-env', SecretString: 'the value' }),
    );
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_SECRETS_MANAGER: service.endpoint,
      AWS_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    });
    delete process.env.AWS_PROFILE;
    delete process.env.AWS_SESSION_TOKEN;
    try {
      const before = service.requestCount;
      expect(await readSecret('auth.token.htpasswd', ARN ?? '')).toBe('the value');
      expect(service.requestCount).toBe(before + 1);
      await expect(
        readSecret(
          'auth.token.signingkey',
          'arn:aws:secretsmanager:eu-west-1:123456789012:secret:missing-AbCdEf',
        ),
      ).rejects.toThrow(/auth\.token\.signingkey: cannot read secret .*ResourceNotFoundException/);
    } finally {
      for (const key of Object.keys(process.env))
        if (!(key in saved)) Reflect.deleteProperty(process.env, key);
      Object.assign(process.env, saved);
    }
  });
});
