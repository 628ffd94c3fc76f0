import cluster, { type Worker } from "node:cluster";
import { promises as fs, statSync } from "node:fs";
import type { Writable } from "node:stream";
import { Gauge, type Registry as PromRegistry } from "prom-client";
import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { FilesystemDriver } from "../storage/filesystem.js";
import { BLOBS, REPOSITORIES, ROOT } from "../storage/layout.js";
import { mapLimit, revisionsOf } from "../registry/inventory.js";
import { walkRepositoryTree } from "../registry/catalog.js";
import { listOrEmpty } from "../registry/links.js";
import { readsForCollection } from "../gc/local-reads.js";
import { METRICS } from "./names.js";
import type { SharedState } from "../coordination/shared-state.js";
import type { Lease } from "../coordination/locks.js";

/**
 * A change to what the storage figures count, said by the process that made it:
 * - `blob`: a blob directory (`blobs/<alg>/<2>`) gained or lost a blob of `bytes`;
 * - `revisions`: a repository gained or lost manifest revisions (0: its `_manifests` was written);
 * - `rescan`: something larger changed (a repository or a tree deleted): count `locus` again;
 * - `begin`: a write or delete of `locus` starts (its `blob` or `revisions` follows when it ends).
 */
export type StorageChange =
  | { kind: "begin"; locus: string }
  | { kind: "blob"; bucket: string; count: number; bytes: number }
  | { kind: "revisions"; repository: string; count: number }
  | { kind: "rescan"; locus: string };

const MESSAGE = "neam:storage-change";
/** The figures are walked again this often, in the background: what other tools did shows up. */
const REWALK_MS = 6 * 3600_000;
const BUCKET = "b:";
const REPOSITORY = "r:";
/** `t:<name>`: the repositories under a deleted tree. `all`: everything. */
const TREE = "t:";
const ALL = "all";

/**
 * Storage gauges (bytes used and free, repository, manifest and blob counts) without a walk at
 * scrape time: a store of 140,000 blobs took 33 s to walk, longer than Prometheus waits. The
 * figures are walked once in the background at start (and every few hours, to see what other
 * tools changed), and kept current from then on by the changes the registry's own writes and
 * deletes report (`ObservedFilesystemDriver`; workers send theirs to the primary, which serves
 * the metrics). Until the first walk is done the counts are not exported and `storage_stats_complete`
 * is 0.
 *
 * A walk and changes made during it: figures are kept per locus (a blob directory, a repository).
 * A change to a locus already counted is applied; one to a locus not yet counted, being counted,
 * or counted while the change was under way (between its `begin` and its end) marks it, and
 * marked loci are counted again after the pass, until none is left. In one process this is exact.
 * With workers, a change reaches the primary a little after it is made: one made while the walk
 * counts its locus may be counted twice, and two workers writing the same new blob at once both
 * report it; the next walk corrects both.
 *
 * With Redis (replicas on one storage), the figures are kept there instead, counted by one replica
 * for all from the changes every replica reports (see SharedFigures): every replica exports the
 * same figures.
 *
 * `manifest_count` is the number of manifest revisions summed over repositories (a manifest in two
 * repositories counts twice), as `_manifests/revisions` holds them; `blob_count` and
 * `storage_bytes` count each blob once, however many repositories link it.
 */
export class StorageStats {
  private readonly buckets = new Map<string, { count: number; bytes: number }>();
  private readonly repositories = new Map<string, number>();
  private totals = { blobs: 0, bytes: 0, manifests: 0 };
  private readonly counting = new Set<string>();
  private readonly marked = new Set<string>();
  /** Writes and deletes under way, by locus. */
  private readonly pending = new Map<string, number>();
  /** Loci counted while a change of theirs was under way: counted again once it ends. */
  private readonly ambiguous = new Set<string>();
  private walking: Promise<void> | undefined;
  private firstWalkDone = false;
  private lastWalk: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly reads: StorageDriver;
  private readonly shared: SharedFigures | undefined;
  private readonly gauges;
  /** Walks so far (tests and logs: a scrape never starts one). */
  walks = 0;

