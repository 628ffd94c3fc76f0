import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.js";
import { checkStorageRoot } from "../config/storage-root.js";
import { restoreArchive } from "../backup/restore.js";
import { adminDownload, adminTarget, PASSWORD_ENV, USERNAME_ENV } from "./admin-client.js";

export const BACKUP_USAGE = `  backup --output FILE | --output-dir DIR [--keep N] [--url URL] [--ca FILE]
                                 a consistent tar.gz of the running registry's data, taken online;
                                 in DIR as registry-backup-<UTC time>.tar.gz, keeping the newest N;
                                 credentials from ${USERNAME_ENV} / ${PASSWORD_ENV}
  restore --input FILE (--config FILE | --root DIR) [--force]
                                 restore a backup (ours, or the guide's tar of the root) into the
                                 storage of FILE's config (or DIR), with the registry stopped; blobs
                                 are verified
`;

export async function backupCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      output: { type: "string" },
      "output-dir": { type: "string" },
      keep: { type: "string" },
      url: { type: "string", default: "http://localhost:5000" },
      ca: { type: "string" },
    },
  });
  const dir = values["output-dir"];
  if ((values.output === undefined) === (dir === undefined))
    throw new Error("backup needs --output FILE or --output-dir DIR");
  const keep = values.keep === undefined ? undefined : Number(values.keep);
  if (keep !== undefined && (!Number.isInteger(keep) || keep < 1))
    throw new Error(`--keep ${JSON.stringify(values.keep)} must be a positive integer`);
  if (keep !== undefined && dir === undefined) throw new Error("--keep goes with --output-dir");
  if (dir !== undefined) await removeAbandonedDownloads(dir);
  const stamp = new Date().toISOString().replace(/[-:]/g, ""); // 20261126T233751.123Z
  const output = values.output ?? join(dir!, `${BACKUP_PREFIX}${stamp}${BACKUP_SUFFIX}`);
  const bytes = await adminDownload(adminTarget(values.url, values.ca), "/v2/_neam/backup", output);
  process.stdout.write(`backup: ${bytes} bytes written to ${output}\n`);
  if (keep !== undefined) {
    // Only our own names; their UTC time sorts them oldest first.
    const ours = (await readdir(dir!))
      .filter((f) => f.startsWith(BACKUP_PREFIX) && f.endsWith(BACKUP_SUFFIX))
      .sort();
    for (const old of ours.slice(0, Math.max(0, ours.length - keep))) {
      await rm(join(dir!, old));
      process.stdout.write(`backup: removed ${old} (keeping the newest ${keep})\n`);
    }
  }
  return 0;
}

const BACKUP_PREFIX = "registry-backup-";
const BACKUP_SUFFIX = ".tar.gz";
/** What a download writes before it is complete (see adminDownload). */
const PARTIAL_SUFFIX = `${BACKUP_SUFFIX}.partial`;
/** A download that has written nothing for this long is dead: a live one writes continuously. */
const ABANDONED_AFTER_MS = 60 * 60 * 1000;

/**
 * Removes the partial archives of runs that were killed mid-download (the CronJob's deadline, a
 * lost node): nothing else ever removes them, and each holds up to a full archive's space on a
 * volume sized for `keep` archives, until the next backups fail for want of space.
 */
async function removeAbandonedDownloads(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (!name.startsWith(BACKUP_PREFIX) || !name.endsWith(PARTIAL_SUFFIX)) continue;
    const path = join(dir, name);
    const modified = (await stat(path).catch(() => undefined))?.mtimeMs;
    if (modified === undefined || Date.now() - modified < ABANDONED_AFTER_MS) continue;
    await rm(path, { force: true });
    process.stdout.write(`backup: removed ${name} (an interrupted backup)\n`);
  }
}

export async function restoreCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      input: { type: "string" },
      config: { type: "string" },
      root: { type: "string" },
      force: { type: "boolean", default: false },
    },
  });
  if (values.input === undefined) throw new Error("restore needs --input FILE");
  // Without either, the embedded default (./data) would be restored into wherever this runs.
  if (values.config === undefined && values.root === undefined)
    throw new Error(
      "restore needs --config FILE (the registry's config, for its storage root) or --root DIR",
    );
  if (values.config !== undefined && values.root !== undefined)
    throw new Error("restore takes --config FILE or --root DIR, not both");
  const root = values.root ?? loadConfig(values.config).storage.filesystem.rootdirectory;
  checkStorageRoot(root, values.root !== undefined ? "--root" : undefined);
  const report = await restoreArchive(root, values.input, { force: values.force });
  process.stdout.write(
    `restore: ${report.files} files, ${report.blobs} blobs (${report.bytes} bytes) verified and restored into ${root}\n`,
  );
  return 0;
}
