/**
 * The coordination pieces against a real redis-server: the collection guard's fencing and
 * protections between two "replicas" (two connections), shared login limits across serve
 * processes, and the `redis` config keys as the reference writes them.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { RedisCollectionGuard } from "../../server/src/coordination/guard.js";
import { KEY_PREFIX, SharedState } from "../../server/src/coordination/shared-state.js";
import { ConfigSchema } from "../../server/src/config/schema.js";
import { loadConfig } from "../../server/src/config/load.js";
import { parseDigest } from "../../server/src/registry/digest.js";
import { RegistryError } from "../../server/src/registry/errors.js";
import type { Logger } from "../../server/src/log.js";
import { basicAuth, blob } from "../helpers/oci.js";
import { startRedis, type RedisServer } from "../helpers/redis.js";
import { startRegistry, tempDir, track, waitUntil } from "../helpers/registry.js";

/** The guard only logs through it. */
const quiet = { error() {}, warn() {}, info() {}, debug() {} } as unknown as Logger;

function isUnavailable(error: unknown): boolean {
  return error instanceof RegistryError && error.code === "UNAVAILABLE";
}

describe("the collection guard in Redis, between two replicas", () => {
  let redis: RedisServer;
  let one: SharedState;
  let two: SharedState;
  before(async () => {
    redis = await startRedis();
    const settings = ConfigSchema.shape.redis.parse({ addr: redis.addr })!;
    one = new SharedState(settings, quiet);
    two = new SharedState(settings, quiet);
    assert.ok(await one.connected(5000));
    assert.ok(await two.connected(5000));
  });
  after(async () => {
    await one.close();
    await two.close();
    await redis.stop();
  });

  it("protects what another replica writes or finds during a collection, and fences a collector that lost its turn", async () => {
    const collector = new RedisCollectionGuard(one, quiet);
    const writer = new RedisCollectionGuard(two, quiet);
    const written = parseDigest(blob().digest);
    const found = parseDigest(blob().digest);
    const orphan = parseDigest(blob().digest);

    // A write in flight on the other replica when the collection begins: begin waits for it.
    let writeDone = false;
    const inFlight = writer.write([written], async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      writeDone = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await collector.begin(0);
    assert.equal(writeDone, true, "the collection began before an unprotected write was over");
    await inFlight;

    // A second collection (another replica) is refused while this one runs.
    await assert.rejects(new RedisCollectionGuard(two, quiet).begin(0), isUnavailable);

    // Written and found through the other replica: protected; the orphan is not.
    await writer.write([written], async () => {});
    await writer.touch(found);
    assert.equal(await collector.isProtected(written), true);
    assert.equal(await collector.isProtected(found), true);
    let deleted: string[] = [];
    const remove = (d: string) => async () => void (deleted = [...deleted, d]);
    assert.equal(await collector.condemn(written, remove(written.value)), false);
    assert.equal(await collector.condemn(found, remove(found.value)), false);
    assert.equal(await collector.condemn(orphan, remove(orphan.value)), true);
    assert.deepEqual(deleted, [orphan.value]);

    // The collector's mark expires (it paused past its ttl) and another replica begins: the
    // paused one can no longer delete anything.
    await one.redis.del(`${KEY_PREFIX}gc:active`);
    const successor = new RedisCollectionGuard(two, quiet);
    await successor.begin(0);
    const late = parseDigest(blob().digest);
    await assert.rejects(collector.condemn(late, remove(late.value)), isUnavailable);
    assert.deepEqual(deleted, [orphan.value]);
    assert.equal(await successor.condemn(late, remove(late.value)), true);
    await successor.end();
    await collector.end();
    // Between collections nothing is protected and writes are not held up.
    await writer.write([written], async () => {});
    assert.equal(await one.redis.exists(`${KEY_PREFIX}gc:active`), 0);
  });

  it("makes the next collection wait for a write that began during the previous one", async () => {
    const first = new RedisCollectionGuard(one, quiet);
    const writer = new RedisCollectionGuard(two, quiet);
    const digest = parseDigest(blob().digest);
    await first.begin(0);
    let writeDone = false;
    const write = writer.write([digest], async () => {
      await new Promise((resolve) => setTimeout(resolve, 500));
      writeDone = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await first.end();
    // Its protection ended with the first collection: the second starts with none, so it must
    // not mark before the write is in storage.
    const second = new RedisCollectionGuard(one, quiet);
    await second.begin(0);
    assert.equal(writeDone, true, "the next collection began while a write of the previous one ran");
    await write;
    await second.end();
  });

  it("keeps a digest found during one collection protected in the next one's grace period", async () => {
    const first = new RedisCollectionGuard(one, quiet);
    const reader = new RedisCollectionGuard(two, quiet);
    const digest = parseDigest(blob().digest);
    await first.begin(0);
    // A client's HEAD finds the blob while the first collection runs; its manifest comes later.
    await reader.touch(digest);
    await first.end();
    const second = new RedisCollectionGuard(one, quiet);
    await second.begin(60_000);
    assert.equal(await second.isProtected(digest), true, "the blob a client just found is collectable");
    await second.end();
  });
});

describe("a write's hold on collections across replicas", () => {
  /** The guard's default lease on a write (guard.ts WRITE_LEASE_MS). */
  const LEASE_MS = 20_000;

  it("keeps a collection waiting while a live write lasts, and lets it start soon after the writer is SIGKILLed", async (t) => {
    const redis = await startRedis();
    const registry = await startRegistry({ config: { redis: { addr: redis.addr } } });
    const writer = spawn(
      process.execPath,
      [new URL("./replicas-writer.js", import.meta.url).pathname, redis.addr, blob().digest],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    track(writer);
    try {
      let out = "";
      writer.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
      await waitUntil(async () => out.includes("writing"), 30_000);
      let answered: number | undefined;
      const gc = fetch(`${registry.url}/v2/_oci/artifacts/delete?grace=0s`, { method: "POST" }).then(
        async (response) => {
          answered = Date.now();
          return response;
        },
      );
      // Longer than the lease: the writer, alive, renewed its hold, and the collection waits.
      await new Promise((resolve) => setTimeout(resolve, LEASE_MS + 5_000));
      assert.equal(answered, undefined, "a collection began while a live write was in flight");
      writer.kill("SIGKILL");
      const killed = Date.now();
      // Its hold ends with its lease (20 s), not the five minutes a stale write was given; the
      // bound leaves room for a loaded machine.
      const bound = 2 * LEASE_MS + 30_000;
      const response = await Promise.race([
        gc,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), bound)),
      ]);
      assert.ok(
        response !== undefined,
        `the collection had not started ${bound / 1000} s after the writer died`,
      );
      assert.equal(response.status, 200, await response.text());
      t.diagnostic(`collection answered ${((answered! - killed) / 1000).toFixed(1)} s after the SIGKILL`);
    } finally {
      writer.kill("SIGKILL");
      await registry.stop();
      await redis.stop();
    }
  });
});

describe("login limits shared by replicas", () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());

  it("counts failed logins from every replica against one limit", async () => {
    const dir = tempDir();
    const htpasswd = join(dir, "htpasswd");
    writeFileSync(htpasswd, "");
    const added = spawnSync("htpasswd", ["-bB", "-C", "5", htpasswd, "alice", "secret"], {
      encoding: "utf8",
    });
    assert.equal(added.status, 0, added.stderr);
    const root = tempDir();
    const config = {
      redis: { addr: redis.addr },
      auth: {
        htpasswd: { realm: "test", path: htpasswd },
        limits: { clientfailures: 3, userfailures: 3, window: "1m" },
      },
    };
    const replicas = await Promise.all([startRegistry({ root, config }), startRegistry({ root, config })]);
    try {
      const attempt = (i: number, password: string) =>
        fetch(`${replicas[i]!.url}/v2/`, { headers: basicAuth("alice", password) });
      assert.equal((await attempt(0, "secret")).status, 200);
      assert.equal((await attempt(0, "wrong1")).status, 401);
      assert.equal((await attempt(1, "wrong2")).status, 401);
      assert.equal((await attempt(0, "wrong3")).status, 401);
      // Each replica alone has seen fewer than 3 failures; together they reached the limit.
      const blocked = await attempt(1, "secret");
      assert.equal(blocked.status, 429);
      assert.ok(Number(blocked.headers.get("Retry-After")) > 0);
    } finally {
      await Promise.all(replicas.map((r) => r.stop()));
    }
  });
});

