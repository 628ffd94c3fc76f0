import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { layout } from "../storage/layout.js";
import type { Digest } from "./digest.js";
import { revisionsOf } from "./inventory.js";
import { listOrEmpty, readLink } from "./links.js";
import type { ManifestStore, StoredManifest } from "./manifests.js";

/** The manifest revisions of a repository, loaded, and which of them nothing keeps. */
export interface RepositoryManifests {
  readonly revisions: readonly Digest[];
  readonly loaded: ReadonlyMap<string, StoredManifest>;
  /**
   * Revisions no tag reaches (directly, through an index, or as a referrer of one reached), that
   * are older than the cut-off and readable: what "delete untagged" removes.
   */
  readonly unreachable: readonly Digest[];
  /** Manifests a tag names though the repository has no revision link for them (kept). */
  readonly tagTargetsWithoutRevision: readonly Digest[];
  /** Revisions whose manifest could not be read (kept, and said so). */
  readonly warnings: readonly string[];
}

/**
 * Reads a repository's manifests and decides which are unreachable. Revisions written after
 * `cutoff` (a push of a multi-arch image uploads its platform manifests before the index that
 * names them) and unreadable ones are kept, and so is everything they reach.
 */
export async function inspectRepository(
  driver: StorageDriver,
  manifests: ManifestStore,
  name: string,
  cutoff: number,
): Promise<RepositoryManifests> {
  const revisions = await revisionsOf(driver, name);
  const loaded = new Map<string, StoredManifest>();
  const warnings: string[] = [];
  for (const digest of revisions) {
    try {
      loaded.set(digest.value, await manifests.load(digest));
    } catch (error) {
      warnings.push(`${name}@${digest.value}: manifest unreadable, kept: ${(error as Error).message}`);
    }
  }
  const roots: string[] = [];
  for (const digest of revisions) {
    if (!loaded.has(digest.value) || (await modifiedAfter(driver, layout.revisionLink(name, digest), cutoff)))
      roots.push(digest.value);
  }
  // From storage, not the tag cache: nothing tagged may be missed.
  const tagTargetsWithoutRevision: Digest[] = [];
  for (const tag of await listOrEmpty(driver, layout.tagsDir(name))) {
    const digest = await readLink(driver, layout.tagCurrentLink(name, tag));
    if (digest === undefined) continue;
    roots.push(digest.value);
    // A tag still serves its manifest when the revision link is gone (another tool, a torn
    // write): that manifest and what it references are kept all the same.
    if (loaded.has(digest.value) || revisions.some((r) => r.value === digest.value)) continue;
    const manifest = await manifests.load(digest).catch(() => undefined);
    if (manifest === undefined) continue;
    loaded.set(digest.value, manifest);
    tagTargetsWithoutRevision.push(digest);
  }
  const reached = reachableFrom(roots, loaded);
  return {
    revisions,
    loaded,
    unreachable: revisions.filter((d) => !reached.has(d.value)),
    tagTargetsWithoutRevision,
    warnings,
  };
}

/** `roots`, the manifests their indexes list, and the referrers of anything reached, to a fixed point. */
function reachableFrom(roots: readonly string[], loaded: ReadonlyMap<string, StoredManifest>): Set<string> {
  const referrersOf = new Map<string, string[]>();
  for (const manifest of loaded.values()) {
    const subject = manifest.parsed.subject?.value;
    if (subject !== undefined)
      referrersOf.set(subject, [...(referrersOf.get(subject) ?? []), manifest.digest.value]);
  }
  const reached = new Set<string>();
  const pending: string[] = [];
  const reach = (digest: string) => {
    if (reached.has(digest)) return;
    reached.add(digest);
    pending.push(digest);
  };
  roots.forEach(reach);
  while (pending.length > 0) {
    const digest = pending.pop()!;
    for (const child of loaded.get(digest)?.parsed.children ?? []) reach(child.value);
    for (const referrer of referrersOf.get(digest) ?? []) reach(referrer);
  }
  return reached;
}

/** Whether the file at `path` changed after `cutoff` (ms since the epoch); false when absent. */
export async function modifiedAfter(driver: StorageDriver, path: string, cutoff: number): Promise<boolean> {
  try {
    return (await driver.stat(path)).modTime.getTime() > cutoff;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}
