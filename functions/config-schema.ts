/**
 * A small declarative schema for distribution-style YAML configuration, and the one walker that
 * uses it three ways: to validate and default a parsed file (decode), to warn about keys it does not
 * know, and to apply REGISTRY_* environment overrides the way distribution's configuration parser does.
 *
 * A schema is a tree of descriptors built with the helpers below. Object fields are keyed by their
 * TypeScript (camelCase) name and carry distribution's YAML key; the decoded value's type is inferred
 * from the tree (Infer), so the description and the typed result cannot drift apart.
 */
import { parse as parseYaml } from 'yaml';

/** Invalid or unreadable configuration. The message names the key path (or the file, or the variable). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Phantom carrier of a descriptor's decoded type. */
interface Typed<T> {
  readonly _type?: () => T;
}

type ScalarKind = 'string' | 'boolean' | 'integer' | 'duration' | 'age';

export interface ScalarDesc<T> extends Typed<T> {
  readonly kind: ScalarKind;
  readonly default: unknown;
  readonly required: boolean;
  readonly min?: number;
  /** Extra validation of a decoded value: a problem description, or undefined when fine. */
  readonly check?: (value: never) => string | undefined;
}
export interface EnumDesc<T> extends Typed<T> {
  readonly kind: 'enum';
  readonly values: readonly string[];
  readonly default: unknown;
}
export interface ListDesc<T> extends Typed<T> {
  readonly kind: 'list';
  readonly item: Desc;
  /** The value when absent or empty (`key:`): a list, or undefined for an optional list. */
  readonly default: readonly unknown[] | undefined;
  /** At least one entry: absent (without a default) is "is required", `[]` is refused. */
  readonly nonEmpty: boolean;
}
export interface MapDesc<T> extends Typed<T> {
  readonly kind: 'map';
  readonly value: Desc;
  readonly optional: boolean;
}
export interface Variants {
  /** What one variant is called in messages ("storage driver"). */
  readonly noun: string;
  /** The field keys of which at most one (exactly one when required) may be configured. */
  readonly keys: readonly string[];
  readonly required: boolean;
}
export interface ObjectDesc<T> extends Typed<T> {
  readonly kind: 'object';
  readonly fields: Readonly<Record<string, Field>>;
  /** Distribution keys accepted with a warning (key → feature), their content left unchecked. */
  readonly unsupported: Readonly<Record<string, string>>;
  /** Absent → undefined (an empty section `key:` still counts as present). */
  readonly optional: boolean;
  /** Unknown keys are refused instead of warned about (this registry's own sections, where a typo matters). */
  readonly strict: boolean;
  /**
   * A keyed union like distribution's `storage` and `auth`: a bare string `x` means `{x: {}}`,
   * other unknown keys are refused, and an environment override of the whole section replaces
   * the variant keys but keeps the other sections.
   */
  readonly variants?: Variants;
}
export interface RawDesc extends Typed<unknown> {
  readonly kind: 'raw';
}
export type Desc =
  | ScalarDesc<unknown>
  | EnumDesc<unknown>
  | ListDesc<unknown>
  | MapDesc<unknown>
  | ObjectDesc<unknown>
  | RawDesc;

export interface Field<D extends Desc = Desc> {
  /** Distribution's YAML key (lower case). */
  readonly key: string;
  /** The Go struct field name distribution matches environment variables against, when it differs. */
  readonly env?: string | undefined;
  readonly desc: D;
}

export type Infer<D> = D extends Typed<infer T> ? T : never;
type Shape<F extends Record<string, Field>> = { -readonly [P in keyof F]: Infer<F[P]['desc']> };

// ---- builders -------------------------------------------------------------------------------------

const scalar = <T>(kind: ScalarKind, dflt: unknown, extra: Partial<ScalarDesc<T>> = {}): ScalarDesc<T> => ({
  kind,
  default: dflt,
  required: false,
  ...extra,
});
export const str = (dflt = '', check?: (value: string) => string | undefined) =>
  scalar<string>('string', dflt, { check });
