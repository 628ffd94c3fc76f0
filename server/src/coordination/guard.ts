import { randomUUID } from "node:crypto";
import type { Logger } from "../log.js";
import type { Guard } from "../registry/collection-guard.js";
import type { Digest } from "../registry/digest.js";
import { unavailable } from "../registry/errors.js";
import { Lease } from "./locks.js";
import { holderToken, KEY_PREFIX, redisUnavailable, type SharedState } from "./shared-state.js";

const P = `${KEY_PREFIX}gc:`;
/** Set (with a ttl, renewed) while a collection runs, to the collector's token. */
const ACTIVE = `${P}active`;
/** Digests something relied on since the collection began. */
const PROTECTED = `${P}protected`;
/** Digests the collector is deleting now. */
const DELETING = `${P}deleting`;
/** Digests touched between collections, scored by when (ms, Redis' clock). */
const RECENT = `${P}recent`;
/** Writes in flight, scored by when they began (ms, Redis' clock). */
const IN_FLIGHT = `${P}inflight`;
/** The same writes, scored by when their hold ends unless their replica renews it. */
const IN_FLIGHT_LEASES = `${P}inflight:lease`;

/** How long the collection's mark outlives a collector that stopped renewing it (killed). */
const ACTIVE_TTL_MS = 30_000;
/** Recently touched digests kept between collections (as the one-process guard keeps). */
const MAX_RECENT = 100_000;
/**
 * A write in flight holds collections back for this long after its replica last renewed it (every
 * quarter of it, while the write lasts): a replica killed mid-write (SIGKILL, a lost node) stops
 * holding them this long after, while a live write, however slow (a move of a large blob on S3 is
 * a copy), keeps its hold.
 */
const WRITE_LEASE_MS = 20_000;
/**
 * Registered without a lease (by a replica of an earlier version during a rolling update): taken
 * for a dead writer's this long after it began.
 */
const STALE_WRITE_MS = 5 * 60_000;
const POLL_MS = 50;

const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * KEYS active, protected, deleting, recent; ARGV digest, max recent. 1 while it is being deleted.
 * Remembered in `recent` during a collection too: the push that looked may reference the digest
 * only after the next collection began, whose protections start from `recent`.
 */
const TOUCH = `${NOW_MS}
redis.call('ZADD', KEYS[4], now, ARGV[1])
local n = redis.call('ZCARD', KEYS[4])
local max = tonumber(ARGV[2])
if n > max then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, n - max - 1) end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  return redis.call('SISMEMBER', KEYS[3], ARGV[1])
end
return 0`;

/**
 * KEYS active, protected, deleting, inflight, leases; ARGV write id, lease, digests…. Every write
 * is registered as in flight, for the next collection to wait for: one that began during a
 * collection may run on past its end, into the next, whose protections start empty. During a
 * collection the digests are protected too, and those being deleted are returned (to wait for).
 */
const WRITE = `${NOW_MS}
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), ARGV[1])
local deleting = {}
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 3, #ARGV do
    redis.call('SADD', KEYS[2], ARGV[i])
    if redis.call('SISMEMBER', KEYS[3], ARGV[i]) == 1 then deleting[#deleting + 1] = ARGV[i] end
  end
end
return deleting`;

/**
 * KEYS active, protected, deleting, recent; ARGV token, ttl, grace. Marks the collection as
 * running and protects what was touched within the grace period; returns when it began (ms).
 */
const BEGIN = `${NOW_MS}
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local recent = redis.call('ZRANGEBYSCORE', KEYS[4], now - tonumber(ARGV[3]), '+inf')
for i = 1, #recent, 1000 do
  redis.call('SADD', KEYS[2], unpack(recent, i, math.min(i + 999, #recent)))
end
return now`;

/** KEYS inflight, leases; ARGV write id, lease. Extends a write's hold (0: it is no longer registered). */
const RENEW_WRITE = `${NOW_MS}
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1`;

/**
 * KEYS inflight, leases; ARGV began, stale. Writes begun before the collection and still running:
 * those whose lease ran out (their replica died) are dropped first.
 */
const UNPROTECTED = `${NOW_MS}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #expired, 1000 do
  local part = {unpack(expired, i, math.min(i + 999, #expired))}
  redis.call('ZREM', KEYS[1], unpack(part))
  redis.call('ZREM', KEYS[2], unpack(part))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1])`;

/**
 * KEYS active, protected, deleting; ARGV token, digest. -1 when this collector no longer holds
 * the collection (fencing), 0 when the digest is protected, 1 when it may be deleted now.
 */
const CONDEMN = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then return 0 end
redis.call('SADD', KEYS[3], ARGV[2])
return 1`;

const END = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1`;

