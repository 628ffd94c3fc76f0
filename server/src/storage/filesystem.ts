import {
  createReadStream,
  createWriteStream,
  fdatasync,
  promises as fs,
  type ReadStream,
  type WriteStream,
} from "node:fs";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import type { Readable, Writable } from "node:stream";
import { PathNotFoundError, type FileInfo, type StorageDriver } from "./driver.js";

/** Where temporary files live: inside the root (so rename stays atomic), outside the reference layout. */
const TMP_DIR = "/.neam-tmp";
const STREAM_CHUNK = 1024 * 1024;

/**
 * The filesystem driver: logical paths under one root directory, as the reference registry's
 * `filesystem` driver lays them out. Small files are replaced by write-temp, fsync, rename.
 */
export class FilesystemDriver implements StorageDriver {
  readonly name = "filesystem";
  readonly root: string;

  constructor(rootDirectory: string) {
    this.root = resolve(rootDirectory);
  }

  /** Creates the root and clears temporary files a crash may have left. */
  async init(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true });
    await fs.rm(this.full(TMP_DIR), { recursive: true, force: true });
    await fs.mkdir(this.full(TMP_DIR), { recursive: true });
  }

  private full(path: string): string {
    if (
      !path.startsWith("/") ||
      path.includes("\0") ||
      path.split("/").some((p) => p === ".." || p === ".")
    ) {
      throw new Error(`invalid storage path ${JSON.stringify(path)}`);
    }
    return join(this.root, path);
  }

  async getContent(path: string): Promise<Buffer> {
    try {
      return await fs.readFile(this.full(path));
    } catch (error) {
      throw mapError(error, path);
    }
  }

  async putContent(
    path: string,
    content: Uint8Array | string,
    options?: { durable?: boolean },
  ): Promise<void> {
    const target = this.full(path);
    const tmp = this.tempPath();
    if (options?.durable === false) {
      await fs.writeFile(tmp, content);
    } else {
      const handle = await fs.open(tmp, "w");
      try {
        await handle.writeFile(content);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    await renameInto(tmp, target, this.tempPath());
  }

  async reader(path: string, offset = 0, end?: number): Promise<Readable> {
    // A path-based stream reads through the fd with plain callbacks (a FileHandle stream goes
    // through promises, half as fast); wait for the open so a missing file fails here.
    const stream = createReadStream(this.full(path), { start: offset, end, highWaterMark: STREAM_CHUNK });
    await opened(stream, path);
    return stream;
  }

  async writer(path: string, append: boolean): Promise<Writable> {
    const full = this.full(path);
    await fs.mkdir(dirname(full), { recursive: true });
    const stream = createWriteStream(full, { flags: append ? "a" : "w", highWaterMark: STREAM_CHUNK });
    await opened(stream, path);
    startWriteback(stream);
    return stream;
  }

  async stat(path: string): Promise<FileInfo> {
    try {
      const s = await fs.stat(this.full(path));
      return {
        path,
        size: s.size,
        modTime: s.mtime,
        isDir: s.isDirectory(),
        version: `${s.ino}:${s.mtimeMs}:${s.size}`,
      };
    } catch (error) {
      throw mapError(error, path);
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      return await fs.readdir(this.full(path));
    } catch (error) {
      throw mapError(error, path);
    }
  }

  async move(source: string, dest: string): Promise<void> {
    const from = this.full(source);
    try {
      const handle = await fs.open(from, "r");
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      throw mapError(error, source);
    }
    await renameInto(from, this.full(dest), this.tempPath());
  }

  async delete(path: string): Promise<void> {
    const full = this.full(path);
    // Rename first so a crash mid-delete never leaves a half-removed tree in the layout.
    const tmp = this.tempPath();
    try {
      await fs.rename(full, tmp);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw error;
    }
    await fs.rm(tmp, { recursive: true, force: true });
  }

  scratchPath(): string {
    return `${TMP_DIR}/${randomBytes(12).toString("hex")}`;
  }

  private tempPath(): string {
    return join(this.root, TMP_DIR, randomBytes(12).toString("hex"));
  }
}

/**
 * Renames `from` to `to`. When `to`'s directories do not exist yet they are built in the temporary
 * area around the file and renamed into place as one tree, so a crash never leaves an empty
 * directory (a tag without its link) in the layout.
 */
async function renameInto(from: string, to: string, stage: string): Promise<void> {
  try {
    await fs.rename(from, to);
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const missing: string[] = [];
  let existing = dirname(to);
  while (!(await isDirectory(existing))) {
    missing.unshift(basename(existing));
    existing = dirname(existing);
  }
  const staged = join(stage, ...missing.slice(1), basename(to));
  await fs.mkdir(dirname(staged), { recursive: true });
  await fs.rename(from, staged);
  try {
    await fs.rename(stage, join(existing, missing[0]!));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EEXIST" && code !== "ENOTEMPTY") throw error;
    // Another writer created the directory meanwhile: it holds its own file, so move ours in.
    await fs.mkdir(dirname(to), { recursive: true });
    await fs.rename(staged, to);
    await fs.rm(stage, { recursive: true, force: true });
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await fs.stat(path)).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

/** Bytes written between background syncs of a large write. */
const WRITEBACK_BYTES = 32 * 1024 * 1024;

/**
 * Syncs a large write in the background as it goes, so the disk works while the network does and
 * the sync before the final rename has little left to flush.
 */
function startWriteback(stream: WriteStream): void {
  let synced = 0;
  let syncing = false;
  const timer = setInterval(() => {
    const fd = (stream as unknown as { fd: number | null }).fd;
    if (syncing || stream.bytesWritten - synced < WRITEBACK_BYTES || typeof fd !== "number") return;
    syncing = true;
    const target = stream.bytesWritten;
    fdatasync(fd, () => {
      syncing = false;
      synced = target;
    });
  }, 100);
  stream.once("close", () => clearInterval(timer));
}

async function opened(stream: ReadStream | WriteStream, path: string): Promise<void> {
  try {
    await once(stream, "ready");
  } catch (error) {
    stream.destroy();
    throw mapError(error, path);
  }
}

function mapError(error: unknown, path: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT" || code === "ENOTDIR") return new PathNotFoundError(path);
  return error;
}
