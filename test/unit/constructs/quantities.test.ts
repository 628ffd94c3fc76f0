import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkQuantity } from "../../../constructs/quantities.js";

describe("Kubernetes quantities", () => {
  it("accepts the quantity grammar and returns the value unchanged", () => {
    for (const q of [
      "1",
      "0",
      "100Gi",
      "512Mi",
      "1Ki",
      "2Ti",
      "3Pi",
      "4Ei",
      "200m",
      "5n",
      "6u",
      "7k",
      "8M",
      "9G",
      "1T",
      "1P",
      "1E",
      "1.5",
      "1.",
      ".5",
      "+1",
      "-1",
      "1e3",
      "1E3",
      "1e+3",
      "1e-3",
      "10Gi",
      "123.456Mi",
      ".55",
      "1e10",
      "2E-12",
    ])
      assert.equal(checkQuantity("persistence.size", q), q);
  });

  it("refuses anything else with one line naming the property and the value", () => {
    for (const q of [
      "",
      "Gi",
      "100GB",
      "100gi",
      "100 Gi",
      " 1",
      "1 ",
      "1Gi ",
      "x1",
      "1x",
      "1K",
      "1ki",
      "1Mi1",
      ".",
      "+",
      "1e",
      "1e+",
      "1.2.3",
      "1Gie3",
      "++1",
      "1\n",
    ])
      assert.throws(
        () => checkQuantity("resources.limits.memory", q),
        (error: unknown) =>
          error instanceof Error &&
          error.message ===
            `LocalRegistry: resources.limits.memory ${JSON.stringify(q)} is not a Kubernetes quantity`,
        JSON.stringify(q),
      );
  });
});
