import type { StorageDriver } from "../storage/driver.js";
import { REPOSITORIES, layout } from "../storage/layout.js";
import { listOrEmpty } from "./links.js";

export interface PurgeResult {
  /** `<repository>/<upload id>` of each abandoned upload removed (or, on a dry run, that would be). */
  readonly purged: string[];
}

/**
 * Removes upload sessions started before `startedBefore` (abandoned pushes), as the reference
 * registry's `storage.maintenance.uploadpurging` does. A session whose start time cannot be read
 * counts as abandoned.
 */
export async function purgeUploads(
  driver: StorageDriver,
  startedBefore: Date,
  dryRun = false,
): Promise<PurgeResult> {
  const purged: string[] = [];
  const visit = async (prefix: string): Promise<void> => {
    const dir = prefix === "" ? REPOSITORIES : `${REPOSITORIES}/${prefix}`;
    const children = await listOrEmpty(driver, dir);
    if (children.includes("_uploads")) {
      for (const id of await listOrEmpty(driver, `${dir}/_uploads`)) {
        const started = await driver
          .getContent(layout.uploadStartedAt(prefix, id))
          .then((b) => new Date(b.toString("utf8").trim()))
          .catch(() => new Date(0));
        if (!(started.getTime() >= startedBefore.getTime())) {
          purged.push(`${prefix}/${id}`);
          if (!dryRun) await driver.delete(layout.uploadDir(prefix, id));
        }
      }
    }
    for (const child of children) {
      if (!child.startsWith("_") && !child.startsWith("."))
        await visit(prefix === "" ? child : `${prefix}/${child}`);
    }
  };
  await visit("");
  return { purged };
}
