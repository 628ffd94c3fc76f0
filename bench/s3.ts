/**
 * The `s3` group: our registry on S3 (Ceph RGW) against the same on a filesystem and against
 * `docker-registry` (its s3 driver) on the same S3 store: a large blob pushed and pulled (1 GiB;
 * 32 MiB with --quick), manifest GETs at 64 clients, a small push; then two of our replicas on one
 * bucket and one redis-server, with the requests spread over both, against one replica alone.
 *
 * The store is the one named by NEAM_TEST_S3_ENDPOINT, else a Ceph RGW started here
 * (test/helpers/ceph-rgw.sh) with a 6 GiB memstore. Its OSD keeps deleted data until RGW's
 * garbage collector frees it, so every phase gets buckets of its own, removed at its end, and the
 * collector is run before the next phase (the last run stalled on a full OSD without this).
 */
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { startCeph, testBucket, type CephGateway, type TestBucket } from "../test/helpers/ceph.js";
import { Client, blob, imageManifest, type Blob } from "../test/helpers/oci.js";
import { startRedis } from "../test/helpers/redis.js";
import { startReference } from "../test/helpers/reference.js";
import { startRegistry } from "../test/helpers/registry.js";
import { runLoad, type LoadRequest, type LoadResult } from "./load.js";
import { largeFile, manifestOf } from "./servers.js";

export interface S3BenchServer {
  name: string;
  host: string;
  url: string;
}

export interface S3BenchOptions {
  quick: boolean;
  /** Our registry on a filesystem, started by the caller: the baseline. */
  filesystem: S3BenchServer;
  record(row: {
    benchmark: string;
    unit: string;
    ours: number;
    reference: number;
    target?: string;
    pass?: boolean;
  }): void;
}

const ACCEPT = {
  Accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
};
const QUIET = { log: { level: "error", accesslog: { disabled: true } } };

export async function benchS3(options: S3BenchOptions): Promise<void> {
  let ceph: CephGateway | undefined;
  if (!process.env.NEAM_TEST_S3_ENDPOINT) {
    ceph = await startCeph({ memstoreBytes: 6 * 1024 ** 3, gcMinWaitSeconds: 5 });
    Object.assign(process.env, ceph.env);
  }
  console.log(
    `\ns3 group: ${ceph === undefined ? process.env.NEAM_TEST_S3_ENDPOINT : "Ceph RGW started here (memstore 6 GiB)"}`,
  );
  try {
    await phase(ceph, "large", () => withS3Pair("large", (s3) => largeBlob(options, s3)));
    await phase(ceph, "rates", () => withS3Pair("rates", (s3) => ratesAndSmallPush(options, s3)));
    await phase(ceph, "replicas", () => replicas(options));
  } finally {
    await ceph?.stop();
  }
}

interface S3Pair {
  ours: S3BenchServer;
  reference: S3BenchServer;
}

/** Runs one phase, then has RGW free what the phase's (removed) buckets held. */
async function phase(ceph: CephGateway | undefined, name: string, body: () => Promise<void>): Promise<void> {
  console.log(`   phase ${name}: load average ${load()}`);
  try {
    await body();
  } finally {
    if (ceph !== undefined) {
      ceph.collectGarbage();
      console.log(`   phase ${name} done, RGW garbage collected (${ceph.health()}); load average ${load()}`);
    }
  }
}

/** Ours and the reference on fresh buckets of their own; stops them and removes the buckets after. */
async function withS3Pair(name: string, body: (servers: S3Pair) => Promise<void>): Promise<void> {
  const buckets: TestBucket[] = [];
  const stops: (() => Promise<void>)[] = [];
  try {
    const oursBucket = await testBucket(`bench-${name}-ours`);
    buckets.push(oursBucket);
    const refBucket = await testBucket(`bench-${name}-ref`);
    buckets.push(refBucket);
    const ours = await startRegistry({ config: { ...QUIET, storage: { s3: oursBucket.config() } } });
    stops.push(() => ours.stop());
    const reference = await startReference("", {
      logLevel: "error",
      blobDescriptorCache: true,
      storage: {
        s3: {
          accesskey: refBucket.target.accessKey,
          secretkey: refBucket.target.secretKey,
          region: refBucket.target.region,
          regionendpoint: refBucket.target.endpoint,
          bucket: refBucket.name,
          secure: false,
          v4auth: true,
        },
        redirect: { disable: true },
      },
    });
    stops.push(() => reference.stop());
    await body({
      ours: { name: "ours on S3", host: ours.host, url: ours.url },
      reference: { name: "docker-registry on S3", host: reference.host, url: reference.url },
    });
  } finally {
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => console.error(`   ${String(e)}`));
    for (const b of buckets) await b.remove().catch((e: unknown) => console.error(`   ${String(e)}`));
  }
}

