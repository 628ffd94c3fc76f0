/**
 * RegistryScaling on its own (a stack may compose it without LocalRegistry): the replica count,
 * rollout strategy, anti-affinity, PodDisruptionBudget and HorizontalPodAutoscaler it decides
 * for each combination of replicas, autoscaling and shared state.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Chart, Testing } from "cdk8s";
import { RegistryScaling, type RegistryScalingProps } from "../../constructs/index.js";
import { testApp } from "../helpers/cdk8s.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

const SELECTOR = { app: "r" };
function scaling(props: Partial<RegistryScalingProps>): { scaling: RegistryScaling; objects: Loose[] } {
  const chart = new Chart(testApp(), "scaling", { disableResourceNameHashes: true });
  const construct = new RegistryScaling(chart, "scaling", {
    namespace: "registry",
    name: "r",
    labels: { ...SELECTOR, tier: "infrastructure" },
    selectorLabels: SELECTOR,
    replicas: 1,
    sharedState: false,
    ...props,
  });
  return { scaling: construct, objects: Testing.synth(chart) };
}

describe("RegistryScaling", () => {
  it("one replica without shared state: Recreate, the count, nothing else", () => {
    const { scaling: s, objects } = scaling({});
    assert.deepEqual(s.strategy, { type: "Recreate" });
    assert.equal(s.replicas, 1);
    assert.equal(s.minReplicas, 1);
    assert.equal(s.affinity, undefined);
    assert.deepEqual(objects, []);
  });

  it("shared state: RollingUpdate that adds before it removes, even for one replica", () => {
    const { scaling: s, objects } = scaling({ sharedState: true });
    assert.equal(s.strategy.type, "RollingUpdate");
    const { maxUnavailable, maxSurge } = s.strategy.rollingUpdate!;
    assert.deepEqual([maxUnavailable?.value, maxSurge?.value], [0, 1]);
    assert.deepEqual(objects, [], "one replica: no budget, no spread");
  });

  it("several replicas: spread, a budget of one, the count on the Deployment", () => {
    const { scaling: s, objects } = scaling({ sharedState: true, replicas: 4 });
    assert.equal(s.replicas, 4);
    assert.deepEqual(
      objects.map((o) => [o.kind, o.metadata.name, o.metadata.namespace]),
      [["PodDisruptionBudget", "r", "registry"]],
    );
    assert.deepEqual(objects[0].spec, { selector: { matchLabels: SELECTOR }, maxUnavailable: 1 });
    const term = s.affinity!.podAntiAffinity!.preferredDuringSchedulingIgnoredDuringExecution![0]!;
    assert.deepEqual(term.podAffinityTerm.labelSelector, { matchLabels: SELECTOR });
  });

  it("autoscaling: the autoscaler's count, its minimum for the budget check", () => {
    const { scaling: s, objects } = scaling({
      sharedState: true,
      autoscaling: { minReplicas: 3, maxReplicas: 5, targetCpuUtilization: 60 },
    });
    assert.equal(s.replicas, undefined);
    assert.equal(s.minReplicas, 3);
    const hpa = objects.find((o) => o.kind === "HorizontalPodAutoscaler");
    assert.equal(hpa.spec.metrics[0].resource.target.averageUtilization, 60);
    assert.throws(
      () =>
        scaling({
          sharedState: true,
          autoscaling: { minReplicas: 3, maxReplicas: 5 },
          podDisruptionBudget: { minAvailable: 3 },
        }),
      /podDisruptionBudget would block every node drain with 3 replica\(s\)/,
    );
    // `enabled: false` keeps the props and the fixed count.
    const off = scaling({ sharedState: true, replicas: 2, autoscaling: { enabled: false, maxReplicas: 5 } });
    assert.equal(off.scaling.replicas, 2);
    assert.equal(off.scaling.horizontalPodAutoscaler, undefined);
  });

  it("budgets the API server or the drain would trip on are refused", () => {
    const cases: [Partial<RegistryScalingProps>, RegExp][] = [
      [{ replicas: 3, podDisruptionBudget: { minAvailable: 1, maxUnavailable: 1 } }, /exactly one of/],
      [
        { replicas: 3, podDisruptionBudget: { maxUnavailable: -1 } },
        /podDisruptionBudget\.maxUnavailable must be a non-negative integer/,
      ],
      [
        { replicas: 3, podDisruptionBudget: { minAvailable: 1.5 } },
        /podDisruptionBudget\.minAvailable must be a non-negative integer/,
      ],
      [{ replicas: 3, podDisruptionBudget: { maxUnavailable: 0 } }, /would block every node drain/],
    ];
    for (const [props, message] of cases)
      assert.throws(() => scaling({ sharedState: true, ...props }), message);
  });
});
