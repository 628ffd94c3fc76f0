import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, validateConfig } from "../../../server/src/config/load.js";
import { EMBEDDED_DEFAULT } from "../../../server/src/config/schema.js";

type Raw = Record<string, unknown>;
const v = (raw: Raw) => validateConfig({ version: "0.1", ...raw });
const ok = (raw: Raw) => assert.doesNotThrow(() => v(raw), JSON.stringify(raw));
function bad(raw: Raw, message: string | RegExp) {
  assert.throws(
    () => v(raw),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      if (typeof message === "string") assert.equal(error.message, message);
      else assert.match(error.message, message);
      return true;
    },
    JSON.stringify(raw),
  );
}
const htpasswd = { realm: "r", path: "/p" };
const token = { realm: "https://r.example/token", service: "s", issuer: "i", jwks: "/j" };

describe("config defaults", () => {
  it("a config with only a version gets every default", () => {
    assert.deepEqual(validateConfig({ version: "0.1" }), {
      version: "0.1",
      log: { level: "info", formatter: "json", accesslog: { disabled: false } },
      storage: { filesystem: { rootdirectory: "/var/lib/registry" }, delete: { enabled: false } },
      http: {
        addr: ":5000",
        prefix: "",
        relativeurls: false,
        debug: { addr: ":5001", prometheus: { enabled: true, path: "/metrics" } },
        workers: 1,
        maxmanifestbytes: 4 * 1024 * 1024,
        maxconnections: 4096,
        bodytimeout: "60s",
        maxbufferedbytes: 256 * 1024 * 1024,
      },
      sync: { upstreams: [] },
    });
  });

  it("sections that are given get their own defaults", () => {
    const config = v({
      storage: { maintenance: { uploadpurging: {}, readonly: {} } },
      auth: { htpasswd, token },
      proxy: { remoteurl: "https://upstream.example" },
      health: { storagedriver: {} },
      audit: { stdout: true },
      notifications: { endpoints: [{ name: "n", url: "http://hook.example" }] },
      http: { http2: {} },
    });
    assert.deepEqual(config.storage.maintenance, {
      uploadpurging: { enabled: true, age: "168h", interval: "24h", dryrun: false },
      readonly: { enabled: false },
    });
    assert.deepEqual(config.auth, {
      htpasswd,
      token: { ...token, expiration: "5m" },
      limits: { clientfailures: 20, userfailures: 10, window: "5m" },
    });
    assert.deepEqual(config.proxy, { remoteurl: "https://upstream.example", ttl: "168h", revalidate: "30s" });
    assert.deepEqual(config.health, { storagedriver: { enabled: true, interval: "10s", threshold: 3 } });
    assert.deepEqual(config.audit, { stdout: true });
    assert.deepEqual(config.http.http2, { disabled: false });
    assert.deepEqual(config.notifications, {
      endpoints: [
        {
          name: "n",
          disabled: false,
          url: "http://hook.example",
          headers: {},
          timeout: "1s",
          threshold: 10,
          backoff: "1s",
          ignoredmediatypes: [],
          ignore: { mediatypes: [], actions: [] },
        },
      ],
    });
  });

  it("the embedded default is the README's quick start", () => {
    assert.deepEqual(EMBEDDED_DEFAULT, {
      version: "0.1",
      storage: { filesystem: { rootdirectory: "./data" }, delete: { enabled: true } },
      http: { addr: ":5000", debug: { addr: ":5001" } },
    });
  });

  it("the version is 0.1, as a string or a YAML number", () => {
    assert.equal(validateConfig({ version: 0.1 }).version, "0.1");
    for (const version of ["0.2", 1, "", "0.10"]) bad({ version }, "config: version: must be 0.1");
    for (const version of [true, null, {}]) bad({ version }, "config: version: is required and must be 0.1");
  });
});

describe("durations and addresses", () => {
  it("durations are Go durations", () => {
    for (const d of ["30s", "1h30m", "1.5s", "1.25s", "500ms", "10us", "10µs", "10ns", "2m3s"])
      ok({ http: { draintimeout: d } });
    for (const d of ["", "1", "h", "1d", "1h ", " 1h", "1.h", "-1s", "1 h", "s1"])
      bad(
        { http: { draintimeout: d } },
        "config: http.draintimeout: must be a duration such as 30s, 5m or 1h",
      );
    bad({ http: { draintimeout: 5 } }, /^config: http\.draintimeout: /);
  });

  it("listen addresses are host:port, :port or [v6]:port", () => {
    for (const addr of [
      ":5000",
      "0.0.0.0:5000",
      "[::1]:5000",
      "[fe80::1.2.3.4]:1",
      "my-host.local:1",
      ":65535",
      ":1",
    ])
      ok({ http: { addr, debug: { addr } } });
    for (const addr of [
      "5000",
      "host:",
      "host:123456",
      ":",
      "[::1:5000",
      "::1:5000",
      "a b:1",
      ":x",
      "host:5000x",
      "[::g]:1",
      "x:5000 ",
      "h_o:1",
    ])
      bad({ http: { addr } }, "config: http.addr: must be host:port or :port");
    bad({ http: { debug: { addr: "x" } } }, "config: http.debug.addr: must be host:port or :port");
  });
});

