import { type Access, covers, REPOSITORY_ACTIONS, type Scope } from './access.js';

/**
 * Per-repository access control: users and groups mapped to repository name patterns and actions.
 * Rules only grant; what a user may do is the union of the rules that name them, and anything no
 * rule grants is refused.
 */
export interface AccessRule {
  /** Repository name patterns: `*` matches within one path component, `**` across them, `${user}` is the user's name. */
  repositories: string[];
  /** User names; `*` is any authenticated user. */
  users: string[];
  groups: string[];
  /** The rule applies to everyone, signed in or not (anonymous pulls of public repositories). */
  anonymous: boolean;
  /** pull, push, delete, catalog (listing every repository), or `*` for all of them. */
  actions: string[];
}

export interface AccessPolicyConfig {
  groups: Record<string, string[]>;
  rules: AccessRule[];
}

export const POLICY_ACTIONS = [...REPOSITORY_ACTIONS, 'catalog', '*'] as const;

/** A rule as written, before defaults: what a configuration file or the CDK construct gives. */
export type AccessRuleInput = { readonly [K in keyof AccessRule]?: Readonly<AccessRule[K]> };

/**
 * The first mistake in rules that the registry refuses at start, as a message naming the rule (where
 * is the rules' path, e.g. `access.rules`); undefined when there is none. One check for the
 * configuration and for the CDK construct, so a deployment fails at synth rather than at start.
 */
export function accessRulesError(
  groups: Readonly<Record<string, readonly string[]>>,
  rules: readonly AccessRuleInput[],
  where = 'access.rules',
): string | undefined {
  for (const [index, rule] of rules.entries()) {
    const at = `${where}[${index}]`;
    const actions = rule.actions ?? [];
    const unknown = actions.filter((action) => !(POLICY_ACTIONS as readonly string[]).includes(action));
    if (unknown.length > 0)
      return `${at}.actions: unknown ${unknown.join(', ')}; use ${POLICY_ACTIONS.join(', ')}`;
    if (actions.length === 0) return `${at}.actions: no action granted`;
    if (!rule.anonymous && !rule.users?.length && !rule.groups?.length) {
      return `${at}: name users, groups, or anonymous: true`;
    }
    if (actions.some((action) => action !== 'catalog') && !rule.repositories?.length) {
      return `${at}.repositories: the repositories the rule's actions apply to are required`;
    }
    const undefinedGroup = rule.groups?.find((group) => !Object.hasOwn(groups, group));
    if (undefinedGroup !== undefined) {
      return `${at}.groups: ${JSON.stringify(undefinedGroup)} is not in access.groups`;
    }
  }
  return undefined;
}

interface CompiledRule {
  patterns: ((user: string | undefined) => RegExp | undefined)[];
  applies: (user: string | undefined, groups: ReadonlySet<string>) => boolean;
  actions: Set<string>;
}

export class AccessPolicy {
  private readonly rules: CompiledRule[] | undefined;
  private readonly groupsOf = new Map<string, Set<string>>();

  /**
   * Without a configuration, every authenticated user may do everything and anonymous requests
   * nothing: distribution's behaviour with htpasswd or its own token server.
   */
  constructor(config?: AccessPolicyConfig) {
    if (!config) return;
    for (const [group, members] of Object.entries(config.groups)) {
      for (const member of members) {
        const groups = this.groupsOf.get(member) ?? new Set<string>();
        groups.add(group);
        this.groupsOf.set(member, groups);
      }
    }
    this.rules = config.rules.map(compileRule);
  }

  /** The part of scope that user (undefined: anonymous) may have: an intersection, never more than asked. */
  grant(user: string | undefined, scope: Scope): Scope {
    const allowed = this.allowedActions(user, scope);
    const asked = scope.actions.includes('*') ? [...allowed] : scope.actions;
    return { ...scope, actions: asked.filter((action) => allowed.has(action)) };
  }

  allows(user: string | undefined, scope: Scope): boolean {
    return covers([...this.allowedActions(user, scope)], scope.actions);
  }

  /** The policy's decisions for one user, as the registry's Access. */
  accessFor(user: string | undefined): Access {
    return { user, allows: (scope) => this.allows(user, scope) };
  }

  private allowedActions(user: string | undefined, scope: Scope): Set<string> {
    const known: readonly string[] =
      scope.type === 'repository' ? REPOSITORY_ACTIONS : isCatalog(scope) ? ['*'] : [];
    if (known.length === 0) return new Set();
    if (!this.rules) return new Set(user === undefined ? [] : known);
    const groups = (user !== undefined && this.groupsOf.get(user)) || new Set<string>();
    const allowed = new Set<string>();
    for (const rule of this.rules) {
      if (!rule.applies(user, groups)) continue;
      if (isCatalog(scope)) {
        if (rule.actions.has('catalog') || rule.actions.has('*')) allowed.add('*');
        continue;
      }
      if (!rule.patterns.some((pattern) => pattern(user)?.test(scope.name))) continue;
      for (const action of known) {
        if (rule.actions.has(action) || rule.actions.has('*')) allowed.add(action);
      }
    }
    return allowed;
  }
}

const isCatalog = (scope: Scope) => scope.type === 'registry' && scope.name === 'catalog';

function compileRule(rule: AccessRule): CompiledRule {
  const users = new Set(rule.users);
  return {
    patterns: rule.repositories.map(compilePattern),
    applies: (user, groups) =>
      rule.anonymous ||
      (user !== undefined &&
        (users.has(user) || users.has('*') || rule.groups.some((group) => groups.has(group)))),
    actions: new Set(rule.actions),
  };
}

/**
 * A repository pattern as a matcher: `**` matches any characters, `*` any but `/`, `${user}` the
 * user's name (so a pattern naming it never matches an anonymous request); the rest is literal.
 */
export function compilePattern(pattern: string): (user: string | undefined) => RegExp | undefined {
  const parts = pattern.split(/(\*\*|\*|\$\{user\})/).filter((part) => part !== '');
  const personal = parts.includes('${user}');
  const build = (user: string) =>
    new RegExp(
      '^' +
        parts
          .map((part) =>
            part === '**' ? '.*' : part === '*' ? '[^/]*' : escape(part === '${user}' ? user : part),
          )
          .join('') +
        '$',
    );
  if (!personal) {
    const fixed = build('');
    return () => fixed;
  }
  return (user) => (user === undefined ? undefined : build(user));
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
