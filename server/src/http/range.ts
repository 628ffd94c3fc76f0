/** `Range: bytes=…` of a blob GET (RFC 9110), one range only. */
export type ByteRange = { start: number; end: number } | "unsatisfiable" | undefined;

export function parseRangeHeader(header: string | undefined, size: number): ByteRange {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return undefined; // multiple or malformed ranges: ignore and send the whole blob
  const [, first, last] = match as unknown as [string, string, string];
  if (first === "" && last === "") return undefined;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || start > end) return "unsatisfiable";
  return { start, end };
}

/** `Content-Range: <start>-<end>` of an upload chunk (the spec's form; `bytes ` prefix tolerated). */
export function parseChunkRange(
  header: string | undefined,
): { start: number; end: number } | undefined | "invalid" {
  if (header === undefined || header === "") return undefined;
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!match) return "invalid";
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start || !Number.isSafeInteger(end)) return "invalid";
  return { start, end };
}
