/**
 * The `s3` group: our registry on S3 (Ceph RGW) against the same on a filesystem and against
 * `docker-registry` (its s3 driver) on the same S3 store: a large blob pushed and pulled (1 GiB;
 * 32 MiB with --quick), manifest GETs at 64 clients, a small push. The store is the one named by
 * NEAM_TEST_S3_ENDPOINT, else a Ceph RGW started here (test/helpers/ceph-rgw.sh, 4 GiB memstore:
 * the large blob, its copy on move, and the reference's). Each registry gets its own bucket.
 */
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { startCeph, testBucket, type CephGateway, type TestBucket } from "../test/helpers/ceph.js";
import { Client, blob, imageManifest, type Blob } from "../test/helpers/oci.js";
import { startReference } from "../test/helpers/reference.js";
import { processTree, startRegistry } from "../test/helpers/registry.js";
import { runLoad, type LoadRequest } from "./load.js";
import { largeFile } from "./servers.js";

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

export async function benchS3(options: S3BenchOptions): Promise<void> {
  const { quick, record } = options;
  const largeBytes = (quick ? 32 : 1024) * 1024 * 1024;
  let ceph: CephGateway | undefined;
  if (!process.env.NEAM_TEST_S3_ENDPOINT) {
    ceph = await startCeph({ memstoreBytes: 4 * 1024 ** 3 });
    Object.assign(process.env, ceph.env);
  }
  const buckets: TestBucket[] = [];
  const stops: (() => Promise<void>)[] = [];
  try {
    const oursBucket = await testBucket("bench-ours");
    const refBucket = await testBucket("bench-ref");
    buckets.push(oursBucket, refBucket);
    const ours = await startRegistry({
      config: {
        log: { level: "error", accesslog: { disabled: true } },
        storage: { s3: oursBucket.config() },
      },
    });
    stops.push(() => ours.stop());
    const reference = await startReference("", {
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
    const s3Ours: S3BenchServer = { name: "ours on S3", host: ours.host, url: ours.url };
    const s3Ref: S3BenchServer = { name: "docker-registry on S3", host: reference.host, url: reference.url };
    const servers = [s3Ours, s3Ref, options.filesystem];
    console.log(
      `\ns3 group: ${ceph === undefined ? process.env.NEAM_TEST_S3_ENDPOINT : "Ceph RGW started here"}` +
        `; processes: ours ${processTree(ours.process.pid!).length}, reference pid ${reference.pid}`,
    );

    // Large blob: one monolithic push (curl -T), then pulls (median of three).
    const file = largeFile(largeBytes);
    const mb = largeBytes / 1e6;
    const push: Record<string, number> = {};
    const pull: Record<string, number> = {};
    for (const server of servers) {
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
    compare(record, `S3: large blob push (${gib} GiB)`, "MB/s", push, s3Ours, s3Ref, options.filesystem);
    compare(record, `S3: large blob pull (${gib} GiB)`, "MB/s", pull, s3Ours, s3Ref, options.filesystem);

    // Manifest GETs by tag, 64 clients.
    const rate: Record<string, number> = {};
    for (const server of servers) {
      const m = imageManifest({ layers: 3 });
      const response = await new Client(server.url).pushManifest("bench/s3pull", "latest", m);
      if (response.status !== 201) throw new Error(`${server.name}: seed push ${response.status}`);
      const requests: LoadRequest[] = [
        { method: "GET", path: "/v2/bench/s3pull/manifests/latest", headers: ACCEPT },
      ];
      const [host, port] = server.host.split(":") as [string, string];
      const result = await runLoad(host, Number(port), requests, 64, quick ? 2 : 5);
      const bad = Object.keys(result.statuses).filter((s) => !s.startsWith("2"));
      if (bad.length > 0)
        throw new Error(`${server.name}: non-2xx answers ${JSON.stringify(result.statuses)}`);
      rate[server.name] = result.rps;
    }
    compare(record, "S3: manifest GET by tag, 64 clients", "req/s", rate, s3Ours, s3Ref, options.filesystem);

    // Small push: blobs of 1-16 KiB and manifests of 10 blobs each, 16 clients.
    const count = quick ? 20 : 100;
    const ops: Record<string, number> = {};
    for (const server of servers) ops[server.name] = await smallPush(server, count);
    compare(
      record,
      `S3: small push (${count * 10} blobs + ${count} manifests, 16 clients)`,
      "ops/s",
      ops,
      s3Ours,
      s3Ref,
      options.filesystem,
    );
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    for (const b of buckets) await b.remove().catch(() => {});
    await ceph?.stop();
  }
}

/** Two rows: ours on S3 against the reference on S3, and against ours on a filesystem. */
function compare(
  record: S3BenchOptions["record"],
  label: string,
  unit: string,
  values: Record<string, number>,
  ours: S3BenchServer,
  reference: S3BenchServer,
  filesystem: S3BenchServer,
): void {
  record({
    benchmark: `${label} (ref: docker-registry on S3)`,
    unit,
    ours: values[ours.name]!,
    reference: values[reference.name]!,
  });
  record({
    benchmark: `${label} (ref: ours on filesystem)`,
    unit,
    ours: values[ours.name]!,
    reference: values[filesystem.name]!,
  });
}

async function smallPush(server: S3BenchServer, manifests: number): Promise<number> {
  const client = new Client(server.url);
  const work = Array.from({ length: manifests }, (_, i) => {
    const blobs: Blob[] = Array.from({ length: 10 }, () =>
      blob(randomBytes(1024 + Math.floor(Math.random() * 15 * 1024))),
    );
    const body = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: blobs[0]!.digest,
        size: blobs[0]!.size,
      },
      layers: blobs.slice(1).map((b) => ({
        mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
        digest: b.digest,
        size: b.size,
      })),
    };
    return { repo: `bench/s3small${i % 10}`, tag: `v${i}`, bytes: Buffer.from(JSON.stringify(body)), blobs };
  });
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < work.length; i = next++) {
        const m = work[i]!;
        for (const b of m.blobs) await client.pushBlob(m.repo, b);
        const response = await client.request("PUT", `/v2/${m.repo}/manifests/${m.tag}`, {
          body: m.bytes,
          headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
        });
        if (response.status !== 201) throw new Error(`${server.name}: manifest ${response.status}`);
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
