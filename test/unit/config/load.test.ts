import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  ConfigError,
  applyEnvironment,
  loadConfig,
  parseListenAddress,
  validateConfig,
} from "../../../server/src/config/load.js";

const dir = mkdtempSync(join(tmpdir(), "neam-config-unit-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(content: string): string {
  const path = join(dir, `config${n++}.yml`);
  writeFileSync(path, content);
  return path;
}

function fails(fn: () => unknown, message: string | RegExp) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.name, "ConfigError");
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
}

describe("loadConfig", () => {
  it("without a file: the embedded default (./data, deletes on, :5000 and :5001)", () => {
    const config = loadConfig(undefined, {});
    assert.equal(config.version, "0.1");
    assert.equal(config.storage.filesystem.rootdirectory, "./data");
    assert.equal(config.storage.delete.enabled, true);
    assert.equal(config.http.addr, ":5000");
    assert.equal(config.http.debug.addr, ":5001");
    // Environment overrides apply to a copy: the default itself is never changed.
    assert.equal(loadConfig(undefined, { REGISTRY_HTTP_ADDR: ":6000" }).http.addr, ":6000");
    assert.equal(loadConfig(undefined, {}).http.addr, ":5000");
  });

  it("reads a YAML file and applies the environment to it", () => {
    const path = file("version: 0.1\nhttp:\n  addr: 127.0.0.1:7000\n");
    assert.equal(loadConfig(path, {}).http.addr, "127.0.0.1:7000");
    assert.equal(loadConfig(path, { REGISTRY_HTTP_ADDR: ":7001" }).http.addr, ":7001");
  });

  it("an unreadable file, invalid YAML or an empty file: one line naming the problem", () => {
    const missing = join(dir, "missing.yml");
    fails(() => loadConfig(missing, {}), new RegExp(`^cannot read config file ${missing}: ENOENT`));
    const bad = file("version: 0.1\nhttp: [\n  addr: x\n");
    fails(() => loadConfig(bad, {}), new RegExp(`^config file ${bad} is not valid YAML: \\S.{9,}$`));
    fails(() => loadConfig(file(""), {}), "config: version: is required and must be 0.1");
  });
});

describe("validateConfig: error messages name the key", () => {
  it("an unknown key is named with its path, and explains its section better than other failures", () => {
    fails(() => validateConfig({ version: "0.1", foo: 1 }), 'config: unknown key "foo"');
    fails(() => validateConfig({ version: "0.1", foo: 1, bar: 2 }), 'config: unknown key "foo", "bar"');
    fails(() => validateConfig({ version: "0.1", http: { adr: ":1" } }), 'config: unknown key "http.adr"');
    fails(
      () =>
        validateConfig({ version: "0.1", http: { addr: "x", tls: { certificate: "c", key: "k", x: 1 } } }),
      'config: unknown key "http.tls.x"',
    );
    fails(() => validateConfig({ version: "0.2", foo: 1 }), 'config: unknown key "foo"');
  });

  it("a wrong value is named by its path, or (root) when the document is not a mapping", () => {
    fails(
      () => validateConfig({ version: "0.1", http: { addr: "x" } }),
      "config: http.addr: must be host:port or :port",
    );
    fails(
      () => validateConfig({ version: "0.1", auth: { access: { rules: [{ subjects: ["bob"] }] } } }),
      /^config: auth\.access\.rules\.0\.subjects\.0: must be \*, user:NAME or group:NAME$/,
    );
    fails(() => validateConfig("text"), /^config: \(root\): /);
    fails(() => validateConfig({ version: "0.2" }), "config: version: must be 0.1");
    fails(() => validateConfig({}), "config: version: is required and must be 0.1");
  });
});

