/**
 * No Docker engine runs here, so the image is checked statically: what it runs exists in the
 * build output, its default config starts the registry, and it is non-root with both ports exposed.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { it } from "node:test";
import { loadConfig } from "../../server/src/config/load.js";
import { ADDON_PATH } from "../../image/app-files.js";
import { NODE_FLAGS } from "../helpers/registry.js";

const ROOT = new URL("../../../", import.meta.url).pathname;

it("server/Dockerfile runs what the build produces, with a valid default config, as non-root", () => {
  const dockerfile = readFileSync(`${ROOT}server/Dockerfile`, "utf8");
  const entrypoint = JSON.parse(/^ENTRYPOINT (.+)$/m.exec(dockerfile)![1]!) as string[];
  assert.equal(entrypoint[0], "node");
  const main = entrypoint.at(-1)!;
  assert.ok(existsSync(`${ROOT}${main.replace("/app/", "")}`), `${main} is built`);
  const cmd = JSON.parse(/^CMD (\[.+\])$/m.exec(dockerfile)![1]!) as string[];
  const copied = /^COPY (server\/config\.default\.yml) (\S+)$/m.exec(dockerfile)!;
  assert.equal(cmd[1], copied[2], "the CMD serves the config the image ships");
  const config = loadConfig(`${ROOT}${copied[1]}`, {});
  assert.equal(config.storage.filesystem.rootdirectory, "/var/lib/registry");
  assert.match(dockerfile, /^USER 65532:65532$/m);
  assert.match(dockerfile, /^EXPOSE 5000 5001$/m);
  assert.match(dockerfile, /^HEALTHCHECK /m);
  // The guide's diagnostics run inside the container: wget, nc, nslookup, netstat (tar and df are in the base).
  const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
  for (const pkg of ["wget", "netcat-openbsd", "bind9-dnsutils", "net-tools"])
    assert.match(runtime, new RegExp(`\\b${pkg}\\b`), pkg);
  // The application is image/app-files.ts's set (as `npm run image` ships it), and the addon in
  // it lands where dist/server/src/native.js loads it from.
  assert.match(dockerfile, /^RUN npm run build && node dist\/image\/app-files\.js \/out\/app$/m);
  assert.match(dockerfile, /^COPY --from=build \/out\/app \/app$/m);
  assert.ok(existsSync(`${ROOT}${ADDON_PATH}`), "the build produces the addon");
  const loader = readFileSync(`${ROOT}server/src/native.ts`, "utf8");
  const relative = /"([^"]+neam_native\.node)"/.exec(loader)![1]!;
  assert.equal(new URL(relative, "file:///app/dist/server/src/native.js").pathname, `/app/${ADDON_PATH}`);
});

it("the registry runs with the same node flags from its executable, the image and npm start", () => {
  const shebang = readFileSync(`${ROOT}server/src/main.ts`, "utf8").split("\n", 1)[0]!;
  assert.match(shebang, /^#!\/usr\/bin\/env -S node( --[a-z-]+=\S+)*$/);
  const flags = shebang.split(" ").slice(3);
  assert.ok(flags.length > 0);
  assert.deepEqual(NODE_FLAGS, flags, "tests and benchmarks start it so");
  const dockerfile = readFileSync(`${ROOT}server/Dockerfile`, "utf8");
  const entrypoint = JSON.parse(/^ENTRYPOINT (.+)$/m.exec(dockerfile)![1]!) as string[];
  assert.deepEqual(entrypoint.slice(1, -1), flags);
  const start = (
    JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { scripts: Record<string, string> }
  ).scripts.start!;
  assert.ok(start.includes(`node ${flags.join(" ")} dist/server/src/main.js serve`), start);
});
