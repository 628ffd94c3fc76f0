/** The package's public API for other NEAM code: config model, metric names, media types, the domain. */
export { ConfigSchema, EMBEDDED_DEFAULT, type Config, type ConfigInput } from "./config/schema.js";
export { loadConfig, validateConfig, ConfigError } from "./config/load.js";
export { METRICS, type MetricName } from "./metrics/names.js";
export { MediaType } from "./registry/media-types.js";
export { Registry, type RegistryOptions } from "./registry/registry.js";
export { RegistryError, ERROR_CODES, type ErrorCode } from "./registry/errors.js";
export type { StorageDriver, FileInfo } from "./storage/driver.js";
export { FilesystemDriver } from "./storage/filesystem.js";
export {
  parseSyncManifest,
  validateSyncManifest,
  isCronExpression,
  frequencyOf,
  schedulesOf,
  SyncManifestError,
  type SyncManifest,
  type SyncManifestInput,
} from "./sync/manifest.js";
export { DEFAULT_GC_GRACE } from "./contract/defaults.js";
export type { CollectionOptions, CollectionReport } from "./gc/collector.js";
export type { SyncReport, ImageResult } from "./sync/syncer.js";
