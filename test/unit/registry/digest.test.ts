import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import {
  digestFromHash,
  digestOf,
  isDigest,
  newHash,
  parseDigest,
} from "../../../server/src/registry/digest.js";
import { RegistryError } from "../../../server/src/registry/errors.js";

const HEX256 = createHash("sha256").update("x").digest("hex");
const HEX512 = createHash("sha512").update("x").digest("hex");

function invalid(input: string, message: RegExp, detail?: unknown) {
  assert.throws(
    () => parseDigest(input),
    (error: unknown) => {
      assert.ok(error instanceof RegistryError, String(error));
      assert.equal(error.code, "DIGEST_INVALID");
      assert.match(error.message, message);
      if (detail !== undefined) assert.deepEqual(error.detail, detail);
      return true;
    },
    input,
  );
}

describe("digests", () => {
  it("parses sha256 and sha512 into algorithm, hex and canonical value", () => {
    assert.deepEqual(parseDigest(`sha256:${HEX256}`), {
      algorithm: "sha256",
      hex: HEX256,
      value: `sha256:${HEX256}`,
    });
    assert.deepEqual(parseDigest(`sha512:${HEX512}`), {
      algorithm: "sha512",
      hex: HEX512,
      value: `sha512:${HEX512}`,
    });
  });

  it("refuses what the grammar does not allow, with the input (bounded) as detail", () => {
    for (const bad of [
      "",
      HEX256,
      `:${HEX256}`,
      `sha256:`,
      `SHA256:${HEX256}`,
      `sha256:${HEX256} `,
      ` sha256:${HEX256}`,
      `sha256:${HEX256}\n`,
      `sha256::${HEX256}`,
      `sha256:${HEX256}!`,
      `sha256!:${HEX256}`,
      `sha256.:${HEX256}`,
      `.sha256:${HEX256}`,
      `sha256:${HEX256.slice(0, 10)}/${HEX256.slice(11)}`,
    ])
      invalid(bad, /^invalid digest format$/, { digest: bad });
    const long = `sha256:${"a".repeat(300)}`;
    invalid(long, /^invalid digest format$/, { digest: long.slice(0, 200) });
  });

  it("allows separators in the algorithm and = _ - in the encoded part by grammar, then refuses unknown algorithms", () => {
    for (const algorithm of ["md5", "sha256+b64u", "sha.256", "sha_256", "sha-256", "a1"]) {
      const input = `${algorithm}:${HEX256}`;
      invalid(input, new RegExp(`^unsupported digest algorithm ${algorithm.replace(/[.+]/g, "\\$&")}$`), {
        digest: input,
      });
    }
  });

  it("refuses a known algorithm with the wrong length or non-lowercase-hex encoding", () => {
    for (const bad of [
      `sha256:${HEX256.slice(1)}`,
      `sha256:${HEX256}0`,
      `sha256:${HEX256.toUpperCase()}`,
      `sha256:${"g".repeat(64)}`,
      `sha256:${"=".repeat(64)}`,
      `sha256:${"_".repeat(64)}`,
      `sha256:${HEX512}`,
      `sha512:${HEX256}`,
    ])
      invalid(bad, new RegExp(`^invalid ${bad.slice(0, 6)} digest$`), { digest: bad });
    // One wrong character anywhere (first, middle, last) is enough.
    for (const at of [0, 31, 63]) {
      const hex = HEX256.slice(0, at) + "G" + HEX256.slice(at + 1);
      invalid(`sha256:${hex}`, /^invalid sha256 digest$/);
    }
    // Exactly 200 characters passes the length bound and fails on the algorithm instead.
    const at200 = `${"a".repeat(135)}:${HEX256}`;
    assert.equal(at200.length, 200);
    invalid(at200, /^unsupported digest algorithm/);
    invalid(`${"a".repeat(136)}:${HEX256}`, /^invalid digest format$/);
  });

  it("isDigest tells a digest reference from a tag", () => {
    assert.equal(isDigest(`sha256:${HEX256}`), true);
    assert.equal(isDigest("latest"), false);
  });

  it("computes digests of bytes and of a running hash", () => {
    const data = Buffer.from("x");
    assert.deepEqual(digestOf(data), { algorithm: "sha256", hex: HEX256, value: `sha256:${HEX256}` });
    assert.deepEqual(digestOf(data, "sha512"), {
      algorithm: "sha512",
      hex: HEX512,
      value: `sha512:${HEX512}`,
    });
    assert.deepEqual(digestFromHash(newHash().update(data), "sha256"), parseDigest(`sha256:${HEX256}`));
    assert.deepEqual(
      digestFromHash(newHash("sha512").update(data), "sha512"),
      parseDigest(`sha512:${HEX512}`),
    );
  });
});