  constructor(
    driver: StorageDriver,
    private readonly filesystemRoot: string | undefined,
    register: PromRegistry,
    private readonly events: {
      error?: (error: unknown) => void;
      /** A full walk finished (figures, and how long it took). */
      walked?: (figures: Record<string, number>, seconds: number) => void;
    } = {},
    /** Replicas on one storage: the figures are kept in Redis for all (see SharedFigures). */
    shared?: SharedState,
  ) {
    this.reads = readsForCollection(driver);
    this.shared = shared === undefined ? undefined : new SharedFigures(shared, this.reads, events);
    const gauge = (name: string, help: string) => new Gauge({ name, help, registers: [register] });
    this.gauges = {
      bytes: gauge(METRICS.storageBytes, "Bytes of blob data stored (each blob once)."),
      free: gauge(METRICS.storageFreeBytes, "Bytes free on the storage volume (filesystem storage)."),
      capacity: gauge(
        METRICS.storageCapacityBytes,
        "Size of the storage volume in bytes (filesystem storage).",
      ),
      repositories: gauge(METRICS.repositoryCount, "Repositories in the registry."),
      manifests: gauge(
        METRICS.manifestCount,
        "Manifest revisions summed over repositories (one pushed to two repositories counts twice).",
      ),
      blobs: gauge(METRICS.blobCount, "Distinct blobs stored."),
      scanned: gauge(
        METRICS.storageScanTimestampSeconds,
        "When the last full walk of the storage finished (Unix time); changes since are counted as they happen.",
      ),
      complete: gauge(
        METRICS.storageStatsComplete,
        "1 when the storage figures are complete (walked, and every change since applied); 0 during the first walk.",
      ),
    };
    this.gauges.complete.set(0);
  }

  /** Starts the first walk (in the background) and the periodic ones. */
  start(): void {
    if (this.shared !== undefined) return this.shared.start();
    void this.walk();
    this.timer = setInterval(() => void this.walk(), REWALK_MS).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.shared?.stop();
  }

  /** Resolves when the walk under way (if any) is over. */
  async settled(): Promise<void> {
    while (this.walking !== undefined) await this.walking;
  }

  /** Sets the gauges from the figures as they are: no storage reads but `statfs`. */
  async publish(): Promise<void> {
    if (this.shared !== undefined) {
      const figures = await this.shared.figures().catch(() => undefined);
      if (figures?.walkedAt !== undefined) {
        this.gauges.bytes.set(figures.bytes);
        this.gauges.blobs.set(figures.blobs);
        this.gauges.repositories.set(figures.repositories);
        this.gauges.manifests.set(figures.manifests);
        this.gauges.scanned.set(figures.walkedAt / 1000);
      }
      // Unknown while Redis is unreachable: not complete.
      this.gauges.complete.set(figures?.walkedAt !== undefined && figures.pending === 0 ? 1 : 0);
    } else {
      if (this.firstWalkDone) {
        this.gauges.bytes.set(this.totals.bytes);
        this.gauges.blobs.set(this.totals.blobs);
        this.gauges.repositories.set(this.repositories.size);
        this.gauges.manifests.set(this.totals.manifests);
        this.gauges.scanned.set(this.lastWalk! / 1000);
      }
      this.gauges.complete.set(this.firstWalkDone && this.marked.size === 0 ? 1 : 0);
    }
    if (this.filesystemRoot !== undefined) {
      const s = await fs.statfs(this.filesystemRoot);
      this.gauges.free.set(s.bavail * s.bsize);
      this.gauges.capacity.set(s.blocks * s.bsize);
    }
  }

