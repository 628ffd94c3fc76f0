import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_DEPTH, runs, scanObject } from "../../../server/src/registry/json-scan.js";

/** What JSON.parse makes of `bytes`, in scanObject's terms: the object, or why there is none. */
function reference(bytes: Buffer): Record<string, unknown> | "not-json" | "not-object" {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    return "not-json";
  }
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : "not-object";
}

/** scanObject agrees with JSON.parse: same verdict, same keys, each member's span parses to its value. */
function agrees(text: string | Buffer) {
  const bytes = typeof text === "string" ? Buffer.from(text) : text;
  const expected = reference(bytes);
  const scanned = scanObject(bytes);
  const shown = JSON.stringify(bytes.toString("latin1"));
  if (typeof expected === "string") {
    assert.equal(scanned, expected, shown);
    return;
  }
  assert.ok(scanned instanceof Map, `${shown}: ${String(scanned)}`);
  assert.deepEqual([...scanned.keys()].sort(), Object.keys(expected).sort(), shown);
  for (const [key, span] of scanned) {
    const value: unknown = JSON.parse(bytes.toString("utf8", span.start, span.end));
    assert.deepEqual(value, expected[key], `${shown} member ${key}`);
  }
}

const CASES = [
  // Objects and whitespace
  "{}",
  " \t\r\n{ \t\r\n} \t\r\n",
  '{"a":1}',
  '{"a":1,"b":[1,2,{"c":null}],"d":{"e":{"f":[]}}}',
  '{ "a" : [ ] , "b" : { } }',
  '{"a":1,"a":2}',
  '{"__proto__":{"x":1},"constructor":2}',
  '{"\\u006danifests":[1]}',
  '{"":""}',
  "{\u000b}",
  "{\f}",
  "\ufeff{}",
  "{",
  "}",
  "",
  " ",
  "{}}",
  "{}{}",
  "{} x",
  '{"a":1,}',
  '{"a":1,,"b":2}',
  '{"a" 1}',
  '{"a":}',
  "{a:1}",
  "{'a':1}",
  '{"a":1 "b":2}',
  '{"a":[1,]}',
  '{"a":[,1]}',
  '{"a":[1 2]}',
  '{"a":[}',
  '{"a":{]}',
  '{"a":[1}]}',
  '{"a":{"b":1]}',
  '{"a":[[[]]]}',
  '{"a":[[[]]}',
  // Strings
  '{"a":"\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00"}',
  '{"a":"\\x"}',
  '{"a":"\\u12G4"}',
  '{"a":"\\u12"}',
  '{"a":"\\\'"}',
  '{"a":"tab\there"}',
  '{"a":"nl\nhere"}',
  '{"a":"\u007f\u0080 é ✓"}',
  '{"a":"unterminated}',
  '{"a\\"b":1}',
  '{"a":"\\\\"}',
  '{"a":"\\\\\\""}',
  // Numbers
  '{"a":0,"b":-0,"c":1.5,"d":-12.25e+3,"e":1E-2,"f":10,"g":123456789012345678901234567890}',
  '{"a":01}',
  '{"a":1.}',
  '{"a":.5}',
  '{"a":-}',
  '{"a":1e}',
  '{"a":1e+}',
  '{"a":+1}',
  '{"a":0x10}',
  '{"a":1.5.5}',
  '{"a":--1}',
  '{"a":Infinity}',
  '{"a":NaN}',
  // Literals
  '{"a":true,"b":false,"c":null}',
  '{"a":tru}',
  '{"a":nul}',
  '{"a":True}',
  '{"a":truex}',
  '{"a":nulll}',
  // Not objects
  "[]",
  "[1,2]",
  '"text"',
  "2",
  "null",
  "true",
  "[1,]",
  '"unterminated',
];

