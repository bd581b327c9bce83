/**
 * The mapping of distribution's `storage.azure` parameters to AzureDriverOptions (azureDriverFromParameters
 * is in azure.ts). How the account is reached is exactly one of:
 *
 * - `connectionstring` (this registry's own key; distribution parses but ignores it): an
 *   `AccountName=…;AccountKey=…` string, a SAS connection string, or Azurite's. Nothing else about the
 *   account may be given with it.
 * - `accountname` + `accountkey` (`credentials.type: shared_key`, the default when an account key is given).
 * - `accountname` + `credentials.type: client_secret` with `credentials.{tenantid, clientid, secret}`.
 * - `accountname` + `credentials.type: default_credentials` (DefaultAzureCredential: environment, workload
 *   or managed identity, Azure CLI…), optionally with `credentials.clientid` (a user-assigned managed
 *   identity) and `credentials.tenantid`.
 *
 * The service URL is `serviceurl`, else `https://<accountname>.blob.<realm>` (realm: core.windows.net).
 * @azure/identity is imported only for the last two.
 */
import { ConfigError } from '../config.js';
import { optionalString } from './parameters.js';
import type { AzureDriverOptions } from './azure.js';

/** Where these parameters are in the configuration, for errors that name a key. */
const SECTION = 'storage.azure';

/** A Microsoft Entra ID identity to authenticate with, made into a TokenCredential by azureOptionsFromParameters. */
export type AzureIdentity =
  | { type: 'client_secret'; tenantId: string; clientId: string; secret: string }
  | { type: 'default_credentials'; clientId?: string; tenantId?: string };

/** AzureDriverOptions as the parameters describe them: an identity rather than a credential object. */
export type AzureSettings = Omit<AzureDriverOptions, 'account'> & {
  account:
    | { connectionString: string }
    | { serviceURL: string; accountName: string; accountKey: string }
    | { serviceURL: string; accountName: string; identity: AzureIdentity };
};

const DEFAULT_REALM = 'core.windows.net';
const CREDENTIAL_TYPES = ['shared_key', 'client_secret', 'default_credentials'] as const;
type CredentialType = (typeof CREDENTIAL_TYPES)[number];

/** The `storage.azure` keys of distribution that this driver accepts and ignores. */
const IGNORED_PARAMETERS = new Set([
  'max_retries',
  'retry_delay',
  'copy_status_poll_max_retry',
  'copy_status_poll_delay',
  'skipverify',
]);
const USED_PARAMETERS = new Set([
  'accountname',
  'accountkey',
  'container',
  'credentials',
  'connectionstring',
  'realm',
  'serviceurl',
  'rootdirectory',
]);
const CREDENTIAL_PARAMETERS = new Set(['type', 'clientid', 'tenantid', 'secret']);

/**
 * The AzureSettings the parameters describe; every key that is missing, unknown, invalid or in conflict
 * with another is a ConfigError naming it. Needs no SDK.
 */
export function azureSettingsFromParameters(parameters: Record<string, unknown>): AzureSettings {
  for (const key of Object.keys(parameters)) {
    if (!USED_PARAMETERS.has(key) && !IGNORED_PARAMETERS.has(key)) {
      throw new ConfigError(`storage.azure.${key}: unknown parameter`);
    }
  }
  const container = optionalString(SECTION, parameters, 'container');
  if (container === undefined || container === '') throw new ConfigError('storage.azure.container: required');
  if (!/^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$/.test(container)) {
    throw new ConfigError(
      `storage.azure.container: invalid container name ${JSON.stringify(container)} (3 to 63 lowercase ` +
        'letters, digits and single hyphens, starting and ending with a letter or digit)',
    );
  }
  const rootDirectory = optionalString(SECTION, parameters, 'rootdirectory');
  if (rootDirectory !== undefined && /\p{Cc}/u.test(rootDirectory)) {
    throw new ConfigError('storage.azure.rootdirectory: control characters are not allowed');
  }
  return {
    container,
    account: account(parameters),
    ...(rootDirectory !== undefined && { rootDirectory }),
  };
}

/**
 * The AzureDriverOptions the parameters describe (see azureSettingsFromParameters), with the identity, if
 * one is configured, made into a credential of @azure/identity, which is imported only then.
 */
