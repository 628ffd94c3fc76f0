/** mirror-config's files for each runtime, read back with the parsers the runtimes' formats need. */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { parseSyncManifest } from "../../../server/src/sync/manifest.js";
import { mirrorConfig, upstreamHosts } from "../../../server/src/sync/mirror-config.js";
import { MirrorMap } from "../../../server/src/sync/mirror-map.js";
import { mirroredPath } from "../../../server/src/http/mirror.js";
import { tempDir } from "../../helpers/registry.js";
import { run } from "../../helpers/tools.js";

const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;
const manifest = parseSyncManifest(`
sync:
  images:
    - { source: docker.io/nginx:1.25-alpine, target: local-registry:5000/nginx:1.25-alpine }
    - { source: index.docker.io/library/redis:7, target: local-registry:5000/cache/redis:stable }
    - { source: quay.io/prometheus/prometheus:v2.42.0, target: local-registry:5000/prometheus:v2.42.0 }
`);
const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const registry = new URL("https://local-registry.neam.internal:5000");

describe("mirror-config", () => {
  it("names each upstream host once, Hub's aliases as docker.io", () => {
    assert.deepEqual(upstreamHosts(manifest), ["docker.io", "quay.io"]);
  });

  it("containerd: a hosts.toml per host with the registry as mirror and server, and the CA", () => {
    const files = mirrorConfig(["docker.io", "quay.io"], { format: "containerd", registry, ca: CA });
    assert.deepEqual(
      files.map((f) => f.path),
      [
        "docker.io/hosts.toml",
        "docker.io/neam-registry-ca.crt",
        "quay.io/hosts.toml",
        "quay.io/neam-registry-ca.crt",
      ],
    );
    const hosts = files[0]!.content;
    assert.match(hosts, /^server = "https:\/\/local-registry\.neam\.internal:5000"$/m);
    assert.match(hosts, /^\[host\."https:\/\/local-registry\.neam\.internal:5000"\]$/m);
    assert.match(hosts, /capabilities = \["pull", "resolve"\]/);
    assert.match(hosts, /ca = "\/etc\/containerd\/certs\.d\/docker\.io\/neam-registry-ca\.crt"/);
    assert.equal(files[1]!.content, CA);
  });

  it("cri-o: path-form locations under the registry, secure over https", () => {
    const [conf, ca] = mirrorConfig(["docker.io"], { format: "cri-o", registry, ca: CA });
    assert.equal(conf!.path, "registries.conf.d/50-neam-registry.conf");
    assert.match(
      conf!.content,
      /prefix = "docker\.io"\nlocation = "local-registry\.neam\.internal:5000\/docker\.io"\ninsecure = false/,
    );
    assert.equal(ca!.path, "certs.d/local-registry.neam.internal:5000/ca.crt");
  });

  it("k3s: mirrors with a rewrite into the path form, and the CA file", () => {
    const [yaml] = mirrorConfig(["docker.io", "quay.io"], { format: "k3s", registry, ca: CA });
    const parsed = parse(yaml!.content) as {
      mirrors: Record<string, { endpoint: string[]; rewrite: Record<string, string> }>;
      configs: Record<string, { tls: { ca_file: string } }>;
    };
    assert.deepEqual(parsed.mirrors["quay.io"], {
      endpoint: ["https://local-registry.neam.internal:5000"],
      rewrite: { "^(.*)$": "quay.io/$1" },
    });
    assert.equal(
      parsed.configs["local-registry.neam.internal:5000"]!.tls.ca_file,
      "/etc/rancher/k3s/neam-registry-ca.crt",
    );
    // What k3s then asks resolves as the sync manifest says.
    const path = mirroredPath(
      "/v2/docker.io/library/redis/manifests/7",
      "GET",
      "docker.io",
      new MirrorMap(manifest),
    );
    assert.equal(path, "/v2/cache/redis/manifests/stable");
  });

  it("the CLI refuses what it cannot use with one line naming the flag", () => {
    const dir = tempDir();
    const file = join(dir, "m.yaml");
    writeFileSync(file, "sync:\n  images:\n    - { source: docker.io/nginx:1, target: x.local/nginx:1 }\n");
    for (const [args, message] of [
      [["--manifest", file, "--registry", "https://r:5000"], /needs --format containerd\|cri-o\|k3s/],
      [["--format", "docker", "--manifest", file, "--registry", "https://r:5000"], /needs --format/],
      [["--format", "k3s", "--registry", "https://r:5000"], /needs --manifest FILE/],
      [["--format", "k3s", "--manifest", file], /needs --registry URL/],
      [["--format", "k3s", "--manifest", file, "--registry", "r:5000/x"], /--registry "r:5000\/x"/],
      [
        ["--format", "k3s", "--manifest", file, "--registry", "https://r:5000", "--ca", file],
        /holds no PEM certificate/,
      ],
    ] as const) {
      const result = run(process.execPath, [MAIN, "mirror-config", ...args], { allowFailure: true });
      assert.equal(result.status, 1, args.join(" "));
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trim().split("\n").length, 1);
    }
    const printed = run(process.execPath, [
      MAIN,
      "mirror-config",
      "--format",
      "containerd",
      "--manifest",
      file,
      "--registry",
      "http://r:5000",
    ]);
    assert.match(printed.stdout, /^# ==> \/etc\/containerd\/certs\.d\/docker\.io\/hosts\.toml <==$/m);
  });
});
