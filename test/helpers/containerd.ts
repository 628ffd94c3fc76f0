import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir, waitUntil } from "./registry.js";

export interface Containerd {
  /** The gRPC socket, for `ctr --address`. */
  readonly socket: string;
  stop(): void;
}

/**
 * A containerd of the test's own (no node, no CRI plugin): root, state and socket under a temp
 * dir, as shared/TESTING-TOOLS.md describes; ready in about 0.1 s.
 */
export async function startContainerd(prefix = "neam-containerd-"): Promise<Containerd> {
  const dir = tempDir(prefix);
  const socket = join(dir, "containerd.sock");
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
  const child = spawn("containerd", ["--config", config], { stdio: "ignore" });
  await waitUntil(async () => existsSync(socket), 10_000);
  return { socket, stop: () => child.kill("SIGTERM") };
}