export const optStr = (check?: (value: string) => string | undefined) =>
  scalar<string | undefined>('string', undefined, { check });
export const reqStr = (check?: (value: string) => string | undefined) =>
  scalar<string>('string', undefined, { required: true, check });
export const bool = (dflt = false) => scalar<boolean>('boolean', dflt);
export const int = (dflt: number, min?: number) => scalar<number>('integer', dflt, { min });
export const optInt = (min?: number) => scalar<number | undefined>('integer', undefined, { min });
/** A Go duration (`300ms`, `1m30s`, `24h`; a bare integer is nanoseconds), decoded to milliseconds. */
export const duration = (dfltMs: number) => scalar<number>('duration', dfltMs);
/** An age: a Go duration or a number of days (`14d`), decoded to milliseconds; absent → undefined. */
export const optAge = () => scalar<number | undefined>('age', undefined);
export const oneOf = <const V extends readonly string[], D extends V[number] | undefined>(
  values: V,
  dflt: D,
): EnumDesc<V[number] | D> => ({ kind: 'enum', values, default: dflt });
interface ListOptions {
  /** At least one entry (see ListDesc.nonEmpty). */
  nonEmpty?: boolean;
  /** The value when absent (default []). */
  default?: readonly unknown[];
}
export const list = <I extends Desc>(item: I, opts: ListOptions = {}): ListDesc<Infer<I>[]> => ({
  kind: 'list',
  item,
  default: opts.default ?? [],
  nonEmpty: opts.nonEmpty ?? false,
});
/** A list that may be left out (undefined), but not given empty. */
export const optList = <I extends Desc>(item: I): ListDesc<Infer<I>[] | undefined> => ({
  kind: 'list',
  item,
  default: undefined,
  nonEmpty: true,
});
export const map = <V extends Desc>(value: V): MapDesc<Record<string, Infer<V>>> => ({
  kind: 'map',
  value,
  optional: false,
});
export const optMap = <V extends Desc>(value: V): MapDesc<Record<string, Infer<V>> | undefined> => ({
  kind: 'map',
  value,
  optional: true,
});
export const raw = (): RawDesc => ({ kind: 'raw' });
export const field = <D extends Desc>(key: string, desc: D, env?: string): Field<D> => ({ key, desc, env });

interface ObjectOptions {
  unsupported?: Record<string, string>;
  variants?: Variants;
  /** Refuse unknown keys (see ObjectDesc.strict). */
  strict?: boolean;
}
export const object = <F extends Record<string, Field>>(fields: F, opts: ObjectOptions = {}) =>
  objectDesc<Shape<F>>(fields, opts, false);
export const optObject = <F extends Record<string, Field>>(fields: F, opts: ObjectOptions = {}) =>
  objectDesc<Shape<F> | undefined>(fields, opts, true);
const objectDesc = <T>(
  fields: Record<string, Field>,
  opts: ObjectOptions,
  optional: boolean,
): ObjectDesc<T> => ({
  kind: 'object',
  fields,
  unsupported: opts.unsupported ?? {},
  optional,
  strict: opts.strict ?? false,
  variants: opts.variants,
});

// ---- decoding -------------------------------------------------------------------------------------

export interface Context {
  readonly warnings: string[];
  /** Key paths set from the environment → the variable, to say where a bad value came from. */
  readonly origins: Map<string, string>;
  /** The configuration file, when there is one, for error messages. */
  readonly file?: string | undefined;
}

/** Validates and defaults raw (parsed YAML) against desc. Absent is undefined, an empty YAML value null. */
export function decode<D extends Desc>(desc: D, value: unknown, ctx: Context, path = ''): Infer<D> {
  return walk(desc, value, path, ctx) as Infer<D>;
}

export const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const join = (path: string, key: string) => (path === '' ? key : `${path}.${key}`);

