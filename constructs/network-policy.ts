import { Construct } from "constructs";
import {
  IntOrString,
  KubeNetworkPolicy,
  type NetworkPolicyEgressRule,
  type NetworkPolicyIngressRule,
  type NetworkPolicyPeer,
} from "cdk8s-plus-27/lib/imports/k8s.js";
import { checkCidr, checkDnsLabel, checkPort } from "./validation.js";

/** Where the pods' DNS queries go (port 53, UDP and TCP). */
export interface DnsEgressProps {
  /**
   * The cluster DNS pods (CoreDNS / kube-dns), selected by label in their namespace.
   * `false` when every query goes to the addresses in `cidrs`. @default { namespace: "kube-system", podLabels: { "k8s-app": "kube-dns" } }
   */
  readonly clusterDns?:
    false | { readonly namespace?: string; readonly podLabels?: Readonly<Record<string, string>> };
  /**
   * DNS servers by address. With NodeLocal DNSCache give its link-local address and, in its
   * iptables mode, the kube-dns Service IP it also answers on: `["169.254.20.10/32", "10.96.0.10/32"]`.
   * @default none
   */
  readonly cidrs?: readonly string[];
}

/**
 * One destination the registry pods may open connections to (an upstream mirror, the S3 endpoint,
 * Redis): addresses, pods of a namespace, or both, on one TCP port.
 */
export interface EgressTarget {
  readonly cidrs?: readonly string[];
  /** Pods in the cluster (an in-cluster Ceph RGW or Redis), selected by namespace and labels. */
  readonly pods?: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> };
  readonly port: number;
  /** The prop the target comes from, for errors. @default "upstreams.egress" */
  readonly prop?: string;
}

export interface RegistryNetworkPolicyProps {
  readonly namespace: string;
  readonly name: string;
  readonly selectorLabels: Record<string, string>;
  /** The registry's container port (clients, maintenance jobs). @default 5000 */
  readonly registryPort?: number;
  /** The metrics container port (Prometheus). @default 5001 */
  readonly metricsPort?: number;
  /** Namespaces (by `kubernetes.io/metadata.name`) whose pods may pull and push. @default ["default"] */
  readonly clientNamespaces?: readonly string[];
  /**
   * The nodes' addresses: containerd pulls from the node's IP, which NetworkPolicy treats as
   * external. Required (or `allowFromAnywhere`) when the policy is on. @default none
   */
  readonly nodeCidrs?: readonly string[];
  /** Clients outside the cluster that reach a NodePort/LoadBalancer Service. @default none */
  readonly externalCidrs?: readonly string[];
  /** Let any source reach the registry port (instead of `nodeCidrs`/`externalCidrs`). @default false */
  readonly allowFromAnywhere?: boolean;
  /** The namespace Prometheus scrapes the metrics port from. @default "monitoring" */
  readonly monitoringNamespace?: string;
  /** @default the cluster DNS pods in kube-system */
  readonly dns?: DnsEgressProps;
  /** Upstream mirrors that sync and the pull-through cache reach, the S3 endpoint, Redis. @default none */
  readonly egress?: readonly EgressTarget[];
  /** Labels of the maintenance CronJob pods: they may reach the registry port, and nothing else. @default no such pods */
  readonly maintenanceLabels?: Record<string, string>;
  /** Labels of the pre-pull DaemonSet pods: they need no network at all. @default no such pods */
  readonly prePullLabels?: Record<string, string>;
}

/**
 * Deny by default; let in registry clients (pods of the client namespaces, the nodes' containerd,
 * external clients of a NodePort/LoadBalancer) on the registry port and Prometheus on the metrics
 * port; let out DNS, the upstream mirrors, and the S3 endpoint and Redis of a scale-out
 * deployment. Replicas never connect to each other (they share S3 and Redis, nothing else), so no
 * rule admits one from another. The maintenance CronJob pods get a policy of their
 * own (out to the registry and DNS, nothing in), the pre-pull pods one that denies everything.
 * No rule ever has an empty `from`/`to` (which the API reads as "everyone").
 */
export class RegistryNetworkPolicy extends Construct {
  readonly policy: KubeNetworkPolicy;
  readonly maintenancePolicy?: KubeNetworkPolicy;
  readonly prePullPolicy?: KubeNetworkPolicy;

