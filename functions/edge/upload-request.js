/*
 * The upload edge's viewer-request function (CloudFront Functions, cloudfront-js-2.0), on every
 * behavior of the distribution in front of the registry's HTTP API. It sends a blob's single-PUT
 * upload, when the upload URL's signature holds, straight to S3 at the blob's final key; everything
 * else goes on to the API. The URL format is functions/registry/upload-urls.ts's.
 *
 * What it relies on, as AWS documents it:
 * - Runtime 2.0 language (const/let, arrow functions, template literals, async/await in async
 *   function declarations only; no classes, generators, for-of, destructuring or spread listed):
 *   https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/functions-javascript-runtime-20.html
 * - Origin selection from a viewer-request function, with OAC signing for an S3 origin:
 *   https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/helper-functions-origin-modification.html
 *   https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_OriginAccessControlConfig.html
 * - cf.kvs(id).get(key, {format: 'string'}) rejects for a missing key:
 *   https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/functions-custom-methods.html
 * - crypto.createHmac('sha256', key) with digest('hex'); no timingSafeEqual, hence the compare below:
 *   https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/functions-javascript-runtime-features.html
 * - Event shape (lowercase header names, querystring values as received, percent-encoding kept) and
 *   generated responses: https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/functions-event-structure.html
 * - Host and Content-Length are read-only here; x-amz-* and x-forwarded-host are not on the
 *   disallowed lists: https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/edge-function-restrictions-all.html
 *
 * The __PLACEHOLDERS__ are filled in at deploy time by functions/edge/code.ts.
 */
import cf from 'cloudfront';
import crypto from 'crypto';

const BUCKET_DOMAIN = '__BUCKET_DOMAIN_NAME__';
const BUCKET_REGION = '__BUCKET_REGION__';
const KVS_ID = '__KEY_VALUE_STORE_ID__';

// S3's limit for one PUT, and the most raw body a 6 MB Lambda event holds once base64-encoded.
const MAX_S3_PUT = 5368709120;
const MAX_API_BODY = 4718592;

// /v2/<name>/blobs/uploads/<id>, with the distribution spec's repository name grammar.
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const UPLOAD_PATH = new RegExp(`^/v2/(${COMPONENT}(?:/${COMPONENT})*)/blobs/uploads/([A-Za-z0-9-]{1,64})$`);
const UPLOAD_PARAMETER = /^([0-9a-f]{16})\.(\d{1,12})\.([0-9a-f]{64})$/;
const SHA256_DIGEST = /^sha256:([0-9a-f]{64})$/;

// eslint-disable-next-line @typescript-eslint/no-unused-vars -- CloudFront calls handler
async function handler(event) {
  const request = event.request;
  const headers = request.headers;
  // The origin request policy (AllViewerExceptHostHeader) drops Host; the registry builds URLs from this.
  if (headers.host) headers['x-forwarded-host'] = { value: headers.host.value };
  const length = headers['content-length'] ? Number(headers['content-length'].value) : 0;

  const upload = request.method === 'PUT' ? UPLOAD_PATH.exec(request.uri) : null;
  const query = request.querystring;
  if (upload && query.digest && query._upload) {
    const name = upload[1];
    const id = upload[2];
    const denied = await refusal(name, id, query._upload.value);
    if (denied) return registryError(403, 'Forbidden', 'DENIED', denied);
    const digest = SHA256_DIGEST.exec(decodedDigest(query.digest.value));
    if (digest && length > 0 && !headers['content-range']) {
      if (length > MAX_S3_PUT) {
        return registryError(
          413,
          'Payload Too Large',
          'SIZE_INVALID',
          `a single PUT takes at most ${MAX_S3_PUT} bytes (S3's limit for one upload); ` +
            'upload larger blobs in chunks (PATCH) through the upload service',
        );
      }
      return toS3(request, name, id, digest[1]);
    }
  }
  if (length > MAX_API_BODY) {
    return registryError(
      413,
      'Payload Too Large',
      'SIZE_INVALID',
      `a request body through the API takes at most ${MAX_API_BODY} bytes; the upload edge takes ` +
        'single-PUT uploads of sha256 blobs (containerd), the upload service takes chunked (PATCH) ' +
        'uploads (docker, podman, skopeo)',
    );
  }
  return request;
}

/** Why the upload URL's _upload value does not grant this upload, or '' when it does. */
async function refusal(name, id, value) {
  const parts = UPLOAD_PARAMETER.exec(value);
  if (!parts) return 'not an upload URL signed by this registry';
  let secret;
  try {
    secret = await cf.kvs(KVS_ID).get(parts[1], { format: 'string' });
    // eslint-disable-next-line @typescript-eslint/no-unused-vars -- a missing key rejects
  } catch (e) {
    return 'not an upload URL signed by this registry';
  }
  const expires = Number(parts[2]);
  const expected = crypto.createHmac('sha256', secret).update(`${name}\n${id}\n${expires}`).digest('hex');
  if (!sameHex(expected, parts[3])) return 'not an upload URL signed by this registry';
  if (expires * 1000 < Date.now()) return 'the upload URL has expired: start the upload again';
  return '';
}

/** Compares two hex strings of equal length in time independent of where they differ. */
function sameHex(a, b) {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.codePointAt(i) ^ b.codePointAt(i);
  return difference === 0;
}

/**
 * Query values reach the function as the client sent them: `sha256%3A...` from most HTTP libraries. In
 * a sha256 digest only the colon can be encoded.
 */
function decodedDigest(value) {
  return value.replace(/%3a/gi, ':');
}

/**
 * Sends the PUT to S3 at the blob's key. With x-amz-content-sha256 set to the digest, the origin access
 * control's SigV4 signature covers it and S3 refuses a body whose SHA-256 differs. The client's own
 * x-amz-* headers go (a storage class or ACL of its choosing would reach S3 with all viewer headers).
 */
function toS3(request, name, id, hex) {
  const headers = {};
  Object.keys(request.headers).forEach((header) => {
    if (header !== 'authorization' && !header.startsWith('x-amz-')) headers[header] = request.headers[header];
  });
  headers['x-amz-content-sha256'] = { value: hex };
  headers['x-amz-meta-registry-repository'] = { value: name };
  headers['x-amz-meta-registry-upload'] = { value: id };
  request.headers = headers;
  request.uri = `/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
  request.querystring = {};
  cf.updateRequestOrigin({
    domainName: BUCKET_DOMAIN,
    originAccessControlConfig: {
      enabled: true,
      region: BUCKET_REGION,
      signingBehavior: 'always',
      signingProtocol: 'sigv4',
      originType: 's3',
    },
  });
  return request;
}

/** The registry's JSON error, as functions/registry/errors.ts writes it. */
function registryError(status, description, errorCode, text) {
  return {
    statusCode: status,
    statusDescription: description,
    headers: {
      'content-type': { value: 'application/json; charset=utf-8' },
      'docker-distribution-api-version': { value: 'registry/2.0' },
    },
    body: {
      encoding: 'text',
      data: JSON.stringify({ errors: [{ code: errorCode, message: text, detail: null }] }),
    },
  };
}
