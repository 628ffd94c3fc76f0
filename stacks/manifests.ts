import { App, Chart } from "cdk8s";
import { LocalRegistry, type LocalRegistryProps } from "../constructs/index.js";
import { ENVIRONMENTS } from "./environments.js";

/** Props that override some of an environment's, at any depth (`{ image: { tag: "0.2.0" } }`). */
export type PropsOverrides = DeepPartial<LocalRegistryProps>;
type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/** The chart of one environment; cdk8s synth and the Pulumi program both start from here. */
export function registryChart(app: App, environment: string, overrides: PropsOverrides = {}): Chart {
  const chart = new Chart(app, `local-registry-${environment}`, { disableResourceNameHashes: true });
  new LocalRegistry(chart, "registry", environmentProps(environment, overrides));
  return chart;
}

/**
 * An environment's props with `overrides` merged in deeply: an override of `image.tag` keeps the
 * environment's `image.repository` (a shallow merge deployed `neam-registry:<tag>` from Docker Hub).
 * Arrays and scalars replace; `undefined` leaves the environment's value.
 */
export function environmentProps(environment: string, overrides: PropsOverrides = {}): LocalRegistryProps {
  const props = ENVIRONMENTS[environment];
  if (props === undefined) {
    throw new Error(
      `unknown environment ${JSON.stringify(environment)}; known: ${Object.keys(ENVIRONMENTS).join(", ")}`,
    );
  }
  return deepMerge(props, overrides) as LocalRegistryProps;
}

/** The plain Kubernetes objects of one environment. */
export function manifestsFor(environment: string, overrides: PropsOverrides = {}): Record<string, unknown>[] {
  return registryChart(
    new App({ outdir: "/nonexistent-not-written" }),
    environment,
    overrides,
  ).toJson() as Record<string, unknown>[];
}

function deepMerge(base: unknown, override: unknown): unknown {
  if (override === undefined) return base;
  if (!isPlainObject(base) || !isPlainObject(override)) return override;
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) merged[key] = deepMerge(base[key], value);
  return merged;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
