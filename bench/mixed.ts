/**
 * The mixed pull-heavy load of issue 12, with pushes in it: 64 closed-loop clients on keep-alive
 * connections, each picking its next operation by weight from a seeded sequence (the same sequence
 * for both servers). Every answer is checked — blob GETs by the sha256 of the bytes received,
 * manifest GETs likewise, HEADs by their digest/length headers, pushes by status and digest — and
 * anything else is an error, counted per operation and printed. Both servers get the same content
 * on fresh roots; the measurement alternates ours, reference, reference, ours so that a drift in
 * the machine's load falls on both alike.
 */
import { createHash, randomBytes } from "node:crypto";
import { Http1, type Reply } from "./http1.js";
import { fmt, note, record, settleTarget } from "./report.js";
import { cpuSeconds, startPair, type BenchServer, type Side } from "./servers.js";

const CLIENTS = 64;
const REPOS = 8;
const IMAGES_PER_REPO = 8;
/** Release-style aliases per repository, so a tags list has 32 stable entries (plus pushed ones). */
const ALIASES = 24;
/** Manifest pushes overwrite these tags (per repository), so tag lists do not grow with the rate. */
const PUSH_TAGS = 16;

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const ACCEPT = [
  OCI_MANIFEST,
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

/** The composition: weights in percent of operations. Pushes are 5% blobs and 2% manifests. */
const KINDS = [
  { id: "manifestGetTag", name: "manifest GET by tag", weight: 20 },
  { id: "manifestGetDigest", name: "manifest GET by digest", weight: 15 },
  { id: "manifestHead", name: "manifest HEAD by tag", weight: 15 },
  { id: "blobGet", name: "blob GET 4-64 KiB, sha256 verified", weight: 25 },
  { id: "blobHead", name: "blob HEAD", weight: 13 },
  { id: "tagsList", name: "tags list", weight: 5 },
  { id: "blobPush", name: "blob push (POST+PUT | POST+PATCH+PUT)", weight: 5 },
  { id: "manifestPush", name: "manifest push", weight: 2 },
] as const;
type Kind = (typeof KINDS)[number]["id"];

export const MIXED_TARGET = "mixed load >= 5x the reference, our p99 below its p50, no errors";

interface Blob {
  digest: string;
  data: Buffer;
}
interface Image {
  repo: string;
  digest: string;
  bytes: Buffer;
  config: Blob;
  layers: Blob[];
}
interface Content {
  repos: string[];
  /** Images per repository. */
  images: Image[][];
  /** Tags per repository and the image each names. */
  tags: { tag: string; image: Image }[][];
}

const sha256 = (data: Buffer) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

function randomBlob(size: number): Blob {
  const data = randomBytes(size);
  return { digest: sha256(data), data };
}

/** 8 repositories of 8 images (a small config and two 4-64 KiB layers each), 32 tags per repository. */
function makeContent(): Content {
  const repos: string[] = [];
  const images: Image[][] = [];
  const tags: { tag: string; image: Image }[][] = [];
  for (let r = 0; r < REPOS; r++) {
    const repo = `bench/mixed/app${r}`;
    repos.push(repo);
    const own: Image[] = [];
    for (let i = 0; i < IMAGES_PER_REPO; i++) {
      const configData = Buffer.from(
        JSON.stringify({
          architecture: "amd64",
          os: "linux",
          config: { Cmd: ["/app"], Env: [`IMAGE=${r}.${i}`] },
          rootfs: { type: "layers", diff_ids: [] },
          nonce: randomBytes(8).toString("hex"),
        }),
      );
      const config = { digest: sha256(configData), data: configData };
      const layers = [0, 1].map(() => randomBlob(4096 + Math.floor(Math.random() * 60 * 1024)));
      const bytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: {
            mediaType: "application/vnd.oci.image.config.v1+json",
            digest: config.digest,
            size: configData.length,
          },
          layers: layers.map((l) => ({
            mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
            digest: l.digest,
            size: l.data.length,
          })),
        }),
      );
      own.push({ repo, digest: sha256(bytes), bytes, config, layers });
    }
    images.push(own);
    tags.push([
      ...own.map((image, i) => ({ tag: `v${i}`, image })),
      ...Array.from({ length: ALIASES }, (_, k) => ({ tag: `release-${k}`, image: own[k % own.length]! })),
    ]);
  }
  return { repos, images, tags };
}

/** xorshift32: the same operation sequence per client index for both servers. */
class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state / 2 ** 32;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

