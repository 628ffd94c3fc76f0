import type { Digest } from "./digest.js";

/**
 * What lets garbage collection run while the registry serves pushes, in one process.
 *
 * Every write that relies on content existing (a manifest naming its blobs, a blob linked into a
 * repository) goes through `write`; every read a push relies on (the HEAD before a skipped upload)
 * through `touch`. While a collection runs, those digests are protected: the collector `condemn`s
 * a digest only if nothing protected it, and a write or read of a digest being deleted waits for
 * the deletion, then sees the content absent (and re-creates it, or answers unknown). Collection
 * starts only after the writes already in flight have finished, so none escapes the protection.
 *
 * JavaScript runs one callback at a time, so "protected?" and "condemned" are decided atomically.
 */
/**
 * The guard's contract, so the protections can live elsewhere when several processes serve one
 * storage (Redis: coordination/guard.ts). `CollectionGuard` below is the one-process form.
 */
export interface Guard {
  /** Records that a request relies on `digest`; resolves once any deletion of it is over. */
  touch(digest: Digest): Promise<void> | undefined;
  /** Runs a write that relies on (or creates) `digests`, protected from a running collection. */
  write<T>(digests: Iterable<Digest>, work: () => Promise<T>): Promise<T>;
  /** Starts protecting; resolves once the writes that began unprotected are over. */
  begin(gracePeriodMs: number): Promise<void>;
  end(): void | Promise<void>;
  /** Whether something relied on `digest` since the collection began. */
  isProtected(digest: Digest): boolean | Promise<boolean>;
  /** Deletes with `work` unless `digest` is protected; says whether it deleted. */
  condemn(digest: Digest, work: () => Promise<void>): Promise<boolean>;
}

/** Recently touched digests remembered between collections (about 10 MB at most). */
const MAX_RECENT = 100_000;

export class CollectionGuard implements Guard {
  private collecting = false;
  private readonly protectedDigests = new Set<string>();
  private readonly deletions = new Map<string, Promise<void>>();
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Digests touched between collections, oldest first, with when. */
  private readonly recent = new Map<string, number>();

  /**
   * Records that a request relies on `digest` (a client that found a blob will reference it
   * without uploading it); resolves once any deletion of it is over. Between collections the
   * digest is remembered for a while, so a push that looked before a collection began and
   * references after it is protected too.
   */
  touch(digest: Digest): Promise<void> | undefined {
    // Remembered during a collection too: the push that looked may reference the digest only
    // after the next collection began, whose protections start from `recent` (a push answered
    // MANIFEST_BLOB_UNKNOWN in the GC race test when this was done between collections only).
    this.recent.delete(digest.value);
    this.recent.set(digest.value, Date.now());
    if (this.recent.size > MAX_RECENT) this.recent.delete(this.recent.keys().next().value!);
    if (!this.collecting) return undefined;
    this.protectedDigests.add(digest.value);
    return this.deletions.get(digest.value);
  }

  /** Runs a write that relies on (or creates) `digests`, protected from a running collection. */
  async write<T>(digests: Iterable<Digest>, work: () => Promise<T>): Promise<T> {
    const waits: Promise<void>[] = [];
    if (this.collecting) {
      for (const digest of digests) {
        this.protectedDigests.add(digest.value);
        const deletion = this.deletions.get(digest.value);
        if (deletion !== undefined) waits.push(deletion);
      }
    }
    const running = (waits.length > 0 ? Promise.all(waits).then(work) : work()) as Promise<T>;
    this.inFlight.add(running);
    try {
      return await running;
    } finally {
      this.inFlight.delete(running);
    }
  }

  /**
   * Starts protecting (what was touched within the grace period, and everything used from now
   * on), then waits for the writes that began unprotected. Ends with `end`.
   * Only one collection at a time: the caller serialises.
   */
  async begin(gracePeriodMs: number): Promise<void> {
    this.collecting = true;
    const since = Date.now() - gracePeriodMs;
    for (const [digest, at] of this.recent) if (at >= since) this.protectedDigests.add(digest);
    await Promise.allSettled([...this.inFlight]);
  }

  end(): void {
    this.collecting = false;
    this.protectedDigests.clear();
  }

  /** Whether something relied on `digest` since the collection began. */
  isProtected(digest: Digest): boolean {
    return this.protectedDigests.has(digest.value);
  }

  /**
   * Deletes what `digest` names with `work`, unless something relied on it since the collection
   * began. Says whether it deleted.
   */
  async condemn(digest: Digest, work: () => Promise<void>): Promise<boolean> {
    if (this.protectedDigests.has(digest.value) || this.deletions.has(digest.value)) return false;
    const deletion = work();
    this.deletions.set(
      digest.value,
      deletion.catch(() => {}),
    );
    try {
      await deletion;
      return true;
    } finally {
      this.deletions.delete(digest.value);
    }
  }
}
