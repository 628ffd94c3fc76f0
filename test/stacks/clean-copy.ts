import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { tempDir } from "../helpers/registry.js";

/** The repository root (tests run from dist/test/…). */
export const ROOT = new URL("../../../", import.meta.url).pathname;

/**
 * What a clean clone of this working tree holds: the tracked files as they are now (no dist/, no
 * build output), with this checkout's node_modules linked in (`npm ci` would install the same
 * lock file; the machine is offline for most registries).
 */
export function cleanCopy(prefix = "neam-clean-"): string {
  const dir = tempDir(prefix);
  const files = execFileSync("git", ["ls-files", "-z"], { cwd: ROOT, encoding: "utf8" }).split("\0");
  for (const file of files) {
    if (file === "") continue;
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    try {
      cpSync(join(ROOT, file), join(dir, file));
    } catch (error) {
      // A file deleted in the working tree but not yet committed is not in the clone either.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}
