/**
 * Bundles against skopeo, same image, same run: `bundle create` from a registry vs `skopeo copy
 * --all docker://… oci:DIR`, and `bundle import` (through the distribution API, and through the
 * admin endpoint) into an empty registry vs `skopeo copy --all oci:DIR docker://…`. The image has
 * a large layer and a few small ones, of random (incompressible) bytes, about `--bundle-size`
 * in all (1GiB by default). Also the import's peak RSS: the CLI's and the site registry's growth.
 *   npm run bench -- --only=bundle --bundle-size=64MiB
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { parseSize } from "../server/src/bundle/parts.js";
import {
  processTree,
  rssBytes,
  startRegistry,
  tempDir,
  type RegistryProcess,
} from "../test/helpers/registry.js";

const MAIN = new URL("../server/src/main.js", import.meta.url).pathname;

export interface BundleRow {
  benchmark: string;
  unit: string;
  ours: number;
  reference: number;
  target?: string;
  pass?: boolean;
}

function bundleSize(): number {
  const flag = process.argv.find((a) => a.startsWith("--bundle-size="));
  return flag === undefined ? 1 << 30 : parseSize(flag.slice("--bundle-size=".length), "--bundle-size");
}

/** Writes `size` random bytes to `path`; returns the digest. */
function randomFile(path: string, size: number): string {
  const fd = openSync(path, "w");
  const hash = createHash("sha256");
  const chunk = Buffer.alloc(4 << 20);
  try {
    for (let left = size; left > 0; left -= chunk.length) {
      const piece = chunk.subarray(0, Math.min(chunk.length, left));
      randomBytes(piece.length).copy(piece);
      hash.update(piece);
      writeSync(fd, piece);
    }
  } finally {
    closeSync(fd);
  }
  return `sha256:${hash.digest("hex")}`;
}

/** An OCI layout with one image: a layer of 60% of `size`, four sharing the rest. */
function writeLayout(dir: string, size: number): void {
  const blobs = join(dir, "blobs/sha256");
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const put = (data: Buffer, mediaType: string) => {
    const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
    writeFileSync(join(blobs, digest.slice(7)), data);
    return { mediaType, digest, size: data.length };
  };
  const large = Math.floor(size * 0.6);
  const sizes = [large, ...Array.from({ length: 4 }, () => Math.floor((size - large) / 4))];
  const layers = sizes.map((bytes, i) => {
    const scratch = join(dir, `layer-${i}`);
    const digest = randomFile(scratch, bytes);
    spawnSync("mv", [scratch, join(blobs, digest.slice(7))]);
    return { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest, size: bytes };
  });
  const config = put(
    Buffer.from(
      JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }),
    ),
    "application/vnd.oci.image.config.v1+json",
  );
  const manifest = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config,
        layers,
      }),
    ),
    "application/vnd.oci.image.manifest.v1+json",
  );
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ ...manifest, annotations: { "org.opencontainers.image.ref.name": "v1" } }],
    }),
  );
}

/** Runs a command, sampling the RSS of its process tree (and `also`'s growth) every 50 ms. */
async function timed(
  command: string,
  args: string[],
  also?: RegistryProcess,
): Promise<{ seconds: number; peakRss: number; serverGrowth: number }> {
  const baseline = also === undefined ? 0 : treeRss(also.process.pid!);
  let serverPeak = baseline;
  let peakRss = 0;
  const started = performance.now();
  const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-4096)));
  const timer = setInterval(() => {
    peakRss = Math.max(peakRss, treeRss(child.pid!));
    if (also !== undefined) serverPeak = Math.max(serverPeak, treeRss(also.process.pid!));
  }, 50);
  const status = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  clearInterval(timer);
  const seconds = (performance.now() - started) / 1000;
  if (status !== 0) throw new Error(`${command} ${args.join(" ")} exited ${status}: ${stderr}`);
  return { seconds, peakRss, serverGrowth: serverPeak - baseline };
}

function treeRss(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) {
    try {
      total += rssBytes(p);
    } catch {
      /* exited */
    }
  }
  return total;
}

const skopeo = (...args: string[]) => ["--insecure-policy", "copy", "--all", ...args];

