import { Construct } from "constructs";
import { containerSecurityContext, podSecurityContext } from "./security.js";
import { checkQuantity } from "./quantities.js";
import {
  KubeCronJob,
  KubePersistentVolumeClaim,
  Quantity,
  type EnvVar,
  type Toleration,
  type Volume,
  type VolumeMount,
} from "cdk8s-plus-27/lib/imports/k8s.js";
import {
  frequencyOf,
  isCronExpression,
  schedulesOf,
  type SyncManifest,
} from "../server/src/contract/index.js";

/** A Secret with the username and password of a registry admin, for the maintenance jobs. */
export interface MaintenanceCredentials {
  readonly secretName: string;
  /** @default "username" */
  readonly usernameKey?: string;
  /** @default "password" */
  readonly passwordKey?: string;
}

export interface GcProps {
  /** @default true */
  readonly enabled?: boolean;
  /** Cron schedule of the `registry-gc` CronJob. @default "0 3 * * 0" (Sundays, 03:00) */
  readonly schedule?: string;
  /** Also delete manifests no tag reaches (as `garbage-collect --delete-untagged`). @default false */
  readonly untagged?: boolean;
  /** Unreferenced content younger than this is kept (pushes in progress). @default "1h" */
  readonly gracePeriod?: string;
}

/** Scheduled backups (`neam-registry backup`) onto a volume of their own. */
export interface BackupProps {
  /** @default false */
  readonly enabled?: boolean;
  /** Cron schedule of the `registry-backup` CronJob. @default "0 1 * * *" (daily, 01:00) */
  readonly schedule?: string;
  /** Backups kept on the volume; older ones are removed after each new one. @default 7 */
  readonly keep?: number;
  /** Size of the backups volume, a Kubernetes quantity. @default "100Gi" */
  readonly size?: string;
  /** @default the cluster's default StorageClass */
  readonly storageClass?: string;
  /** A PersistentVolumeClaim made outside the stack, instead of the one this makes. @default none */
  readonly existingClaim?: string;
}

export interface RegistryMaintenanceJobsProps {
  readonly namespace: string;
  /** Prefix of the CronJob names. @default "registry" (the guide's `registry-image-sync`, `registry-gc`) */
  readonly prefix?: string;
  /** The registry image: its CLI runs the jobs. */
  readonly image: string;
  readonly imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  /** How the jobs reach the registry's API, e.g. `https://local-registry.registry.svc:5000`. */
  readonly registryUrl: string;
  /** Labels of the job pods (the NetworkPolicy lets exactly these reach the registry). */
  readonly podLabels: Record<string, string>;
  /**
   * The CA bundle the jobs trust for the registry's certificate: a Secret key mounted as a file and
   * passed as `--ca`. `optional` mounts it even when the key is missing (a plain
   * `kubernetes.io/tls` Secret), so the pod starts and the CLI says what is missing instead of
   * the pod hanging in ContainerCreating. @default the system's CAs (or plain HTTP)
   */
  readonly ca?: { readonly secretName: string; readonly key: string; readonly optional?: boolean };
  /** Scheduling and pull settings shared with the registry pods. @default none */
  readonly pod?: {
    readonly tolerations?: readonly Toleration[];
    readonly nodeSelector?: Readonly<Record<string, string>>;
    readonly imagePullSecrets?: readonly string[];
    readonly priorityClassName?: string;
  };
  /** Needed when the registry asks for credentials. @default none */
  readonly credentials?: MaintenanceCredentials;
  /** Sync: the ConfigMap holding `sync-manifest.yaml`, and the validated manifest (for its schedules). */
  readonly sync?: { readonly configMapName: string; readonly manifest: SyncManifest };
  /** @default see GcProps */
  readonly gc?: GcProps;
  /** @default see BackupProps (off) */
  readonly backup?: BackupProps;
  /** The user the image runs as. */
  readonly runAs: number;
}

const SYNC_DIR = "/etc/registry-sync";
const BACKUP_DIR = "/backups";
const TLS_DIR = "/certs";

