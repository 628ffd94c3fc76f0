import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseChunkRange, parseRangeHeader } from "../../../server/src/http/range.js";

describe("Range of a blob GET", () => {
  it("no header, malformed or multiple ranges: the whole blob", () => {
    for (const header of [
      undefined,
      "",
      "bytes=-",
      "bytes=0-1,3-4",
      "items=0-1",
      "bytes=a-1",
      "bytes=1-a",
      "bytes 0-1",
      "bytes=0-1x",
      "xbytes=0-1",
      "bytes=1",
    ])
      assert.equal(parseRangeHeader(header, 100), undefined, String(header));
  });

  it("first-last, first-, and clamps last to the size", () => {
    assert.deepEqual(parseRangeHeader("bytes=0-0", 100), { start: 0, end: 0 });
    assert.deepEqual(parseRangeHeader("bytes=10-19", 100), { start: 10, end: 19 });
    assert.deepEqual(parseRangeHeader(" bytes=10-19 ", 100), { start: 10, end: 19 });
    assert.deepEqual(parseRangeHeader("bytes=10-", 100), { start: 10, end: 99 });
    assert.deepEqual(parseRangeHeader("bytes=10-99", 100), { start: 10, end: 99 });
    assert.deepEqual(parseRangeHeader("bytes=10-100", 100), { start: 10, end: 99 });
    assert.deepEqual(parseRangeHeader("bytes=10-5000", 100), { start: 10, end: 99 });
    assert.deepEqual(parseRangeHeader("bytes=99-99", 100), { start: 99, end: 99 });
    assert.deepEqual(parseRangeHeader("bytes=5-5", 100), { start: 5, end: 5 });
  });

  it("suffix ranges take the last N bytes, all of them when N exceeds the size", () => {
    assert.deepEqual(parseRangeHeader("bytes=-1", 100), { start: 99, end: 99 });
    assert.deepEqual(parseRangeHeader("bytes=-10", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRangeHeader("bytes=-100", 100), { start: 0, end: 99 });
    assert.deepEqual(parseRangeHeader("bytes=-500", 100), { start: 0, end: 99 });
  });

  it("unsatisfiable: start past the end, start after last, empty suffix, empty blob", () => {
    for (const [header, size] of [
      ["bytes=100-", 100],
      ["bytes=100-200", 100],
      ["bytes=101-", 100],
      ["bytes=20-10", 100],
      ["bytes=-0", 100],
      ["bytes=-5", 0],
      ["bytes=0-", 0],
      ["bytes=0-0", 0],
    ] as const)
      assert.equal(parseRangeHeader(header, size), "unsatisfiable", `${header} of ${size}`);
  });
});

describe("Content-Range of an upload chunk", () => {
  it("absent or empty: no range", () => {
    assert.equal(parseChunkRange(undefined), undefined);
    assert.equal(parseChunkRange(""), undefined);
  });

  it("start-end, with the optional bytes prefix and total", () => {
    assert.deepEqual(parseChunkRange("0-99"), { start: 0, end: 99 });
    assert.deepEqual(parseChunkRange(" 5-5 "), { start: 5, end: 5 });
    assert.deepEqual(parseChunkRange("bytes 10-19"), { start: 10, end: 19 });
    assert.deepEqual(parseChunkRange("bytes=10-19"), { start: 10, end: 19 });
    assert.deepEqual(parseChunkRange("10-19/100"), { start: 10, end: 19 });
    assert.deepEqual(parseChunkRange("bytes 10-19/*"), { start: 10, end: 19 });
  });

  it("anything else is invalid: malformed, reversed, beyond safe integers", () => {
    for (const header of [
      "-",
      "a-b",
      "10-",
      "-10",
      "10",
      "bytes:10-19",
      "bytes  10-19",
      "x10-19",
      "10-19x",
      "10-19/",
      "10-19/x",
      "10-19/*1",
      "10 - 19",
      "1.5-2",
      "19-10",
      "0-9007199254740992",
    ])
      assert.equal(parseChunkRange(header), "invalid", header);
    assert.deepEqual(parseChunkRange("0-9007199254740991"), { start: 0, end: 9007199254740991 });
  });
});
