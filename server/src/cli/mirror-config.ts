import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { parseSyncManifest } from "../sync/manifest.js";
import {
  mirrorConfig,
  NODE_CONFIG_DIRS,
  RUNTIME_FORMATS,
  type RuntimeFormat,
  upstreamHosts,
} from "../sync/mirror-config.js";

export const MIRROR_CONFIG_USAGE = `  mirror-config --format containerd|cri-o|k3s --manifest FILE --registry URL [--ca FILE]
                [--out DIR] [--dir NODE_DIR]
                                 the node configuration that pulls every upstream host of the sync
                                 manifest from this registry (containerd hosts.toml, CRI-O
                                 registries.conf, k3s registries.yaml); printed, or written under --out
`;

export function mirrorConfigCommand(args: string[]): number {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      format: { type: "string" },
      manifest: { type: "string" },
      registry: { type: "string" },
      ca: { type: "string" },
      out: { type: "string" },
      dir: { type: "string" },
    },
  });
  const format = values.format as RuntimeFormat | undefined;
  if (format === undefined || !RUNTIME_FORMATS.includes(format))
    throw new Error(`mirror-config needs --format ${RUNTIME_FORMATS.join("|")}`);
  if (values.manifest === undefined)
    throw new Error("mirror-config needs --manifest FILE (the sync manifest)");
  if (values.registry === undefined)
    throw new Error("mirror-config needs --registry URL (this registry, as nodes reach it)");
  let registry: URL;
  try {
    registry = new URL(values.registry);
  } catch {
    throw new Error(
      `--registry ${JSON.stringify(values.registry)} is not a URL such as https://local-registry:5000`,
    );
  }
  if (
    !["http:", "https:"].includes(registry.protocol) ||
    (registry.pathname !== "/" && registry.pathname !== "")
  )
    throw new Error(
      `--registry ${JSON.stringify(values.registry)} must be http(s)://host[:port] without a path`,
    );
  const ca = values.ca === undefined ? undefined : readFileSync(values.ca, "utf8");
  if (ca !== undefined && !ca.includes("-----BEGIN CERTIFICATE-----"))
    throw new Error(`--ca ${values.ca} holds no PEM certificate`);
  const hosts = upstreamHosts(parseSyncManifest(readFileSync(values.manifest, "utf8")));
  const dir = values.dir ?? NODE_CONFIG_DIRS[format];
  const files = mirrorConfig(hosts, { format, registry, dir, ...(ca !== undefined ? { ca } : {}) });
  for (const file of files) {
    if (values.out !== undefined) {
      const path = join(values.out, file.path);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, file.content);
    } else {
      process.stdout.write(`# ==> ${dir}/${file.path} <==\n${file.content}\n`);
    }
  }
  if (values.out !== undefined)
    process.stdout.write(
      `${files.length} files for ${hosts.join(", ")} in ${values.out} (for ${dir} on the nodes)\n`,
    );
  return 0;
}
