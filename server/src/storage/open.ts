import type { Config } from "../config/schema.js";
import type { StorageDriver } from "./driver.js";
import { FilesystemDriver } from "./filesystem.js";
import { S3Driver } from "./s3.js";

/**
 * The storage driver the config names: `storage.s3` when set, else `storage.filesystem`. With
 * `init`, it is checked and prepared for serving (the filesystem root created, the S3 bucket
 * reached — a ConfigError naming the key otherwise — and what a crash left cleared); workers of
 * a started registry open it without. With `shared` (other replicas use the same storage), a
 * filesystem's scratch files are kept: they may be another replica's uploads in flight.
 */
export async function openStorage(
  config: Config,
  options: {
    init: boolean;
    shared?: boolean;
    /** Makes the filesystem driver (serve's observes its writes for the storage gauges). */
    filesystem?: (root: string) => FilesystemDriver;
  },
): Promise<StorageDriver> {
  const makeFilesystem = options.filesystem ?? ((root: string) => new FilesystemDriver(root));
  const driver =
    config.storage.s3 !== undefined
      ? new S3Driver(config.storage.s3)
      : makeFilesystem(config.storage.filesystem.rootdirectory);
  if (options.init) {
    if (driver instanceof FilesystemDriver) await driver.init(options.shared ?? false);
    else await driver.init();
  }
  return driver;
}

/** Where the registry keeps its data, for logs: a directory, or an S3 bucket. */
export function storageLocation(driver: StorageDriver): string {
  if (driver instanceof FilesystemDriver) return driver.root;
  if (driver instanceof S3Driver) return `s3://${driver.bucket}`;
  return driver.name;
}
