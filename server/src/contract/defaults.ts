import { readFileSync } from "node:fs";

/**
 * Values the registry and the manifests that deploy it must agree on. A leaf: it imports nothing
 * of the server, so the constructs can load it without the registry runtime.
 */

/** The public listener: the distribution API and `/debug/health` (the config's `http.addr`). */
export const REGISTRY_PORT = 5000;
/** The debug listener: Prometheus metrics and health (the config's `http.debug.addr`). */
export const METRICS_PORT = 5001;
/** Where registry:2's image reads its config; the registry's image reads it there too. */
export const CONFIG_DIR = "/etc/docker/registry";
export const CONFIG_FILE = `${CONFIG_DIR}/config.yml`;
/** The filesystem driver's default root (the config's `storage.filesystem.rootdirectory`). */
export const DATA_DIR = "/var/lib/registry";
/** Answered on both listeners: 200 while the storage driver answers, 503 otherwise. */
export const HEALTH_PATH = "/debug/health";
/** The debug listener's metrics path (the config's `http.debug.prometheus.path`). */
export const METRICS_PATH = "/metrics";
/** The image's non-root user (server/Dockerfile). */
export const RUN_AS_USER = 65532;
/** Unreferenced content younger than this survives a collection unless the request says otherwise. */
export const DEFAULT_GC_GRACE = "1h";

/**
 * This package's name and version, read from its own package.json (found by walking up from this
 * file, so it works from the clone's dist/ and from an installed package alike).
 */
export const PACKAGE: { readonly name: string; readonly version: string } = readOwnPackage();

/**
 * The image `server/Dockerfile` builds for this version (`docker build -t neam-registry:<version>`),
 * which the constructs run unless told otherwise.
 */
export const DEFAULT_IMAGE = { repository: PACKAGE.name, tag: PACKAGE.version } as const;

function readOwnPackage(): { name: string; version: string } {
  let dir = new URL(".", import.meta.url);
  for (;;) {
    let text: string | undefined;
    try {
      text = readFileSync(new URL("package.json", dir), "utf8");
    } catch {
      // no package.json here: keep walking up
    }
    if (text !== undefined) {
      const pkg = JSON.parse(text) as { name?: unknown; version?: unknown };
      if (pkg.name === "neam-registry" && typeof pkg.version === "string") {
        return { name: pkg.name, version: pkg.version };
      }
    }
    const parent = new URL("..", dir);
    if (parent.href === dir.href)
      throw new Error("neam-registry: cannot find the package's own package.json");
    dir = parent;
  }
}
