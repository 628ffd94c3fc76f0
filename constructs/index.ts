/** Typed cdk8s constructs for the NEAM local registry; other NEAM stacks import from here. */
export * from "./local-registry.js";
export { DEFAULT_IMAGE } from "./defaults.js";
export { renderRegistryConfig } from "./registry-config.js";
export * from "./network-policy.js";
export * from "./monitoring.js";
export { registryAlerts, type AlertRule, type AlertOptions } from "./alerts.js";
export * from "./certificate.js";
export * from "./dashboard.js";
export * from "./sync-manifest.js";
export * from "./maintenance-jobs.js";
export * from "./node-config.js";
export * from "./registry-scaling.js";
export * from "./shared-storage.js";
export * from "./registry-workload.js";
