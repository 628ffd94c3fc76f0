/**
 * Benchmarks against the reference registry (Debian `docker-registry`, CNCF Distribution 2.8),
 * both started here on loopback, measured by the same clients in one run, printed as ratios.
 *   npm run bench                      all benchmarks
 *   npm run bench -- --quick           shorter runs (smoke)
 *   npm run bench -- --only=auth,tags  some groups: large, rates, push, tags, auth, mixed, pull, commit, bundle, s3, scale
 *   npm run bench -- --ref-config=bare the reference without its package's cache, as before issue 12
 * Each group prints one table (ours / reference / ratio) with the peak RSS of both servers during
 * it; the end lists the issue targets as MET or MISSED and the overall peak RSS.
 *   npm run bench -- --only=scale --scale=10   the scale group on a 10× store (bench/scale.ts)
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Client, blob, imageManifest, type Blob } from "../test/helpers/oci.js";
import { rssBytes, startRegistry, tempDir } from "../test/helpers/registry.js";
import { COMMIT_TARGETS, commitTime } from "./commit.js";
import { runLoad, type LoadRequest } from "./load.js";
import { MIXED_TARGET, mixedLoad } from "./mixed.js";
import { PULL_TARGETS, largePulls } from "./pull.js";
import { RSS_TARGET, beginGroup, declareTarget, endGroup, median, record, summary } from "./report.js";
import {
  ensureTool,
  largeFile,
  manifestOf,
  referenceConfigName,
  rssMeter,
  sh,
  startPair,
  type Server,
} from "./servers.js";
import { benchS3 } from "./s3.js";
import { scaleBench } from "./scale.js";

const quick = process.argv.includes("--quick");
/** `--only large,rates,push,tags,auth` runs those groups alone. */
const only = process.argv
  .find((a) => a.startsWith("--only="))
  ?.slice("--only=".length)
  .split(",");
/** Every group name asked about, so that a misspelt `--only` name is reported rather than ignored. */
const known = new Set<string>();
const selected = (group: string) => {
  known.add(group);
  return only === undefined || only.includes(group);
};
const LOAD_SECONDS = quick ? 2 : 5;
const LARGE_BYTES = (quick ? 256 : 2048) * 1024 * 1024;

/** Sums VmRSS over a process tree every 50 ms; `stop()` returns the peak. */
function sampleRss(pids: () => number[]) {
  let peak = 0;
  const tick = () => {
    let total = 0;
    for (const pid of pids()) {
      try {
        total += rssBytes(pid);
      } catch {
        /* exited */
      }
    }
    peak = Math.max(peak, total);
  };
  tick();
  const timer = setInterval(tick, 50);
  return {
    stop() {
      clearInterval(timer);
      tick();
      return peak;
    },
  };
}

function currentRss(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + rssBytes(pid), 0);
}

async function largeBlob(servers: Server[]) {
  const file = largeFile(LARGE_BYTES);
  const mb = file.size / 1e6;
  const push: Record<string, number> = {};
  const pull: Record<string, number> = {};
  const hashed: Record<string, number> = {};
  const memory: Record<string, number> = {};
  for (const server of servers) {
    const before = currentRss(server.pids());
    const sampler = sampleRss(server.pids);
    const location = (
      await new Client(server.url).request("POST", "/v2/bench/large/blobs/uploads/")
    ).headers.get("Location")!;
    const target = location.startsWith("http") ? location : `${server.url}${location}`;
    const separator = target.includes("?") ? "&" : "?";
    const up = sh(
      `curl -sS -f -o /dev/null -T ${file.path} -H 'Content-Type: application/octet-stream' '${target}${separator}digest=${file.digest}'`,
    );
    push[server.name] = mb / up.seconds;
    // Let the disk settle (both servers get the same pause) so the pull measures serving, not writeback.
    sh("sync; sleep 2");
    const blobUrl = `${server.url}/v2/bench/large/blobs/${file.digest}`;
    // Pulls vary run to run on this machine (page cache, loopback): take the median of three.
    pull[server.name] = median([1, 2, 3].map(() => mb / sh(`curl -sS -f -o /dev/null '${blobUrl}'`).seconds));
    hashed[server.name] = median(
      [1, 2, 3].map(() => {
        const verified = sh(`curl -sS -f '${blobUrl}' | openssl dgst -sha256 -r`);
        if (`sha256:${verified.stdout.split(" ")[0]}` !== file.digest)
          throw new Error(`${server.name} served wrong bytes`);
        return mb / verified.seconds;
      }),
    );
    memory[server.name] = (sampler.stop() - before) / (1024 * 1024);
  }
  const gib = (file.size / 2 ** 30).toFixed(2);
  record({
    benchmark: `large blob push (${gib} GiB, curl -T)`,
    unit: "MB/s",
    ours: push.ours!,
    reference: push.reference!,
    target: ">= 1000 MB/s",
    pass: push.ours! >= 1000,
  });
  record({
    benchmark: `large blob pull (${gib} GiB, curl)`,
    unit: "MB/s",
    ours: pull.ours!,
    reference: pull.reference!,
    target: ">= 2000 MB/s and >= ref",
    pass: pull.ours! >= 2000 && pull.ours! >= pull.reference!,
  });
  record({
    benchmark: `large blob pull, client verifies sha256`,
    unit: "MB/s",
    ours: hashed.ours!,
    reference: hashed.reference!,
    target: ">= ref",
    pass: hashed.ours! >= hashed.reference! * 0.97,
  });
  record({
    benchmark: `RSS growth during ${gib} GiB push+pull`,
    unit: "MiB",
    ours: memory.ours!,
    reference: memory.reference!,
    target: "< 64 MiB",
    pass: memory.ours! < 64,
  });
}