function load(): string {
  return loadavg()
    .map((n) => n.toFixed(2))
    .join(" ");
}

/** One monolithic push (curl -T) of the large file to each, then pulls (median of three). */
async function largeBlob(options: S3BenchOptions, { ours, reference }: S3Pair): Promise<void> {
  const largeBytes = (options.quick ? 32 : 1024) * 1024 * 1024;
  const file = largeFile(largeBytes);
  const mb = largeBytes / 1e6;
  const push: Record<string, number> = {};
  const pull: Record<string, number> = {};
  for (const server of [ours, reference, options.filesystem]) {
    const location = (
      await new Client(server.url).request("POST", "/v2/bench/s3large/blobs/uploads/")
    ).headers.get("Location")!;
    const target = location.startsWith("http") ? location : `${server.url}${location}`;
    const separator = target.includes("?") ? "&" : "?";
    push[server.name] =
      mb /
      timed(
        `curl -sS -f -o /dev/null -T ${file.path} -H 'Content-Type: application/octet-stream' '${target}${separator}digest=${file.digest}'`,
      );
    const url = `${server.url}/v2/bench/s3large/blobs/${file.digest}`;
    const verified = spawnSync("sh", ["-c", `curl -sS -f '${url}' | openssl dgst -sha256 -r`], {
      encoding: "utf8",
    });
    if (`sha256:${verified.stdout.split(" ")[0]}` !== file.digest)
      throw new Error(`${server.name} served wrong bytes`);
    pull[server.name] = median([1, 2, 3].map(() => mb / timed(`curl -sS -f -o /dev/null '${url}'`)));
  }
  const gib = (largeBytes / 2 ** 30).toFixed(2);
  compare(options, `S3: large blob push (${gib} GiB)`, "MB/s", push, ours, reference);
  compare(options, `S3: large blob pull (${gib} GiB)`, "MB/s", pull, ours, reference);
}

/** Manifest GETs by tag at 64 clients, then the small push, on each. */
async function ratesAndSmallPush(options: S3BenchOptions, { ours, reference }: S3Pair): Promise<void> {
  const servers = [ours, reference, options.filesystem];
  const rate: Record<string, number> = {};
  for (const server of servers) {
    await seedManifest(server);
    rate[server.name] = (await manifestLoad([server], 64, options.quick)).rps;
  }
  compare(options, "S3: manifest GET by tag, 64 clients", "req/s", rate, ours, reference);

  // Small push: blobs of 1-16 KiB and manifests of 10 blobs each, 16 clients.
  const count = options.quick ? 20 : 100;
  const ops: Record<string, number> = {};
  for (const server of servers) ops[server.name] = await smallPush([server], count, 16, server.name);
  compare(
    options,
    `S3: small push (${count * 10} blobs + ${count} manifests, 16 clients)`,
    "ops/s",
    ops,
    ours,
    reference,
  );
}

/**
 * Two of our replicas on one bucket and one redis-server: manifest GETs (64 clients) and the
 * small push (16 clients), spread evenly over both, against the same clients on one replica.
 */
async function replicas(options: S3BenchOptions): Promise<void> {
  const redis = await startRedis();
  const bucket = await testBucket("bench-replicas");
  const started: Awaited<ReturnType<typeof startRegistry>>[] = [];
  try {
    const config = { ...QUIET, storage: { s3: bucket.config() }, redis: { addr: redis.addr } };
    started.push(await startRegistry({ config }), await startRegistry({ config }));
    const [a, b] = started.map((r, i) => ({
      name: `replica ${i === 0 ? "A" : "B"}`,
      host: r.host,
      url: r.url,
    }));
    await seedManifest(a!);
    // One, two, two, one: a load that drifts during the phase weighs on both alike.
    const rates = { one: [] as number[], two: [] as number[] };
    for (const spread of ["one", "two", "two", "one"] as const) {
      const result = await manifestLoad(spread === "one" ? [a!] : [a!, b!], 64, options.quick);
      rates[spread].push(result.rps);
    }
    console.log(
      `   manifest GETs, req/s: one replica ${rates.one.map(Math.round).join(", ")}; two ${rates.two.map(Math.round).join(", ")}`,
    );
    const mean = (values: number[]) => values.reduce((x, y) => x + y, 0) / values.length;
    record(
      options,
      "S3 replicas: manifest GET by tag, 64 clients",
      "req/s",
      mean(rates.two),
      mean(rates.one),
    );
    const count = options.quick ? 20 : 100;
    const single = await smallPush([a!], count, 16, "one replica");
    const spread = await smallPush([a!, b!], count, 16, "two replicas");
    record(
      options,
      `S3 replicas: small push (${count * 10} blobs + ${count} manifests, 16 clients)`,
      "ops/s",
      spread,
      single,
    );
  } finally {
    for (const r of started) await r.stop().catch((e: unknown) => console.error(`   ${String(e)}`));
    await redis.stop();
    await bucket.remove().catch((e: unknown) => console.error(`   ${String(e)}`));
  }
}

