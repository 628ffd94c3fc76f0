import {
  constants as fsConstants,
  createReadStream,
  createWriteStream,
  fdatasync,
  promises as fs,
  type ReadStream,
  type WriteStream,
} from "node:fs";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { constants as osConstants } from "node:os";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import type { Readable, Writable } from "node:stream";
import { getSystemErrorMap } from "node:util";
import { native, type NativeAddon } from "../native.js";
import {
  PathNotFoundError,
  SourceSizeError,
  type ContentWrite,
  type FileInfo,
  type StorageDriver,
} from "./driver.js";
import { BLOBS, REPOSITORIES } from "./layout.js";

/** Where temporary files live: inside the root (so rename stays atomic), outside the reference layout. */
const TMP_DIR = "/.neam-tmp";
/** Bytes a reader reads at a time. */
const STREAM_CHUNK = 1024 * 1024;
/**
 * Bytes a writer buffers before it holds its source back. With 1 MiB the socket paused at every
 * write and a 2 GiB push to tmpfs ran at 490-500 MB/s; with 8 MiB, 670-870 (16 MiB: no better).
 */
const WRITE_BUFFER = 8 * 1024 * 1024;
/** Bytes written between background syncs of a large write. */
const WRITEBACK_BYTES = 32 * 1024 * 1024;
/** How many directories temporary files are spread over. */
const TMP_FANOUT = 64;

function tmpBucket(i: number): string {
  return i.toString(16).padStart(2, "0");
}

function tmpName(): string {
  const random = randomBytes(12);
  return `${tmpBucket(random[0]! % TMP_FANOUT)}/${random.toString("hex")}`;
}

/** Directories remembered as existing; past this the memory is simply cleared. */
const KNOWN_DIRS_LIMIT = 100_000;

/**
 * The filesystem driver: logical paths under one root directory, as the reference registry's
 * `filesystem` driver lays them out. Small files are replaced by write-temp, fsync, rename; new
 * directories appear together with their first file, in one rename. With the native addon, each
 * batch of small files, each append of a chunk already read and each delete is one thread-pool
 * job: every job costs a request a turn of the (busy) event loop, so a push waits for few.
 */
export class FilesystemDriver implements StorageDriver {
  readonly name = "filesystem";
  readonly root: string;
  /**
   * Directories known to exist, to skip the probing of a first write. Never trusted blindly: a
   * rename that fails with ENOENT forgets the entry and takes the careful path.
   */
  private readonly knownDirs = new Set<string>();
  /**
   * Small writes and moves whose guess about existing directories was wrong and that took the
   * careful (several round trips) way; a few after a start, then rare.
   */
  carefulWrites = 0;
  /** Files whose data was synced when their writer closed, so `move` need not sync them again. */
  private readonly synced = new Set<string>();

  /** The addon that writes a small file in one thread-pool job; Node's fs step by step without it. */
  private readonly addon: NativeAddon | undefined;

  constructor(rootDirectory: string, options: { nativeWrites?: boolean } = {}) {
    this.root = resolve(rootDirectory);
    this.addon = options.nativeWrites === false ? undefined : native;
  }

  /** Whether small files are written by the native addon (it is built, and not turned off). */
  get nativeWrites(): boolean {
    return this.addon !== undefined;
  }

  /**
   * Creates the root and clears temporary files a crash may have left, unless `shared`: then
   * other processes (replicas) write theirs there now.
   */
  async init(shared = false): Promise<void> {
    await fs.mkdir(this.root, { recursive: true });
    this.knownDirs.add(this.root);
    if (!shared) await fs.rm(this.full(TMP_DIR), { recursive: true, force: true });
    // Temporary files spread over many directories: one directory is one lock for every create.
    await Promise.all(
      Array.from({ length: TMP_FANOUT }, async (_, i) => {
        await fs.mkdir(this.full(`${TMP_DIR}/${tmpBucket(i)}`), { recursive: true });
        this.remember(this.full(`${TMP_DIR}/${tmpBucket(i)}`));
      }),
    );
    // The blob prefix directories (at most 256 per algorithm) that already exist: without them,
    // the first new blob under each after a restart guesses its prefix missing and takes the
    // careful way (measured: a commit right after a restart took 110-180 ms instead of ~20).
    for (const path of [BLOBS, REPOSITORIES]) {
      if (await isDirectory(this.full(path))) this.remember(this.full(path));
    }
    for (const algorithm of ["sha256", "sha512"]) {
      const dir = this.full(`${BLOBS}/${algorithm}`);
      const prefixes = await fs.readdir(dir).catch(() => [] as string[]);
      if (prefixes.length > 0) this.remember(dir);
      for (const prefix of prefixes) this.knownDirs.add(join(dir, prefix));
    }
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
    await this.putContents([{ path, content, durable: options?.durable }]);
  }

