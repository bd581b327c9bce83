/**
 * Garbage collection and storage accounting from the command line, against the storage a registry
 * configuration names, while that registry keeps serving:
 *
 *   npm run gc -- [--dry-run] [--delete-untagged] [--grace DURATION] [--json] [CONFIG]
 *   npm run usage -- [--json] [CONFIG] [REPOSITORY...]
 */
import { composeStorage } from '../functions/compose.js';
import { ConfigError, loadConfig, parseGoDuration, type RegistryConfig } from '../functions/config.js';
import { jsonLogger } from '../functions/log.js';
import {
  collectGarbage,
  type GcReport,
  type RepositoryUsage,
  storageUsage,
} from '../functions/maintenance/gc.js';
import { gcOptions } from '../functions/maintenance/job.js';

const USAGE = `usage: npm run gc -- [--dry-run] [--delete-untagged] [--grace DURATION] [--json] [CONFIG]
       npm run usage -- [--json] [CONFIG] [REPOSITORY...]

gc removes what no tag reaches any longer from the storage CONFIG names (the same file and
REGISTRY_* variables as npm start; without one, ./data), while the registry keeps serving:
the tags the retention policies expire, manifests left without a tag by them (and, with
--delete-untagged, every untagged manifest no tag reaches), expired uploads, and blobs no
manifest names. Nothing written or used within the grace period (gc.grace, default 1h) goes.

  --dry-run          report what would go and how many bytes, remove nothing
  --delete-untagged  also remove manifests no tag reaches (gc.deleteuntagged)
  --grace DURATION   override gc.grace, e.g. 30m, 2h, 0s (0s: only when nothing is being pushed)
  --json             print the report as JSON

usage prints each repository's tags, manifests, distinct blobs and bytes.`;

class UsageError extends Error {}

interface Arguments {
  command: 'gc' | 'usage';
  dryRun: boolean;
  deleteUntagged: boolean | undefined;
  graceMs: number | undefined;
  json: boolean;
  config: string | undefined;
  repositories: string[];
}

function parseArguments(argv: readonly string[]): Arguments {
  const args: Arguments = {
    command: argv[0] === 'usage' ? 'usage' : 'gc',
    dryRun: false,
    deleteUntagged: undefined,
    graceMs: undefined,
    json: false,
    config: undefined,
    repositories: [],
  };
  const rest = argv[0] === 'usage' || argv[0] === 'gc' ? argv.slice(1) : [...argv];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    if (arg === '--json') args.json = true;
    else if (arg === '--dry-run' && args.command === 'gc') args.dryRun = true;
    else if (arg === '--delete-untagged' && args.command === 'gc') args.deleteUntagged = true;
    else if ((arg === '--grace' || arg.startsWith('--grace=')) && args.command === 'gc') {
      const value = arg === '--grace' ? rest[++i] : arg.slice('--grace='.length);
      const ms = value === undefined ? undefined : parseGoDuration(value);
      if (ms === undefined || ms < 0) {
        throw new UsageError(`--grace needs a duration such as 30m, 2h or 0s, not ${String(value)}`);
      }
      args.graceMs = ms;
    } else if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}`);
    else if (args.config === undefined) args.config = arg;
    else if (args.command === 'usage') args.repositories.push(arg);
    else throw new UsageError(`unexpected argument ${arg}`);
  }
  return args;
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let args: Arguments;
  let config: RegistryConfig;
  try {
    args = parseArguments(argv);
    ({ config } = await loadConfig({ path: args.config }));
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n${USAGE}\n`);
      return 2;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`gc: configuration error: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const log = jsonLogger(config.log.level === 'info' ? 'warn' : config.log.level, config.log.fields);
  const parts = { ...(await composeStorage(config, log)), log };

  if (args.command === 'usage') {
    const usage = await storageUsage(parts, args.repositories.length > 0 ? args.repositories : undefined);
    process.stdout.write(args.json ? JSON.stringify(usage, null, 2) + '\n' : usageTable(usage));
    return 0;
  }
  const options = gcOptions(config, {
    dryRun: args.dryRun,
    ...(args.deleteUntagged !== undefined && { deleteUntagged: args.deleteUntagged }),
    ...(args.graceMs !== undefined && { graceMs: args.graceMs }),
  });
  const result = await collectGarbage(parts, options);
  if (!result.done) throw new Error('garbage collection stopped before its end without a deadline');
  process.stdout.write(args.json ? JSON.stringify(result.report, null, 2) + '\n' : reportText(result.report));
  return 0;
}

function usageTable(usage: readonly RepositoryUsage[]): string {
  const rows = usage.map((u) => [
    u.repository,
    String(u.tags),
    String(u.manifests),
    String(u.blobs),
    bytes(u.bytes),
  ]);
  return table(['REPOSITORY', 'TAGS', 'MANIFESTS', 'BLOBS', 'SIZE'], rows);
}

function reportText(report: GcReport): string {
  const would = report.dryRun ? 'would remove' : 'removed';
  const lines: string[] = [];
  lines.push(
    `garbage collection${report.dryRun ? ' (dry run: nothing removed)' : ''}, grace ${duration(report.graceMs)}, started ${report.startedAt}`,
  );
  const rows = report.repositories.map((r) => [
    r.repository,
    String(r.tags),
    String(r.manifests),
    String(r.blobs),
    bytes(r.bytes),
    String(r.removedTags.length),
    String(r.removedManifests.length),
    bytes(r.reclaimedBytes),
  ]);
  lines.push(
    table(
      ['REPOSITORY', 'TAGS', 'MANIFESTS', 'BLOBS', 'SIZE', 'TAGS-', 'MANIFESTS-', 'RECLAIMED'],
      rows,
    ).trimEnd(),
  );
  for (const r of report.repositories) {
    for (const tag of r.removedTags) lines.push(`${would} tag ${r.repository}:${tag}`);
    for (const digest of r.removedManifests) lines.push(`${would} manifest ${r.repository}@${digest}`);
  }
  const { removed } = report;
  lines.push(
    `${would}: ${removed.tags} tags, ${removed.manifests} manifests, ${removed.blobs} blobs (${bytes(removed.blobBytes)}), ` +
      `${removed.links} blob links, ${removed.uploads} expired uploads (${bytes(removed.uploadBytes)} of upload data)`,
  );
  lines.push(`kept: ${report.kept.blobs} blobs (${bytes(report.kept.blobBytes)})`);
  if (report.rescued > 0) lines.push(`put back: ${report.rescued} taken by a push while being removed`);
  return lines.join('\n') + '\n';
}

function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  return (
    all
      .map((row) =>
        row
          .map((cell, i) => cell.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

/** A duration as Go prints it, without zero parts: 1h, 1h30m, 45s, 0s. */
function duration(ms: number): string {
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, seconds] of [
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= seconds) {
      parts.push(`${Math.floor(rest / seconds)}${unit}`);
      rest %= seconds;
    }
  }
  return parts.length === 0 ? '0s' : parts.join('');
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`gc: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
