import type { SharedLocks } from "./locks.js";
import { KEY_PREFIX, type SharedState } from "./shared-state.js";

/** When upload purging last started on any replica (ms, Redis' clock). */
const LAST = `${KEY_PREFIX}uploads:purged-at`;

/** KEYS last; ARGV gap. 1, recording now, when no purge started within the gap; else 0. */
const DUE = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = redis.call('GET', KEYS[1])
if last and now - tonumber(last) < tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], now)
return 1`;

/** The purge lane's lock outlives a replica killed during a purge this long. */
const LANE_TTL_MS = 60_000;

/**
 * Upload purging with several replicas on one storage: each replica's timer fires every
 * `interval`, and the first to fire in an interval purges (in the `upload-purge` lane, so two
 * never walk the uploads at once); the others find it done and skip their turn. A purge is due
 * once 9/10 of the interval has passed since the last one began (timers drift), by Redis' clock.
 */
export class SharedUploadPurging {
  constructor(
    private readonly shared: SharedState,
    private readonly locks: SharedLocks,
  ) {}

  /** This replica's turn to purge now (release it when done), or undefined. UNAVAILABLE without Redis. */
  async turn(intervalMs: number): Promise<(() => Promise<void>) | undefined> {
    const lease = await this.locks.tryAcquire("maintenance:upload-purge", LANE_TTL_MS);
    if (lease === undefined) return undefined;
    try {
      if ((await this.shared.eval(DUE, [LAST], [Math.floor(intervalMs * 0.9)])) === 1)
        return () => lease.release();
    } catch (error) {
      await lease.release();
      throw error;
    }
    await lease.release();
    return undefined;
  }

  /** See SharedLocks.claimUpload: undefined while a replica is using the session. */
  claim(id: string): Promise<(() => Promise<void>) | undefined> {
    return this.locks.claimUpload(id);
  }
}