  /** Applies a change reported by a write or delete (this process's or a worker's). */
  apply(change: StorageChange): void {
    if (this.shared !== undefined) {
      if (change.kind !== "begin") this.shared.changed(locusOf(change));
      return;
    }
    if (change.kind === "begin") {
      this.pending.set(change.locus, (this.pending.get(change.locus) ?? 0) + 1);
      if (this.counting.has(change.locus)) this.ambiguous.add(change.locus);
      return;
    }
    const locus = locusOf(change);
    if (change.kind !== "rescan") {
      const left = (this.pending.get(locus) ?? 1) - 1;
      if (left > 0) this.pending.set(locus, left);
      else this.pending.delete(locus);
    }
    const known = change.kind === "blob" ? this.buckets.has(locus) : this.repositories.has(locus.slice(2));
    if (
      change.kind === "rescan" ||
      this.counting.has(locus) ||
      this.ambiguous.has(locus) ||
      (!this.firstWalkDone && !known)
    ) {
      if (!this.pending.has(locus)) this.ambiguous.delete(locus);
      this.mark(locus);
      return;
    }
    if (change.kind === "blob") {
      const bucket = this.buckets.get(locus) ?? { count: 0, bytes: 0 };
      bucket.count += change.count;
      bucket.bytes += change.bytes;
      if (bucket.count === 0) this.buckets.delete(locus);
      else this.buckets.set(locus, bucket);
      this.totals.blobs += change.count;
      this.totals.bytes += change.bytes;
    } else {
      this.repositories.set(
        change.repository,
        (this.repositories.get(change.repository) ?? 0) + change.count,
      );
      this.totals.manifests += change.count;
    }
  }

  /** Counts `locus` again, soon (after the walk under way, if any). */
  private mark(locus: string): void {
    this.marked.add(locus);
    if (this.walking === undefined) void this.walk(false);
  }

  /** A full walk (`full`), or a recount of the marked loci only; one at a time. */
  private walk(full = true): Promise<void> {
    if (this.walking !== undefined) return this.walking;
    this.walking = (async () => {
      try {
        const started = performance.now();
        if (full) {
          this.walks++;
          await this.walkAll();
        }
        while (this.marked.size > 0) {
          const loci = [...this.marked];
          this.marked.clear();
          if (loci.includes(ALL)) await this.walkAll();
          else await mapLimit(loci, 4, (locus) => this.recount(locus));
        }
        if (full) {
          this.firstWalkDone = true;
          this.lastWalk = Date.now();
          this.events.walked?.(
            { ...this.totals, repositories: this.repositories.size },
            (performance.now() - started) / 1000,
          );
        }
      } catch (error) {
        this.events.error?.(error);
      } finally {
        this.walking = undefined;
      }
    })();
    return this.walking;
  }

  private async walkAll(): Promise<void> {
    const buckets = await listBuckets(this.reads);
    // Buckets gone since the last walk (deleted by another tool) are dropped.
    for (const known of this.buckets.keys())
      if (!buckets.includes(known.slice(BUCKET.length))) await this.recount(known);
    await mapLimit(buckets, 4, (bucket) => this.recount(BUCKET + bucket));
    const names = await listRepositories(this.reads);
    const found = new Set(names);
    for (const known of [...this.repositories.keys()])
      if (!found.has(known)) await this.recount(REPOSITORY + known);
    await mapLimit(names, 4, (name) => this.recount(REPOSITORY + name));
  }

  /** Counts one locus from storage and replaces its figures. */
  private async recount(locus: string): Promise<void> {
    if (locus === ALL) return this.walkAll();
    if (locus.startsWith(TREE)) {
      const top = locus.slice(TREE.length);
      const under = (name: string) => name === top || name.startsWith(`${top}/`);
      const names = [...this.repositories.keys()].filter(under);
      await walkRepositoryTree(this.reads, (name, children) => {
        if (under(name) && children.includes("_manifests")) names.push(name);
      });
      await mapLimit([...new Set(names)], 4, (name) => this.recount(REPOSITORY + name));
      return;
    }
    this.counting.add(locus);
    if (this.pending.has(locus)) this.ambiguous.add(locus);
    try {
      if (locus.startsWith(BUCKET)) {
        const { count, bytes } = await countBucket(this.reads, locus);
        const old = this.buckets.get(locus) ?? { count: 0, bytes: 0 };
        this.totals.blobs += count - old.count;
        this.totals.bytes += bytes - old.bytes;
        if (count === 0) this.buckets.delete(locus);
        else this.buckets.set(locus, { count, bytes });
      } else {
        const name = locus.slice(REPOSITORY.length);
        const count = await countRepository(this.reads, name);
        this.totals.manifests += Math.max(count, 0) - (this.repositories.get(name) ?? 0);
        if (count < 0) this.repositories.delete(name);
        else this.repositories.set(name, count);
      }
    } finally {
      this.counting.delete(locus);
    }
  }

