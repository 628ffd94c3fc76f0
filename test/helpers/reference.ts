import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { freePort, tempDir, waitUntil } from "./registry.js";

export interface ReferenceOptions {
  deleteEnabled?: boolean;
  prefix?: string;
  /** An htpasswd file (bcrypt): Basic auth on every request. */
  htpasswd?: string;
  /** Serve HTTPS with this certificate; `ca` is what the readiness probe trusts. */
  tls?: { cert: string; key: string; ca: string };
}

/** The reference registry (Debian `docker-registry`, CNCF Distribution 2.8) on loopback. */
export async function startReference(root: string, options: ReferenceOptions = {}) {
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

async function launchReference(root: string, options: ReferenceOptions) {
  const port = await freePort();
  const dir = tempDir("neam-ref-");
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    [
      "version: 0.1",
      "log: {level: error, accesslog: {disabled: true}}",
      `storage: {filesystem: {rootdirectory: ${root}}, delete: {enabled: ${options.deleteEnabled ?? true}}}`,
      `http: {addr: "127.0.0.1:${port}"${options.prefix ? `, prefix: ${options.prefix}` : ""}${
        options.tls ? `, tls: {certificate: ${options.tls.cert}, key: ${options.tls.key}}` : ""
      }}`,
      ...(options.htpasswd ? [`auth: {htpasswd: {realm: reference, path: ${options.htpasswd}}}`] : []),
      "",
    ].join("\n"),
  );
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE; // its S3 driver panics on it (shared/TESTING-TOOLS.md)
  const child = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "ignore", "pipe"], env });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-4096)));
  const host = `127.0.0.1:${port}`;
  const scheme = options.tls ? "https" : "http";
  try {
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
      const prefix = (options.prefix ?? "").replace(/\/+$/, "");
      const status = options.tls
        ? await httpsStatus(`https://${host}${prefix}/v2/`, readFileSync(options.tls.ca))
        : (await fetch(`http://${host}${prefix}/v2/`).catch(() => undefined))?.status;
      // 401 is an answer too: the registry is up and asks for credentials.
      return status === 200 || (options.htpasswd !== undefined && status === 401);
    }, 15_000);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    host,
    url: `${scheme}://${host}`,
    pid: child.pid!,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

function httpsStatus(url: string, ca: Buffer): Promise<number | undefined> {
  return new Promise((resolve) => {
    const request = httpsRequest(url, { ca }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on("error", () => resolve(undefined));
    request.end();
  });
}
