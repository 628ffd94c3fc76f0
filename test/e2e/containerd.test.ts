/** containerd's ctr, the client of Kubernetes nodes, pulling from and pushing to our registry. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";
import { startContainerd, type Containerd } from "../helpers/containerd.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { inspectRaw, run, servedDigest, skopeo } from "../helpers/tools.js";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";

let registry: RegistryProcess;
let containerd: Containerd;
let socket: string;
let digests: ReturnType<typeof writeOciLayout>;
/** Each test has its own containerd namespace (own images and content), so each runs alone. */
const ctrIn =
  (namespace: string) =>
  (...args: string[]) =>
    run("ctr", ["--address", socket, "--namespace", namespace, ...args]);
/** The config and layer digests of each platform's manifest, as the registry serves them. */
let platformBlobs: Record<string, string[]>;

/** Digests in a namespace's content store (`ctr content ls`, first column). */
function contentDigests(ctr: ReturnType<typeof ctrIn>): Set<string> {
  const lines = ctr("content", "ls", "--quiet").stdout.split("\n");
  return new Set(lines.map((line) => line.trim()).filter((line) => line.startsWith("sha256:")));
}

/** `ctr images ls` rows as REF -> digest. */
function images(ctr: ReturnType<typeof ctrIn>): Map<string, string> {
  const rows = ctr("images", "ls").stdout.trim().split("\n").slice(1);
  return new Map(rows.map((row) => row.split(/\s+/)).map((cols) => [cols[0]!, cols[2]!]));
}

/** The sha256 of a blob's bytes as containerd stored them. */
function storedDigest(namespace: string, digest: string): string {
  const out = spawnSync("ctr", ["--address", socket, "--namespace", namespace, "content", "get", digest]);
  assert.equal(out.status, 0, String(out.stderr));
  return `sha256:${createHash("sha256").update(out.stdout).digest("hex")}`;
}

before(async () => {
  registry = await startRegistry({ workers: 2 });
  containerd = await startContainerd("neam-containerd-");
  socket = containerd.socket;
  const layout = join(tempDir(), "layout");
  digests = writeOciLayout(layout, "v1", "ctr");
  skopeo(
    "copy",
    "--all",
    "--dest-tls-verify=false",
    `oci:${layout}:v1`,
    `docker://${registry.host}/k8s/app:v1`,
  );
  platformBlobs = {};
  for (const [arch, digest] of Object.entries(digests.manifests)) {
    const manifest = inspectRaw(`docker://${registry.host}/k8s/app@${digest}`) as unknown as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    platformBlobs[arch] = [manifest.config.digest, ...manifest.layers.map((l) => l.digest)];
  }
});

after(async () => {
  containerd?.stop();
  await registry?.stop();
});

describe("containerd ctr", () => {
  it("pulls a multi-arch image with --all-platforms", () => {
    const ctr = ctrIn("all");
    const out = ctr("images", "pull", "--plain-http", "--all-platforms", `${registry.host}/k8s/app:v1`);
    assert.match(out.stdout + out.stderr, /done/);
    assert.equal(images(ctr).get(`${registry.host}/k8s/app:v1`), digests.index);
    // The index, both manifests and every config and layer of both platforms arrived whole.
    const content = contentDigests(ctr);
    const expected = [
      digests.index,
      ...Object.values(digests.manifests),
      ...Object.values(platformBlobs).flat(),
    ];
    for (const digest of expected) assert.ok(content.has(digest), `${digest} pulled`);
    for (const digest of Object.values(platformBlobs).flat())
      assert.equal(storedDigest("all", digest), digest);
  });

  it("pulls and unpacks one platform", async () => {
    const ctr = ctrIn("arm64");
    ctr("images", "pull", "--plain-http", "--platform", "linux/arm64", `${registry.host}/k8s/app:v1`);
    assert.equal(images(ctr).get(`${registry.host}/k8s/app:v1`), digests.index);
    const content = contentDigests(ctr);
    for (const digest of [digests.index, digests.manifests.arm64!, ...platformBlobs.arm64!])
      assert.ok(content.has(digest), `${digest} (arm64) pulled`);
    for (const digest of platformBlobs.amd64!)
      assert.ok(!content.has(digest), `${digest} (amd64) not pulled`);
    for (const digest of platformBlobs.arm64!) assert.equal(storedDigest("arm64", digest), digest);
    // Unpacked: the one arm64 layer is a committed snapshot named by its chain ID (its diff ID).
    const config = (await (
      await fetch(`${registry.url}/v2/k8s/app/blobs/${platformBlobs.arm64![0]!}`)
    ).json()) as { architecture: string; rootfs: { diff_ids: string[] } };
    assert.equal(config.architecture, "arm64");
    const snapshots = ctr("snapshots", "ls").stdout;
    assert.match(snapshots, new RegExp(`^${config.rootfs.diff_ids[0]!}\\s.*Committed`, "m"));
  });

  it("pushes an image back under another name", () => {
    const ctr = ctrIn("push");
    ctr("images", "pull", "--plain-http", "--all-platforms", `${registry.host}/k8s/app:v1`);
    ctr("images", "tag", "--force", `${registry.host}/k8s/app:v1`, `${registry.host}/k8s/pushed:v1`);
    ctr("images", "push", "--plain-http", `${registry.host}/k8s/pushed:v1`);
    assert.equal(servedDigest(`docker://${registry.host}/k8s/pushed:v1`), digests.index);
  });
});