  /** Receives the changes workers report (`http.workers` > 1). */
  receiveFromWorkers(): void {
    cluster.on("message", (_worker: Worker, message: { type?: string; change?: StorageChange }) => {
      if (message?.type === MESSAGE && message.change !== undefined) this.apply(message.change);
    });
  }
}

/** The buckets (`<algorithm>/<2 hex>`) of the blob store. */
async function listBuckets(reads: StorageDriver): Promise<string[]> {
  const buckets: string[] = [];
  for (const algorithm of await listOrEmpty(reads, BLOBS))
    for (const prefix of await listOrEmpty(reads, `${BLOBS}/${algorithm}`))
      buckets.push(`${algorithm}/${prefix}`);
  return buckets;
}

/** The repositories (those with `_manifests`), under `top` when given. */
async function listRepositories(reads: StorageDriver, top?: string): Promise<string[]> {
  const names: string[] = [];
  await walkRepositoryTree(reads, (name, children) => {
    if (top !== undefined && name !== top && !name.startsWith(`${top}/`)) return;
    if (children.includes("_manifests")) names.push(name);
  });
  return names;
}

/** The blobs of a bucket locus (`b:<algorithm>/<2 hex>`) and their bytes, from storage. */
async function countBucket(reads: StorageDriver, locus: string): Promise<{ count: number; bytes: number }> {
  const dir = `${BLOBS}/${locus.slice(BUCKET.length)}`;
  let count = 0;
  let bytes = 0;
  for (const hex of await listOrEmpty(reads, dir)) {
    try {
      bytes += (await reads.stat(`${dir}/${hex}/data`)).size;
      count++;
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
  return { count, bytes };
}

/** A repository's manifest revisions, from storage; -1 when it is no repository (any more). */
async function countRepository(reads: StorageDriver, name: string): Promise<number> {
  const children = await listOrEmpty(reads, `${REPOSITORIES}/${name}`);
  return children.includes("_manifests") ? (await revisionsOf(reads, name)).length : -1;
}

/** Where the figures live in Redis (`neam-registry:` is coordination's KEY_PREFIX, not imported
 * here so that a registry without Redis never loads its client). */
const SHARED = "neam-registry:storage-stats:";
/** Per locus `<count>:<bytes>` (a repository's count is its revisions). */
const LOCI = `${SHARED}loci`;
/** `blobs`, `bytes`, `manifests`, `repositories`: the sums over LOCI. */
const TOTALS = `${SHARED}totals`;
/** Loci changed since they were last counted. */
const DIRTY = `${SHARED}dirty`;
/** When the last full walk finished (ms, Redis' clock). */
const WALKED = `${SHARED}walked`;
/** The lane whose holder counts: `lock:` + its name is SharedLocks' key. */
const LANE = "maintenance:storage-stats";
const LANE_KEY = `neam-registry:lock:${LANE}`;
const LANE_TTL_MS = 30_000;
/** How often each replica tries for the lane, and the holder counts what changed. */
const TICK_MS = 1_000;
/** Loci counted per round trip. */
const BATCH = 64;

/**
 * KEYS lane, loci, totals; ARGV lane value, locus, count, bytes. Replaces one locus' figures and
 * moves the totals by the difference, if the caller still holds the lane (fencing: -1 if not).
 */
const SET_LOCUS = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local old = redis.call('HGET', KEYS[2], ARGV[2])
local oc, ob = 0, 0
if old then
  local sep = string.find(old, ':')
  oc = tonumber(string.sub(old, 1, sep - 1))
  ob = tonumber(string.sub(old, sep + 1))
end
local c, b = tonumber(ARGV[3]), tonumber(ARGV[4])
if string.sub(ARGV[2], 1, 2) == '${REPOSITORY}' then
  redis.call('HINCRBY', KEYS[3], 'manifests', math.max(c, 0) - oc)
  if c < 0 then
    if old then
      redis.call('HDEL', KEYS[2], ARGV[2])
      redis.call('HINCRBY', KEYS[3], 'repositories', -1)
    end
  else
    redis.call('HSET', KEYS[2], ARGV[2], c .. ':0')
    if not old then redis.call('HINCRBY', KEYS[3], 'repositories', 1) end
  end
else
  redis.call('HINCRBY', KEYS[3], 'blobs', c - oc)
  redis.call('HINCRBY', KEYS[3], 'bytes', b - ob)
  if c == 0 then redis.call('HDEL', KEYS[2], ARGV[2]) else redis.call('HSET', KEYS[2], ARGV[2], c .. ':' .. b) end
end
return 1`;

/** KEYS lane, walked; ARGV lane value, rewalk. 1 when a full walk is due (none yet, or too old). */
const WALK_DUE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local walked = redis.call('GET', KEYS[2])
if walked and now - tonumber(walked) < tonumber(ARGV[2]) then return 0 end
return 1`;

const WALK_DONE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local t = redis.call('TIME')
redis.call('SET', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return 1`;

/**
 * The storage figures of replicas sharing one storage and one Redis. Each replica's writes and
 * deletes only say which loci changed (a set in Redis); one replica at a time (the holder of the
 * `storage-stats` lane, taken over within its ttl when that replica dies) counts those loci again
 * from storage, walks everything when no walk is recorded or the last is 6 h old, and keeps
 * per-locus figures and their totals in Redis, each update fenced by its lane. Every replica
 * exports the same totals; `storage_stats_complete` is 1 once a walk is recorded and no change is
 * left to count. A locus marked after its change is in storage is counted after that change, so
 * the figures are exact once the changes are counted — whichever replica made them.
 */
class SharedFigures {
  private timer: NodeJS.Timeout | undefined;
  private lease: Lease | undefined;
  private ticking = false;
  private locks: Promise<{ tryAcquire(name: string, ttlMs: number): Promise<Lease | undefined> }> | undefined;

  constructor(
    private readonly shared: SharedState,
    private readonly reads: StorageDriver,
    private readonly events: {
      error?: (error: unknown) => void;
      walked?: (figures: Record<string, number>, seconds: number) => void;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), TICK_MS).unref();
    void this.tick();
  }

  stop(): void {
    clearInterval(this.timer);
    void this.lease?.release();
  }

  /** A change to `locus` is in storage: it is counted again. */
  changed(locus: string): void {
    this.shared
      .call((redis) => redis.sadd(DIRTY, locus))
      .catch((error: unknown) => this.events.error?.(error));
  }

  async figures() {
    const [totals, walked, pending] = await this.shared.call((redis) =>
      Promise.all([redis.hgetall(TOTALS), redis.get(WALKED), redis.scard(DIRTY)]),
    );
    const n = (key: string) => Number(totals[key] ?? 0);
    return {
      blobs: n("blobs"),
      bytes: n("bytes"),
      manifests: n("manifests"),
      repositories: n("repositories"),
      walkedAt: walked === null ? undefined : Number(walked),
      pending,
    };
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      if (this.lease?.lost) this.lease = undefined;
      if (this.lease === undefined) {
        this.locks ??= import("../coordination/locks.js").then(
          ({ SharedLocks }) => new SharedLocks(this.shared),
        );
        this.lease = await (await this.locks).tryAcquire(LANE, LANE_TTL_MS);
        if (this.lease === undefined) return;
      }
      const lease = this.lease;
      const due = await this.shared.eval(WALK_DUE, [LANE_KEY, WALKED], [lease.value, REWALK_MS]);
      if (due === 1) await this.walkAll(lease);
      for (;;) {
        const loci = await this.shared.call((redis) => redis.spop(DIRTY, BATCH));
        if (loci.length === 0) break;
        try {
          await mapLimit([...new Set(loci)], 4, (locus) => this.recount(lease, locus));
        } catch (error) {
          // Counted again by whoever holds the lane next.
          await this.shared.call((redis) => redis.sadd(DIRTY, ...loci)).catch(() => {});
          throw error;
        }
      }
    } catch (error) {
      this.events.error?.(error);
    } finally {
      this.ticking = false;
    }
  }

  private async walkAll(lease: Lease): Promise<void> {
    const started = performance.now();
    const buckets = new Set((await listBuckets(this.reads)).map((b) => BUCKET + b));
    const names = new Set((await listRepositories(this.reads)).map((n) => REPOSITORY + n));
    // Loci recorded but gone from storage are counted too (to nothing).
    const known = await this.shared.call((redis) => redis.hkeys(LOCI));
    await mapLimit([...new Set([...known, ...buckets, ...names])], 4, (locus) => this.recount(lease, locus));
    if ((await this.shared.eval(WALK_DONE, [LANE_KEY, WALKED], [lease.value])) === 1) {
      const { walkedAt: _, pending: __, ...figures } = await this.figures();
      this.events.walked?.(figures, (performance.now() - started) / 1000);
    }
  }

  private async recount(lease: Lease, locus: string): Promise<void> {
    lease.check();
    if (locus === ALL) return this.walkAll(lease);
    if (locus.startsWith(TREE)) {
      const top = locus.slice(TREE.length);
      const known = (await this.shared.call((redis) => redis.hkeys(LOCI))).filter(
        (l) => l === REPOSITORY + top || l.startsWith(`${REPOSITORY}${top}/`),
      );
      const found = (await listRepositories(this.reads, top)).map((n) => REPOSITORY + n);
      await mapLimit([...new Set([...known, ...found])], 4, (l) => this.recount(lease, l));
      return;
    }
    const figures = locus.startsWith(BUCKET)
      ? await countBucket(this.reads, locus)
      : { count: await countRepository(this.reads, locus.slice(REPOSITORY.length)), bytes: 0 };
    const set = await this.shared.eval(
      SET_LOCUS,
      [LANE_KEY, LOCI, TOTALS],
      [lease.value, locus, figures.count, figures.bytes],
    );
    if (set === -1) {
      // Another replica counts now: what this one was counting is marked for it.
      await this.shared.call((redis) => redis.sadd(DIRTY, locus)).catch(() => {});
      lease.stop();
    }
  }
}

function locusOf(change: Exclude<StorageChange, { kind: "begin" }>): string {
  if (change.kind === "blob") return BUCKET + change.bucket;
  if (change.kind === "revisions") return REPOSITORY + change.repository;
  return change.locus;
}

/** Where a worker's changes go: to the primary, which keeps the figures. */
export function sendToPrimary(change: StorageChange): void {
  process.send?.({ type: MESSAGE, change });
}

const BLOB_PATH = /^\/docker\/registry\/v2\/blobs\/([^/]+)\/([^/]+)\/([^/]+)(?:\/data)?$/;
const REVISION_PATH =
  /^\/docker\/registry\/v2\/repositories\/(.+?)\/_manifests\/revisions\/([^/]+)\/([^/]+)(?:\/link)?$/;
const MANIFESTS_PATH = /^\/docker\/registry\/v2\/repositories\/(.+?)\/_manifests(?:\/|$)/;

/**
 * The filesystem driver, reporting what its writes and deletes change in the storage figures.
 * Each write or delete of a blob's data or a revision link looks at the file before and after
 * (a synchronous `stat`, a few microseconds), so a blob written again or a link already there
 * changes nothing; operations on one path are serialised in this process so two of them cannot
 * both see it absent. Larger deletes (a repository, a tree) ask for a recount.
 */
export class ObservedFilesystemDriver extends FilesystemDriver {
  private readonly busy = new Map<string, Promise<unknown>>();
  private report: (change: StorageChange) => void;

  constructor(rootDirectory: string, report: (change: StorageChange) => void = () => {}) {
    super(rootDirectory);
    this.report = report;
  }

  /** Where changes go from now on. */
  observe(report: (change: StorageChange) => void): void {
    this.report = report;
  }

  override async putContents(files: Parameters<FilesystemDriver["putContents"]>[0]): Promise<void> {
    const tracked = files.map((f) => f.path).filter((p) => tracks(p));
    if (tracked.length === 0) return super.putContents(files);
    return this.observed(tracked, () => super.putContents(files));
  }

  override async move(source: string, dest: string): Promise<void> {
    if (!tracks(dest)) return super.move(source, dest);
    return this.observed([dest], () => super.move(source, dest));
  }

  override async writer(path: string, append: boolean, options?: { durable?: boolean }): Promise<Writable> {
    const stream = await super.writer(path, append, options);
    const blob = BLOB_PATH.exec(path);
    if (blob !== null)
      stream.once("close", () => this.report({ kind: "rescan", locus: `${BUCKET}${blob[1]}/${blob[2]}` }));
    return stream;
  }

  override async delete(path: string): Promise<void> {
    if (tracks(path)) return this.observed([path], () => super.delete(path));
    const rescan = rescanFor(path);
    await super.delete(path);
    if (rescan !== undefined) this.report({ kind: "rescan", locus: rescan });
  }

  /** Runs `work` on `paths` (after other work on them), reporting what changed. */
  private async observed<T>(paths: string[], work: () => Promise<T>): Promise<T> {
    const before = Promise.all(paths.map((p) => this.busy.get(p)));
    const run = before.then(async () => {
      for (const p of paths) this.report({ kind: "begin", locus: trackedLocus(p) });
      const states = paths.map((p) => this.state(p));
      try {
        return await work();
      } finally {
        paths.forEach((p, i) => this.changed(p, states[i]!, this.state(p)));
      }
    });
    const settled = run.catch(() => {});
    for (const p of paths) this.busy.set(p, settled);
    try {
      return await run;
    } finally {
      for (const p of paths) if (this.busy.get(p) === settled) this.busy.delete(p);
    }
  }

  /** The size of the file a tracked path stands for, or -1 when absent. */
  private state(path: string): number {
    const blob = BLOB_PATH.exec(path);
    const file = blob !== null ? `${ROOT}/blobs/${blob[1]}/${blob[2]}/${blob[3]}/data` : linkOf(path);
    return statSync(this.localFile(file), { throwIfNoEntry: false })?.size ?? -1;
  }

  /** Ends what `begin` started for `path` (with a change of nothing when nothing changed). */
  private changed(path: string, before: number, after: number): void {
    const blob = BLOB_PATH.exec(path);
    if (blob !== null) {
      this.report({
        kind: "blob",
        bucket: `${blob[1]}/${blob[2]}`,
        count: (after >= 0 ? 1 : 0) - (before >= 0 ? 1 : 0),
        bytes: Math.max(after, 0) - Math.max(before, 0),
      });
      return;
    }
    const revision = REVISION_PATH.exec(path)!;
    this.report({
      kind: "revisions",
      repository: revision[1]!,
      count: (after >= 0 ? 1 : 0) - (before >= 0 ? 1 : 0),
    });
  }
}

function trackedLocus(path: string): string {
  const blob = BLOB_PATH.exec(path);
  if (blob !== null) return `${BUCKET}${blob[1]}/${blob[2]}`;
  return `${REPOSITORY}${REVISION_PATH.exec(path)![1]}`;
}

function tracks(path: string): boolean {
  return BLOB_PATH.test(path) || REVISION_PATH.test(path);
}

function linkOf(revisionPath: string): string {
  return revisionPath.endsWith("/link") ? revisionPath : `${revisionPath}/link`;
}

/** What a delete of `path` (not a blob or revision) makes worth counting again, if anything. */
function rescanFor(path: string): string | undefined {
  const clean = path.replace(/\/+$/, "");
  if (clean === "" || clean === ROOT || ROOT.startsWith(`${clean}/`)) return ALL;
  // Scratch files and our own state outside the layout count for nothing.
  if (!clean.startsWith(`${ROOT}/`)) return undefined;
  if (clean === BLOBS || clean === REPOSITORIES) return ALL;
  if (clean.startsWith(`${BLOBS}/`)) {
    const parts = clean.slice(BLOBS.length + 1).split("/");
    return parts.length === 2 ? `${BUCKET}${parts[0]}/${parts[1]}` : ALL;
  }
  if (!clean.startsWith(`${REPOSITORIES}/`)) return undefined;
  const manifests = MANIFESTS_PATH.exec(clean);
  if (manifests !== null) {
    // Tags and their indexes change no figure; anything holding revisions does.
    return /\/_manifests\/tags(\/|$)/.test(clean) ? undefined : `${REPOSITORY}${manifests[1]}`;
  }
  const name = clean.slice(REPOSITORIES.length + 1);
  // `_layers`, `_uploads`, `_referrers` of a repository hold nothing counted.
  if (name.split("/").some((part) => part.startsWith("_"))) return undefined;
  return `${TREE}${name}`;
}
