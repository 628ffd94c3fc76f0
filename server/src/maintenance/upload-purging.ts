import type { Config } from "../config/schema.js";
import { parseDuration } from "../config/duration.js";
import type { Logger } from "../log.js";
import { purgeUploads, type UploadClaim } from "../registry/upload-purge.js";
import type { StorageDriver } from "../storage/driver.js";

/** What several replicas purge through (see coordination/upload-purge-turn.ts). */
interface Coordination {
  turn(intervalMs: number): Promise<(() => Promise<void>) | undefined>;
  claim: UploadClaim;
}

/** Purged sessions named in the log, at most. */
const LOGGED = 100;

/**
 * `storage.maintenance.uploadpurging`: removes abandoned upload sessions older than `age`, every
 * `interval` (first a minute after start, or one interval when shorter), as the reference
 * registry does. On by default. With Redis (replicas on one storage), one replica purges per
 * interval, and a session a replica is using is never removed, whatever its start time says
 * (see SharedUploadPurging); while Redis is unreachable nothing is purged.
 */
export function startUploadPurging(config: Config, driver: StorageDriver, logger: Logger): () => void {
  const purging = config.storage.maintenance?.uploadpurging ?? {
    enabled: true,
    age: "168h",
    interval: "24h",
    dryrun: false,
  };
  if (!purging.enabled) return () => {};
  const age = parseDuration(purging.age);
  const interval = parseDuration(purging.interval);
  let coordination: Promise<Coordination> | undefined;
  const run = async () => {
    let release: (() => Promise<void>) | undefined;
    const startedAt = new Date();
    try {
      let claim: UploadClaim | undefined;
      if (config.redis !== undefined) {
        const shared = await (coordination ??= coordinate(config, logger));
        release = await shared.turn(interval);
        if (release === undefined) return;
        claim = shared.claim;
      }
      const { purged, live, abandoned } = await purgeUploads(
        driver,
        new Date(Date.now() - age),
        purging.dryrun,
        claim,
      );
      logger.info(
        {
          startedAt: startedAt.toISOString(),
          purged: purged.length,
          ...(purged.length > 0 ? { sessions: purged.slice(0, LOGGED) } : {}),
          live: live.length,
          abandonedWrites: abandoned.length,
          dryRun: purging.dryrun,
        },
        "upload purge ran",
      );
    } catch (error) {
      // A failed load of the coordination code is tried again next time, not kept.
      if (
        coordination !== undefined &&
        (await coordination.then(
          () => false,
          () => true,
        ))
      )
        coordination = undefined;
      logger.error({ err: error }, "upload purge failed");
    } finally {
      await release?.();
    }
  };
  // The first a minute after start; an interval shorter than that is its own first wait.
  const first = interval > 60_000 ? setTimeout(run, 60_000).unref() : undefined;
  const every = setInterval(run, interval).unref();
  return () => {
    clearTimeout(first);
    clearInterval(every);
  };
}

/** Loaded only with Redis configured: a registry without it never loads the Redis client. */
async function coordinate(config: Config, logger: Logger): Promise<Coordination> {
  const [{ SharedState }, { SharedLocks }, { SharedUploadPurging }] = await Promise.all([
    import("../coordination/shared-state.js"),
    import("../coordination/locks.js"),
    import("../coordination/upload-purge-turn.js"),
  ]);
  const shared = new SharedState(config.redis!, logger.child({ task: "upload purge" }));
  const purging = new SharedUploadPurging(shared, new SharedLocks(shared, logger));
  return { turn: (ms) => purging.turn(ms), claim: (id) => purging.claim(id) };
}
