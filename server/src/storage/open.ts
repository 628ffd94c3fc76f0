import type { Config } from "../config/schema.js";
import type { StorageDriver } from "./driver.js";
import { FilesystemDriver } from "./filesystem.js";

/**
 * The storage driver the config names: `storage.s3` when set, else `storage.filesystem`. With
 * `init`, it is checked and prepared for serving (the filesystem root created, the S3 bucket
 * reached — a ConfigError naming the key otherwise — and what a crash left cleared); workers of
 * a started registry open it without. With `shared` (other replicas use the same storage), a
 * filesystem's scratch files are kept: they may be another replica's uploads in flight.
 *
 * The S3 driver is imported only when the config names it: the AWS SDK it brings costs a
 * filesystem registry about 20 MiB of RSS for nothing.
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
  if (config.storage.s3 !== undefined) {
    const { S3Driver } = await import("./s3.js");
    const driver = new S3Driver(config.storage.s3);
    if (options.init) await driver.init();
    return driver;
  }
  const makeFilesystem = options.filesystem ?? ((root: string) => new FilesystemDriver(root));
  const driver = makeFilesystem(config.storage.filesystem.rootdirectory);
  if (options.init) await driver.init(options.shared ?? false);
  return driver;
}

/** Where the registry keeps its data, for logs: a directory, or an S3 bucket. */
export function storageLocation(driver: StorageDriver): string {
  if (driver instanceof FilesystemDriver) return driver.root;
  // The S3 driver's (not imported here: see openStorage).
  const bucket = (driver as { bucket?: unknown }).bucket;
  if (driver.name === "s3" && typeof bucket === "string") return `s3://${bucket}`;
  return driver.name;
}