describe("the redis config keys", () => {
  const parse = (redis: unknown) => ConfigSchema.safeParse({ version: "0.1", redis });

  it("takes the reference's 3.x and 2.x forms, and REGISTRY_REDIS_* variables", () => {
    for (const redis of [
      {
        addrs: ["localhost:6379"],
        password: "asecret",
        db: 0,
        dialtimeout: "10ms",
        readtimeout: "10ms",
        writetimeout: "10ms",
        maxidleconns: 16,
        poolsize: 64,
        connmaxidletime: "300s",
        tls: { certificate: "/path/to/cert.crt", key: "/path/to/key.pem", rootcas: ["/path/to/ca.pem"] },
      },
      {
        addr: "localhost:6379",
        password: "asecret",
        db: 0,
        dialtimeout: "10ms",
        pool: { maxidle: 16, maxactive: 64, idletimeout: "300s" },
        tls: { enabled: false },
      },
    ])
      assert.equal(parse(redis).success, true, JSON.stringify(parse(redis).error?.issues));
    const dir = tempDir();
    const path = join(dir, "config.yml");
    writeFileSync(path, "version: 0.1\n");
    const config = loadConfig(path, { REGISTRY_REDIS_ADDR: "redis.example:6380", REGISTRY_REDIS_DB: "2" });
    assert.equal(config.redis?.addr, "redis.example:6380");
    assert.equal(config.redis?.db, 2);
    assert.equal(config.redis?.dialtimeout, "5s");
  });

  it("refuses what cannot work, naming the key", () => {
    const cases: [unknown, RegExp][] = [
      [{ addr: "localhost:6379", addrs: ["localhost:6379"] }, /addr/],
      [{}, /addr/],
      [{ addrs: ["a:1", "b:2"] }, /Cluster/],
      [{ addr: "localhost" }, /host:port/],
      [{ addr: "localhost:6379", tls: { certificate: "/c.pem" } }, /certificate and key/],
      [{ addr: "localhost:6379", password: "x", passwordfile: "/p" }, /password/],
      [{ addr: "localhost:6379", readtimeout: "soon" }, /duration/],
    ];
    for (const [redis, message] of cases) {
      const result = parse(redis);
      assert.equal(result.success, false, JSON.stringify(redis));
      const issue = result.error!.issues[0]!;
      assert.equal(issue.path[0], "redis", JSON.stringify(redis));
      assert.match(issue.message, message, JSON.stringify(redis));
    }
  });
});
