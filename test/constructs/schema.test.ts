/** Every synthesized object of every environment validates against its schema (kubernetes-models). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Chart, Testing } from "cdk8s";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { CronJob } from "kubernetes-models/batch/v1/CronJob";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { Certificate } from "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate";
import { LocalRegistry } from "../../constructs/index.js";
import { ENVIRONMENTS } from "../../stacks/environments.js";
import { testApp } from "../helpers/cdk8s.js";

type Validating = new (data: never) => { validate(): void };
const MODELS: Record<string, Validating> = {
  "v1/Namespace": Namespace as unknown as Validating,
  "v1/ConfigMap": ConfigMap as unknown as Validating,
  "v1/Secret": Secret as unknown as Validating,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim as unknown as Validating,
  "v1/Service": Service as unknown as Validating,
  "apps/v1/Deployment": Deployment as unknown as Validating,
  "apps/v1/DaemonSet": DaemonSet as unknown as Validating,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy as unknown as Validating,
  "batch/v1/CronJob": CronJob as unknown as Validating,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget as unknown as Validating,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler as unknown as Validating,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule as unknown as Validating,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor as unknown as Validating,
  "cert-manager.io/v1/Certificate": Certificate as unknown as Validating,
};

describe("synthesized objects validate against their schemas", () => {
  for (const [environment, props] of Object.entries(ENVIRONMENTS)) {
    it(environment, () => {
      const chart = new Chart(testApp(), environment, { disableResourceNameHashes: true });
      new LocalRegistry(chart, "registry", {
        ...props,
        auth: props.auth ?? { enabled: true, htpasswd: "admin:$2y$05$x" },
        maintenanceCredentials: props.maintenanceCredentials ?? { secretName: "registry-maintenance" },
      });
      const objects = Testing.synth(chart) as { apiVersion: string; kind: string }[];
      assert.ok(objects.length >= 5);
      for (const object of objects) {
        const Model = MODELS[`${object.apiVersion}/${object.kind}`];
        assert.ok(Model, `no schema for ${object.apiVersion} ${object.kind}`);
        new Model(object as never).validate();
      }
    });
  }

  it("a schema violation is caught (the check can fail)", () => {
    assert.throws(() =>
      new Deployment({
        metadata: { name: "x" },
        spec: { selector: {}, template: { spec: { containers: [{ image: "x" }] } } },
      } as never).validate(),
    );
  });
});
