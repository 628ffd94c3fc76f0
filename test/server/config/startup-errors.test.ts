/**
 * Startup errors name the key: what `config check` and `serve` answer to an impossible listen
 * port, a storage root that is a file, unwritable, or on a kernel filesystem, a misspelt
 * `REGISTRY_*` variable, and `restore` without a target. Every case runs the real CLI.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadConfig } from "../../../server/src/config/load.js";
import { tempDir } from "../../helpers/registry.js";

const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;
const ROOT_KEY = /^neam-registry: storage\.filesystem\.rootdirectory: /;
/** An unprivileged user: tests run as root, for whom permission bits stop nothing. */
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/** A directory anyone may read, holding a config file with `body` (plus loopback listeners). */
function configIn(body: string): { dir: string; path: string } {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const path = join(dir, "config.yml");
  writeFileSync(path, `version: 0.1\nhttp: {addr: "127.0.0.1:0", debug: {addr: "127.0.0.1:0"}}\n${body}`);
  chmodSync(path, 0o644);
  return { dir, path };
}

function rootConfig(root: string) {
  return configIn(`storage: {filesystem: {rootdirectory: ${JSON.stringify(root)}}}\n`);
}

function run(args: string[], options: { as?: string[]; env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  const [command, ...rest] = [...(options.as ?? []), process.execPath, MAIN, ...args];
  return spawnSync(command!, rest, {
    encoding: "utf8",
    timeout: 15_000,
    env: options.env ?? clean(process.env),
    cwd: options.cwd,
  });
}

/** The environment without REGISTRY_* variables, so each case sets exactly what it tests. */
function clean(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith("REGISTRY_")));
}

/** Exit 1 with exactly one line on stderr matching `pattern`, within the timeout. */
function assertOneLine(result: SpawnSyncReturns<string>, pattern: RegExp) {
  assert.equal(result.signal, null, `killed by the timeout: ${result.stderr}`);
  assert.equal(result.status, 1, result.stderr + result.stdout);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0]!, pattern);
}

describe("listen addresses", () => {
  for (const [key, yaml] of [
    ["http.addr", 'http: {addr: ":99999"}'],
    ["http.debug.addr", 'http: {debug: {addr: "127.0.0.1:65536"}}'],
  ] as const) {
    it(`a port above 65535 in ${key} fails config check and serve, naming the key`, () => {
      const dir = tempDir();
      const path = join(dir, "config.yml");
      writeFileSync(path, `version: 0.1\nstorage: {filesystem: {rootdirectory: ${dir}/data}}\n${yaml}\n`);
      const pattern = new RegExp(
        `^neam-registry: config: ${key.replace(".", "\\.")}: port must be between 0 and 65535$`,
      );
      assertOneLine(run(["config", "check", "--config", path]), pattern);
      assertOneLine(run(["serve", "--config", path]), pattern);
    });
  }

  it("ports 0 and 65535 are valid", () => {
    const dir = tempDir();
    const path = join(dir, "config.yml");
    writeFileSync(
      path,
      `version: 0.1\nstorage: {filesystem: {rootdirectory: ${dir}/data}}\nhttp: {addr: ":65535", debug: {addr: ":0"}}\n`,
    );
    const result = run(["config", "check", "--config", path]);
    assert.equal(result.status, 0, result.stderr);
  });
});

describe("storage.filesystem.rootdirectory", () => {
  it("a file instead of a directory is refused by config check and serve", () => {
    const dir = tempDir();
    const root = join(dir, "data");
    writeFileSync(root, "not a directory");
    const { path } = rootConfig(root);
    for (const command of [
      ["config", "check", "--config", path],
      ["serve", "--config", path],
    ])
      assertOneLine(run(command), new RegExp(`${ROOT_KEY.source}".*" exists and is not a directory$`));
  });

  it("a root below a file cannot be created", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "file"), "");
    const { path } = rootConfig(join(dir, "file", "data"));
    for (const command of [
      ["config", "check", "--config", path],
      ["serve", "--config", path],
    ])
      assertOneLine(run(command), new RegExp(`${ROOT_KEY.source}.*cannot be created`));
  });

  it("a root the registry's user may not write is refused, naming the key (not EACCES)", () => {
    const { dir, path } = rootConfig("");
    const root = join(dir, "data");
    mkdirSync(root, { mode: 0o755 }); // owned by root: uid 65534 may read, not write
    writeFileSync(
      path,
      `version: 0.1\nhttp: {addr: "127.0.0.1:0", debug: {addr: "127.0.0.1:0"}}\nstorage: {filesystem: {rootdirectory: ${root}}}\n`,
    );
    for (const command of [
      ["config", "check", "--config", path],
      ["serve", "--config", path],
    ])
      assertOneLine(
        run(command, { as: NOBODY }),
        new RegExp(`${ROOT_KEY.source}".*" is not readable and writable by this process \\(uid 65534\\)$`),
      );
    chmodSync(root, 0o000);
    assertOneLine(run(["serve", "--config", path], { as: NOBODY }), /rootdirectory: .* is not readable/);
  });

  it("a missing root under a directory the user may not write cannot be created", () => {
    const { dir, path } = rootConfig("");
    const parent = join(dir, "locked");
    mkdirSync(parent, { mode: 0o755 });
    writeFileSync(
      path,
      `version: 0.1\nhttp: {addr: "127.0.0.1:0", debug: {addr: "127.0.0.1:0"}}\nstorage: {filesystem: {rootdirectory: ${parent}/a/b}}\n`,
    );
    assertOneLine(
      run(["serve", "--config", path], { as: NOBODY }),
      new RegExp(`${ROOT_KEY.source}.* does not exist and cannot be created: ${parent} is not writable`),
    );
  });

  it("a root on /proc or /sys is refused at once (it used to spin forever)", () => {
    for (const root of ["/proc/neam-registry-test/data", "/sys/neam-registry-test", "/proc/self/fd/../x"]) {
      const { path } = rootConfig(root);
      for (const command of [
        ["config", "check", "--config", path],
        ["serve", "--config", path],
      ])
        assertOneLine(
          run(command),
          new RegExp(`${ROOT_KEY.source}".*" is on (proc|sysfs), a kernel filesystem`),
        );
    }
  });

  it("a root that exists or can be created passes config check", () => {
    const dir = tempDir();
    for (const root of [dir, join(dir, "new", "deeper")]) {
      const result = run(["config", "check", "--config", rootConfig(root).path]);
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stderr, "");
    }
    assert.equal(existsSync(join(dir, "new")), false, "config check creates nothing");
  });
});

