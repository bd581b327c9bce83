/**
 * Retention policies and tag immutability rules as the ServerlessRegistry construct takes them, and as
 * the registry's `retention` and `immutability` configuration sections, which the functions get as JSON
 * in REGISTRY_RETENTION and REGISTRY_IMMUTABILITY (the registry parses REGISTRY_* values as YAML, of
 * which JSON is a part). Both are checked here as the registry checks them when it starts, so that a
 * mistake fails the synthesis rather than every run.
 *
 * Patterns are globs (functions/maintenance/policies.ts): in repository patterns `*` and `?` stay
 * within one path component and `**` crosses them (`ci/**`); tag patterns take any glob (`v*`, `pr-*`).
 */
import { Duration } from 'aws-cdk-lib';
import { parseAge } from '../functions/config.js';
import { globProblem } from '../functions/maintenance/policies.js';

/** A retention policy: what garbage collection removes from the repositories it applies to. */
export interface RetentionPolicyProps {
  /** The repositories it applies to (at least one pattern); a repository's policy is the first that matches it. */
  readonly repositories: string[];
  /** Tags no rule removes (patterns). @default none */
  readonly protect?: string[];
  /** At least one: a tag, or an untagged manifest, goes when any rule removes it. */
  readonly rules: RetentionRuleProps[];
}

export type RetentionRuleProps = TagRetentionRuleProps | UntaggedRetentionRuleProps;

/**
 * Among a repository's tags matching `tags`: those beyond the `keepLast` most recently tagged go, and
 * those tagged longer than `olderThan` ago go (one or both). Manifests left without a tag go with them.
 */
export interface TagRetentionRuleProps {
  /** The tags the rule is about (at least one pattern). */
  readonly tags: string[];
  /** How many of the most recently tagged matching tags stay (at least 1). @default no limit */
  readonly keepLast?: number;
  /** Matching tags tagged longer ago than this go. @default no age limit */
  readonly olderThan?: Duration;
}

/** Manifests no tag points at, pushed longer than `olderThan` ago, go. */
export interface UntaggedRetentionRuleProps {
  readonly untagged: true;
  readonly olderThan: Duration;
}

/**
 * In the repositories it names, a tag matching `tags` and not `except` cannot be moved to another
 * manifest once it exists (pushing the same manifest again is fine, and so is deleting it).
 */
export interface ImmutabilityRuleProps {
  /** At least one pattern. */
  readonly repositories: string[];
  /** @default ['*']: every tag */
  readonly tags?: string[];
  /** @default none */
  readonly except?: string[];
}

/** A retention policy as the registry's configuration writes it (`keeplast`, `olderthan: 14d`). */
export interface RetentionPolicySection {
  repositories: string[];
  protect?: string[];
  rules: (
    { tags: string[]; keeplast?: number; olderthan?: string } | { untagged: true; olderthan: string }
  )[];
}

/** An immutability rule as the registry's configuration writes it. */
export interface ImmutabilityRuleSection {
  repositories: string[];
  tags?: string[];
  except?: string[];
}

/** The `retention` section for REGISTRY_RETENTION, checked; fields left at their defaults are left out. */
export function retentionSection(
  policies: readonly RetentionPolicyProps[],
  key = 'retention',
): RetentionPolicySection[] {
  return policies.map((policy, i) => {
    const at = `${key}[${i}]`;
    const protect = policy.protect ?? [];
    checkPatterns(`${at}.repositories`, policy.repositories, true);
    checkPatterns(`${at}.protect`, protect, false);
    if (!Array.isArray(policy.rules) || policy.rules.length === 0) {
      throw new Error(`${at}.rules: expected at least one rule`);
    }
    return {
      repositories: [...policy.repositories],
      ...(protect.length > 0 && { protect: [...protect] }),
      rules: policy.rules.map((rule, j) => ruleSection(rule, `${at}.rules[${j}]`)),
    };
  });
}

function ruleSection(rule: RetentionRuleProps, at: string): RetentionPolicySection['rules'][number] {
  // Checked as given, whatever the types say (the props may come from JavaScript or JSON).
  const fields = rule as unknown as Record<string, unknown>;
  if (fields.untagged !== undefined && fields.untagged !== false) {
    const extra = Object.keys(fields).filter((name) => name !== 'untagged' && name !== 'olderThan');
    if (fields.untagged !== true || extra.length > 0) {
      throw new Error(
        `${at}: a rule is either {tags, keepLast and/or olderThan} or {untagged: true, olderThan}` +
          (extra.length > 0 ? ` (got ${extra.join(', ')} with untagged)` : ''),
      );
    }
    if (fields.olderThan === undefined) {
      throw new Error(`${at}.olderThan: is required with untagged: true (how old an untagged manifest goes)`);
    }
    return { untagged: true, olderthan: age(fields.olderThan, `${at}.olderThan`) };
  }
  const tagRule = rule as TagRetentionRuleProps;
  checkPatterns(`${at}.tags`, tagRule.tags, true);
  if (tagRule.keepLast === undefined && tagRule.olderThan === undefined) {
    throw new Error(`${at}: tags need keepLast, olderThan or both (which of them go)`);
  }
  if (tagRule.keepLast !== undefined && !(Number.isInteger(tagRule.keepLast) && tagRule.keepLast >= 1)) {
    throw new Error(`${at}.keepLast: expected a whole number, at least 1 (got ${String(tagRule.keepLast)})`);
  }
  return {
    tags: [...tagRule.tags],
    ...(tagRule.keepLast !== undefined && { keeplast: tagRule.keepLast }),
    ...(tagRule.olderThan !== undefined && { olderthan: age(tagRule.olderThan, `${at}.olderThan`) }),
  };
}

