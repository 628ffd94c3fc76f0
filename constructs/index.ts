/** Typed cdk8s constructs for the NEAM local registry; other NEAM stacks import from here. */
export * from "./local-registry.js";
export { renderRegistryConfig } from "./registry-config.js";
