import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import type { Logger } from "../log.js";
import { backupArchive, backupPaths } from "../backup/backup.js";
import type { CollectionOptions, CollectionReport } from "../gc/collector.js";
import { unavailable, unsupported } from "../registry/errors.js";
import type { Registry } from "../registry/registry.js";
import type { LaneName, LaneTurn } from "../coordination/registry-state.js";
import type { TaskName, TaskStatusStore } from "./status.js";
import type { SyncManifest } from "../sync/manifest.js";
import { Syncer, type SyncOptions, type SyncReport } from "../sync/syncer.js";
import type { UpstreamClient } from "../sync/upstream.js";
import { upstreamClients } from "../sync/upstreams.js";

export interface MaintenanceOptions {
  /** Why garbage collection cannot run online in this process (several workers); runs when absent. */
  readonly gcUnavailable?: string;
  /** Clients of the upstream registries, fresh for each sync run (see sync/upstreams.ts). */
  readonly upstreams?: () => (registry: string) => UpstreamClient;
  /**
   * Several replicas: takes the lane's shared lock, so a lane runs on one replica at a time;
   * waits for the replica that holds it, or with `wait` false answers undefined when one does.
   * UNAVAILABLE without Redis.
   */
  readonly lane?: (lane: LaneName, wait?: boolean) => Promise<LaneTurn | undefined>;
}

/** Work in a lane; `fence` throws once the lane's turn was lost to another replica. */
type LaneWork<R> = (fence: () => void) => Promise<R>;

/**
 * The registry's maintenance tasks as the admin API and the CronJobs ask for them, each run's
 * outcome recorded for the metrics and logs. Tasks wait their turn in two lanes: collections and
 * backups exclude each other (a backup must not lose a blob it has yet to read), syncs run one at
 * a time beside them (a sync's writes are safe against both, and a long sync must not make the
 * GC or backup CronJob miss its deadline).
 */
export class Maintenance {
  private readonly lanes: Record<"storage" | "sync", Promise<unknown>> = {
    storage: Promise.resolve(),
    sync: Promise.resolve(),
  };
  /** A backup is being taken by this process (with Redis, the `backup` lane says so for all). */
  private backingUp = false;

  constructor(
    private readonly registry: Registry,
    private readonly status: TaskStatusStore,
    private readonly logger: Logger,
    private readonly options: MaintenanceOptions = {},
  ) {}

  async collectGarbage(options: CollectionOptions): Promise<CollectionReport> {
    if (this.options.gcUnavailable !== undefined) throw unsupported(this.options.gcUnavailable);
    return this.run(
      "gc",
      !options.dryRun,
      () => this.registry.collectGarbage(options),
      (report) => ({
        repositories: report.repositories,
        manifests_deleted: report.manifestsDeleted.length,
        manifests_deleted_meanwhile: report.manifestsDeletedMeanwhile.length,
        blobs_deleted: report.blobsDeleted.length,
        blobs_kept: report.blobsKept,
        blobs_spared: report.blobsSpared,
        bytes_freed: report.bytesFreed,
      }),
    );
  }

  /** Mirrors the manifest's images (those of `options.schedule`) and applies its retention policies. */
  async sync(manifest: SyncManifest, options: SyncOptions = {}): Promise<SyncReport> {
    const upstreams = this.options.upstreams ?? (() => upstreamClients([], 4 * 1024 * 1024));
    return this.run(
      "sync",
      true,
      () => new Syncer(this.registry, upstreams()).run(manifest, options),
      (report) => ({
        images_synced: report.images.filter((i) => i.outcome === "synced").length,
        images_unchanged: report.images.filter((i) => i.outcome === "unchanged").length,
        images_failed: report.failed,
        bytes_fetched: report.images.reduce((n, i) => n + i.bytes, 0),
        tags_deleted: report.tagsDeleted.length,
        manifests_deleted: report.manifestsDeleted.length,
      }),
      (report) => {
        const problems = [
          ...report.images.filter((i) => i.outcome === "failed").map((i) => `${i.source}: ${i.error}`),
          ...report.retentionErrors,
        ];
        return problems.length === 0 ? undefined : problems.join("; ").slice(0, 2000);
      },
    );
  }

