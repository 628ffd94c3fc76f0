import type { StorageDriver } from "../storage/driver.js";
import { REPOSITORIES } from "../storage/layout.js";
import { listOrEmpty } from "./links.js";
import { compareStrings } from "./manifests.js";

/**
 * The list of repositories: every directory under `repositories/` that holds `_manifests`, as the
 * reference registry decides it. Walked on demand; `_`-prefixed directories are never names.
 */
export class Catalog {
  constructor(private readonly driver: StorageDriver) {}

  async repositories(): Promise<string[]> {
    const found: string[] = [];
    const walk = async (prefix: string): Promise<void> => {
      const dir = prefix === "" ? REPOSITORIES : `${REPOSITORIES}/${prefix}`;
      const children = await listOrEmpty(this.driver, dir);
      if (children.includes("_manifests")) found.push(prefix);
      await Promise.all(
        children
          .filter((c) => !c.startsWith("_") && !c.startsWith("."))
          .map((c) => walk(prefix === "" ? c : `${prefix}/${c}`)),
      );
    };
    await walk("");
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
