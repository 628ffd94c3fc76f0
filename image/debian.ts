/**
 * Debian packages for the image, fetched with the machine's own apt from Debian's archive — the
 * only package source besides npm — under a private apt state, so the host's apt is untouched and
 * the image's suite (trixie, for Debian's Node 20) may differ from the host's.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface DebianSource {
  /** Archive URL, e.g. http://deb.debian.org/debian (a snapshot URL pins a date). */
  mirror: string;
  suite: string;
  /** Private apt state and downloaded .debs live here, reused by later builds. */
  cacheDir: string;
}

export interface DebianPackage {
  name: string;
  version: string;
  /** Path of the downloaded .deb. */
  file: string;
  sha256: string;
}

export class DebianError extends Error {}

function aptOptions(source: DebianSource): string[] {
  const state = join(source.cacheDir, "apt");
  return [
    `-o=Dir::State=${state}`,
    `-o=Dir::State::Lists=${state}/lists`,
    `-o=Dir::State::status=${state}/status`,
    `-o=Dir::Cache=${state}/cache`,
    `-o=Dir::Etc::SourceList=${state}/sources.list`,
    "-o=Dir::Etc::SourceParts=/nonexistent",
    "-o=Dir::Etc::Preferences=/nonexistent",
    "-o=Dir::Etc::PreferencesParts=/nonexistent",
    "-o=APT::Architecture=amd64",
    "-o=APT::Architectures=amd64",
    "-o=APT::Install-Recommends=false",
    "-o=APT::Install-Suggests=false",
    "-o=APT::Sandbox::User=root",
    "-o=Debug::NoLocking=true",
  ];
}

function apt(source: DebianSource, command: string, args: string[], cwd?: string): string {
  const result = spawnSync(command, [...aptOptions(source), ...args], {
    encoding: "utf8",
    cwd,
    maxBuffer: 64 << 20,
  });
  if (result.error)
    throw new DebianError(`image: ${command} not found (${result.error.message}); install apt`);
  if (result.status !== 0)
    throw new DebianError(
      `image: ${command} ${args.join(" ")} failed: ${result.stderr.trim().split("\n").at(-1)}`,
    );
  return result.stdout;
}

/** Reads the suite's package index into the private state (skipped when `refresh` is false and present). */
export function updateIndex(source: DebianSource, refresh: boolean): void {
  const state = join(source.cacheDir, "apt");
  mkdirSync(join(state, "lists/partial"), { recursive: true });
  mkdirSync(join(state, "cache/archives/partial"), { recursive: true });
  if (!existsSync(join(state, "status"))) writeFileSync(join(state, "status"), "");
  const list = `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${source.mirror} ${source.suite} main\n`;
  const listFile = join(state, "sources.list");
  const changed = !existsSync(listFile) || readFileSync(listFile, "utf8") !== list;
  writeFileSync(listFile, list);
  const haveIndex = readdirSync(join(state, "lists")).some(
    (f) => f.endsWith("_Packages") || f.includes("_Packages."),
  );
  if (refresh || changed || !haveIndex) apt(source, "apt-get", ["-qq", "update"]);
}

/**
 * The packages `wanted` needs, dependencies included, as apt resolves them for an empty system
 * (`pinned` name → version fixes versions, for a rebuild of an earlier image), downloaded.
 */
export function fetchPackages(
  source: DebianSource,
  wanted: string[],
  pinned?: Map<string, string>,
): DebianPackage[] {
  const request = wanted.map((name) => (pinned?.has(name) ? `${name}=${pinned.get(name)}` : name));
  const plan = apt(source, "apt-get", ["-s", "install", ...request]);
  const packages = [...plan.matchAll(/^Inst (\S+) \((\S+) /gm)].map((m) => ({ name: m[1]!, version: m[2]! }));
  if (packages.length === 0) throw new DebianError(`image: apt resolved no packages for ${wanted.join(" ")}`);
  const versions = packages.map((p) => {
    const version = pinned?.get(p.name) ?? p.version;
    return { name: p.name, version };
  });
  const debs = join(source.cacheDir, "debs");
  mkdirSync(debs, { recursive: true });
  const missing = versions.filter((p) => !findDeb(debs, p.name, p.version));
  if (missing.length > 0)
    apt(source, "apt-get", ["-qq", "download", ...missing.map((p) => `${p.name}=${p.version}`)], debs);
  return versions
    .map((p) => {
      const file = findDeb(debs, p.name, p.version);
      if (!file) throw new DebianError(`image: ${p.name}=${p.version} was not downloaded`);
      return { ...p, file, sha256: createHash("sha256").update(readFileSync(file)).digest("hex") };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

function findDeb(dir: string, name: string, version: string): string | undefined {
  // apt names files <name>_<version with ':' as %3a>_<arch>.deb.
  const prefix = `${name}_${version.replace(/:/g, "%3a")}_`;
  const file = readdirSync(dir).find((f) => f.startsWith(prefix) && f.endsWith(".deb"));
  return file ? join(dir, file) : undefined;
}

/** Unpacks a package's files (no maintainer scripts run: nothing in the image depends on them). */
export function extractPackage(deb: DebianPackage, into: string): void {
  const result = spawnSync("dpkg-deb", ["-x", deb.file, into], { encoding: "utf8" });
  if (result.status !== 0) throw new DebianError(`image: dpkg-deb -x ${deb.file}: ${result.stderr.trim()}`);
}

/** `name=version sha256` lines: what the image holds, and what a rebuild pins. */
export function packageList(packages: DebianPackage[]): string {
  return packages.map((p) => `${p.name}=${p.version} ${p.sha256}\n`).join("");
}

export function parsePackageList(text: string): Map<string, string> {
  const pinned = new Map<string, string>();
  for (const line of text.split("\n")) {
    const match = /^([a-z0-9][a-z0-9+.-]*)=(\S+)/.exec(line.trim());
    if (match) pinned.set(match[1]!, match[2]!);
  }
  return pinned;
}
