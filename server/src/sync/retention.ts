import type { Registry } from "../registry/registry.js";
import type { SyncManifest } from "./manifest.js";

export interface RetentionResult {
  /** `repository:tag` */
  readonly tagsDeleted: string[];
  /** `repository@digest` */
  readonly manifestsDeleted: string[];
}

const DAY_MS = 86_400_000;
/** Untagged manifests younger than this are a push in progress, not unused. */
const CLEANUP_GRACE_MS = 3_600_000;

/**
 * The sync manifest's `policies`, applied to one repository that sync writes to. Tags the
 * manifest lists are never removed; the others (earlier versions synced before the manifest
 * moved on, or pushed by hand) are ordered by when they were last pushed:
 * - `keep_last_versions: N` keeps the N most recent tags, listed ones included;
 * - `max_image_age_days: D` removes tags pushed more than D days ago;
 * - `cleanup_unused: true` removes the manifests no tag reaches any more, so that garbage
 *   collection frees their blobs.
 * Deletions go through the registry's own operations, so they obey what clients' deletes obey:
 * refused in read-only mode and when `storage.delete.enabled` is false (the first refusal ends
 * retention for the repository; the syncer reports why).
 */
export async function applyRetention(
  registry: Registry,
  repository: string,
  listed: ReadonlySet<string>,
  policies: SyncManifest["sync"]["policies"],
  now = Date.now(),
): Promise<RetentionResult> {
  const tagsDeleted: string[] = [];
  const manifestsDeleted: string[] = [];
  const { keep_last_versions: keepLast, max_image_age_days: maxAgeDays } = policies;
  if (keepLast !== undefined || maxAgeDays !== undefined) {
    const tags = await registry.tagTimes(repository);
    const listedPresent = tags.filter((t) => listed.has(t.tag)).length;
    const others = tags.filter((t) => !listed.has(t.tag)).sort((a, b) => b.pushedAt - a.pushedAt);
    const allowance = keepLast === undefined ? Infinity : Math.max(0, keepLast - listedPresent);
    for (const [rank, { tag, pushedAt }] of others.entries()) {
      const tooMany = rank >= allowance;
      const tooOld = maxAgeDays !== undefined && pushedAt < now - maxAgeDays * DAY_MS;
      if (!tooMany && !tooOld) continue;
      await registry.deleteManifest(repository, { kind: "tag", tag });
      tagsDeleted.push(`${repository}:${tag}`);
    }
  }
  if (policies.cleanup_unused) {
    for (const digest of await registry.untaggedManifests(repository, now - CLEANUP_GRACE_MS)) {
      await registry.deleteManifest(repository, { kind: "digest", digest });
      manifestsDeleted.push(`${repository}@${digest.value}`);
    }
  }
  return { tagsDeleted, manifestsDeleted };
}