function expect(reply: Reply, status: number, what: string): void {
  if (reply.status !== status) {
    const body = reply.body.toString("utf8", 0, Math.min(reply.body.length, 160)).replace(/\s+/g, " ");
    throw new Error(`${what}: ${reply.status} (expected ${status}) ${body}`);
  }
}

function locationOf(reply: Reply): string {
  const location = reply.headers.get("location");
  if (!location) throw new Error(`${reply.status} without Location`);
  const url = new URL(location, "http://placeholder");
  return `${url.pathname}${url.search}`;
}

const withDigest = (path: string, digest: string) =>
  `${path}${path.includes("?") ? "&" : "?"}digest=${digest}`;

async function pushBlob(conn: Http1, repo: string, blob: Blob, chunked: boolean): Promise<void> {
  const started = await conn.request("POST", `/v2/${repo}/blobs/uploads/`);
  expect(started, 202, "blob upload POST");
  let location = locationOf(started);
  const octets = { "Content-Type": "application/octet-stream" };
  if (chunked) {
    const patched = await conn.request(
      "PATCH",
      location,
      { ...octets, "Content-Range": `0-${blob.data.length - 1}` },
      blob.data,
    );
    expect(patched, 202, "blob upload PATCH");
    location = locationOf(patched);
    const done = await conn.request("PUT", withDigest(location, blob.digest), octets);
    expect(done, 201, "blob upload PUT");
  } else {
    const done = await conn.request("PUT", withDigest(location, blob.digest), octets, blob.data);
    expect(done, 201, "blob upload PUT");
  }
}

async function seed(server: BenchServer, content: Content): Promise<void> {
  const [host, port] = server.host.split(":") as [string, string];
  const blobs = content.images
    .flat()
    .flatMap((image) => [image.config, ...image.layers].map((b) => ({ repo: image.repo, b })));
  const manifests = content.tags.flatMap((tags, r) => tags.map((t) => ({ repo: content.repos[r]!, ...t })));
  let nextBlob = 0;
  let nextManifest = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      const conn = new Http1(host, Number(port));
      try {
        for (let i = nextBlob++; i < blobs.length; i = nextBlob++)
          await pushBlob(conn, blobs[i]!.repo, blobs[i]!.b, false);
        for (let i = nextManifest++; i < manifests.length; i = nextManifest++) {
          const m = manifests[i]!;
          const reply = await conn.request(
            "PUT",
            `/v2/${m.repo}/manifests/${m.tag}`,
            { "Content-Type": OCI_MANIFEST },
            m.image.bytes,
          );
          expect(reply, 201, `${server.name} seed manifest`);
        }
      } finally {
        conn.close();
      }
    }),
  );
}

interface Tally {
  ops: number;
  seconds: number;
  latencies: number[][];
  errors: number[];
  messages: Map<string, number>;
  serverCpu: number;
  clientCpu: number;
}

function emptyTally(): Tally {
  return {
    ops: 0,
    seconds: 0,
    latencies: KINDS.map(() => []),
    errors: KINDS.map(() => 0),
    messages: new Map(),
    serverCpu: 0,
    clientCpu: 0,
  };
}

/** Shared by every client of a run: random bytes for pushed blobs, a run nonce and a counter. */
const pool = randomBytes(1024 * 1024);
let pushCounter = 0;
const runNonce = randomBytes(8);

function freshBlob(rng: Rng): Blob {
  const size = 4096 + rng.int(60 * 1024 + 1);
  const data = Buffer.allocUnsafe(size);
  const offset = rng.int(pool.length - size);
  pool.copy(data, 0, offset, offset + size);
  runNonce.copy(data, 0);
  data.writeDoubleLE(++pushCounter, 8);
  return { digest: sha256(data), data };
}

