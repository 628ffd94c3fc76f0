/**
 * The Pulumi program itself (stacks/pulumi/index.ts) under `pulumi.runtime.setMocks` (no engine
 * here), once per stack file with that file's config as the CLI hands it over. The assertions are
 * on what reaches the engine: each resource's inputs and the RegisterResource request's options
 * (provider, protect, retainOnDelete, dependencies).
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { describe, it } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { manifestsFor } from "../../stacks/manifests.js";
import { deployObjects, type KubeObject } from "../../stacks/pulumi/deploy.js";
import { cliConfig, projectConfigErrors } from "./pulumi-cli-config.js";

const ROOT = new URL("../../../", import.meta.url).pathname;
const STACKS = readdirSync(ROOT)
  .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
  .filter((s): s is string => s !== undefined)
  .sort();

interface Registration {
  type: string;
  name: string;
  urn: string;
  inputs: Record<string, unknown>;
  provider: string;
  protect: boolean;
  retainOnDelete: boolean;
  dependencies: string[];
}

/** Installs the mocks and records every RegisterResource request as the engine would receive it. */
async function recordRegistrations(stack: string): Promise<Registration[]> {
  const registered: Registration[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }),
      call: (args) => args.inputs,
    },
    "neam-registry",
    stack,
    false,
  );
  type Request = {
    getType(): string;
    getName(): string;
    getParent(): string;
    getProvider(): string;
    getProtect(): boolean | undefined;
    getRetainondelete(): boolean | undefined;
    getDependenciesList(): string[];
    getObject(): unknown;
  };
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    registerResource(
      req: Request,
      callback: (err: unknown, res: { getUrn(): string } | undefined) => void,
    ): unknown;
  };
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) =>
    register(req, (err, res) => {
      if (res !== undefined) {
        registered.push({
          type: req.getType(),
          name: req.getName(),
          urn: res.getUrn(),
          inputs: pulumi.runtime.deserializeProperties(req.getObject() as never) as Record<string, unknown>,
          provider: req.getProvider(),
          protect: req.getProtect() === true,
          retainOnDelete: req.getRetainondelete() === true,
          dependencies: req.getDependenciesList(),
        });
      }
      callback(err, res);
    });
  return registered;
}

let runs = 0;
/** `pulumi up --stack <stack>` with `extra` config set on top (`pulumi config set`). */
async function runProgram(stack: string, extra: Record<string, string> = {}) {
  const registered = await recordRegistrations(stack);
  pulumi.runtime.setAllConfig({ ...cliConfig(ROOT, stack), ...extra });
  // A fresh instance of the program for each run (ES modules are cached by URL).
  const program = (await import(`../../stacks/pulumi/index.js?run=${++runs}`)) as Record<string, unknown>;
  await pulumi.runtime.disconnect();
  return { registered, program };
}

const kubeObjects = (registered: Registration[]) =>
  registered.filter((r) => r.type.startsWith("kubernetes:") && !r.type.startsWith("kubernetes:yaml:"));
const ofKind = (registered: Registration[], kind: string) =>
  kubeObjects(registered).filter((r) => r.type.endsWith(`:${kind}`));
const imageOf = (deployment: Registration) =>
  (deployment.inputs as { spec: { template: { spec: { containers: { image: string }[] } } } }).spec.template
    .spec.containers[0]!.image;

