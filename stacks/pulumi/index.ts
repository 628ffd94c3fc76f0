import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { manifestsFor } from "../manifests.js";

/**
 * The Pulumi program (`pulumi up --stack production`): the same objects as `cdk8s synth`, from the
 * same constructs, applied as one ConfigGroup. Stack config (Pulumi.<stack>.yaml):
 *   neam-registry:environment  which environment of stacks/environments.ts (default: the stack name)
 *   neam-registry:imageTag     the registry image tag to run (default: the environment's)
 */
const config = new pulumi.Config("neam-registry");
const environment = config.get("environment") ?? pulumi.getStack();
const imageTag = config.get("imageTag");

const objects = manifestsFor(environment, imageTag === undefined ? {} : { image: { tag: imageTag } });
const group = new k8s.yaml.v2.ConfigGroup("local-registry", { objs: objects });

export const environmentName = environment;
export const objectCount = objects.length;
export const resources = group.resources;
