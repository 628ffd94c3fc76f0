/**
 * The contract between the registry and what deploys it: the config schema and its types, metric
 * names, the sync manifest's schema, ports, paths and defaults. The server and the constructs both
 * import from here, and every module re-exported here imports nothing of the registry runtime
 * (only zod, yaml and Node built-ins), so `neam-registry/constructs` loads no server code beyond
 * this. test/packaging checks that from an installed package.
 */
export { ConfigSchema, EMBEDDED_DEFAULT, type Config, type ConfigInput } from "../config/schema.js";
export { validateConfig, ConfigError } from "../config/load.js";
export { METRICS, type MetricName } from "../metrics/names.js";
export {
  parseSyncManifest,
  validateSyncManifest,
  isCronExpression,
  frequencyOf,
  schedulesOf,
  SyncManifestError,
  type SyncManifest,
  type SyncManifestInput,
} from "../sync/manifest.js";
export {
  mirrorConfig,
  upstreamHosts,
  NODE_CONFIG_DIRS,
  RUNTIME_FORMATS,
  type NodeFile,
  type RuntimeFormat,
} from "../sync/mirror-config.js";
export * from "./defaults.js";
