import { Construct } from "constructs";
import {
  IntOrString,
  KubeDeployment,
  Quantity,
  type EnvVar,
  type PodSpec,
  type Volume,
  type VolumeMount,
} from "cdk8s-plus-27/lib/imports/k8s.js";
import { METRICS_PORT, REGISTRY_PORT } from "../server/src/contract/index.js";
import type { PodProps } from "./local-registry.js";
import { RegistryScaling, type RegistryScalingProps } from "./registry-scaling.js";
import { containerSecurityContext, podSecurityContext } from "./security.js";

export interface RegistryWorkloadProps {
  readonly namespace: string;
  /** The Deployment's name. */
  readonly name: string;
  /** Labels of the Deployment, its pods and the scaling objects. */
  readonly labels: Record<string, string>;
  readonly selectorLabels: Record<string, string>;
  /** The full image reference. */
  readonly image: string;
  readonly imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  /** The container's arguments (`serve <config file>`). */
  readonly args: readonly string[];
  /** Scheduling and pod settings (tolerations, nodeSelector, affinity, …). */
  readonly pod: PodProps;
  /** The pod template's annotations (config checksum, scrape annotations, the stack's own). */
  readonly podAnnotations: Record<string, string>;
  readonly env: readonly EnvVar[];
  readonly resources: {
    readonly requests: Record<string, string>;
    readonly limits: Record<string, string>;
  };
  readonly volumes: readonly Volume[];
  readonly mounts: readonly VolumeMount[];
  /** The pods' user and group (the image's non-root user). */
  readonly runAs: number;
  /** Blobs in S3 (shared by the replicas): liveness then asks the process only. */
  readonly sharedStorage: boolean;
  /** Redis configured: the startup probe waits for it too. */
  readonly redis: boolean;
  /** Replicas, autoscaling, budget and spread (see RegistryScaling). */
  readonly scaling: Omit<
    RegistryScalingProps,
    "namespace" | "name" | "labels" | "selectorLabels" | "affinity"
  >;
}

/**
 * The registry's pods: the Deployment — one container serving the distribution API and the debug
 * listener, locked down, probed on `/debug/health` — and how many of them run, roll, spread and
 * survive drains (RegistryScaling).
 */
export class RegistryWorkload extends Construct {
  readonly deployment: KubeDeployment;
  readonly scaling: RegistryScaling;

  constructor(scope: Construct, id: string, props: RegistryWorkloadProps) {
    super(scope, id);
    const { pod } = props;
    this.scaling = new RegistryScaling(this, "scaling", {
      ...props.scaling,
      namespace: props.namespace,
      name: props.name,
      labels: props.labels,
      selectorLabels: props.selectorLabels,
      ...(pod.affinity !== undefined ? { affinity: pod.affinity } : {}),
    });
    const rolling = this.scaling.strategy.type === "RollingUpdate";
    const probe = (path: string, periodSeconds: number, failureThreshold: number) => ({
      httpGet: { path, port: IntOrString.fromString("metrics") },
      periodSeconds,
      failureThreshold,
      timeoutSeconds: 2,
    });
    const scheduling = {
      ...(pod.tolerations !== undefined ? { tolerations: [...pod.tolerations] } : {}),
      ...(pod.nodeSelector !== undefined ? { nodeSelector: { ...pod.nodeSelector } } : {}),
      ...(pod.priorityClassName !== undefined ? { priorityClassName: pod.priorityClassName } : {}),
      ...(pod.imagePullSecrets !== undefined
        ? { imagePullSecrets: pod.imagePullSecrets.map((name) => ({ name })) }
        : {}),
    } satisfies Partial<PodSpec>;

    this.deployment = new KubeDeployment(this, "deployment", {
      metadata: { name: props.name, namespace: props.namespace, labels: props.labels },
      spec: {
        // Without: the autoscaler's count, which a redeploy must not reset.
        ...(this.scaling.replicas !== undefined ? { replicas: this.scaling.replicas } : {}),
        // Recreate for one writer on a ReadWriteOnce volume (the old pod must go before the new
        // one mounts it); RollingUpdate when Redis holds the shared state (see RegistryScaling).
        strategy: this.scaling.strategy,
        selector: { matchLabels: props.selectorLabels },
        template: {
          metadata: { labels: props.labels, annotations: props.podAnnotations },
          spec: {
            automountServiceAccountToken: false,
            ...(pod.serviceAccountName !== undefined ? { serviceAccountName: pod.serviceAccountName } : {}),
            ...scheduling,
            ...(this.scaling.affinity !== undefined ? { affinity: this.scaling.affinity } : {}),
            securityContext: podSecurityContext(props.runAs, { fsGroup: true }),
            containers: [
              {
                name: "registry",
                image: props.image,
                imagePullPolicy: props.imagePullPolicy,
                args: [...props.args],
                ...(props.env.length > 0 ? { env: [...props.env] } : {}),
                ports: [
                  { name: "registry", containerPort: REGISTRY_PORT, protocol: "TCP" },
                  { name: "metrics", containerPort: METRICS_PORT, protocol: "TCP" },
                ],
                securityContext: containerSecurityContext(),
                resources: {
                  requests: mapQuantities(props.resources.requests),
                  limits: mapQuantities(props.resources.limits),
                },
                // /debug/health answers 503 while storage does not; `?redis=required` also while
                // Redis does not. A new pod takes no traffic, and a rollout goes no further, until
                // it reaches both. Once started, readiness asks about storage only: with Redis
                // down the replicas still serve pulls (writes answer 503), which an empty
                // Service would not.
                startupProbe: probe(`/debug/health${props.redis ? "?redis=required" : ""}`, 2, 30),
                // On a shared store, an outage of S3 is every replica's at once: restarting them
                // all cures nothing and adds crash-loop backoff to the recovery, so liveness asks
                // only whether the process still serves its debug listener.
                livenessProbe: !props.sharedStorage
                  ? probe("/debug/health", 10, 3)
                  : {
                      tcpSocket: { port: IntOrString.fromString("metrics") },
                      periodSeconds: 10,
                      failureThreshold: 3,
                      timeoutSeconds: 2,
                    },
                readinessProbe: probe("/debug/health", 5, 2),
                // A rolling pod leaves the Service's endpoints while it still serves: kube-proxy
                // on every node needs a moment to stop sending it connections, then SIGTERM
                // drains what is in flight (http.draintimeout).
                ...(rolling
                  ? {
                      lifecycle: {
                        preStop: { exec: { command: ["node", "-e", "setTimeout(() => {}, 5000)"] } },
                      },
                    }
                  : {}),
                volumeMounts: [...props.mounts],
              },
            ],
            volumes: [...props.volumes],
          },
        },
      },
    });
  }
}

function mapQuantities(values: Record<string, string>): Record<string, Quantity> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Quantity.fromString(v)]));
}
