import type { Logger } from "../log.js";
import type { RegistryOptions } from "../registry/registry.js";
import { RedisCacheStore } from "./cache-store.js";
import { RedisCollectionGuard } from "./guard.js";
import { SharedLocks } from "./locks.js";
import type { SharedState } from "./shared-state.js";

/**
 * The maintenance lanes: `storage` (collections and backups, which exclude each other), `sync`,
 * and `backup` (one backup at a time across replicas; taken without waiting).
 */
export type LaneName = "storage" | "sync" | "backup";

/** A replica's turn in a lane: given back with `release`; `check` throws once it was lost (fencing). */
export interface LaneTurn {
  release(): Promise<void>;
  check(): void;
}

/**
 * A maintenance lane's lock lives this long without renewal: a replica killed during a collection
 * holds up the others' maintenance for this long at most.
 */
const LANE_TTL_MS = 30_000;

/** What the registry and its maintenance share through Redis in one process. */
export function sharedRegistryState(shared: SharedState, logger: Logger) {
  const locks = new SharedLocks(shared, logger);
  const registry: NonNullable<RegistryOptions["shared"]> = {
    cache: new RedisCacheStore(shared),
    guard: new RedisCollectionGuard(shared, logger),
    lockUpload: (id) => locks.uploadLock(id),
    requireReady: () => shared.requireReady(),
  };
  const lane = async (name: LaneName, wait = true): Promise<LaneTurn | undefined> => {
    const key = `maintenance:${name}`;
    const lease = wait ? await locks.acquire(key, LANE_TTL_MS) : await locks.tryAcquire(key, LANE_TTL_MS);
    return lease === undefined ? undefined : { release: () => lease.release(), check: () => lease.check() };
  };
  return { registry, lane, locks };
}
