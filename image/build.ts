/**
 * `npm run image`: builds the registry's container image from this checkout with no Docker engine
 * and no registry outside — Debian packages through apt, the application from npm's install — as
 * an OCI image layout and an oci-archive (what `ctr images import` and `skopeo copy oci-archive:`
 * take). The same commit and the same Debian packages give the same digest: every timestamp is
 * SOURCE_DATE_EPOCH (the commit's time by default), entries are sorted, owners numeric.
 *
 *   npm run image -- [--out DIR] [--ref NAME:TAG] [--packages FILE] [--mirror URL] [--suite S]
 *                    [--refresh] [--push DEST [--dest-tls-verify=false]] [--json]
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { copyAppFiles, walk } from "./app-files.js";
import {
  type DebianSource,
  extractPackage,
  fetchPackages,
  packageList,
  parsePackageList,
  updateIndex,
} from "./debian.js";
import { writeLayer, writeTar } from "./layer.js";
import { type BuiltImage, writeLayout } from "./oci.js";
import { DEFAULT_IMAGE } from "../server/src/contract/defaults.js";
import { buildRootfs, REGISTRY_UID, RUNTIME_PACKAGES } from "./rootfs.js";

const ROOT = new URL("../../", import.meta.url).pathname;

interface PackageJson {
  name: string;
  version: string;
}

export interface BuildOptions {
  out: string;
  reference?: string;
  /** A packages.txt of an earlier build: the same Debian versions again. */
  packagesFile?: string;
  mirror: string;
  suite: string;
  cacheDir: string;
  refreshIndex: boolean;
  epoch?: number;
  log?: (line: string) => void;
}

export interface BuildResult extends BuiltImage {
  reference: string;
  layout: string;
  archive: string;
  packages: string;
  seconds: number;
}

/** What the image runs: the same as server/Dockerfile (a test compares the two). */
export const ENTRYPOINT = ["node", "--max-semi-space-size=4", "/app/dist/server/src/main.js"];
export const CMD = ["serve", "/etc/docker/registry/config.yml"];
export const HEALTHCHECK = [
  "CMD",
  "node",
  "-e",
  "fetch('http://127.0.0.1:5001/debug/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))",
];

function packageJson(): PackageJson {
  return JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as PackageJson;
}

/** The image's name when none is given: the one the constructs deploy (package name and version). */
export function defaultReference(): string {
  return `${DEFAULT_IMAGE.repository}:${DEFAULT_IMAGE.tag}`;
}

function git(args: string[]): string | undefined {
  const result = spawnSync("git", ["-C", ROOT, ...args], { encoding: "utf8" });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

function sourceDateEpoch(): number {
  const fromEnv = process.env.SOURCE_DATE_EPOCH;
  if (fromEnv !== undefined) {
    if (!/^\d+$/.test(fromEnv))
      throw new Error(`image: SOURCE_DATE_EPOCH "${fromEnv}" is not a number of seconds`);
    return Number(fromEnv);
  }
  const commit = git(["log", "-1", "--format=%ct"]);
  if (!commit) throw new Error("image: set SOURCE_DATE_EPOCH (no git commit to take the time from)");
  return Number(commit);
}

/** Compiles the native addon against the image's own Node headers (libnode-dev of the same build). */
function buildAddon(work: string, headers: string): string {
  const dir = join(work, "native");
  mkdirSync(dir, { recursive: true });
  // Every source the addon has (as server/native/build.mjs takes them), so a new one is not missed.
  for (const file of readdirSync(join(ROOT, "server/native")).filter((f) => /\.(c|h|gyp)$/.test(f)))
    copyFileSync(join(ROOT, "server/native", file), join(dir, file));
  const prefix = join(process.execPath, "../..");
  const gyp =
    process.env.npm_config_node_gyp ??
    join(prefix, "lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js");
  const result = spawnSync(process.execPath, [gyp, "rebuild", `--nodedir=${headers}/usr`], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, SOURCE_DATE_EPOCH: undefined },
  });
  if (result.status !== 0)
    throw new Error(
      `image: the native addon did not build (needs make, g++ and python3): ${(result.stderr || result.stdout).trim().split("\n").slice(-3).join(" | ")}`,
    );
  return join(dir, "build/Release/neam_native.node");
}

