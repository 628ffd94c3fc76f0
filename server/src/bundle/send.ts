/**
 * `bundle import --via-server`: the bundle streamed part by part to the registry's admin endpoint
 * (bundle/receive.ts), which parses and verifies it and commits the tags itself. Parts are the
 * files `bundle create --split` wrote, with the digests of their `.sha256` list; a single-file
 * bundle is sent in ranges of about `partSize` bytes cut between tar entries (so no entry but one
 * larger than a range spans two). The registry answers which parts landed: a re-run sends only
 * the rest.
 */
import { createHash } from "node:crypto";
import { closeSync, createReadStream, openSync, readSync } from "node:fs";
import { BundleError, CONTENT_LIST } from "./format.js";
import type { BundleFiles } from "./parts.js";
import type { PushClient } from "./push-client.js";
import type { ReceiveCounts } from "./receive.js";

export const DEFAULT_PART_SIZE = 64 * 1024 * 1024;

export interface SendReport {
  readonly id: string;
  readonly parts: number;
  /** Parts the registry had already: not sent. */
  readonly partsLanded: number;
  readonly partsSent: number;
  readonly bytesSent: number;
  readonly counts: ReceiveCounts;
  readonly images: { target: string; digest: string }[];
}

interface Range {
  readonly path: string;
  readonly start: number;
  readonly size: number;
  readonly digest: string;
}

/** The ends of the tar entries in `path` (where the next header starts), read from headers only. */
function entryEnds(path: string, size: number): number[] {
  const fd = openSync(path, "r");
  const header = Buffer.alloc(512);
  const ends: number[] = [];
  try {
    let offset = 0;
    while (offset + 512 <= size) {
      readSync(fd, header, 0, 512, offset);
      if (header.every((b) => b === 0)) break;
      const field = header.subarray(124, 136);
      const length =
        (field[0]! & 0x80) !== 0
          ? Number(field.subarray(1).reduce((n, b) => n * 256n + BigInt(b), 0n))
          : parseInt(field.toString("ascii").replace(/\0.*$/s, "").trim() || "0", 8);
      offset += 512 + Math.ceil(length / 512) * 512;
      ends.push(Math.min(offset, size));
    }
  } finally {
    closeSync(fd);
  }
  return ends;
}

async function sha256Of(path: string, start: number, size: number): Promise<string> {
  const hash = createHash("sha256");
  if (size > 0)
    for await (const chunk of createReadStream(path, {
      start,
      end: start + size - 1,
      highWaterMark: 1 << 20,
    }) as AsyncIterable<Buffer>)
      hash.update(chunk);
  return `sha256:${hash.digest("hex")}`;
}

/** The ranges to send: the bundle's own parts, or cuts of a single file. */
async function ranges(files: BundleFiles, partSize: number): Promise<Range[]> {
  if (files.parts.length > 1 || files.parts[0]!.sha256 !== undefined)
    return files.parts.map((p) => ({ path: p.path, start: 0, size: p.size, digest: `sha256:${p.sha256!}` }));
  const { path, size } = files.parts[0]!;
  const cuts: number[] = [];
  let from = 0;
  for (const end of entryEnds(path, size))
    if (end - from >= partSize && end < size) {
      cuts.push(end);
      from = end;
    }
  const out: Range[] = [];
  let start = 0;
  for (const end of [...cuts, size]) {
    out.push({ path, start, size: end - start, digest: await sha256Of(path, start, end - start) });
    start = end;
  }
  return out;
}

/** The name of the archive's first file, past any pax headers (read from headers only). */
function firstFileName(path: string): string {
  const header = Buffer.alloc(512);
  const fd = openSync(path, "r");
  try {
    let offset = 0;
    let paxPath: string | undefined;
    for (let i = 0; i < 8; i++) {
      if (readSync(fd, header, 0, 512, offset) < 512) break;
      const type = String.fromCharCode(header[156]!);
      if (type !== "x" && type !== "g") {
        const end = header.indexOf(0);
        return paxPath ?? header.subarray(0, end < 0 || end > 100 ? 100 : end).toString("utf8");
      }
      const size = parseInt(
        header.subarray(124, 136).toString("ascii").replace(/\0.*$/s, "").trim() || "0",
        8,
      );
      if (type === "x" && size <= 64 * 1024) {
        // Its `LEN path=NAME` record is the real name (the header's own may be a stand-in).
        const data = Buffer.alloc(size);
        readSync(fd, data, 0, size, offset + 512);
        paxPath = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(data.toString("utf8"))?.[1] ?? paxPath;
      }
      offset += 512 + Math.ceil(size / 512) * 512;
    }
  } finally {
    closeSync(fd);
  }
  return "";
}

export async function sendBundle(
  files: BundleFiles,
  client: PushClient,
  options: { partSize?: number; onBytes?: (n: number) => void } = {},
): Promise<SendReport> {
  if (firstFileName(files.parts[0]!.path).replace(/^\.\//, "") !== CONTENT_LIST)
    throw new BundleError(
      `the archive does not start with ${CONTENT_LIST}: a plain OCI layout imports without --via-server`,
    );
  const parts = await ranges(files, options.partSize ?? DEFAULT_PART_SIZE);
  let status = await client.openImport(parts.map((p) => ({ digest: p.digest, size: p.size })));
  const landed = status.landed;
  for (const [index, part] of parts.entries()) {
    if (index < status.landed) {
      options.onBytes?.(part.size);
      continue;
    }
    const body = createReadStream(part.path, {
      start: part.start,
      end: part.start + part.size - 1,
      highWaterMark: 1 << 20,
    });
    body.on("data", (chunk: Buffer | string) => options.onBytes?.(chunk.length));
    status = await client.sendPart(status.id, index, part.size, body);
  }
  // Every part had landed before (a re-run after the commit failed): commit now.
  if (!status.committed) status = await client.commitImport(status.id);
  return {
    id: status.id,
    parts: parts.length,
    partsLanded: landed,
    partsSent: parts.length - landed,
    bytesSent: client.bytesSent,
    counts: status.counts,
    images: status.images ?? [],
  };
}