  async putContents(files: readonly ContentWrite[]): Promise<void> {
    let rest = files;
    while (rest.length > 0) {
      const plans = this.planWrites(rest);
      const failure = await writeFiles(this.addon, plans);
      for (const plan of plans.slice(0, failure?.index ?? plans.length)) this.remember(plan.parent);
      if (failure === undefined) return;
      const failed = plans[failure.index]!;
      if (failed.remove || failed.source !== undefined) throwSourceError(failed, failure.error);
      await this.recover(failed, failure.error);
      rest = rest.slice(failure.index + 1);
    }
  }

  /**
   * How each file gets written. Into a directory known to exist: a temporary file renamed over
   * it. Into new directories (a new blob, link or tag): inside a fresh stage directory, below it
   * the missing directories between the file and the nearest directory known to exist (knowing
   * none, the parent's parent is assumed to), so that one rename of the stage makes them all
   * appear at once, file included. Directories an earlier file of the batch creates count as
   * known for the later ones.
   */
  private planWrites(files: readonly ContentWrite[]): WritePlan[] {
    const planned = new Set<string>();
    const exists = (dir: string) => this.knownDirs.has(dir) || planned.has(dir);
    return files.map((write): WritePlan => {
      const full = this.full(write.path);
      const parent = dirname(full);
      if (write.remove === true) {
        // Renamed away, then removed, as `delete` does; it creates nothing.
        this.synced.delete(full);
        const away = this.tempPath();
        return {
          full,
          parent,
          content: EMPTY,
          durable: false,
          remove: true,
          file: full,
          from: full,
          to: away,
        };
      }
      const common =
        write.source === undefined
          ? { full, parent, content: asBuffer(write.content), durable: write.durable !== false }
          : { full, parent, content: EMPTY, size: write.size, ...this.moveSource(write.source) };
      if (exists(parent)) {
        const tmp = this.tempPath();
        return { ...common, file: tmp, from: tmp, to: full };
      }
      const plan = { ...common, ...this.stagePlan(full, exists) };
      for (let d = parent; d !== dirname(plan.to); d = dirname(d)) planned.add(d);
      return plan;
    });
  }

  /** A file to move in: its full path, synced unless its writer already synced it. */
  private moveSource(source: string): { source: string; durable: boolean } {
    const full = this.full(source);
    return { source: full, durable: !this.synced.delete(full) };
  }

  /** Where a file going into new directories is staged (see planWrites). */
  private stagePlan(full: string, exists?: (dir: string) => boolean) {
    const parent = dirname(full);
    const anchor = this.knownAncestor(parent, exists) ?? dirname(parent);
    const missing = relative(anchor, parent).split(sep);
    const stage = this.tempPath();
    return {
      stage,
      dirs: missing.map((_, i) => join(stage, ...missing.slice(1, i + 1))),
      file: join(stage, ...missing.slice(1), basename(full)),
      from: stage,
      to: join(anchor, missing[0]!),
    };
  }

  /** Finishes (or gives up on) a planned write whose job failed at `error`. */
  private async recover(plan: WritePlan, error: unknown): Promise<void> {
    // Failed before its rename: nothing of it is left.
    if (!renameFailed(error)) throw error;
    const code = errorCode(error);
    // Giving up: a moved-in file goes back where it came from (an upload stays resumable).
    const giveBack = async () => {
      if (plan.source !== undefined) await fs.rename(plan.file, plan.source).catch(() => {});
    };
    if (plan.stage === undefined) {
      if (code !== "ENOENT") {
        await giveBack();
        await fs.rm(plan.file, { force: true });
        throw error;
      }
      // The directory was removed meanwhile: rebuild it around the written file.
      this.carefulWrites++;
      await this.renameInto(plan.file, plan.full);
      return;
    }
    if (!STAGE_CONFLICTS.has(code)) {
      await giveBack();
      await removeTree(this.addon, plan.stage);
      throw error;
    }
    // A guess was wrong (a directory there after all, or one missing): the careful way.
    this.carefulWrites++;
    await this.unstage(plan.stage, plan.file, plan.full);
  }