/** Same modes everywhere, whatever umask npm and git ran with. */
function normalizeModes(dir: string): void {
  chmodSync(dir, 0o755);
  for (const file of walk(dir)) chmodSync(file, 0o644);
  const dirs = spawnSync("find", [dir, "-type", "d"], { encoding: "utf8" })
    .stdout.split("\n")
    .filter(Boolean);
  for (const d of dirs) chmodSync(d, 0o755);
}

export async function buildImage(options: BuildOptions): Promise<BuildResult> {
  const started = Date.now();
  const log = options.log ?? (() => {});
  process.umask(0o022);
  const pkg = packageJson();
  const reference = options.reference ?? defaultReference();
  if (!/^[a-z0-9][a-z0-9._/:-]*:[\w][\w.-]{0,127}$/.test(reference))
    throw new Error(`image: --ref "${reference}" is not NAME:TAG`);
  const epoch = options.epoch ?? sourceDateEpoch();
  const created = new Date(epoch * 1000).toISOString().replace(".000Z", "Z");
  const source: DebianSource = { mirror: options.mirror, suite: options.suite, cacheDir: options.cacheDir };
  const pinned = options.packagesFile
    ? parsePackageList(readFileSync(options.packagesFile, "utf8"))
    : undefined;

  rmSync(options.out, { recursive: true, force: true });
  const work = join(options.out, "work");
  mkdirSync(work, { recursive: true });

  log(`debian ${options.suite}: package index`);
  updateIndex(source, options.refreshIndex);
  const packages = fetchPackages(source, RUNTIME_PACKAGES, pinned);
  const node = packages.find((p) => p.name === "nodejs");
  if (!node) throw new Error("image: apt did not resolve nodejs");
  const [headers] = fetchPackages(source, ["libnode-dev"], new Map([["libnode-dev", node.version]])).filter(
    (p) => p.name === "libnode-dev",
  );
  log(`debian ${options.suite}: ${packages.length} packages (nodejs ${node.version})`);

  const rootfs = join(work, "rootfs");
  buildRootfs(rootfs, packages);

  log("native addon against the image's Node headers");
  const headersDir = join(work, "headers");
  extractPackage(headers!, headersDir);
  const addon = buildAddon(work, headersDir);

  log("application files");
  const app = join(work, "app-layer");
  copyAppFiles(ROOT, join(app, "app"), { addon });
  mkdirSync(join(app, "etc/docker/registry"), { recursive: true });
  cpSync(join(ROOT, "server/config.default.yml"), join(app, "etc/docker/registry/config.yml"));
  normalizeModes(join(app, "app"));
  normalizeModes(join(app, "etc"));
  mkdirSync(join(app, "var/lib/registry"), { recursive: true, mode: 0o755 });

  log("layers");
  const base = await writeLayer([{ dir: rootfs, owner: 0, group: 0 }], join(work, "base.tar"), epoch);
  const application = await writeLayer(
    [
      { dir: app, paths: ["app", "etc"], owner: 0, group: 0 },
      { dir: app, paths: ["var/lib/registry"], owner: REGISTRY_UID, group: REGISTRY_UID, noRecursion: true },
    ],
    join(work, "app.tar"),
    epoch,
  );

  const revision = git(["rev-parse", "HEAD"]);
  const layout = join(options.out, "oci");
  const image = writeLayout(
    layout,
    reference,
    [base, application],
    {
      user: `${REGISTRY_UID}:${REGISTRY_UID}`,
      env: [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "NODE_ENV=production",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
      ],
      entrypoint: ENTRYPOINT,
      cmd: CMD,
      workingDir: "/app",
      exposedPorts: [5000, 5001],
      volumes: ["/var/lib/registry"],
      labels: {
        "org.opencontainers.image.title": pkg.name,
        "org.opencontainers.image.version": pkg.version,
        ...(revision && { "org.opencontainers.image.revision": revision }),
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": `debian:${options.suite} (${packages.length} packages, unpacked)`,
      },
      healthcheck: { test: HEALTHCHECK, intervalSeconds: 30, timeoutSeconds: 3, startPeriodSeconds: 10 },
    },
    created,
    [
      `debian ${options.suite}: ${packages.map((p) => `${p.name}=${p.version}`).join(" ")}`,
      `${pkg.name} ${pkg.version}: /app, /etc/docker/registry/config.yml, /var/lib/registry`,
    ],
  );
  const archive = join(options.out, `${pkg.name}-${pkg.version}.oci.tar`);
  await writeTar(layout, archive, epoch);
  const packagesFile = join(options.out, "packages.txt");
  writeFileSync(packagesFile, packageList(packages));
  rmSync(work, { recursive: true, force: true });
  const result: BuildResult = {
    ...image,
    reference,
    layout,
    archive,
    packages: packagesFile,
    seconds: (Date.now() - started) / 1000,
  };
  writeFileSync(join(options.out, "image.json"), `${JSON.stringify(summary(result), null, 2)}\n`);
  return result;
}

