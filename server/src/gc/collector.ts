import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { layout } from "../storage/layout.js";
import type { BlobStore } from "../registry/blobs.js";
import { walkRepositoryTree } from "../registry/catalog.js";
import type { Digest } from "../registry/digest.js";
import { layersOf, revisionsOf, storedBlobs } from "../registry/inventory.js";
import { listOrEmpty, readLink } from "../registry/links.js";
import type { ManifestStore, StoredManifest } from "../registry/manifests.js";

export interface CollectionOptions {
  /**
   * Also delete manifests no tag reaches (directly, through an index, or as a referrer of one that
   * is reached), as the reference registry's `garbage-collect --delete-untagged`.
   */
  readonly deleteUntagged: boolean;
  /** Report what would be deleted, delete nothing. */
  readonly dryRun: boolean;
  /**
   * Content younger than this is kept even when nothing references it yet: a push in progress has
   * uploaded its layers (or its platform manifests) but not yet the manifest that names them.
   */
  readonly gracePeriodMs: number;
}

export interface CollectionReport {
  readonly startedAt: string;
  readonly durationSeconds: number;
  readonly dryRun: boolean;
  readonly deleteUntagged: boolean;
  readonly repositories: number;
  readonly blobsKept: number;
  /** Untagged manifests removed from their repositories (`repository@digest`). */
  readonly manifestsDeleted: string[];
  /** Blobs whose data was removed. */
  readonly blobsDeleted: string[];
  readonly bytesFreed: number;
  /** Unreferenced content kept because it is younger than the grace period or was just used. */
  readonly blobsSpared: number;
  /** Problems that did not stop the run (an unreadable manifest is kept, with its blobs unmarked). */
  readonly warnings: string[];
}

/**
 * Mark and sweep over the whole registry. Marks every blob a kept manifest references (its config,
 * layers and the manifest itself); sweeps the rest. Safe to run while the registry serves: see
 * CollectionGuard for how writes during the run are protected, and `gracePeriodMs` for pushes
 * that began before it.
 */
export class GarbageCollector {
  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly manifests: ManifestStore,
  ) {}

  async collect(options: CollectionOptions): Promise<CollectionReport> {
    const started = Date.now();
    const cutoff = started - options.gracePeriodMs;
    const guard = this.blobs.guard;
    await guard.begin(options.gracePeriodMs);
    try {
      const marked = new Set<string>();
      const linkedFrom = new Map<string, string[]>();
      const manifestsDeleted: string[] = [];
      const warnings: string[] = [];
      const repositories: string[] = [];
      await walkRepositoryTree(this.driver, (name, children) => {
        if (children.includes("_manifests") || children.includes("_layers")) repositories.push(name);
      });

      for (const name of repositories) {
        const revisions = await revisionsOf(this.driver, name);
        const loaded = new Map<string, StoredManifest>();
        for (const digest of revisions) {
          try {
            loaded.set(digest.value, await this.manifests.load(digest));
          } catch (error) {
            warnings.push(`${name}@${digest.value}: manifest unreadable, kept: ${(error as Error).message}`);
          }
        }
        let kept = revisions;
        if (options.deleteUntagged) {
          // Young or unreadable revisions are kept like tagged ones, and so is all they reach.
          const roots: Digest[] = [];
          for (const digest of revisions) {
            if (!loaded.has(digest.value) || (await this.isYoung(layout.revisionLink(name, digest), cutoff)))
              roots.push(digest);
          }
          const reachable = await this.reachable(name, loaded, roots);
          kept = [];
          for (const digest of revisions) {
            const deleted =
              !reachable.has(digest.value) &&
              (options.dryRun
                ? !guard.isProtected(digest)
                : await guard.condemn(digest, () => this.manifests.delete(name, { kind: "digest", digest })));
            if (deleted) manifestsDeleted.push(`${name}@${digest.value}`);
            else kept.push(digest);
          }
        }
        for (const digest of kept) {
          marked.add(digest.value);
          for (const blob of loaded.get(digest.value)?.parsed.blobs ?? []) marked.add(blob.value);
        }
        for (const digest of await layersOf(this.driver, name)) {
          const names = linkedFrom.get(digest.value);
          if (names === undefined) linkedFrom.set(digest.value, [name]);
          else names.push(name);
        }
      }

      const blobsDeleted: string[] = [];
      let bytesFreed = 0;
      let blobsSpared = 0;
      let blobsKept = 0;
      for (const digest of await storedBlobs(this.driver)) {
        if (marked.has(digest.value)) {
          blobsKept++;
          continue;
        }
        const links = linkedFrom.get(digest.value) ?? [];
        const young = await this.anyYoung(
          [layout.blobData(digest), ...links.map((n) => layout.layerLink(n, digest))],
          cutoff,
        );
        if (young || guard.isProtected(digest)) {
          blobsSpared++;
          continue;
        }
        const size = await this.sizeOf(digest);
        if (options.dryRun) {
          blobsDeleted.push(digest.value);
          bytesFreed += size;
        } else if (await guard.condemn(digest, () => this.blobs.remove(digest, links))) {
          blobsDeleted.push(digest.value);
          bytesFreed += size;
        } else {
          blobsSpared++;
        }
      }
      return {
        startedAt: new Date(started).toISOString(),
        durationSeconds: (Date.now() - started) / 1000,
        dryRun: options.dryRun,
        deleteUntagged: options.deleteUntagged,
        repositories: repositories.length,
        blobsKept,
        manifestsDeleted,
        blobsDeleted,
        bytesFreed,
        blobsSpared,
        warnings,
      };
    } finally {
      guard.end();
    }
  }

  /**
   * Revisions of `name` reached from its tags and `roots`: those, the manifests their indexes
   * list, and the referrers of anything reached, to a fixed point.
   */
  private async reachable(
    name: string,
    loaded: ReadonlyMap<string, StoredManifest>,
    roots: readonly Digest[],
  ): Promise<Set<string>> {
    const reached = new Set<string>();
    const pending: string[] = [];
    const reach = (digest: string) => {
      if (reached.has(digest)) return;
      reached.add(digest);
      pending.push(digest);
    };
    for (const root of roots) reach(root.value);
    // From storage, not the tag cache: a collection must see every tag.
    for (const tag of await listOrEmpty(this.driver, layout.tagsDir(name))) {
      const digest = await readLink(this.driver, layout.tagCurrentLink(name, tag));
      if (digest !== undefined) reach(digest.value);
    }
    const referrersOf = new Map<string, string[]>();
    for (const manifest of loaded.values()) {
      const subject = manifest.parsed.subject?.value;
      if (subject === undefined) continue;
      referrersOf.set(subject, [...(referrersOf.get(subject) ?? []), manifest.digest.value]);
    }
    while (pending.length > 0) {
      const digest = pending.pop()!;
      for (const child of loaded.get(digest)?.parsed.children ?? []) reach(child.value);
      for (const referrer of referrersOf.get(digest) ?? []) reach(referrer);
    }
    return reached;
  }

  private async isYoung(path: string, cutoff: number): Promise<boolean> {
    try {
      return (await this.driver.stat(path)).modTime.getTime() > cutoff;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  private async anyYoung(paths: string[], cutoff: number): Promise<boolean> {
    for (const path of paths) if (await this.isYoung(path, cutoff)) return true;
    return false;
  }

  private async sizeOf(digest: Digest): Promise<number> {
    return (await this.blobs.globalSize(digest)) ?? 0;
  }
}
