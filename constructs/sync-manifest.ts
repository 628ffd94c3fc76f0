import { Construct } from "constructs";
import { KubeConfigMap } from "cdk8s-plus-27/lib/imports/k8s.js";
import { stringify } from "yaml";
import {
  validateSyncManifest,
  type SyncManifest,
  type SyncManifestInput,
} from "../server/src/contract/index.js";

export interface RegistrySyncManifestProps {
  readonly namespace: string;
  /** @default "registry-sync-manifest" (the guide's) */
  readonly name?: string;
  /** What to mirror, typed with the server's own sync manifest type. */
  readonly sync: SyncManifestInput["sync"];
}

/** The sync manifest ConfigMap, checked by the server's own parser at synth time. */
export class RegistrySyncManifest extends Construct {
  readonly configMap: KubeConfigMap;
  /** The manifest as the server reads it (defaults applied). */
  readonly manifest: SyncManifest;

  constructor(scope: Construct, id: string, props: RegistrySyncManifestProps) {
    super(scope, id);
    const manifest = { sync: props.sync };
    try {
      this.manifest = validateSyncManifest(manifest);
    } catch (error) {
      throw new Error(`LocalRegistry: sync: ${(error as Error).message}`);
    }
    this.configMap = new KubeConfigMap(this, "manifest", {
      metadata: { name: props.name ?? "registry-sync-manifest", namespace: props.namespace },
      data: { "sync-manifest.yaml": stringify(manifest) },
    });
  }
}
