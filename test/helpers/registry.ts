import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
  // A port found free can be taken by another test process before the registry binds it: then
  // the registry exits with EADDRINUSE and is started again on other ports.
  for (let attempt = 1; ; attempt++) {
    try {
      const started = await launchRegistry(dir, root, options, extra, scheme);
      return registryProcess(started, root, dir, scheme);
    } catch (error) {
      if (!(error instanceof PortTaken) || attempt === 5) throw error;
    }
  }
}

class PortTaken extends Error {}

async function launchRegistry(
  dir: string,
  root: string,
  options: StartOptions,
  extra: Record<string, unknown>,
  scheme: string,
) {
  const port = options.port ?? (await freePort());
  const debugPort = await freePort();
  const { log: _log, storage: _storage, http: _http, ...otherSections } = extra;
  const config = {
    ...otherSections,
    version: "0.1",
    log: { level: "warn", accesslog: { disabled: true }, ...(extra.log as object) },
    storage: {
      filesystem: { rootdirectory: root },
      delete: { enabled: options.deleteEnabled ?? true },
      ...(extra.storage as object),
    },
    http: {
      addr: `127.0.0.1:${port}`,
      debug: { addr: `127.0.0.1:${debugPort}` },
      workers: options.workers ?? 1,
      ...(extra.http as object),
    },
  };
  const configPath = join(dir, "config.yml");
  writeFileSync(configPath, stringify(config));
  const logPath = join(dir, "registry.log");
  writeFileSync(logPath, "");
  const out = openSync(logPath, "a");
  const args = [...NODE_FLAGS, MAIN, "serve", "--config", configPath];
  // bash execs the registry under the limit, so the child's PID is the registry's.
  const [command, argv] =
    options.openFiles === undefined
      ? [process.execPath, args]
      : ["bash", ["-c", `ulimit -n ${options.openFiles} && exec "$0" "$@"`, process.execPath, ...args]];
  const child = spawn(command, argv, { stdio: ["ignore", out, out], env: { ...process.env } });
  closeSync(out);
  const host = `127.0.0.1:${port}`;
  const url = `http://${host}`;
  try {
    await waitUntil(async () => {
      if (child.exitCode !== null) {
        const log = readFileSync(logPath, "utf8");
        if (options.port === undefined && log.includes("EADDRINUSE")) throw new PortTaken(log);
        throw new Error(`registry exited: ${log}`);
      }
      const response = await fetch(`http://127.0.0.1:${debugPort}/debug/health`).catch(() => undefined);
      if (response?.status !== 200) return false;
      if (scheme === "https") return true;
      // 401 is an answer too: the registry is up and asks for credentials.
      const prefix = ((extra.http as { prefix?: string } | undefined)?.prefix ?? "").replace(/\/+$/, "");
      const status = (await fetch(`${url}${prefix}/v2/`).catch(() => undefined))?.status;
      return status === 200 || status === 401;
    }, 15_000);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return { child, host, debugPort, logPath };
}

function registryProcess(
  { child, host, debugPort, logPath }: Awaited<ReturnType<typeof launchRegistry>>,
  root: string,
  dir: string,
  scheme: string,
): RegistryProcess {
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
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
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
    async kill() {
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
    },
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
