import { ApiObject } from "cdk8s";
import { Construct } from "constructs";
import type { IPrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import type { IServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { registryAlerts, type AlertOptions } from "./alerts.js";

export interface RegistryMonitoringProps {
  readonly namespace: string;
  /** The registry Service (its name is the `job` of the scrape target). */
  readonly serviceName: string;
  readonly selectorLabels: Record<string, string>;
  /** @default "15s" (the guide's) */
  readonly interval?: string;
  /**
   * How long one scrape may take; at most `interval` (Prometheus refuses more). The first scrape
   * of a large store walks it, so the default is the longest allowed. @default the interval
   */
  readonly scrapeTimeout?: string;
  /** Labels the Prometheus instance selects ServiceMonitors and rules by. @default { release: "kube-prometheus-stack" } */
  readonly prometheusLabels?: Record<string, string>;
  /** @default the defaults of AlertOptions */
  readonly alerts?: Omit<AlertOptions, "job">;
}

/** A ServiceMonitor for the metrics port and the PrometheusRule with the registry's alerts (prometheus-operator CRDs, typed). */
export class RegistryMonitoring extends Construct {
  readonly serviceMonitor: ApiObject;
  readonly prometheusRule: ApiObject;

  constructor(scope: Construct, id: string, props: RegistryMonitoringProps) {
    super(scope, id);
    const labels = {
      ...props.selectorLabels,
      ...(props.prometheusLabels ?? { release: "kube-prometheus-stack" }),
    };
    const interval = props.interval ?? "15s";
    if (!/^\d+(ms|s|m|h)$/.test(interval))
      throw new Error(
        `LocalRegistry: monitoring.serviceMonitor.interval ${JSON.stringify(interval)} is not a duration`,
      );
    const scrapeTimeout = props.scrapeTimeout ?? interval;
    if (!/^\d+(ms|s|m|h)$/.test(scrapeTimeout))
      throw new Error(
        `LocalRegistry: monitoring.serviceMonitor.scrapeTimeout ${JSON.stringify(scrapeTimeout)} is not a duration`,
      );
    if (durationMs(scrapeTimeout) > durationMs(interval))
      throw new Error(
        `LocalRegistry: monitoring.serviceMonitor.scrapeTimeout ${scrapeTimeout} is longer than the interval ${interval} (Prometheus refuses it)`,
      );
    const serviceMonitor: IServiceMonitor = {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: { name: props.serviceName, namespace: props.namespace, labels },
      spec: {
        selector: { matchLabels: props.selectorLabels },
        namespaceSelector: { matchNames: [props.namespace] },
        endpoints: [{ port: "metrics", path: "/metrics", interval, scrapeTimeout }],
      },
    };
    this.serviceMonitor = new ApiObject(this, "service-monitor", serviceMonitor);
    const rule: IPrometheusRule = {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "PrometheusRule",
      metadata: { name: `${props.serviceName}-alerts`, namespace: props.namespace, labels },
      spec: {
        groups: [
          { name: "local-registry", rules: registryAlerts({ job: props.serviceName, ...props.alerts }) },
        ],
      },
    };
    this.prometheusRule = new ApiObject(this, "prometheus-rule", rule);
  }
}

function durationMs(value: string): number {
  const [, n, unit] = /^(\d+)(ms|s|m|h)$/.exec(value)!;
  return Number(n) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as "ms" | "s" | "m" | "h"];
}
