/** skopeo (containers/image, the client of podman, CRI-O and `skopeo sync`) against our registry. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { metricValue, scrape, startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { inspectRaw, servedDigest, skopeo } from "../helpers/tools.js";

let registry: RegistryProcess;
let layout: string;
let digests: ReturnType<typeof writeOciLayout>;
const ref = (path: string) => `docker://${registry.host}/${path}`;

before(async () => {
  registry = await startRegistry({ workers: 2 });
  layout = join(tempDir(), "layout");
  digests = writeOciLayout(layout, "v1");
  // Every test starts from this push, so each one runs alone (--test-name-pattern) too.
  skopeo("copy", "--all", "--dest-tls-verify=false", `oci:${layout}:v1`, ref("apps/multi:v1"));
});
after(() => registry?.stop());

describe("skopeo", () => {
  it("copies a multi-arch index with --all; the index and both images keep their digests", () => {
    skopeo("copy", "--all", "--dest-tls-verify=false", `oci:${layout}:v1`, ref("apps/copied:v1"));
    assert.equal(servedDigest(ref("apps/copied:v1")), digests.index);
    for (const digest of Object.values(digests.manifests)) {
      assert.equal(servedDigest(ref(`apps/copied@${digest}`)), digest);
    }
  });

  it("pulls the whole index back into an OCI layout, byte for byte", () => {
    const out = join(tempDir(), "pulled");
    skopeo("copy", "--all", "--src-tls-verify=false", ref("apps/multi:v1"), `oci:${out}:v1`);
    const pulledIndex = JSON.parse(skopeo("inspect", "--raw", `oci:${out}:v1`).stdout);
    assert.deepEqual(
      pulledIndex.manifests.map((m: { digest: string }) => m.digest).sort(),
      Object.values(digests.manifests).sort(),
    );
  });

  it("pulls one platform with --override-arch", () => {
    const out = join(tempDir(), "arm");
    skopeo(
      "--override-arch",
      "arm64",
      "copy",
      "--src-tls-verify=false",
      ref("apps/multi:v1"),
      `oci:${out}:arm`,
    );
    const config = JSON.parse(skopeo("inspect", "--config", `oci:${out}:arm`).stdout);
    assert.equal(config.architecture, "arm64");
  });

  it("pushes Docker schema 2 with --format v2s2 and serves it with the Docker media type", () => {
    skopeo(
      "copy",
      "--format",
      "v2s2",
      "--dest-tls-verify=false",
      `oci:${layout}:v1-amd64`,
      ref("apps/docker:v2s2"),
    );
    assert.equal(
      inspectRaw(ref("apps/docker:v2s2")).mediaType,
      "application/vnd.docker.distribution.manifest.v2+json",
    );
    const info = JSON.parse(skopeo("inspect", "--tls-verify=false", ref("apps/docker:v2s2")).stdout);
    assert.equal(info.Architecture, "amd64");
  });

  it("lists tags and inspects", () => {
    skopeo("copy", "--dest-tls-verify=false", `oci:${layout}:v1-amd64`, ref("apps/multi:amd64"));
    const tags = JSON.parse(skopeo("list-tags", "--tls-verify=false", ref("apps/multi")).stdout);
    assert.deepEqual(tags.Tags, ["amd64", "v1"]);
    const info = JSON.parse(skopeo("inspect", "--tls-verify=false", ref("apps/multi:amd64")).stdout);
    assert.equal(info.Digest, digests.manifests.amd64);
  });

  it("copies between repositories of the registry (layers are mounted, not re-sent)", async () => {
    const layers = new Map<string, number>();
    const configs = new Map<string, number>();
    for (const digest of Object.values(digests.manifests)) {
      const manifest = JSON.parse(
        skopeo("inspect", "--raw", "--tls-verify=false", ref(`apps/multi@${digest}`)).stdout,
      ) as { config: { digest: string; size: number }; layers: { digest: string; size: number }[] };
      configs.set(manifest.config.digest, manifest.config.size);
      for (const layer of manifest.layers) layers.set(layer.digest, layer.size);
    }
    const before = await scrape(registry);
    skopeo(
      "copy",
      "--all",
      "--src-tls-verify=false",
      "--dest-tls-verify=false",
      ref("apps/multi:v1"),
      ref("mirror/multi:v1"),
    );
    assert.equal(servedDigest(ref("mirror/multi:v1")), digests.index);
    const after = await scrape(registry);
    const delta = (name: string, labels: Record<string, string> = {}) =>
      metricValue(after, name, labels) - metricValue(before, name, labels);
    // Each layer is answered by a mount (201 to the POST) and none of its bytes reach the registry.
    // skopeo reads every config blob to copy it and sends it again (containers/image does not
    // mount configs): exactly those bytes, in one upload session each, are all that arrive.
    const sum = (sizes: Map<string, number>) => [...sizes.values()].reduce((total, size) => total + size, 0);
    assert.equal(
      delta("http_requests_total", { method: "POST", route: "upload_start", status: "201" }),
      layers.size,
    );
    assert.equal(delta("http_requests_total", { route: "upload_start", status: "202" }), configs.size);
    assert.equal(delta("registry_upload_bytes_total"), sum(configs), "only the configs were uploaded");
    assert.ok(sum(layers) > 0);
  });

  it("deletes by digest; the tag is then gone", () => {
    skopeo("copy", "--dest-tls-verify=false", `oci:${layout}:v1-amd64`, ref("apps/deleteme:x"));
    skopeo("delete", "--tls-verify=false", ref(`apps/deleteme@${digests.manifests.amd64}`));
    const result = skopeo("list-tags", "--tls-verify=false", ref("apps/deleteme"));
    assert.deepEqual(JSON.parse(result.stdout).Tags, []);
  });
});
