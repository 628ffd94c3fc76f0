/**
 * Upstream names → where their content lives here. A node whose runtime mirrors `docker.io`
 * through this registry asks for `library/nginx:1.25-alpine` of `docker.io`; the sync manifest says
 * where that image was synced to (`docker.io/library/nginx:1.25-alpine` → `…/nginx:1.25-alpine`),
 * and an upstream name it does not list lives under its own name (`docker.io/library/nginx`), where
 * pushes, imports and syncs under the upstream name put it. No HTTP here; http/mirror.ts asks.
 */
import { parseImageReference } from "./image-reference.js";
import type { SyncManifest } from "./manifest.js";

/** Docker Hub's names for itself; all of them mean `docker.io`. */
const DOCKER_HUB = new Set([
  "docker.io",
  "index.docker.io",
  "registry-1.docker.io",
  "registry.hub.docker.com",
]);

/** The canonical form of an upstream host as the mirror map keys it. */
export function canonicalHost(host: string): string {
  const lower = host.toLowerCase();
  return DOCKER_HUB.has(lower) ? "docker.io" : lower;
}

/** `docker.io` + `nginx` is `library/nginx`, as docker, containerd and skopeo read Hub's short names. */
export function upstreamRepository(host: string, path: string): string {
  return host === "docker.io" && !path.includes("/") ? `library/${path}` : path;
}

/** A host as the first component of a path-form name (`docker.io`, `mirror.site:5443`, `localhost`). */
export function looksLikeHost(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost";
}

export interface Resolved {
  readonly repository: string;
  /** Present when the sync manifest maps this tag to a tag of another name. */
  readonly tag?: string;
}

export class MirrorMap {
  /** `host/repository` → target repository (the first image listed for it wins). */
  private readonly repositories = new Map<string, string>();
  /** `host/repository:tag` → target repository and tag. */
  private readonly tags = new Map<string, Resolved>();

  constructor(manifest?: SyncManifest) {
    for (const image of manifest?.sync.images ?? []) {
      const source = parseImageReference(image.source);
      const target = parseImageReference(image.target);
      const key = `${canonicalHost(source.registry)}/${source.repository}`;
      if (!this.repositories.has(key)) this.repositories.set(key, target.repository);
      if (source.tag !== undefined)
        this.tags.set(`${key}:${source.tag}`, {
          repository: target.repository,
          ...(target.tag !== undefined ? { tag: target.tag } : {}),
        });
    }
  }

  /** How many upstream repositories the sync manifest maps (for the log). */
  get size(): number {
    return this.repositories.size;
  }

  /**
   * Where the sync manifest put `path` (a repository of upstream `host`), and for a tag it renames,
   * which tag; undefined when it does not list the repository. Digests keep only the repository.
   */
  lookup(host: string, path: string, tag?: string): Resolved | undefined {
    const upstream = canonicalHost(host);
    const key = `${upstream}/${upstreamRepository(upstream, path)}`;
    if (tag !== undefined) {
      const exact = this.tags.get(`${key}:${tag}`);
      if (exact !== undefined) return exact;
    }
    const repository = this.repositories.get(key);
    return repository === undefined ? undefined : { repository };
  }

  /** Where `path` of `host` lives here: as the sync manifest maps it, else under its upstream name. */
  resolve(host: string, path: string, tag?: string): Resolved {
    const upstream = canonicalHost(host);
    return (
      this.lookup(host, path, tag) ?? { repository: `${upstream}/${upstreamRepository(upstream, path)}` }
    );
  }
}
