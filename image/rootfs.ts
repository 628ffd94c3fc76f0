/**
 * The image's base filesystem from Debian packages, unpacked without maintainer scripts (as
 * distroless images are): Node and the libraries it links, busybox for the operations guide's
 * diagnostics (wget, nc, nslookup, netstat, tar, df — what registry:2's Alpine base offers), the
 * CA bundle, and the few /etc files a container needs. No apt, dpkg, shell of Debian's, docs or
 * compilers.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { RUN_AS_USER } from "../server/src/contract/defaults.js";
import { type DebianPackage, extractPackage } from "./debian.js";

/** What the runtime needs; apt adds their dependencies. */
export const RUNTIME_PACKAGES = ["nodejs", "busybox", "netcat-openbsd", "ca-certificates"];

/** The uid and gid the registry runs as (the Dockerfile's USER, the constructs' securityContext). */
export const REGISTRY_UID = RUN_AS_USER;

/**
 * Busybox applets linked into /usr/bin: the guide's diagnostics first, then the small tools an
 * operator reaches for in `kubectl exec`. `nc` is OpenBSD's: the guide runs `nc -zv`, and
 * Debian's busybox is built without `-z`.
 */
export const APPLETS = [
  "sh",
  "wget",
  "nslookup",
  "netstat",
  "tar",
  "df",
  "du",
  "ls",
  "cat",
  "ps",
  "top",
  "grep",
  "sed",
  "awk",
  "head",
  "tail",
  "less",
  "vi",
  "find",
  "env",
  "id",
  "mkdir",
  "rm",
  "cp",
  "mv",
  "ln",
  "chmod",
  "sleep",
  "date",
  "hostname",
  "uname",
  "free",
  "gzip",
  "gunzip",
  "zcat",
  "sha256sum",
  "wc",
  "sort",
  "uniq",
  "cut",
  "tr",
  "xargs",
  "kill",
  "ping",
  "traceroute",
  "which",
  "touch",
  "stat",
  "echo",
  "true",
  "false",
  "test",
  "tee",
  "dirname",
  "basename",
  "readlink",
  "realpath",
  "od",
  "hexdump",
  "nproc",
  "uptime",
  "pidof",
  "killall",
  "timeout",
  "watch",
  "ip",
  "ifconfig",
  "route",
  "arp",
];

const MERGED = ["bin", "sbin", "lib", "lib64"];
const REMOVED = [
  "usr/share/man",
  "usr/share/info",
  "usr/share/lintian",
  "usr/share/locale",
  "usr/share/bug",
  "usr/share/bash-completion",
  "usr/share/zsh",
  "usr/share/menu",
  "usr/share/gdb",
  "usr/share/gcc",
  "etc/cron.daily",
];

/** Unpacks `packages` into `dir` as a merged-/usr root and completes it for a container. */
export function buildRootfs(dir: string, packages: DebianPackage[]): void {
  mkdirSync(dir, { recursive: true });
  for (const pkg of packages) extractPackage(pkg, dir);
  mergeUsr(dir);
  for (const path of REMOVED) rmSync(join(dir, path), { recursive: true, force: true });
  keepOnlyCopyrights(join(dir, "usr/share/doc"));

  // busybox provides the diagnostics; its applet names become links to it.
  const applets = busyboxApplets(dir);
  for (const applet of APPLETS) {
    if (!applets.has(applet)) throw new Error(`image: busybox has no ${applet} applet`);
    const link = join(dir, "usr/bin", applet);
    if (!existsSync(link)) symlinkSync("busybox", link);
  }

  symlinkSync("nc.openbsd", join(dir, "usr/bin/nc"));

  // What update-ca-certificates would generate: Mozilla's roots in one bundle, in name order.
  const mozilla = join(dir, "usr/share/ca-certificates/mozilla");
  mkdirSync(join(dir, "etc/ssl/certs"), { recursive: true });
  writeFileSync(
    join(dir, "etc/ssl/certs/ca-certificates.crt"),
    readdirSync(mozilla)
      .filter((f) => f.endsWith(".crt"))
      .sort()
      .map((f) => readFileSync(join(mozilla, f), "utf8").trimEnd() + "\n")
      .join(""),
  );

  writeFileSync(
    join(dir, "etc/passwd"),
    `root:x:0:0:root:/root:/sbin/nologin\nregistry:x:${REGISTRY_UID}:${REGISTRY_UID}:neam-registry:/var/lib/registry:/sbin/nologin\n`,
  );
  writeFileSync(join(dir, "etc/group"), `root:x:0:\nregistry:x:${REGISTRY_UID}:\n`);
  writeFileSync(join(dir, "etc/nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files dns\n");
  // Mount points the container runtime binds over; present so a read-only root needs no writes.
  for (const file of ["etc/hosts", "etc/hostname", "etc/resolv.conf"]) writeFileSync(join(dir, file), "");
  for (const sub of ["proc", "sys", "dev", "root", "run", "tmp", "var/tmp", "var/lib"])
    mkdirSync(join(dir, sub), { recursive: true });
  chmodSync(join(dir, "tmp"), 0o1777);
  chmodSync(join(dir, "var/tmp"), 0o1777);
  chmodSync(join(dir, "root"), 0o700);

  // The package database scanners read (one stanza per package, as distroless writes it).
  const status = join(dir, "var/lib/dpkg/status.d");
  mkdirSync(status, { recursive: true });
  for (const pkg of packages) {
    const control = spawnSync("dpkg-deb", ["-f", pkg.file], { encoding: "utf8" }).stdout;
    writeFileSync(
      join(status, pkg.name),
      control.replace(/^(Package: .*)$/m, "$1\nStatus: install ok installed"),
    );
  }
}

/** Moves /bin, /sbin, /lib and /lib64 contents under /usr and links them, as Debian's merged /usr. */
function mergeUsr(dir: string): void {
  for (const name of MERGED) {
    const top = join(dir, name);
    const usr = join(dir, "usr", name);
    if (existsSync(top) && !lstatSync(top).isSymbolicLink()) {
      mkdirSync(usr, { recursive: true });
      cpSync(top, usr, { recursive: true, verbatimSymlinks: true });
      rmSync(top, { recursive: true });
    }
    if (!existsSync(top)) {
      mkdirSync(usr, { recursive: true });
      symlinkSync(`usr/${name}`, top);
    }
  }
}

function keepOnlyCopyrights(doc: string): void {
  if (!existsSync(doc)) return;
  for (const pkg of readdirSync(doc)) {
    const path = join(doc, pkg);
    if (!lstatSync(path).isDirectory()) {
      rmSync(path, { force: true });
      continue;
    }
    for (const file of readdirSync(path))
      if (file !== "copyright") rmSync(join(path, file), { recursive: true });
  }
}

/** The applets the image's busybox has, asked of it through the image's own dynamic loader. */
function busyboxApplets(dir: string): Set<string> {
  const libs = join(dir, "usr/lib/x86_64-linux-gnu");
  const loader = [join(dir, "usr/lib64/ld-linux-x86-64.so.2"), join(libs, "ld-linux-x86-64.so.2")].find((f) =>
    existsSync(f),
  );
  if (!loader) throw new Error("image: no dynamic loader in the root filesystem");
  const result = spawnSync(loader, ["--library-path", libs, join(dir, "usr/bin/busybox"), "--list"], {
    encoding: "utf8",
  });
  if (result.status !== 0) throw new Error(`image: busybox --list failed: ${result.stderr}`);
  return new Set(result.stdout.split("\n").filter(Boolean));
}