  async reader(path: string, offset = 0, end?: number): Promise<Readable> {
    // A path-based stream reads through the fd with plain callbacks (a FileHandle stream goes
    // through promises, half as fast); wait for the open so a missing file fails here.
    const stream = createReadStream(this.full(path), { start: offset, end, highWaterMark: STREAM_CHUNK });
    await opened(stream, path);
    return stream;
  }

  async writer(path: string, append: boolean, options?: { durable?: boolean }): Promise<Writable> {
    const full = this.full(path);
    // Whatever this writer adds is unsynced until it closes cleanly (a durable one re-adds it).
    this.synced.delete(full);
    const durable = options?.durable ?? false;
    const open = async () => {
      const stream = createWriteStream(full, {
        flags: append ? "a" : "w",
        highWaterMark: WRITE_BUFFER,
        flush: durable,
      });
      await opened(stream, path);
      return stream;
    };
    let stream: WriteStream;
    try {
      stream = await open();
    } catch (error) {
      if (!(error instanceof PathNotFoundError)) throw error;
      await fs.mkdir(dirname(full), { recursive: true });
      stream = await open();
    }
    startWriteback(stream);
    if (durable) {
      // `flush` synced the data before the close: remember it for the move that follows.
      stream.once("close", () => {
        if (stream.errored === null) this.synced.add(full);
      });
    }
    return stream;
  }

  async appendContent(path: string, content: Uint8Array | string, expected: number): Promise<number> {
    const full = this.full(path);
    // Synced again only once this append is (a failed one may leave the file unsynced).
    this.synced.delete(full);
    const data = asBuffer(content);
    const addon = this.addon;
    if (addon !== undefined && typeof addon.appendFile === "function") {
      const [errno, syscall, size] = await new Promise<[number, string | null, number]>((resolve) =>
        addon.appendFile(full, data, expected, true, (...result) => resolve(result)),
      );
      if (errno !== 0) throw mapError(systemError(errno, syscall ?? "appendFile", full), path);
      // Synced: a move that follows need not sync it again.
      if (size === expected) this.synced.add(full);
      return size;
    }
    // The same steps without the addon, a thread-pool round trip each. No O_CREAT: the file must
    // exist (an upload cancelled meanwhile is not brought back).
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(full, fsConstants.O_WRONLY | fsConstants.O_APPEND);
    } catch (error) {
      throw mapError(error, path);
    }
    try {
      const { size } = await handle.stat();
      if (size !== expected) return size;
      try {
        await handle.writeFile(data);
        await handle.datasync();
      } catch (error) {
        await handle.truncate(expected).catch(() => {});
        throw error;
      }
      this.synced.add(full);
      return size;
    } finally {
      await handle.close();
    }
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
    if (!this.synced.delete(from)) {
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
    }
    const to = this.full(dest);
    if (this.knownDirs.has(dirname(to))) {
      await this.renameInto(from, to);
      return;
    }
    // Probably a new directory (a new blob): stage it around the file, as putContent does.
    const plan = this.stagePlan(to);
    try {
      await fs.mkdir(dirname(plan.file), { recursive: true });
      await fs.rename(from, plan.file);
    } catch (error) {
      await removeTree(this.addon, plan.stage);
      throw mapError(error, source);
    }
    try {
      await fs.rename(plan.stage, plan.to);
      this.remember(dirname(to));
      return;
    } catch (error) {
      if (!STAGE_CONFLICTS.has(errorCode(error))) throw error;
    }
    this.carefulWrites++;
    await this.unstage(plan.stage, plan.file, to);
  }

  /**
   * The general path for a staged file whose directories could not be renamed into place (one
   * exists after all, or one above is missing): the file alone is moved, then the stage removed.
   */
  private async unstage(stage: string, staged: string, to: string): Promise<void> {
    await this.renameInto(staged, to);
    await removeTree(this.addon, stage);
  }

  async delete(path: string): Promise<void> {
    const full = this.full(path);
    this.synced.delete(full);
    // Rename first so a crash mid-delete never leaves a half-removed tree in the layout.
    const tmp = this.tempPath();
    if (this.addon !== undefined) {
      // Rename and removal in one job (a missing path is not an error there either).
      const addon = this.addon;
      const errno = await new Promise<number>((resolve) => addon.removeTree(full, resolve, tmp));
      if (errno !== 0) throw systemError(errno, "rm", full);
      return;
    }
    try {
      await fs.rename(full, tmp);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw error;
    }
    await removeTree(this.addon, tmp);
  }

  localFile(path: string): string {
    return this.full(path);
  }

  scratchPath(): string {
    return `${TMP_DIR}/${tmpName()}`;
  }

  private tempPath(): string {
    return join(this.root, TMP_DIR, tmpName());
  }

  /**
   * Renames `from` to `to`. When `to`'s directories do not exist yet they are built in the
   * temporary area around the file and renamed into place as one tree, so a crash never leaves an
   * empty directory (a tag without its link) in the layout.
   */
  private async renameInto(from: string, to: string): Promise<void> {
    const parent = dirname(to);
    try {
      await fs.rename(from, to);
      this.remember(parent);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      this.knownDirs.delete(parent);
    }
    try {
      await this.stageInto(from, to, true);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      // A directory remembered as existing was removed meanwhile: probe for real.
      this.knownDirs.clear();
      await this.stageInto(from, to, false);
    }
  }

  private async stageInto(from: string, to: string, trustKnown: boolean): Promise<void> {
    const missing: string[] = [];
    let existing = dirname(to);
    while (!((trustKnown && this.knownDirs.has(existing)) || (await isDirectory(existing)))) {
      missing.unshift(basename(existing));
      existing = dirname(existing);
    }
    if (missing.length === 0) {
      await fs.rename(from, to);
      this.remember(dirname(to));
      return;
    }
    const stage = this.tempPath();
    const staged = join(stage, ...missing.slice(1), basename(to));
    await fs.mkdir(dirname(staged), { recursive: true });
    await fs.rename(from, staged);
    try {
      await fs.rename(stage, join(existing, missing[0]!));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EEXIST" && code !== "ENOTEMPTY") {
        await fs.rename(staged, from).catch(() => {});
        await removeTree(this.addon, stage);
        throw error;
      }
      // Another writer created the directory meanwhile: it holds its own file, so move ours in.
      await fs.mkdir(dirname(to), { recursive: true });
      await fs.rename(staged, to);
      await removeTree(this.addon, stage);
    }
    this.remember(dirname(to));
  }

  /** Notes that `dir` exists, and so do its ancestors. */
  private remember(dir: string): void {
    if (this.knownDirs.size >= KNOWN_DIRS_LIMIT) this.knownDirs.clear();
    for (let d = dir; !this.knownDirs.has(d) && d.length > this.root.length; d = dirname(d)) {
      this.knownDirs.add(d);
    }
  }

  /** The nearest ancestor of `dir` known to exist, if any (the root is, once initialised). */
  private knownAncestor(dir: string, exists = (d: string) => this.knownDirs.has(d)): string | undefined {
    for (let d = dirname(dir); d.length >= this.root.length; d = dirname(d)) {
      if (exists(d)) return d;
      if (d === this.root) break;
    }
    return undefined;
  }
}

