import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { START_TIMEOUT_MS, STOP_TIMEOUT_MS, track, tempDir, waitUntil } from "./registry.js";

/**
 * The reference registry (Debian `docker-registry`, CNCF Distribution 2.8) on loopback. It binds
 * port 0 and logs `listening on 127.0.0.1:PORT` at info level; the port is read from there, so no
 * other process can take it between choosing and binding.
 */
export interface ReferenceOptions {
  deleteEnabled?: boolean;
  prefix?: string;
  /** An htpasswd file (bcrypt): Basic auth on every request. */
  htpasswd?: string;
  /** Serve HTTPS with this certificate; `ca` is what the readiness probe trusts. */
  tls?: { cert: string; key: string; ca: string };
  /** Another storage driver's section instead of `filesystem` on `root` (e.g. `{ s3: {...} }`). */
  storage?: Record<string, unknown>;
}

export async function startReference(root: string, options: ReferenceOptions = {}) {
  const dir = tempDir("neam-ref-");
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    [
      "version: 0.1",
      "log: {level: info, accesslog: {disabled: true}}",
      `storage: {${
        options.storage === undefined
          ? `filesystem: {rootdirectory: ${root}}`
          : Object.entries(options.storage)
              .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
              .join(", ")
      }, delete: {enabled: ${options.deleteEnabled ?? true}}}`,
      `http: {addr: "127.0.0.1:0"${options.prefix ? `, prefix: ${options.prefix}` : ""}${
        options.tls ? `, tls: {certificate: ${options.tls.cert}, key: ${options.tls.key}}` : ""
      }}`,
      ...(options.htpasswd ? [`auth: {htpasswd: {realm: reference, path: ${options.htpasswd}}}`] : []),
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
    // `listening on 127.0.0.1:PORT` (and `…, tls` with TLS).
    host ??= /msg="listening on (127\.0\.0\.1:\d+)/.exec(stderr)?.[1];
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
      if (host === undefined) return false;
      const prefix = (options.prefix ?? "").replace(/\/+$/, "");
      const status = options.tls
        ? await httpsStatus(`https://${host}${prefix}/v2/`, readFileSync(options.tls.ca))
        : (await fetch(`http://${host}${prefix}/v2/`).catch(() => undefined))?.status;
      // 401 is an answer too: the registry is up and asks for credentials.
      return status === 200 || (options.htpasswd !== undefined && status === 401);
    }, START_TIMEOUT_MS);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return {
    host: host!,
    url: `${options.tls ? "https" : "http"}://${host!}`,
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
