/**
 * Requests that name an upstream, answered from where its content lives here (sync/mirror-map.ts):
 * containerd's `GET /v2/library/nginx/manifests/1.25-alpine?ns=docker.io` and the path form
 * `GET /v2/docker.io/library/nginx/…` that CRI-O, podman and k3s mirrors send (they cannot add
 * `ns`). `ns` is only a key into the map, never a host to reach. Only pulls are resolved; pushes
 * and requests without an upstream name route as they are.
 */
import { RegistryError } from "../registry/errors.js";
import { canonicalHost, looksLikeHost, type MirrorMap } from "../sync/mirror-map.js";

const PULL = /^\/v2\/(.+?)\/(manifests|blobs|referrers)\/([^/]+)$|^\/v2\/(.+?)\/(tags)\/(list)$/;
const HOST = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/i;

/** The routed path for a pull by upstream name; `path` itself for anything else. */
export function mirroredPath(path: string, method: string, ns: string | undefined, map: MirrorMap): string {
  if (method !== "GET" && method !== "HEAD") return path;
  // Every pull passes here: one without `ns` whose name does not start with a host is left as it
  // is before any regex runs.
  if (ns === undefined) {
    const slash = path.indexOf("/", 4);
    if (slash < 0 || !looksLikeHost(path.slice(4, slash))) return path;
  }
  const found = PULL.exec(path);
  if (found === null) return path;
  const name = found[1] ?? found[4]!;
  const kind = found[2] ?? found[5]!;
  const reference = found[3] ?? found[6]!;
  const tag = kind === "manifests" && !reference.includes(":") ? reference : undefined;
  let resolved;
  const first = name.slice(0, Math.max(0, name.indexOf("/")));
  if (ns !== undefined && !(looksLikeHost(first) && canonicalHost(first) === canonicalHost(ns))) {
    if (!HOST.test(ns)) throw new RegistryError("NAME_INVALID", `ns "${ns}" is not a registry host`);
    resolved = map.resolve(ns, name, tag);
  } else {
    // (k3s rewrites names into the path form and containerd adds `ns` as well: one upstream.)
    // The path form: a name whose first component is a host. Content pushed under that very
    // name is where it is looked for, unless the sync manifest put it elsewhere; Hub's other
    // names mean docker.io.
    const slash = name.indexOf("/");
    if (slash < 0 || !looksLikeHost(name.slice(0, slash))) return path;
    const host = name.slice(0, slash);
    const repository = name.slice(slash + 1);
    resolved = map.lookup(host, repository, tag) ?? { repository: `${canonicalHost(host)}/${repository}` };
  }
  // A host with a port is no repository name: unless the sync manifest maps it, the request is
  // for this registry under one of its own names (a node's hosts.toml naming it by address makes
  // containerd send `ns=local-registry:5000`), and routes as it is.
  if (resolved.repository.includes(":")) return path;
  return `/v2/${resolved.repository}/${kind}/${kind === "manifests" && resolved.tag ? resolved.tag : reference}`;
}
