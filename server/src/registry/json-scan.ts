/**
 * A validating scan of one JSON object held as bytes, which builds no JSON tree.
 *
 * `JSON.parse` of a 4 MiB manifest index builds tens of thousands of objects at once. They live
 * for the whole parse, so V8 promotes them to the old generation, where they stay as garbage until
 * the next full collection: a few such pushes in a row grew the heap by 60 MiB and more, whatever
 * their concurrency (issue 9 item 7). This scan checks the JSON grammar byte by byte and only
 * notes where each member of the top-level object lies, and where each element of its array
 * members lies; the caller then parses the members it needs, and large arrays one element at a
 * time, so each piece is small and dies young.
 *
 * It accepts exactly what `JSON.parse` accepts (RFC 8259: the four whitespace bytes, no trailing
 * commas, strict strings, numbers and literals; bytes that are not valid UTF-8 are left to
 * `toString`, which replaces them as it would for the whole text), except nesting deeper than
 * MAX_DEPTH, which no manifest needs.
 */

/** Where a value lies in the bytes: [start, end). */
export interface Span {
  readonly start: number;
  readonly end: number;
}

/** Why the bytes are not one JSON object. */
export type ScanFailure = "not-json" | "not-object";

/** Nesting a manifest may use; deeper is refused rather than tracked. */
export const MAX_DEPTH = 256;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

class NotJson extends Error {}

/**
 * The members of the JSON object `bytes` holds, by key (decoded; the last of a repeated key wins,
 * as with JSON.parse), or why it holds none.
 */
export function scanObject(bytes: Buffer): Map<string, Span> | ScanFailure {
  try {
    let i = skipSpace(bytes, 0);
    if (bytes[i] !== LBRACE) {
      i = skipSpace(bytes, skipValue(bytes, i));
      return i === bytes.length ? "not-object" : "not-json";
    }
    const members = new Map<string, Span>();
    i = skipSpace(bytes, i + 1);
    if (bytes[i] === RBRACE) i++;
    else {
      for (;;) {
        const keyEnd = skipString(bytes, i);
        const key = JSON.parse(bytes.toString("utf8", i, keyEnd)) as string;
        i = skipSpace(bytes, keyEnd);
        if (bytes[i] !== COLON) throw new NotJson();
        const start = skipSpace(bytes, i + 1);
        const end = skipValue(bytes, start);
        members.set(key, { start, end });
        i = skipSpace(bytes, end);
        if (bytes[i] === COMMA) {
          i = skipSpace(bytes, i + 1);
          continue;
        }
        if (bytes[i] !== RBRACE) throw new NotJson();
        i++;
        break;
      }
    }
    return skipSpace(bytes, i) === bytes.length ? members : "not-json";
  } catch (error) {
    if (error instanceof NotJson) return "not-json";
    throw error;
  }
}

/**
 * The elements of the array at `span` in runs: each run is where up to `count` consecutive
 * elements lie (from the first one's start to the last one's end, commas between them), at most
 * `bytes` long unless it is one element longer than that, with the index of its first element.
 * Parsing a run as `[…]` costs one JSON.parse for many small elements. The span must be one that
 * scanObject returned (so already checked) and hold an array.
 */
export function* runs(
  bytes: Buffer,
  span: Span,
  limits: { count: number; bytes: number },
): Generator<{ start: number; end: number; first: number; count: number }> {
  let i = skipSpace(bytes, span.start + 1);
  if (bytes[i] === RBRACKET) return;
  let run: { start: number; end: number; first: number; count: number } | undefined;
  for (let index = 0; ; index++) {
    const end = skipValue(bytes, i);
    if (run !== undefined && (run.count >= limits.count || end - run.start > limits.bytes)) {
      yield run;
      run = undefined;
    }
    if (run === undefined) run = { start: i, end, first: index, count: 1 };
    else {
      run.end = end;
      run.count++;
    }
    i = skipSpace(bytes, end);
    if (bytes[i] !== COMMA) {
      yield run;
      return;
    }
    i = skipSpace(bytes, i + 1);
  }
}

/** Whether `span` holds an array. */
export function isArraySpan(bytes: Buffer, span: Span): boolean {
  return bytes[span.start] === LBRACKET;
}

