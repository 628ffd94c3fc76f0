import type { Digest } from "../registry/digest.js";

/**
 * The reference registry's on-disk layout (CNCF Distribution `registry/storage/paths.go`), so a
 * `registry:2` volume is served as-is and the reverse. Our own indexes (referrers) sit beside it
 * under names the reference ignores.
 */
export const ROOT = "/docker/registry/v2";
export const REPOSITORIES = `${ROOT}/repositories`;
export const BLOBS = `${ROOT}/blobs`;

export const layout = {
  blobDir: (d: Digest) => `${BLOBS}/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`,
  blobData: (d: Digest) => `${BLOBS}/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}/data`,
  repository: (name: string) => `${REPOSITORIES}/${name}`,
  layerLink: (name: string, d: Digest) => `${REPOSITORIES}/${name}/_layers/${d.algorithm}/${d.hex}/link`,
  layerDir: (name: string, d: Digest) => `${REPOSITORIES}/${name}/_layers/${d.algorithm}/${d.hex}`,
  manifestsDir: (name: string) => `${REPOSITORIES}/${name}/_manifests`,
  revisionLink: (name: string, d: Digest) =>
    `${REPOSITORIES}/${name}/_manifests/revisions/${d.algorithm}/${d.hex}/link`,
  revisionDir: (name: string, d: Digest) =>
    `${REPOSITORIES}/${name}/_manifests/revisions/${d.algorithm}/${d.hex}`,
  tagsDir: (name: string) => `${REPOSITORIES}/${name}/_manifests/tags`,
  tagDir: (name: string, tag: string) => `${REPOSITORIES}/${name}/_manifests/tags/${tag}`,
  tagCurrentLink: (name: string, tag: string) =>
    `${REPOSITORIES}/${name}/_manifests/tags/${tag}/current/link`,
  tagIndexLink: (name: string, tag: string, d: Digest) =>
    `${REPOSITORIES}/${name}/_manifests/tags/${tag}/index/${d.algorithm}/${d.hex}/link`,
  uploadDir: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}`,
  uploadData: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}/data`,
  /** Saved running hashes of an upload, one file per offset (as the reference registry keeps them). */
  uploadHashStates: (name: string, id: string, algorithm: string) =>
    `${REPOSITORIES}/${name}/_uploads/${id}/hashstates/${algorithm}`,
  uploadHashState: (name: string, id: string, algorithm: string, offset: number) =>
    `${REPOSITORIES}/${name}/_uploads/${id}/hashstates/${algorithm}/${offset}`,
  uploadStartedAt: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}/startedat`,
  referrersDir: (name: string, subject: Digest) =>
    `${REPOSITORIES}/${name}/_referrers/${subject.algorithm}/${subject.hex}`,
  referrerLink: (name: string, subject: Digest, referrer: Digest) =>
    `${REPOSITORIES}/${name}/_referrers/${subject.algorithm}/${subject.hex}/${referrer.algorithm}/${referrer.hex}/link`,
};
