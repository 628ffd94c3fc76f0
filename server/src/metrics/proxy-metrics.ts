import { Counter, type Registry as PromRegistry } from "prom-client";
import { METRICS } from "./names.js";

/** What the pull-through cache served from storage, what it fetched, and how often the upstream failed. */
export function proxyMetrics(register: PromRegistry) {
  const lookups = new Counter({
    name: METRICS.proxyLookupsTotal,
    help: "Blobs and manifests asked of the pull-through cache, by kind and outcome (hit: served from storage; miss: fetched).",
    labelNames: ["kind", "outcome"],
    registers: [register],
  });
  const fetched = new Counter({
    name: METRICS.proxyFetchedBytesTotal,
    help: "Bytes the pull-through cache fetched from the upstream.",
    registers: [register],
  });
  const upstreamErrors = new Counter({
    name: METRICS.proxyUpstreamErrorsTotal,
    help: "Times the upstream could not be reached or answered an error (the cache was served instead, when it had the content).",
    registers: [register],
  });
  return {
    onLookup: (kind: "blob" | "manifest", outcome: "hit" | "miss", bytes?: number) => {
      lookups.inc({ kind, outcome });
      if (bytes !== undefined) fetched.inc(bytes);
    },
    onUpstreamError: () => upstreamErrors.inc(),
  };
}
