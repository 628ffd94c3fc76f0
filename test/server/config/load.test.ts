import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ConfigError, loadConfig, validateConfig } from "../../../server/src/config/load.js";
import { tempDir } from "../../helpers/registry.js";

const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;

function file(content: string): string {
  const path = join(tempDir(), "config.yml");
  writeFileSync(path, content);
  return path;
}

describe("config: the reference registry's config.yml", () => {
  it("accepts the keys the operations guide uses, with defaults for the rest", () => {
    const config = loadConfig(
      file(`version: 0.1
log:
  level: debug
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
  debug:
    addr: :5001
  tls:
    certificate: /certs/tls.crt
    key: /certs/tls.key
auth:
  htpasswd:
    realm: basic-realm
    path: /auth/htpasswd
proxy:
  remoteurl: https://registry-1.docker.io
`),
      {},
    );
    assert.equal(config.version, "0.1");
    assert.equal(config.storage.filesystem.rootdirectory, "/var/lib/registry");
    assert.equal(config.storage.delete.enabled, true);
    assert.equal(config.http.tls?.minimumtls, "tls1.2");
    assert.equal(config.http.debug.prometheus.path, "/metrics");
    assert.equal(config.auth?.htpasswd?.realm, "basic-realm");
    assert.equal(config.proxy?.remoteurl, "https://registry-1.docker.io");
  });

  it("the guide's minimal ConfigMap (version and proxy only) is valid", () => {
    const config = loadConfig(file("version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\n"), {});
    assert.equal(config.storage.filesystem.rootdirectory, "/var/lib/registry");
    assert.equal(config.storage.delete.enabled, false, "deletes are off unless enabled, as in the reference");
    assert.equal(config.http.addr, ":5000");
  });

  it("proxy.ttl takes a duration or 0 (never expire), as the reference; one password source only", () => {
    const ttl = (value: string) =>
      loadConfig(file(`version: 0.1\nproxy:\n  remoteurl: https://r.example\n  ttl: ${value}\n`), {}).proxy
        ?.ttl;
    assert.equal(ttl("72h"), "72h");
    assert.equal(ttl("0"), "0");
    assert.equal(
      loadConfig(file("version: 0.1\nproxy:\n  remoteurl: https://r.example\n"), {}).proxy?.ttl,
      "168h",
    );
    assert.throws(() => ttl("soon"), /proxy\.ttl/);
    assert.throws(
      () =>
        loadConfig(
          file("version: 0.1\nproxy:\n  remoteurl: https://r.example\n  password: a\n  passwordfile: /p\n"),
          {},
        ),
      /set password or passwordfile, not both/,
    );
  });

  it("the embedded default serves ./data on :5000 with metrics on :5001", () => {
    const config = loadConfig(undefined, {});
    assert.equal(config.storage.filesystem.rootdirectory, "./data");
    assert.equal(config.http.addr, ":5000");
    assert.equal(config.http.debug.addr, ":5001");
  });

  it("an unknown key fails naming the key", () => {
    assert.throws(
      () => loadConfig(file("version: 0.1\nhttp:\n  adr: :5000\n"), {}),
      (e: Error) => e instanceof ConfigError && e.message === 'config: unknown key "http.adr"',
    );
    assert.throws(() => validateConfig({ version: "0.1", notification: {} }), /unknown key "notification"/);
    assert.throws(
      () =>
        validateConfig({
          version: "0.1",
          notifications: { endpoints: [{ name: "a", url: "http://x", retries: 3 }] },
        }),
      /unknown key "notifications\.endpoints\.0\.retries"/,
    );
  });

  it("a wrong value fails naming the key", () => {
    assert.throws(
      () => validateConfig({ version: "0.1", storage: { delete: { enabled: "yes" } } }),
      /storage\.delete\.enabled/,
    );
    assert.throws(
      () => validateConfig({ version: "0.1", http: { addr: "5000" } }),
      /http\.addr: must be host:port/,
    );
    assert.throws(() => validateConfig({ version: "0.2" }), /version: must be 0\.1/);
    assert.throws(() => validateConfig({}), /version/);
    assert.throws(() => loadConfig(file("version: [0.1\n"), {}), /not valid YAML/);
  });

  it("REGISTRY_* environment variables override keys, as the reference registry does", () => {
    const config = loadConfig(file("version: 0.1\n"), {
      REGISTRY_HTTP_ADDR: "127.0.0.1:6000",
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: "/srv/registry",
      REGISTRY_STORAGE_DELETE_ENABLED: "true",
      REGISTRY_LOG_LEVEL: "warn",
      REGISTRY_HTTP_DEBUG_ADDR: ":7001",
      REGISTRY_UNRELATED_THING: "ignored",
    });
    assert.equal(config.http.addr, "127.0.0.1:6000");
    assert.equal(config.storage.filesystem.rootdirectory, "/srv/registry");
    assert.equal(config.storage.delete.enabled, true);
    assert.equal(config.log.level, "warn");
    assert.equal(config.http.debug.addr, ":7001");
  });

  it("an override with a wrong value fails at start with the key named", () => {
    assert.throws(
      () => loadConfig(file("version: 0.1\n"), { REGISTRY_STORAGE_DELETE_ENABLED: "maybe" }),
      /storage\.delete\.enabled/,
    );
  });
});

