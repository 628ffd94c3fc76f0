/**
 * Nodes pulling upstream names from us, with no route to any upstream: containerd with the
 * hosts.toml that `neam-registry mirror-config --format containerd` writes (it sends `?ns=`), and
 * podman with the `--format cri-o` registries.conf (the path form), for a name the sync manifest
 * renames and one it does not list.
 */
import assert from "node:assert/strict";

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startContainerd, type Containerd } from "../helpers/containerd.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { run, skopeo } from "../helpers/tools.js";

const MAIN = new URL("../../server/src/main.js", import.meta.url).pathname;

let registry: RegistryProcess;
let dir: string;
let manifestFile: string;
let renamed: ReturnType<typeof writeOciLayout>;
let unlisted: ReturnType<typeof writeOciLayout>;

function syncManifest(target: string): string {
  return [
    "sync:",
    "  images:",
    "    - source: docker.io/library/nginx:1.25-alpine",
    `      target: local-registry:5000/${target}`,
    "    - source: gcr.io/distroless/static:nonroot",
    "      target: local-registry:5000/distroless/static:nonroot",
    "",
  ].join("\n");
}

function mirrorConfig(format: string, out: string): string {
  return run(process.execPath, [
    MAIN,
    "mirror-config",
    "--format",
    format,
    "--manifest",
    manifestFile,
    "--registry",
    registry.url,
    "--out",
    out,
  ]).stdout;
}

const head = (path: string) =>
  fetch(`${registry.url}${path}`, {
    method: "HEAD",
    headers: { Accept: "application/vnd.oci.image.index.v1+json" },
  });

before(async () => {
  dir = tempDir("neam-mirror-");
  manifestFile = join(dir, "sync-manifest.yaml");
  writeFileSync(manifestFile, syncManifest("nginx:1.25-alpine"));
  registry = await startRegistry({ config: { sync: { manifest: manifestFile } } });
  // What a sync or an import left: the renamed target, and an image under its upstream name.
  const a = join(dir, "a");
  renamed = writeOciLayout(a, "v1", "nginx");
  skopeo(
    "copy",
    "--all",
    "--dest-tls-verify=false",
    `oci:${a}:v1`,
    `docker://${registry.host}/nginx:1.25-alpine`,
  );
  const b = join(dir, "b");
  unlisted = writeOciLayout(b, "v1", "busybox");
  skopeo(
    "copy",
    "--all",
    "--dest-tls-verify=false",
    `oci:${b}:v1`,
    `docker://${registry.host}/docker.io/library/busybox:1.36`,
  );
});

after(async () => {
  await registry?.stop();
});

describe("pulls by upstream name", () => {
  it("resolve ?ns= through the sync manifest, Hub's aliases, and unlisted names under their upstream name", async () => {
    for (const ns of ["docker.io", "index.docker.io", "registry-1.docker.io"]) {
      const found = await head(`/v2/library/nginx/manifests/1.25-alpine?ns=${ns}`);
      assert.equal(found.status, 200, ns);
      assert.equal(found.headers.get("docker-content-digest"), renamed.index);
    }
    const busybox = await head("/v2/library/busybox/manifests/1.36?ns=docker.io");
    assert.equal(busybox.headers.get("docker-content-digest"), unlisted.index);
    // The path form (CRI-O, podman, k3s), and both at once (k3s rewrites and containerd adds ns).
    assert.equal((await head("/v2/docker.io/library/nginx/manifests/1.25-alpine")).status, 200);
    assert.equal((await head("/v2/docker.io/library/nginx/manifests/1.25-alpine?ns=docker.io")).status, 200);
    assert.equal((await head("/v2/index.docker.io/library/busybox/manifests/1.36")).status, 200);
    // A blob by digest through the renamed repository's upstream name.
    const index = JSON.parse(
      await (
        await fetch(`${registry.url}/v2/library/nginx/manifests/${renamed.index}?ns=docker.io`, {
          headers: { Accept: "application/vnd.oci.image.index.v1+json" },
        })
      ).text(),
    ) as { manifests: { digest: string }[] };
    assert.equal(index.manifests.length, 2);
    // Tags of the upstream name are the target's.
    const tags = (await (await fetch(`${registry.url}/v2/library/nginx/tags/list?ns=docker.io`)).json()) as {
      name: string;
      tags: string[];
    };
    assert.deepEqual(tags, { name: "nginx", tags: ["1.25-alpine"] });
  });

  it("never treat ns as a host to reach, and leave pushes and other names alone", async () => {
    assert.equal((await head("/v2/library/nginx/manifests/1.25-alpine?ns=gcr.io")).status, 404);
    assert.equal(
      (await head("/v2/library/nginx/manifests/1.25-alpine")).status,
      404,
      "no ns: our own library/nginx",
    );
    assert.equal((await head("/v2/nginx/manifests/1.25-alpine")).status, 200);
    const bad = await fetch(
      `${registry.url}/v2/library/nginx/manifests/x?ns=${encodeURIComponent("evil host/")}`,
    );
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { errors: { code: string }[] }).errors[0]!.code, "NAME_INVALID");
    // A push with ns lands under the name it names.
    const upload = await fetch(`${registry.url}/v2/pushed/app/blobs/uploads/?ns=docker.io`, {
      method: "POST",
    });
    assert.equal(upload.status, 202);
    assert.match(upload.headers.get("location")!, /\/v2\/pushed\/app\/blobs\/uploads\//);
  });

  it("follow the sync manifest when it changes", async () => {
    const c = join(dir, "c");
    const other = writeOciLayout(c, "v1", "nginx-stable");
    skopeo(
      "copy",
      "--all",
      "--dest-tls-verify=false",
      `oci:${c}:v1`,
      `docker://${registry.host}/web/nginx:stable`,
    );
    writeFileSync(manifestFile, syncManifest("web/nginx:stable"));
    await waitUntil(
      async () =>
        (await head("/v2/library/nginx/manifests/1.25-alpine?ns=docker.io")).headers.get(
          "docker-content-digest",
        ) === other.index,
      15_000,
    );
    // A manifest that does not parse keeps the map in force.
    writeFileSync(manifestFile, "sync: [not, a, manifest");
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    const still = await head("/v2/library/nginx/manifests/1.25-alpine?ns=docker.io");
    assert.equal(still.headers.get("docker-content-digest"), other.index);
    assert.match(registry.log(), /sync manifest rejected; the previous mirror map stays/);
    writeFileSync(manifestFile, syncManifest("nginx:1.25-alpine"));
    await waitUntil(
      async () =>
        (await head("/v2/library/nginx/manifests/1.25-alpine?ns=docker.io")).headers.get(
          "docker-content-digest",
        ) === renamed.index,
      15_000,
    );
  });
});

