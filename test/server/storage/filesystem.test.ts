import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { PathNotFoundError } from "../../../server/src/storage/driver.js";
import { FilesystemDriver } from "../../../server/src/storage/filesystem.js";
import { tempDir } from "../../helpers/registry.js";
import { runDriverSuite } from "./driver-suite.js";

runDriverSuite("filesystem", async () => {
  const driver = new FilesystemDriver(tempDir());
  await driver.init();
  return driver;
});

// Without the native addon (no compiler, or NEAM_REGISTRY_NATIVE=0) small files go through Node's fs.
runDriverSuite("filesystem without the native addon", async () => {
  const driver = new FilesystemDriver(tempDir(), { nativeWrites: false });
  await driver.init();
  return driver;
});

it("filesystem: the native addon writes small files wherever it is built (CI builds it)", () => {
  const driver = new FilesystemDriver(tempDir());
  // Deterministic whether CI is set or not: native writes exactly when the addon was built.
  const built = existsSync(
    new URL("../../../../server/native/build/Release/neam_native.node", import.meta.url),
  );
  if (process.env.CI) assert.ok(built, "CI builds the native addon");
  assert.equal(driver.nativeWrites, built && process.env.NEAM_REGISTRY_NATIVE !== "0");
  assert.equal(new FilesystemDriver(tempDir(), { nativeWrites: false }).nativeWrites, false);
});

