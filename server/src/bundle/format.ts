/**
 * The bundle: what crosses the air gap. One tar (or numbered parts of it) holding an OCI image
 * layout, led by a content list so an import knows every digest, size and destination before the
 * first blob arrives and can stream the rest straight into the registry:
 *
 *   neam-bundle.json   the content list (below)
 *   oci-layout
 *   blobs/sha256/…     every blob, then every manifest, children before the manifests naming them
 *   index.json         one entry per image, named by its target reference
 *
 * Blobs the site already holds (`bundle have`) are left out; manifests are always carried (they
 * are kilobytes, and carrying them frees the import from knowing which repository holds the
 * site's copy). A plain OCI layout tar (skopeo's oci-archive, other tools) imports too.
 */
export const CONTENT_LIST = "neam-bundle.json";
export const BUNDLE_VERSION = 1;

export interface BundleImage {
  /** As the sync manifest names it: `docker.io/library/nginx:1.25-alpine`. */
  readonly source: string;
  /** Repository and tag here: `nginx:1.25-alpine`. */
  readonly target: string;
  readonly digest: string;
  readonly mediaType: string;
}

export interface BundleContent {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
  /** True for manifests and indexes (pushed by manifest PUT, after what they reference). */
  readonly manifest: boolean;
  /** Repositories here that need it; the first receives the upload, the others a mount. */
  readonly repositories: string[];
  /** The upstream reference it was fetched for. */
  readonly source: string;
  /** Left out because the site holds it (a `--have` list). */
  readonly omitted?: boolean;
}

export interface ContentList {
  readonly version: number;
  readonly created: string;
  readonly images: BundleImage[];
  /** In the order the blobs are written: the order an import can commit them. */
  readonly content: BundleContent[];
}

/** What `bundle have` writes: the digests a site holds, and nothing about their names. */
export interface HaveList {
  readonly digests: string[];
  /** Bytes free on the registry's storage, when it can tell. */
  readonly freeBytes: number | null;
}

export class BundleError extends Error {
  override name = "BundleError";
}

/** The path of a blob inside the layout. */
export function blobPath(digest: string): string {
  const [algorithm, hex] = digest.split(":");
  return `blobs/${algorithm}/${hex}`;
}

/** The digest a layout path names, if it names one. */
export function digestOfPath(path: string): string | undefined {
  const match = /^(?:\.\/)?blobs\/(sha256|sha512)\/([a-f0-9]{64,128})$/.exec(path);
  return match ? `${match[1]}:${match[2]}` : undefined;
}

/** `repo:tag` → its parts (the tag after the last colon that follows the last slash). */
export function splitTarget(target: string): { repository: string; tag: string } {
  const colon = target.lastIndexOf(":");
  if (colon < 0 || colon < target.lastIndexOf("/")) throw new BundleError(`target ${target} has no tag`);
  return { repository: target.slice(0, colon), tag: target.slice(colon + 1) };
}
