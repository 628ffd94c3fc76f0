import { stringify } from "yaml";
import { validateConfig, type Config, type ConfigInput } from "../server/src/contract/index.js";
import type { RedisConfig, S3DriverConfig } from "./shared-storage.js";

/**
 * The sections a scale-out deployment adds, typed by the reference registry's keys
 * (`storage.s3`, `redis`; see shared-storage.ts, which documents them for construct users) and
 * checked, with the rest, by the server's own validator.
 */
export interface SharedStateConfig {
  readonly s3?: S3DriverConfig;
  readonly redis?: RedisConfig;
}

/**
 * The registry's `config.yml` as the constructs render it: typed with the server's own config
 * input type, and checked by the server's own validator at synth time, so a ConfigMap that
 * synthesizes is one the registry will start with.
 */
export function renderRegistryConfig(
  input: ConfigInput,
  shared: SharedStateConfig = {},
): { yaml: string; config: Config } {
  const rendered = {
    ...input,
    ...(shared.s3 !== undefined ? { storage: { s3: shared.s3, ...input.storage } } : {}),
    ...(shared.redis !== undefined ? { redis: shared.redis } : {}),
  } as ConfigInput;
  let config: Config;
  try {
    config = validateConfig(rendered);
  } catch (error) {
    throw new Error(`LocalRegistry: the rendered registry config is invalid: ${(error as Error).message}`);
  }
  return { yaml: stringify(rendered), config };
}