/**
 * The registry's scheduled maintenance as CronJobs that run the registry image's own CLI against
 * the running registry (`neam-registry sync` and `neam-registry gc`): the registry does the work
 * online and records each outcome in its metrics, so a CronJob pod needs no volume and no
 * privileges. One sync CronJob runs every image on the manifest's frequency (the guide's
 * `registry-image-sync`, "every 4 hours" by default); an image with a schedule of its own is also
 * synced by a CronJob for that schedule.
 */
export class RegistryMaintenanceJobs extends Construct {
  readonly cronJobs: KubeCronJob[] = [];
  readonly backupClaim?: KubePersistentVolumeClaim;

  constructor(scope: Construct, id: string, props: RegistryMaintenanceJobsProps) {
    super(scope, id);
    const prefix = props.prefix ?? "registry";
    const gc = { enabled: true, schedule: "0 3 * * 0", untagged: false, gracePeriod: "1h", ...props.gc };
    if (!isCronExpression(gc.schedule))
      throw new Error(
        `LocalRegistry: gc.schedule ${JSON.stringify(gc.schedule)} is not a five-field cron expression`,
      );
    if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(gc.gracePeriod))
      throw new Error(
        `LocalRegistry: gc.gracePeriod ${JSON.stringify(gc.gracePeriod)} is not a duration such as 1h`,
      );

