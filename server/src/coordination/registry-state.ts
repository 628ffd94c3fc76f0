import type { Logger } from "../log.js";
import type { RegistryOptions } from "../registry/registry.js";
import { RedisCacheStore } from "./cache-store.js";
import { RedisCollectionGuard } from "./guard.js";
import { SharedLocks } from "./locks.js";
import type { SharedState } from "./shared-state.js";

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
  const lane = async (name: "storage" | "sync") => {
    const lease = await locks.acquire(`maintenance:${name}`, LANE_TTL_MS);
    return () => lease.release();
  };
  return { registry, lane, locks };
}