async function operation(kind: Kind, conn: Http1, rng: Rng, content: Content): Promise<void> {
  const r = rng.int(REPOS);
  const repo = content.repos[r]!;
  switch (kind) {
    case "manifestGetTag": {
      const { tag, image } = content.tags[r]![rng.int(content.tags[r]!.length)]!;
      const reply = await conn.request("GET", `/v2/${repo}/manifests/${tag}`, { Accept: ACCEPT });
      expect(reply, 200, "manifest GET by tag");
      if (sha256(reply.body) !== image.digest) throw new Error("manifest GET by tag: wrong bytes");
      return;
    }
    case "manifestGetDigest": {
      const image = content.images[r]![rng.int(IMAGES_PER_REPO)]!;
      const reply = await conn.request("GET", `/v2/${repo}/manifests/${image.digest}`, { Accept: ACCEPT });
      expect(reply, 200, "manifest GET by digest");
      if (sha256(reply.body) !== image.digest) throw new Error("manifest GET by digest: wrong bytes");
      return;
    }
    case "manifestHead": {
      const { tag, image } = content.tags[r]![rng.int(content.tags[r]!.length)]!;
      const reply = await conn.request("HEAD", `/v2/${repo}/manifests/${tag}`, { Accept: ACCEPT });
      expect(reply, 200, "manifest HEAD");
      if (reply.headers.get("docker-content-digest") !== image.digest)
        throw new Error(`manifest HEAD: digest ${reply.headers.get("docker-content-digest")}`);
      return;
    }
    case "blobGet": {
      const blob = content.images[r]![rng.int(IMAGES_PER_REPO)]!.layers[rng.int(2)]!;
      const reply = await conn.request("GET", `/v2/${repo}/blobs/${blob.digest}`);
      expect(reply, 200, "blob GET");
      if (sha256(reply.body) !== blob.digest) throw new Error("blob GET: wrong bytes");
      return;
    }
    case "blobHead": {
      const blob = content.images[r]![rng.int(IMAGES_PER_REPO)]!.layers[rng.int(2)]!;
      const reply = await conn.request("HEAD", `/v2/${repo}/blobs/${blob.digest}`);
      expect(reply, 200, "blob HEAD");
      if (Number(reply.headers.get("content-length")) !== blob.data.length)
        throw new Error(`blob HEAD: length ${reply.headers.get("content-length")}`);
      return;
    }
    case "tagsList": {
      const reply = await conn.request("GET", `/v2/${repo}/tags/list`);
      expect(reply, 200, "tags list");
      const listed = (JSON.parse(reply.body.toString("utf8")) as { tags?: string[] }).tags ?? [];
      if (listed.length < content.tags[r]!.length) throw new Error(`tags list: ${listed.length} tags`);
      return;
    }
    case "blobPush": {
      const blob = freshBlob(rng);
      await pushBlob(conn, repo, blob, pushCounter % 2 === 0);
      return;
    }
    case "manifestPush": {
      const image = content.images[r]![rng.int(IMAGES_PER_REPO)]!;
      const body = JSON.parse(image.bytes.toString("utf8")) as Record<string, unknown>;
      body.annotations = { "org.example.bench": `${runNonce.toString("hex")}-${++pushCounter}` };
      const bytes = Buffer.from(JSON.stringify(body));
      const reply = await conn.request(
        "PUT",
        `/v2/${repo}/manifests/push-${pushCounter % PUSH_TAGS}`,
        { "Content-Type": OCI_MANIFEST },
        bytes,
      );
      expect(reply, 201, "manifest push");
      const digest = reply.headers.get("docker-content-digest");
      if (digest !== undefined && digest !== sha256(bytes))
        throw new Error(`manifest push: digest ${digest}`);
    }
  }
}

/** `CLIENTS` closed-loop clients against one server for `seconds`; adds what they saw to `tally`. */
async function run(server: BenchServer, content: Content, seconds: number, seedBase: number, tally?: Tally) {
  const [host, port] = server.host.split(":") as [string, string];
  const cumulative: number[] = [];
  let sum = 0;
  for (const k of KINDS) cumulative.push((sum += k.weight));
  const cpuBefore = cpuSeconds(server.pids());
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, client) => {
      const rng = new Rng(seedBase * 7919 + client * 104729 + 1);
      const conn = new Http1(host, Number(port));
      try {
        while (performance.now() < deadline) {
          const pick = rng.next() * sum;
          const kind = cumulative.findIndex((c) => pick < c);
          const at = performance.now();
          try {
            await operation(KINDS[kind]!.id, conn, rng, content);
            if (tally) {
              tally.latencies[kind]!.push(performance.now() - at);
              tally.ops++;
            }
          } catch (error) {
            conn.reset();
            if (tally) {
              tally.errors[kind]!++;
              const message = error instanceof Error ? error.message : String(error);
              tally.messages.set(message, (tally.messages.get(message) ?? 0) + 1);
            }
          }
        }
      } finally {
        conn.close();
      }
    }),
  );
  if (tally) {
    tally.seconds += (performance.now() - started) / 1000;
    tally.serverCpu += cpuSeconds(server.pids()) - cpuBefore;
    const client = process.cpuUsage(clientBefore);
    tally.clientCpu += (client.user + client.system) / 1e6;
  }
}

