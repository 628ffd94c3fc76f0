/**
 * The stored form of a file the S3 driver is appending to (an upload's `data` between PATCH
 * requests). S3 parts must be at least 5 MiB except the last, and an open multipart upload
 * cannot be read, so between appends the object at the file's key holds:
 *
 *   one line of JSON — the open multipart upload's id and the ETag and size of each part written
 *   so far, in order — then the tail: the bytes after the last part (under 5 MiB).
 *
 * and metadata `neam-append` (marks this form) and `neam-size` (the file's logical size, so a
 * HEAD answers a status request). Rewriting this object is the one atomic step that commits an
 * append; parts uploaded by a writer that never got there are not listed and get overwritten.
 */

/** S3's smallest part (except the last). */
export const MIN_PART = 5 * 1024 * 1024;
/** The most a stored pending object can hold: the tail and a header for 10,000 parts. */
export const PENDING_LIMIT = MIN_PART + 1024 * 1024;

const MARK = "neam-append";
const SIZE = "neam-size";
const FORMAT = 1;

export interface Part {
  readonly etag: string;
  readonly size: number;
}

export interface Pending {
  readonly upload: string;
  readonly parts: readonly Part[];
  readonly tail: Buffer;
}

export function isPending(metadata: Record<string, string> | undefined): boolean {
  return metadata?.[MARK] !== undefined;
}

/** The logical size of a pending file, from its metadata. */
export function pendingSize(metadata: Record<string, string>): number {
  return Number(metadata[SIZE]);
}

export function encodePending(pending: Pending): { body: Buffer; metadata: Record<string, string> } {
  const header = JSON.stringify({
    v: FORMAT,
    upload: pending.upload,
    parts: pending.parts.map((p) => [p.etag, p.size]),
  });
  const size = pending.parts.reduce((n, p) => n + p.size, 0) + pending.tail.length;
  return {
    body: Buffer.concat([Buffer.from(`${header}\n`), pending.tail]),
    metadata: { [MARK]: String(FORMAT), [SIZE]: String(size) },
  };
}

export function decodePending(body: Buffer, path: string): Pending {
  const newline = body.indexOf(0x0a);
  const bad = (why: string): never => {
    throw new Error(`s3: the appended data of ${path} is unreadable (${why})`);
  };
  if (newline < 0) bad("no header");
  let header: unknown;
  try {
    header = JSON.parse(body.subarray(0, newline).toString("utf8"));
  } catch {
    bad("header is not JSON");
  }
  const h = header as { v?: unknown; upload?: unknown; parts?: unknown };
  if (h.v !== FORMAT) bad(`format ${String(h.v)}`);
  if (typeof h.upload !== "string" || !Array.isArray(h.parts)) bad("header fields");
  const parts = (h.parts as unknown[]).map((p) => {
    if (!Array.isArray(p) || typeof p[0] !== "string" || !Number.isSafeInteger(p[1])) bad("part entry");
    return { etag: (p as [string, number])[0], size: (p as [string, number])[1] };
  });
  return { upload: h.upload as string, parts, tail: body.subarray(newline + 1) };
}
