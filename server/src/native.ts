import { createRequire } from "node:module";

/** What server/native/native.c offers (see there). */
export interface NativeAddon {
  sendfile(
    socketFd: number,
    fileFd: number,
    offset: number,
    length: number,
    callback: (error: string | null, sent: number) => void,
  ): void;
  /** Writes (or, with a `source`, moves in), syncs and renames small files in one job: see write_file.c. */
  writeFiles(
    files: (
      | [dirs: string[] | null, file: string, content: Buffer, durable: boolean, from: string, to: string]
      | [
          dirs: string[] | null,
          file: string,
          content: null,
          durable: boolean,
          from: string,
          to: string,
          source: string,
          size: number,
        ]
      | [path: string, away: string]
    )[],
    callback: (errno: number, syscall: string | null, index: number) => void,
  ): void;
  /**
   * Appends to an existing file holding exactly `expected` bytes, synced when `durable`, in one
   * job; calls back with the file's size before (not `expected`: nothing was written).
   */
  appendFile(
    path: string,
    content: Buffer,
    expected: number,
    durable: boolean,
    callback: (errno: number, syscall: string | null, size: number) => void,
  ): void;
  trimMemory(): void;
  /**
   * Removes a file or a whole tree in one thread-pool job, renamed to `away` first when given;
   * calls back with 0 (also when it was not there) or an errno.
   */
  removeTree(path: string, callback: (errno: number) => void, away?: string): void;
  /** Bytes of an OpenSSL SHA256_CTX, for the buffers the sha256 functions take (see sha256.c). */
  sha256ContextBytes: number;
  sha256Init(context: Buffer): void;
  sha256Update(context: Buffer, data: Buffer): void;
  sha256Digest(context: Buffer): Buffer;
  sha256Save(context: Buffer): Buffer;
  /** The byte count the saved state covers, or -1 when it is malformed. */
  sha256Load(context: Buffer, saved: Buffer): number;
}

/**
 * The optional native addon, built by `npm run build` where a compiler exists (and in the image).
 * Undefined without it, or with NEAM_REGISTRY_NATIVE=0: the registry then streams pulls and
 * writes small files through Node's fs, slower but the same.
 */
export const native: NativeAddon | undefined = (() => {
  if (process.env.NEAM_REGISTRY_NATIVE === "0") return undefined;
  try {
    return createRequire(import.meta.url)(
      "../../../server/native/build/Release/neam_native.node",
    ) as NativeAddon;
  } catch {
    return undefined;
  }
})();
