/**
 * The S3 driver against a real S3 store (Ceph RGW, see test/helpers/ceph.ts): the shared driver
 * suite unchanged, then what S3 makes hard — appends of any size across writers and restarts
 * onto multipart uploads, moves by server-side copy, the reference's key layout, cleaning up.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import { after, describe, it } from "node:test";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { validateConfig } from "../../../server/src/config/load.js";
import { S3Driver } from "../../../server/src/storage/s3.js";
import { purgeUploads } from "../../../server/src/registry/upload-purge.js";
import { testBucket, type TestBucket } from "../../helpers/ceph.js";
import { runDriverSuite } from "./driver-suite.js";

const MiB = 1024 * 1024;
const buckets: TestBucket[] = [];
const drivers: S3Driver[] = [];
after(async () => {
  for (const driver of drivers) driver.close();
  await Promise.all(buckets.map((b) => b.remove()));
});

async function bucket(label: string): Promise<TestBucket> {
  const b = await testBucket(label);
  buckets.push(b);
  return b;
}

/** A driver on `b` as `serve` opens it, from config keys (the smallest part size by default). */
async function driverOn(b: TestBucket, extra: Record<string, unknown> = {}): Promise<S3Driver> {
  const config = validateConfig({
    version: "0.1",
    storage: { s3: b.config({ chunksize: 5 * MiB, ...extra }) },
  });
  const driver = new S3Driver(config.storage.s3!);
  await driver.init();
  drivers.push(driver);
  return driver;
}

runDriverSuite("s3", async () => driverOn(await bucket("suite")));

async function append(driver: S3Driver, path: string, data: Buffer): Promise<void> {
  await pipeline(Readable.from(chunked(data)), await driver.writer(path, true));
}

/** Splits data as a socket would deliver it (64 KiB pieces). */
function* chunked(data: Buffer, size = 64 * 1024): Generator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

async function assertContent(driver: S3Driver, path: string, expected: Buffer): Promise<void> {
  assert.equal((await driver.stat(path)).size, expected.length, "size before reading");
  const read = await buffer(await driver.reader(path));
  assert.equal(read.length, expected.length, "bytes read");
  assert.equal(sha(read), sha(expected), "content");
}

describe("S3 driver: appends across part boundaries", () => {
  // S3 parts are at least 5 MiB except the last; each case is a sequence of append sizes.
  const cases: [string, number[]][] = [
    ["1 byte", [1]],
    ["5 MiB - 1", [5 * MiB - 1]],
    ["5 MiB", [5 * MiB]],
    ["5 MiB + 1", [5 * MiB + 1]],
    ["1 B, 5 MiB - 1, 5 MiB, 5 MiB + 1 in turn", [1, 5 * MiB - 1, 5 * MiB, 5 * MiB + 1]],
    ["5 MiB - 1 then 1 then 1", [5 * MiB - 1, 1, 1]],
    ["many small appends across a part boundary", Array.from({ length: 70 }, (_, i) => 77_777 + i)],
    ["an empty append among others", [3, 0, 6 * MiB, 0, 2]],
  ];
  for (const [name, sizes] of cases) {
    it(`${name}: every append reads back whole, the stat size is right after each`, async () => {
      const b = await bucket("append");
      const driver = await driverOn(b);
      const path = "/docker/registry/v2/repositories/r/_uploads/u/data";
      await driver.putContent(path, "");
      let expected = Buffer.alloc(0);
      for (const size of sizes) {
        const data = randomBytes(size);
        await append(driver, path, data);
        expected = Buffer.concat([expected, data]);
        assert.equal((await driver.stat(path)).size, expected.length, `after appending ${size}`);
      }
      await assertContent(driver, path, expected);
      // Read (and so completed): the next append goes on from the plain object.
      const more = randomBytes(1234);
      await append(driver, path, more);
      await assertContent(driver, path, Buffer.concat([expected, more]));
    });
  }

  it("a new driver (a restart) continues an append another one left between parts", async () => {
    const b = await bucket("restart");
    const path = "/docker/registry/v2/repositories/r/_uploads/u/data";
    const first = randomBytes(7 * MiB + 3);
    const second = randomBytes(2 * MiB);
    const third = randomBytes(4 * MiB);
    await append(await driverOn(b), path, first);
    await append(await driverOn(b), path, second);
    const last = await driverOn(b);
    assert.equal((await last.stat(path)).size, first.length + second.length);
    await append(last, path, third);
    await assertContent(await driverOn(b), path, Buffer.concat([first, second, third]));
  });

  it("an append that fails midway leaves the file as it was; the next one continues from there", async () => {
    const b = await bucket("failed");
    const driver = await driverOn(b);
    const path = "/up/data";
    const kept = randomBytes(6 * MiB);
    await append(driver, path, kept);
    const writer = await driver.writer(path, true);
    const failed = new Promise((resolve) => writer.once("error", resolve));
    // 11 MiB written (two parts sent), then the client goes away.
    for (const piece of chunked(randomBytes(11 * MiB))) {
      if (!writer.write(piece)) await new Promise((resolve) => writer.once("drain", resolve));
    }
    writer.destroy(new Error("client went away"));
    await failed;
    assert.equal((await driver.stat(path)).size, kept.length);
    const next = randomBytes(MiB);
    await append(driver, path, next);
    await assertContent(driver, path, Buffer.concat([kept, next]));
  });

  it("ranged reads of a file still being appended to see its content", async () => {
    const b = await bucket("range");
    const driver = await driverOn(b);
    const data = randomBytes(6 * MiB + 10);
    await append(driver, "/f", data);
    const start = 6 * MiB;
    const read = await buffer(await driver.reader("/f", start, start + 9));
    assert.deepEqual(read, data.subarray(start, start + 10));
    assert.deepEqual(await buffer(await driver.reader("/f", data.length)), Buffer.alloc(0));
  });

  it("a replacing writer streams a multipart object; appending to it copies inside the store", async () => {
    const b = await bucket("replace");
    const driver = await driverOn(b);
    const data = randomBytes(11 * MiB);
    await pipeline(Readable.from(chunked(data)), await driver.writer("/big", false));
    await assertContent(driver, "/big", data);
    const more = randomBytes(100);
    await append(driver, "/big", more);
    await assertContent(driver, "/big", Buffer.concat([data, more]));
    assert.deepEqual(await b.uploads(), [], "no multipart upload left open");
  });
});