/**
 * The collection guard for several processes (replicas, workers) on one storage: the same
 * protocol as CollectionGuard, with its state in Redis, so a collection on one replica protects
 * what every other replica writes or finds. Writes need Redis (UNAVAILABLE without it, before
 * they touch storage); reads (`touch`) go on without it: a push whose HEAD was not recorded
 * cannot reference the blob anyway while writes are refused.
 */
export class RedisCollectionGuard implements Guard {
  private lease: Lease | undefined;
  private readonly writeLeaseMs: number;

  constructor(
    private readonly shared: SharedState,
    private readonly logger?: Logger,
    /** `writeLeaseMs`: how long a write's hold outlives its last renewal (tests shorten it). */
    options: { writeLeaseMs?: number } = {},
  ) {
    this.writeLeaseMs = options.writeLeaseMs ?? WRITE_LEASE_MS;
  }

  touch(digest: Digest): Promise<void> | undefined {
    return this.shared
      .eval(TOUCH, [ACTIVE, PROTECTED, DELETING, RECENT], [digest.value, MAX_RECENT])
      .then((deleting) => (deleting === 1 ? this.deleted([digest.value]) : undefined))
      .catch(() => undefined);
  }

  async write<T>(digests: Iterable<Digest>, work: () => Promise<T>): Promise<T> {
    const id = randomUUID();
    const values = [...new Set([...digests].map((d) => d.value))];
    const deleting = (await this.shared.eval(
      WRITE,
      [ACTIVE, PROTECTED, DELETING, IN_FLIGHT, IN_FLIGHT_LEASES],
      [id, this.writeLeaseMs, ...values],
    )) as string[];
    // Renewed while the write lasts; a renewal Redis misses is tried again at the next tick.
    const renewal = setInterval(
      () =>
        void this.shared
          .eval(RENEW_WRITE, [IN_FLIGHT, IN_FLIGHT_LEASES], [id, this.writeLeaseMs])
          .catch(() => {}),
      Math.max(50, Math.floor(this.writeLeaseMs / 4)),
    );
    renewal.unref();
    try {
      if (deleting.length > 0) await this.deleted(deleting);
      return await work();
    } finally {
      clearInterval(renewal);
      await this.shared
        .call((redis) => redis.multi().zrem(IN_FLIGHT, id).zrem(IN_FLIGHT_LEASES, id).exec())
        .catch(() => {});
    }
  }

  async begin(gracePeriodMs: number): Promise<void> {
    const token = `${holderToken()}:${Date.now()}`;
    const began = await this.shared.eval(
      BEGIN,
      [ACTIVE, PROTECTED, DELETING, RECENT],
      [token, ACTIVE_TTL_MS, gracePeriodMs],
    );
    if (began === -1) throw unavailable("another replica is collecting garbage; try again when it is done");
    this.lease = new Lease(this.shared, ACTIVE, token, ACTIVE_TTL_MS, this.logger);
    try {
      for (;;) {
        const left = await this.shared.eval(
          UNPROTECTED,
          [IN_FLIGHT, IN_FLIGHT_LEASES],
          [began as number, STALE_WRITE_MS],
        );
        if (left === 0) break;
        this.lease.check();
        await sleep(POLL_MS);
      }
    } catch (error) {
      await this.end();
      throw error;
    }
  }

  async end(): Promise<void> {
    const lease = this.lease;
    if (lease === undefined) return;
    this.lease = undefined;
    lease.stop();
    await this.shared.eval(END, [ACTIVE, PROTECTED, DELETING], [lease.value]).catch(() => {});
  }

  async isProtected(digest: Digest): Promise<boolean> {
    return (await this.shared.call((redis) => redis.sismember(PROTECTED, digest.value))) === 1;
  }

  async condemn(digest: Digest, work: () => Promise<void>): Promise<boolean> {
    const lease = this.lease;
    if (lease === undefined) throw redisUnavailable("no collection is running here");
    lease.check();
    const verdict = await this.shared.eval(
      CONDEMN,
      [ACTIVE, PROTECTED, DELETING],
      [lease.value, digest.value],
    );
    if (verdict === -1) throw redisUnavailable("this collection lost its turn to another replica");
    if (verdict === 0) return false;
    try {
      await work();
      return true;
    } finally {
      await this.shared.call((redis) => redis.srem(DELETING, digest.value)).catch(() => {});
    }
  }

  /** Resolves once none of `digests` is being deleted (or no collection runs any more). */
  private async deleted(digests: string[]): Promise<void> {
    for (;;) {
      const still = await this.shared.call((redis) =>
        redis
          .multi()
          .exists(ACTIVE)
          .smismember(DELETING, ...digests)
          .exec(),
      );
      const active = still?.[0]?.[1] === 1;
      const members = (still?.[1]?.[1] as number[] | undefined) ?? [];
      if (!active || members.every((m) => m === 0)) return;
      await sleep(POLL_MS);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