export async function azureOptionsFromParameters(
  parameters: Record<string, unknown>,
): Promise<AzureDriverOptions> {
  const settings = azureSettingsFromParameters(parameters);
  const { account } = settings;
  if (!('identity' in account)) return { ...settings, account };
  const { ClientSecretCredential, DefaultAzureCredential } = await import('@azure/identity');
  const { identity, serviceURL, accountName } = account;
  const credential =
    identity.type === 'client_secret'
      ? new ClientSecretCredential(identity.tenantId, identity.clientId, identity.secret)
      : new DefaultAzureCredential({
          ...(identity.clientId !== undefined && { managedIdentityClientId: identity.clientId }),
          ...(identity.tenantId !== undefined && { tenantId: identity.tenantId }),
        });
  return { ...settings, account: { serviceURL, accountName, credential } };
}

function account(parameters: Record<string, unknown>): AzureSettings['account'] {
  const connectionString = optionalString(SECTION, parameters, 'connectionstring') || undefined;
  const credentials = credentialParameters(parameters);
  if (connectionString !== undefined) {
    for (const key of ['accountname', 'accountkey', 'credentials', 'serviceurl', 'realm']) {
      if (parameters[key] !== undefined && parameters[key] !== null) {
        throw new ConfigError(
          `storage.azure.${key}: not allowed with storage.azure.connectionstring, which names the account ` +
            'and carries its credentials',
        );
      }
    }
    checkConnectionString(connectionString);
    return { connectionString };
  }

  const accountName = optionalString(SECTION, parameters, 'accountname');
  if (accountName === undefined || accountName === '') {
    throw new ConfigError('storage.azure.accountname: required (or storage.azure.connectionstring)');
  }
  if (!/^[a-z0-9]{3,24}$/.test(accountName)) {
    throw new ConfigError(
      `storage.azure.accountname: invalid account name ${JSON.stringify(accountName)} (3 to 24 lowercase letters and digits)`,
    );
  }
  const serviceURL = serviceURLOf(parameters, accountName);
  const accountKey = optionalString(SECTION, parameters, 'accountkey') || undefined;
  if (accountKey !== undefined && !/^[A-Za-z0-9+/]+={0,2}$/.test(accountKey)) {
    throw new ConfigError('storage.azure.accountkey: expected a base64 key');
  }

  const type: CredentialType | undefined =
    credentials.type ?? (accountKey === undefined ? undefined : 'shared_key');
  const refuse = (key: 'clientid' | 'tenantid' | 'secret', why: string): void => {
    if (credentials[key] !== undefined) throw new ConfigError(`storage.azure.credentials.${key}: ${why}`);
  };
  const required = (key: 'clientid' | 'tenantid' | 'secret'): string => {
    const value = credentials[key];
    if (value === undefined) {
      throw new ConfigError(`storage.azure.credentials.${key}: required with credentials.type client_secret`);
    }
    return value;
  };
  switch (type) {
    case undefined:
      throw new ConfigError(
        'storage.azure.accountkey: required (or storage.azure.credentials.type client_secret or ' +
          'default_credentials, or storage.azure.connectionstring)',
      );
    case 'shared_key':
      if (accountKey === undefined) {
        throw new ConfigError('storage.azure.accountkey: required with credentials.type shared_key');
      }
      for (const key of ['clientid', 'tenantid', 'secret'] as const) {
        refuse(key, 'not used with credentials.type shared_key');
      }
      return { serviceURL, accountName, accountKey };
    case 'client_secret':
    case 'default_credentials':
      if (accountKey !== undefined) {
        throw new ConfigError(`storage.azure.accountkey: not used with credentials.type ${type}`);
      }
      if (type === 'client_secret') {
        const identity = {
          type,
          tenantId: required('tenantid'),
          clientId: required('clientid'),
          secret: required('secret'),
        };
        return { serviceURL, accountName, identity };
      }
      refuse('secret', 'only used with credentials.type client_secret');
      return {
        serviceURL,
        accountName,
        identity: {
          type,
          ...(credentials.clientid !== undefined && { clientId: credentials.clientid }),
          ...(credentials.tenantid !== undefined && { tenantId: credentials.tenantid }),
        },
      };
  }
}

