import type { Logger } from "../log.js";
import { RegistryError } from "../registry/errors.js";
import { holderToken, KEY_PREFIX, redisUnavailable, type SharedState } from "./shared-state.js";

/** Takes the lock when free; the value names the holder and carries its fencing number. */
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. ':' .. fence
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value`;

const RENEW = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/**
 * KEYS lock, active; ARGV value, ttl, window. An upload's lock (no fencing number: what it guards
 * is one session's files, checked again by each request), and the session recorded as active now
 * (Redis' clock); entries older than the window are dropped.
 */
const ACQUIRE_UPLOAD = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) == false then return 0 end
${touchUpload(2, 3, 4)}
return 1`;

/** KEYS active; ARGV id, window. The session was active now (its request ended). */
const TOUCH_UPLOAD = touchUpload(1, 1, 2);

/**
 * KEYS lock, active; ARGV value, ttl, window, id. Claims an upload session for purging: refused
 * (0) while a request holds its lock or one held it within the window, else its lock is taken.
 */
const CLAIM_UPLOAD = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = redis.call('ZSCORE', KEYS[2], ARGV[4])
if seen and tonumber(seen) > now - tonumber(ARGV[3]) then return 0 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) == false then return 0 end
redis.call('ZREM', KEYS[2], ARGV[4])
return 1`;

/** Lua recording ARGV[idArg] as active now in KEYS[activeKey], dropping what is older than ARGV[windowArg]. */
function touchUpload(activeKey: number, idArg: number, window: number): string {
  return `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[${activeKey}], now, ARGV[${idArg}])
redis.call('ZREMRANGEBYSCORE', KEYS[${activeKey}], '-inf', now - tonumber(ARGV[${window}]))`;
}

const RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`;

/**
 * One holder of a lock in Redis. The lock expires `ttlMs` after its last renewal, so a replica
 * that dies (SIGKILL, a lost node) frees it; the holder renews it every third of that. A holder
 * that could not renew in time (paused, cut off from Redis) has lost it: `lost` says so, and
 * what it guards checks `value` in the same Redis step as each destructive action (fencing),
 * so a holder that lost the lock cannot act after another took it.
 */
export class Lease {
  lost = false;
  private readonly timer: NodeJS.Timeout;
  private renewedAt = Date.now();

  constructor(
    private readonly shared: SharedState,
    readonly key: string,
    /** `<holder>:<fencing number>`: unique for every acquisition. */
    readonly value: string,
    private readonly ttlMs: number,
    private readonly logger?: Logger,
  ) {
    this.timer = setInterval(() => void this.renew(), Math.max(50, Math.floor(ttlMs / 3)));
    this.timer.unref();
  }

  /** The number that grows with each acquisition of this lock. */
  get fence(): number {
    return Number(this.value.slice(this.value.lastIndexOf(":") + 1));
  }

  private async renew(): Promise<void> {
    if (this.lost) return;
    // Past its ttl without a renewal, another may hold it already, whatever Redis answers later.
    if (Date.now() - this.renewedAt >= this.ttlMs) return this.lose("not renewed within its ttl");
    try {
      const renewed = await this.shared.eval(RENEW, [this.key], [this.value, this.ttlMs]);
      if (renewed === 1) this.renewedAt = Date.now();
      else this.lose("taken over or expired");
    } catch {
      /* Redis unreachable: tried again at the next tick, lost once the ttl has passed. */
    }
  }

  private lose(why: string): void {
    this.lost = true;
    clearInterval(this.timer);
    this.logger?.error({ lock: this.key, why }, "lost a shared lock; the work it guards stops");
  }

  /** Throws when the lock was lost: for work that checks between steps. */
  check(): void {
    if (this.lost || Date.now() - this.renewedAt >= this.ttlMs)
      throw redisUnavailable(`lost the lock ${this.key.slice(KEY_PREFIX.length)}`);
  }

