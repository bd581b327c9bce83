import { RegistryError } from './errors.js';

/** The spec's repository name grammar: path components of lowercase alphanumerics and separators. */
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** distribution's limit on a repository name, so that names fit storage keys everywhere. */
const MAX_NAME_LENGTH = 255;

export function checkRepositoryName(name: string): void {
  if (name.length > MAX_NAME_LENGTH) {
    throw new RegistryError('NAME_INVALID', `repository name must be at most ${MAX_NAME_LENGTH} characters`, {
      detail: { name },
    });
  }
  if (!NAME.test(name)) {
    throw new RegistryError(
      'NAME_INVALID',
      'repository name must be lowercase path components separated by "/", each matching [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*',
      { detail: { name } },
    );
  }
}

export function isTag(reference: string): boolean {
  return TAG.test(reference);
}

export function checkTag(tag: string): void {
  if (!isTag(tag)) {
    throw new RegistryError('MANIFEST_INVALID', 'tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}', {
      detail: { tag },
    });
  }
}
