/** Media types the registry understands. One source of truth for server, constructs and tests. */
export const MediaType = {
  OciManifest: "application/vnd.oci.image.manifest.v1+json",
  OciIndex: "application/vnd.oci.image.index.v1+json",
  OciConfig: "application/vnd.oci.image.config.v1+json",
  OciEmpty: "application/vnd.oci.empty.v1+json",
  DockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  DockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  DockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  DockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
  HelmConfig: "application/vnd.cncf.helm.config.v1+json",
  HelmChartContent: "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
} as const;

/** Manifest kinds we store and serve; everything else pushed to /manifests is refused. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
];

export const INDEX_MEDIA_TYPES: readonly string[] = [MediaType.OciIndex, MediaType.DockerManifestList];

/** Layers that clients fetch from elsewhere (`urls`), so their blobs need not be in the registry. */
export const NON_DISTRIBUTABLE_LAYER_TYPES: readonly string[] = [
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];
