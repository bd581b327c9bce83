import { describe, expect, it } from 'vitest';
import {
  globProblem,
  type ImmutabilityRule,
  isImmutable,
  isProtected,
  matchesAny,
  policyFor,
  type RetentionPolicy,
  ruleMatchesTag,
  type TagRetentionRule,
} from '../../functions/maintenance/policies.js';

const policy = (repositories: string[], protect: string[] = []): RetentionPolicy => ({
  repositories,
  protect,
  rules: [{ kind: 'untagged', olderThanMs: 0 }],
});

describe('repository patterns', () => {
  it.each([
    // * and ? stay within one path component.
    ['*', 'app', true],
    ['*', 'team/app', false],
    ['ci/*', 'ci/app', true],
    ['ci/*', 'ci/team/app', false],
    ['ci/*', 'ci', false],
    ['*/app', 'team/app', true],
    ['*/app', 'org/team/app', false],
    ['ci/app-?', 'ci/app-1', true],
    ['ci/app-?', 'ci/app-10', false],
    ['ci?app', 'ci/app', false],
    // ** crosses them, and matches the directory it is under too.
    ['**', 'app', true],
    ['**', 'org/team/app', true],
    ['ci/**', 'ci/app', true],
    ['ci/**', 'ci/team/app', true],
    ['ci/**', 'ci', true],
    ['ci/**', 'cid/app', false],
    ['**/app', 'app', true],
    ['**/app', 'org/team/app', true],
    ['**/app', 'org/team/application', false],
    ['org/**/app', 'org/app', true],
    ['org/**/app', 'org/a/b/app', true],
    // Literal names, character classes and alternatives.
    ['prod/app', 'prod/app', true],
    ['prod/app', 'prod/app2', false],
    ['prod/app', 'staging/prod/app', false],
    ['team-[ab]/*', 'team-b/x', true],
    ['team-[ab]/*', 'team-c/x', false],
    ['{prod,staging}/**', 'staging/x/y', true],
    ['{prod,staging}/**', 'dev/x', false],
    ['my.app/*', 'my.app/x', true],
    ['my.app/*', 'myxapp/x', false],
  ])('%s against %s: %s', (pattern, repository, expected) => {
    expect(matchesAny([pattern], repository)).toBe(expected);
  });

  it('matches when any of several patterns does, and never for none', () => {
    expect(matchesAny(['a/*', 'b/**'], 'b/c/d')).toBe(true);
    expect(matchesAny(['a/*', 'b/**'], 'c/d')).toBe(false);
    expect(matchesAny([], 'a')).toBe(false);
  });
});

describe('tag patterns', () => {
  it.each([
    ['*', 'latest', true],
    ['*', 'v1.2.3', true],
    ['v*', 'v1.2.3', true],
    ['v*', 'latest', false],
    ['main-*', 'main-abc123', true],
    ['main-*', 'main', false],
    ['pr-?', 'pr-7', true],
    ['pr-?', 'pr-17', false],
    ['v[0-9]*', 'v2', true],
    ['v[0-9]*', 'vnext', false],
    ['{main,develop}-*', 'develop-1', true],
    ['!(latest)', 'v1', true],
    ['!(latest)', 'latest', false],
    ['sha256-*.sig', 'sha256-abc.sig', true],
    ['V*', 'v1', false],
  ])('%s against %s: %s', (pattern, tag, expected) => {
    expect(matchesAny([pattern], tag)).toBe(expected);
  });
});

describe('globProblem', () => {
  it('accepts valid patterns', () => {
    for (const pattern of ['*', '**', 'ci/**', 'v[0-9]*', '{a,b}', '!(latest)', 'a?c']) {
      expect(globProblem(pattern)).toBeUndefined();
    }
  });

  it('names what is wrong with an invalid one', () => {
    expect(globProblem('')).toBe('invalid pattern "": a pattern cannot be empty');
    expect(globProblem('v[z-a]')).toBe('invalid pattern "v[z-a]": Range out of order in character class');
    expect(globProblem('{a')).toBe('invalid pattern "{a": Unterminated group');
  });
});

