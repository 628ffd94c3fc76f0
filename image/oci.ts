/**
 * The OCI image around the layers: config, manifest, an image layout with the reference named in
 * the ways skopeo (`org.opencontainers.image.ref.name`) and containerd's `ctr images import`
 * (`io.containerd.image.name`) read it, and the layout as one oci-archive tar.
 */
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Layer } from "./layer.js";

export interface ImageConfig {
  user: string;
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir: string;
  exposedPorts: number[];
  volumes: string[];
  labels: Record<string, string>;
  /** Docker's HEALTHCHECK, carried in the config as Docker writes it (OCI runtimes ignore it). */
  healthcheck?: {
    test: string[];
    intervalSeconds: number;
    timeoutSeconds: number;
    startPeriodSeconds: number;
  };
}

export interface BuiltImage {
  /** The manifest's digest: what `skopeo inspect` and a registry report for this image. */
  manifestDigest: string;
  configDigest: string;
  layers: Layer[];
  /** Compressed size of config and layers. */
  size: number;
}

const SECOND = 1_000_000_000;

function blob(layout: string, content: string): { digest: string; size: number } {
  const bytes = Buffer.from(content);
  const hex = createHash("sha256").update(bytes).digest("hex");
  writeFileSync(join(layout, "blobs/sha256", hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/** Writes an OCI image layout at `layout` holding one image named `reference` (`repo:tag`). */
export function writeLayout(
  layout: string,
  reference: string,
  layers: Layer[],
  config: ImageConfig,
  created: string,
  history: string[],
): BuiltImage {
  mkdirSync(join(layout, "blobs/sha256"), { recursive: true });
  writeFileSync(join(layout, "oci-layout"), `${JSON.stringify({ imageLayoutVersion: "1.0.0" })}\n`);
  for (const layer of layers) copyFileSync(layer.file, join(layout, "blobs/sha256", layer.digest.slice(7)));

  const imageConfig = {
    created,
    architecture: "amd64",
    os: "linux",
    config: {
      User: config.user,
      ExposedPorts: Object.fromEntries(config.exposedPorts.map((p) => [`${p}/tcp`, {}])),
      Env: config.env,
      Entrypoint: config.entrypoint,
      Cmd: config.cmd,
      WorkingDir: config.workingDir,
      Volumes: Object.fromEntries(config.volumes.map((v) => [v, {}])),
      Labels: config.labels,
      StopSignal: "SIGTERM",
      ...(config.healthcheck && {
        Healthcheck: {
          Test: config.healthcheck.test,
          Interval: config.healthcheck.intervalSeconds * SECOND,
          Timeout: config.healthcheck.timeoutSeconds * SECOND,
          StartPeriod: config.healthcheck.startPeriodSeconds * SECOND,
        },
      }),
    },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: history.map((createdBy) => ({ created, created_by: createdBy })),
  };
  const configBlob = blob(layout, JSON.stringify(imageConfig));
  const annotations = {
    "org.opencontainers.image.created": created,
    ...pick(config.labels, ["org.opencontainers.image.version", "org.opencontainers.image.revision"]),
  };
  const manifest = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...configBlob },
    layers: layers.map((l) => ({
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      digest: l.digest,
      size: l.size,
    })),
    annotations,
  };
  const manifestBlob = blob(layout, JSON.stringify(manifest));
  const tag = reference.slice(reference.lastIndexOf(":") + 1);
  const index = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      {
        mediaType: manifest.mediaType,
        ...manifestBlob,
        platform: { architecture: "amd64", os: "linux" },
        annotations: {
          "io.containerd.image.name": qualifiedReference(reference),
          "org.opencontainers.image.ref.name": tag,
        },
      },
    ],
  };
  writeFileSync(join(layout, "index.json"), `${JSON.stringify(index)}\n`);
  return {
    manifestDigest: manifestBlob.digest,
    configDigest: configBlob.digest,
    layers,
    size: configBlob.size + layers.reduce((sum, l) => sum + l.size, 0),
  };
}

/**
 * The name as containerd and the kubelet store it: `neam-registry:0.1.0` is
 * `docker.io/library/neam-registry:0.1.0`, so a pod naming the short form finds the imported image.
 */
export function qualifiedReference(reference: string): string {
  const first = reference.split("/")[0]!;
  const hasHost =
    reference.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  if (hasHost) return reference;
  return reference.includes("/") ? `docker.io/${reference}` : `docker.io/library/${reference}`;
}

function pick(record: Record<string, string>, keys: string[]): Record<string, string> {
  return Object.fromEntries(keys.filter((k) => k in record).map((k) => [k, record[k]!]));
}
