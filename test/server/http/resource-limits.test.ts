/**
 * Clients that hold a server's resources without using them: idle connections past the open-file
 * limit (http.maxconnections), request bodies that stall half-sent (http.bodytimeout and the
 * shared http.maxbufferedbytes budget), and requests Node's parser refuses (CONNECT, bare CRLFs).
 * Each attack runs against a registry process the test starts, measured from /proc.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { makeCertificates } from "../../helpers/certs.js";
import { chartArchive } from "../../helpers/charts.js";
import { blob, imageManifest, OCI_MANIFEST } from "../../helpers/oci.js";
import { rssBytes, startRegistry, waitUntil, type RegistryProcess } from "../../helpers/registry.js";

const MiB = 1024 * 1024;

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** Opens a TCP connection and resolves once it is established. */
function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Everything a raw request gets back until the server closes (or `waitMs` passes). */
function rawExchange(port: number, payload: string, halfClose: boolean, waitMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.on("data", (data: Buffer) => (answer += data.toString("latin1")));
    socket.on("error", () => {});
    socket.on("close", () => resolve(answer));
    socket.write(payload, () => {
      if (halfClose) socket.end();
    });
    setTimeout(() => socket.destroy(), waitMs).unref();
  });
}

/** The status line's code, or "none" when the socket closed without an answer. */
const statusOf = (answer: string) => /^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1] ?? "none";

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await work();
  return { value, ms: Date.now() - started };
}

async function healthWithin(registry: RegistryProcess, ms: number): Promise<void> {
  const { value, ms: took } = await timed(() =>
    fetch(`${registry.debugUrl}/debug/health`, { signal: AbortSignal.timeout(ms) }),
  );
  assert.equal(value.status, 200);
  assert.ok(took < ms, `health took ${took} ms`);
}

describe("http.maxconnections: idle connections cannot take every descriptor", () => {
  let registry: RegistryProcess;
  before(async () => {
    registry = await startRegistry({
      openFiles: 256,
      config: { log: { level: "info" }, http: { maxconnections: 20 } },
    });
  });
  after(() => registry?.stop());

  it("closes the idlest connection for a new one; health and new clients are answered at once", async () => {
    const port = portOf(registry.url);
    // More idle connections than the server has descriptors.
    const idle: Socket[] = [];
    const closed = new Set<Socket>();
    for (let i = 0; i < 300; i++) {
      const socket = await openSocket(port).catch(() => undefined);
      if (socket === undefined) continue;
      socket.on("error", () => {});
      socket.on("close", () => closed.add(socket));
      idle.push(socket);
    }
    try {
      await healthWithin(registry, 1000);
      const { value: response, ms } = await timed(() =>
        fetch(`${registry.url}/v2/`, { signal: AbortSignal.timeout(1000) }),
      );
      assert.equal(response.status, 200);
      assert.ok(ms < 1000, `a new request took ${ms} ms`);
      const [pid] = registry.pids();
      const descriptors = readdirSync(`/proc/${pid}/fd`).length;
      assert.ok(descriptors < 20 + 40, `the server holds ${descriptors} descriptors`);
      // The oldest idle connections were closed for the new ones (the client sees it a moment later).
      await waitUntil(async () => idle.length - closed.size <= 20, 2000).catch(() => {});
      assert.ok(closed.has(idle[0]!), "the idlest connection was closed");
      assert.ok(idle.length - closed.size <= 20, `${idle.length - closed.size} connections left open`);
      assert.match(registry.log(), /"maxconnections":20/);
    } finally {
      for (const socket of idle) socket.destroy();
    }
  });
});

