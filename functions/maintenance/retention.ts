/**
 * A repository's retention policy applied to its tags: which tags go now. Garbage collection
 * (gc.ts) removes them, then the manifests no remaining tag reaches.
 */
import type { TagRecord } from '../metadata/store.js';
import { isProtected, policyFor, type RetentionPolicy, ruleMatchesTag } from './policies.js';

export interface Retention {
  /** Tags the policy removes at time now (ms), protected tags never among them. */
  expiredTags(tags: readonly TagRecord[], now: number): TagRecord[];
  isProtected(tag: string): boolean;
  /** Untagged manifests pushed longer ago than this go; undefined: the policy keeps them. */
  untaggedOlderThanMs: number | undefined;
}

/** The retention of repository under the first policy naming it; undefined when none does. */
export function retentionFor(
  policies: readonly RetentionPolicy[],
  repository: string,
): Retention | undefined {
  const policy = policyFor(policies, repository);
  if (policy === undefined) return undefined;
  const untagged = policy.rules.flatMap((rule) => (rule.kind === 'untagged' ? [rule.olderThanMs] : []));
  return {
    isProtected: (tag) => isProtected(policy, tag),
    untaggedOlderThanMs: untagged.length === 0 ? undefined : Math.min(...untagged),
    expiredTags(tags, now) {
      const expired = new Set<TagRecord>();
      const candidates = tags.filter((tag) => !isProtected(policy, tag.tag));
      for (const rule of policy.rules) {
        if (rule.kind !== 'tags') continue;
        const matching = candidates.filter((tag) => ruleMatchesTag(rule, tag.tag));
        if (rule.keepLast !== undefined) {
          // Most recently tagged first; a tag with no recorded time counts as the oldest.
          const newestFirst = [...matching].sort(
            (a, b) => taggedAt(b) - taggedAt(a) || (a.tag < b.tag ? 1 : a.tag > b.tag ? -1 : 0),
          );
          for (const tag of newestFirst.slice(rule.keepLast)) expired.add(tag);
        }
        if (rule.olderThanMs !== undefined) {
          const before = now - rule.olderThanMs;
          // A tag with no recorded time is never expired by age: its age is unknown.
          for (const tag of matching)
            if (tag.taggedAt !== undefined && taggedAt(tag) < before) expired.add(tag);
        }
      }
      return [...expired];
    },
  };
}

function taggedAt(tag: TagRecord): number {
  return tag.taggedAt === undefined ? 0 : Date.parse(tag.taggedAt);
}
