/** The one-process collection guard: what it protects, and for how long. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CollectionGuard } from "../../../server/src/registry/collection-guard.js";
import { parseDigest } from "../../../server/src/registry/digest.js";

const digest = (n: number) => parseDigest(`sha256:${n.toString(16).padStart(64, "0")}`);

describe("CollectionGuard", () => {
  it("protects what was found between collections within the grace period, not before it", async () => {
    const guard = new CollectionGuard();
    guard.touch(digest(1));
    await guard.begin(60_000);
    assert.equal(guard.isProtected(digest(1)), true);
    assert.equal(guard.isProtected(digest(2)), false);
    guard.end();
    await guard.begin(-1);
    assert.equal(guard.isProtected(digest(1)), false, "a grace period that ended protects nothing");
    guard.end();
  });

  it("keeps a digest found during one collection protected in the next one's grace period", async () => {
    const guard = new CollectionGuard();
    await guard.begin(0);
    // A client's HEAD finds the blob while the first collection runs; its manifest comes after
    // the next collection began (the GC race test saw MANIFEST_BLOB_UNKNOWN from this).
    guard.touch(digest(3));
    assert.equal(guard.isProtected(digest(3)), true);
    guard.end();
    await guard.begin(60_000);
    assert.equal(guard.isProtected(digest(3)), true);
    guard.end();
  });

  it("deletes only what nothing protected, and makes a write wait for a deletion in progress", async () => {
    const guard = new CollectionGuard();
    await guard.begin(0);
    guard.touch(digest(4));
    assert.equal(await guard.condemn(digest(4), async () => {}), false);
    let deleted = false;
    let release!: () => void;
    const condemned = guard.condemn(digest(5), () =>
      new Promise<void>((r) => (release = r)).then(() => void (deleted = true)),
    );
    const wrote = guard.write([digest(5)], async () => deleted);
    release();
    assert.equal(await condemned, true);
    assert.equal(await wrote, true, "the write ran after the deletion, and saw it");
    guard.end();
  });
});