describe("Pulumi stack config as the CLI checks it", () => {
  it("there is one stack file per environment", () => {
    assert.deepEqual(STACKS, ["dev", "production", "scaleout"]);
  });

  for (const stack of STACKS) {
    it(`Pulumi.${stack}.yaml satisfies Pulumi.yaml's config schema`, () => {
      const config = cliConfig(ROOT, stack);
      assert.equal(config["neam-registry:environment"], stack);
      // Optional keys arrive with their defaults, so `pulumi up` does not stop on them.
      assert.equal(config["neam-registry:imageTag"], "");
      assert.equal(config["neam-registry:kubeconfig"], "");
      assert.ok((config["neam-registry:context"] ?? "") !== "");
    });
  }

  it("the checker rejects what the CLI rejects", () => {
    const project = {
      name: "neam-registry",
      config: {
        environment: { type: "string" },
        imageTag: { type: "string" },
        replicas: { type: "integer", default: 1 },
      },
    };
    // The project as it was: imageTag declared without a default is required.
    assert.deepEqual(
      projectConfigErrors(project, "production", { "neam-registry:environment": "production" }),
      ["Stack 'production' is missing configuration value 'imageTag'"],
    );
    assert.deepEqual(
      projectConfigErrors(project, "p", {
        "neam-registry:environment": "production",
        "neam-registry:imageTag": "0.2.0",
        "neam-registry:replicas": "two",
        "neam-registry:imagetag": "typo",
        context: "bare",
      }),
      [
        "Stack 'p': neam-registry:replicas should be of type integer",
        "Stack 'p': neam-registry:imagetag is not declared in Pulumi.yaml",
        "Stack 'p': config key \"context\" is not namespaced (<project>:<key>)",
      ],
    );
  });
});

describe("the Pulumi program, per stack", () => {
  const expected: Record<string, { namespace: string; image: string; context: string }> = {
    production: {
      namespace: "registry",
      image: "local-registry.neam.internal:5000/neam-registry:0.1.0",
      context: "neam-production",
    },
    dev: { namespace: "registry-dev", image: "neam-registry:0.1.0", context: "neam-dev" },
    scaleout: {
      namespace: "registry",
      image: "local-registry.neam.internal:5000/neam-registry:0.1.0",
      context: "neam-scaleout",
    },
  };

  for (const stack of STACKS) {
    it(`pulumi up --stack ${stack}: its environment, through its own provider, data protected`, async () => {
      const want = expected[stack]!;
      const { registered, program } = await runProgram(stack);
      assert.equal(program.environmentName, stack);

      // One explicit provider, on the stack's context; every Kubernetes object goes through it.
      const providers = registered.filter((r) => r.type === "pulumi:providers:kubernetes");
      assert.equal(providers.length, 1);
      assert.equal(providers[0]!.inputs.context, want.context);
      assert.equal(providers[0]!.inputs.kubeconfig, undefined);
      const objects = kubeObjects(registered);
      assert.ok(objects.length > 5);
      for (const object of objects) {
        assert.equal(object.provider, `${providers[0]!.urn}::${providers[0]!.name}-id`, object.name);
      }

      // The objects themselves: the environment's namespace and image.
      const [namespace] = ofKind(registered, "Namespace");
      assert.equal((namespace!.inputs.metadata as { name: string }).name, want.namespace);
      for (const object of objects) {
        const ns = (object.inputs.metadata as { namespace?: string }).namespace;
        if (object.type !== "kubernetes:core/v1:Namespace") assert.equal(ns, want.namespace, object.name);
      }
      const deployments = ofKind(registered, "Deployment");
      assert.equal(deployments.length, 1);
      assert.equal(imageOf(deployments[0]!), want.image);
      assert.deepEqual(program.images, [want.image]);

      // Protection: the Namespace and the PVCs only; everything waits for the Namespace.
      for (const object of objects) {
        const keep =
          object.type === "kubernetes:core/v1:Namespace" || object.type.endsWith(":PersistentVolumeClaim");
        assert.equal(object.protect, keep, `protect ${object.name}`);
        assert.equal(object.retainOnDelete, keep, `retainOnDelete ${object.name}`);
        if (object !== namespace)
          assert.ok(object.dependencies.includes(namespace!.urn), `${object.name} after Namespace`);
      }
      // Production's data volume and its backups' volume: both data, both kept.
      assert.deepEqual(
        ofKind(registered, "PersistentVolumeClaim")
          .map((c) => (c.inputs.metadata as { name: string }).name)
          .sort(),
        stack === "production" ? ["registry-backups", "registry-pvc"] : [],
      );

      // Every object cdk8s synthesizes for the environment, each once.
      const synthesized = manifestsFor(stack).map(
        (o) => `${String(o.kind)}/${(o.metadata as { name: string }).name}`,
      );
      const deployed = objects.map(
        (o) => `${o.type.split(":").at(-1)}/${(o.inputs.metadata as { name: string }).name}`,
      );
      assert.deepEqual(deployed.sort(), synthesized.sort());
      // … and each with the same content: what Pulumi applies is what `cdk8s synth` writes.
      const key = (o: { kind?: unknown; metadata?: unknown }) =>
        `${String(o.kind)}/${(o.metadata as { name: string }).name}`;
      const byKey = new Map(manifestsFor(stack).map((o) => [key(o), o]));
      for (const object of objects)
        assert.deepEqual(object.inputs, byKey.get(key(object.inputs)), key(object.inputs));
    });
  }

  it("imageTag replaces the tag and keeps the environment's repository", async () => {
    const { registered } = await runProgram("production", { "neam-registry:imageTag": "0.2.0" });
    const [deployment] = ofKind(registered, "Deployment");
    assert.equal(imageOf(deployment!), "local-registry.neam.internal:5000/neam-registry:0.2.0");
  });

  it("kubeconfig from the stack config reaches the provider", async () => {
    const { registered } = await runProgram("dev", {
      "neam-registry:kubeconfig": "/etc/neam/dev.kubeconfig",
    });
    const [provider] = registered.filter((r) => r.type === "pulumi:providers:kubernetes");
    assert.equal(provider!.inputs.kubeconfig, "/etc/neam/dev.kubeconfig");
    assert.equal(provider!.inputs.context, "neam-dev");
  });

  it("a stack without its context does not start", async () => {
    await recordRegistrations("production");
    const config = cliConfig(ROOT, "production");
    delete config["neam-registry:context"];
    pulumi.runtime.setAllConfig(config);
    await assert.rejects(import(`../../stacks/pulumi/index.js?run=${++runs}`), /neam-registry:context/);
  });
});

