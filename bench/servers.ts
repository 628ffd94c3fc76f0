/**
 * The two servers the bench compares, started the same way for every group: ours (`neam-registry
 * serve`, default workers) and Debian's `docker-registry` with the configuration its package ships
 * (in-memory blob descriptor cache), both logging errors only and no access log, on fresh roots
 * unless a group restarts one on the root it already filled. Also what every group needs to
 * measure them: RSS and CPU of each server's processes, shell timing, tools, a large random file.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import {
  START_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  processTree,
  startRegistry,
  tempDir,
  track,
  waitUntil,
} from "../test/helpers/registry.js";

export type Side = "ours" | "reference";

export interface Server {
  name: Side;
  host: string;
  url: string;
  pids(): number[];
}

export interface BenchServer extends Server {
  /** The storage root, kept after `stop()` so the next server of a group can start on it. */
  readonly root: string;
  stop(): Promise<void>;
}

export interface TlsFiles {
  cert: string;
  key: string;
  /** The CA that signed `cert`, for clients. */
  ca: string;
}

/**
 * `--ref-config=bare` starts the reference as the bench did before issue 12 (no blob descriptor
 * cache, info logging) to compare with figures measured that way; the default is its package's
 * configuration with errors-only logging, like ours.
 */
const bareReference = process.argv.includes("--ref-config=bare");

export function referenceConfigName(): string {
  return bareReference
    ? "bare (no cache, log level info)"
    : "Debian default (blobdescriptor: inmemory), log level error";
}

/** Servers running now, for the RSS meter (which samples whatever is alive in its group). */
const live = new Set<BenchServer>();

export async function startOurs(options: { root?: string; tls?: TlsFiles } = {}): Promise<BenchServer> {
  const registry = await startRegistry({
    ...(options.root ? { root: options.root } : {}),
    config: {
      log: { level: "error", accesslog: { disabled: true } },
      ...(options.tls ? { http: { tls: { certificate: options.tls.cert, key: options.tls.key } } } : {}),
    },
  });
  const server: BenchServer = {
    name: "ours",
    host: registry.host,
    url: registry.url,
    root: registry.root,
    pids: () => processTree(registry.process.pid!),
    async stop() {
      live.delete(server);
      await registry.stop();
    },
  };
  live.add(server);
  return server;
}

/**
 * Debian's `docker-registry`. It binds port 0 and, logging errors only, does not say which port it
 * got: the port is read from its listening socket in /proc.
 */
export async function startReferenceServer(
  options: { root?: string; tls?: TlsFiles; secret?: string } = {},
): Promise<BenchServer> {
  const dir = tempDir("neam-bench-ref-");
  const root = options.root ?? join(dir, "data");
  const config = join(dir, "config.yml");
  const storage = [
    `filesystem: {rootdirectory: ${root}}`,
    "delete: {enabled: true}",
    ...(bareReference ? [] : ["cache: {blobdescriptor: inmemory}"]),
  ];
  const http = [
    'addr: "127.0.0.1:0"',
    // A fixed secret keeps upload state tokens valid across a restart (commit group).
    `secret: ${options.secret ?? randomBytes(16).toString("hex")}`,
    ...(options.tls ? [`tls: {certificate: ${options.tls.cert}, key: ${options.tls.key}}`] : []),
  ];
  writeFileSync(
    config,
    [
      "version: 0.1",
      `log: {level: ${bareReference ? "info" : "error"}, accesslog: {disabled: true}}`,
      `storage: {${storage.join(", ")}}`,
      `http: {${http.join(", ")}}`,
      "",
    ].join("\n"),
  );
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE; // its S3 driver panics on it (shared/TESTING-TOOLS.md)
  const logPath = join(dir, "registry.log");
  const log = openSync(logPath, "w");
  const child = spawn("docker-registry", ["serve", config], { stdio: ["ignore", log, log], env });
  closeSync(log);
  track(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let host: string | undefined;
  const ca = options.tls ? readFileSync(options.tls.ca) : undefined;
  try {
    await waitUntil(async () => {
      if (child.exitCode !== null)
        throw new Error(`docker-registry exited: ${readFileSync(logPath, "utf8")}`);
      const port = listeningPorts(child.pid!)[0];
      if (port === undefined) return false;
      host = `127.0.0.1:${port}`;
      const status = ca
        ? await httpsStatus(`https://${host}/v2/`, ca)
        : (await fetch(`http://${host}/v2/`).catch(() => undefined))?.status;
      return status === 200;
    }, START_TIMEOUT_MS);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  const server: BenchServer = {
    name: "reference",
    host: host!,
    url: `${options.tls ? "https" : "http"}://${host!}`,
    root,
    pids: () => processTree(child.pid!),
    async stop() {
      live.delete(server);
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
    },
  };
  live.add(server);
  return server;
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
    const request = httpsRequest(url, { ca, agent: false }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on("error", () => resolve(undefined));
    request.end();
  });
}

export interface Pair {
  ours: BenchServer;
  reference: BenchServer;
  /** Both, ours first (the order groups alternate from). */
  both: [BenchServer, BenchServer];
  stop(): Promise<void>;
  /** Stops both and removes their roots. */
  destroy(): Promise<void>;
}

export async function startPair(
  options: { roots?: { ours: string; reference: string }; tls?: TlsFiles; secret?: string } = {},
): Promise<Pair> {
  const ours = await startOurs({
    ...(options.roots ? { root: options.roots.ours } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
  });
  const reference = await startReferenceServer({
    ...(options.roots ? { root: options.roots.reference } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.secret ? { secret: options.secret } : {}),
  });
  const stop = async () => {
    await ours.stop();
    await reference.stop();
  };
  return {
    ours,
    reference,
    both: [ours, reference],
    stop,
    async destroy() {
      await stop();
      rmSync(ours.root, { recursive: true, force: true });
      rmSync(reference.root, { recursive: true, force: true });
    },
  };
}

function procStatusKiB(pid: number, field: "VmHWM" | "VmRSS"): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) : 0;
}