    const common = ["--url", props.registryUrl, ...(props.ca ? ["--ca", `${TLS_DIR}/ca.crt`] : [])];
    if (props.sync !== undefined) {
      const { manifest, configMapName } = props.sync;
      const frequency = frequencyOf(manifest);
      const syncArgs = ["sync", "--manifest", `${SYNC_DIR}/sync-manifest.yaml`, ...common];
      const volume: Volume = { name: "sync-manifest", configMap: { name: configMapName } };
      const mount: VolumeMount = { name: "sync-manifest", mountPath: SYNC_DIR, readOnly: true };
      this.cronJob(props, `${prefix}-image-sync`, frequency, syncArgs, [volume], [mount], 3 * 3600);
      for (const schedule of schedulesOf(manifest).filter((s) => s !== frequency)) {
        this.cronJob(
          props,
          `${prefix}-image-sync-${slug(schedule)}`,
          schedule,
          [...syncArgs, "--schedule", schedule],
          [volume],
          [mount],
          3 * 3600,
        );
      }
    }
    if (gc.enabled) {
      const gcArgs = ["gc", ...common, "--grace", gc.gracePeriod, ...(gc.untagged ? ["--untagged"] : [])];
      this.cronJob(props, `${prefix}-gc`, gc.schedule, gcArgs, [], [], 2 * 3600);
    }
    const backup = { enabled: false, schedule: "0 1 * * *", keep: 7, size: "100Gi", ...props.backup };
    if (backup.enabled) {
      if (!isCronExpression(backup.schedule))
        throw new Error(
          `LocalRegistry: backup.schedule ${JSON.stringify(backup.schedule)} is not a five-field cron expression`,
        );
      if (!Number.isInteger(backup.keep) || backup.keep < 1)
        throw new Error(`LocalRegistry: backup.keep must be a positive integer, not ${backup.keep}`);
      let claimName = backup.existingClaim;
      if (claimName === undefined) {
        checkQuantity("backup.size", backup.size);
        this.backupClaim = new KubePersistentVolumeClaim(this, "backups", {
          metadata: { name: `${prefix}-backups`, namespace: props.namespace, labels: props.podLabels },
          spec: {
            accessModes: ["ReadWriteOnce"],
            ...(backup.storageClass ? { storageClassName: backup.storageClass } : {}),
            resources: { requests: { storage: Quantity.fromString(backup.size) } },
          },
        });
        claimName = this.backupClaim.name;
      }
      const backupArgs = ["backup", "--output-dir", BACKUP_DIR, "--keep", String(backup.keep), ...common];
      this.cronJob(
        props,
        `${prefix}-backup`,
        backup.schedule,
        backupArgs,
        [{ name: "backups", persistentVolumeClaim: { claimName } }],
        [{ name: "backups", mountPath: BACKUP_DIR }],
        6 * 3600,
        { writesVolume: true },
      );
    }
  }

  private cronJob(
    props: RegistryMaintenanceJobsProps,
    name: string,
    schedule: string,
    args: string[],
    volumes: Volume[],
    mounts: VolumeMount[],
    deadlineSeconds: number,
    options: { writesVolume?: boolean } = {},
  ): void {
    if (name.length > 52) throw new Error(`LocalRegistry: CronJob name ${name} is longer than 52 characters`);
    const env: EnvVar[] = [];
    if (props.credentials !== undefined) {
      const { secretName, usernameKey = "username", passwordKey = "password" } = props.credentials;
      env.push(
        {
          name: "NEAM_REGISTRY_USERNAME",
          valueFrom: { secretKeyRef: { name: secretName, key: usernameKey } },
        },
        {
          name: "NEAM_REGISTRY_PASSWORD",
          valueFrom: { secretKeyRef: { name: secretName, key: passwordKey } },
        },
      );
    }
    const allVolumes = [...volumes];
    const allMounts = [...mounts];
    if (props.ca !== undefined) {
      allVolumes.push({
        name: "tls",
        secret: {
          secretName: props.ca.secretName,
          items: [{ key: props.ca.key, path: "ca.crt" }],
          ...(props.ca.optional ? { optional: true } : {}),
        },
      });
      allMounts.push({ name: "tls", mountPath: TLS_DIR, readOnly: true });
    }
    const labels = props.podLabels;
    this.cronJobs.push(
      new KubeCronJob(this, name, {
        metadata: { name, namespace: props.namespace, labels },
        spec: {
          schedule,
          // A run that is still going when the next is due is left to finish; none piles up.
          concurrencyPolicy: "Forbid",
          startingDeadlineSeconds: 600,
          successfulJobsHistoryLimit: 3,
          failedJobsHistoryLimit: 3,
          jobTemplate: {
            metadata: { labels },
            spec: {
              backoffLimit: 2,
              activeDeadlineSeconds: deadlineSeconds,
              template: {
                metadata: { labels },
                spec: {
                  restartPolicy: "Never",
                  automountServiceAccountToken: false,
                  // A volume the job writes to must be group-writable by the image's user.
                  securityContext: podSecurityContext(props.runAs, { fsGroup: options.writesVolume }),
                  ...podHooks(props.pod),
                  containers: [
                    {
                      name: args[0]!,
                      image: props.image,
                      imagePullPolicy: props.imagePullPolicy,
                      args,
                      env,
                      securityContext: containerSecurityContext(),
                      // The work happens in the registry; the job only waits for its answer.
                      resources: {
                        requests: { cpu: Quantity.fromString("10m"), memory: Quantity.fromString("64Mi") },
                        limits: { cpu: Quantity.fromString("200m"), memory: Quantity.fromString("128Mi") },
                      },
                      volumeMounts: allMounts,
                    },
                  ],
                  volumes: allVolumes,
                },
              },
            },
          },
        },
      }),
    );
  }
}

/** A cron expression as a name part: `0 2 * * *` → `0-2-x-x-x`. */
function slug(schedule: string): string {
  return schedule
    .replaceAll("*", "x")
    .replaceAll("/", "e")
    .replaceAll(",", "c")
    .replaceAll("-", "t")
    .split(" ")
    .join("-");
}

function podHooks(pod: RegistryMaintenanceJobsProps["pod"]) {
  if (pod === undefined) return {};
  return {
    ...(pod.tolerations !== undefined ? { tolerations: [...pod.tolerations] } : {}),
    ...(pod.nodeSelector !== undefined ? { nodeSelector: { ...pod.nodeSelector } } : {}),
    ...(pod.priorityClassName !== undefined ? { priorityClassName: pod.priorityClassName } : {}),
    ...(pod.imagePullSecrets !== undefined
      ? { imagePullSecrets: pod.imagePullSecrets.map((name) => ({ name })) }
      : {}),
  };
}
