import { ConfigError } from '../config.js';

/**
 * A driver parameter (`storage.<driver>.<key>`) as a string: numbers, as YAML may give them, too;
 * undefined when absent. Anything else is a ConfigError naming the key.
 */
export function optionalString(
  section: string,
  parameters: Record<string, unknown>,
  key: string,
): string | undefined {
  const value = parameters[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value.trim();
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  throw new ConfigError(`${section}.${key}: expected a string, got ${JSON.stringify(value)}`);
}
