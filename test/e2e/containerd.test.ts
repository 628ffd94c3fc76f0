/** containerd's ctr, the client of Kubernetes nodes, pulling from and pushing to our registry. */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { run, servedDigest, skopeo } from "../helpers/tools.js";
import { existsSync } from "node:fs";

let registry: RegistryProcess;
let containerd: ChildProcess;
let socket: string;
let digests: ReturnType<typeof writeOciLayout>;
const ctr = (...args: string[]) => run("ctr", ["--address", socket, "--namespace", "test", ...args]);

before(async () => {
  registry = await startRegistry({ workers: 2 });
  const dir = tempDir("neam-containerd-");
  socket = join(dir, "containerd.sock");
  const config = join(dir, "config.toml");
  writeFileSync(
    config,
    [
      "version = 2",
      `root = "${join(dir, "root")}"`,
      `state = "${join(dir, "state")}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = "${socket}"`,
      "",
    ].join("\n"),
  );
  containerd = spawn("containerd", ["--config", config], { stdio: "ignore" });
  await waitUntil(async () => existsSync(socket), 10_000);
  const layout = join(tempDir(), "layout");
  digests = writeOciLayout(layout, "v1", "ctr");
  skopeo(
    "copy",
    "--all",
    "--dest-tls-verify=false",
    `oci:${layout}:v1`,
    `docker://${registry.host}/k8s/app:v1`,
  );
});

after(async () => {
  containerd?.kill("SIGTERM");
  await registry?.stop();
});

describe("containerd ctr", () => {
  it("pulls a multi-arch image with --all-platforms", () => {
    const out = ctr("images", "pull", "--plain-http", "--all-platforms", `${registry.host}/k8s/app:v1`);
    assert.match(out.stdout + out.stderr, /done/);
    const list = ctr("images", "ls").stdout;
    assert.ok(list.includes(`${registry.host}/k8s/app:v1`));
    assert.ok(list.includes(digests.index));
  });

  it("pulls and unpacks one platform", () => {
    ctr("images", "pull", "--plain-http", "--platform", "linux/arm64", `${registry.host}/k8s/app:v1`);
  });

  it("pushes an image back under another name", () => {
    ctr("images", "tag", "--force", `${registry.host}/k8s/app:v1`, `${registry.host}/k8s/pushed:v1`);
    ctr("images", "push", "--plain-http", `${registry.host}/k8s/pushed:v1`);
    assert.equal(servedDigest(`docker://${registry.host}/k8s/pushed:v1`), digests.index);
  });
});
