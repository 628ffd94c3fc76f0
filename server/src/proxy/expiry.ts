import { walkRepositoryTree } from "../registry/catalog.js";
import type { Registry } from "../registry/registry.js";

/**
 * `proxy.ttl`: cached tags not confirmed against the upstream (that is, not pulled) within `ttlMs`
 * are dropped; garbage collection then frees what only they referenced. Returns `repo:tag`s.
 */
export async function expireCachedTags(
  registry: Registry,
  ttlMs: number,
  now = Date.now(),
): Promise<string[]> {
  const repositories: string[] = [];
  await walkRepositoryTree(registry.driver, (name, children) => {
    if (children.includes("_manifests")) repositories.push(name);
  });
  const expired: string[] = [];
  for (const name of repositories) {
    for (const { tag, pushedAt } of await registry.tagTimes(name)) {
      if (pushedAt >= now - ttlMs) continue;
      // The registry's own operation: refused in read-only mode, like a client's delete.
      await registry.deleteManifest(name, { kind: "tag", tag });
      expired.push(`${name}:${tag}`);
    }
  }
  return expired;
}
