import { createHash } from "node:crypto";
import { Construct } from "constructs";
import { KubeConfigMap } from "cdk8s-plus-27/lib/imports/k8s.js";
import { METRICS } from "../server/src/contract/index.js";

/** A Grafana panel, typed for what this dashboard uses (schemaVersion 39). */
export interface Panel {
  readonly id: number;
  readonly title: string;
  readonly type: "stat" | "timeseries" | "gauge";
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly datasource: { readonly type: "prometheus"; readonly uid: "${datasource}" };
  readonly targets: readonly {
    readonly refId: string;
    readonly expr: string;
    readonly legendFormat?: string;
  }[];
  readonly fieldConfig: {
    readonly defaults: { readonly unit?: string; readonly min?: number; readonly max?: number };
    readonly overrides: [];
  };
  readonly options?: Record<string, unknown>;
}

export interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly tags: readonly string[];
  readonly schemaVersion: number;
  readonly time: { readonly from: string; readonly to: string };
  readonly refresh: string;
  readonly templating: { readonly list: readonly Record<string, unknown>[] };
  readonly panels: readonly Panel[];
}

interface PanelSpec {
  readonly title: string;
  readonly type: Panel["type"];
  readonly unit?: string;
  readonly max?: number;
  readonly queries: readonly (string | { readonly expr: string; readonly legend: string })[];
}

/**
 * "Local Registry Overview", built from typed panels over the metric names the server exports:
 * availability, request rate and latency, error rate, storage used and free, image counts, sync
 * and garbage collection status, certificate expiry.
 */
