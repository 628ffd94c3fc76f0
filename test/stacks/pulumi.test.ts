/**
 * The Pulumi program under `pulumi.runtime.setMocks` (no engine here): the production stack
 * registers one ConfigGroup whose objects are exactly what `cdk8s synth` makes for production.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { it } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { manifestsFor } from "../../stacks/manifests.js";
import { waitUntil } from "../helpers/registry.js";

const ROOT = new URL("../../../", import.meta.url).pathname;

it("pulumi up --stack production deploys the same objects as cdk8s synth production", async () => {
  const registered: { type: string; name: string; inputs: Record<string, unknown> }[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        registered.push({ type: args.type, name: args.name, inputs: args.inputs });
        return { id: `${args.name}-id`, state: args.inputs };
      },
      call: (args) => args.inputs,
    },
    "neam-registry",
    "production",
    false,
  );
  // The stack's config file, as `pulumi up --stack production` would load it.
  const stackConfig = parse(readFileSync(`${ROOT}Pulumi.production.yaml`, "utf8")) as {
    config: Record<string, string>;
  };
  for (const [key, value] of Object.entries(stackConfig.config)) pulumi.runtime.setConfig(key, value);

  const program = await import("../../stacks/pulumi/index.js");
  assert.equal(program.environmentName, "production");
  // Registrations reach the mock asynchronously.
  await waitUntil(async () => registered.some((r) => r.type === "kubernetes:yaml/v2:ConfigGroup"), 5000);

  const groups = registered.filter((r) => r.type === "kubernetes:yaml/v2:ConfigGroup");
  assert.equal(groups.length, 1);
  const objs = groups[0]!.inputs.objs as Record<string, unknown>[];
  assert.deepEqual(objs, manifestsFor("production"));
  const kinds = objs.map((o) => o.kind).sort();
  assert.deepEqual(kinds, [
    "Certificate",
    "ConfigMap",
    "ConfigMap",
    "ConfigMap",
    "CronJob",
    "CronJob",
    "CronJob",
    "CronJob",
    "Deployment",
    "Namespace",
    "NetworkPolicy",
    "NetworkPolicy",
    "PersistentVolumeClaim",
    "PrometheusRule",
    "Service",
    "ServiceMonitor",
  ]);
});
