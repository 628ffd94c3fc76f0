import { App, Chart } from "cdk8s";
import { LocalRegistry, type LocalRegistryProps } from "../constructs/index.js";
import { ENVIRONMENTS } from "./environments.js";

/** The chart of one environment; cdk8s synth and the Pulumi program both start from here. */
export function registryChart(
  app: App,
  environment: string,
  overrides: Partial<LocalRegistryProps> = {},
): Chart {
  const props = ENVIRONMENTS[environment];
  if (props === undefined) {
    throw new Error(
      `unknown environment ${JSON.stringify(environment)}; known: ${Object.keys(ENVIRONMENTS).join(", ")}`,
    );
  }
  const chart = new Chart(app, `local-registry-${environment}`, { disableResourceNameHashes: true });
  new LocalRegistry(chart, "registry", { ...props, ...overrides });
  return chart;
}

/** The plain Kubernetes objects of one environment. */
export function manifestsFor(
  environment: string,
  overrides: Partial<LocalRegistryProps> = {},
): Record<string, unknown>[] {
  return registryChart(
    new App({ outdir: "/nonexistent-not-written" }),
    environment,
    overrides,
  ).toJson() as Record<string, unknown>[];
}