/** The `credentials` map's keys, checked. */
function credentialParameters(parameters: Record<string, unknown>): {
  type?: CredentialType;
  clientid?: string;
  tenantid?: string;
  secret?: string;
} {
  const map = parameters.credentials;
  if (map === undefined || map === null) return {};
  if (typeof map !== 'object' || Array.isArray(map)) {
    throw new ConfigError(`storage.azure.credentials: expected a map, got ${JSON.stringify(map)}`);
  }
  const credentials = map as Record<string, unknown>;
  for (const key of Object.keys(credentials)) {
    if (!CREDENTIAL_PARAMETERS.has(key)) {
      throw new ConfigError(`storage.azure.credentials.${key}: unknown parameter`);
    }
  }
  const value = (key: string): string | undefined =>
    optionalString(`${SECTION}.credentials`, credentials, key) || undefined;
  const type = value('type');
  if (type !== undefined && !(CREDENTIAL_TYPES as readonly string[]).includes(type)) {
    throw new ConfigError(
      `storage.azure.credentials.type: expected shared_key, client_secret or default_credentials, got ${JSON.stringify(type)}`,
    );
  }
  const result: ReturnType<typeof credentialParameters> = {};
  if (type !== undefined) result.type = type as CredentialType;
  for (const key of ['clientid', 'tenantid', 'secret'] as const) {
    const found = value(key);
    if (found !== undefined) result[key] = found;
  }
  return result;
}

/** `serviceurl` (an http or https URL, without a trailing slash), else https://<account>.blob.<realm>. */
function serviceURLOf(parameters: Record<string, unknown>, accountName: string): string {
  const serviceURL = optionalString(SECTION, parameters, 'serviceurl') || undefined;
  if (serviceURL === undefined) {
    const realm = optionalString(SECTION, parameters, 'realm') || DEFAULT_REALM;
    if (
      !/^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$/.test(realm)
    ) {
      throw new ConfigError(`storage.azure.realm: expected a DNS suffix such as ${DEFAULT_REALM}`);
    }
    return `https://${accountName}.blob.${realm.toLowerCase()}`;
  }
  let url: URL | undefined;
  try {
    url = new URL(serviceURL);
  } catch {
    url = undefined;
  }
  if (
    url === undefined ||
    (url.protocol !== 'http:' && url.protocol !== 'https:') ||
    url.search !== '' ||
    url.hash !== ''
  ) {
    throw new ConfigError(
      `storage.azure.serviceurl: expected an http or https URL without a query, got ${JSON.stringify(serviceURL)}`,
    );
  }
  return serviceURL.replace(/\/+$/, '');
}

/**
 * Refuses a connection string that cannot reach the blob service with credentials: it must name the
 * account (AccountName) or the endpoint (BlobEndpoint), and carry AccountKey or SharedAccessSignature; or
 * be Azurite's default, UseDevelopmentStorage=true. The SDK checks the rest when the driver is made.
 */
function checkConnectionString(connectionString: string): void {
  const fields = new Map<string, string>();
  for (const part of connectionString.split(';')) {
    const equals = part.indexOf('=');
    if (part.trim() === '') continue;
    if (equals <= 0) {
      throw new ConfigError('storage.azure.connectionstring: expected Key=Value pairs separated by ";"');
    }
    fields.set(part.slice(0, equals).trim().toLowerCase(), part.slice(equals + 1).trim());
  }
  if (fields.get('usedevelopmentstorage')?.toLowerCase() === 'true') return;
  if (!fields.has('accountname') && !fields.has('blobendpoint')) {
    throw new ConfigError('storage.azure.connectionstring: names no account (AccountName or BlobEndpoint)');
  }
  if (!fields.get('accountkey') && !fields.get('sharedaccesssignature')) {
    throw new ConfigError(
      'storage.azure.connectionstring: carries no credentials (AccountKey or SharedAccessSignature)',
    );
  }
  if (fields.get('accountkey') && !fields.get('accountname')) {
    throw new ConfigError('storage.azure.connectionstring: AccountKey needs AccountName');
  }
}
