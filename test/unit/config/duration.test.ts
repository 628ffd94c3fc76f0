import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDuration } from "../../../server/src/config/duration.js";

describe("Go durations", () => {
  it("every unit, in milliseconds", () => {
    assert.equal(parseDuration("2000000ns"), 2);
    assert.equal(parseDuration("3000us"), 3);
    assert.equal(parseDuration("4000µs"), 4);
    assert.equal(parseDuration("5ms"), 5);
    assert.equal(parseDuration("6s"), 6000);
    assert.equal(parseDuration("7m"), 420_000);
    assert.equal(parseDuration("8h"), 28_800_000);
  });

  it("sums components in any order, with fractions", () => {
    assert.equal(parseDuration("1h2m3s4ms"), 3_723_004);
    assert.equal(parseDuration("3s1h"), 3_603_000);
    assert.equal(parseDuration("0.5h"), 1_800_000);
    assert.equal(parseDuration("1.25s"), 1250);
    assert.equal(parseDuration("0s"), 0);
    assert.equal(parseDuration("10m10m"), 1_200_000);
  });

  it("refuses anything that is not wholly a duration, naming it", () => {
    for (const bad of ["", "5", "m", "1h ", " 1h", "1h x", "1hx", "x1h", "1.h", ".5h", "1H", "1h-1m", "1d"])
      assert.throws(
        () => parseDuration(bad),
        new RegExp(`^Error: invalid duration ${JSON.stringify(bad).replace(/[.]/g, "\\.")}$`),
        bad,
      );
  });
});