/** Why renaming a stage directory into place can fail while the staged file is still good. */
const STAGE_CONFLICTS = new Set<string | undefined>(["EEXIST", "ENOTEMPTY", "ENOENT"]);

const EMPTY = Buffer.alloc(0);

/**
 * One small file of a batch, as it will be written: `dirs` (a stage directory and any below it)
 * created in order, `file` written (or `source` moved there; synced when durable), then `from`
 * renamed to `to`, which publishes it at `full`.
 */
interface WritePlan {
  readonly full: string;
  readonly parent: string;
  readonly content: Buffer;
  readonly durable: boolean;
  /** The file moved in instead of writing `content`, and the size it must have. */
  readonly source?: string;
  readonly size?: number;
  /** Removes the tree at `full` (renamed to `to` first) instead of writing anything. */
  readonly remove?: boolean;
  /** The stage directory, when the file goes into new directories. */
  readonly stage?: string;
  readonly dirs?: readonly string[];
  readonly file: string;
  readonly from: string;
  readonly to: string;
}

/**
 * Carries out planned writes in order, in one thread-pool job with the native addon, else step
 * by step; stops at the first failure and says where. A failure before a file's rename leaves
 * nothing of that file behind; a failed rename (`syscall: "rename"`) leaves it in place.
 */