describe("REGISTRY_* variables", () => {
  it("a misspelt variable is warned about in one line naming it and the nearest key", () => {
    const { path } = rootConfig(tempDir());
    const result = run(["config", "check", "--config", path], {
      env: { ...clean(process.env), REGISTRY_HTTP_ADR: ":6000" },
    });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(
      result.stderr,
      "neam-registry: warning: environment variable REGISTRY_HTTP_ADR names no config key and is ignored; did you mean REGISTRY_HTTP_ADDR?\n",
    );
  });

  it("a variable far from every key is named without a guess", () => {
    const warnings: string[] = [];
    loadConfig(undefined, { REGISTRY_COMPLETELY_DIFFERENT_THING: "x" }, (line) => warnings.push(line));
    assert.deepEqual(warnings, [
      "environment variable REGISTRY_COMPLETELY_DIFFERENT_THING names no config key and is ignored",
    ]);
  });

  it("the variables Kubernetes sets for a Service named registry pass silently, as do real keys", () => {
    const warnings: string[] = [];
    const config = loadConfig(
      undefined,
      {
        REGISTRY_PORT: "tcp://10.96.0.12:5000",
        REGISTRY_PORT_5000_TCP: "tcp://10.96.0.12:5000",
        REGISTRY_PORT_5000_TCP_PROTO: "tcp",
        REGISTRY_PORT_5000_TCP_PORT: "5000",
        REGISTRY_PORT_5000_TCP_ADDR: "10.96.0.12",
        REGISTRY_SERVICE_HOST: "10.96.0.12",
        REGISTRY_SERVICE_PORT: "5000",
        REGISTRY_SERVICE_PORT_HTTP: "5000",
        REGISTRY_METRICS_SERVICE_HOST: "10.96.0.13",
        REGISTRY_METRICS_PORT_5001_TCP_ADDR: "10.96.0.13",
        REGISTRY_HTTP_ADDR: ":6000",
      },
      (line) => warnings.push(line),
    );
    assert.deepEqual(warnings, []);
    assert.equal(config.http.addr, ":6000");
  });

  it("serve logs the warning as a JSON line and starts", async () => {
    const { path } = rootConfig(tempDir());
    const child = spawn(process.execPath, [MAIN, "serve", "--config", path], {
      env: { ...clean(process.env), REGISTRY_STORAGE_DELETE_ENABLD: "true" },
    });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += String(chunk)));
    child.stderr.on("data", (chunk: Buffer) => (out += String(chunk)));
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      const deadline = Date.now() + 10_000;
      while (!out.includes("registry listening") && Date.now() < deadline && child.exitCode === null)
        await new Promise((r) => setTimeout(r, 50));
      const warning = out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { level: number; msg: string })
        .find((l) => l.msg.includes("REGISTRY_STORAGE_DELETE_ENABLD"));
      assert.ok(warning, out);
      assert.equal(warning.level, 40);
      assert.match(warning.msg, /did you mean REGISTRY_STORAGE_DELETE_ENABLED\?/);
      assert.match(out, /registry listening/);
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  });
});

describe("restore", () => {
  it("without --config or --root it refuses in one line, and writes nothing (not ./data)", () => {
    const cwd = tempDir();
    const archive = join(cwd, "backup.tar.gz");
    writeFileSync(archive, "");
    const result = run(["restore", "--input", archive], { cwd });
    assertOneLine(result, /^neam-registry: restore needs --config FILE .* or --root DIR$/);
    assert.deepEqual(readdirSync(cwd), ["backup.tar.gz"]);
  });

  it("--root DIR restores into DIR", () => {
    // A storage root of one blob, tarred as the operations guide does.
    const source = tempDir();
    const content = Buffer.from("one blob");
    const hex = createHash("sha256").update(content).digest("hex");
    const blobDir = join(source, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex);
    mkdirSync(blobDir, { recursive: true });
    writeFileSync(join(blobDir, "data"), content);
    const archive = join(tempDir(), "root.tar.gz");
    assert.equal(spawnSync("tar", ["-czf", archive, "-C", source, "docker"]).status, 0);
    const target = join(tempDir(), "restored");
    const result = run(["restore", "--input", archive, "--root", target]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /1 blobs .* restored into .*restored/);
    const restored = join(target, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
    assert.deepEqual(readFileSync(restored), content);
  });

  it("with both it refuses; a --root on /proc is refused naming --root", () => {
    const cwd = tempDir();
    const { path } = rootConfig(join(cwd, "data"));
    assertOneLine(
      run(["restore", "--input", "x.tgz", "--config", path, "--root", cwd], { cwd }),
      /^neam-registry: restore takes --config FILE or --root DIR, not both$/,
    );
    assertOneLine(
      run(["restore", "--input", "x.tgz", "--root", "/proc/neam-registry-test"], { cwd }),
      /^neam-registry: --root: "\/proc\/neam-registry-test" is on proc/,
    );
  });
});