  /**
   * A consistent backup of the registry as a tar.gz stream (see backup/backup.ts). The task holds
   * its turn until the stream has been read to the end, so no collection removes a blob the
   * archive still has to include; a reader that goes away fails the task. One backup at a time
   * (across replicas with Redis): a second one asked for meanwhile is refused, not queued, so two
   * CronJob runs or a CronJob and an operator do not both write an archive. With several
   * replicas the archive fails (its stream ends in an error) if this replica loses its turn in
   * the storage lane: another replica's collection could then remove what it has yet to read.
   */
  async backup(): Promise<Readable> {
    const refused = () =>
      unavailable("a backup is already running (on this or another replica); try again when it is done");
    if (this.backingUp) throw refused();
    this.backingUp = true;
    let claim: LaneTurn | undefined;
    try {
      if (this.options.lane !== undefined) {
        claim = await this.options.lane("backup", false);
        if (claim === undefined) throw refused();
      }
    } catch (error) {
      this.backingUp = false;
      throw error;
    }
    const done = () => {
      this.backingUp = false;
      void claim?.release();
    };
    return new Promise<Readable>((resolve, reject) => {
      this.run(
        "backup",
        true,
        async (fence) => {
          const fenced = () => {
            fence();
            claim?.check();
          };
          const paths = await backupPaths(this.registry.driver);
          fenced();
          const archive = backupArchive(this.registry.driver, paths, fenced);
          let bytes = 0;
          archive.on("data", (chunk: Buffer) => (bytes += chunk.length));
          archive.pause();
          resolve(archive);
          await finished(archive);
          return { files: paths.length, bytes };
        },
        (result) => ({ files: result.files, bytes: result.bytes }),
      )
        .catch(reject)
        .finally(done);
    });
  }

  lastStatus(task: TaskName) {
    return this.status.read(task);
  }

  /** Runs `work` after the tasks before it; records its outcome unless it is a dry run. */
  private run<R>(
    task: TaskName,
    record: boolean,
    work: LaneWork<R>,
    counts: (result: R) => Record<string, number>,
    failed: (result: R) => string | undefined = () => undefined,
  ): Promise<R> {
    const lane = task === "sync" ? "sync" : "storage";
    const turn = this.lanes[lane].then(async () => {
      const held = await this.options.lane?.(lane);
      try {
        return await this.attempt(task, record, () => work(() => held?.check()), counts, failed);
      } finally {
        await held?.release();
      }
    });
    this.lanes[lane] = turn.catch(() => {});
    return turn;
  }

  private async attempt<R>(
    task: TaskName,
    record: boolean,
    work: () => Promise<R>,
    counts: (result: R) => Record<string, number>,
    failed: (result: R) => string | undefined,
  ): Promise<R> {
    const startedAt = new Date().toISOString();
    this.logger.info({ task }, "maintenance task started");
    try {
      const result = await work();
      const error = failed(result);
      const summary = counts(result);
      if (record) {
        await this.status.record({
          task,
          startedAt,
          finishedAt: new Date().toISOString(),
          success: error === undefined,
          counts: summary,
          ...(error !== undefined ? { error } : {}),
        });
      }
      this.logger.info({ task, ...summary, ...(error ? { error } : {}) }, "maintenance task finished");
      return result;
    } catch (error) {
      const message = (error as Error).message;
      this.logger.error({ task, err: error }, "maintenance task failed");
      if (record) {
        await this.status
          .record({
            task,
            startedAt,
            finishedAt: new Date().toISOString(),
            success: false,
            counts: {},
            error: message,
          })
          .catch(() => {});
      }
      throw error;
    }
  }
}
