/** Scopes as the token spec writes them, and the access policy that decides which of them a user holds. */
import { describe, expect, it } from 'vitest';
import {
  CATALOG_SCOPE,
  formatScope,
  parseScope,
  repositoryScope,
  ScopeGrant,
} from '../../functions/auth/access.js';
import { AccessPolicy, type AccessRule } from '../../functions/auth/policy.js';

describe('parseScope', () => {
  it('reads type, name and actions, dropping duplicate and empty actions', () => {
    expect(parseScope('repository:library/alpine:pull,push')).toEqual({
      type: 'repository',
      name: 'library/alpine',
      actions: ['pull', 'push'],
    });
    expect(parseScope('repository:a:pull,,pull,push').actions).toEqual(['pull', 'push']);
    expect(parseScope('registry:catalog:*')).toEqual(CATALOG_SCOPE);
  });

  it('keeps the colons of a host:port inside the name', () => {
    expect(parseScope('repository:127.0.0.1:5000/team/app:pull')).toEqual({
      type: 'repository',
      name: '127.0.0.1:5000/team/app',
      actions: ['pull'],
    });
  });

  it('drops a resource class from the type', () => {
    expect(parseScope('repository(plugin):vieux/sshfs:pull')).toEqual(repositoryScope('vieux/sshfs', 'pull'));
  });

  it.each([
    ['repository', 'no colon'],
    ['repository:alpine', 'no actions'],
    ['repository:alpine:', 'empty actions'],
    [':alpine:pull', 'empty type'],
    ['repository::pull', 'empty name'],
    ['repository:alpine:,', 'only commas for actions'],
    [`repository:${'a'.repeat(1100)}:pull`, 'over 1024 characters'],
  ])('refuses %j (%s) as malformed', (text) => {
    expect(() => parseScope(text)).toThrow(/^malformed scope .*: expected type:name:actions$/);
  });

  it('formats a scope back to the text it was parsed from', () => {
    for (const text of ['repository:127.0.0.1:5000/a/b:pull,push', 'registry:catalog:*']) {
      expect(formatScope(parseScope(text))).toBe(text);
    }
  });
});

describe('ScopeGrant', () => {
  const grant = new ScopeGrant('bob', [
    repositoryScope('team/app', 'pull'),
    repositoryScope('bob/tools', '*'),
    CATALOG_SCOPE,
  ]);

  it('allows only the actions granted on the exact repository', () => {
    expect(grant.allows(repositoryScope('team/app', 'pull'))).toBe(true);
    expect(grant.allows(repositoryScope('team/app', 'pull', 'push'))).toBe(false);
    expect(grant.allows(repositoryScope('team/app2', 'pull'))).toBe(false);
    expect(grant.allows(repositoryScope('team', 'pull'))).toBe(false);
  });

  it('reads * as every action, and grants the catalog only by its own scope', () => {
    expect(grant.allows(repositoryScope('bob/tools', 'pull', 'push', 'delete'))).toBe(true);
    expect(grant.allows(CATALOG_SCOPE)).toBe(true);
    expect(new ScopeGrant('bob', [repositoryScope('catalog', '*')]).allows(CATALOG_SCOPE)).toBe(false);
  });
});

const rule = (fields: Partial<AccessRule>): AccessRule => ({
  repositories: [],
  users: [],
  groups: [],
  anonymous: false,
  actions: [],
  ...fields,
});

describe('AccessPolicy without configuration', () => {
  const policy = new AccessPolicy();

  it('lets every authenticated user do everything, the catalog included', () => {
    expect(policy.allows('anyone', repositoryScope('x/y', 'pull', 'push', 'delete'))).toBe(true);
    expect(policy.allows('anyone', CATALOG_SCOPE)).toBe(true);
    expect(policy.grant('anyone', repositoryScope('x', '*')).actions).toEqual(['pull', 'push', 'delete']);
  });

  it('lets anonymous requests do nothing', () => {
    expect(policy.allows(undefined, repositoryScope('x', 'pull'))).toBe(false);
    expect(policy.allows(undefined, CATALOG_SCOPE)).toBe(false);
    expect(policy.grant(undefined, repositoryScope('x', 'pull')).actions).toEqual([]);
  });

  it('knows no other resource types', () => {
    expect(policy.allows('anyone', { type: 'registry', name: 'other', actions: ['*'] })).toBe(false);
    expect(policy.grant('anyone', { type: 'plugin', name: 'x', actions: ['pull'] }).actions).toEqual([]);
  });
});

