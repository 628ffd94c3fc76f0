/**
 * Hot metadata (tag → digest, "this repository has that manifest / blob") kept in memory so a pull
 * does not touch storage. Content is immutable by digest; what changes is which names point where,
 * so every change is invalidated everywhere before it is acknowledged: locally, and in the other
 * worker processes through the `InvalidationBus`. Entries also expire after `ttlMs`, which bounds
 * how long a change made behind the registry's back (a restore, another process) stays unseen.
 */
export interface InvalidationBus {
  /** Tells every other process to drop `keys`; resolves once they have. */
  publish(keys: string[]): Promise<void>;
  /** Registers the handler for invalidations published by other processes. */
  subscribe(handler: (keys: string[]) => void): void;
}

/**
 * Where several replicas keep the cache instead (Redis, see coordination/cache-store.ts), so no
 * replica holds a copy another could leave stale. Every change bumps the key's version before the
 * change is acknowledged; a value read from storage is stored only if the version it was read
 * under is still current, so a read that raced a change never caches the old value.
 */
export interface SharedCacheStore {
  /** The cached value (JSON), or the key's current version to store a value read now under. */
  get(key: string): Promise<{ value: string } | { version: string }>;
  /** Stores `value` if the key's version is still `version`. */
  set(key: string, value: string, version: string, ttlMs: number): Promise<void>;
  /** Drops `keys` and bumps their versions; rejects (UNAVAILABLE) when it could not. */
  invalidate(keys: string[]): Promise<void>;
}

/** Versions remembered between a miss and the `set` that follows it, at most. */
const MAX_PENDING = 10_000;

/** For a single process: nobody else to tell. */
export const localBus: InvalidationBus = {
  publish: async () => {},
  subscribe: () => {},
};

interface Entry<V> {
  value: V;
  expires: number;
}

export class MetadataCache {
  private readonly entries = new Map<string, Entry<unknown>>();
  /** With a shared store: the version each missed key was read under (the oldest outstanding). */
  private readonly pending = new Map<string, string>();

  constructor(
    private readonly bus: InvalidationBus = localBus,
    private readonly ttlMs = 5_000,
    private readonly maxEntries = 200_000,
    private readonly shared?: SharedCacheStore,
  ) {
    bus.subscribe((keys) => {
      for (const key of keys) this.entries.delete(key);
    });
  }

  /** Entries held in this process (none with a shared store), expired ones included. */
  get size(): number {
    return this.entries.size;
  }

  get<V>(key: string): V | undefined | Promise<V | undefined> {
    if (this.shared !== undefined) return this.sharedGet<V>(this.shared, key);
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires < Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value as V;
  }

  set<V>(key: string, value: V): void {
    if (this.shared !== undefined) {
      const version = this.pending.get(key);
      if (version === undefined) return;
      this.pending.delete(key);
      // Best effort: a value not cached is read from storage again.
      this.shared.set(key, JSON.stringify(value), version, this.ttlMs).catch(() => {});
      return;
    }
    if (this.entries.size >= this.maxEntries) {
      // Drop the oldest tenth; cheaper than exact LRU and good enough for metadata.
      let drop = Math.ceil(this.maxEntries / 10);
      for (const k of this.entries.keys()) {
        this.entries.delete(k);
        if (--drop === 0) break;
      }
    }
    this.entries.set(key, { value, expires: Date.now() + this.ttlMs });
  }

  /** Drops `keys` here and in every other process before resolving. */
  async invalidate(keys: string[]): Promise<void> {
    if (this.shared !== undefined) return this.shared.invalidate(keys);
    for (const key of keys) this.entries.delete(key);
    await this.bus.publish(keys);
  }

  /** A miss or a failure of the shared store is a miss: the caller reads storage. */
  private async sharedGet<V>(shared: SharedCacheStore, key: string): Promise<V | undefined> {
    let found;
    try {
      found = await shared.get(key);
    } catch {
      return undefined;
    }
    if ("value" in found) return JSON.parse(found.value) as V;
    // Keep the oldest version of concurrent misses: its `set` can only be refused, never wrong.
    if (!this.pending.has(key)) {
      if (this.pending.size >= MAX_PENDING) this.pending.delete(this.pending.keys().next().value!);
      this.pending.set(key, found.version);
    }
    return undefined;
  }
}

export const cacheKeys = {
  tag: (name: string, tag: string) => `t\0${name}\0${tag}`,
  revision: (name: string, digest: string) => `r\0${name}\0${digest}`,
  blob: (name: string, digest: string) => `b\0${name}\0${digest}`,
  tagList: (name: string) => `l\0${name}`,
};
