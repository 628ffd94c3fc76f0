import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { START_TIMEOUT_MS, STOP_TIMEOUT_MS, track, tempDir, waitUntil } from "./registry.js";

/**
 * The reference registry (Debian `docker-registry`, CNCF Distribution 2.8) on loopback. It binds
 * port 0 and logs `listening on 127.0.0.1:PORT` at info level; the port is read from there, so no
 * other process can take it between choosing and binding.
 */
export async function startReference(
  root: string,
  options: { deleteEnabled?: boolean; prefix?: string } = {},
) {
  const dir = tempDir("neam-ref-");
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    [
      "version: 0.1",
      "log: {level: info, accesslog: {disabled: true}}",
      `storage: {filesystem: {rootdirectory: ${root}}, delete: {enabled: ${options.deleteEnabled ?? true}}}`,
      `http: {addr: "127.0.0.1:0"${options.prefix ? `, prefix: ${options.prefix}` : ""}}`,
      "",
    ].join("\n"),
  );
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE; // its S3 driver panics on it (shared/TESTING-TOOLS.md)
  const child = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "ignore", "pipe"], env });
  track(child);
  let stderr = "";
  let host: string | undefined;
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-16384);
    host ??= /msg="listening on (127\.0\.0\.1:\d+)"/.exec(stderr)?.[1];
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
      if (host === undefined) return false;
      const prefix = (options.prefix ?? "").replace(/\/+$/, "");
      return (await fetch(`http://${host}${prefix}/v2/`).catch(() => undefined))?.status === 200;
    }, START_TIMEOUT_MS);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return {
    host: host!,
    url: `http://${host!}`,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const hung = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
      if (!hung) return;
      child.kill("SIGKILL");
      await exited;
      throw new Error(`docker-registry did not stop within ${STOP_TIMEOUT_MS} ms of SIGTERM; killed`);
    },
  };
}