async function writeFiles(
  addon: NativeAddon | undefined,
  plans: readonly WritePlan[],
): Promise<{ index: number; error: unknown } | undefined> {
  if (addon !== undefined) {
    return new Promise((resolve) =>
      addon.writeFiles(
        plans.map((p) => {
          if (p.remove) return [p.full, p.to];
          const dirs = p.dirs === undefined ? null : [...p.dirs];
          return p.source === undefined
            ? [dirs, p.file, p.content, p.durable, p.from, p.to]
            : [dirs, p.file, null, p.durable, p.from, p.to, p.source, p.size ?? -1];
        }),
        (errno, syscall, index) => {
          if (errno === 0) return resolve(undefined);
          const plan = plans[index]!;
          const path =
            syscall === "rename" || syscall === "rm"
              ? plan.from
              : syscall === "move" || syscall === "size"
                ? plan.source!
                : plan.file;
          resolve({ index, error: systemError(errno, syscall ?? "writeFiles", path) });
        },
      ),
    );
  }
  for (const [index, plan] of plans.entries()) {
    if (plan.remove) {
      try {
        await fs.rename(plan.full, plan.to);
      } catch (error) {
        if (errorCode(error) === "ENOENT") continue;
        return { index, error };
      }
      try {
        await fs.rm(plan.to, { recursive: true, force: true });
      } catch (error) {
        return { index, error };
      }
      continue;
    }
    const created = plan.dirs?.[0] ?? plan.file;
    try {
      if (plan.source !== undefined && plan.size !== undefined) {
        const { size } = await fs.stat(plan.source);
        if (size !== plan.size) throw systemError(osConstants.errno.ERANGE, "size", plan.source);
      }
      for (const dir of plan.dirs ?? []) await fs.mkdir(dir);
      if (plan.source === undefined) await writeFileTo(plan.file, plan.content, plan.durable);
      else await moveFileTo(plan.source, plan.file, plan.durable);
    } catch (error) {
      await fs.rm(created, { recursive: true, force: true });
      return { index, error };
    }
    try {
      await fs.rename(plan.from, plan.to);
    } catch (error) {
      return { index, error };
    }
  }
  return undefined;
}

/** An error shaped as Node's fs makes them (code, errno, syscall, path) from a positive errno. */
function systemError(errno: number, syscall: string, path: string): NodeJS.ErrnoException {
  const [code, message] = getSystemErrorMap().get(-errno) ?? [`E${errno}`, "unknown error"];
  const error: NodeJS.ErrnoException = new Error(`${code}: ${message}, ${syscall} '${path}'`);
  Object.assign(error, { code, errno: -errno, syscall, path });
  return error;
}

/**
 * The error of a batch entry that moved a source in or removed a tree, when it failed before the
 * publishing rename: a missing source as PathNotFoundError, one of another size as
 * SourceSizeError; else as it came.
 */
function throwSourceError(plan: WritePlan, error: unknown): void {
  if (plan.remove || renameFailed(error)) {
    if (plan.remove) throw error;
    return;
  }
  const { syscall, code, path } = error as NodeJS.ErrnoException;
  if (syscall === "size") throw new SourceSizeError(plan.source!);
  if (code === "ENOENT" && path === plan.source) throw new PathNotFoundError(plan.source!);
  throw error;
}

function renameFailed(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).syscall === "rename";
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

function asBuffer(content: Uint8Array | string): Buffer {
  if (typeof content === "string") return Buffer.from(content);
  return Buffer.isBuffer(content)
    ? content
    : Buffer.from(content.buffer, content.byteOffset, content.byteLength);
}

/** Writes a whole small file, synced before it resolves when `durable`. */
async function writeFileTo(path: string, content: Uint8Array | string, durable: boolean): Promise<void> {
  if (!durable) {
    await fs.writeFile(path, content);
    return;
  }
  const handle = await fs.open(path, "w");
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Syncs `source` (when `durable`) and renames it to `file`; it stays where it was on a failure. */
async function moveFileTo(source: string, file: string, durable: boolean): Promise<void> {
  if (durable) {
    const handle = await fs.open(source, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  await fs.rename(source, file);
}

/** Removes a file or tree: in one thread-pool job with the addon, else through fs.rm's many. */
async function removeTree(addon: NativeAddon | undefined, path: string): Promise<void> {
  if (addon === undefined) return fs.rm(path, { recursive: true, force: true });
  const errno = await new Promise<number>((resolve) => addon.removeTree(path, resolve));
  if (errno !== 0) throw systemError(errno, "rm", path);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await fs.stat(path)).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

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