describe("containerd, with mirror-config --format containerd", () => {
  let containerd: Containerd;
  let socket: string;
  let hostsDir: string;

  before(async () => {
    containerd = await startContainerd("neam-mirror-ctr-");
    socket = containerd.socket;
    hostsDir = join(tempDir("neam-mirror-hosts-"), "certs.d");
    assert.match(mirrorConfig("containerd", hostsDir), /docker\.io, gcr\.io/);
  });

  after(() => containerd?.stop());

  it("pulls docker.io names from us: one the sync manifest renames, one it does not list", () => {
    const hosts = readFileSync(join(hostsDir, "docker.io/hosts.toml"), "utf8");
    assert.match(hosts, new RegExp(`server = "${registry.url}"`), "a miss never leaves the site");
    const ctr = (...args: string[]) => run("ctr", ["--address", socket, "--namespace", "k8s.io", ...args]);
    for (const [name, written] of [
      ["docker.io/library/nginx:1.25-alpine", renamed],
      ["docker.io/library/busybox:1.36", unlisted],
    ] as const) {
      ctr("images", "pull", "--hosts-dir", hostsDir, "--platform", "linux/amd64", name);
      const listed = ctr("images", "ls")
        .stdout.split("\n")
        .find((line) => line.startsWith(`${name} `));
      assert.ok(listed?.includes(written.index), `${name} is ${written.index}: ${listed}`);
    }
    // Nothing here is named library/nginx or library/busybox: only the ns mapping could answer.
    return fetch(`${registry.url}/v2/_catalog`)
      .then((r) => r.json() as Promise<{ repositories: string[] }>)
      .then(({ repositories }) => {
        assert.ok(!repositories.includes("library/nginx") && !repositories.includes("library/busybox"));
      });
  });
});

describe("podman, with mirror-config --format cri-o", () => {
  it("pulls docker.io names from us by the path form", () => {
    const work = tempDir("neam-mirror-podman-");
    mirrorConfig("cri-o", work);
    const conf = readFileSync(join(work, "registries.conf.d/50-neam-registry.conf"), "utf8");
    assert.match(conf, new RegExp(`location = "${registry.host}/docker.io"`));
    // A registries.conf of its own (podman reads drop-ins only beside the system file).
    const file = join(work, "registries.conf");
    writeFileSync(file, conf);
    const podman = (...args: string[]) =>
      spawnPodman(file, [
        "--root",
        join(work, "root"),
        "--runroot",
        join(work, "run"),
        "--storage-driver",
        "vfs",
        ...args,
      ]);
    for (const [name, written] of [
      ["docker.io/library/nginx:1.25-alpine", renamed],
      ["docker.io/library/busybox:1.36", unlisted],
    ] as const) {
      podman("pull", "-q", "--arch", "amd64", name);
      const digest = podman("image", "inspect", "--format", "{{.Digest}}", name).trim();
      assert.equal(digest, written.index, name);
    }
  });
});

function spawnPodman(registriesConf: string, args: string[]): string {
  return run("env", [`CONTAINERS_REGISTRIES_CONF=${registriesConf}`, "podman", ...args], { timeout: 180_000 })
    .stdout;
}
