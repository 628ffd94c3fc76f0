/**
 * Node configuration that sends pulls of upstream names to this registry, for each upstream host
 * a sync manifest names: containerd's `certs.d/<host>/hosts.toml` (containerd adds `?ns=<host>`),
 * CRI-O/podman `registries.conf` (path form, `<registry>/<host>/…`) and k3s/RKE2
 * `registries.yaml` (path form through a rewrite). The registry is also each host's `server`,
 * so a miss never leaves the site.
 */
import { parseImageReference } from "./image-reference.js";
import type { SyncManifest } from "./manifest.js";
import { canonicalHost } from "./mirror-map.js";

export type RuntimeFormat = "containerd" | "cri-o" | "k3s";
export const RUNTIME_FORMATS: readonly RuntimeFormat[] = ["containerd", "cri-o", "k3s"];

/** Where each runtime reads its configuration on a node. */
export const NODE_CONFIG_DIRS: Record<RuntimeFormat, string> = {
  containerd: "/etc/containerd/certs.d",
  "cri-o": "/etc/containers",
  k3s: "/etc/rancher/k3s",
};

export interface MirrorConfigOptions {
  format: RuntimeFormat;
  /** This registry as nodes reach it: `https://local-registry.neam.internal:5000`. */
  registry: URL;
  /** PEM of the CA that signs the registry's certificate (written beside the config). */
  ca?: string;
  /** The directory the files land in on the node; NODE_CONFIG_DIRS by default. */
  dir?: string;
}

/** A file to write, relative to the runtime's configuration directory. */
export interface NodeFile {
  readonly path: string;
  readonly content: string;
  /** The CA certificate itself (a deployment copies it from a Secret instead). */
  readonly isCa?: boolean;
}

/** The upstream hosts a sync manifest pulls from, canonical (Hub's aliases are `docker.io`), sorted. */
export function upstreamHosts(manifest: SyncManifest): string[] {
  const hosts = new Set<string>();
  for (const image of manifest.sync.images) {
    const host = canonicalHost(parseImageReference(image.source).registry);
    // The host becomes a directory name on the nodes (certs.d/<host>): nothing but a host.
    if (!HOST.test(host)) throw new Error(`sync manifest: ${image.source}: "${host}" is not a registry host`);
    hosts.add(host);
  }
  return [...hosts].sort();
}

const HOST = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/;
const CA_FILE = "neam-registry-ca.crt";

export function mirrorConfig(hosts: string[], options: MirrorConfigOptions): NodeFile[] {
  const dir = options.dir ?? NODE_CONFIG_DIRS[options.format];
  const origin = options.registry.origin;
  const authority = options.registry.host;
  const plain = options.registry.protocol === "http:";
  const files: NodeFile[] = [];
  const header = `# Written by neam-registry mirror-config: pulls of these upstream names come from ${origin}.\n`;
  switch (options.format) {
    case "containerd":
      for (const host of hosts) {
        const ca = options.ca !== undefined ? `  ca = "${dir}/${host}/${CA_FILE}"\n` : "";
        files.push({
          path: `${host}/hosts.toml`,
          content:
            header +
            `server = "${origin}"\n\n[host."${origin}"]\n  capabilities = ["pull", "resolve"]\n${ca}`,
        });
        if (options.ca !== undefined)
          files.push({ path: `${host}/${CA_FILE}`, content: options.ca, isCa: true });
      }
      break;
    case "cri-o": {
      const blocks = hosts.map(
        (host) =>
          `[[registry]]\nprefix = "${host}"\nlocation = "${authority}/${host}"\ninsecure = ${plain}\n\n` +
          `[[registry.mirror]]\nlocation = "${authority}/${host}"\ninsecure = ${plain}\n`,
      );
      files.push({ path: "registries.conf.d/50-neam-registry.conf", content: header + blocks.join("\n") });
      if (options.ca !== undefined)
        files.push({ path: `certs.d/${authority}/ca.crt`, content: options.ca, isCa: true });
      break;
    }
    case "k3s": {
      const mirrors = hosts
        .map(
          (host) =>
            `  ${JSON.stringify(host)}:\n    endpoint:\n      - ${JSON.stringify(origin)}\n` +
            `    rewrite:\n      "^(.*)$": ${JSON.stringify(`${host}/$1`)}\n`,
        )
        .join("");
      const tls = plain
        ? ""
        : `configs:\n  ${JSON.stringify(authority)}:\n    tls:\n` +
          (options.ca !== undefined
            ? `      ca_file: ${JSON.stringify(`${dir}/${CA_FILE}`)}\n`
            : "      insecure_skip_verify: false\n");
      files.push({ path: "registries.yaml", content: `${header}mirrors:\n${mirrors}${tls}` });
      if (options.ca !== undefined) files.push({ path: CA_FILE, content: options.ca, isCa: true });
      break;
    }
  }
  return files;
}
