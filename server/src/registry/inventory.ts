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