export async function bundleBench(record: (row: BundleRow) => void): Promise<void> {
  const size = bundleSize();
  const mib = size / 2 ** 20;
  const work = tempDir("neam-bench-bundle-");
  const quiet = { config: { log: { level: "error", accesslog: { disabled: true } } } };
  const upstream = await startRegistry(quiet);
  const sites: RegistryProcess[] = [];
  try {
    const layout = join(work, "layout");
    writeLayout(layout, size);
    const populated = spawnSync(
      "skopeo",
      skopeo("--dest-tls-verify=false", `oci:${layout}:v1`, `docker://${upstream.host}/library/big:v1`),
      { encoding: "utf8" },
    );
    if (populated.status !== 0) throw new Error(`skopeo: ${populated.stderr}`);
    rmSync(layout, { recursive: true, force: true });

    const config = join(work, "config.yml");
    writeFileSync(
      config,
      stringify({
        version: 0.1,
        storage: { filesystem: { rootdirectory: join(work, "unused") } },
        sync: { upstreams: [{ registry: "docker.io", url: upstream.url }] },
      }),
    );
    const manifest = join(work, "sync-manifest.yaml");
    writeFileSync(
      manifest,
      stringify({
        sync: { images: [{ source: "docker.io/library/big:v1", target: "local-registry:5000/big:v1" }] },
      }),
    );

    // The connected side: registry → archive.
    const bundle = join(work, "site.tar");
    const create = await timed(process.execPath, [
      MAIN,
      "bundle",
      "create",
      "--manifest",
      manifest,
      "--out",
      bundle,
      "--config",
      config,
      "--json",
    ]);
    const ociDir = join(work, "oci");
    const skopeoOut = await timed(
      "skopeo",
      skopeo("--src-tls-verify=false", `docker://${upstream.host}/library/big:v1`, `oci:${ociDir}:v1`),
    );
    const bytes = statSync(bundle).size;
    record({
      benchmark: `bundle create ${mib} MiB (s) vs skopeo →oci`,
      unit: "s",
      ours: create.seconds,
      reference: skopeoOut.seconds,
    });

    // The site: archive → registry, each into an empty registry.
    const fresh = async () => {
      const site = await startRegistry(quiet);
      sites.push(site);
      return site;
    };
    const api = await fresh();
    const viaApi = await timed(
      process.execPath,
      [MAIN, "bundle", "import", bundle, "--url", api.url, "--json"],
      api,
    );
    const endpoint = await fresh();
    const viaServer = await timed(
      process.execPath,
      [MAIN, "bundle", "import", bundle, "--via-server", "--url", endpoint.url, "--json"],
      endpoint,
    );
    const plain = await fresh();
    const skopeoIn = await timed(
      "skopeo",
      skopeo("--dest-tls-verify=false", `oci:${ociDir}:v1`, `docker://${plain.host}/big:v1`),
      plain,
    );
    record({
      benchmark: `bundle import ${mib} MiB (s) vs skopeo oci→`,
      unit: "s",
      ours: viaApi.seconds,
      reference: skopeoIn.seconds,
    });
    record({
      benchmark: `bundle import --via-server ${mib} MiB (s)`,
      unit: "s",
      ours: viaServer.seconds,
      reference: skopeoIn.seconds,
    });
    const mbps = (seconds: number) => bytes / 1e6 / seconds;
    console.log(
      `  bundle ${bytes} bytes: create ${mbps(create.seconds).toFixed(0)} MB/s, import ${mbps(viaApi.seconds).toFixed(0)} MB/s, ` +
        `--via-server ${mbps(viaServer.seconds).toFixed(0)} MB/s; skopeo →oci ${mbps(skopeoOut.seconds).toFixed(0)} MB/s, ` +
        `oci→ ${mbps(skopeoIn.seconds).toFixed(0)} MB/s`,
    );
    const limit = 64 * 2 ** 20;
    record({
      benchmark: "bundle import: CLI peak RSS (MiB)",
      unit: "MiB",
      ours: viaApi.peakRss / 2 ** 20,
      reference: skopeoIn.peakRss / 2 ** 20,
    });
    record({
      benchmark: "bundle import: site RSS growth (MiB)",
      unit: "MiB",
      ours: viaApi.serverGrowth / 2 ** 20,
      reference: skopeoIn.serverGrowth / 2 ** 20,
      target: "< 64 MiB",
      pass: viaApi.serverGrowth < limit,
    });
    record({
      benchmark: "bundle import --via-server: site RSS growth (MiB)",
      unit: "MiB",
      ours: viaServer.serverGrowth / 2 ** 20,
      reference: skopeoIn.serverGrowth / 2 ** 20,
      target: "< 64 MiB",
      pass: viaServer.serverGrowth < limit,
    });
  } finally {
    for (const site of sites) await site.stop();
    await upstream.stop();
    for (const name of readdirSync(work)) rmSync(join(work, name), { recursive: true, force: true });
    for (const site of sites) rmSync(site.dir, { recursive: true, force: true });
    rmSync(upstream.dir, { recursive: true, force: true });
  }
}