function percentile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function mixedLoad(quick: boolean): Promise<void> {
  const total = quick ? 3 : 20;
  const content = makeContent();
  const pair = await startPair();
  try {
    for (const server of pair.both) await seed(server, content);
    // Warm-up (not counted): the first requests of a process pay for JIT and cold caches.
    for (const server of pair.both) await run(server, content, quick ? 0.5 : 2, 99);
    const tallies: Record<Side, Tally> = { ours: emptyTally(), reference: emptyTally() };
    // ours, reference, reference, ours: half the time each, same seeds per half.
    const order: [BenchServer, number][] = [
      [pair.ours, 1],
      [pair.reference, 1],
      [pair.reference, 2],
      [pair.ours, 2],
    ];
    for (const [server, half] of order) await run(server, content, total / 2, half, tallies[server.name]);
    report(tallies, total);
  } finally {
    await pair.destroy();
  }
}

function report(tallies: Record<Side, Tally>, seconds: number): void {
  const all = (t: Tally) => t.latencies.flat().sort((a, b) => a - b);
  const sorted = { ours: all(tallies.ours), reference: all(tallies.reference) };
  const rate = (side: Side) => tallies[side].ops / tallies[side].seconds;
  const p = (side: Side, q: number) => percentile(sorted[side], q);
  const errors = (side: Side) => tallies[side].errors.reduce((a, b) => a + b, 0);
  const ratio = rate("ours") / rate("reference");
  const clean = errors("ours") === 0 && errors("reference") === 0;
  const label = `mixed with pushes, ${CLIENTS} clients, ${seconds} s`;
  record({
    benchmark: `${label}`,
    unit: "ops/s",
    ours: rate("ours"),
    reference: rate("reference"),
    target: ">= 5x",
    pass: ratio >= 5 && clean,
  });
  record({ benchmark: `${label}, p50`, unit: "ms", ours: p("ours", 0.5), reference: p("reference", 0.5) });
  record({
    benchmark: `${label}, p99`,
    unit: "ms",
    ours: p("ours", 0.99),
    reference: p("reference", 0.99),
    target: "ours < ref p50",
    pass: p("ours", 0.99) < p("reference", 0.5),
  });
  record({
    benchmark: `${label}, errors`,
    unit: "ops",
    ours: errors("ours"),
    reference: errors("reference"),
    target: "0",
    pass: clean,
  });
  record({
    benchmark: `mixed: server CPU per 1,000 ops`,
    unit: "ms",
    ours: (tallies.ours.serverCpu * 1e6) / tallies.ours.ops,
    reference: (tallies.reference.serverCpu * 1e6) / tallies.reference.ops,
  });
  note(
    `client (this process) CPU while measuring: ${fmt((100 * tallies.ours.clientCpu) / tallies.ours.seconds)}% of a core against ours, ${fmt((100 * tallies.reference.clientCpu) / tallies.reference.seconds)}% against the reference`,
  );
  note(
    `${"operation".padEnd(40)} ${"share".padStart(5)}  ${"ours ops".padStart(9)} ${"p50".padStart(7)} ${"p99".padStart(7)}  ${"ref ops".padStart(9)} ${"p50".padStart(7)} ${"p99".padStart(7)}  errors ours/ref`,
  );
  KINDS.forEach((kind, i) => {
    const o = [...tallies.ours.latencies[i]!].sort((a, b) => a - b);
    const r = [...tallies.reference.latencies[i]!].sort((a, b) => a - b);
    note(
      `${kind.name.padEnd(40)} ${`${kind.weight}%`.padStart(5)}  ${String(o.length).padStart(9)} ${fmt(percentile(o, 0.5)).padStart(7)} ${fmt(percentile(o, 0.99)).padStart(7)}  ${String(r.length).padStart(9)} ${fmt(percentile(r, 0.5)).padStart(7)} ${fmt(percentile(r, 0.99)).padStart(7)}  ${tallies.ours.errors[i]}/${tallies.reference.errors[i]}`,
    );
  });
  for (const side of ["ours", "reference"] as const) {
    for (const [message, count] of [...tallies[side].messages].slice(0, 5))
      note(`ERROR ${side}: ${count} x ${message}`);
  }
  settleTarget(
    MIXED_TARGET,
    ratio >= 5 && p("ours", 0.99) < p("reference", 0.5) && clean,
    `${fmt(rate("ours"))} vs ${fmt(rate("reference"))} ops/s = ${ratio.toFixed(2)}x; p99 ours ${fmt(p("ours", 0.99))} ms vs ref p50 ${fmt(p("reference", 0.5))} ms; errors ${errors("ours")}/${errors("reference")}${clean ? "" : " — RUN HAD ERRORS"}`,
  );
}