/** Pushes one small image per server and returns the request mixes the rate benchmarks use. */
async function seedPullTargets(server: Server) {
  const client = new Client(server.url);
  const manifest = imageManifest({ layers: 3 });
  const response = await client.pushManifest("bench/pull", "latest", manifest);
  if (response.status !== 201) throw new Error(`${server.name}: seed push ${response.status}`);
  const accept = {
    Accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
  };
  const layer = manifest.blobs[1]!;
  return {
    manifestGet: [
      { method: "GET", path: "/v2/bench/pull/manifests/latest", headers: accept },
    ] as LoadRequest[],
    manifestHead: [
      { method: "HEAD", path: "/v2/bench/pull/manifests/latest", headers: accept },
    ] as LoadRequest[],
    blobHead: [{ method: "HEAD", path: `/v2/bench/pull/blobs/${layer.digest}` }] as LoadRequest[],
    mixed: [
      { method: "HEAD", path: "/v2/bench/pull/manifests/latest", headers: accept },
      { method: "GET", path: "/v2/bench/pull/manifests/latest", headers: accept },
      { method: "GET", path: `/v2/bench/pull/manifests/${manifest.digest}`, headers: accept },
      { method: "GET", path: `/v2/bench/pull/blobs/${manifest.blobs[0]!.digest}` },
      { method: "HEAD", path: `/v2/bench/pull/blobs/${layer.digest}` },
      { method: "GET", path: `/v2/bench/pull/blobs/${layer.digest}` },
      { method: "GET", path: "/v2/" },
    ] as LoadRequest[],
  };
}

async function requestRates(servers: Server[]) {
  const mixes: Record<string, Awaited<ReturnType<typeof seedPullTargets>>> = {};
  for (const server of servers) mixes[server.name] = await seedPullTargets(server);
  const cases: [string, keyof (typeof mixes)[string], number[]][] = [
    ["manifest GET by tag", "manifestGet", [1, 16, 64]],
    ["manifest HEAD by tag", "manifestHead", [64]],
    ["blob HEAD", "blobHead", [64]],
    ["pull-only mix, no pushes", "mixed", [64]],
  ];
  for (const [label, key, concurrencies] of cases) {
    for (const connections of concurrencies) {
      const result: Record<string, Awaited<ReturnType<typeof runLoad>>> = {};
      for (const server of servers) {
        const [host, port] = server.host.split(":") as [string, string];
        result[server.name] = await runLoad(
          host,
          Number(port),
          mixes[server.name]![key],
          connections,
          LOAD_SECONDS,
        );
        const bad = Object.entries(result[server.name]!.statuses).filter(([s]) => !s.startsWith("2"));
        if (bad.length > 0)
          throw new Error(`${server.name} ${label}: non-2xx answers ${JSON.stringify(bad)}`);
      }
      const rate = (s: string) => result[s]!.rps;
      const ratio = rate("ours") / rate("reference");
      record({
        benchmark: `${label}, ${connections} clients`,
        unit: "req/s",
        ours: rate("ours"),
        reference: rate("reference"),
        target: connections === 64 ? ">= 5x" : "",
        pass: connections === 64 ? ratio >= 5 : undefined,
      });
      record({
        benchmark: `${label}, ${connections} clients, p99`,
        unit: "ms",
        ours: result.ours!.p99ms,
        reference: result.reference!.p99ms,
      });
    }
  }
}