function summary(result: BuildResult): Record<string, unknown> {
  return {
    reference: result.reference,
    manifestDigest: result.manifestDigest,
    size: result.size,
    layers: result.layers.map((l) => ({ digest: l.digest, size: l.size })),
    archive: result.archive,
    archiveSize: statSync(result.archive).size,
    seconds: result.seconds,
  };
}

/** `--push`: the built layout into a registry with skopeo (credentials from NEAM_REGISTRY_USERNAME/PASSWORD). */
export function push(
  result: Pick<BuildResult, "reference" | "layout">,
  destination: string,
  tlsVerify: boolean,
): void {
  const args = ["copy", "--quiet", `--dest-tls-verify=${tlsVerify}`];
  const user = process.env.NEAM_REGISTRY_USERNAME;
  if (user) args.push("--dest-creds", `${user}:${process.env.NEAM_REGISTRY_PASSWORD ?? ""}`);
  const tag = result.reference.slice(result.reference.lastIndexOf(":") + 1);
  args.push(`oci:${result.layout}:${tag}`, `docker://${destination}`);
  const copy = spawnSync("skopeo", args, { encoding: "utf8" });
  if (copy.error) throw new Error("image: --push needs skopeo (apt-get install skopeo)");
  if (copy.status !== 0) throw new Error(`image: push to ${destination} failed: ${copy.stderr.trim()}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: "string", default: join(ROOT, "dist/image") },
      ref: { type: "string" },
      packages: { type: "string" },
      mirror: {
        type: "string",
        default: process.env.NEAM_IMAGE_DEBIAN_MIRROR ?? "http://deb.debian.org/debian",
      },
      suite: { type: "string", default: "trixie" },
      cache: { type: "string", default: join(ROOT, ".cache/image") },
      refresh: { type: "boolean", default: false },
      push: { type: "string" },
      "dest-tls-verify": { type: "string", default: "true" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  const json = values.json;
  const result = await buildImage({
    out: values.out,
    reference: values.ref,
    packagesFile: values.packages,
    mirror: values.mirror,
    suite: values.suite,
    cacheDir: values.cache,
    refreshIndex: values.refresh,
    log: json || !process.stderr.isTTY ? undefined : (line) => process.stderr.write(`${line}\n`),
  });
  if (values.push) push(result, values.push, values["dest-tls-verify"] !== "false");
  if (json) console.log(JSON.stringify(summary(result)));
  else
    console.log(
      `${result.reference} ${result.manifestDigest}\n` +
        `  ${(result.size / 1048576).toFixed(1)} MiB compressed in ${result.layers.length} layers, built in ${result.seconds.toFixed(1)} s\n` +
        `  layout ${result.layout}\n  archive ${result.archive}   (ctr -n k8s.io images import ${result.archive})` +
        (values.push ? `\n  pushed to ${values.push}` : ""),
    );
}

if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  });
}