/**
 * Peak RSS of each side while a group runs. At the start every live server process's high-water
 * mark is reset (`clear_refs` 5); every 50 ms the meter sums VmHWM over each side's live
 * processes (primary and workers), so a peak between two samples is not missed, and servers a
 * group starts or restarts are counted from their start.
 */
export function rssMeter() {
  const peak: Record<Side, number> = { ours: 0, reference: 0 };
  for (const server of live) {
    for (const pid of server.pids()) {
      try {
        writeFileSync(`/proc/${pid}/clear_refs`, "5");
      } catch {
        /* exited, or a kernel without it: VmHWM is then the lifetime peak, never lower */
      }
    }
  }
  const tick = () => {
    const now: Record<Side, number> = { ours: 0, reference: 0 };
    for (const server of live) {
      for (const pid of server.pids()) {
        try {
          now[server.name] += procStatusKiB(pid, "VmHWM") * 1024;
        } catch {
          /* exited */
        }
      }
    }
    peak.ours = Math.max(peak.ours, now.ours);
    peak.reference = Math.max(peak.reference, now.reference);
  };
  tick();
  const timer = setInterval(tick, 50);
  return {
    /** Samples now: call before a group stops its servers. */
    tick,
    stop(): Record<Side, number> {
      clearInterval(timer);
      tick();
      return { ...peak };
    },
  };
}

const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** CPU seconds (user + system) spent so far by these processes. */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
    } catch {
      /* exited */
    }
  }
  return ticks / CLOCK_TICKS;
}

export function ensureTool(command: string, pkg: string): void {
  if (spawnSync("sh", ["-c", `command -v ${command}`]).status === 0) return;
  console.log(`installing ${pkg}`);
  spawnSync("apt-get", ["install", "-y", "-qq", pkg], {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}

export function sh(script: string): { seconds: number; stdout: string } {
  const started = performance.now();
  const result = spawnSync("sh", ["-c", script], { encoding: "utf8", maxBuffer: 1 << 20 });
  if (result.status !== 0) throw new Error(`${script}: ${result.stderr}`);
  return { seconds: (performance.now() - started) / 1000, stdout: result.stdout };
}

/** A file of `size` random bytes and its digest (made once under .bench/, reused between runs). */
export function largeFile(size: number): { path: string; digest: string; size: number } {
  const dir = join(process.cwd(), ".bench");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `large-${size}.bin`);
  const digestPath = `${path}.sha256`;
  if (!existsSync(digestPath)) {
    const fd = openSync(path, "w");
    const hash = createHash("sha256");
    const chunk = Buffer.alloc(8 * 1024 * 1024);
    for (let written = 0; written < size; written += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, size - written));
      randomBytes(part.length).copy(part);
      hash.update(part);
      writeSync(fd, part);
    }
    closeSync(fd);
    writeFileSync(digestPath, `sha256:${hash.digest("hex")}`);
  }
  return { path, digest: readFileSync(digestPath, "utf8").trim(), size };
}
