/**
 * The contract every StorageDriver must meet. A new driver (S3) runs this suite unchanged:
 * `runDriverSuite("s3", () => new S3Driver(...))`.
 */
import assert from "node:assert/strict";
import { text } from "node:stream/consumers";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, it } from "node:test";
import {
  PathNotFoundError,
  SourceSizeError,
  type StorageDriver,
} from "../../../server/src/storage/driver.js";

export function runDriverSuite(name: string, create: () => Promise<StorageDriver>): void {
  describe(`StorageDriver contract: ${name}`, () => {
    it("putContent then getContent round-trips; a second put replaces", async () => {
      const driver = await create();
      await driver.putContent("/a/b/c", "first");
      assert.equal((await driver.getContent("/a/b/c")).toString(), "first");
      await driver.putContent("/a/b/c", "second, longer");
      assert.equal((await driver.getContent("/a/b/c")).toString(), "second, longer");
    });

    it("missing paths throw PathNotFoundError from getContent, stat, list and reader", async () => {
      const driver = await create();
      await assert.rejects(driver.getContent("/missing"), PathNotFoundError);
      await assert.rejects(driver.stat("/missing"), PathNotFoundError);
      await assert.rejects(driver.list("/missing"), PathNotFoundError);
      await assert.rejects(driver.reader("/missing"), PathNotFoundError);
    });

    it("stat gives size and a version that changes when content is replaced", async () => {
      const driver = await create();
      await driver.putContent("/v/file", "12345");
      const first = await driver.stat("/v/file");
      assert.equal(first.size, 5);
      assert.equal(first.isDir, false);
      await driver.putContent("/v/file", "12345");
      const second = await driver.stat("/v/file");
      assert.notEqual(first.version, second.version);
      assert.equal((await driver.stat("/v")).isDir, true);
    });

    it("list names direct children", async () => {
      const driver = await create();
      await driver.putContent("/l/x/1", "");
      await driver.putContent("/l/y", "");
      assert.deepEqual((await driver.list("/l")).sort(), ["x", "y"]);
    });

    it("writer appends across calls; reader streams from an offset to an inclusive end", async () => {
      const driver = await create();
      await pipeline(Readable.from([Buffer.from("hello ")]), await driver.writer("/w/data", true));
      await pipeline(Readable.from([Buffer.from("world")]), await driver.writer("/w/data", true));
      assert.equal(await text(await driver.reader("/w/data")), "hello world");
      assert.equal(await text(await driver.reader("/w/data", 6)), "world");
      assert.equal(await text(await driver.reader("/w/data", 0, 4)), "hello");
      await pipeline(Readable.from([Buffer.from("new")]), await driver.writer("/w/data", false));
      assert.equal(await text(await driver.reader("/w/data")), "new");
    });

    it("putContents moves a `source` file in, in order with the files around it", async () => {
      const driver = await create();
      await pipeline(Readable.from([Buffer.from("uploaded")]), await driver.writer("/up/1/data", false));
      await driver.putContents([
        { path: "/pc/blob/data", source: "/up/1/data" },
        { path: "/pc/layers/link", content: "linked" },
      ]);
      assert.equal((await driver.getContent("/pc/blob/data")).toString(), "uploaded");
      assert.equal((await driver.getContent("/pc/layers/link")).toString(), "linked");
      await assert.rejects(driver.stat("/up/1/data"), PathNotFoundError);
      // Over a file already there (a blob uploaded again): replaced.
      await pipeline(Readable.from([Buffer.from("again")]), await driver.writer("/up/2/data", false));
      await driver.putContents([{ path: "/pc/blob/data", source: "/up/2/data" }]);
      assert.equal((await driver.getContent("/pc/blob/data")).toString(), "again");
      // A missing source stops the batch there: nothing after it is written.
      await assert.rejects(
        driver.putContents([
          { path: "/pc/other/data", source: "/up/missing/data" },
          { path: "/pc/other/link", content: "x" },
        ]),
        PathNotFoundError,
      );
      await assert.rejects(driver.stat("/pc/other/link"), PathNotFoundError);
      // A source of another size than said: nothing moved, nothing after it written.
      await pipeline(Readable.from([Buffer.from("12345")]), await driver.writer("/up/3/data", false));
      await assert.rejects(
        driver.putContents([
          { path: "/pc/sized/data", source: "/up/3/data", size: 4 },
          { path: "/pc/sized/link", content: "x" },
        ]),
        SourceSizeError,
      );
      assert.equal((await driver.getContent("/up/3/data")).toString(), "12345");
      await assert.rejects(driver.stat("/pc/sized/data"), PathNotFoundError);
      await assert.rejects(driver.stat("/pc/sized/link"), PathNotFoundError);
      // The right size, and the upload's directory removed in the same batch, after the link.
      await driver.putContent("/up/3/startedat", "now");
      await driver.putContents([
        { path: "/pc/sized/data", source: "/up/3/data", size: 5 },
        { path: "/pc/sized/link", content: "linked" },
        { path: "/up/3", remove: true },
        { path: "/up/never-there", remove: true },
      ]);
      assert.equal((await driver.getContent("/pc/sized/data")).toString(), "12345");
      assert.equal((await driver.getContent("/pc/sized/link")).toString(), "linked");
      await assert.rejects(driver.stat("/up/3/startedat"), PathNotFoundError);
    });

    it("move renames atomically, replacing the destination", async () => {
      const driver = await create();
      await driver.putContent("/m/src", "payload");
      await driver.putContent("/m/dst/data", "old");
      await driver.move("/m/src", "/m/dst/data");
      assert.equal((await driver.getContent("/m/dst/data")).toString(), "payload");
      await assert.rejects(driver.getContent("/m/src"), PathNotFoundError);
      await driver.putContent("/m/src2", "x");
      await driver.move("/m/src2", "/m/new/dir/data");
      assert.equal((await driver.getContent("/m/new/dir/data")).toString(), "x");
    });

    it("delete removes files and trees; a missing path is fine", async () => {
      const driver = await create();
      await driver.putContent("/d/tree/1", "1");
      await driver.putContent("/d/tree/sub/2", "2");
      await driver.delete("/d/tree");
      await assert.rejects(driver.stat("/d/tree"), PathNotFoundError);
      await driver.delete("/d/never-existed");
    });

    it("scratch paths are fresh, outside the layout, and can be written and moved into it", async () => {
      const driver = await create();
      const scratch = driver.scratchPath();
      assert.notEqual(scratch, driver.scratchPath());
      assert.ok(!scratch.startsWith("/docker/"));
      await pipeline(Readable.from([Buffer.from("scratch")]), await driver.writer(scratch, false));
      await driver.move(scratch, "/docker/registry/v2/blobs/x/data");
      assert.equal((await driver.getContent("/docker/registry/v2/blobs/x/data")).toString(), "scratch");
      await driver.delete(scratch);
    });

    it("putContent with durable: false still replaces atomically", async () => {
      const driver = await create();
      await driver.putContent("/nd/file", "one", { durable: false });
      await driver.putContent("/nd/file", "two", { durable: false });
      assert.equal((await driver.getContent("/nd/file")).toString(), "two");
    });

    it("putContent creates new directories for concurrent writers without losing any file", async () => {
      const driver = await create();
      // Same new directory from many writers (one wins the directory, the others join it), and
      // a new directory each.
      await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          Promise.all([
            driver.putContent(`/c/shared/${i}`, `shared ${i}`),
            driver.putContent(`/c/own${i}/sub/link`, `own ${i}`),
          ]),
        ),
      );
      assert.equal((await driver.list("/c/shared")).length, 24);
      for (let i = 0; i < 24; i++) {
        assert.equal((await driver.getContent(`/c/shared/${i}`)).toString(), `shared ${i}`);
        assert.equal((await driver.getContent(`/c/own${i}/sub/link`)).toString(), `own ${i}`);
      }
    });

    it("putContent into a directory deleted since the last write recreates it", async () => {
      const driver = await create();
      await driver.putContent("/gone/dir/one", "1");
      await driver.delete("/gone/dir");
      await driver.putContent("/gone/dir/two", "2");
      assert.deepEqual(await driver.list("/gone/dir"), ["two"]);
      await driver.delete("/gone");
      await driver.putContent("/gone/dir/three", "3");
      assert.equal((await driver.getContent("/gone/dir/three")).toString(), "3");
    });

    it("putContent that cannot be done fails and leaves what was stored", async () => {
      const driver = await create();
      await driver.putContent("/x/file", "kept");
      await assert.rejects(driver.putContent("/x/file/child", "nope"));
      await assert.rejects(driver.putContent("/x/file/new/child", "nope"));
      assert.equal((await driver.getContent("/x/file")).toString(), "kept");
      await driver.putContent("/x/dir/a", "a");
      // A directory where the file should go: the rename fails, the directory stays as it was.
      await assert.rejects(driver.putContent("/x/dir", "nope"));
      assert.deepEqual(await driver.list("/x/dir"), ["a"]);
    });

    it("putContents writes files in order, each in place before the next; a failure stops there", async () => {
      const driver = await create();
      await driver.putContents([
        { path: "/b/blobs/aa/data", content: "blob" },
        { path: "/b/repo/_layers/aa/link", content: "sha256:aa" },
        { path: "/b/repo/tags/t/current/link", content: "sha256:aa" },
        { path: "/b/repo/tags/t/index/aa/link", content: "sha256:aa", durable: false },
      ]);
      assert.equal((await driver.getContent("/b/blobs/aa/data")).toString(), "blob");
      assert.deepEqual((await driver.list("/b/repo/tags/t")).sort(), ["current", "index"]);
      assert.equal((await driver.getContent("/b/repo/tags/t/index/aa/link")).toString(), "sha256:aa");
      await assert.rejects(
        driver.putContents([
          { path: "/b/first", content: "1" },
          { path: "/b/blobs/aa/data/child", content: "cannot: data is a file" },
          { path: "/b/third", content: "3" },
        ]),
      );
      assert.equal((await driver.getContent("/b/first")).toString(), "1");
      await assert.rejects(driver.stat("/b/third"), PathNotFoundError);
      assert.equal((await driver.getContent("/b/blobs/aa/data")).toString(), "blob");
    });

    it("rejects paths that could escape the root", async () => {
      const driver = await create();
      for (const path of ["/../etc/passwd", "relative", "/a/../../b", "/a\0b"]) {
        await assert.rejects(driver.getContent(path), /invalid storage path/, path);
      }
    });
  });
}
