import { Construct } from "constructs";
import {
  IntOrString,
  KubeNetworkPolicy,
  type NetworkPolicyEgressRule,
  type NetworkPolicyPeer,
} from "cdk8s-plus-27/lib/imports/k8s.js";

export interface RegistryNetworkPolicyProps {
  readonly namespace: string;
  readonly name: string;
  readonly selectorLabels: Record<string, string>;
  /** Namespaces (by `kubernetes.io/metadata.name`) whose pods may pull and push on :5000. @default ["default"] */
  readonly clientNamespaces?: readonly string[];
  /** The namespace Prometheus scrapes :5001 from. @default "monitoring" */
  readonly monitoringNamespace?: string;
  /** CIDRs of upstream registries that sync and the pull-through cache reach. @default none */
  readonly upstreamCidrs?: readonly string[];
  /** Ports of those upstreams. @default [443] */
  readonly upstreamPorts?: readonly number[];
  /** Labels of the maintenance CronJob pods: they may reach the registry on 5000, and nothing else. @default no such pods */
  readonly maintenanceLabels?: Record<string, string>;
}

/**
 * Deny by default; let in registry clients on 5000 and Prometheus on 5001; let out DNS to
 * kube-system and the upstreams in props. The maintenance CronJob pods get a policy of their own:
 * out to the registry on 5000 and DNS, nothing in.
 */
export class RegistryNetworkPolicy extends Construct {
  readonly policy: KubeNetworkPolicy;
  readonly maintenancePolicy?: KubeNetworkPolicy;

  constructor(scope: Construct, id: string, props: RegistryNetworkPolicyProps) {
    super(scope, id);
    const inNamespace = (name: string): NetworkPolicyPeer => ({
      namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": name } },
    });
    for (const cidr of props.upstreamCidrs ?? []) {
      if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(cidr))
        throw new Error(
          `LocalRegistry: networkPolicy.upstreamCidrs ${JSON.stringify(cidr)} is not an IPv4 CIDR`,
        );
    }
    const ports = props.upstreamPorts ?? [443];
    for (const port of ports) {
      if (!Number.isInteger(port) || port < 1 || port > 65535)
        throw new Error(`LocalRegistry: networkPolicy.upstreamPorts ${port} is not a port`);
    }
    const dns: NetworkPolicyEgressRule = {
      to: [inNamespace("kube-system")],
      ports: [
        { port: IntOrString.fromNumber(53), protocol: "UDP" },
        { port: IntOrString.fromNumber(53), protocol: "TCP" },
      ],
    };
    const registryPort = [{ port: IntOrString.fromNumber(5000), protocol: "TCP" }];
    const maintenance = props.maintenanceLabels;
    this.policy = new KubeNetworkPolicy(this, "policy", {
      metadata: { name: props.name, namespace: props.namespace, labels: props.selectorLabels },
      spec: {
        podSelector: { matchLabels: props.selectorLabels },
        policyTypes: ["Ingress", "Egress"],
        ingress: [
          {
            from: [
              ...(props.clientNamespaces ?? ["default"]).map(inNamespace),
              ...(maintenance ? [{ podSelector: { matchLabels: maintenance } }] : []),
            ],
            ports: registryPort,
          },
          {
            from: [inNamespace(props.monitoringNamespace ?? "monitoring")],
            ports: [{ port: IntOrString.fromNumber(5001), protocol: "TCP" }],
          },
        ],
        egress: [
          dns,
          ...((props.upstreamCidrs ?? []).length > 0
            ? [
                {
                  to: props.upstreamCidrs!.map((cidr) => ({ ipBlock: { cidr } })),
                  ports: ports.map((port) => ({ port: IntOrString.fromNumber(port), protocol: "TCP" })),
                },
              ]
            : []),
        ],
      },
    });
    if (maintenance !== undefined) {
      this.maintenancePolicy = new KubeNetworkPolicy(this, "maintenance", {
        metadata: { name: `${props.name}-maintenance`, namespace: props.namespace, labels: maintenance },
        spec: {
          podSelector: { matchLabels: maintenance },
          policyTypes: ["Ingress", "Egress"],
          ingress: [],
          egress: [
            dns,
            { to: [{ podSelector: { matchLabels: props.selectorLabels } }], ports: registryPort },
          ],
        },
      });
    }
  }
}
