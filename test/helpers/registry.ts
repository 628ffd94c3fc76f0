import { get } from "node:http";
import { spawn, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";

const MAIN = new URL("../../server/src/main.js", import.meta.url).pathname;
/** The node flags the registry runs with, from its executable's `#!/usr/bin/env -S node …` line. */
export const NODE_FLAGS = readFileSync(MAIN, "utf8").split("\n", 1)[0]!.split(" ").slice(3);

export interface RegistryProcess {
  readonly url: string;
  readonly host: string;
  readonly debugUrl: string;
  readonly root: string;
  readonly dir: string;
  readonly process: ChildProcess;
  /** PIDs of the primary and its workers (for /proc readings). */
  pids(): number[];
  stop(): Promise<void>;
  kill(): Promise<void>;
  log(): string;
}

export interface StartOptions {
  /** Storage root; a fresh temp dir when absent. */
  root?: string;
  workers?: number;
  deleteEnabled?: boolean;
  /** Extra config merged over the defaults (deep for `http`, `storage`, `log`). */
  config?: Record<string, unknown>;
  port?: number;
  /**
   * Run the server as this uid (and gid) through `setpriv`, e.g. 65534: tests run as root, for
   * whom permission bits stop nothing. The storage root is created for and owned by that user.
   */
  user?: number;
  /** Starts the registry under `ulimit -n` of this many open files. */
  openFiles?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const children = new Set<ChildProcess>();

/**
 * Servers this test process started are killed when it ends, however it ends: the runner's
 * --test-timeout ends a hung test file with SIGTERM, and its servers must not outlive it.
 */
export function track(child: ChildProcess): void {
  if (children.size === 0 && !trackingRegistered) {
    trackingRegistered = true;
    const killAll = () => {
      for (const running of children) {
        for (const pid of processTree(running.pid!).reverse()) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* already gone */
          }
        }
      }
    };
    process.on("exit", killAll);
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => {
        killAll();
        process.exit(128 + (signal === "SIGTERM" ? 15 : 2));
      });
    }
  }
  children.add(child);
  child.once("exit", () => children.delete(child));
}
let trackingRegistered = false;

const created: string[] = [];
let cleanupRegistered = false;

/** A fresh temporary directory, removed when the test process exits. */
export function tempDir(prefix = "neam-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.on("exit", () => {
      for (const path of created) rmSync(path, { recursive: true, force: true });
    });
  }
  return dir;
}

/** Starts our registry as a real process (`neam-registry serve`) on loopback and waits until it answers. */
export async function startRegistry(options: StartOptions = {}): Promise<RegistryProcess> {
  const dir = tempDir();
  const root = options.root ?? join(dir, "data");
  const extra = options.config ?? {};
  const scheme = (extra.http as { tls?: unknown } | undefined)?.tls ? "https" : "http";
  const started = await launchRegistry(dir, options, extra, scheme);
  return registryProcess(started, root, dir, scheme);
}

/** How long `stop()` waits after SIGTERM before it sends SIGKILL: a hanging server must not block CI. */
export const STOP_TIMEOUT_MS = 15_000;

/**
 * How long a server may take to answer after it is started. Two workers take 6-7 s to start on
 * this shared 2-core machine under load, so 15 s was not always enough.
 */
export const START_TIMEOUT_MS = 60_000;

/** The ports a registry logged as bound ("public listener up", "debug listener up"), once both are there. */
function boundPorts(log: string): { port: number; debugPort: number } | undefined {
  let port: number | undefined;
  let debugPort: number | undefined;
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    let entry: { msg?: string; port?: number };
    try {
      entry = JSON.parse(line) as { msg?: string; port?: number };
    } catch {
      continue;
    }
    if (entry.msg === "public listener up") port ??= entry.port;
    if (entry.msg === "debug listener up") debugPort ??= entry.port;
  }
  return port !== undefined && debugPort !== undefined ? { port, debugPort } : undefined;
}

