import { Transform, type Readable } from "node:stream";
import { Pack } from "tar";
import type { StorageDriver } from "../storage/driver.js";
import { BLOBS, REPOSITORIES } from "../storage/layout.js";
import { walkRepositoryTree } from "../registry/catalog.js";
import { listOrEmpty } from "../registry/links.js";

/** Where the layout starts, relative to the storage root: archive paths start here. */
export const ARCHIVE_ROOT = "docker/registry/v2";

/**
 * The files of a consistent backup, in the order they must be read. Writes happen in the order
 * blob → layer link → revision → tag, and only garbage collection removes blob data (the backup
 * runs as a maintenance task, so never during one). Reading in the reverse order — every
 * repository's tags, then its revisions, layer links and referrers, then all blobs — means that
 * whatever a captured file names was written before it and is captured too, even while pushes
 * go on. Upload sessions are not backed up.
 */
export async function backupPaths(driver: StorageDriver): Promise<string[]> {
  const paths: string[] = [];
  const collect = async (dir: string): Promise<void> => {
    for (const child of (await listOrEmpty(driver, dir)).sort()) {
      const path = `${dir}/${child}`;
      if ((await driver.stat(path).catch(() => undefined))?.isDir) await collect(path);
      else paths.push(path);
    }
  };
  const repositories: string[] = [];
  await walkRepositoryTree(driver, (name, children) => {
    if (children.includes("_manifests") || children.includes("_layers")) repositories.push(name);
  });
  for (const name of repositories.sort()) {
    const base = `${REPOSITORIES}/${name}`;
    for (const part of ["_manifests/tags", "_manifests/revisions", "_layers", "_referrers"])
      await collect(`${base}/${part}`);
  }
  await collect(BLOBS);
  return paths;
}

/**
 * The backup as a gzipped tar stream of `paths` (logical, from `backupPaths`), relative to the
 * storage root so that `tar -xzf backup.tgz -C <rootdirectory>` restores it too. Needs a driver
 * whose files are local (filesystem storage). `fence` is called before each piece of the archive
 * goes out and before its end: once it throws (the backup lost its turn to another replica,
 * whose collection may remove what is still to be read), the stream fails instead of ending as
 * an archive that could silently miss a blob.
 */
export function backupArchive(
  driver: StorageDriver,
  paths: readonly string[],
  fence: () => void = () => {},
): Readable {
  if (driver.localFile === undefined) throw new Error(`backup needs filesystem storage, not ${driver.name}`);
  const root = driver.localFile("/");
  const pack = new Pack({ cwd: root, gzip: true, portable: true, noDirRecurse: true });
  const checked = (done: (error?: Error | null) => void, then: () => void) => {
    try {
      fence();
    } catch (error) {
      return done(error as Error);
    }
    then();
    done();
  };
  const out = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      checked(done, () => this.push(chunk));
    },
    flush(done) {
      checked(done, () => {});
    },
  });
  pack.on("error", (error: unknown) => out.destroy(error as Error));
  // A file removed since the listing (a tag or manifest deleted meanwhile) is simply not backed up.
  pack.on("warn", (code: string, message: unknown) => {
    if (code !== "ENOENT" && !String(message).includes("ENOENT"))
      out.destroy(new Error(`backup: ${String(message)}`));
  });
  pack.pipe(out);
  for (const path of paths) pack.add(path.slice(1));
  pack.end();
  return out;
}