function show(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (isRecord(v)) return 'a map';
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function fail(ctx: Context, path: string, message: string): ConfigError {
  let origin: string | undefined;
  let longest = -1;
  let below: string | undefined;
  const under = (inner: string, outer: string) =>
    inner === outer || inner.startsWith(`${outer}.`) || inner.startsWith(`${outer}[`);
  for (const [p, name] of ctx.origins) {
    if (under(path, p) && p.length > longest) [origin, longest] = [name, p.length];
    if (under(p, path)) below ??= name;
  }
  const where = origin
    ? ` (from environment variable ${origin})`
    : below
      ? ` (with environment variable ${below})`
      : ctx.file
        ? ` (in ${ctx.file})`
        : '';
  return new ConfigError(`${path || '(top level)'}: ${message}${where}`);
}

function walk(desc: Desc, value: unknown, path: string, ctx: Context): unknown {
  switch (desc.kind) {
    case 'raw':
      return value ?? undefined;
    case 'object':
      return walkObject(desc, value, path, ctx);
    case 'map': {
      if (value === undefined && desc.optional) return undefined;
      if (value === undefined || value === null) return {};
      if (!isRecord(value)) throw fail(ctx, path, `expected a map, got ${show(value)}`);
      return Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, walk(desc.value, v ?? null, join(path, k), ctx)]),
      );
    }
    case 'list': {
      if (value === undefined || value === null) {
        if (desc.default === undefined) return undefined;
        if (desc.nonEmpty && desc.default.length === 0) throw fail(ctx, path, 'is required');
        return [...desc.default];
      }
      if (!Array.isArray(value)) throw fail(ctx, path, `expected a list, got ${show(value)}`);
      if (desc.nonEmpty && value.length === 0) throw fail(ctx, path, 'expected at least one entry, got []');
      return value.map((v: unknown, i) => walk(desc.item, v ?? null, `${path}[${i}]`, ctx));
    }
    case 'enum': {
      if (value === undefined || value === null) return desc.default;
      const v = typeof value === 'string' ? value.toLowerCase() : undefined;
      if (v !== undefined && desc.values.includes(v)) return v;
      throw fail(ctx, path, `expected one of ${desc.values.join(', ')}, got ${show(value)}`);
    }
    default:
      return walkScalar(desc, value, path, ctx);
  }
}

const YAML11_BOOLEANS: Readonly<Record<string, boolean>> = {
  y: true,
  yes: true,
  on: true,
  n: false,
  no: false,
  off: false,
};
const EXPECTED: Readonly<Record<ScalarKind, string>> = {
  string: 'a string',
  boolean: 'a boolean',
  integer: 'an integer',
  duration: 'a duration such as 300ms, 10s, 1m30s or 24h',
  age: 'a duration such as 12h or 14d (days)',
};

function walkScalar(desc: ScalarDesc<unknown>, value: unknown, path: string, ctx: Context): unknown {
  if (value === undefined || value === null) {
    if (desc.required) throw fail(ctx, path, 'is required');
    return desc.default;
  }
  const result = convert(desc.kind, value);
  if (result === undefined) throw fail(ctx, path, `expected ${EXPECTED[desc.kind]}, got ${show(value)}`);
  if (typeof result === 'number' && desc.min !== undefined && result < desc.min) {
    throw fail(ctx, path, `must be at least ${desc.min}, got ${show(value)}`);
  }
  const problem = desc.check?.(result as never);
  if (problem !== undefined) throw fail(ctx, path, problem);
  return result;
}

function convert(kind: ScalarKind, value: unknown): string | number | boolean | undefined {
  switch (kind) {
    case 'string':
      // Like Go's yaml into a string field: any scalar is taken as text.
      if (typeof value === 'number' || typeof value === 'boolean') return String(value);
      return typeof value === 'string' ? value : undefined;
    case 'boolean':
      // distribution reads YAML 1.1, where yes/no/on/off are booleans too.
      return typeof value === 'boolean'
        ? value
        : typeof value === 'string'
          ? YAML11_BOOLEANS[value.toLowerCase()]
          : undefined;
    case 'integer':
      if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return Number(value);
      return typeof value === 'number' && Number.isSafeInteger(value) ? value : undefined;
    case 'duration':
      if (typeof value === 'number')
        return Number.isSafeInteger(value) && value >= 0 ? value / 1e6 : undefined;
      return typeof value === 'string' ? parseGoDuration(value) : undefined;
    case 'age':
      // Text only: a bare number could be nanoseconds (Go) or days.
      return typeof value === 'string' ? parseAge(value) : undefined;
  }
}