  /** Stops renewing without releasing: the caller removes the key itself. */
  stop(): void {
    clearInterval(this.timer);
    this.lost = true;
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    if (this.lost) return;
    this.lost = true;
    await this.shared.eval(RELEASE, [this.key], [this.value]).catch(() => {});
  }
}

/** Named locks in Redis with a ttl, renewal and a fencing number (see Lease). */
export class SharedLocks {
  private readonly holder = holderToken();

  constructor(
    private readonly shared: SharedState,
    private readonly logger?: Logger,
  ) {}

  /** The lease when the lock was free, undefined when someone holds it; UNAVAILABLE without Redis. */
  async tryAcquire(name: string, ttlMs: number): Promise<Lease | undefined> {
    const key = `${KEY_PREFIX}lock:${name}`;
    const value = await this.shared.eval(ACQUIRE, [key, `${key}:fence`], [this.holder, ttlMs]);
    return typeof value === "string" ? new Lease(this.shared, key, value, ttlMs, this.logger) : undefined;
  }

  /** Waits for the lock (checking every `pollMs`); UNAVAILABLE when Redis goes away meanwhile. */
  async acquire(name: string, ttlMs: number, pollMs = 200): Promise<Lease> {
    for (;;) {
      const lease = await this.tryAcquire(name, ttlMs);
      if (lease !== undefined) return lease;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  /**
   * Upload sessions: one request at a time per session across replicas, as the in-process `busy`
   * set ensures within one. The lock is renewed while the request streams. Each request also
   * marks the session active (when it starts and ends), for upload purging on any replica.
   */
  async uploadLock(id: string): Promise<() => Promise<void>> {
    const key = uploadLockKey(id);
    const value = `${this.holder}:0`;
    const taken = await this.shared.eval(
      ACQUIRE_UPLOAD,
      [key, ACTIVE_UPLOADS],
      [value, UPLOAD_LOCK_TTL_MS, id, UPLOAD_ACTIVE_WINDOW_MS],
    );
    if (taken !== 1)
      throw new RegistryError("BLOB_UPLOAD_INVALID", "another request is writing to this upload", { id });
    const lease = new Lease(this.shared, key, value, UPLOAD_LOCK_TTL_MS, this.logger);
    return async () => {
      await this.shared.eval(TOUCH_UPLOAD, [ACTIVE_UPLOADS], [id, UPLOAD_ACTIVE_WINDOW_MS]).catch(() => {});
      await lease.release();
    };
  }

  /**
   * Upload purging, for a session that looks abandoned in storage: its lock (held while the
   * session's files are removed, so no request writes to it meanwhile), or undefined when a
   * request is writing to it or one did within the last `UPLOAD_ACTIVE_WINDOW_MS` by Redis'
   * clock — whatever the session's start time, written by some replica's clock, says.
   */
  async claimUpload(id: string): Promise<(() => Promise<void>) | undefined> {
    const key = uploadLockKey(id);
    const value = `${this.holder}:0`;
    const claimed = await this.shared.eval(
      CLAIM_UPLOAD,
      [key, ACTIVE_UPLOADS],
      [value, UPLOAD_LOCK_TTL_MS, UPLOAD_ACTIVE_WINDOW_MS, id],
    );
    if (claimed !== 1) return undefined;
    const lease = new Lease(this.shared, key, value, UPLOAD_LOCK_TTL_MS, this.logger);
    return () => lease.release();
  }
}

/** A replica killed while it held an upload's lock frees it this long after. */
const UPLOAD_LOCK_TTL_MS = 15_000;
/** Upload sessions a request wrote to within this long are never purged. */
export const UPLOAD_ACTIVE_WINDOW_MS = 15 * 60_000;
/** Upload sessions by when a request last wrote to them (ms, Redis' clock), within the window. */
const ACTIVE_UPLOADS = `${KEY_PREFIX}uploads:active`;

function uploadLockKey(id: string): string {
  return `${KEY_PREFIX}lock:upload:${id}`;
}
