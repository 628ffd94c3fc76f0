import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, tempDir, waitUntil } from "./registry.js";

/** The reference registry (Debian `docker-registry`, CNCF Distribution 2.8) on loopback. */
export async function startReference(
  root: string,
  options: { deleteEnabled?: boolean; prefix?: string } = {},
) {
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
  const child = spawn("docker-registry", ["serve", config], { stdio: "ignore", env });
  const host = `127.0.0.1:${port}`;
  await waitUntil(async () => {
    if (child.exitCode !== null) throw new Error("docker-registry exited");
    const prefix = (options.prefix ?? "").replace(/\/+$/, "");
    return (await fetch(`http://${host}${prefix}/v2/`).catch(() => undefined))?.status === 200;
  }, 15_000);
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
