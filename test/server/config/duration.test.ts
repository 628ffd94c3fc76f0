import assert from "node:assert/strict";
import { it } from "node:test";
import { parseDuration } from "../../../server/src/config/duration.js";

it("parses the reference registry's Go durations", () => {
  assert.equal(parseDuration("10s"), 10_000);
  assert.equal(parseDuration("168h"), 168 * 3600_000);
  assert.equal(parseDuration("1h30m"), 5400_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("1.5s"), 1500);
  for (const bad of ["", "10", "s", "10 s", "1d", "-1s"])
    assert.throws(() => parseDuration(bad), /invalid duration/, bad);
});
