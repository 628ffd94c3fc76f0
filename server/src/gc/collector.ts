import type { StorageDriver } from "../storage/driver.js";
import { layout } from "../storage/layout.js";
import type { BlobStore } from "../registry/blobs.js";
import { walkRepositoryTree } from "../registry/catalog.js";
import type { Digest } from "../registry/digest.js";
import { RegistryError } from "../registry/errors.js";
import { layersOf, storedBlobs } from "../registry/inventory.js";
import type { ManifestStore } from "../registry/manifests.js";
import { inspectRepository, modifiedAfter } from "../registry/reachability.js";

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
  /**
   * Untagged manifests a client deleted while the pass ran, before it could (`repository@digest`):
   * gone as the pass meant, so not a failure.
   */
  readonly manifestsDeletedMeanwhile: string[];
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
      const manifestsDeletedMeanwhile: string[] = [];
      const warnings: string[] = [];
      const repositories: string[] = [];
      await walkRepositoryTree(this.driver, (name, children) => {
        if (children.includes("_manifests") || children.includes("_layers")) repositories.push(name);
      });

      for (const name of repositories) {
        const inspected = await inspectRepository(this.driver, this.manifests, name, cutoff);
        warnings.push(...inspected.warnings);
        const { loaded } = inspected;
        let kept: Digest[] = [...inspected.revisions, ...inspected.tagTargetsWithoutRevision];
        if (options.deleteUntagged) {
          const unreachable = new Set(inspected.unreachable.map((d) => d.value));
          kept = [...inspected.tagTargetsWithoutRevision];
          for (const digest of inspected.revisions) {
            let goneMeanwhile = false;
            const deleted =
              unreachable.has(digest.value) &&
              (options.dryRun
                ? !(await guard.isProtected(digest))
                : await guard.condemn(digest, async () => {
                    goneMeanwhile = !(await this.deleteManifest(name, digest));
                  }));
            if (goneMeanwhile) manifestsDeletedMeanwhile.push(`${name}@${digest.value}`);
            else if (deleted) manifestsDeleted.push(`${name}@${digest.value}`);
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
        if (young || (await guard.isProtected(digest))) {
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
        manifestsDeletedMeanwhile,
        blobsDeleted,
        bytesFreed,
        blobsSpared,
        warnings,
      };
    } finally {
      await guard.end();
    }
  }

  /**
   * Deletes an untagged manifest; false when it was already gone (a client deleted it after the
   * pass listed it): what the pass wanted, so it goes on.
   */
  private async deleteManifest(name: string, digest: Digest): Promise<boolean> {
    try {
      await this.manifests.delete(name, { kind: "digest", digest });
      return true;
    } catch (error) {
      if (error instanceof RegistryError && error.code === "MANIFEST_UNKNOWN") return false;
      throw error;
    }
  }

  private async anyYoung(paths: string[], cutoff: number): Promise<boolean> {
    for (const path of paths) if (await modifiedAfter(this.driver, path, cutoff)) return true;
    return false;
  }

  private async sizeOf(digest: Digest): Promise<number> {
    return (await this.blobs.globalSize(digest)) ?? 0;
  }
}
