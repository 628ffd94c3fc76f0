import { readFileSync } from "node:fs";
import type { Config } from "../config/schema.js";
import { UpstreamClient } from "./upstream.js";

/** Where a registry host is reached when the config does not say: Docker Hub's API host, or HTTPS. */
export function defaultUpstreamUrl(registry: string): string {
  return registry === "docker.io" ? "https://registry-1.docker.io" : `https://${registry}`;
}

const DOCKER_HUB_HOSTS = new Set(["docker.io", "registry-1.docker.io", "index.docker.io"]);

/**
 * Token realms off the upstream's host trusted without `tokenrealms`: Docker Hub's token service
 * (its own host) for Docker Hub, none for any other registry. `host` is the registry's name or
 * its URL's host.
 */
export function defaultTokenRealms(host: string): string[] {
  return DOCKER_HUB_HOSTS.has(host) ? ["https://auth.docker.io/token"] : [];
}

/**
 * A client per upstream host for one sync run, from `sync.upstreams`. Password and CA files are
 * read for each run, so a rotated Secret is picked up without a restart.
 */
export function upstreamClients(
  upstreams: Config["sync"]["upstreams"],
  maxManifestBytes: number,
): (registry: string) => UpstreamClient {
  const clients = new Map<string, UpstreamClient>();
  return (registry) => {
    let client = clients.get(registry);
    if (client === undefined) {
      const entry = upstreams.find((u) => u.registry === registry);
      client = new UpstreamClient(
        {
          url: entry?.url ?? defaultUpstreamUrl(registry),
          ...(entry?.username !== undefined ? { username: entry.username } : {}),
          ...(entry?.passwordfile !== undefined
            ? { password: readFileSync(entry.passwordfile, "utf8").replace(/\r?\n$/, "") }
            : {}),
          ...(entry?.ca !== undefined ? { ca: readFileSync(entry.ca) } : {}),
          tokenRealms: entry?.tokenrealms ?? defaultTokenRealms(registry),
        },
        maxManifestBytes,
      );
      clients.set(registry, client);
    }
    return client;
  };
}
