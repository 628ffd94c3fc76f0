/** `storage.s3`: the reference's keys, their defaults and bounds, env overrides, and one driver only. */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadConfig, validateConfig } from "../../../server/src/config/load.js";
import { tempDir } from "../../helpers/registry.js";

const MiB = 1024 * 1024;
const s3 = (keys: Record<string, unknown>) =>
  validateConfig({ version: "0.1", storage: { s3: { bucket: "b", region: "us-east-1", ...keys } } });

describe("config: storage.s3", () => {
  it("takes the reference driver's keys; defaults are the reference's", () => {
    const config = s3({
      regionendpoint: "http://127.0.0.1:7480",
      forcepathstyle: true,
      accesskey: "AK",
      secretkey: "SK",
      secure: false,
      skipverify: true,
      v4auth: true,
      rootdirectory: "/prefix",
      chunksize: 5242880,
      multipartcopychunksize: 33554432,
      multipartcopymaxconcurrency: 100,
      multipartcopythresholdsize: 33554432,
      storageclass: "STANDARD",
      encrypt: true,
      keyid: "k",
    }).storage.s3!;
    assert.equal(config.regionendpoint, "http://127.0.0.1:7480");
    assert.equal(config.chunksize, 5 * MiB);
    const defaults = s3({}).storage.s3!;
    assert.equal(defaults.chunksize, 10 * MiB);
    assert.equal(defaults.multipartcopythresholdsize, 32 * MiB);
    assert.equal(defaults.multipartcopychunksize, 32 * MiB);
    assert.equal(defaults.multipartcopymaxconcurrency, 100);
    assert.equal(defaults.secure, true);
    assert.equal(defaults.forcepathstyle, false);
    assert.equal(defaults.rootdirectory, "");
    assert.equal(defaults.accesskey, undefined, "no keys: the AWS SDK's environment chain");
  });

  it("a wrong or missing value fails naming the key", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ bucket: undefined }, /config: storage\.s3\.bucket: /],
      [{ region: undefined }, /config: storage\.s3\.region: /],
      [{ chunksize: 5 * MiB - 1 }, /config: storage\.s3\.chunksize: must be at least 5242880/],
      [
        { multipartcopychunksize: 6 * 1024 * 1024 * MiB },
        /storage\.s3\.multipartcopychunksize: must be at most/,
      ],
      [{ v4auth: false }, /storage\.s3\.v4auth: must be true: only v4 signatures/],
      [{ accesskey: "AK" }, /config: storage\.s3: set accesskey and secretkey together/],
      [{ keyid: "k" }, /config: storage\.s3: keyid needs encrypt: true/],
      [{ loglevel: "debug" }, /unknown key "storage\.s3\.loglevel"/],
    ];
    for (const [keys, message] of cases) assert.throws(() => s3(keys), message, JSON.stringify(keys));
  });

  it("filesystem and s3 together are refused: one driver", () => {
    assert.throws(
      () =>
        validateConfig({
          version: "0.1",
          storage: { filesystem: { rootdirectory: "/data" }, s3: { bucket: "b", region: "r" } },
        }),
      /config: storage: configure one storage driver: storage\.filesystem or storage\.s3, not both$/,
    );
  });

  it("REGISTRY_STORAGE_S3_* variables set the keys, as for every other section", () => {
    const path = join(tempDir(), "config.yml");
    writeFileSync(path, "version: 0.1\nstorage:\n  s3:\n    bucket: from-file\n    region: us-east-1\n");
    const config = loadConfig(path, {
      REGISTRY_STORAGE_S3_BUCKET: "from-env",
      REGISTRY_STORAGE_S3_ACCESSKEY: "AK",
      REGISTRY_STORAGE_S3_SECRETKEY: "SK",
      REGISTRY_STORAGE_S3_CHUNKSIZE: "6291456",
      REGISTRY_STORAGE_S3_FORCEPATHSTYLE: "true",
    });
    assert.equal(config.storage.s3!.bucket, "from-env");
    assert.equal(config.storage.s3!.accesskey, "AK");
    assert.equal(config.storage.s3!.chunksize, 6 * MiB);
    assert.equal(config.storage.s3!.forcepathstyle, true);
  });
});
