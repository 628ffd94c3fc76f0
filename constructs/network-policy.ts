import { Construct } from "constructs";
import { IntOrString, KubeNetworkPolicy, type NetworkPolicyPeer } from "cdk8s-plus-27/lib/imports/k8s.js";

export interface RegistryNetworkPolicyProps {
  readonly namespace: string;
  readonly name: string;
  readonly selectorLabels: Record<string, string>;
  /** Namespaces (by `kubernetes.io/metadata.name`) whose pods may pull and push on :5000. @default ["default"] */
  readonly clientNamespaces?: readonly string[];
  /** The namespace Prometheus scrapes :5001 from. @default "monitoring" */
  readonly monitoringNamespace?: string;
  /** CIDRs of upstream registries that sync and the pull-through cache reach on 443. @default none */
  readonly upstreamCidrs?: readonly string[];
}

/**
 * Deny by default; let in registry clients on 5000 and Prometheus on 5001; let out DNS to
 * kube-system and HTTPS to the upstreams in props.
 */
export class RegistryNetworkPolicy extends Construct {
  readonly policy: KubeNetworkPolicy;

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
    this.policy = new KubeNetworkPolicy(this, "policy", {
      metadata: { name: props.name, namespace: props.namespace, labels: props.selectorLabels },
      spec: {
        podSelector: { matchLabels: props.selectorLabels },
        policyTypes: ["Ingress", "Egress"],
        ingress: [
          {
            from: (props.clientNamespaces ?? ["default"]).map(inNamespace),
            ports: [{ port: IntOrString.fromNumber(5000), protocol: "TCP" }],
          },
          {
            from: [inNamespace(props.monitoringNamespace ?? "monitoring")],
            ports: [{ port: IntOrString.fromNumber(5001), protocol: "TCP" }],
          },
        ],
        egress: [
          {
            to: [inNamespace("kube-system")],
            ports: [
              { port: IntOrString.fromNumber(53), protocol: "UDP" },
              { port: IntOrString.fromNumber(53), protocol: "TCP" },
            ],
          },
          ...((props.upstreamCidrs ?? []).length > 0
            ? [
                {
                  to: props.upstreamCidrs!.map((cidr) => ({ ipBlock: { cidr } })),
                  ports: [{ port: IntOrString.fromNumber(443), protocol: "TCP" }],
                },
              ]
            : []),
        ],
      },
    });
  }
}