describe("applyEnvironment: REGISTRY_<PATH> overrides, as the reference registry", () => {
  it("sets nested keys, parsing values as YAML scalars", () => {
    const config = applyEnvironment(
      { version: "0.1", http: { addr: ":1" } },
      {
        REGISTRY_HTTP_ADDR: ":2",
        REGISTRY_LOG_LEVEL: "debug",
        REGISTRY_STORAGE_DELETE_ENABLED: "true",
        REGISTRY_HTTP_WORKERS: "4",
        REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH: "/m",
        REGISTRY_AUTH_TOKEN_ISSUER: "me",
        REGISTRY_SYNC_UPSTREAMS: "[{registry: docker.io}]",
        REGISTRY_HTTP_SECRET: "a: b: c",
      },
    );
    assert.deepEqual(config, {
      version: "0.1",
      http: { addr: ":2", workers: 4, debug: { prometheus: { path: "/m" } }, secret: "a: b: c" },
      log: { level: "debug" },
      storage: { delete: { enabled: true } },
      auth: { token: { issuer: "me" } },
      sync: { upstreams: [{ registry: "docker.io" }] },
    });
  });

  it("ignores variables that are not config keys", () => {
    const env = {
      HTTP_ADDR: ":3",
      XREGISTRY_HTTP_ADDR: ":3",
      OTHERAPP_HTTP_ADDR: ":3",
      REGISTRY_HTTP_MAX_MANIFEST_BYTES: "8388608",
      REGISTRY_: "x",
      REGISTRY_FOO: "x",
      REGISTRY_HTTP_ADDR_PORT: "x",
      REGISTRY_HTTP_FOO: "x",
      REGISTRY_SYNC_UPSTREAMS_REGISTRY: "x",
      REGISTRY_HTTP: undefined,
      REGISTRY_STORAGE_FILESYSTEM: undefined,
    };
    assert.deepEqual(applyEnvironment({ version: "0.1" }, env), { version: "0.1" });
    assert.equal(validateConfig(applyEnvironment({ version: "0.1" }, env)).http.addr, ":5000");
  });

  it("replaces a section that is not a mapping, and starts from {} when the document is not one", () => {
    assert.deepEqual(applyEnvironment({ http: "x" }, { REGISTRY_HTTP_ADDR: ":4" }), { http: { addr: ":4" } });
    assert.deepEqual(applyEnvironment({ http: ["x"] }, { REGISTRY_HTTP_ADDR: ":4" }), {
      http: { addr: ":4" },
    });
    assert.deepEqual(applyEnvironment({ http: null }, { REGISTRY_HTTP_ADDR: ":4" }), {
      http: { addr: ":4" },
    });
    assert.deepEqual(applyEnvironment(null, { REGISTRY_VERSION: "0.1" }), { version: 0.1 });
    assert.deepEqual(applyEnvironment(["x"], {}), {});
    assert.deepEqual(applyEnvironment("x", {}), {});
    assert.equal(validateConfig(applyEnvironment(null, { REGISTRY_VERSION: "0.1" })).version, "0.1");
  });

  it("a whole section may be given as YAML; a wrong value fails naming the key", () => {
    const config = validateConfig(
      applyEnvironment(
        { version: "0.1" },
        { REGISTRY_AUDIT: "{stdout: true}", REGISTRY_HTTP_RELATIVEURLS: "true" },
      ),
    );
    assert.equal(config.audit?.stdout, true);
    assert.equal(config.http.relativeurls, true);
    fails(
      () => validateConfig(applyEnvironment({ version: "0.1" }, { REGISTRY_HTTP_WORKERS: "many" })),
      /^config: http\.workers: /,
    );
  });
});

