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

  constructor(
    private readonly bus: InvalidationBus = localBus,
    private readonly ttlMs = 5_000,
    private readonly maxEntries = 200_000,
  ) {
    bus.subscribe((keys) => {
      for (const key of keys) this.entries.delete(key);
    });
  }

  get<V>(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires < Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value as V;
  }

  set<V>(key: string, value: V): void {
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
    for (const key of keys) this.entries.delete(key);
    await this.bus.publish(keys);
  }
}

export const cacheKeys = {
  tag: (name: string, tag: string) => `t\0${name}\0${tag}`,
  revision: (name: string, digest: string) => `r\0${name}\0${digest}`,
  blob: (name: string, digest: string) => `b\0${name}\0${digest}`,
  tagList: (name: string) => `l\0${name}`,
};
