import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository root: the nearest directory above this module with a package.json. Found from the
 * module's own location, not the working directory, so that it holds from anywhere, in the source tree
 * and bundled (cdk.out/, dist/) alike. No dependencies: the local emulation loads it too.
 */
export const PROJECT_ROOT: string = findProjectRoot(dirname(fileURLToPath(import.meta.url)));

function findProjectRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${start}`);
  }
}
