import type { Readable, Writable } from "node:stream";

/**
 * The storage contract every backend implements (filesystem now, S3 later). Paths are logical,
 * `/`-separated and absolute (`/docker/registry/v2/...`); drivers map them onto their medium.
 * The registry's logic lives above this interface; a driver only moves bytes.
 */
export interface StorageDriver {
  readonly name: string;
  /** Whole content of a small file. Throws PathNotFoundError. */
  getContent(path: string): Promise<Buffer>;
  /**
   * Replaces a small file atomically: readers see the old content or the new, never a mix. Durable
   * (synced before it resolves) unless `durable: false`, for state that is cheap to lose.
   */
  putContent(path: string, content: Uint8Array | string, options?: { durable?: boolean }): Promise<void>;
  /**
   * Writes several small files as `putContent` does, in order: each is in place before the next
   * is written (a blob before its link, a manifest before its tag). A failure stops there. An
   * entry with a `source` moves that file to its path as `move` does (a verified upload becoming
   * a blob, in the same batch as its link): PathNotFoundError when the source is missing,
   * SourceSizeError (nothing moved) when it does not hold `size` bytes. An entry with `remove`
   * removes the tree at its path, as `delete` does, in its turn (the upload, once its blob is in).
   */
  putContents(files: readonly ContentWrite[]): Promise<void>;
  /**
   * Appends `content` durably to the existing file `path`, only if it holds exactly `expected`
   * bytes; returns the size it held (when not `expected`, nothing was written). Throws
   * PathNotFoundError. For a chunk of an upload already read whole: one step where a `writer`
   * takes several. Drivers that cannot append in place lack it.
   */
  appendContent?(path: string, content: Uint8Array | string, expected: number): Promise<number>;
  /** Streams a file from `offset` to `end` (inclusive) or its end. Throws PathNotFoundError. */
  reader(path: string, offset?: number, end?: number): Promise<Readable>;
  /**
   * A stream that appends to (or, with `append: false`, replaces) a file, creating it if needed.
   * With `durable`, the data is synced before the stream closes.
   */
  writer(path: string, append: boolean, options?: { durable?: boolean }): Promise<Writable>;
  /** Size, time and an opaque version that changes whenever the file is replaced. Throws PathNotFoundError. */
  stat(path: string): Promise<FileInfo>;
  /** Names of the direct children of a directory. Throws PathNotFoundError. */
  list(path: string): Promise<string[]>;
  /** Makes `source`'s data durable and renames it to `dest` atomically, replacing any file there. */
  move(source: string, dest: string): Promise<void>;
  /** Removes a file or a whole tree; a missing path is not an error. */
  delete(path: string): Promise<void>;
  /**
   * A fresh path outside the registry layout for content on its way in (written, verified, then
   * moved into place). What a crash leaves there is cleared when the driver starts.
   */
  scratchPath(): string;
  /**
   * Where the file lives on this machine's filesystem, for zero-copy serving (sendfile); only
   * drivers that keep files locally have it.
   */
  localFile?(path: string): string;
  /**
   * Removes what interrupted writes left outside the layout before `before` (on S3: multipart
   * uploads and scratch objects); says what it removed or, on a dry run, would. Upload purging
   * calls it. Drivers whose crashes leave nothing of the kind lack it.
   */
  purgeAbandoned?(before: Date, dryRun?: boolean): Promise<string[]>;
  /** A URL a client may fetch the file from directly, for a redirect (S3: presigned, short-lived). */
  redirectURL?(path: string): Promise<string>;
}

/** A file for `putContents`: its content, or a file in storage (`source`) moved there. */
export type ContentWrite =
  | { path: string; content: Uint8Array | string; durable?: boolean; source?: undefined; remove?: undefined }
  | { path: string; source: string; size?: number; content?: undefined; remove?: undefined }
  | { path: string; remove: true; content?: undefined; source?: undefined };

/** A `putContents` source that does not hold the size it should: nothing was moved. */
export class SourceSizeError extends Error {
  constructor(readonly path: string) {
    super(`${path} does not hold the expected size`);
    this.name = "SourceSizeError";
  }
}

export interface FileInfo {
  readonly path: string;
  readonly size: number;
  readonly modTime: Date;
  readonly isDir: boolean;
  /** Changes whenever the content is replaced (inode and mtime on a filesystem, ETag on S3). */
  readonly version: string;
}

export class PathNotFoundError extends Error {
  constructor(readonly path: string) {
    super(`path not found: ${path}`);
    this.name = "PathNotFoundError";
  }
}

export function isNotFound(error: unknown): error is PathNotFoundError {
  return error instanceof PathNotFoundError;
}
