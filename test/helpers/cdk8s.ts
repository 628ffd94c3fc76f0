import { Testing, type App } from "cdk8s";

/**
 * An app for synthesizing charts in memory. `Testing.app()` makes a temporary directory per call
 * and never removes it (thousands per run); `Testing.synth` writes nothing, so none is needed.
 */
export function testApp(): App {
  return Testing.app({ outdir: "/nonexistent-not-written" });
}

/**
 * A NetworkPolicy evaluator, as the API defines the semantics (networking.k8s.io/v1): a pod is
 * isolated for ingress (egress) only when some policy in its namespace selects it with that
 * policy type; then a connection is allowed when any rule of any such policy admits it. A rule
 * without `from`/`to` admits every peer, without `ports` every port. Peers: `podSelector` alone
 * (pods of the policy's namespace), `namespaceSelector` alone (all pods of matching namespaces),
 * both (matching pods of matching namespaces), `ipBlock` (an address in `cidr` and in no
 * `except`). Ports: number or name (resolved against the destination pod's container ports),
 * `endPort`, protocol TCP by default. Connections are checked at both ends: egress of the source
 * pod and ingress of the destination pod.
 */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}
interface Peer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}
interface PolicyPort {
  port?: number | string;
  endPort?: number;
  protocol?: string;
}
interface Rule {
  from?: Peer[];
  to?: Peer[];
  ports?: PolicyPort[];
}
export interface NetworkPolicyObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  spec: { podSelector: LabelSelector; policyTypes?: string[]; ingress?: Rule[]; egress?: Rule[] };
}

/** A pod (namespace, labels, IP, named container ports) or an address outside the pod network. */
export type Endpoint =
  | {
      kind: "pod";
      namespace: string;
      labels: Record<string, string>;
      ip: string;
      ports?: Record<string, number>;
    }
  | { kind: "ip"; ip: string };

export function selectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const ok =
      e.operator === "In"
        ? has && (e.values ?? []).includes(value!)
        : e.operator === "NotIn"
          ? !has || !(e.values ?? []).includes(value!)
          : e.operator === "Exists"
            ? has
            : e.operator === "DoesNotExist"
              ? !has
              : (() => {
                  throw new Error(`unknown operator ${e.operator}`);
                })();
    if (!ok) return false;
  }
  return true;
}

function ipv4(ip: string): number {
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new Error(`not an IPv4 address: ${ip}`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split("/");
  const prefix = Number(bits);
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  return (ipv4(ip) & mask) >>> 0 === (ipv4(base!) & mask) >>> 0;
}

/** Namespaces carry `kubernetes.io/metadata.name` (set by the API server); more labels may be given. */
function namespaceLabels(namespace: string, extra: Record<string, Record<string, string>>) {
  return { "kubernetes.io/metadata.name": namespace, ...extra[namespace] };
}

function peerMatches(
  peer: Peer,
  policyNamespace: string,
  other: Endpoint,
  namespaces: Record<string, Record<string, string>>,
): boolean {
  if (peer.ipBlock !== undefined) {
    return (
      inCidr(other.ip, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((c) => inCidr(other.ip, c))
    );
  }
  if (other.kind !== "pod") return false;
  if (peer.namespaceSelector !== undefined) {
    if (!selectorMatches(peer.namespaceSelector, namespaceLabels(other.namespace, namespaces))) return false;
  } else if (other.namespace !== policyNamespace) return false;
  return peer.podSelector === undefined || selectorMatches(peer.podSelector, other.labels);
}

function portMatches(ports: PolicyPort[] | undefined, destination: Endpoint, port: number, protocol: string) {
  if (ports === undefined || ports.length === 0) return true;
  return ports.some((p) => {
    if ((p.protocol ?? "TCP") !== protocol) return false;
    if (p.port === undefined) return true;
    const number =
      typeof p.port === "number"
        ? p.port
        : destination.kind === "pod"
          ? destination.ports?.[p.port]
          : undefined; // a named port never matches an address outside the pod network
    if (number === undefined) return false;
    return p.endPort !== undefined ? port >= number && port <= p.endPort : port === number;
  });
}

export function flowAllowed(
  policies: NetworkPolicyObject[],
  source: Endpoint,
  destination: Endpoint,
  port: number,
  protocol: "TCP" | "UDP" = "TCP",
  namespaces: Record<string, Record<string, string>> = {},
): boolean {
  const types = (p: NetworkPolicyObject) =>
    p.spec.policyTypes ?? (p.spec.egress !== undefined ? ["Ingress", "Egress"] : ["Ingress"]);
  const selecting = (pod: Endpoint, type: string) =>
    pod.kind === "pod"
      ? policies.filter(
          (p) =>
            p.kind === "NetworkPolicy" &&
            (p.metadata.namespace ?? "default") === pod.namespace &&
            types(p).includes(type) &&
            selectorMatches(p.spec.podSelector, pod.labels),
        )
      : [];
  const egressPolicies = selecting(source, "Egress");
  const egressOk =
    egressPolicies.length === 0 ||
    egressPolicies.some((p) =>
      (p.spec.egress ?? []).some(
        (rule) =>
          (rule.to === undefined ||
            rule.to.length === 0 ||
            rule.to.some((peer) => peerMatches(peer, p.metadata.namespace!, destination, namespaces))) &&
          portMatches(rule.ports, destination, port, protocol),
      ),
    );
  const ingressPolicies = selecting(destination, "Ingress");
  const ingressOk =
    ingressPolicies.length === 0 ||
    ingressPolicies.some((p) =>
      (p.spec.ingress ?? []).some(
        (rule) =>
          (rule.from === undefined ||
            rule.from.length === 0 ||
            rule.from.some((peer) => peerMatches(peer, p.metadata.namespace!, source, namespaces))) &&
          portMatches(rule.ports, destination, port, protocol),
      ),
    );
  return egressOk && ingressOk;
}
