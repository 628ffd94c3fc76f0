import { layout } from "../storage/layout.js";
import type { BlobStore } from "../registry/blobs.js";
import { walkRepositoryTree } from "../registry/catalog.js";
import type { Digest } from "../registry/digest.js";
import { exists } from "../registry/links.js";
import { forEachBlobDirectory, layersOf, mapLimit } from "../registry/inventory.js";
import type { ManifestStore } from "../registry/manifests.js";
import { inspectRepository, modifiedAfter } from "../registry/reachability.js";
import { isNotFound, type FileInfo, type StorageDriver } from "../storage/driver.js";
import { DigestSet } from "./digest-set.js";
import { readsForCollection } from "./local-reads.js";

/** Repositories inspected at once (each reads a few files at a time: see inspectRepository). */
const REPOSITORIES_AT_ONCE = 4;
/** Unmarked blobs checked (and deleted) at once. */
const SWEEPS_AT_ONCE = 16;

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
    const reads = readsForCollection(this.driver);
    await guard.begin(options.gracePeriodMs);
    try {
      const marked = new DigestSet();
      const manifestsDeleted: string[] = [];
      const manifestsDeletedMeanwhile: string[] = [];
      const warnings: string[] = [];
      const repositories: string[] = [];
      await walkRepositoryTree(reads, (name, children) => {
        if (children.includes("_manifests") || children.includes("_layers")) repositories.push(name);
      });

      // Mark: a few repositories at a time, each reading a few files at a time; what a repository
      // loaded is dropped once its marks are in the set.
      await mapLimit(repositories, REPOSITORIES_AT_ONCE, async (name) => {
        const inspected = await inspectRepository(reads, this.manifests, name, cutoff);
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
                    // Gone already: a client deleted it after the pass listed it.
                    goneMeanwhile = !(await exists(reads, layout.revisionLink(name, digest)));
                    if (!goneMeanwhile) {
                      const subject = loaded.get(digest.value)?.parsed.subject;
                      await this.manifests.removeUnreachable(name, digest, subject);
                    }
                  }));
            if (goneMeanwhile) manifestsDeletedMeanwhile.push(`${name}@${digest.value}`);
            else if (deleted) manifestsDeleted.push(`${name}@${digest.value}`);
            else kept.push(digest);
          }
        }
        for (const digest of kept) {
          marked.add(digest.algorithm, digest.hex);
          for (const blob of loaded.get(digest.value)?.parsed.blobs ?? [])
            marked.add(blob.algorithm, blob.hex);
        }
      });

      // Which repositories link each unmarked blob (only those: the marked ones stay linked).
      // Listed after marking; a link made since is a write under the guard, so protected.
      const linkedFrom = new Map<string, string[]>();
      await mapLimit(repositories, REPOSITORIES_AT_ONCE, async (name) => {
        for (const digest of await layersOf(reads, name)) {
          if (marked.has(digest.algorithm, digest.hex)) continue;
          const names = linkedFrom.get(digest.value);
          if (names === undefined) linkedFrom.set(digest.value, [name]);
          else names.push(name);
        }
      });

      // Sweep, one blob directory at a time.
      const blobsDeleted: string[] = [];
      let bytesFreed = 0;
      let blobsSpared = 0;
      let blobsKept = 0;
      await forEachBlobDirectory(reads, async (digests) => {
        const unmarked = digests.filter((d) => !marked.has(d.algorithm, d.hex));
        blobsKept += digests.length - unmarked.length;
        await mapLimit(unmarked, SWEEPS_AT_ONCE, async (digest) => {
          const links = linkedFrom.get(digest.value) ?? [];
          const data = await statOrUndefined(reads, layout.blobData(digest));
          const young =
            (data !== undefined && data.modTime.getTime() > cutoff) ||
            (await anyYoung(
              reads,
              links.map((n) => layout.layerLink(n, digest)),
              cutoff,
            ));
          if (young || (await guard.isProtected(digest))) {
            blobsSpared++;
            return;
          }
          const size = data?.size ?? 0;
          if (options.dryRun || (await guard.condemn(digest, () => this.blobs.remove(digest, links)))) {
            blobsDeleted.push(digest.value);
            bytesFreed += size;
          } else {
            blobsSpared++;
          }
        });
      });
      return {
        startedAt: new Date(started).toISOString(),
        durationSeconds: (Date.now() - started) / 1000,
        dryRun: options.dryRun,
        deleteUntagged: options.deleteUntagged,
        repositories: repositories.length,
        blobsKept,
        manifestsDeleted: manifestsDeleted.sort(),
        manifestsDeletedMeanwhile: manifestsDeletedMeanwhile.sort(),
        blobsDeleted: blobsDeleted.sort(),
        bytesFreed,
        blobsSpared,
        warnings,
      };
    } finally {
      await guard.end();
    }
  }
}

async function statOrUndefined(driver: StorageDriver, path: string): Promise<FileInfo | undefined> {
  try {
    return await driver.stat(path);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

async function anyYoung(driver: StorageDriver, paths: string[], cutoff: number): Promise<boolean> {
  for (const path of paths) if (await modifiedAfter(driver, path, cutoff)) return true;
  return false;
}