describe("S3 driver: layout, moves and cleanup", () => {
  it("keys are <rootdirectory>/<path>, as the reference's s3 driver writes them", async () => {
    const b = await bucket("layout");
    const driver = await driverOn(b, { rootdirectory: "/some/prefix/" });
    await driver.putContent("/docker/registry/v2/repositories/a/_layers/sha256/ab/link", "sha256:ab");
    assert.deepEqual(await b.keys(), [
      "some/prefix/docker/registry/v2/repositories/a/_layers/sha256/ab/link",
    ]);
    // And what another writer put there is read.
    await b.client.send(
      new PutObjectCommand({ Bucket: b.name, Key: "some/prefix/docker/registry/v2/x", Body: "theirs" }),
    );
    assert.equal((await driver.getContent("/docker/registry/v2/x")).toString(), "theirs");
    assert.deepEqual((await driver.list("/docker/registry/v2")).sort(), ["repositories", "x"]);
  });

  it("move of a large file is a multipart copy; of a pending append, its completion first", async () => {
    const b = await bucket("move");
    const driver = await driverOn(b, {
      multipartcopythresholdsize: 5 * MiB,
      multipartcopychunksize: 5 * MiB,
      multipartcopymaxconcurrency: 2,
    });
    const data = randomBytes(12 * MiB + 5);
    await append(driver, "/up/data", data.subarray(0, 7 * MiB));
    await append(driver, "/up/data", data.subarray(7 * MiB));
    await driver.move("/up/data", "/docker/registry/v2/blobs/sha256/aa/aabb/data");
    await assertContent(driver, "/docker/registry/v2/blobs/sha256/aa/aabb/data", data);
    await assert.rejects(driver.stat("/up/data"), { name: "PathNotFoundError" });
    assert.deepEqual(await b.uploads(), []);
  });

  it("deleting an upload's directory aborts its open multipart upload", async () => {
    const b = await bucket("delete");
    const driver = await driverOn(b);
    await append(driver, "/r/_uploads/u/data", randomBytes(6 * MiB));
    assert.equal((await b.uploads()).length, 1);
    await driver.delete("/r/_uploads/u");
    assert.deepEqual(await b.uploads(), []);
    assert.deepEqual(await b.keys(), []);
  });

  it("upload purging removes old sessions and the multipart uploads no session holds", async () => {
    const b = await bucket("purge");
    const driver = await driverOn(b);
    const repo = "/docker/registry/v2/repositories/app/_uploads";
    await driver.putContent(`${repo}/old/startedat`, new Date(Date.now() - 3600_000).toISOString());
    await append(driver, `${repo}/old/data`, randomBytes(6 * MiB));
    // A push that crashed after starting a multipart upload no file refers to.
    const orphan = await driver.createUpload("orphan/data");
    assert.ok(orphan);
    assert.equal((await b.uploads()).length, 2);
    const dry = await purgeUploads(driver, new Date(Date.now() + 60_000), true);
    assert.deepEqual(dry.purged, ["app/old"]);
    assert.equal((await b.uploads()).length, 2, "a dry run removes nothing");
    const { purged, abandoned } = await purgeUploads(driver, new Date(Date.now() + 60_000));
    assert.deepEqual(purged, ["app/old"]);
    assert.deepEqual(abandoned, ["multipart upload orphan/data"]);
    assert.deepEqual(await b.uploads(), []);
    assert.deepEqual(await b.keys(), []);
  });

  it("stat of the root is the bucket; a missing bucket fails start with one line naming the key", async () => {
    const b = await bucket("root");
    const driver = await driverOn(b);
    assert.equal((await driver.stat("/")).isDir, true);
    const missing = validateConfig({
      version: "0.1",
      storage: { s3: { ...b.config(), bucket: `${b.name}-missing` } },
    });
    await assert.rejects(
      new S3Driver(missing.storage.s3!).init(),
      /^ConfigError: storage\.s3\.bucket: .* does not exist$/,
    );
    const badKey = validateConfig({
      version: "0.1",
      storage: { s3: { ...b.config(), secretkey: "wrong" } },
    });
    await assert.rejects(new S3Driver(badKey.storage.s3!).init(), /^ConfigError: storage\.s3\.accesskey: /);
  });
});
