import type { StorageDriver } from "../storage/driver.js";
import { REPOSITORIES, layout } from "../storage/layout.js";
import { listOrEmpty } from "./links.js";
import { walkRepositoryTree } from "./catalog.js";

export interface PurgeResult {
  /** `<repository>/<upload id>` of each abandoned upload removed (or, on a dry run, that would be). */
  readonly purged: string[];
  /** Those old enough that a replica is still using (see `claim`): kept. */
  readonly live: string[];
  /** What interrupted writes left outside upload sessions (S3 multipart uploads), removed with them. */
  readonly abandoned: string[];
}

/**
 * Claims a session that looks abandoned for removal: its release once claimed, undefined when it
 * is in use after all (several replicas: a request is writing to it, or did a moment ago).
 */
export type UploadClaim = (id: string) => Promise<(() => Promise<void>) | undefined>;

/**
 * Removes upload sessions started before `startedBefore` (abandoned pushes), as the reference
 * registry's `storage.maintenance.uploadpurging` does. A session whose start time cannot be read
 * counts as abandoned. With `claim`, a session is removed only once claimed, and held while it
 * is. Then what interrupted writes left in the store outside any session, started before the
 * same time.
 */
export async function purgeUploads(
  driver: StorageDriver,
  startedBefore: Date,
  dryRun = false,
  claim?: UploadClaim,
): Promise<PurgeResult> {
  const purged: string[] = [];
  const live: string[] = [];
  await walkRepositoryTree(driver, async (name, children) => {
    if (!children.includes("_uploads")) return;
    for (const id of await listOrEmpty(driver, `${REPOSITORIES}/${name}/_uploads`)) {
      const started = await driver
        .getContent(layout.uploadStartedAt(name, id))
        .then((b) => new Date(b.toString("utf8").trim()))
        .catch(() => new Date(0));
      if (started.getTime() >= startedBefore.getTime()) continue;
      const release = claim === undefined ? undefined : await claim(id);
      if (claim !== undefined && release === undefined) {
        live.push(`${name}/${id}`);
        continue;
      }
      try {
        if (!dryRun) await driver.delete(layout.uploadDir(name, id));
        purged.push(`${name}/${id}`);
      } finally {
        await release?.();
      }
    }
  });
  // After the sessions (whose own multipart uploads went with them): what no session holds.
  const abandoned = (await driver.purgeAbandoned?.(startedBefore, dryRun)) ?? [];
  return { purged, live, abandoned };
}