describe("log, storage and http", () => {
  it("log levels and formatters are the reference's", () => {
    for (const level of ["error", "warn", "info", "debug"])
      assert.equal(v({ log: { level } }).log.level, level);
    for (const formatter of ["text", "json", "logstash"])
      assert.equal(v({ log: { formatter } }).log.formatter, formatter);
    bad({ log: { level: "trace" } }, /^config: log\.level: /);
    bad({ log: { formatter: "xml" } }, /^config: log\.formatter: /);
    assert.deepEqual(v({ log: { fields: { a: "b" }, accesslog: { disabled: true } } }).log, {
      level: "info",
      formatter: "json",
      fields: { a: "b" },
      accesslog: { disabled: true },
    });
    bad({ log: { fields: { a: 1 } } }, /^config: log\.fields\.a: /);
  });

  it("storage keys and their bounds", () => {
    bad({ storage: { filesystem: { rootdirectory: "" } } }, /^config: storage\.filesystem\.rootdirectory: /);
    ok({ storage: { filesystem: { maxthreads: 25 } } });
    bad({ storage: { filesystem: { maxthreads: 24 } } }, /^config: storage\.filesystem\.maxthreads: /);
    bad({ storage: { filesystem: { maxthreads: 25.5 } } }, /^config: storage\.filesystem\.maxthreads: /);
    for (const blobdescriptor of ["inmemory", "redis"]) ok({ storage: { cache: { blobdescriptor } } });
    bad({ storage: { cache: { blobdescriptor: "disk" } } }, /^config: storage\.cache\.blobdescriptor: /);
    ok({ storage: { cache: { blobdescriptorsize: 1 } } });
    bad({ storage: { cache: { blobdescriptorsize: 0 } } }, /^config: storage\.cache\.blobdescriptorsize: /);
    bad({ storage: { redirect: {} } }, /^config: storage\.redirect\.disable: /);
    assert.deepEqual(v({ storage: { redirect: { disable: true } } }).storage.redirect, { disable: true });
    assert.deepEqual(v({ storage: {} }).storage, {
      filesystem: { rootdirectory: "/var/lib/registry" },
      delete: { enabled: false },
    });
  });

  it("http.prefix is a path starting with /, stored without trailing slashes", () => {
    assert.equal(v({ http: { prefix: "/nested/registry/" } }).http.prefix, "/nested/registry");
    assert.equal(v({ http: { prefix: "/a//" } }).http.prefix, "/a");
    assert.equal(v({ http: { prefix: "/a/b" } }).http.prefix, "/a/b");
    assert.equal(v({ http: { prefix: "/" } }).http.prefix, "");
    assert.equal(v({ http: { prefix: "/A-z0._~!$&'()*+,;=:@%" } }).http.prefix, "/A-z0._~!$&'()*+,;=:@%");
    for (const prefix of ["nested/", "", "/a b", "/a?b", "/a#b", "x/a"])
      bad({ http: { prefix } }, "config: http.prefix: must be a URL path starting with /, like /path/");
  });

  it("http bounds: workers 0..64, manifests of at least 4 MiB, metrics path, TLS", () => {
    for (const workers of [0, 1, 64]) assert.equal(v({ http: { workers } }).http.workers, workers);
    for (const workers of [-1, 65, 1.5]) bad({ http: { workers } }, /^config: http\.workers: /);
    assert.equal(v({ http: { maxmanifestbytes: 4194304 } }).http.maxmanifestbytes, 4194304);
    assert.equal(v({ http: { maxmanifestbytes: 8388608 } }).http.maxmanifestbytes, 8388608);
    bad({ http: { maxmanifestbytes: 4194303 } }, /^config: http\.maxmanifestbytes: /);
    assert.equal(
      v({ http: { debug: { prometheus: { path: "/custom" } } } }).http.debug.prometheus.path,
      "/custom",
    );
    bad({ http: { debug: { prometheus: { path: "metrics" } } } }, /^config: http\.debug\.prometheus\.path: /);
    bad({ http: { host: "not a url" } }, /^config: http\.host: /);
    assert.equal(v({ http: { host: "https://r.example" } }).http.host, "https://r.example");
    const tls = v({ http: { tls: { certificate: "c", key: "k" } } }).http.tls;
    assert.deepEqual(tls, { certificate: "c", key: "k", minimumtls: "tls1.2" });
    assert.equal(
      v({ http: { tls: { certificate: "c", key: "k", minimumtls: "tls1.3" } } }).http.tls?.minimumtls,
      "tls1.3",
    );
    assert.equal(
      v({ http: { tls: { certificate: "c", key: "k", minimumtls: "tls1.2" } } }).http.tls?.minimumtls,
      "tls1.2",
    );
    bad(
      { http: { tls: { certificate: "c", key: "k", minimumtls: "tls1.1" } } },
      /^config: http\.tls\.minimumtls: /,
    );
    bad({ http: { tls: { certificate: "", key: "k" } } }, /^config: http\.tls\.certificate: /);
    bad({ http: { tls: { certificate: "c", key: "" } } }, /^config: http\.tls\.key: /);
    bad(
      { http: { tls: { certificate: "c", key: "k", clientcas: [""] } } },
      /^config: http\.tls\.clientcas\.0: /,
    );
    ok({
      http: {
        tls: { certificate: "c", key: "k", clientcas: ["ca"], ciphersuites: ["x"] },
        headers: { a: ["b"] },
      },
    });
  });
});

