import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";

/** One synthesized Kubernetes object (cdk8s `Chart.toJson()`). */
export type KubeObject = Record<string, unknown> & {
  kind?: unknown;
  metadata?: { name?: unknown; namespace?: unknown };
};

/** What `deployObjects` registers: three ConfigGroups, applied in this order. */
export interface DeployedRegistry {
  /** The Namespaces, protected. Everything else waits for them. */
  readonly namespaces: k8s.yaml.ConfigGroup;
  /** The pre-pull DaemonSets (`<prefix>-prepull`), when the chart has one: the next image onto the nodes. */
  readonly prepull: k8s.yaml.ConfigGroup | undefined;
  /** Everything else; the PVC protected, each Deployment after the pre-pull DaemonSets. */
  readonly workload: k8s.yaml.ConfigGroup;
}

/** The DaemonSet that pulls the next image onto the nodes while the old registry still serves it. */
export function isPrepullDaemonSet(object: KubeObject): boolean {
  return object.kind === "DaemonSet" && String(object.metadata?.name ?? "").endsWith("-prepull");
}

/**
 * Registers the objects of one registry chart, each as its own Kubernetes resource (yaml v1
 * ConfigGroups, whose transformations give every object its own resource options), through
 * `provider` only.
 *
 * - Namespace and PersistentVolumeClaim are `protect`ed: Pulumi refuses to delete *or replace* a
 *   protected resource, so `pulumi destroy`, removing them from the chart, or a change Kubernetes
 *   cannot apply in place (the PVC's `storageClassName` is immutable, so a new `persistence.storageClass`
 *   plans a replace) fails the preview with "unable to replace resource … as it is currently
 *   marked for protection" before anything is touched. `retainOnDelete` as well: after a deliberate
 *   `pulumi state unprotect`, a destroy still leaves the data in the cluster. (`ignoreChanges` on
 *   the storage class would be wrong: the stack would report the new class while the volume keeps
 *   the old one.)
 * - Every other object waits for the Namespaces; each Deployment waits for the pre-pull DaemonSets,
 *   whose rollout Pulumi awaits (every scheduled pod ready, i.e. the image is on those nodes) before
 *   the Deployment's `Recreate` stops the serving registry.
 */
export function deployObjects(
  name: string,
  objects: readonly KubeObject[],
  provider: k8s.Provider,
): DeployedRegistry {
  const isNamespace = (o: KubeObject) => o.kind === "Namespace";
  const namespaces = new k8s.yaml.ConfigGroup(
    `${name}-namespaces`,
    { objs: objects.filter(isNamespace), transformations: [keepData] },
    { provider },
  );
  const afterNamespaces = dependOn(namespaces);

  const prepullObjects = objects.filter(isPrepullDaemonSet);
  const prepull =
    prepullObjects.length === 0
      ? undefined
      : new k8s.yaml.ConfigGroup(
          `${name}-prepull`,
          { objs: prepullObjects, transformations: [afterNamespaces] },
          { provider },
        );
  const afterPrepull = prepull === undefined ? afterNamespaces : dependOn(namespaces, prepull);

  const workload = new k8s.yaml.ConfigGroup(
    name,
    {
      objs: objects.filter((o) => !isNamespace(o) && !isPrepullDaemonSet(o)),
      transformations: [
        (object: KubeObject, opts: pulumi.CustomResourceOptions) => {
          if (object.kind === "Deployment") afterPrepull(object, opts);
          else afterNamespaces(object, opts);
          if (object.kind === "PersistentVolumeClaim") keepData(object, opts);
        },
      ],
    },
    { provider },
  );
  return { namespaces, prepull, workload };
}

/** The data outlives the stack: see `deployObjects`. */
function keepData(_object: KubeObject, opts: pulumi.CustomResourceOptions): void {
  opts.protect = true;
  opts.retainOnDelete = true;
}

/** A transformation making an object wait for every object of these groups. */
function dependOn(...groups: k8s.yaml.ConfigGroup[]) {
  const resources = pulumi
    .all(groups.map((g) => g.resources))
    .apply((all) => all.flatMap((byName) => Object.values(byName)));
  return (_object: KubeObject, opts: pulumi.CustomResourceOptions): void => {
    opts.dependsOn = resources;
  };
}
