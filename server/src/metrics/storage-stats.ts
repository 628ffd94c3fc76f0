import { promises as fs } from "node:fs";
import { Gauge, type Registry as PromRegistry } from "prom-client";
import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { layout } from "../storage/layout.js";
import { revisionsOf, storedBlobs } from "../registry/inventory.js";
import { walkRepositoryTree } from "../registry/catalog.js";
import { METRICS } from "./names.js";

/**
 * Storage gauges (bytes used and free, repository, manifest and blob counts), computed by a walk
 * of the layout at most every `minIntervalMs`, on scrape. Runs in the primary process only.
 */
export class StorageStats {
  private lastScan = 0;
  private scanning: Promise<void> | undefined;
  private readonly gauges;

  constructor(
    private readonly driver: StorageDriver,
    private readonly filesystemRoot: string | undefined,
    register: PromRegistry,
    private readonly minIntervalMs = 30_000,
  ) {
    const gauge = (name: string, help: string) => new Gauge({ name, help, registers: [register] });
    this.gauges = {
      bytes: gauge(METRICS.storageBytes, "Bytes of blob data stored (each blob once)."),
      free: gauge(METRICS.storageFreeBytes, "Bytes free on the storage volume (filesystem storage)."),
      capacity: gauge(
        METRICS.storageCapacityBytes,
        "Size of the storage volume in bytes (filesystem storage).",
      ),
      repositories: gauge(METRICS.repositoryCount, "Repositories in the registry."),
      manifests: gauge(METRICS.manifestCount, "Manifest revisions across all repositories."),
      blobs: gauge(METRICS.blobCount, "Distinct blobs stored."),
      scanned: gauge(
        METRICS.storageScanTimestampSeconds,
        "When the storage gauges were last computed (Unix time).",
      ),
    };
  }

  /** Refreshes the gauges if they are older than the interval; concurrent callers share one walk. */
  async refresh(): Promise<void> {
    if (Date.now() - this.lastScan < this.minIntervalMs) return;
    this.scanning ??= this.scan().finally(() => {
      this.scanning = undefined;
      this.lastScan = Date.now();
    });
    await this.scanning;
  }

  private async scan(): Promise<void> {
    let bytes = 0;
    let blobs = 0;
    for (const digest of await storedBlobs(this.driver)) {
      try {
        bytes += (await this.driver.stat(layout.blobData(digest))).size;
        blobs++;
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
    let repositories = 0;
    let manifests = 0;
    await walkRepositoryTree(this.driver, async (name, children) => {
      if (!children.includes("_manifests")) return;
      repositories++;
      // Visits run concurrently: read the count after the await, or each adds to a stale total.
      const revisions = await revisionsOf(this.driver, name);
      manifests += revisions.length;
    });
    this.gauges.bytes.set(bytes);
    this.gauges.blobs.set(blobs);
    this.gauges.repositories.set(repositories);
    this.gauges.manifests.set(manifests);
    if (this.filesystemRoot !== undefined) {
      const s = await fs.statfs(this.filesystemRoot);
      this.gauges.free.set(s.bavail * s.bsize);
      this.gauges.capacity.set(s.blocks * s.bsize);
    }
    this.gauges.scanned.set(Date.now() / 1000);
  }
}
