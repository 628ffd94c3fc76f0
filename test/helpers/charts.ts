import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { tempDir } from "./registry.js";

/**
 * A packaged chart as `helm package` makes it: <name>/Chart.yaml first, then values and templates,
 * and `extraBytes` of random (incompressible) data in <name>/files/random.bin when asked.
 */
export function chartArchive(name: string, version: string, extraBytes = 0): Buffer {
  const dir = tempDir();
  mkdirSync(join(dir, name, "templates"), { recursive: true });
  writeFileSync(join(dir, name, "Chart.yaml"), stringify({ apiVersion: "v2", name, version }));
  writeFileSync(join(dir, name, "values.yaml"), "replicas: 1\n");
  writeFileSync(join(dir, name, "templates", "cm.yaml"), "apiVersion: v1\nkind: ConfigMap\n");
  const extra = extraBytes > 0 ? [`${name}/files`] : [];
  if (extraBytes > 0) {
    mkdirSync(join(dir, name, "files"));
    writeFileSync(join(dir, name, "files", "random.bin"), randomBytes(extraBytes));
  }
  const file = join(dir, `${name}-${version}.tgz`);
  const result = spawnSync(
    "tar",
    ["-czf", file, "-C", dir, `${name}/Chart.yaml`, `${name}/values.yaml`, `${name}/templates`, ...extra],
    { encoding: "utf8" },
  );
  assert.equal(result.status, 0, result.stderr);
  return readFileSync(file);
}