describe("requests Node's parser refuses get an HTTP answer", () => {
  let registry: RegistryProcess;
  let tlsRegistry: RegistryProcess;
  let ca: string;
  before(async () => {
    registry = await startRegistry();
    const certs = makeCertificates("bad-requests");
    ca = certs.caCert;
    tlsRegistry = await startRegistry({
      config: { http: { tls: { certificate: certs.cert, key: certs.key } } },
    });
  });
  after(async () => {
    await registry?.stop();
    await tlsRegistry?.stop();
  });

  const cases: [string, string, boolean, string][] = [
    ["CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", false, "405"],
    ["bare CRLFs, then the client's end", "\r\n\r\n\r\n\r\n", true, "400"],
    ["a garbage request line", "\u0001\u0002 / HTTP/1.1\r\n\r\n", false, "400"],
  ];

  it("on the public and the debug listener", async () => {
    for (const port of [portOf(registry.url), portOf(registry.debugUrl)]) {
      for (const [name, payload, halfClose, status] of cases) {
        const answer = await rawExchange(port, payload, halfClose);
        assert.equal(statusOf(answer), status, `${name} on port ${port}: ${JSON.stringify(answer)}`);
      }
    }
  });

  it("over TLS", async () => {
    const { readFileSync } = await import("node:fs");
    const port = portOf(tlsRegistry.url);
    for (const [name, payload, halfClose, status] of cases) {
      const answer = await new Promise<string>((resolve) => {
        const socket = tlsConnect({ port, host: "127.0.0.1", ca: readFileSync(ca), servername: "localhost" });
        let text = "";
        socket.on("data", (data: Buffer) => (text += data.toString("latin1")));
        socket.on("error", () => {});
        socket.on("close", () => resolve(text));
        socket.once("secureConnect", () =>
          socket.write(payload, () => {
            if (halfClose) socket.end();
          }),
        );
        setTimeout(() => socket.destroy(), 3000).unref();
      });
      assert.equal(statusOf(answer), status, `${name} over TLS: ${JSON.stringify(answer)}`);
    }
  });
});