describe("auth", () => {
  const access = (a: Raw) => ({ auth: { htpasswd, access: a } });

  it("access subjects are *, user:NAME or group:NAME", () => {
    for (const s of ["*", "user:a", "group:g", "user:a:b", "user:alice", "group:devs"])
      ok(access({ rules: [{ subjects: [s], repositories: ["a"], actions: ["pull"] }] }));
    for (const s of [
      "alice",
      "user:",
      "group:",
      "**",
      "xuser:a",
      "users:a",
      "*x",
      "x*",
      "\nuser:a",
      "user:a\n",
    ])
      bad(
        access({ rules: [{ subjects: [s], repositories: ["a"], actions: ["pull"] }] }),
        "config: auth.access.rules.0.subjects.0: must be *, user:NAME or group:NAME",
      );
  });

  it("repository patterns and actions", () => {
    for (const r of ["a", "a/**", "a._-/*", "0"])
      ok(
        access({ rules: [{ subjects: ["*"], repositories: [r], actions: ["*", "pull", "push", "delete"] }] }),
      );
    for (const r of ["A", "a b", "a:b", "", "a\n"])
      bad(
        access({ rules: [{ subjects: ["*"], repositories: [r], actions: ["pull"] }] }),
        "config: auth.access.rules.0.repositories.0: must be a repository name pattern",
      );
    for (const a of [
      { rules: [{ subjects: [], repositories: ["a"], actions: ["pull"] }] },
      { rules: [{ subjects: ["*"], repositories: [], actions: ["pull"] }] },
      { rules: [{ subjects: ["*"], repositories: ["a"], actions: [] }] },
      { rules: [{ subjects: ["*"], repositories: ["a"], actions: ["admin"] }] },
      { anonymous: [{ repositories: [], actions: ["pull"] }] },
      { anonymous: [{ repositories: ["a"], actions: [] }] },
      { default: ["admin"] },
      { groups: { g: [""] } },
      { admins: [""] },
    ])
      bad(access(a), /^config: auth\.access\./);
    ok(
      access({
        default: [],
        anonymous: [{ repositories: ["a"], actions: ["pull"] }],
        groups: { g: ["u"] },
        admins: ["u"],
      }),
    );
  });

  it("access rules need htpasswd or token authentication", () => {
    bad(
      { auth: { access: {} } },
      "config: auth.access: access rules need a way to authenticate users (auth.htpasswd or auth.token)",
    );
    ok({ auth: { htpasswd, access: {} } });
    ok({ auth: { token, access: {} } });
    ok({ auth: {} });
  });

  it("a token section needs a key to sign or to trust", () => {
    const { jwks: _j, ...noKey } = token;
    bad(
      { auth: { token: noKey } },
      "config: auth.token: needs signingkey (to issue tokens), rootcertbundle or jwks (to trust an issuer)",
    );
    for (const key of [{ signingkey: "/key.pem" }, { rootcertbundle: "/bundle.pem" }, { jwks: "/jwks.json" }])
      ok({ auth: { token: { ...noKey, ...key } } });
    for (const key of ["signingkey", "rootcertbundle", "jwks"])
      bad({ auth: { token: { ...token, [key]: "" } } }, new RegExp(`^config: auth\\.token\\.${key}: `));
    bad({ auth: { token: { ...token, realm: "not a url" } } }, /^config: auth\.token\.realm: /);
    bad({ auth: { token: { ...token, service: "" } } }, /^config: auth\.token\.service: /);
    bad({ auth: { token: { ...token, issuer: "" } } }, /^config: auth\.token\.issuer: /);
    bad({ auth: { token: { ...token, expiration: "5" } } }, /^config: auth\.token\.expiration: /);
    bad({ auth: { htpasswd: { realm: "", path: "p" } } }, /^config: auth\.htpasswd\.realm: /);
    bad({ auth: { limits: { clientfailures: 0 } } }, /^config: auth\.limits\.clientfailures: /);
    bad({ auth: { limits: { userfailures: 0 } } }, /^config: auth\.limits\.userfailures: /);
  });
});