describe("applyEnvironment: a string key takes the variable's text verbatim", () => {
  // What a Secret may hold, and what YAML would have turned into another type or another string.
  const SECRETS = [
    "123456",
    "yes",
    "null",
    "true",
    "0x1A",
    "1e3",
    "~",
    "p: w #rd",
    "'quoted'",
    "[a, b]",
    "{a: 1}",
  ];
  const base = file(`version: 0.1
storage:
  s3: { bucket: b, region: us-east-1, accesskey: AKIA, secretkey: from-the-file }
redis: { addrs: ["redis:6379"] }
proxy: { remoteurl: https://upstream.example, username: u }
`);

  for (const secret of SECRETS) {
    it(`${JSON.stringify(secret)} as a password, a secret key and a path`, () => {
      const config = loadConfig(base, {
        REGISTRY_REDIS_PASSWORD: secret,
        REGISTRY_STORAGE_S3_SECRETKEY: secret,
        REGISTRY_PROXY_PASSWORD: secret,
        REGISTRY_HTTP_SECRET: secret,
        REGISTRY_STORAGE_S3_ROOTDIRECTORY: secret,
      });
      assert.equal(config.redis?.password, secret);
      assert.equal(config.storage.s3?.secretkey, secret);
      assert.equal(config.proxy?.password, secret);
      assert.equal(config.http.secret, secret);
      assert.equal(config.storage.s3?.rootdirectory, secret);
    });
  }

  it("keys of other types still parse as YAML, and a key of several types takes the one written", () => {
    const config = loadConfig(base, {
      REGISTRY_HTTP_WORKERS: "4",
      REGISTRY_STORAGE_DELETE_ENABLED: "true",
      REGISTRY_STORAGE_S3_CHUNKSIZE: "6291456",
      REGISTRY_REDIS_ADDRS: "[redis-0:6379]",
      REGISTRY_HTTP_HEADERS: "{X-Site: [air-gapped]}",
      REGISTRY_PROXY_TTL: "0",
      REGISTRY_LOG_LEVEL: "debug",
    });
    assert.equal(config.http.workers, 4);
    assert.equal(config.storage.delete.enabled, true);
    assert.equal(config.storage.s3?.chunksize, 6291456);
    assert.deepEqual(config.redis?.addrs, ["redis-0:6379"]);
    assert.deepEqual(config.http.headers, { "X-Site": ["air-gapped"] });
    assert.equal(config.proxy?.ttl, "0");
    assert.equal(config.log.level, "debug");
    // version is a string or a number: 0.1 either way.
    assert.equal(loadConfig(undefined, { REGISTRY_VERSION: "0.1" }).version, "0.1");
  });

  it("a bad value fails in one line naming the key and the variable, never the value", () => {
    fails(
      () => loadConfig(base, { REGISTRY_HTTP_WORKERS: "many" }),
      /^config: http\.workers \(from REGISTRY_HTTP_WORKERS\): /,
    );
    fails(
      () => loadConfig(base, { REGISTRY_STORAGE_DELETE_ENABLED: "[yes" }),
      /^config: storage\.delete\.enabled \(from REGISTRY_STORAGE_DELETE_ENABLED\): /,
    );
    // A whole section from one variable: the failure inside it names that variable.
    fails(
      () => loadConfig(base, { REGISTRY_AUDIT: "{stdout: sometimes}" }),
      /^config: audit\.stdout \(from REGISTRY_AUDIT\): /,
    );
    assert.throws(
      () => loadConfig(base, { REGISTRY_STORAGE_S3_SECRETKEY: "" }),
      (error: Error) =>
        /^config: storage\.s3\.secretkey \(from REGISTRY_STORAGE_S3_SECRETKEY\): /.test(error.message),
    );
    assert.throws(
      () => loadConfig(base, { REGISTRY_HTTP_MAXCONNECTIONS: "s3cr3t-value" }),
      (error: Error) => !error.message.includes("s3cr3t-value"),
    );
    // From the file, no variable is named.
    fails(() => loadConfig(file("version: 0.1\nhttp: { workers: many }\n"), {}), /^config: http\.workers: /);
  });
});

describe("parseListenAddress", () => {
  it("splits host:port, :port and [v6]:port", () => {
    assert.deepEqual(parseListenAddress(":5000"), { host: undefined, port: 5000 });
    assert.deepEqual(parseListenAddress("127.0.0.1:5001"), { host: "127.0.0.1", port: 5001 });
    assert.deepEqual(parseListenAddress("[::1]:5002"), { host: "::1", port: 5002 });
    assert.deepEqual(parseListenAddress("[::]:5003"), { host: "::", port: 5003 });
    assert.deepEqual(parseListenAddress("localhost:80"), { host: "localhost", port: 80 });
    assert.deepEqual(parseListenAddress("[x:1"), { host: "[x", port: 1 });
    assert.deepEqual(parseListenAddress("x]:1"), { host: "x]", port: 1 });
  });
});
