/**
 * A manifest index listing tens of thousands of children the registry does not have (the
 * hardening review's 27,775 in 4 MiB): refused at the first missing child with a small error,
 * without a memory or latency storm, even when 16 such pushes arrive at once (issue 9 item 7).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { request } from "node:http";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { Client, imageManifest, OCI_INDEX, OCI_MANIFEST, sha256 } from "../../helpers/oci.js";
import { rssBytes, startRegistry } from "../../helpers/registry.js";

const CHILDREN = 27_775;
const PUSHES = 16;
const MiB = 1024 * 1024;

function hugeIndex(): Buffer {
  const manifests = Array.from({ length: CHILDREN }, () => ({
    mediaType: OCI_MANIFEST,
    digest: `sha256:${randomBytes(32).toString("hex")}`,
    size: 1,
  }));
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
}

/** A PUT over a fresh connection (fetch's pool would queue 16 at once behind a few sockets). */
function put(url: string, body: Buffer, contentType = OCI_INDEX): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "PUT",
        agent: false,
        headers: { "Content-Type": contentType, "Content-Length": body.length },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("an index with tens of thousands of unknown children", () => {
  it("is refused at the first missing child: small error, RSS within 64 MiB, health and /v2/ within 1 s", async () => {
    const registry = await startRegistry();
    try {
      const bodies = Array.from({ length: PUSHES }, hugeIndex);
      assert.ok(bodies[0]!.length > 3.5 * MiB && bodies[0]!.length <= 4 * MiB, String(bodies[0]!.length));
      // Warm up: one push first, so the baseline includes what any first push allocates.
      const warm = await put(`${registry.url}/v2/team/app/manifests/warm`, hugeIndex());
      assert.equal(warm.status, 400);
      const pid = registry.process.pid!;
      const baseline = rssBytes(pid);
      let peak = baseline;
      const slowest = { v2: 0, health: 0 };
      let done = false;
      const timed = async (which: keyof typeof slowest, url: string) => {
        const started = Date.now();
        const response = await fetch(url);
        await response.arrayBuffer();
        assert.equal(response.status, 200, url);
        slowest[which] = Math.max(slowest[which], Date.now() - started);
      };
      const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 10);
      const watch = (async () => {
        while (!done) {
          await Promise.all([
            timed("v2", `${registry.url}/v2/`),
            timed("health", `${registry.debugUrl}/debug/health`),
          ]);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const results = await Promise.all(
        bodies.map((body, i) => put(`${registry.url}/v2/team/app/manifests/t${i}`, body)),
      ).finally(() => {
        done = true;
        clearInterval(sampler);
      });
      await watch;
      for (const result of results) {
        assert.equal(result.status, 400);
        const error = (
          JSON.parse(result.body) as { errors: { code: string; detail: { digests: string[] } }[] }
        ).errors[0]!;
        assert.equal(error.code, "MANIFEST_BLOB_UNKNOWN");
        assert.ok(result.body.length < 1024, `error body of ${result.body.length} bytes`);
        assert.equal(error.detail.digests.length, 1);
      }
      // Before the fix: +130-250 MiB, /v2/ up to 2 s. Each body was parsed into one JSON tree of
      // 27,775 entries, which V8 promoted and kept as garbage until a full collection; now the body
      // is scanned, its entries parsed a few hundred at a time and dropped, and large manifests
      // are read two at a time, the others waiting unread.
      const growth = (peak - baseline) / MiB;
      assert.ok(growth < 64, `RSS grew by ${growth.toFixed(1)} MiB`);
      assert.ok(slowest.v2 < 1000, `/v2/ took ${slowest.v2} ms`);
      assert.ok(slowest.health < 1000, `/debug/health took ${slowest.health} ms`);
    } finally {
      await registry.stop();
    }
  });

  it("large indexes whose children exist are stored, each read back byte for byte", async () => {
    // Large manifests are read into buffers the server reuses: what it stores and caches must be
    // a copy, or the second push would overwrite the first one's cached bytes.
    const registry = await startRegistry();
    try {
      const client = new Client(registry.url);
      const child = imageManifest();
      assert.equal((await client.pushManifest("team/big", "child", child)).status, 201);
      const bigIndex = (label: string, entries: number) =>
        Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: OCI_INDEX,
            manifests: Array.from({ length: entries }, (_, i) => ({
              mediaType: OCI_MANIFEST,
              digest: child.digest,
              size: child.bytes.length,
              annotations: { "org.example.entry": `${label}-${i}` },
            })),
          }),
        );
      const first = bigIndex("first", 4000);
      const second = bigIndex("second", 3000);
      assert.ok(first.length > 256 * 1024 && second.length > 256 * 1024);
      for (const [tag, body] of [
        ["first", first],
        ["second", second],
      ] as const) {
        const response = await put(`${registry.url}/v2/team/big/manifests/${tag}`, body);
        assert.equal(response.status, 201, response.body);
      }
      for (const [tag, body] of [
        ["first", first],
        ["second", second],
      ] as const) {
        for (const reference of [tag, sha256(body)]) {
          const response = await fetch(`${registry.url}/v2/team/big/manifests/${reference}`, {
            headers: { Accept: OCI_INDEX },
          });
          assert.equal(response.status, 200);
          const got = Buffer.from(await response.arrayBuffer());
          assert.equal(got.length, body.length, `${tag} by ${reference}`);
          assert.ok(got.equals(body), `${tag} by ${reference}: bytes differ`);
        }
      }
    } finally {
      await registry.stop();
    }
  });

  it("a large manifest waiting for a turn is not cut off by http.bodytimeout", async () => {
    // Two large pushes hold both turns, trickling a byte a second (so they are never idle); a
    // third waits 5 s for a turn, unread, under a 2 s body timeout, then is answered.
    const registry = await startRegistry({ config: { http: { bodytimeout: "2s" } } });
    const holders = [0, 1].map((i) => {
      const socket = connect(Number(new URL(registry.url).port), "127.0.0.1");
      socket.on("error", () => {});
      socket.write(
        `PUT /v2/team/slow/manifests/h${i} HTTP/1.1\r\nHost: x\r\nContent-Type: ${OCI_MANIFEST}\r\n` +
          `Content-Length: ${MiB}\r\n\r\n{`,
      );
      const trickle = setInterval(() => socket.write(" "), 500);
      return { socket, trickle };
    });
    try {
      const client = new Client(registry.url);
      const image = imageManifest();
      for (const b of image.blobs) await client.pushBlob("team/slow", b);
      // Valid JSON padded past the small-manifest size, so it takes a turn.
      const body = Buffer.concat([
        image.bytes.subarray(0, -1),
        Buffer.alloc(300 * 1024, 0x20),
        Buffer.from("}"),
      ]);
      await new Promise((r) => setTimeout(r, 500));
      const waiting = put(`${registry.url}/v2/team/slow/manifests/waited`, body, OCI_MANIFEST);
      await new Promise((r) => setTimeout(r, 5000));
      for (const { socket, trickle } of holders) {
        clearInterval(trickle);
        socket.destroy();
      }
      const response = await waiting;
      assert.equal(response.status, 201, response.body);
    } finally {
      for (const { socket, trickle } of holders) {
        clearInterval(trickle);
        socket.destroy();
      }
      await registry.stop();
    }
  });
});
