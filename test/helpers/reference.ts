import { spawn } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
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
  /**
   * Log level (info when unset). Above info the registry does not log its port: it is then read
   * from its listening socket in /proc (the benchmark runs it with `error`).
   */
  logLevel?: "debug" | "info" | "warn" | "error";
  /** `storage.cache.blobdescriptor: inmemory`, as Debian's packaged configuration has it. */
  blobDescriptorCache?: boolean;
  /** `http.secret`: a fixed one keeps upload state tokens valid across a restart. */
  secret?: string;
}

export interface ReferenceServer {
  readonly host: string;
  readonly url: string;
  readonly pid: number;
  /** SIGTERM, then SIGKILL after STOP_TIMEOUT_MS (and an error saying so). */
  stop(): Promise<void>;
}

export async function startReference(root: string, options: ReferenceOptions = {}): Promise<ReferenceServer> {
  const dir = tempDir("neam-ref-");
  const config = join(dir, "config.yml");
  const level = options.logLevel ?? "info";
  const logsPort = level === "info" || level === "debug";
  writeFileSync(
    config,
    [
      "version: 0.1",
      `log: {level: ${level}, accesslog: {disabled: true}}`,
      `storage: {${
        options.storage === undefined
          ? `filesystem: {rootdirectory: ${root}}`
          : Object.entries(options.storage)
              .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
              .join(", ")
      }, delete: {enabled: ${options.deleteEnabled ?? true}}${
        options.blobDescriptorCache ? ", cache: {blobdescriptor: inmemory}" : ""
      }}`,
      `http: {addr: "127.0.0.1:0"${options.prefix ? `, prefix: ${options.prefix}` : ""}${
        options.secret ? `, secret: ${options.secret}` : ""
      }${options.tls ? `, tls: {certificate: ${options.tls.cert}, key: ${options.tls.key}}` : ""}}`,
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
  const ca = options.tls ? readFileSync(options.tls.ca) : undefined;
  try {
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
      if (!logsPort) {
        const port = listeningPorts(child.pid!)[0];
        if (port !== undefined) host = `127.0.0.1:${port}`;
      }
      if (host === undefined) return false;
      const prefix = (options.prefix ?? "").replace(/\/+$/, "");
      const status = ca
        ? await httpsStatus(`https://${host}${prefix}/v2/`, ca)
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

/** TCP ports a process listens on, from its socket descriptors and /proc/<pid>/net/tcp. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        if (inode) inodes.add(inode);
      } catch {
        /* closed meanwhile */
      }
    }
    const ports: number[] = [];
    for (const line of readFileSync(`/proc/${pid}/net/tcp`, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // fields: sl local_address rem_address st ... inode (10th)
      if (fields[3] === "0A" && inodes.has(fields[9]!)) ports.push(parseInt(fields[1]!.split(":")[1]!, 16));
    }
    return ports;
  } catch {
    return [];
  }
}

function httpsStatus(url: string, ca: Buffer): Promise<number | undefined> {
  return new Promise((resolve) => {
    // No keep-alive: a pooled socket would outlive the probe.
    const request = httpsRequest(url, { ca, agent: false }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on("error", () => resolve(undefined));
    request.end();
  });
}
