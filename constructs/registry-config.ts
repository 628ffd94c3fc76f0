import { stringify } from "yaml";
import { validateConfig, type Config, type ConfigInput } from "../server/src/contract/index.js";

/**
 * The registry's `config.yml` as the constructs render it: typed with the server's own config
 * input type, and checked by the server's own validator at synth time, so a ConfigMap that
 * synthesizes is one the registry will start with.
 */
export function renderRegistryConfig(input: ConfigInput): { yaml: string; config: Config } {
  let config: Config;
  try {
    config = validateConfig(input);
  } catch (error) {
    throw new Error(`LocalRegistry: the rendered registry config is invalid: ${(error as Error).message}`);
  }
  return { yaml: stringify(input), config };
}