/**
 * For each container open in skipValue, whether it is an object: one fixed stack (the scan is
 * synchronous), so that no input makes it allocate in proportion to its size or nesting.
 */
const openContainers = new Uint8Array(MAX_DEPTH);

/** Checks the value starting at `i` (no space before it) and returns where it ends. */
function skipValue(bytes: Buffer, i: number): number {
  const open = openContainers;
  let depth = 0;
  for (;;) {
    const c = bytes[i];
    if (c === LBRACE || c === LBRACKET) {
      if (depth === MAX_DEPTH) throw new NotJson();
      const object = c === LBRACE;
      i = skipSpace(bytes, i + 1);
      if (bytes[i] === (object ? RBRACE : RBRACKET)) i++;
      else {
        open[depth++] = object ? 1 : 0;
        if (object) i = skipKey(bytes, i);
        continue;
      }
    } else if (c === QUOTE) i = skipString(bytes, i);
    else i = skipScalar(bytes, i);
    // After a value: close what it ends, or go on to the next member or element.
    for (;;) {
      if (depth === 0) return i;
      i = skipSpace(bytes, i);
      const object = open[depth - 1] === 1;
      if (bytes[i] === COMMA) {
        i = skipSpace(bytes, i + 1);
        if (object) i = skipKey(bytes, i);
        break;
      }
      if (bytes[i] !== (object ? RBRACE : RBRACKET)) throw new NotJson();
      i++;
      depth--;
    }
  }
}

/** A member's key and colon at `i`; returns where its value starts. */
function skipKey(bytes: Buffer, i: number): number {
  i = skipSpace(bytes, skipString(bytes, i));
  if (bytes[i] !== COLON) throw new NotJson();
  return skipSpace(bytes, i + 1);
}

function skipSpace(bytes: Buffer, i: number): number {
  for (;;) {
    const c = bytes[i];
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
    i++;
  }
}

function skipString(bytes: Buffer, i: number): number {
  if (bytes[i] !== QUOTE) throw new NotJson();
  i++;
  for (;;) {
    const c = bytes[i];
    if (c === undefined || c < 0x20) throw new NotJson();
    if (c === QUOTE) return i + 1;
    if (c !== BACKSLASH) {
      i++;
      continue;
    }
    const e = bytes[i + 1];
    if (e === 0x75 /* u */) {
      for (let k = i + 2; k < i + 6; k++) if (!isHex(bytes[k])) throw new NotJson();
      i += 6;
    } else if (
      e === QUOTE ||
      e === BACKSLASH ||
      e === 0x2f /* / */ ||
      e === 0x62 /* b */ ||
      e === 0x66 /* f */ ||
      e === 0x6e /* n */ ||
      e === 0x72 /* r */ ||
      e === 0x74 /* t */
    ) {
      i += 2;
    } else throw new NotJson();
  }
}

/** A number or a literal (true, false, null). */
function skipScalar(bytes: Buffer, i: number): number {
  for (const literal of LITERALS) {
    if (bytes[i] === literal[0]) {
      for (let k = 1; k < literal.length; k++) if (bytes[i + k] !== literal[k]) throw new NotJson();
      return i + literal.length;
    }
  }
  if (bytes[i] === MINUS) i++;
  if (bytes[i] === ZERO) i++;
  else if (isDigit(bytes[i]) && bytes[i] !== ZERO) i = skipDigits(bytes, i);
  else throw new NotJson();
  if (bytes[i] === DOT) {
    if (!isDigit(bytes[i + 1])) throw new NotJson();
    i = skipDigits(bytes, i + 1);
  }
  if (bytes[i] === 0x65 /* e */ || bytes[i] === 0x45 /* E */) {
    i++;
    if (bytes[i] === PLUS || bytes[i] === MINUS) i++;
    if (!isDigit(bytes[i])) throw new NotJson();
    i = skipDigits(bytes, i);
  }
  return i;
}

const LITERALS = ["true", "false", "null"].map((word) => Buffer.from(word));

function skipDigits(bytes: Buffer, i: number): number {
  while (isDigit(bytes[i])) i++;
  return i;
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= ZERO && c <= NINE;
}

function isHex(c: number | undefined): boolean {
  return (
    c !== undefined && ((c >= ZERO && c <= NINE) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46))
  );
}