for (const nativeWrites of [true, false]) {
  it(`filesystem${nativeWrites ? "" : " without the addon"}: failed and contended writes leave no temporary behind`, async () => {
    const root = tempDir();
    const driver = new FilesystemDriver(root, { nativeWrites });
    await driver.init();
    await Promise.all(Array.from({ length: 16 }, (_, i) => driver.putContent(`/t/same/${i}`, String(i))));
    await driver.putContent("/t/file", "x");
    await assert.rejects(driver.putContent("/t/file/child", "y"));
    await assert.rejects(driver.putContent("/t/file/new/child", "y"));
    await driver.putContent("/t/dir/a", "a");
    await assert.rejects(driver.putContent("/t/dir", "y"));
    for (const bucket of readdirSync(join(root, ".neam-tmp"))) {
      assert.deepEqual(readdirSync(join(root, ".neam-tmp", bucket)), [], bucket);
    }
  });

  it(`filesystem${nativeWrites ? "" : " without the addon"}: appendContent appends only at the expected size, never creates`, async () => {
    const root = tempDir();
    const driver = new FilesystemDriver(root, { nativeWrites });
    await driver.init();
    await driver.putContent("/u/data", "abc");
    assert.equal(await driver.appendContent("/u/data", "def", 3), 3);
    assert.equal((await driver.getContent("/u/data")).toString(), "abcdef");
    // Another size than expected: told the size, nothing written.
    assert.equal(await driver.appendContent("/u/data", "zz", 3), 6);
    assert.equal((await driver.getContent("/u/data")).toString(), "abcdef");
    assert.equal(await driver.appendContent("/u/data", Buffer.alloc(0), 6), 6);
    await assert.rejects(driver.appendContent("/u/gone", "x", 0), PathNotFoundError);
    assert.equal(existsSync(join(root, "u", "gone")), false);
  });

  it(`filesystem${nativeWrites ? "" : " without the addon"}: a batch that fails after a moved-in file publishes what came before, gives the source back, leaves no temporary`, async () => {
    const root = tempDir();
    const driver = new FilesystemDriver(root, { nativeWrites });
    await driver.init();
    await driver.putContent("/s/file", "a file, not a directory");
    await driver.putContent("/up/data", "uploaded");
    // The move's destination lies under a file: its publication fails.
    await assert.rejects(
      driver.putContents([
        { path: "/s/first", content: "1" },
        { path: "/s/file/blob/data", source: "/up/data" },
        { path: "/s/after", content: "2" },
      ]),
    );
    assert.equal((await driver.getContent("/s/first")).toString(), "1");
    assert.equal((await driver.getContent("/up/data")).toString(), "uploaded");
    await assert.rejects(driver.stat("/s/after"), PathNotFoundError);
    // A missing source: nothing of that entry or after it.
    await assert.rejects(
      driver.putContents([
        { path: "/m/blob/data", source: "/up/missing" },
        { path: "/m/link", content: "x" },
      ]),
    );
    assert.equal(existsSync(join(root, "m")), false);
    for (const bucket of readdirSync(join(root, ".neam-tmp"))) {
      assert.deepEqual(readdirSync(join(root, ".neam-tmp", bucket)), [], bucket);
    }
  });

  it(`filesystem${nativeWrites ? "" : " without the addon"}: delete removes the whole tree, leaving no temporary behind`, async () => {
    const root = tempDir();
    const driver = new FilesystemDriver(root, { nativeWrites });
    await driver.init();
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => driver.putContent(`/tree/${i % 4}/deep/${i}/file`, String(i))),
    );
    await driver.putContent("/tree/top", "t");
    await driver.putContent("/kept/file", "k");
    await driver.delete("/tree");
    await driver.delete("/kept/file");
    await driver.delete("/never/there");
    assert.deepEqual(readdirSync(root).sort(), [".neam-tmp", "kept"]);
    assert.deepEqual(readdirSync(join(root, "kept")), []);
    for (const bucket of readdirSync(join(root, ".neam-tmp"))) {
      assert.deepEqual(readdirSync(join(root, ".neam-tmp", bucket)), [], bucket);
    }
  });

  it(`filesystem${nativeWrites ? "" : " without the addon"}: a push into a fresh root guesses every new directory right`, async () => {
    const root = tempDir();
    const driver = new FilesystemDriver(root, { nativeWrites });
    await driver.init();
    const repo = "/docker/registry/v2/repositories/app";
    const blobs = "/docker/registry/v2/blobs/sha256";
    // A blob and its link, then a manifest, its revision, its tag and the tag's history: every
    // directory new, several created by an earlier file of the same batch.
    for (const [i, hex] of ["aa11", "aa22", "bb33"].entries()) {
      await driver.putContents([
        { path: `${blobs}/${hex.slice(0, 2)}/${hex}/data`, content: `blob ${i}` },
        { path: `${repo}/_layers/sha256/${hex}/link`, content: `sha256:${hex}` },
      ]);
      await driver.putContents([
        { path: `${blobs}/cc/cc${i}/data`, content: `manifest ${i}` },
        { path: `${repo}/_manifests/revisions/sha256/cc${i}/link`, content: `sha256:cc${i}` },
        { path: `${repo}/_manifests/tags/v${i}/current/link`, content: `sha256:cc${i}` },
        {
          path: `${repo}/_manifests/tags/v${i}/index/sha256/cc${i}/link`,
          content: `sha256:cc${i}`,
          durable: false,
        },
      ]);
    }
    // Knowing only the root at first, the driver guessed every directory right.
    assert.equal(driver.carefulWrites, 0);
    assert.deepEqual(readdirSync(join(root, repo, "_manifests/tags")).sort(), ["v0", "v1", "v2"]);
    assert.deepEqual(readdirSync(join(root, repo, "_manifests/tags/v1")).sort(), ["current", "index"]);
    assert.equal(
      (await driver.getContent(`${repo}/_manifests/tags/v2/current/link`)).toString(),
      "sha256:cc2",
    );
    assert.equal((await driver.getContent(`${blobs}/aa/aa22/data`)).toString(), "blob 1");
  });

  it(`filesystem${nativeWrites ? "" : " without the addon"}: after a restart, new blobs go straight into the prefix directories already there`, async () => {
    const root = tempDir();
    const blobs = "/docker/registry/v2/blobs/sha256";
    const before = new FilesystemDriver(root, { nativeWrites });
    await before.init();
    await before.putContent(`${blobs}/aa/aa01/data`, "a");
    await before.putContent(`${blobs}/bb/bb01/data`, "b");
    const after = new FilesystemDriver(root, { nativeWrites });
    await after.init();
    const scratch = after.scratchPath();
    await after.putContent(scratch, "moved");
    await after.move(scratch, `${blobs}/aa/aa02/data`);
    await after.putContent(`${blobs}/bb/bb02/data`, "written");
    assert.equal(after.carefulWrites, 0);
    assert.equal((await after.getContent(`${blobs}/aa/aa02/data`)).toString(), "moved");
    assert.equal((await after.getContent(`${blobs}/bb/bb02/data`)).toString(), "written");
    assert.deepEqual(readdirSync(join(root, blobs, "aa")).sort(), ["aa01", "aa02"]);
  });

  it(`filesystem${nativeWrites ? "" : " without the addon"}: after a restart, writes find the directories already there`, async () => {
    // A new driver knows only the root: its guesses about which directories exist are wrong
    // until it has looked, and a wrong guess must cost time, not content.
    const root = tempDir();
    const before = new FilesystemDriver(root, { nativeWrites });
    await before.init();
    await before.putContent("/r/repo/_layers/sha256/aa/link", "aa");
    await before.putContent("/r/repo/tags/v1/current/link", "v1");
    const after = new FilesystemDriver(root, { nativeWrites });
    await after.init();
    await after.putContent("/r/repo/_layers/sha256/bb/link", "bb");
    await after.putContent("/r/repo/tags/v2/current/link", "v2");
    await after.putContent("/r/repo/tags/v2/index/sha256/cc/link", "cc");
    await after.putContent("/r/other/tags/v1/current/link", "other");
    await after.putContent("/r/repo/tags/v1/current/link", "v1 again");
    assert.ok(after.carefulWrites > 0);
    assert.deepEqual(readdirSync(join(root, "r/repo/_layers/sha256")).sort(), ["aa", "bb"]);
    assert.deepEqual(readdirSync(join(root, "r/repo/tags")).sort(), ["v1", "v2"]);
    assert.deepEqual(readdirSync(join(root, "r/repo/tags/v2")).sort(), ["current", "index"]);
    assert.equal((await after.getContent("/r/repo/tags/v1/current/link")).toString(), "v1 again");
    assert.equal((await after.getContent("/r/other/tags/v1/current/link")).toString(), "other");
    assert.equal((await after.getContent("/r/repo/_layers/sha256/aa/link")).toString(), "aa");
    for (const bucket of readdirSync(join(root, ".neam-tmp"))) {
      assert.deepEqual(readdirSync(join(root, ".neam-tmp", bucket)), [], bucket);
    }
  });
}

it("filesystem: files land under the root at their logical path; temporaries are cleared at start", async () => {
  const root = tempDir();
  const driver = new FilesystemDriver(root);
  await driver.init();
  await driver.putContent("/docker/registry/v2/x/link", "sha256:abc");
  assert.deepEqual(readdirSync(join(root, "docker/registry/v2/x")), ["link"]);
  const buckets = readdirSync(join(root, ".neam-tmp"));
  assert.ok(buckets.length > 0);
  for (const bucket of buckets) assert.deepEqual(readdirSync(join(root, ".neam-tmp", bucket)), []);
});