describe('policyFor', () => {
  const policies = [policy(['ci/release/*']), policy(['ci/**', 'builds/*']), policy(['**'])];

  it('answers the first policy whose repositories match', () => {
    expect(policyFor(policies, 'ci/release/app')).toBe(policies[0]);
    expect(policyFor(policies, 'ci/release/app/arm64')).toBe(policies[1]);
    expect(policyFor(policies, 'ci/app')).toBe(policies[1]);
    expect(policyFor(policies, 'builds/app')).toBe(policies[1]);
    expect(policyFor(policies, 'builds/team/app')).toBe(policies[2]);
    expect(policyFor(policies, 'app')).toBe(policies[2]);
  });

  it('answers undefined when no policy matches, or there are none', () => {
    expect(policyFor(policies.slice(0, 2), 'prod/app')).toBeUndefined();
    expect(policyFor([], 'app')).toBeUndefined();
  });

  it('does not fall through to a later policy when the first matching one would keep a tag', () => {
    const [first, second] = [policy(['ci/**'], ['latest']), policy(['**'], [])];
    const found = policyFor([first, second], 'ci/app');
    expect(found).toBe(first);
    expect(found && isProtected(found, 'latest')).toBe(true);
  });
});

describe('isProtected and ruleMatchesTag', () => {
  it('protects the tags matching protect, and nothing without it', () => {
    const protecting = policy(['**'], ['latest', 'v*', 'release-[0-9]*']);
    expect(isProtected(protecting, 'latest')).toBe(true);
    expect(isProtected(protecting, 'v1.0')).toBe(true);
    expect(isProtected(protecting, 'release-3')).toBe(true);
    expect(isProtected(protecting, 'release-x')).toBe(false);
    expect(isProtected(protecting, 'main-1')).toBe(false);
    expect(isProtected(policy(['**']), 'latest')).toBe(false);
  });

  it('matches a tag rule against its tags; an untagged rule against none', () => {
    const rule: TagRetentionRule = {
      kind: 'tags',
      tags: ['main-*', 'pr-*'],
      keepLast: 3,
      olderThanMs: undefined,
    };
    expect(ruleMatchesTag(rule, 'main-1')).toBe(true);
    expect(ruleMatchesTag(rule, 'pr-12')).toBe(true);
    expect(ruleMatchesTag(rule, 'latest')).toBe(false);
    expect(ruleMatchesTag({ kind: 'untagged', olderThanMs: 0 }, 'main-1')).toBe(false);
  });
});

describe('isImmutable', () => {
  const rules: ImmutabilityRule[] = [
    { repositories: ['prod/**'], tags: ['*'], except: ['latest', 'dev-*'] },
    { repositories: ['releases/*'], tags: ['v*'], except: [] },
  ];

  it('holds for a tag the rule names in a repository it names', () => {
    expect(isImmutable(rules, 'prod/app', 'v1')).toBe(true);
    expect(isImmutable(rules, 'prod/team/app', 'stable')).toBe(true);
    expect(isImmutable(rules, 'prod', 'stable')).toBe(true);
    expect(isImmutable(rules, 'releases/app', 'v2.0.0')).toBe(true);
  });

  it('does not hold for an excepted tag, a tag the rule does not name, or another repository', () => {
    expect(isImmutable(rules, 'prod/app', 'latest')).toBe(false);
    expect(isImmutable(rules, 'prod/app', 'dev-42')).toBe(false);
    expect(isImmutable(rules, 'releases/app', 'latest')).toBe(false);
    expect(isImmutable(rules, 'releases/team/app', 'v1')).toBe(false);
    expect(isImmutable(rules, 'staging/app', 'v1')).toBe(false);
    expect(isImmutable(rules, 'production/app', 'v1')).toBe(false);
    expect(isImmutable([], 'prod/app', 'v1')).toBe(false);
  });

  it('holds when any rule makes the tag immutable, whatever another excepts', () => {
    const both: ImmutabilityRule[] = [
      { repositories: ['**'], tags: ['*'], except: ['v*'] },
      { repositories: ['prod/*'], tags: ['v*'], except: [] },
    ];
    expect(isImmutable(both, 'prod/app', 'v1')).toBe(true);
    expect(isImmutable(both, 'dev/app', 'v1')).toBe(false);
    expect(isImmutable(both, 'dev/app', 'stable')).toBe(true);
  });
});
