/**
 * The CDK app (cdk.json "app"): one RegistryStack, "ServerlessRegistry", in the account and region of
 * the CLI's credentials, or environment-agnostic without them (synth needs no account).
 */
import { App } from 'aws-cdk-lib';
import { RegistryStack } from '../lib/registry-stack.js';

const app = new App();
new RegistryStack(app, 'ServerlessRegistry', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