/** 2,000 small blobs and 200 manifests (10 blobs each) pushed with 16 concurrent clients. */
async function smallPush(servers: Server[]) {
  const blobs: Blob[] = Array.from({ length: 2000 }, () =>
    blob(randomBytes(1024 + Math.floor(Math.random() * 15 * 1024))),
  );
  const manifests = Array.from({ length: 200 }, (_, i) => {
    const parts = blobs.slice(i * 10, i * 10 + 10);
    return { repo: `bench/small${i % 20}`, bytes: manifestOf(parts), blobs: parts };
  });
  const opsPerSecond: Record<string, number> = {};
  for (const server of servers) {
    const client = new Client(server.url);
    const started = performance.now();
    let index = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = index++; i < manifests.length; i = index++) {
          const m = manifests[i]!;
          for (const b of m.blobs) await client.pushBlob(m.repo, b);
          const response = await client.request("PUT", `/v2/${m.repo}/manifests/v${i}`, {
            body: m.bytes,
            headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
          });
          if (response.status !== 201) throw new Error(`${server.name}: manifest ${response.status}`);
        }
      }),
    );
    opsPerSecond[server.name] = 2200 / ((performance.now() - started) / 1000);
  }
  record({
    benchmark: "small push (2,000 blobs + 200 manifests, 16 clients)",
    unit: "ops/s",
    ours: opsPerSecond.ours!,
    reference: opsPerSecond.reference!,
    target: ">= 3x",
    pass: opsPerSecond.ours! / opsPerSecond.reference! >= 3,
  });
}

async function tagsList(servers: Server[]) {
  const result: Record<string, Awaited<ReturnType<typeof runLoad>>> = {};
  for (const server of servers) {
    const client = new Client(server.url);
    const manifest = imageManifest();
    await client.pushManifest("bench/tags", "t0", manifest);
    let next = 1;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < 5000; i = next++) {
          const response = await client.pushManifest("bench/tags", `t${i}`, manifest, false);
          if (response.status !== 201) throw new Error(`${server.name}: tag ${response.status}`);
        }
      }),
    );
    const [host, port] = server.host.split(":") as [string, string];
    result[server.name] = await runLoad(
      host,
      Number(port),
      [{ method: "GET", path: "/v2/bench/tags/tags/list" }],
      16,
      LOAD_SECONDS,
    );
  }
  record({
    benchmark: "tags list of 5,000 tags, 16 clients",
    unit: "req/s",
    ours: result.ours!.rps,
    reference: result.reference!.rps,
    target: ">= ref",
    pass: result.ours!.rps >= result.reference!.rps,
  });
  record({
    benchmark: "tags list of 5,000 tags, 16 clients, p99",
    unit: "ms",
    ours: result.ours!.p99ms,
    reference: result.reference!.p99ms,
  });
}

/**
 * The cost of Basic auth on pulls: one of our servers with htpasswd (bcrypt cost 10) and an
 * anonymous-pull rule, manifest GETs with and without credentials.
 */
async function basicAuthCost() {
  const dir = tempDir("neam-bench-auth-");
  const htpasswd = join(dir, "htpasswd");
  const made = spawnSync("htpasswd", ["-cbB", "-C", "10", htpasswd, "bench", "bench-password"], {
    encoding: "utf8",
  });
  if (made.status !== 0) throw new Error(`htpasswd: ${made.stderr}`);
  const server = await startRegistry({
    config: {
      log: { level: "error", accesslog: { disabled: true } },
      auth: {
        htpasswd: { realm: "bench", path: htpasswd },
        access: { default: ["*"], anonymous: [{ repositories: ["**"], actions: ["pull"] }] },
        limits: { clientfailures: 1000, userfailures: 1000 },
      },
    },
  });
  try {
    const authorization = `Basic ${Buffer.from("bench:bench-password").toString("base64")}`;
    const client = new Client(server.url);
    const manifest = imageManifest();
    for (const b of manifest.blobs) {
      await client.request("POST", `/v2/bench/auth/blobs/uploads/?digest=${b.digest}`, {
        body: b.data,
        headers: { Authorization: authorization },
      });
    }
    await client.request("PUT", "/v2/bench/auth/manifests/v1", {
      body: manifest.bytes,
      headers: { "Content-Type": manifest.mediaType, Authorization: authorization },
    });
    const [host, port] = server.host.split(":") as [string, string];
    const path = "/v2/bench/auth/manifests/v1";
    const anonymous = await runLoad(host, Number(port), [{ method: "GET", path }], 64, LOAD_SECONDS);
    const authenticated = await runLoad(
      host,
      Number(port),
      [{ method: "GET", path, headers: { Authorization: authorization } }],
      64,
      LOAD_SECONDS,
    );
    const bad = Object.keys(authenticated.statuses).filter((s) => s !== "200");
    if (bad.length > 0) throw new Error(`authenticated pulls answered ${bad.join(", ")}`);
    // Timing must not tell which users exist: a wrong password and an unknown user cost the same.
    const loginTime = async (user: string) => {
      const times: number[] = [];
      for (let i = 0; i < 15; i++) {
        const started = performance.now();
        const response = await client.request("GET", "/v2/", {
          headers: { Authorization: `Basic ${Buffer.from(`${user}:wrong-${i}`).toString("base64")}` },
        });
        await response.arrayBuffer();
        times.push(performance.now() - started);
      }
      return median(times);
    };
    const wrongPassword = await loginTime("bench");
    const unknownUser = await loginTime("nobody-by-this-name");
    console.log(
      `failed login, median of 15: wrong password ${wrongPassword.toFixed(1)} ms, unknown user ${unknownUser.toFixed(1)} ms`,
    );
    record({
      benchmark: "failed login: unknown user vs wrong password",
      unit: "ms",
      ours: unknownUser,
      reference: wrongPassword,
      target: "0.8x-1.25x (ref column: wrong password)",
      pass: unknownUser / wrongPassword > 0.8 && unknownUser / wrongPassword < 1.25,
    });
    record({
      benchmark: "manifest GET with Basic auth (bcrypt 10), 64 clients",
      unit: "req/s",
      ours: authenticated.rps,
      reference: anonymous.rps,
      target: ">= 0.9x anonymous (ref column: our anonymous)",
      pass: authenticated.rps >= 0.9 * anonymous.rps,
    });
  } finally {
    await server.stop();
  }
}

