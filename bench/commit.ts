/**
 * Chunked-upload commit time: an upload of 64 PATCHes of 16 MiB, then the final `PUT ?digest=`
 * timed alone (a new connection, request sent to response end), ours against the reference. Then
 * the same with both servers restarted between the last PATCH and the PUT, on the same roots: the
 * case where the running hash of the upload must survive a restart instead of the data being read
 * again. The reference gets a fixed `http.secret` so its upload state tokens stay valid across
 * its restart. The PUT comes right after the last PATCH, as a client sends it: no sync between.
 */
import { createHash, randomBytes } from "node:crypto";
import { request } from "node:http";
import { fmt, median, note, record, settleTarget } from "./report.js";
import { startPair, type BenchServer, type Pair, type Side } from "./servers.js";

const REPO = "bench/commit";
const CHUNK = 16 * 2 ** 20;

export const COMMIT_TARGETS = {
  fresh: "chunked-upload commit (PUT ?digest= after 64 x 16 MiB PATCHes) <= 50 ms",
  restart: "chunked-upload commit <= 50 ms after a restart between the last PATCH and the PUT",
};

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: Buffer,
  fresh = false,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        headers: { ...headers, "Content-Length": String(body?.length ?? 0) },
        ...(fresh ? { agent: false } : {}),
      },
      (response) => {
        let text = "";
        response.setEncoding("utf8").on("data", (c: string) => (text += c.length < 4096 ? c : ""));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function location(server: BenchServer, answer: Answer): string {
  const value = answer.headers.location;
  if (typeof value !== "string") throw new Error(`${server.name}: ${answer.status} without Location`);
  return new URL(value, server.url).toString();
}

/** POST, then `chunks` PATCHes of 16 MiB (distinct bytes per upload); the last Location and the digest. */
async function upload(server: BenchServer, chunks: number, data: Buffer, nonce: string) {
  const started = await call(`${server.url}/v2/${REPO}/blobs/uploads/`, "POST", {});
  if (started.status !== 202)
    throw new Error(`${server.name}: upload POST ${started.status} ${started.body}`);
  let url = location(server, started);
  const hash = createHash("sha256");
  const began = performance.now();
  for (let i = 0; i < chunks; i++) {
    // The chunk is only changed after the previous PATCH was answered, so it is never mutated in flight.
    data.write(`${nonce}-${i}-`, 0, "latin1");
    hash.update(data);
    const patched = await call(
      url,
      "PATCH",
      { "Content-Type": "application/octet-stream", "Content-Range": `${i * CHUNK}-${(i + 1) * CHUNK - 1}` },
      data,
    );
    if (patched.status !== 202)
      throw new Error(`${server.name}: PATCH ${i} ${patched.status} ${patched.body}`);
    url = location(server, patched);
  }
  const seconds = (performance.now() - began) / 1000;
  return { url, digest: `sha256:${hash.digest("hex")}`, patchMBps: (chunks * CHUNK) / seconds / 1e6 };
}

/** The PUT alone, in milliseconds; `url` may name a previous process of `server` (host rewritten). */
async function commit(server: BenchServer, url: string, digest: string, size: number): Promise<number> {
  const moved = new URL(url);
  moved.host = server.host;
  const target = `${moved.toString()}${moved.search ? "&" : "?"}digest=${digest}`;
  const started = performance.now();
  const answer = await call(target, "PUT", { "Content-Type": "application/octet-stream" }, undefined, true);
  const ms = performance.now() - started;
  if (answer.status !== 201) throw new Error(`${server.name}: commit PUT ${answer.status} ${answer.body}`);
  if (answer.headers["docker-content-digest"] !== digest)
    throw new Error(`${server.name}: committed as ${String(answer.headers["docker-content-digest"])}`);
  const head = await call(`${server.url}/v2/${REPO}/blobs/${digest}`, "HEAD", {}, undefined, true);
  if (head.status !== 200 || Number(head.headers["content-length"]) !== size)
    throw new Error(
      `${server.name}: committed blob answers HEAD ${head.status} ${head.headers["content-length"]}`,
    );
  return ms;
}

export async function commitTime(quick: boolean): Promise<void> {
  const chunks = quick ? 4 : 64;
  const repetitions = quick ? 1 : 3;
  const size = chunks * CHUNK;
  const data = randomBytes(CHUNK);
  const secret = randomBytes(16).toString("hex");
  let pair: Pair = await startPair({ secret });
  const roots = { ours: pair.ours.root, reference: pair.reference.root };
  const fresh: Record<Side, number[]> = { ours: [], reference: [] };
  const restarted: Record<Side, number[]> = { ours: [], reference: [] };
  const patchRates: Record<Side, number[]> = { ours: [], reference: [] };
  try {
    for (let rep = 0; rep < repetitions; rep++) {
      const order = rep % 2 === 0 ? pair.both : [pair.reference, pair.ours];
      for (const server of order) {
        const done = await upload(server, chunks, data, `f${rep}${randomBytes(4).toString("hex")}`);
        patchRates[server.name].push(done.patchMBps);
        fresh[server.name].push(await commit(server, done.url, done.digest, size));
      }
    }
    for (let rep = 0; rep < repetitions; rep++) {
      const pending: Partial<Record<Side, { url: string; digest: string }>> = {};
      for (const server of pair.both)
        pending[server.name] = await upload(server, chunks, data, `r${rep}${randomBytes(4).toString("hex")}`);
      await pair.stop();
      pair = await startPair({ roots, secret });
      const order = rep % 2 === 0 ? pair.both : [pair.reference, pair.ours];
      for (const server of order)
        restarted[server.name].push(
          await commit(server, pending[server.name]!.url, pending[server.name]!.digest, size),
        );
    }
  } finally {
    await pair.destroy();
  }
  const label = `${chunks} x 16 MiB PATCHes, then PUT ?digest=`;
  note(`each: POST, ${label}; the PUT timed alone`);
  const row = (name: string, values: Record<Side, number[]>, target: string) => {
    const ours = median(values.ours);
    const reference = median(values.reference);
    record({
      benchmark: `${name} (median of ${repetitions})`,
      unit: "ms",
      ours,
      reference,
      target: "<= 50 ms",
      pass: ours <= 50,
    });
    note(
      `runs: ours ${values.ours.map(fmt).join(", ")} ms; reference ${values.reference.map(fmt).join(", ")} ms`,
    );
    settleTarget(target, ours <= 50, `ours ${fmt(ours)} ms, reference ${fmt(reference)} ms (${label})`);
  };
  row(`commit after ${chunks} x 16 MiB PATCHes`, fresh, COMMIT_TARGETS.fresh);
  row(`commit, both servers restarted before the PUT`, restarted, COMMIT_TARGETS.restart);
  record({
    benchmark: `PATCH throughput of those uploads`,
    unit: "MB/s",
    ours: median(patchRates.ours),
    reference: median(patchRates.reference),
  });
}