describe('AccessPolicy with rules', () => {
  const policy = new AccessPolicy({
    groups: { admins: ['alice'], ci: ['robot', 'alice'] },
    rules: [
      rule({ repositories: ['**'], groups: ['admins'], actions: ['*'] }),
      rule({ repositories: ['apps/*'], groups: ['ci'], actions: ['pull', 'push'] }),
      rule({ repositories: ['apps/*'], users: ['bob'], actions: ['pull'] }),
      rule({ repositories: ['apps/*'], users: ['bob'], actions: ['delete'] }),
      rule({ repositories: ['${user}/**'], users: ['*'], actions: ['pull', 'push'] }),
      rule({ repositories: ['public/**'], anonymous: true, actions: ['pull'] }),
      rule({ repositories: ['home/${user}'], anonymous: true, actions: ['pull'] }),
      rule({ users: ['auditor'], actions: ['catalog'] }),
    ],
  });

  it('grants the union of the rules naming a user', () => {
    expect(policy.allows('bob', repositoryScope('apps/web', 'pull', 'delete'))).toBe(true);
    expect(policy.allows('bob', repositoryScope('apps/web', 'push'))).toBe(false);
  });

  it('matches * within one path component and ** across them', () => {
    expect(policy.allows('robot', repositoryScope('apps/web', 'push'))).toBe(true);
    expect(policy.allows('robot', repositoryScope('apps/web/cache', 'pull'))).toBe(false);
    expect(policy.allows('robot', repositoryScope('apps', 'pull'))).toBe(false);
    expect(policy.allows('robot', repositoryScope('robot/a/b/c', 'push'))).toBe(true);
    expect(policy.allows(undefined, repositoryScope('public/a/b', 'pull'))).toBe(true);
  });

  it('treats the rest of a pattern literally, regular-expression characters included', () => {
    const literal = new AccessPolicy({
      groups: {},
      rules: [rule({ repositories: ['a.b/c+d'], users: ['u'], actions: ['pull'] })],
    });
    expect(literal.allows('u', repositoryScope('a.b/c+d', 'pull'))).toBe(true);
    expect(literal.allows('u', repositoryScope('axb/cd', 'pull'))).toBe(false);
    expect(literal.allows('u', repositoryScope('a.b/ccd', 'pull'))).toBe(false);
  });

  it('puts the user name in ${user}, and never matches it for an anonymous request', () => {
    expect(policy.allows('carol', repositoryScope('carol/x', 'push'))).toBe(true);
    expect(policy.allows('carol', repositoryScope('bob/x', 'pull'))).toBe(false);
    expect(policy.allows('carol', repositoryScope('carolyn/x', 'pull'))).toBe(false);
    expect(policy.allows(undefined, repositoryScope('undefined/x', 'pull'))).toBe(false);
    expect(policy.allows(undefined, repositoryScope('/x', 'pull'))).toBe(false);
    expect(policy.allows(undefined, repositoryScope('home/', 'pull'))).toBe(false);
    expect(policy.allows('dave', repositoryScope('home/dave', 'pull'))).toBe(true);
  });

  it('grants through groups, and a user in several groups gets them all', () => {
    expect(policy.allows('alice', repositoryScope('anything/at/all', 'delete'))).toBe(true);
    expect(policy.allows('alice', CATALOG_SCOPE)).toBe(true);
    expect(policy.allows('robot', repositoryScope('other', 'pull'))).toBe(false);
  });

  it('applies anonymous rules to signed-in users too, and grants anonymous requests nothing else', () => {
    expect(policy.allows('bob', repositoryScope('public/lib', 'pull'))).toBe(true);
    expect(policy.allows(undefined, repositoryScope('public/lib', 'pull', 'push'))).toBe(false);
    expect(policy.allows(undefined, repositoryScope('apps/web', 'pull'))).toBe(false);
  });

  it('grants the catalog only to rules with the catalog action (or *)', () => {
    expect(policy.allows('auditor', CATALOG_SCOPE)).toBe(true);
    expect(policy.allows('auditor', repositoryScope('apps/web', 'pull'))).toBe(false);
    expect(policy.allows('bob', CATALOG_SCOPE)).toBe(false);
    expect(policy.allows(undefined, CATALOG_SCOPE)).toBe(false);
  });

  it('grants the intersection of what is asked and what is allowed, never more than asked', () => {
    expect(policy.grant('bob', repositoryScope('apps/web', 'pull', 'push'))).toEqual(
      repositoryScope('apps/web', 'pull'),
    );
    expect(policy.grant('bob', repositoryScope('apps/web', 'push')).actions).toEqual([]);
    expect(policy.grant('robot', repositoryScope('apps/web', 'pull')).actions).toEqual(['pull']);
    expect(policy.grant('robot', repositoryScope('apps/web', 'pull', 'bogus')).actions).toEqual(['pull']);
    expect(policy.grant('bob', repositoryScope('apps/web', '*')).actions).toEqual(['pull', 'delete']);
    expect(policy.grant('bob', CATALOG_SCOPE).actions).toEqual([]);
    expect(policy.grant('auditor', CATALOG_SCOPE)).toEqual(CATALOG_SCOPE);
  });

  it('answers an Access for one user', () => {
    const access = policy.accessFor('bob');
    expect(access.user).toBe('bob');
    expect(access.allows(repositoryScope('apps/web', 'pull'))).toBe(true);
    expect(access.allows(repositoryScope('apps/web', 'push'))).toBe(false);
    expect(policy.accessFor(undefined).allows(repositoryScope('public/x', 'pull'))).toBe(true);
  });
});