  constructor(scope: Construct, id: string, props: RegistryNetworkPolicyProps) {
    super(scope, id);
    const inNamespace = (name: string): NetworkPolicyPeer => ({
      namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": name } },
    });
    const cidrs = (prop: string, values: readonly string[] | undefined) =>
      (values ?? []).map((cidr) => ({ ipBlock: { cidr: checkCidr(prop, cidr) } }));
    const tcp = (port: number) => ({ port: IntOrString.fromNumber(port), protocol: "TCP" });
    const registryPort = props.registryPort ?? 5000;
    const metricsPort = props.metricsPort ?? 5001;
    const clientNamespaces = props.clientNamespaces ?? ["default"];
    clientNamespaces.forEach((n) => checkDnsLabel("networkPolicy.clientNamespaces", n));
    const nodes = cidrs("networkPolicy.nodeCidrs", props.nodeCidrs);
    const external = cidrs("networkPolicy.externalCidrs", props.externalCidrs);
    if (nodes.length === 0 && !props.allowFromAnywhere)
      throw new Error(
        "LocalRegistry: networkPolicy.nodeCidrs is required when the NetworkPolicy is on (containerd pulls from the nodes' IPs), or set networkPolicy.allowFromAnywhere",
      );

    const dnsPeers: NetworkPolicyPeer[] = [];
    const clusterDns = props.dns?.clusterDns ?? {};
    if (clusterDns !== false) {
      dnsPeers.push({
        namespaceSelector: {
          matchLabels: {
            "kubernetes.io/metadata.name": checkDnsLabel(
              "networkPolicy.dns.clusterDns.namespace",
              clusterDns.namespace ?? "kube-system",
            ),
          },
        },
        podSelector: { matchLabels: { ...(clusterDns.podLabels ?? { "k8s-app": "kube-dns" }) } },
      });
    }
    dnsPeers.push(...cidrs("networkPolicy.dns.cidrs", props.dns?.cidrs));
    if (dnsPeers.length === 0)
      throw new Error(
        "LocalRegistry: networkPolicy.dns has no target (clusterDns false and no cidrs): name the DNS servers",
      );
    const dns: NetworkPolicyEgressRule = {
      to: dnsPeers,
      ports: [
        { port: IntOrString.fromNumber(53), protocol: "UDP" },
        { port: IntOrString.fromNumber(53), protocol: "TCP" },
      ],
    };

    const maintenance = props.maintenanceLabels;
    const clientRule: NetworkPolicyIngressRule = props.allowFromAnywhere
      ? // No `from`: every source, said explicitly.
        { ports: [tcp(registryPort)] }
      : {
          from: [
            ...clientNamespaces.map(inNamespace),
            ...(maintenance ? [{ podSelector: { matchLabels: maintenance } }] : []),
            ...nodes,
            ...external,
          ],
          ports: [tcp(registryPort)],
        };
    const egress: NetworkPolicyEgressRule[] = [dns];
    for (const target of props.egress ?? []) {
      const prop = target.prop ?? "upstreams.egress";
      const to: NetworkPolicyPeer[] = [
        ...cidrs(`${prop}.cidrs`, target.cidrs),
        ...(target.pods !== undefined
          ? [
              {
                namespaceSelector: {
                  matchLabels: {
                    "kubernetes.io/metadata.name": checkDnsLabel(
                      `${prop}.pods.namespace`,
                      target.pods.namespace,
                    ),
                  },
                },
                podSelector: { matchLabels: { ...target.pods.labels } },
              },
            ]
          : []),
      ];
      // An empty `to` would admit every destination.
      if (to.length === 0) throw new Error(`LocalRegistry: ${prop} needs at least one CIDR or pod selector`);
      egress.push({ to, ports: [tcp(checkPort(`${prop} port`, target.port))] });
    }
    this.policy = new KubeNetworkPolicy(this, "policy", {
      metadata: { name: props.name, namespace: props.namespace, labels: props.selectorLabels },
      spec: {
        podSelector: { matchLabels: props.selectorLabels },
        policyTypes: ["Ingress", "Egress"],
        ingress: [
          clientRule,
          {
            from: [
              inNamespace(
                checkDnsLabel("networkPolicy.monitoringNamespace", props.monitoringNamespace ?? "monitoring"),
              ),
            ],
            ports: [tcp(metricsPort)],
          },
        ],
        egress,
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
            { to: [{ podSelector: { matchLabels: props.selectorLabels } }], ports: [tcp(registryPort)] },
          ],
        },
      });
    }
    if (props.prePullLabels !== undefined) {
      this.prePullPolicy = new KubeNetworkPolicy(this, "prepull", {
        metadata: { name: `${props.name}-prepull`, namespace: props.namespace, labels: props.prePullLabels },
        spec: {
          podSelector: { matchLabels: props.prePullLabels },
          policyTypes: ["Ingress", "Egress"],
          ingress: [],
          egress: [],
        },
      });
    }
  }
}
