/**
 * Retention policies and tag immutability rules (the `retention` and `immutability` configuration
 * sections), and how they match repositories and tags.
 *
 * Patterns are globs (picomatch): in repository patterns `*` and `?` stay within one path component
 * and `**` crosses them (`prod/**` is prod and everything below it); tag patterns take any glob
 * (`v*`, `v[0-9]*`, `{main,develop}`, `!(latest)`). Each pattern is compiled once: the configuration
 * compiles them all while it loads (through globProblem, so an invalid pattern is refused there), and
 * matching reuses what it compiled.
 */
import picomatch from 'picomatch';

/** `retention[]`: what retention removes from the repositories the policy applies to. */
export interface RetentionPolicy {
  /** `repositories`: the repositories it applies to (at least one pattern). */
  repositories: string[];
  /** `protect`: tags no rule removes. */
  protect: string[];
  /** `rules` (at least one): a tag or manifest goes when any rule removes it. */
  rules: RetentionRule[];
}

export type RetentionRule = TagRetentionRule | UntaggedRetentionRule;

/**
 * `{tags, keeplast}`, `{tags, olderthan}`, or all three: among the repository's tags matching `tags`,
 * those beyond the keepLast most recently tagged go, and those tagged more than olderThanMs ago go.
 * With both, the rule is the two rules `{tags, keeplast}` and `{tags, olderthan}` together.
 * At least one of keepLast and olderThanMs is set.
 */
export interface TagRetentionRule {
  kind: 'tags';
  /** `tags`: the tags the rule is about (at least one pattern). */
  tags: string[];
  /** `keeplast`: how many of the most recently tagged matching tags stay (at least 1). */
  keepLast: number | undefined;
  /** `olderthan`: matching tags tagged longer ago than this go. */
  olderThanMs: number | undefined;
}

/** `{untagged: true, olderthan}`: manifests no tag points at, pushed longer ago than olderThanMs, go. */
export interface UntaggedRetentionRule {
  kind: 'untagged';
  olderThanMs: number;
}

/**
 * `immutability[]`: in the repositories it names, a tag matching `tags` and not `except` cannot be
 * moved to another manifest once it exists (pushing the same manifest again is fine; deleting is too).
 */
export interface ImmutabilityRule {
  repositories: string[];
  /** Default `["*"]`: every tag. */
  tags: string[];
  /** Default `[]`. */
  except: string[];
}

/** The retention policy of repository: the first whose repositories match it; undefined when none does. */
export function policyFor(
  policies: readonly RetentionPolicy[],
  repository: string,
): RetentionPolicy | undefined {
  return policies.find((policy) => matchesAny(policy.repositories, repository));
}

/** Whether the policy's `protect` patterns keep tag from retention. */
export function isProtected(policy: RetentionPolicy, tag: string): boolean {
  return matchesAny(policy.protect, tag);
}

/** Whether a tag rule is about tag (it matches the rule's `tags`); never for an untagged rule. */
export function ruleMatchesTag(rule: RetentionRule, tag: string): boolean {
  return rule.kind === 'tags' && matchesAny(rule.tags, tag);
}

/** Whether tag in repository is immutable: some rule names the repository and the tag, and does not except it. */
export function isImmutable(rules: readonly ImmutabilityRule[], repository: string, tag: string): boolean {
  return rules.some(
    (rule) =>
      matchesAny(rule.repositories, repository) &&
      matchesAny(rule.tags, tag) &&
      !matchesAny(rule.except, tag),
  );
}

/** Whether value (a repository name or a tag) matches any of patterns. */
export function matchesAny(patterns: readonly string[], value: string): boolean {
  return patterns.some((pattern) => compileGlob(pattern)(value));
}

/** Why pattern is not a valid glob, or undefined when it is. */
export function globProblem(pattern: string): string | undefined {
  try {
    compileGlob(pattern);
    return undefined;
  } catch (error) {
    const message = (error as Error).message;
    // V8's "Invalid regular expression: /<the regex picomatch built>/: <reason>": the reason only.
    const reason = /^Invalid regular expression: .*: ([^:]+)$/s.exec(message)?.[1] ?? message;
    return `invalid pattern ${JSON.stringify(pattern)}: ${reason}`;
  }
}

/** Each pattern's matcher, compiled the first time it is seen (the configuration's, while it loads). */
const compiled = new Map<string, (value: string) => boolean>();

/**
 * `/` separates components (on every platform); a leading dot is an ordinary character (no
 * repository component or tag starts with one anyway); debug makes picomatch throw on a pattern it
 * cannot turn into a regular expression instead of quietly matching nothing.
 */
const OPTIONS: picomatch.PicomatchOptions = { dot: true, windows: false, debug: true };

function compileGlob(pattern: string): (value: string) => boolean {
  let matcher = compiled.get(pattern);
  if (matcher === undefined) {
    if (pattern === '') throw new Error('a pattern cannot be empty');
    matcher = picomatch(pattern, OPTIONS);
    compiled.set(pattern, matcher);
  }
  return matcher;
}