function walkObject(desc: ObjectDesc<unknown>, value: unknown, path: string, ctx: Context): unknown {
  if (value === undefined && desc.optional) return undefined;
  const input = typeof value === 'string' && desc.variants ? { [value]: null } : (value ?? {});
  if (!isRecord(input)) throw fail(ctx, path, `expected a map, got ${show(value)}`);
  const fields = Object.entries(desc.fields);
  const out: Record<string, unknown> = {};
  const chosen: string[] = [];
  for (const key of Object.keys(input)) {
    const lower = key.toLowerCase();
    const known = fields.find(([, f]) => f.key === lower);
    const feature = desc.unsupported[lower];
    if (known) {
      const [prop, f] = known;
      out[prop] = walk(f.desc, input[key] ?? null, join(path, f.key), ctx);
      if (desc.variants?.keys.includes(lower)) chosen.push(lower);
    } else if (feature !== undefined) {
      ctx.warnings.push(
        `configuration key ${join(path, key)} (${feature}) is accepted but not supported by this registry yet (ignored)`,
      );
    } else if (desc.variants) {
      const supported = desc.variants.keys.join(', ');
      throw fail(ctx, path, `unsupported ${desc.variants.noun} "${key}" (supported: ${supported})`);
    } else if (desc.strict) {
      const keys = fields.map(([, f]) => f.key).join(', ');
      throw fail(ctx, join(path, key), `unknown key; expected ${keys}`);
    } else {
      ctx.warnings.push(`unknown configuration key ${join(path, key)} (ignored)`);
    }
  }
  if (desc.variants && (chosen.length > 1 || (chosen.length === 0 && desc.variants.required))) {
    const { noun, keys } = desc.variants;
    const found =
      chosen.length === 0 ? `no ${noun} configured` : `several ${noun}s configured (${chosen.join(', ')})`;
    throw fail(ctx, path, `${found}; expected exactly one of ${keys.join(', ')}`);
  }
  for (const [prop, f] of fields) {
    if (!Object.hasOwn(out, prop)) out[prop] = walk(f.desc, undefined, join(path, f.key), ctx);
  }
  return out;
}

const UNIT_NS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  µs: 1e3, // U+00B5 micro sign
  μs: 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/** Go's time.ParseDuration (non-negative), in milliseconds; undefined when not a duration. */
