/**
 * The code of the upload edge's CloudFront Functions as CloudFront gets it: the .js file beside this
 * module with its deploy-time values filled in, comments and whitespace removed (CloudFront's limit is
 * 10 KB of code). The CDK app (at synth) and the local edge (bin/local/cloudfront.ts) both use it, so
 * the code tested locally is the code deployed.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { transformSync } from 'esbuild';
import { PROJECT_ROOT } from '../../lib/project-root.js';

export type EdgeFunctionName = 'upload-request' | 'upload-response';

/** Deploy-time values; CDK tokens are fine (they are replaced as text and resolve in the template). */
export interface EdgeFunctionValues {
  /** Where blob PUTs go: the bucket's regional domain name (`<bucket>.s3.<region>.amazonaws.com`). */
  readonly bucketDomainName: string;
  /** The bucket's region, for the origin access control's SigV4 signature. */
  readonly bucketRegion: string;
  /** The id of the KeyValueStore holding the upload URL secrets (key: kid, value: secret). */
  readonly keyValueStoreId: string;
}

/** CloudFront's maximum function size. */
export const MAX_FUNCTION_BYTES = 10 * 1024;

/** The placeholders in the .js files, by value. */
export const PLACEHOLDERS: Readonly<Record<keyof EdgeFunctionValues, string>> = {
  bucketDomainName: '__BUCKET_DOMAIN_NAME__',
  bucketRegion: '__BUCKET_REGION__',
  keyValueStoreId: '__KEY_VALUE_STORE_ID__',
};

// An unresolved CDK token (`${Token[...]}`) and the most it is counted as when the size is checked: an
// S3 regional domain name, a region or a KeyValueStore id resolve to fewer characters.
const CDK_TOKEN = /\$\{Token\[[^\]]*\]\}/g;
const TOKEN_BYTES = 255;

/** The source file of a function. */
export function edgeFunctionPath(name: EdgeFunctionName): string {
  return join(PROJECT_ROOT, 'functions', 'edge', `${name}.js`);
}

/** The function's code, ready for CloudFront (FunctionCode.fromInline) or the local edge. */
export function edgeFunctionCode(name: EdgeFunctionName, values: EdgeFunctionValues): string {
  // Whitespace only: no syntax is lowered or rewritten, so the output uses what the source uses.
  const { code: minified } = transformSync(readFileSync(edgeFunctionPath(name), 'utf8'), {
    loader: 'js',
    target: 'esnext',
    minifyWhitespace: true,
    legalComments: 'none',
  });
  let code = minified.trim();
  for (const [key, placeholder] of Object.entries(PLACEHOLDERS) as [keyof EdgeFunctionValues, string][]) {
    const value = values[key];
    // The value lands inside a string literal, as text: nothing in it may end or escape that literal.
    if (value === '' || /['"`\\\n\r\u2028\u2029]/.test(value)) {
      throw new Error(`edge function ${name}: ${key} ${JSON.stringify(value)} cannot go into its code`);
    }
    code = code.split(placeholder).join(value);
  }
  const bytes = Buffer.byteLength(code.replace(CDK_TOKEN, 'x'.repeat(TOKEN_BYTES)));
  if (bytes > MAX_FUNCTION_BYTES) {
    throw new Error(
      `edge function ${name} is ${bytes} bytes; CloudFront takes at most ${MAX_FUNCTION_BYTES}`,
    );
  }
  return code;
}