function record(options: S3BenchOptions, label: string, unit: string, two: number, one: number): void {
  options.record({
    benchmark: `${label} (ours: 2 replicas; ref: 1 replica)`,
    unit,
    ours: two,
    reference: one,
  });
}

async function seedManifest(server: S3BenchServer): Promise<void> {
  const response = await new Client(server.url).pushManifest(
    "bench/s3pull",
    "latest",
    imageManifest({ layers: 3 }),
  );
  if (response.status !== 201) throw new Error(`${server.name}: seed push ${response.status}`);
}

/**
 * Manifest GETs by tag from `clients` connections split evenly over `servers` (which share the
 * store), all at once from this process; the summed rate.
 */
async function manifestLoad(
  servers: readonly S3BenchServer[],
  clients: number,
  quick: boolean,
): Promise<{ rps: number }> {
  const requests: LoadRequest[] = [
    { method: "GET", path: "/v2/bench/s3pull/manifests/latest", headers: ACCEPT },
  ];
  const results: LoadResult[] = await Promise.all(
    servers.map((server) => {
      const [host, port] = server.host.split(":") as [string, string];
      return runLoad(host, Number(port), requests, clients / servers.length, quick ? 2 : 5);
    }),
  );
  results.forEach((result, i) => {
    const bad = Object.keys(result.statuses).filter((s) => !s.startsWith("2"));
    if (bad.length > 0 || result.errors > 0)
      throw new Error(
        `${servers[i]!.name}: non-2xx answers ${JSON.stringify(result.statuses)}, ${result.errors} errors`,
      );
  });
  return { rps: results.reduce((sum, r) => sum + r.rps, 0) };
}

/** Two rows: ours on S3 against the reference on S3, and against ours on a filesystem. */
function compare(
  options: S3BenchOptions,
  label: string,
  unit: string,
  values: Record<string, number>,
  ours: S3BenchServer,
  reference: S3BenchServer,
): void {
  options.record({
    benchmark: `${label} (ref: docker-registry on S3)`,
    unit,
    ours: values[ours.name]!,
    reference: values[reference.name]!,
  });
  options.record({
    benchmark: `${label} (ref: ours on filesystem)`,
    unit,
    ours: values[ours.name]!,
    reference: values[options.filesystem.name]!,
  });
}

/**
 * `manifests` manifests of 10 new small blobs each, pushed by `clients` clients spread evenly
 * over `servers` (client i talks to server i mod n); operations (blobs + manifests) per second.
 */
async function smallPush(
  servers: readonly S3BenchServer[],
  manifests: number,
  clients: number,
  label: string,
): Promise<number> {
  const tag = randomBytes(3).toString("hex");
  const work = Array.from({ length: manifests }, (_, i) => {
    const blobs: Blob[] = Array.from({ length: 10 }, () =>
      blob(randomBytes(1024 + Math.floor(Math.random() * 15 * 1024))),
    );
    return { repo: `bench/s3small${i % 10}`, tag: `v${i}-${tag}`, bytes: manifestOf(blobs), blobs };
  });
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const client = new Client(servers[c % servers.length]!.url);
      for (let i = next++; i < work.length; i = next++) {
        const m = work[i]!;
        for (const b of m.blobs) await client.pushBlob(m.repo, b);
        const response = await client.request("PUT", `/v2/${m.repo}/manifests/${m.tag}`, {
          body: m.bytes,
          headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
        });
        if (response.status !== 201) throw new Error(`${label}: manifest ${response.status}`);
      }
    }),
  );
  return (manifests * 11) / ((performance.now() - started) / 1000);
}

function timed(script: string): number {
  const started = performance.now();
  const result = spawnSync("sh", ["-c", script], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`${script}: ${result.stderr}`);
  return (performance.now() - started) / 1000;
}

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}