export function parseGoDuration(text: string): number | undefined {
  let rest = text.trim().replace(/^\+/, '');
  if (rest === '0') return 0;
  let ns = 0;
  while (rest !== '') {
    const m = /^(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/.exec(rest);
    const unit = UNIT_NS[m?.[2] ?? ''];
    if (!m || unit === undefined) return undefined;
    ns += Number(m[1]) * unit;
    rest = rest.slice(m[0].length);
  }
  return text.trim() === '' ? undefined : ns / 1e6;
}

/** A Go duration, or a whole number of days (`14d`), in milliseconds; undefined when neither. */
export function parseAge(text: string): number | undefined {
  const days = /^\s*(\d+)d\s*$/.exec(text);
  return days ? Number(days[1]) * 86_400_000 : parseGoDuration(text);
}

// ---- environment overrides ------------------------------------------------------------------------

const PREFIX = 'REGISTRY_';

/**
 * Applies REGISTRY_<PATH> variables to the raw configuration as distribution does: in lexical
 * order of name (so REGISTRY_STORAGE comes before REGISTRY_STORAGE_S3_REGION), path segments
 * matched case-insensitively, each value parsed as YAML. Variables that name no known key warn.
 */
export function applyEnv(
  desc: ObjectDesc<unknown>,
  root: Record<string, unknown>,
  env: Record<string, string | undefined>,
  ctx: Context,
  ignore: readonly string[] = [],
): Record<string, unknown> {
  let result: unknown = root;
  for (const name of Object.keys(env).sort()) {
    const value = env[name];
    if (value === undefined || !name.startsWith(PREFIX) || ignore.includes(name)) continue;
    const segments = name.slice(PREFIX.length).toUpperCase().split('_');
    if (!known(desc, segments)) {
      ctx.warnings.push(`environment variable ${name} matches no configuration key (ignored)`);
      continue;
    }
    let payload: unknown;
    try {
      payload = parseYaml(value) as unknown;
    } catch (err) {
      throw new ConfigError(`environment variable ${name}: invalid YAML value: ${(err as Error).message}`);
    }
    result = setAt(desc, result, segments, payload ?? null, '', name, ctx);
  }
  return result as Record<string, unknown>;
}

function child(
  desc: Desc | undefined,
  segment: string,
): { desc: Desc | undefined; key?: string } | undefined {
  if (desc === undefined || desc.kind === 'raw') return { desc: undefined };
  if (desc.kind === 'map') return { desc: desc.value };
  if (desc.kind === 'list') return /^\d+$/.test(segment) ? { desc: desc.item } : undefined;
  if (desc.kind !== 'object') return undefined;
  const f = Object.values(desc.fields).find((x) => (x.env ?? x.key).toUpperCase() === segment);
  if (f) return { desc: f.desc, key: f.key };
  const unsupported = Object.keys(desc.unsupported).find((k) => k.toUpperCase() === segment);
  return unsupported === undefined ? undefined : { desc: undefined, key: unsupported };
}

function known(desc: Desc | undefined, segments: readonly string[]): boolean {
  const [head, ...rest] = segments;
  if (head === undefined) return true;
  const next = head === '' ? undefined : child(desc, head);
  return next !== undefined && known(next.desc, rest);
}

function setAt(
  desc: Desc | undefined,
  current: unknown,
  segments: readonly string[],
  payload: unknown,
  path: string,
  name: string,
  ctx: Context,
): unknown {
  const [head, ...rest] = segments;
  if (head === undefined) {
    ctx.origins.set(path, name);
    return desc?.kind === 'object' && desc.variants ? selectVariant(desc, current, payload) : payload;
  }
  const next = child(desc, head) ?? { desc: undefined };
  if (desc?.kind === 'list' || (desc === undefined && Array.isArray(current))) {
    const items: unknown[] = Array.isArray(current) ? [...(current as unknown[])] : [];
    const index = Number(head);
    if (!/^\d+$/.test(head) || index > items.length) {
      throw new ConfigError(
        `environment variable ${name}: no index ${head} in ${path} (${items.length} entries)`,
      );
    }
    items[index] = setAt(next.desc, items[index], rest, payload, `${path}[${index}]`, name, ctx);
    return items;
  }
  const obj: Record<string, unknown> =
    typeof current === 'string' && desc?.kind === 'object' && desc.variants
      ? { [current]: null }
      : isRecord(current)
        ? { ...current }
        : {};
  const wanted = (next.key ?? head).toLowerCase();
  const key = Object.keys(obj).find((k) => k.toLowerCase() === wanted) ?? wanted;
  obj[key] = setAt(next.desc, obj[key], rest, payload, join(path, next.key ?? key), name, ctx);
  return obj;
}

/** `REGISTRY_STORAGE=s3`: the variant keys are replaced, the other sections stay. */
function selectVariant(desc: ObjectDesc<unknown>, current: unknown, payload: unknown): unknown {
  const chosen = typeof payload === 'string' ? { [payload]: null } : payload;
  if (!isRecord(chosen) || !isRecord(current)) return chosen;
  const sections = Object.values(desc.fields)
    .map((f) => f.key)
    .filter((k) => !desc.variants?.keys.includes(k))
    .concat(Object.keys(desc.unsupported));
  const kept = Object.entries(current).filter(([k]) => sections.includes(k.toLowerCase()));
  return { ...Object.fromEntries(kept), ...chosen };
}
