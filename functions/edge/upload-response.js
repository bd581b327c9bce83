/*
 * The upload edge's viewer-response function (CloudFront Functions, cloudfront-js-2.0), on the
 * behavior for upload URLs (/v2/<name>/blobs/uploads/<id>): S3 answers a blob PUT with 200, the
 * distribution spec wants 201 with the blob's Location and digest. The registry itself never answers
 * an upload PUT with 200, so a PUT answered 200 is one upload-request.js sent to S3.
 *
 * What it relies on, as AWS documents it:
 * - A viewer-response function may change the status code and add headers (Location is not read-only):
 *   https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/functions-event-structure.html
 * - It never runs when the origin answers 400 or more (S3's XAmzContentSHA256Mismatch reaches the
 *   client as S3 wrote it):
 *   https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/edge-function-restrictions-all.html
 *
 * Whether event.request is the viewer's request or the one upload-request.js rewrote is not documented,
 * so both are read: the repository from the upload path, else from x-amz-meta-registry-repository; the
 * digest from the digest parameter, else from x-amz-content-sha256.
 */
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const UPLOAD_PATH = new RegExp(`^/v2/(${COMPONENT}(?:/${COMPONENT})*)/blobs/uploads/[A-Za-z0-9-]{1,64}$`);
const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

// eslint-disable-next-line @typescript-eslint/no-unused-vars -- CloudFront calls handler
function handler(event) {
  const request = event.request;
  const response = event.response;
  if (request.method !== 'PUT' || response.statusCode !== 200) return response;
  const name = repository(request);
  const digest = blobDigest(request);
  if (!name || !digest) return response;
  response.statusCode = 201;
  response.statusDescription = 'Created';
  response.headers['location'] = { value: `/v2/${name}/blobs/${digest}` };
  response.headers['docker-content-digest'] = { value: digest };
  response.headers['docker-distribution-api-version'] = { value: 'registry/2.0' };
  return response;
}

function repository(request) {
  const upload = UPLOAD_PATH.exec(request.uri);
  if (upload) return upload[1];
  const stored = request.headers['x-amz-meta-registry-repository'];
  return stored && NAME.test(stored.value) ? stored.value : '';
}

function blobDigest(request) {
  const parameter = request.querystring.digest;
  if (parameter) {
    // As the client sent it: `sha256%3A...` from most HTTP libraries.
    const digest = parameter.value.replace(/%3a/gi, ':');
    if (SHA256_DIGEST.test(digest)) return digest;
  }
  const hash = request.headers['x-amz-content-sha256'];
  return hash && SHA256_HEX.test(hash.value) ? `sha256:${hash.value}` : '';
}