/** The `immutability` section for REGISTRY_IMMUTABILITY, checked; defaults left out. */
export function immutabilitySection(
  rules: readonly ImmutabilityRuleProps[],
  key = 'immutability',
): ImmutabilityRuleSection[] {
  return rules.map((rule, i) => {
    const at = `${key}[${i}]`;
    checkPatterns(`${at}.repositories`, rule.repositories, true);
    if (rule.tags !== undefined) checkPatterns(`${at}.tags`, rule.tags, true);
    const except = rule.except ?? [];
    checkPatterns(`${at}.except`, except, false);
    return {
      repositories: [...rule.repositories],
      ...(rule.tags !== undefined &&
        !(rule.tags.length === 1 && rule.tags[0] === '*') && { tags: [...rule.tags] }),
      ...(except.length > 0 && { except: [...except] }),
    };
  });
}

/**
 * Retention policies from a context value: the registry's `retention` section as JSON (a string, as
 * `-c retention='[...]'` gives it, or the list itself in cdk.json), with its keys (`keeplast`,
 * `olderthan` as `14d` or a Go duration such as `36h`).
 */
export function retentionFromJson(value: unknown, key: string): RetentionPolicyProps[] {
  return listOf(value, key).map((item, i) => {
    const at = `${key}[${i}]`;
    const policy = recordOf(item, at, ['repositories', 'protect', 'rules']);
    const rules = listOf(policy.rules, `${at}.rules`).map((entry, j) => {
      const ruleAt = `${at}.rules[${j}]`;
      const rule = recordOf(entry, ruleAt, ['tags', 'keeplast', 'olderthan', 'untagged']);
      const olderThan =
        rule.olderthan === undefined ? undefined : ageFrom(rule.olderthan, `${ruleAt}.olderthan`);
      if (rule.untagged !== undefined && rule.untagged !== false) {
        if (rule.untagged !== true) throw new Error(`${ruleAt}.untagged: expected true or false`);
        if (rule.tags !== undefined || rule.keeplast !== undefined) {
          throw new Error(
            `${ruleAt}: a rule is either {tags, keeplast and/or olderthan} or {untagged: true, olderthan}`,
          );
        }
        if (olderThan === undefined) throw new Error(`${ruleAt}.olderthan: is required with untagged: true`);
        return { untagged: true, olderThan } satisfies UntaggedRetentionRuleProps;
      }
      return {
        tags: strings(rule.tags, `${ruleAt}.tags`),
        ...(rule.keeplast !== undefined && { keepLast: rule.keeplast as number }),
        ...(olderThan !== undefined && { olderThan }),
      } satisfies TagRetentionRuleProps;
    });
    return {
      repositories: strings(policy.repositories, `${at}.repositories`),
      ...(policy.protect !== undefined && { protect: strings(policy.protect, `${at}.protect`) }),
      rules,
    };
  });
}

/** Immutability rules from a context value: the registry's `immutability` section as JSON. */
export function immutabilityFromJson(value: unknown, key: string): ImmutabilityRuleProps[] {
  return listOf(value, key).map((item, i) => {
    const at = `${key}[${i}]`;
    const rule = recordOf(item, at, ['repositories', 'tags', 'except']);
    return {
      repositories: strings(rule.repositories, `${at}.repositories`),
      ...(rule.tags !== undefined && { tags: strings(rule.tags, `${at}.tags`) }),
      ...(rule.except !== undefined && { except: strings(rule.except, `${at}.except`) }),
    };
  });
}

/** A duration as the configuration writes an age: whole days as `<n>d`, else seconds or milliseconds. */
function age(duration: unknown, at: string): string {
  if (!(duration instanceof Duration)) throw new Error(`${at}: expected a Duration`);
  if (duration.isUnresolved()) throw new Error(`${at}: must be known at synthesis`);
  const ms = duration.toMilliseconds();
  if (ms % 86_400_000 === 0 && ms > 0) return `${ms / 86_400_000}d`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function ageFrom(value: unknown, at: string): Duration {
  const ms = typeof value === 'string' ? parseAge(value) : undefined;
  if (ms === undefined || ms < 0) {
    throw new Error(`${at}: expected a duration such as 12h or 14d (days), got ${JSON.stringify(value)}`);
  }
  return Duration.millis(ms);
}

function checkPatterns(at: string, patterns: readonly string[] | undefined, nonEmpty: boolean): void {
  if (!Array.isArray(patterns)) throw new Error(`${at}: expected a list of patterns`);
  if (nonEmpty && patterns.length === 0) throw new Error(`${at}: expected at least one pattern`);
  for (const pattern of patterns) {
    const problem = typeof pattern === 'string' ? globProblem(pattern) : 'a pattern must be a string';
    if (problem !== undefined) throw new Error(`${at}: ${problem}`);
  }
}

function listOf(value: unknown, at: string): unknown[] {
  let parsed = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value) as unknown;
    } catch (error) {
      throw new Error(`${at}: expected JSON, ${(error as Error).message}`);
    }
  }
  if (!Array.isArray(parsed)) throw new Error(`${at}: expected a list`);
  return parsed;
}

function recordOf(value: unknown, at: string, keys: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${at}: expected an object`);
  }
  const unknown = Object.keys(value).filter((name) => !keys.includes(name));
  if (unknown.length > 0)
    throw new Error(`${at}.${unknown[0] ?? ''}: unknown key; expected ${keys.join(', ')}`);
  return value as Record<string, unknown>;
}

function strings(value: unknown, at: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new Error(`${at}: expected a list of strings`);
  }
  return value;
}