describe("proxy, health, audit, sync, notifications", () => {
  const proxy = (p: Raw) => ({ proxy: { remoteurl: "https://u.example", ...p } });

  it("proxy.ttl is a duration or 0; one password source", () => {
    assert.equal(v(proxy({ ttl: "1h" })).proxy?.ttl, "1h");
    assert.equal(v(proxy({ ttl: "0" })).proxy?.ttl, "0");
    assert.equal(v(proxy({ ttl: 0 })).proxy?.ttl, "0");
    for (const ttl of ["1", 1, "00"]) bad(proxy({ ttl }), /^config: proxy\.ttl: /);
    bad(
      proxy({ password: "p", passwordfile: "/f" }),
      "config: proxy: set password or passwordfile, not both",
    );
    ok(proxy({ password: "p", username: "u" }));
    ok(proxy({ passwordfile: "/f" }));
    bad(proxy({ passwordfile: "" }), /^config: proxy\.passwordfile: /);
    bad(proxy({ revalidate: "soon" }), /^config: proxy\.revalidate: /);
    bad({ proxy: { remoteurl: "nope" } }, /^config: proxy\.remoteurl: /);
  });

  it("health threshold is positive", () => {
    bad({ health: { storagedriver: { threshold: 0 } } }, /^config: health\.storagedriver\.threshold: /);
  });

  it("audit needs a file or stdout", () => {
    for (const audit of [{}, { stdout: false }])
      bad({ audit }, "config: audit: set file, stdout: true, or both");
    assert.deepEqual(v({ audit: { file: "/a" } }).audit, { file: "/a", stdout: false });
    assert.deepEqual(v({ audit: { file: "/a", stdout: true } }).audit, { file: "/a", stdout: true });
    bad({ audit: { file: "" } }, /^config: audit\.file: /);
  });

  it("sync upstreams are named by host or host:port", () => {
    for (const registry of ["docker.io", "mirror.example:5000", "Host-1.x", "localhost"]) {
      const upstream = { registry, url: "https://m.example", username: "u", passwordfile: "/p", ca: "/ca" };
      assert.deepEqual(v({ sync: { upstreams: [upstream] } }).sync.upstreams, [upstream]);
    }
    for (const registry of ["https://x", "a/b", "host:", "host:port", " host", "host ", "", "a_b"])
      bad(
        { sync: { upstreams: [{ registry }] } },
        "config: sync.upstreams.0.registry: must be a host or host:port",
      );
    for (const key of ["username", "passwordfile", "ca"])
      bad(
        { sync: { upstreams: [{ registry: "x", [key]: "" }] } },
        new RegExp(`^config: sync\\.upstreams\\.0\\.${key}: `),
      );
  });

  it("notification endpoints", () => {
    const endpoint = (e: Raw) => ({
      notifications: { endpoints: [{ name: "n", url: "http://h.example", ...e }] },
    });
    for (const action of ["pull", "push", "delete", "mount"])
      assert.deepEqual(
        v(endpoint({ ignore: { actions: [action] } })).notifications?.endpoints[0]?.ignore.actions,
        [action],
      );
    bad(
      endpoint({ ignore: { actions: ["tag"] } }),
      /^config: notifications\.endpoints\.0\.ignore\.actions\.0: /,
    );
    bad(endpoint({ name: "" }), /^config: notifications\.endpoints\.0\.name: /);
    bad(endpoint({ threshold: 0 }), /^config: notifications\.endpoints\.0\.threshold: /);
    assert.deepEqual(v({ notifications: { events: { includereferences: true } } }).notifications, {
      events: { includereferences: true },
      endpoints: [],
    });
    assert.deepEqual(v({ notifications: { events: {} } }).notifications?.events, {
      includereferences: false,
    });
  });
});
