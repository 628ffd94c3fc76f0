import { readdirSync, readFileSync, statSync } from "node:fs";
import { PathNotFoundError, type FileInfo, type StorageDriver } from "../storage/driver.js";

/** Synchronous reads run back to back for at most this long before the event loop gets a turn. */
const SLICE_MS = 2;

/**
 * The driver a collection reads through. A mark and sweep reads every manifest and stats every
 * unreferenced blob: hundreds of thousands of small calls, where Node's async fs spends ~40 µs of
 * main-thread time per call (thread-pool hand-off, promise, FileInfo) for ~3 µs of kernel work.
 * On a driver that keeps files locally, reads are made synchronously instead, in slices of a
 * few milliseconds with a yield to the event loop between them, so requests served meanwhile
 * wait at most one slice. Writes and deletes still go through the driver itself. Other drivers
 * (object stores) are used as they are.
 */
export function readsForCollection(driver: StorageDriver): StorageDriver {
  if (driver.localFile === undefined) return driver;
  const local = (path: string) => driver.localFile!(path);
  let sliceStart = performance.now();
  /** Resolves at once while the slice lasts; then after a turn of the event loop. */
  const turn = async (): Promise<void> => {
    if (performance.now() - sliceStart < SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    sliceStart = performance.now();
  };
  const sync = async <T>(path: string, work: (full: string) => T): Promise<T> => {
    await turn();
    try {
      return work(local(path));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") throw new PathNotFoundError(path);
      throw error;
    }
  };
  return {
    name: driver.name,
    putContent: driver.putContent.bind(driver),
    putContents: driver.putContents.bind(driver),
    reader: driver.reader.bind(driver),
    writer: driver.writer.bind(driver),
    move: driver.move.bind(driver),
    delete: driver.delete.bind(driver),
    scratchPath: driver.scratchPath.bind(driver),
    localFile: local,
    getContent: (path: string) => sync(path, (full) => readFileSync(full)),
    list: (path: string) => sync(path, (full) => readdirSync(full)),
    stat: (path: string) =>
      sync(path, (full): FileInfo => {
        const s = statSync(full);
        return {
          path,
          size: s.size,
          modTime: s.mtime,
          isDir: s.isDirectory(),
          version: `${s.ino}:${s.mtimeMs}:${s.size}`,
        };
      }),
  };
}