describe("stalled request bodies (http.bodytimeout, http.maxbufferedbytes)", () => {
  let registry: RegistryProcess;
  let pid: number;
  before(async () => {
    registry = await startRegistry({
      config: { http: { bodytimeout: "6s", maxbufferedbytes: 16 * MiB } },
    });
    pid = registry.pids()[0]!;
  });
  after(() => registry?.stop());

  /** Sends all of a request but its last byte, and keeps the connection open. */
  async function stall(head: string, body: Buffer): Promise<{ socket: Socket; closed: Promise<string> }> {
    const socket = await openSocket(portOf(registry.url));
    socket.on("error", () => {});
    let answer = "";
    socket.on("data", (data: Buffer) => (answer += data.toString("latin1")));
    const closed = new Promise<string>((resolve) => socket.on("close", () => resolve(answer)));
    socket.write(head);
    socket.write(body.subarray(0, body.length - 1));
    return { socket, closed };
  }

  /** How many of `connections` the server has not closed within `ms`. */
  async function stillOpenAfter(connections: { closed: Promise<string> }[], ms: number): Promise<number> {
    let open = connections.length;
    const all = Promise.all(connections.map((c) => c.closed.then(() => open--)));
    await Promise.race([all, new Promise((r) => setTimeout(r, ms).unref())]);
    return open;
  }

  async function peakRss(during: () => Promise<void>): Promise<{ base: number; peak: number }> {
    const base = rssBytes(pid);
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 25);
    try {
      await during();
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssBytes(pid));
    return { base, peak };
  }

  it("200 stalled 1 MiB `POST ?digest=` bodies: memory stays bounded, sockets are cut, memory returns", async () => {
    const stalled: { socket: Socket; closed: Promise<string> }[] = [];
    const { base, peak } = await peakRss(async () => {
      for (let i = 0; i < 200; i++) {
        const body = randomBytes(MiB);
        const { digest } = blob(body);
        const head =
          `POST /v2/stall/blobs/uploads/?digest=${digest} HTTP/1.1\r\nHost: x\r\n` +
          `Content-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`;
        stalled.push(await stall(head, body));
      }
      await new Promise((r) => setTimeout(r, 1000));
    });
    // Unbounded, every stalled body is held whole (200 MiB and more); within the budget, those
    // past it stream to scratch files and cost only their connection's buffers.
    assert.ok(peak - base < 100 * MiB, `RSS grew by ${Math.round((peak - base) / MiB)} MiB`);
    // A body that brings nothing for http.bodytimeout loses its connection.
    assert.equal(await stillOpenAfter(stalled, 15_000), 0, "stalled connections still open");
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(
      rssBytes(pid) - base < 32 * MiB,
      `RSS still ${Math.round((rssBytes(pid) - base) / MiB)} MiB up`,
    );
    // Nothing of the budget is still held: a push goes through.
    const content = blob(randomBytes(512 * 1024));
    const response = await fetch(`${registry.url}/v2/stall/blobs/uploads/?digest=${content.digest}`, {
      method: "POST",
      body: content.data,
      headers: { "Content-Type": "application/octet-stream" },
    });
    assert.equal(response.status, 201);
  });

  it("stalled chart uploads: bounded by the budget, a chart past it is answered 503, all freed once cut off", async () => {
    const chart = chartArchive("stall", "1.0.0");
    // Made beforehand: the stalled uploads must all be held at once, within http.bodytimeout.
    const bodies = Array.from({ length: 16 }, (_, i) => chartArchive(`stall${i}`, "1.0.0", 6 * MiB));
    const late = chartArchive("late", "1.0.0", 4 * MiB);
    const stalled: { socket: Socket; closed: Promise<string> }[] = [];
    const { base, peak } = await peakRss(async () => {
      // Charts of 6 MiB, each declared a byte longer than sent.
      for (let i = 0; i < 16; i++) {
        const body = bodies[i]!;
        const head = `POST /chartrepo/api/charts HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`;
        stalled.push(await stall(head, body));
      }
      await new Promise((r) => setTimeout(r, 300));
      const refused = await fetch(`${registry.url}/chartrepo/api/charts`, {
        method: "POST",
        body: late,
      });
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get("retry-after"), "1");
      assert.match(
        ((await refused.json()) as { error: string }).error,
        /receiving too many request bodies at once/,
      );
    });
    assert.ok(peak - base < 64 * MiB, `RSS grew by ${Math.round((peak - base) / MiB)} MiB`);
    // http.bodytimeout cuts them off; their memory and their share of the budget come back.
    assert.equal(await stillOpenAfter(stalled, 15_000), 0, "stalled connections still open");
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(
      rssBytes(pid) - base < 32 * MiB,
      `RSS still ${Math.round((rssBytes(pid) - base) / MiB)} MiB up`,
    );
    const response = await fetch(`${registry.url}/chartrepo/api/charts`, { method: "POST", body: chart });
    assert.equal(response.status, 201, await response.text());
  });

  it("a manifest past the budget is answered 503 UNAVAILABLE with Retry-After", async () => {
    // Hold 15 MiB of the 16 MiB budget with stalled 1 MiB blob bodies (each takes its length up
    // front), then push one more. Stalled large manifests would not do: past two being read, they
    // wait for a turn unread, holding no budget (index-children.test.ts).
    const held: { socket: Socket; closed: Promise<string> }[] = [];
    for (let i = 0; i < 15; i++) {
      const body = randomBytes(MiB);
      held.push(
        await stall(
          `POST /v2/budget/blobs/uploads/?digest=${blob(body).digest} HTTP/1.1\r\nHost: x\r\n` +
            `Content-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`,
          body,
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 300));
    const manifest = imageManifest();
    const big = Buffer.concat([manifest.bytes, Buffer.alloc(3 * MiB, 0x20)]);
    const response = await fetch(`${registry.url}/v2/budget/manifests/latest`, {
      method: "PUT",
      body: big,
      headers: { "Content-Type": OCI_MANIFEST },
    });
    assert.equal(response.status, 503);
    assert.equal(response.headers.get("retry-after"), "1");
    assert.equal(((await response.json()) as { errors: { code: string }[] }).errors[0]!.code, "UNAVAILABLE");
    for (const { socket } of held) socket.destroy();
  });
});
