/**
 * The two servers the bench compares, started the same way for every group: ours (`neam-registry
 * serve`, default workers) and Debian's `docker-registry` with the configuration its package ships
 * (in-memory blob descriptor cache), both logging errors only and no access log, on fresh roots
 * unless a group restarts one on the root it already filled. Also what every group needs to
 * measure them: RSS and CPU of each server's processes, shell timing, tools, a large random file.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import type { Blob } from "../test/helpers/oci.js";
import { startReference } from "../test/helpers/reference.js";
import { processTree, startRegistry, tempDir } from "../test/helpers/registry.js";

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
 * Debian's `docker-registry` (test/helpers/reference.ts, which also stops it): its package's
 * configuration with errors-only logging, or the bare one (`--ref-config=bare`).
 */
export async function startReferenceServer(
  options: { root?: string; tls?: TlsFiles; secret?: string } = {},
): Promise<BenchServer> {
  const root = options.root ?? join(tempDir("neam-bench-ref-"), "data");
  const reference = await startReference(root, {
    logLevel: bareReference ? "info" : "error",
    blobDescriptorCache: !bareReference,
    // A fixed secret keeps upload state tokens valid across a restart (commit group).
    secret: options.secret ?? randomBytes(16).toString("hex"),
    ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key, ca: options.tls.ca } } : {}),
  });
  const server: BenchServer = {
    name: "reference",
    host: reference.host,
    url: reference.url,
    root,
    pids: () => processTree(reference.pid),
    async stop() {
      live.delete(server);
      await reference.stop();
    },
  };
  live.add(server);
  return server;
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

/**
 * The manifest the small-push benchmarks send: the first blob as its config, the others as
 * layers, serialized as pushed.
 */
export function manifestOf(blobs: readonly Blob[]): Buffer {
  const [config, ...layers] = blobs;
  if (config === undefined) throw new Error("a manifest needs at least its config blob");
  const body = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: config.digest,
      size: config.size,
    },
    layers: layers.map((b) => ({
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      digest: b.digest,
      size: b.size,
    })),
  };
  return Buffer.from(JSON.stringify(body));
}
