// Builds the optional native addon (sendfile for zero-copy pulls, small durable writes in one
// thread-pool job). The registry works without it, doing the same in JavaScript, so a machine
// without python3, make and g++ only gets a warning.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname } from "node:path";

const dir = new URL(".", import.meta.url).pathname;
const addon = `${dir}build/Release/neam_native.node`;
const sources = readdirSync(dir).filter((f) => /\.(c|h|gyp)$/.test(f));

if (process.platform !== "linux") process.exit(0);
const built = existsSync(addon) ? statSync(addon).mtimeMs : 0;
if (sources.every((f) => statSync(`${dir}${f}`).mtimeMs <= built)) process.exit(0);
// npm runs scripts with its bundled node-gyp named in the environment; outside npm, the one npm
// ships with this Node, else whatever node-gyp is on PATH.
const prefix = dirname(dirname(process.execPath));
const bundled = `${prefix}/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js`;
const gyp = process.env.npm_config_node_gyp ?? (existsSync(bundled) ? bundled : undefined);
const [command, args] = gyp ? [process.execPath, [gyp, "rebuild"]] : ["node-gyp", ["rebuild"]];
// Build against the headers installed with this Node when npm names none: nothing is downloaded.
if (!process.env.npm_config_nodedir && existsSync(`${prefix}/include/node/node_api.h`))
  args.push(`--nodedir=${prefix}`);
const result = spawnSync(command, args, { cwd: dir, encoding: "utf8" });
if (result.status !== 0) {
  const reason = result.error?.message ?? result.stderr.trim().split("\n").at(-1);
  console.warn(
    `neam-registry: native addon not built (${reason}); pulls and small writes will go through Node's fs`,
  );
}
