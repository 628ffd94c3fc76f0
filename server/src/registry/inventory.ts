import type { StorageDriver } from "../storage/driver.js";
import { BLOBS, REPOSITORIES } from "../storage/layout.js";
import { parseDigest, type Digest } from "./digest.js";
import { listOrEmpty } from "./links.js";

/**
 * Listings of what the layout holds, by digest: the blobs of the registry, and the revisions and
 * layer links of a repository. Entries that are not digests (debris from other tools) are skipped.
 */

/** Every blob directory (`blobs/<alg>/<2>/<hex>`), whether or not its data is complete. */
export async function storedBlobs(driver: StorageDriver): Promise<Digest[]> {
  const found: Digest[] = [];
  for (const algorithm of await listOrEmpty(driver, BLOBS)) {
    for (const prefix of await listOrEmpty(driver, `${BLOBS}/${algorithm}`)) {
      for (const hex of await listOrEmpty(driver, `${BLOBS}/${algorithm}/${prefix}`)) {
        const digest = digestOrUndefined(algorithm, hex);
        if (digest !== undefined && digest.hex.startsWith(prefix)) found.push(digest);
      }
    }
  }
  return found;
}

/** Manifest revisions of a repository (`_manifests/revisions/<alg>/<hex>`). */
export function revisionsOf(driver: StorageDriver, name: string): Promise<Digest[]> {
  return digestsUnder(driver, `${REPOSITORIES}/${name}/_manifests/revisions`);
}

/** Blobs linked into a repository (`_layers/<alg>/<hex>`). */
export function layersOf(driver: StorageDriver, name: string): Promise<Digest[]> {
  return digestsUnder(driver, `${REPOSITORIES}/${name}/_layers`);
}

async function digestsUnder(driver: StorageDriver, dir: string): Promise<Digest[]> {
  const found: Digest[] = [];
  for (const algorithm of await listOrEmpty(driver, dir)) {
    for (const hex of await listOrEmpty(driver, `${dir}/${algorithm}`)) {
      const digest = digestOrUndefined(algorithm, hex);
      if (digest !== undefined) found.push(digest);
    }
  }
  return found;
}

function digestOrUndefined(algorithm: string, hex: string): Digest | undefined {
  try {
    return parseDigest(`${algorithm}:${hex}`);
  } catch {
    return undefined;
  }
}

/**
 * The blobs of the registry one prefix directory (`blobs/<alg>/<2>`) at a time, so a walk of a
 * large store holds one directory's names, not every digest at once. `visit` runs for one
 * directory at a time, in order.
 */
export async function forEachBlobDirectory(
  driver: StorageDriver,
  visit: (digests: Digest[]) => Promise<void>,
): Promise<void> {
  for (const algorithm of await listOrEmpty(driver, BLOBS)) {
    for (const prefix of await listOrEmpty(driver, `${BLOBS}/${algorithm}`)) {
      const found: Digest[] = [];
      for (const hex of await listOrEmpty(driver, `${BLOBS}/${algorithm}/${prefix}`)) {
        const digest = digestOrUndefined(algorithm, hex);
        if (digest !== undefined && digest.hex.startsWith(prefix)) found.push(digest);
      }
      await visit(found);
    }
  }
}

/**
 * Runs `work` on every item with at most `limit` in flight (file system calls: a handful at once
 * keep the disk and libuv's pool busy; thousands at once only queue and hold memory). Results in
 * order; the first failure rejects once the running calls have settled.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await work(items[index]!, index);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const lanes = Array.from({ length: Math.min(limit, items.length) }, lane);
  const settled = await Promise.allSettled(lanes);
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (rejected !== undefined) throw rejected.reason;
  return results;
}
