// What the infrastructure tests share: apps with the project's feature flags, and template look-ups.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type AppProps, CfnElement, Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { expect } from 'vitest';
import { PROJECT_ROOT } from '../../lib/project-root.js';

/** The feature flags `cdk synth` runs with, so that the tests see the same template. */
export const CDK_CONTEXT = (
  JSON.parse(readFileSync(join(PROJECT_ROOT, 'cdk.json'), 'utf8')) as { context: object }
).context;
/** Skips the esbuild bundling in apps whose function code the tests do not look at. */
export const NO_BUNDLING = { 'aws:cdk:bundling-stacks': [] };
/** Synthesis bundles the function and runs the validation plugins: seconds, more on a busy machine. */
export const SYNTH_TIMEOUT = 120_000;

export type Json = Record<string, unknown>;

const outdirs: string[] = [];

/** Removes the output directories of the apps made so far: afterAll(cleanUpApps) in each test file. */
export function cleanUpApps(): void {
  for (const dir of outdirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** An app with the project's feature flags, synthesizing into a temporary directory. */
export function app(props: AppProps = {}): App {
  const outdir = mkdtempSync(join(tmpdir(), 'registry-cdk-'));
  outdirs.push(outdir);
  return new App({ ...props, outdir, context: { ...CDK_CONTEXT, ...props.context } });
}

/** The logical id a construct's CloudFormation resource has in its stack. */
export function logicalId(construct: IConstruct): string {
  const element = construct.node.defaultChild ?? construct;
  if (!CfnElement.isCfnElement(element)) throw new Error(`${construct.node.path} is not in the template`);
  const stack = Stack.of(construct);
  return stack.resolve(stack.getLogicalId(element)) as string;
}

export function onlyResource(template: Template, type: string): Json {
  const resources: Json[] = Object.values(template.findResources(type));
  expect(resources).toHaveLength(1);
  return resources[0] ?? {};
}

export function outputValue(template: Template, construct: IConstruct, id: string): unknown {
  const key = logicalId(construct.node.findChild(id));
  const outputs: Record<string, Json | undefined> = template.findOutputs(key);
  return outputs[key]?.Value;
}

/** [action, resources] for every action the inline policies allow (of the role with roleLogicalId, if given). */
export function allowedActions(template: Template, roleLogicalId?: string): [string, unknown[]][] {
  const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter(
    (policy) =>
      roleLogicalId === undefined ||
      JSON.stringify((policy as { Properties: { Roles: unknown } }).Properties.Roles) ===
        JSON.stringify([{ Ref: roleLogicalId }]),
  );
  return policies.flatMap((policy) => {
    const statements = (policy as { Properties: { PolicyDocument: { Statement: Json[] } } }).Properties
      .PolicyDocument.Statement;
    return statements.flatMap((statement) => {
      expect(statement.Effect).toBe('Allow');
      const actions = [statement.Action].flat() as string[];
      const resources = [statement.Resource].flat();
      return actions.map((action): [string, unknown[]] => [action, resources]);
    });
  });
}