describe("CLI", () => {
  it("serve with a bad config exits non-zero with one line naming the key", () => {
    const result = spawnSync(
      process.execPath,
      [MAIN, "serve", "--config", file("version: 0.1\nstorage:\n  swift: {}\n")],
      { encoding: "utf8" },
    );
    assert.equal(result.status, 1);
    assert.equal(result.stderr.trim().split("\n").length, 1);
    assert.match(result.stderr, /unknown key "storage\.swift"/);
  });

  it("serve with a missing htpasswd file exits with one line naming it", () => {
    const config = file(
      `version: 0.1\nstorage: {filesystem: {rootdirectory: ${tempDir()}}}\nhttp: {addr: "127.0.0.1:0", debug: {addr: "127.0.0.1:0"}}\nauth: {htpasswd: {realm: r, path: /nonexistent/htpasswd}}\n`,
    );
    const result = spawnSync(process.execPath, [MAIN, "serve", config], {
      encoding: "utf8",
      timeout: 10_000,
    });
    assert.equal(result.status, 1);
    assert.equal(result.stderr.trim().split("\n").length, 1);
    assert.match(result.stderr, /\/nonexistent\/htpasswd/);
  });

  it("access rules without a way to authenticate are refused", () => {
    assert.throws(
      () => validateConfig({ version: "0.1", auth: { access: { default: ["pull"] } } }),
      /auth\.access: access rules need a way to authenticate/,
    );
  });

  it("config check takes a numeric password from the environment as the string it is", () => {
    const config = file(
      `version: 0.1\nstorage: {filesystem: {rootdirectory: ${tempDir()}}}\nredis: {addr: "redis:6379"}\n`,
    );
    const env = { ...process.env, REGISTRY_REDIS_PASSWORD: "123456" };
    const ok = spawnSync(process.execPath, [MAIN, "config", "check", "--config", config], {
      encoding: "utf8",
      env,
    });
    assert.equal(ok.status, 0, ok.stderr);
    const bad = spawnSync(process.execPath, [MAIN, "config", "check", "--config", config], {
      encoding: "utf8",
      env: { ...env, REGISTRY_REDIS_DB: "first" },
    });
    assert.equal(bad.status, 1);
    assert.equal(
      bad.stderr,
      "neam-registry: config: redis.db (from REGISTRY_REDIS_DB): Invalid input: expected number, received string\n",
    );
  });

  it("config check validates a file; an unknown command exits 2", () => {
    const ok = spawnSync(process.execPath, [MAIN, "config", "check", "--config", file("version: 0.1\n")], {
      encoding: "utf8",
    });
    assert.equal(ok.status, 0);
    const bad = spawnSync(process.execPath, [MAIN, "frobnicate"], { encoding: "utf8" });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /unknown command/);
  });
});