export function registryDashboard(job: string, uid = "neam-local-registry"): Dashboard {
  const sel = `job="${job}"`;
  const m = METRICS;
  const rows: PanelSpec[][] = [
    [
      {
        title: "Availability",
        type: "stat",
        unit: "percentunit",
        max: 1,
        queries: [`avg_over_time(up{${sel}}[$__range])`],
      },
      {
        title: "Requests per second",
        type: "stat",
        unit: "reqps",
        queries: [`sum(rate(${m.httpRequestsTotal}{${sel}}[$__rate_interval]))`],
      },
      {
        title: "Error rate (5xx)",
        type: "stat",
        unit: "percentunit",
        queries: [
          `sum(rate(${m.httpRequestsTotal}{${sel},status=~"5.."}[$__rate_interval])) / sum(rate(${m.httpRequestsTotal}{${sel}}[$__rate_interval]))`,
        ],
      },
      {
        title: "Storage free",
        type: "gauge",
        unit: "percentunit",
        max: 1,
        queries: [`${m.storageFreeBytes}{${sel}} / ${m.storageCapacityBytes}{${sel}}`],
      },
    ],
    [
      {
        title: "Request rate by route",
        type: "timeseries",
        unit: "reqps",
        queries: [
          {
            expr: `sum by (route, method) (rate(${m.httpRequestsTotal}{${sel}}[$__rate_interval]))`,
            legend: "{{method}} {{route}}",
          },
        ],
      },
      {
        title: "Latency (p50 / p99) by route",
        type: "timeseries",
        unit: "s",
        queries: [
          {
            expr: `histogram_quantile(0.5, sum by (le, route) (rate(${m.httpRequestDurationSeconds}_bucket{${sel}}[$__rate_interval])))`,
            legend: "p50 {{route}}",
          },
          {
            expr: `histogram_quantile(0.99, sum by (le, route) (rate(${m.httpRequestDurationSeconds}_bucket{${sel}}[$__rate_interval])))`,
            legend: "p99 {{route}}",
          },
        ],
      },
    ],
    [
      {
        title: "Responses by status",
        type: "timeseries",
        unit: "reqps",
        queries: [
          {
            expr: `sum by (status) (rate(${m.httpRequestsTotal}{${sel}}[$__rate_interval]))`,
            legend: "{{status}}",
          },
        ],
      },
      {
        title: "Storage used and free",
        type: "timeseries",
        unit: "bytes",
        queries: [
          { expr: `${m.storageBytes}{${sel}}`, legend: "blob data" },
          { expr: `${m.storageFreeBytes}{${sel}}`, legend: "free" },
        ],
      },
    ],
    [
      {
        title: "Repositories, manifests, blobs",
        type: "timeseries",
        queries: [
          { expr: `${m.repositoryCount}{${sel}}`, legend: "repositories" },
          { expr: `${m.manifestCount}{${sel}}`, legend: "manifests" },
          { expr: `${m.blobCount}{${sel}}`, legend: "blobs" },
        ],
      },
      {
        title: "Upload throughput",
        type: "timeseries",
        unit: "Bps",
        queries: [`sum(rate(${m.uploadBytesTotal}{${sel}}[$__rate_interval]))`],
      },
    ],
    [
      {
        title: "Since the last successful sync",
        type: "stat",
        unit: "s",
        queries: [`time() - ${m.taskLastSuccessTimestampSeconds}{${sel},task="sync"}`],
      },
      {
        title: "Images failed in the last sync",
        type: "stat",
        queries: [`${m.taskLastRunItems}{${sel},task="sync",kind="images_failed"}`],
      },
      {
        title: "Since the last successful garbage collection",
        type: "stat",
        unit: "s",
        queries: [`time() - ${m.taskLastSuccessTimestampSeconds}{${sel},task="gc"}`],
      },
      {
        title: "Freed by the last garbage collection",
        type: "stat",
        unit: "bytes",
        queries: [`${m.taskLastRunItems}{${sel},task="gc",kind="bytes_freed"}`],
      },
      {
        title: "Since the last successful backup",
        type: "stat",
        unit: "s",
        queries: [`time() - ${m.taskLastSuccessTimestampSeconds}{${sel},task="backup"}`],
      },
      {
        title: "Certificate expires in",
        type: "stat",
        unit: "s",
        queries: [`${m.tlsCertificateExpiryTimestampSeconds}{${sel}} - time()`],
      },
    ],
  ];
  let id = 0;
  const panels: Panel[] = [];
  rows.forEach((row, r) => {
    const width = Math.floor(24 / row.length);
    row.forEach((spec, c) => {
      panels.push({
        id: ++id,
        title: spec.title,
        type: spec.type,
        gridPos: { x: c * width, y: r * 8, w: width, h: spec.type === "timeseries" ? 8 : 4 },
        datasource: { type: "prometheus", uid: "${datasource}" },
        targets: spec.queries.map((q, i) => ({
          refId: String.fromCharCode(65 + i),
          ...(typeof q === "string" ? { expr: q } : { expr: q.expr, legendFormat: q.legend }),
        })),
        fieldConfig: {
          defaults: {
            ...(spec.unit ? { unit: spec.unit } : {}),
            ...(spec.max !== undefined ? { min: 0, max: spec.max } : {}),
          },
          overrides: [],
        },
      });
    });
  });
  return {
    uid,
    title: "Local Registry Overview",
    tags: ["neam", "registry"],
    schemaVersion: 39,
    time: { from: "now-6h", to: "now" },
    refresh: "30s",
    templating: {
      list: [{ name: "datasource", type: "datasource", query: "prometheus", label: "Data source" }],
    },
    panels,
  };
}

export interface RegistryDashboardProps {
  readonly namespace: string;
  readonly job: string;
  /**
   * Grafana's dashboard uid (at most 40 characters), unique per registry so two registries'
   * dashboards do not replace each other. @default derived from namespace and job
   */
  readonly uid?: string;
  /** Labels the Grafana sidecar selects on. @default { grafana_dashboard: "1" } (kube-prometheus-stack) */
  readonly labels?: Record<string, string>;
}

/** The dashboard as a ConfigMap the kube-prometheus-stack Grafana sidecar loads. */
export class RegistryDashboard extends Construct {
  readonly configMap: KubeConfigMap;
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: RegistryDashboardProps) {
    super(scope, id);
    this.dashboard = registryDashboard(props.job, props.uid ?? dashboardUid(props.namespace, props.job));
    this.configMap = new KubeConfigMap(this, "dashboard", {
      metadata: {
        name: `${props.job}-dashboard`,
        namespace: props.namespace,
        labels: props.labels ?? { grafana_dashboard: "1" },
      },
      data: { "local-registry-overview.json": JSON.stringify(this.dashboard, null, 2) },
    });
  }
}

/** `neam-registry-` and a hash of namespace and name: stable, unique per registry, within Grafana's 40. */
export function dashboardUid(namespace: string, job: string): string {
  return `neam-registry-${createHash("sha256").update(`${namespace}/${job}`).digest("hex").slice(0, 16)}`;
}
