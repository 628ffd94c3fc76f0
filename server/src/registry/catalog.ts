import type { StorageDriver } from "../storage/driver.js";
import { REPOSITORIES } from "../storage/layout.js";
import { readsForCollection } from "../gc/local-reads.js";
import { listOrEmpty } from "./links.js";
import { compareStrings } from "./manifests.js";

/**
 * Visits every directory under `repositories/` with the names it holds: `name` is the path below
 * `repositories/` ("" for the top). `_`- and `.`-prefixed directories are repository data, never
 * names, so the walk does not descend into them. The one walker of the tree; callers decide what
 * a directory holding `_manifests` or `_uploads` means to them.
 */
export async function walkRepositoryTree(
  driver: StorageDriver,
  visit: (name: string, children: readonly string[]) => Promise<void> | void,
): Promise<void> {
  const walk = async (name: string): Promise<void> => {
    const children = await listOrEmpty(driver, name === "" ? REPOSITORIES : `${REPOSITORIES}/${name}`);
    await visit(name, children);
    await Promise.all(
      children
        .filter((c) => !c.startsWith("_") && !c.startsWith("."))
        .map((c) => walk(name === "" ? c : `${name}/${c}`)),
    );
  };
  await walk("");
}

/**
 * The list of repositories: every directory under `repositories/` that holds `_manifests`, as the
 * reference registry decides it. Walked on demand.
 */
export class Catalog {
  constructor(private readonly driver: StorageDriver) {}

  async repositories(): Promise<string[]> {
    const found: string[] = [];
    // Thousands of directory listings: made synchronously in short slices on a local filesystem
    // (see readsForCollection), ten times cheaper than as many async calls.
    await walkRepositoryTree(readsForCollection(this.driver), (name, children) => {
      if (children.includes("_manifests")) found.push(name);
    });
    return found.sort(compareStrings);
  }
}

/** One page of a lexically ordered list, after `last`, at most `n` entries; `more` when cut short. */
export function paginate(all: readonly string[], n: number | undefined, last: string | undefined) {
  let start = 0;
  if (last !== undefined) {
    start = all.findIndex((item) => compareStrings(item, last) > 0);
    if (start < 0) start = all.length;
  }
  const end = n === undefined ? all.length : Math.min(all.length, start + n);
  const items = all.slice(start, end);
  return { items, more: n !== undefined && n > 0 && end < all.length };
}
