import { accessSync, constants, statfsSync, statSync, type Stats } from "node:fs";
import { dirname, resolve } from "node:path";
import { ConfigError } from "./load.js";

/**
 * Kernel filesystems (statfs magic numbers) that hold no storage: writing there fails in ways
 * Node reports badly (a recursive mkdir under /proc loops forever), so they are refused by name.
 */
const KERNEL_FILESYSTEMS = new Map<number, string>([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0x64626720, "debugfs"],
  [0x74726163, "tracefs"],
  [0x73636673, "securityfs"],
  [0x1cd1, "devpts"],
  [0xcafe4a11, "bpf"],
]);

/**
 * Checks that the storage root can serve as one before anything touches it: it exists and is a
 * directory this process may read and write, or it can be created (its nearest existing ancestor
 * is a writable directory), and it is not on /proc, /sys or another kernel filesystem. Throws a
 * ConfigError of one line naming `key`. `serve`, `config check` and `restore` call it.
 */
export function checkStorageRoot(root: string, key = "storage.filesystem.rootdirectory"): void {
  const path = resolve(root);
  const fail = (why: string): never => {
    throw new ConfigError(`${key}: ${JSON.stringify(root)} ${why}`);
  };
  // The nearest part of the path that exists: the root itself, or the ancestor it is created in.
  let existing = path;
  let stats: Stats | undefined;
  for (;;) {
    try {
      stats = statSync(existing, { throwIfNoEntry: false });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOTDIR") fail("cannot be created: a part of the path is a file, not a directory");
      if (code === "EACCES") fail(`cannot be reached: permission denied on a directory above it (${who()})`);
      fail(`cannot be checked: ${(error as Error).message}`);
    }
    if (stats !== undefined || existing === dirname(existing)) break;
    existing = dirname(existing);
  }
  const kernel =
    KERNEL_FILESYSTEMS.get(statfsType(existing)) ??
    (/^\/(proc|sys)(\/|$)/.test(path) ? path.split("/")[1] : undefined);
  if (kernel !== undefined) fail(`is on ${kernel}, a kernel filesystem, not storage`);
  if (stats === undefined) return fail("cannot be checked: no part of the path exists");
  if (existing === path) {
    if (!stats.isDirectory()) fail("exists and is not a directory");
    if (!accessible(path, constants.R_OK | constants.W_OK | constants.X_OK))
      fail(`is not readable and writable by this process (${who()})`);
  } else {
    if (!stats.isDirectory()) fail(`cannot be created: ${existing} is not a directory`);
    if (!accessible(existing, constants.W_OK | constants.X_OK))
      fail(`does not exist and cannot be created: ${existing} is not writable by this process (${who()})`);
  }
}

function statfsType(path: string): number {
  try {
    return statfsSync(path).type;
  } catch {
    return 0;
  }
}

/** access(2): for root only a read-only filesystem says no; for others, the permission bits. */
function accessible(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

function who(): string {
  return `uid ${process.getuid?.() ?? "?"}`;
}
