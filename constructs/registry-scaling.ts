import { Construct } from "constructs";
import {
  IntOrString,
  KubeHorizontalPodAutoscalerV2,
  KubePodDisruptionBudget,
  type Affinity,
  type DeploymentStrategy,
  type PodAntiAffinity,
} from "cdk8s-plus-27/lib/imports/k8s.js";

/** Exactly one of the two; a budget that would block every node drain is refused at synth time. */
export interface PodDisruptionBudgetProps {
  /** Pods that must stay up during voluntary disruptions (node drains). @default unset */
  readonly minAvailable?: number;
  /** Pods that may be down during voluntary disruptions. @default unset */
  readonly maxUnavailable?: number;
}

/**
 * A HorizontalPodAutoscaler (autoscaling/v2) on the pods' CPU use. Needs shared storage and Redis,
 * like any replica count above 1; the autoscaler then owns the replica count (the Deployment names
 * none, so a redeploy does not reset what it chose).
 */
export interface AutoscalingProps {
  /** @default true (when `autoscaling` is given) */
  readonly enabled?: boolean;
  /** At least 2: one replica is not highly available. @default 2 */
  readonly minReplicas?: number;
  readonly maxReplicas: number;
  /** Average CPU use, in percent of `resources.requests.cpu`, the autoscaler keeps the pods at. @default 70 */
  readonly targetCpuUtilization?: number;
}

/** How the registry pods spread over the nodes when there are several. */
export type PodAntiAffinityMode = "preferred" | "required";

export interface RegistryScalingProps {
  readonly namespace: string;
  /** The Deployment's name (also the PDB's and the autoscaler's). */
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly selectorLabels: Record<string, string>;
  /** The fixed replica count (without autoscaling). */
  readonly replicas: number;
  readonly autoscaling?: AutoscalingProps;
  readonly podDisruptionBudget?: PodDisruptionBudgetProps;
  /** Redis holds the replicas' shared state: a rollout may run old and new pods side by side. */
  readonly sharedState: boolean;
  /** @default "preferred" */
  readonly podAntiAffinity?: PodAntiAffinityMode;
  /** The stack's own affinity (`pod.affinity`); its podAntiAffinity, if any, replaces ours. */
  readonly affinity?: Affinity;
}

/** At most this many percent: a target above 100 of the request only scales past the limit. */
const DEFAULT_CPU_TARGET = 70;

/**
 * How many registry pods run, how they roll, spread and survive drains: the Deployment's replica
 * count, strategy and affinity (read by the Deployment), the PodDisruptionBudget, and the
 * HorizontalPodAutoscaler.
 *
 * - One pod without shared state: `Recreate` (one writer on a ReadWriteOnce volume, or one process
 *   owning the maintenance lanes on S3 without Redis); no default budget.
 * - With Redis: `RollingUpdate`, maxUnavailable 0 and maxSurge 1 — the new pod must be ready (it
 *   reaches storage and Redis) before an old one goes, so capacity never drops and a new pod that
 *   cannot start stalls the rollout instead of replacing a working one. With required
 *   anti-affinity the surge pod may have no free node (N replicas on N nodes): maxSurge 0 and
 *   maxUnavailable 1 instead, one pod at a time.
 * - Several pods: anti-affinity by hostname (a node failure takes one replica), and a budget of
 *   maxUnavailable 1 (right for any count the autoscaler picks, unlike minAvailable = replicas-1).
 */
export class RegistryScaling extends Construct {
  /** `undefined` when the autoscaler owns the count. */
  readonly replicas: number | undefined;
  readonly strategy: DeploymentStrategy;
  readonly affinity: Affinity | undefined;
  readonly podDisruptionBudget?: KubePodDisruptionBudget;
  readonly horizontalPodAutoscaler?: KubeHorizontalPodAutoscalerV2;
  /** The fewest pods that run (the autoscaler's minimum, or the fixed count). */
  readonly minReplicas: number;