describe("deployObjects", () => {
  it("orders each Deployment after the pre-pull DaemonSet, and only then", async () => {
    const objects = manifestsFor("production") as KubeObject[];
    const prepull: KubeObject = {
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      metadata: { name: "registry-prepull", namespace: "registry" },
      spec: {
        selector: { matchLabels: { app: "registry-prepull" } },
        template: {
          metadata: { labels: { app: "registry-prepull" } },
          spec: {
            containers: [{ name: "pull", image: "local-registry.neam.internal:5000/neam-registry:0.2.0" }],
          },
        },
      },
    };
    const isPrepull = (o: KubeObject) =>
      o.kind === "DaemonSet" && String(o.metadata?.name).endsWith("-prepull");
    const withPrepull = objects.some(isPrepull) ? objects : [...objects, prepull];

    for (const [list, hasPrepull] of [
      [withPrepull, true],
      [objects.filter((o) => !isPrepull(o)), false],
    ] as const) {
      const registered = await recordRegistrations("ordering");
      deployObjects("local-registry", list, new k8s.Provider("cluster", { context: "c" }));
      await pulumi.runtime.disconnect();
      const daemonSets = ofKind(registered, "DaemonSet").filter((d) => d.name.endsWith("-prepull"));
      const [deployment] = ofKind(registered, "Deployment");
      const [namespace] = ofKind(registered, "Namespace");
      assert.equal(daemonSets.length, hasPrepull ? 1 : 0);
      if (hasPrepull) {
        assert.ok(
          deployment!.dependencies.includes(daemonSets[0]!.urn),
          "Deployment after the pre-pull DaemonSet",
        );
        assert.ok(daemonSets[0]!.dependencies.includes(namespace!.urn), "DaemonSet after the Namespace");
        assert.ok(!daemonSets[0]!.dependencies.includes(deployment!.urn));
      }
      // Nothing else waits for the DaemonSet.
      for (const object of kubeObjects(registered)) {
        if (object !== deployment && daemonSets.length > 0) {
          assert.ok(!object.dependencies.includes(daemonSets[0]!.urn), object.name);
        }
      }
    }
  });
});
