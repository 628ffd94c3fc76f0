import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { manifestsFor } from "../manifests.js";
import { deployObjects } from "./deploy.js";

/**
 * The Pulumi program (`pulumi up --stack production`): the same objects as `cdk8s synth`, from the
 * same constructs. Stack config (Pulumi.<stack>.yaml, schema and defaults in Pulumi.yaml):
 *   neam-registry:environment  which environment of stacks/environments.ts (required)
 *   neam-registry:context      the kubeconfig context of the stack's cluster (required: a stack
 *                              never deploys to wherever kubectl happens to point)
 *   neam-registry:kubeconfig   path to, or contents of, a kubeconfig ("": $KUBECONFIG or ~/.kube/config)
 *   neam-registry:imageTag     the registry image tag to run ("": the environment's); the
 *                              environment's repository is kept
 */
const config = new pulumi.Config("neam-registry");
const environment = config.require("environment");
const context = config.require("context");
const kubeconfig = config.get("kubeconfig") ?? "";
const imageTag = config.get("imageTag") ?? "";

const objects = manifestsFor(environment, imageTag === "" ? {} : { image: { tag: imageTag } });

const provider = new k8s.Provider(`${pulumi.getStack()}-cluster`, {
  context,
  ...(kubeconfig === "" ? {} : { kubeconfig }),
});
deployObjects("local-registry", objects, provider);

export const environmentName = environment;
export const kubeContext = context;
export const objectCount = objects.length;
/** The registry image each Deployment runs. */
export const images = objects
  .filter((o) => o.kind === "Deployment")
  .map(
    (o) =>
      (o as { spec: { template: { spec: { containers: { image: string }[] } } } }).spec.template.spec
        .containers[0]!.image,
  );
