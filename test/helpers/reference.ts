import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, tempDir, waitUntil } from "./registry.js";

/** The reference registry (Debian `docker-registry`, CNCF Distribution 2.8) on loopback. */
export async function startReference(
  root: string,
  options: { deleteEnabled?: boolean; prefix?: string } = {},
) {
  // A port found free can be taken by another test process before the registry binds it: then
  // it exits saying so and is started again on another port.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchReference(root, options);
    } catch (error) {
      if (!(error instanceof Error && error.message.includes("address already in use")) || attempt === 5)
        throw error;
    }
  }
}

async function launchReference(root: string, options: { deleteEnabled?: boolean; prefix?: string }) {
  const port = await freePort();
  const dir = tempDir("neam-ref-");
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    [
      "version: 0.1",
      "log: {level: error, accesslog: {disabled: true}}",
      `storage: {filesystem: {rootdirectory: ${root}}, delete: {enabled: ${options.deleteEnabled ?? true}}}`,
      `http: {addr: "127.0.0.1:${port}"${options.prefix ? `, prefix: ${options.prefix}` : ""}}`,
      "",
    ].join("\n"),
  );
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE; // its S3 driver panics on it (shared/TESTING-TOOLS.md)
  const child = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "ignore", "pipe"], env });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-4096)));
  const host = `127.0.0.1:${port}`;
  try {
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
      const prefix = (options.prefix ?? "").replace(/\/+$/, "");
      return (await fetch(`http://${host}${prefix}/v2/`).catch(() => undefined))?.status === 200;
    }, 15_000);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    host,
    url: `http://${host}`,
    pid: child.pid!,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}
