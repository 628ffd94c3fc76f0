import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RegistryError } from "../../../server/src/registry/errors.js";
import {
  MAX_NAME_LENGTH,
  isValidTag,
  isValidUploadId,
  validateName,
} from "../../../server/src/registry/names.js";

describe("repository names", () => {
  it("accepts the spec's grammar and returns the name", () => {
    for (const name of [
      "a",
      "library/ubuntu",
      "a.b_c__d-e--f/g0",
      "team/app/sub",
      "ab.cd-ef__gh/ij_kl.mn--op/qr---st",
      "org/my-app.v2_x__y--z",
      "x".repeat(MAX_NAME_LENGTH),
      "9/9",
    ])
      assert.equal(validateName(name), name);
  });

  it("refuses everything else as NAME_INVALID with the name (bounded) as detail", () => {
    for (const bad of [
      "",
      "A",
      "a/",
      "/a",
      "a//b",
      "a..b",
      "a___b",
      ".a",
      "a.",
      "a-",
      "-a",
      "_a",
      "a b",
      "a:b",
      "a/B",
      "a/.b",
      "a/b-",
      "a\n",
      "x".repeat(MAX_NAME_LENGTH + 1),
      "x".repeat(400),
    ]) {
      assert.throws(
        () => validateName(bad),
        (error: unknown) =>
          error instanceof RegistryError &&
          error.code === "NAME_INVALID" &&
          error.message === "invalid repository name" &&
          (error.detail as { name: string }).name === bad.slice(0, 300),
        JSON.stringify(bad),
      );
    }
    assert.equal(MAX_NAME_LENGTH, 255);
  });
});

describe("tags and upload ids", () => {
  it("tags: word character first, then up to 127 of [A-Za-z0-9._-]", () => {
    for (const tag of ["latest", "v1.2.3-rc_1", "_x", "A", "0", "a".repeat(128), "a.-_B"])
      assert.equal(isValidTag(tag), true, tag);
    for (const tag of ["", ".a", "-a", "a".repeat(129), "a/b", "a:b", "a b", "a+b", " a", "a\n"])
      assert.equal(isValidTag(tag), false, tag);
  });

  it("upload ids are lowercase UUIDs", () => {
    assert.equal(isValidUploadId("0123abcd-4567-89ef-0123-456789abcdef"), true);
    for (const id of [
      "",
      "0123ABCD-4567-89ef-0123-456789abcdef",
      "0123abcd-4567-89ef-0123-456789abcde",
      "0123abcd-4567-89ef-0123-456789abcdef0",
      "x0123abcd-4567-89ef-0123-456789abcdef",
      "0123abcd4567-89ef-0123-456789abcdef",
      "0123abcd-4567-89ef-0123-456789abcdeg",
      "../../../etc/passwd",
    ])
      assert.equal(isValidUploadId(id), false, id);
  });
});