/**
 * Runs a selected group as one table, with the peak RSS of both sides' servers during it (`rss`
 * false for a group that measures something other than ours against the reference).
 */
async function group(name: string, title: string, body: () => Promise<void>, rss = true) {
  if (!selected(name)) return;
  beginGroup(name, title);
  const meter = rssMeter();
  try {
    await body();
  } finally {
    const peak = meter.stop();
    endGroup(rss ? peak : undefined);
  }
}

async function main() {
  ensureTool("docker-registry", "docker-registry");
  ensureTool("curl", "curl");
  ensureTool("openssl", "openssl");
  ensureTool("htpasswd", "apache2-utils");
  ensureTool("skopeo", "skopeo");
  console.log(
    `neam-registry vs docker-registry ${sh("docker-registry --version").stdout.trim()} — ${new Date().toISOString()}${quick ? " (quick)" : ""}`,
  );
  console.log(
    `both on loopback, same client per figure; ours: default workers, log level error, no access log; reference: ${referenceConfigName()}, no access log`,
  );
  // Listed whether or not their groups run, so that the summary shows what was not measured.
  for (const target of [
    MIXED_TARGET,
    ...Object.values(PULL_TARGETS),
    ...Object.values(COMMIT_TARGETS),
    RSS_TARGET,
  ])
    declareTarget(target);
  // The first groups share one pair of servers (as before issue 12), stopped before the later
  // groups, which start their own: the RSS meter counts every live server of a side.
  const shared = ["large", "rates", "push", "tags", "s3"].some(selected) ? await startPair() : undefined;
  const servers: Server[] = shared ? shared.both : [];
  try {
    await group("large", "large blob push and pull (curl), shared servers", () => largeBlob(servers));
    await group("rates", "request rates (bench/load.ts), shared servers", () => requestRates(servers));
    await group("push", "small pushes, shared servers", () => smallPush(servers));
    await group("tags", "tags list, shared servers", () => tagsList(servers));
    await group(
      "s3",
      "ours on Ceph RGW vs ours on a filesystem and docker-registry on the same store",
      () => benchS3({ quick, record, filesystem: servers[0]! }),
      false,
    );
  } finally {
    await shared?.destroy();
  }
  await group("auth", "Basic auth cost (ours only)", basicAuthCost, false);
  await group("mixed", "mixed pull-heavy load with pushes (issue 12), fresh servers", () => mixedLoad(quick));
  await group("pull", "large pulls, curl and skopeo, HTTP and TLS, fresh servers", () => largePulls(quick));
  await group("commit", "chunked-upload commit time, fresh servers", () => commitTime(quick));
  await group("scale", "generated store: startup, /metrics, catalog, GC, fresh servers", () =>
    scaleBench(record),
  );
  await group(
    "bundle",
    "bundle create/import vs skopeo copy, fresh servers",
    async () => (await import("./bundle.js")).bundleBench(record),
    false,
  );
  const unknown = (only ?? []).filter((name) => !known.has(name));
  if (unknown.length > 0)
    throw new Error(`--only: no group named ${unknown.join(", ")} (groups: ${[...known].join(", ")})`);
  summary({ quick, reference: referenceConfigName() });
}

main().catch((error: unknown) => {
  console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
