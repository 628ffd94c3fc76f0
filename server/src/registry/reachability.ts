import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { layout } from "../storage/layout.js";
import type { Digest } from "./digest.js";
import { mapLimit, revisionsOf } from "./inventory.js";
import { parseManifest } from "./manifest.js";
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

/** Reads of one repository in flight at once (manifests, links, stats). */
const READS_PER_REPOSITORY = 16;

/**
 * Reads a repository's manifests and decides which are unreachable. Revisions written after
 * `cutoff` (a push of a multi-arch image uploads its platform manifests before the index that
 * names them) and unreadable ones are kept, and so is everything they reach.
 *
 * Manifests are read from storage, not through the manifest cache: a collection reads every
 * manifest once, and filling the cache with them would only evict what clients pull. Only the
 * revisions nothing else reaches are checked for their age: reachability only grows with roots,
 * so adding the young ones afterwards gives the same answer as starting with them.
 */
export async function inspectRepository(
  driver: StorageDriver,
  _manifests: ManifestStore,
  name: string,
  cutoff: number,
): Promise<RepositoryManifests> {
  const [revisions, tags] = await Promise.all([
    revisionsOf(driver, name),
    listOrEmpty(driver, layout.tagsDir(name)),
  ]);
  const loaded = new Map<string, StoredManifest>();
  const warnings: string[] = [];
  await mapLimit(revisions, READS_PER_REPOSITORY, async (digest) => {
    try {
      loaded.set(digest.value, await readManifest(driver, digest));
    } catch (error) {
      warnings.push(`${name}@${digest.value}: manifest unreadable, kept: ${(error as Error).message}`);
    }
  });
  const revisionSet = new Set(revisions.map((d) => d.value));
  const roots: string[] = revisions.filter((d) => !loaded.has(d.value)).map((d) => d.value);
  // From storage, not the tag cache: nothing tagged may be missed.
  const tagTargetsWithoutRevision: Digest[] = [];
  const targets = await mapLimit(tags, READS_PER_REPOSITORY, (tag) =>
    readLink(driver, layout.tagCurrentLink(name, tag)),
  );
  for (const digest of targets) {
    if (digest === undefined) continue;
    roots.push(digest.value);
    // A tag still serves its manifest when the revision link is gone (another tool, a torn
    // write): that manifest and what it references are kept all the same.
    if (loaded.has(digest.value) || revisionSet.has(digest.value)) continue;
    const manifest = await readManifest(driver, digest).catch(() => undefined);
    if (manifest === undefined) continue;
    loaded.set(digest.value, manifest);
    tagTargetsWithoutRevision.push(digest);
  }
  const reach = reacher(loaded);
  reach(roots);
  const unreached = revisions.filter((d) => !reach.reached.has(d.value));
  const young = await mapLimit(unreached, READS_PER_REPOSITORY, (digest) =>
    modifiedAfter(driver, layout.revisionLink(name, digest), cutoff),
  );
  reach(unreached.filter((_, i) => young[i]).map((d) => d.value));
  return {
    revisions,
    loaded,
    unreachable: unreached.filter((d) => !reach.reached.has(d.value)),
    tagTargetsWithoutRevision,
    warnings,
  };
}

/** A manifest as stored, parsed; throws when absent or unparseable. */
async function readManifest(driver: StorageDriver, digest: Digest): Promise<StoredManifest> {
  const bytes = await driver.getContent(layout.blobData(digest));
  return { digest, bytes, parsed: parseManifest(bytes) };
}

/**
 * What `roots` reach over `loaded`: the manifests their indexes list, and the referrers of
 * anything reached, to a fixed point. Call it again with more roots to extend `reached`.
 */
function reacher(loaded: ReadonlyMap<string, StoredManifest>) {
  const referrersOf = new Map<string, string[]>();
  for (const manifest of loaded.values()) {
    const subject = manifest.parsed.subject?.value;
    if (subject === undefined) continue;
    const list = referrersOf.get(subject);
    if (list === undefined) referrersOf.set(subject, [manifest.digest.value]);
    else list.push(manifest.digest.value);
  }
  const reached = new Set<string>();
  const pending: string[] = [];
  const reach = (digest: string) => {
    if (reached.has(digest)) return;
    reached.add(digest);
    pending.push(digest);
  };
  return Object.assign(
    (roots: readonly string[]) => {
      roots.forEach(reach);
      while (pending.length > 0) {
        const digest = pending.pop()!;
        for (const child of loaded.get(digest)?.parsed.children ?? []) reach(child.value);
        for (const referrer of referrersOf.get(digest) ?? []) reach(referrer);
      }
    },
    { reached },
  );
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