describe("scanObject", () => {
  it("agrees with JSON.parse on valid and invalid documents", () => {
    for (const text of CASES) agrees(text);
  });

  it("agrees with JSON.parse on bytes that are not UTF-8 (both read them as U+FFFD)", () => {
    agrees(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xc3, 0x22, 0x7d]));
    agrees(Buffer.from([0x7b, 0x22, 0xe2, 0x82, 0x22, 0x3a, 0x31, 0x7d]));
    agrees(Buffer.from([0x7b, 0x7d, 0x80]));
  });

  it("agrees with JSON.parse on thousands of single-byte mutations of a manifest", () => {
    const manifest = JSON.stringify(
      {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          { mediaType: "m", digest: `sha256:${"a".repeat(64)}`, size: 1, platform: { os: "linux" } },
          { mediaType: "m", digest: `sha256:${"b".repeat(64)}`, size: -2.5e3, x: [true, false, null] },
        ],
        annotations: { "a\nb": 'c\\"d\u00e9' },
      },
      null,
      1,
    );
    const alphabet = '{}[],:"\\ \t\n\r0123456789.-+eEtrufalsnx/u\u00e9\u0001';
    // A fixed-seed generator: the same mutations on every run, any failure reproducible.
    let seed = 20261202;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 3000; round++) {
      let text = manifest;
      for (let edits = 1 + random(2); edits > 0; edits--) {
        const at = random(text.length);
        const kind = random(3);
        const char = alphabet[random(alphabet.length)]!;
        text =
          kind === 0
            ? text.slice(0, at) + text.slice(at + 1)
            : kind === 1
              ? text.slice(0, at) + char + text.slice(at)
              : text.slice(0, at) + char + text.slice(at + 1);
      }
      agrees(text);
    }
  });

  it(`refuses nesting deeper than ${MAX_DEPTH} levels, without recursion`, () => {
    const nested = (depth: number) => `{"a":${"[".repeat(depth)}${"]".repeat(depth)}}`;
    assert.ok(scanObject(Buffer.from(nested(MAX_DEPTH - 1))) instanceof Map);
    assert.equal(scanObject(Buffer.from(nested(MAX_DEPTH + 1))), "not-json");
    // A million open brackets: refused, no stack overflow, no allocation per level.
    assert.equal(scanObject(Buffer.from(`{"a":${"[".repeat(1_000_000)}`)), "not-json");
  });
});

describe("runs", () => {
  const scan = (value: unknown) => {
    const bytes = Buffer.from(JSON.stringify({ list: value }, null, 1));
    const members = scanObject(bytes);
    assert.ok(members instanceof Map);
    return { bytes, span: members.get("list")! };
  };
  const parseRuns = (value: unknown, limits: { count: number; bytes: number }) => {
    const { bytes, span } = scan(value);
    return [...runs(bytes, span, limits)].map((run) => ({
      ...run,
      values: JSON.parse(`[${bytes.toString("utf8", run.start, run.end)}]`) as unknown[],
    }));
  };

  it("splits an array into runs of at most `count` elements, in order, with their first index", () => {
    const list = Array.from({ length: 1000 }, (_, i) => ({ i, s: "x".repeat(i % 7) }));
    const parsed = parseRuns(list, { count: 256, bytes: 1 << 20 });
    assert.deepEqual(
      parsed.map((r) => [r.first, r.count]),
      [
        [0, 256],
        [256, 256],
        [512, 256],
        [768, 232],
      ],
    );
    for (const run of parsed) assert.equal(run.values.length, run.count);
    assert.deepEqual(
      parsed.flatMap((r) => r.values),
      list,
    );
  });

  it("ends a run once it holds `bytes`, and gives an element longer than that a run of its own", () => {
    const list = ["a".repeat(100), "b".repeat(100), "c".repeat(100), "d".repeat(5000), "e", "f"];
    const parsed = parseRuns(list, { count: 100, bytes: 250 });
    assert.deepEqual(
      parsed.map((r) => r.values),
      [[list[0], list[1]], [list[2]], [list[3]], [list[4], list[5]]],
    );
    assert.deepEqual(
      parsed.map((r) => r.first),
      [0, 2, 3, 4],
    );
  });

  it("yields nothing for an empty array, and one run for one element", () => {
    assert.deepEqual(parseRuns([], { count: 10, bytes: 100 }), []);
    assert.deepEqual(
      parseRuns([[{ a: 1 }]], { count: 10, bytes: 100 }).map((r) => r.values),
      [[[{ a: 1 }]]],
    );
  });
});