  constructor(scope: Construct, id: string, props: RegistryScalingProps) {
    super(scope, id);
    const metadata = { name: props.name, namespace: props.namespace, labels: props.labels };
    const autoscaling =
      props.autoscaling !== undefined && (props.autoscaling.enabled ?? true) ? props.autoscaling : undefined;
    if (autoscaling !== undefined) {
      const min = autoscaling.minReplicas ?? 2;
      if (!Number.isInteger(min) || min < 2)
        throw new Error(
          `LocalRegistry: autoscaling.minReplicas must be an integer of at least 2 (one replica is not highly available), not ${min}`,
        );
      if (!Number.isInteger(autoscaling.maxReplicas) || autoscaling.maxReplicas < min)
        throw new Error(
          `LocalRegistry: autoscaling.maxReplicas must be an integer of at least minReplicas (${min}), not ${autoscaling.maxReplicas}`,
        );
      const target = autoscaling.targetCpuUtilization ?? DEFAULT_CPU_TARGET;
      if (!Number.isInteger(target) || target < 1 || target > 100)
        throw new Error(
          `LocalRegistry: autoscaling.targetCpuUtilization must be a percentage from 1 to 100, not ${target}`,
        );
      this.minReplicas = min;
      this.replicas = undefined;
      this.horizontalPodAutoscaler = new KubeHorizontalPodAutoscalerV2(this, "hpa", {
        metadata,
        spec: {
          scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: props.name },
          minReplicas: min,
          maxReplicas: autoscaling.maxReplicas,
          metrics: [
            {
              type: "Resource",
              resource: { name: "cpu", target: { type: "Utilization", averageUtilization: target } },
            },
          ],
        },
      });
    } else {
      this.minReplicas = props.replicas;
      this.replicas = props.replicas;
    }
    const several = this.minReplicas > 1;
    const mode = props.podAntiAffinity ?? "preferred";

    if (!props.sharedState) this.strategy = { type: "Recreate" };
    else
      this.strategy = {
        type: "RollingUpdate",
        rollingUpdate:
          several && mode === "required"
            ? { maxUnavailable: IntOrString.fromNumber(1), maxSurge: IntOrString.fromNumber(0) }
            : { maxUnavailable: IntOrString.fromNumber(0), maxSurge: IntOrString.fromNumber(1) },
      };

    const term = {
      labelSelector: { matchLabels: props.selectorLabels },
      topologyKey: "kubernetes.io/hostname",
    };
    const ours: PodAntiAffinity | undefined = !several
      ? undefined
      : mode === "required"
        ? { requiredDuringSchedulingIgnoredDuringExecution: [term] }
        : { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: term }] };
    const podAntiAffinity = props.affinity?.podAntiAffinity ?? ours;
    const affinity = { ...props.affinity, ...(podAntiAffinity !== undefined ? { podAntiAffinity } : {}) };
    this.affinity = Object.keys(affinity).length > 0 ? affinity : undefined;

    const budget = props.podDisruptionBudget ?? (several ? { maxUnavailable: 1 } : undefined);
    if (budget !== undefined) {
      const { minAvailable, maxUnavailable } = budget;
      if ((minAvailable === undefined) === (maxUnavailable === undefined))
        throw new Error(
          "LocalRegistry: podDisruptionBudget needs exactly one of minAvailable and maxUnavailable",
        );
      for (const [key, value] of Object.entries({ minAvailable, maxUnavailable })) {
        if (value !== undefined && (!Number.isInteger(value) || value < 0))
          throw new Error(`LocalRegistry: podDisruptionBudget.${key} must be a non-negative integer`);
      }
      if ((minAvailable ?? 0) >= this.minReplicas || maxUnavailable === 0)
        throw new Error(
          `LocalRegistry: podDisruptionBudget would block every node drain with ${this.minReplicas} replica(s); allow at least one pod to be evicted`,
        );
      this.podDisruptionBudget = new KubePodDisruptionBudget(this, "pdb", {
        metadata,
        spec: {
          selector: { matchLabels: props.selectorLabels },
          ...(minAvailable !== undefined ? { minAvailable: IntOrString.fromNumber(minAvailable) } : {}),
          ...(maxUnavailable !== undefined ? { maxUnavailable: IntOrString.fromNumber(maxUnavailable) } : {}),
        },
      });
    }
  }
}
