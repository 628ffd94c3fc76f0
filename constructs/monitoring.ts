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
    const serviceMonitor: IServiceMonitor = {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: { name: props.serviceName, namespace: props.namespace, labels },
      spec: {
        selector: { matchLabels: props.selectorLabels },
        namespaceSelector: { matchNames: [props.namespace] },
        endpoints: [{ port: "metrics", path: "/metrics", interval }],
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
