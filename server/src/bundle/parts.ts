/**
 * A bundle on disk: one file, or numbered parts (`site.tar.000`, `.001`, …) listed with their
 * digests in `site.tar.sha256` (the `sha256sum` format, so `sha256sum -c` checks them too) — for
 * DVDs and USB sticks. Reading joins the parts and checks each part's digest as it passes.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  createReadStream,
  existsSync,
  openSync,
  readSync,
  readFileSync,
  statSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { PassThrough, Readable, Writable } from "node:stream";
import { BundleError } from "./format.js";

export interface BundleFiles {
  readonly parts: { path: string; size: number; sha256?: string }[];
  readonly size: number;
}

/** The files of the bundle at `path`: the file itself, or the parts its `.sha256` list names. */
export function bundleFiles(path: string): BundleFiles {
  if (existsSync(path) && statSync(path).isFile() && !existsSync(`${path}.sha256`)) {
    return { parts: [{ path, size: statSync(path).size }], size: statSync(path).size };
  }
  const list = `${path}.sha256`;
  if (!existsSync(list))
    throw new BundleError(`${path}: no such bundle (nor a ${basename(list)} list of parts)`);
  const parts = readFileSync(list, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      // Parts lie beside the list: a name with a slash could point anywhere.
      const match = /^([a-f0-9]{64})\s+\*?([^/\s]+)$/.exec(line.trim());
      if (!match) throw new BundleError(`${list}: "${line.slice(0, 80)}" is not a sha256sum line`);
      const file = join(dirname(path), match[2]!);
      if (!existsSync(file)) throw new BundleError(`${file}: part missing`);
      return { path: file, size: statSync(file).size, sha256: match[1]! };
    });
  return { parts, size: parts.reduce((sum, p) => sum + p.size, 0) };
}

/** The bundle's bytes in order; a part whose digest differs from its list stops the stream. */
export function readBundle(files: BundleFiles, onBytes?: (n: number) => void): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  (async () => {
    for (const part of files.parts) {
      const hash = createHash("sha256");
      for await (const chunk of createReadStream(part.path, {
        highWaterMark: 1 << 20,
      }) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        onBytes?.(chunk.length);
        if (!out.write(chunk)) await new Promise((resolve) => out.once("drain", resolve));
      }
      const digest = hash.digest("hex");
      if (part.sha256 !== undefined && digest !== part.sha256)
        throw new BundleError(
          `${basename(part.path)}: sha256 ${digest} is not ${part.sha256} (a damaged part)`,
        );
    }
    out.end();
  })().catch((error: unknown) => out.destroy(error as Error));
  return out;
}

/**
 * Writes a stream into `path`, or into parts of at most `partSize` bytes beside it with their
 * digests in `path.sha256`. Files are synced before the list is written.
 */
export class BundleWriter extends Writable {
  private index = 0;
  private fd: number | undefined;
  private written = 0;
  private hash = createHash("sha256");
  private readonly done: { name: string; sha256: string }[] = [];
  total = 0;

  constructor(
    private readonly path: string,
    private readonly partSize?: number,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  private partName(): string {
    return this.partSize === undefined ? this.path : `${this.path}.${String(this.index).padStart(3, "0")}`;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    try {
      let offset = 0;
      while (offset < chunk.length) {
        if (this.fd === undefined) this.fd = openSync(this.partName(), "w");
        const room = this.partSize === undefined ? chunk.length - offset : this.partSize - this.written;
        const piece = chunk.subarray(offset, offset + Math.min(room, chunk.length - offset));
        writeSync(this.fd, piece);
        this.hash.update(piece);
        this.written += piece.length;
        this.total += piece.length;
        offset += piece.length;
        if (this.partSize !== undefined && this.written === this.partSize) this.closePart();
      }
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  private closePart(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.done.push({ name: basename(this.partName()), sha256: this.hash.digest("hex") });
    this.fd = undefined;
    this.written = 0;
    this.hash = createHash("sha256");
    this.index++;
  }

  override _final(callback: (error?: Error | null) => void): void {
    try {
      if (this.fd !== undefined || this.partSize === undefined) {
        if (this.fd === undefined) this.fd = openSync(this.partName(), "w");
        this.closePart();
      }
      if (this.partSize !== undefined) {
        const fd = openSync(`${this.path}.sha256`, "w");
        writeSync(fd, this.done.map((p) => `${p.sha256}  ${p.name}\n`).join(""));
        closeSync(fd);
      }
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  /** The parts written, with their digests. */
  get parts(): { name: string; sha256: string }[] {
    return this.done;
  }
}

/** `4GiB`, `700MB`, `1048576` → bytes. */
export function parseSize(text: string, flag = "--split"): number {
  const match = /^(\d+(?:\.\d+)?)\s*(|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)$/i.exec(text.trim());
  if (!match) throw new BundleError(`${flag} ${JSON.stringify(text)} is not a size such as 4GiB or 700MB`);
  const unit = match[2]!.toLowerCase();
  const factor: Record<string, number> = {
    "": 1,
    k: 1024,
    kib: 1024,
    kb: 1000,
    m: 1 << 20,
    mib: 1 << 20,
    mb: 1e6,
    g: 1 << 30,
    gib: 1 << 30,
    gb: 1e9,
    t: 2 ** 40,
    tib: 2 ** 40,
    tb: 1e12,
  };
  const bytes = Math.floor(Number(match[1]) * factor[unit]!);
  if (bytes < 1 << 20) throw new BundleError(`${flag} ${text}: parts must be at least 1 MiB`);
  return bytes;
}

/**
 * The first tar entry whose header or data runs past the end of the bundle (a copy cut short, a
 * missing last part), found by reading headers only; undefined when the archive is whole. An
 * import stops cleanly there instead of waiting for bytes that will never come.
 */
export function cutEntry(files: BundleFiles): string | undefined {
  const fds = files.parts.map((p) => ({ fd: openSync(p.path, "r"), size: p.size }));
  const read = (offset: number, length: number): Buffer | undefined => {
    if (offset + length > files.size) return undefined;
    const out = Buffer.alloc(length);
    let done = 0;
    let base = 0;
    for (const { fd, size } of fds) {
      if (done === length) break;
      const at = offset + done;
      if (at < base + size) {
        const n = Math.min(length - done, base + size - at);
        readSync(fd, out, done, n, at - base);
        done += n;
      }
      base += size;
    }
    return out;
  };
  try {
    let offset = 0;
    for (;;) {
      const header = read(offset, 512);
      if (header === undefined) return "(the end-of-archive blocks)";
      if (header.every((b) => b === 0)) return undefined;
      const end = header.indexOf(0);
      const name = header.subarray(0, end < 0 || end > 100 ? 100 : end).toString("utf8");
      const sizeField = header.subarray(124, 136);
      // Sizes past 8 GiB are base-256 (first byte 0x80), as GNU tar and tar-stream write them.
      const size =
        (sizeField[0]! & 0x80) !== 0
          ? Number(sizeField.subarray(1).reduce((n, b) => n * 256n + BigInt(b), 0n))
          : parseInt(sizeField.toString("ascii").replace(/\0.*$/, "").trim() || "0", 8);
      const next = offset + 512 + Math.ceil(size / 512) * 512;
      if (offset + 512 + size > files.size) return name;
      offset = next;
    }
  } finally {
    for (const { fd } of fds) closeSync(fd);
  }
}
