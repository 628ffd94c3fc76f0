// Builds the optional native addon (sendfile for zero-copy pulls over plain HTTP). The registry
// works without it, streaming instead, so a machine without python3, make and g++ only gets a warning.
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";

const dir = new URL(".", import.meta.url).pathname;
const addon = `${dir}build/Release/neam_native.node`;
const source = `${dir}native.c`;

if (process.platform !== "linux") process.exit(0);
if (existsSync(addon) && statSync(addon).mtimeMs >= statSync(source).mtimeMs) process.exit(0);
// npm runs scripts with its bundled node-gyp at hand; outside npm, the one on PATH.
const gyp = process.env.npm_config_node_gyp;
const [command, args] = gyp ? [process.execPath, [gyp, "rebuild"]] : ["node-gyp", ["rebuild"]];
const result = spawnSync(command, args, { cwd: dir, encoding: "utf8" });
if (result.status !== 0) {
  const reason = result.error?.message ?? result.stderr.trim().split("\n").at(-1);
  console.warn(`neam-registry: native addon not built (${reason}); large pulls will use streams`);
}