async function launchRegistry(
  dir: string,
  options: StartOptions,
  extra: Record<string, unknown>,
  scheme: string,
) {
  const root = options.root ?? join(dir, "data");
  const { log: extraLog, storage: _storage, http: _http, ...otherSections } = extra;
  // Both listeners bind port 0 and the registry logs the ports it got (at info): no port is
  // chosen here and bound later, so two test processes can never race for one.
  const level = (extraLog as { level?: string } | undefined)?.level === "debug" ? "debug" : "info";
  const config = {
    ...otherSections,
    version: "0.1",
    log: { accesslog: { disabled: true }, ...(extraLog as object), level, formatter: "json" },
    storage: {
      // One driver: a test that configures `s3` gets no filesystem root.
      ...((extra.storage as { s3?: unknown } | undefined)?.s3 === undefined
        ? { filesystem: { rootdirectory: root } }
        : {}),
      delete: { enabled: options.deleteEnabled ?? true },
      ...(extra.storage as object),
    },
    http: {
      addr: `127.0.0.1:${options.port ?? 0}`,
      debug: { addr: "127.0.0.1:0" },
      workers: options.workers ?? 1,
      ...(extra.http as object),
    },
  };
  const configPath = join(dir, "config.yml");
  writeFileSync(configPath, stringify(config));
  const logPath = join(dir, "registry.log");
  writeFileSync(logPath, "");
  const out = openSync(logPath, "a");
  const user = options.user;
  if (user !== undefined) {
    chmodSync(dir, 0o755);
    mkdirSync(root, { recursive: true });
    chownSync(root, user, user);
  }
  const asUser =
    user === undefined ? [] : ["setpriv", `--reuid=${user}`, `--regid=${user}`, "--clear-groups"];
  const serverArgs = [process.execPath, ...NODE_FLAGS, MAIN, "serve", "--config", configPath];
  // bash execs the registry under the limit (and setpriv execs what it runs), so the child's PID
  // is the registry's.
  const limited =
    options.openFiles === undefined
      ? serverArgs
      : ["bash", "-c", `ulimit -n ${options.openFiles} && exec "$0" "$@"`, ...serverArgs];
  const [command, ...args] = [...asUser, ...limited];
  const child = spawn(command!, args, {
    stdio: ["ignore", out, out],
    env: { ...process.env },
  });
  closeSync(out);
  track(child);
  let ports: { port: number; debugPort: number } | undefined;
  try {
    await waitUntil(async () => {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`registry exited: ${readFileSync(logPath, "utf8")}`);
      ports ??= boundPorts(readFileSync(logPath, "utf8"));
      if (ports === undefined) return false;
      const response = await fetch(`http://127.0.0.1:${ports.debugPort}/debug/health`).catch(() => undefined);
      if (response?.status !== 200) return false;
      if (scheme === "https") return true;
      // 401 is an answer too: the registry is up and asks for credentials.
      const prefix = ((extra.http as { prefix?: string } | undefined)?.prefix ?? "").replace(/\/+$/, "");
      const status = (await fetch(`http://127.0.0.1:${ports.port}${prefix}/v2/`).catch(() => undefined))
        ?.status;
      return status === 200 || status === 401;
    }, START_TIMEOUT_MS);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return { child, host: `127.0.0.1:${ports!.port}`, debugPort: ports!.debugPort, logPath };
}

function registryProcess(
  { child, host, debugPort, logPath }: Awaited<ReturnType<typeof launchRegistry>>,
  root: string,
  dir: string,
  scheme: string,
): RegistryProcess {
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const killTree = async () => {
    const pids = processTree(child.pid!);
    for (const pid of pids.reverse()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
    await exited;
    // Workers of a killed primary exit when their IPC channel closes; make sure of it.
    await waitUntil(async () => pids.every((pid) => !alive(pid)), 5000);
  };
  return {
    url: `${scheme}://${host}`,
    host,
    debugUrl: `http://127.0.0.1:${debugPort}`,
    root,
    dir,
    process: child,
    pids: () => processTree(child.pid!),
    log: () => readFileSync(logPath, "utf8"),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
      });
      const hung = await Promise.race([exited.then(() => false), timedOut]);
      clearTimeout(timer);
      if (!hung) return;
      await killTree();
      throw new Error(`registry did not stop within ${STOP_TIMEOUT_MS} ms of SIGTERM; killed`);
    },
    kill: killTree,
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A PID and all its descendants, from /proc. */
export function processTree(pid: number): number[] {
  const result = [pid];
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
    for (const child of children.split(/\s+/).filter(Boolean)) result.push(...processTree(Number(child)));
  } catch {
    /* exited */
  }
  return result;
}

/** Resident set size of a process in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The sum of the samples of metric `name` whose labels include all of `labels`, read from a
 * Prometheus text exposition (0 when there is none).
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const present = new Map([...(match[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (Object.entries(labels).every(([key, value]) => present.get(key) === value)) sum += Number(match[3]);
  }
  return sum;
}

/**
 * The registry's metrics (`/metrics` on its debug listener), as Prometheus text. A new connection
 * each time: a kept-alive one can be closed by the server while a test blocks its event loop in
 * spawnSync (skopeo), and reusing it fails the request.
 */
export async function scrape(registry: Pick<RegistryProcess, "debugUrl">): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`${registry.debugUrl}/metrics`, { agent: false }, (response) => {
      let text = "";
      response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      response.on("end", () => {
        if (response.statusCode === 200) resolve(text);
        else reject(new Error(`metrics answered ${response.statusCode}`));
      });
    }).once("error", reject);
  });
}
