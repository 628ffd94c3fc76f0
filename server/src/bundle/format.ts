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
import { z } from "zod";
import { isValidTag, validateName } from "../registry/names.js";

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

const repositoryName = z.string().refine(
  (name) => {
    try {
      validateName(name);
      return true;
    } catch {
      return false;
    }
  },
  { message: "is not a repository name" },
);
const digestString = z.string().regex(/^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/, "is not a digest");
const target = z.string().refine(
  (value) => {
    const colon = value.lastIndexOf(":");
    if (colon < 0 || colon < value.lastIndexOf("/")) return false;
    return repositoryName.safeParse(value.slice(0, colon)).success && isValidTag(value.slice(colon + 1));
  },
  { message: "is not repository:tag" },
);

/**
 * What an import accepts as a content list: names the registry would accept, digests, sizes, and
 * counts far above any real bundle's (100,000 images, a million blobs) yet bounded.
 */
const ContentListSchema = z.strictObject({
  version: z.literal(BUNDLE_VERSION),
  created: z.string().max(64),
  images: z
    .array(
      z.strictObject({
        source: z.string().max(1024),
        target,
        digest: digestString,
        mediaType: z.string().max(255),
      }),
    )
    .max(100_000),
  content: z
    .array(
      z.strictObject({
        digest: digestString,
        size: z
          .number()
          .int()
          .min(0)
          .max(2 ** 53 - 1),
        mediaType: z.string().max(255),
        manifest: z.boolean(),
        repositories: z.array(repositoryName).min(1).max(1000),
        source: z.string().max(1024),
        omitted: z.boolean().optional(),
      }),
    )
    .max(1_000_000),
});

/**
 * A content list checked before anything is written: its shape and names, and that each image's
 * manifest is carried for the image's own repository.
 */
export function validateContentList(raw: unknown): ContentList {
  const parsed = ContentListSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new BundleError(`the bundle's content list: ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  const list = parsed.data as ContentList;
  const byDigest = new Map(list.content.map((c) => [c.digest, c]));
  for (const image of list.images) {
    const manifest = byDigest.get(image.digest);
    if (manifest === undefined || !manifest.manifest || manifest.omitted)
      throw new BundleError(
        `the bundle's content list: ${image.target}: its manifest ${image.digest} is not carried`,
      );
    if (!manifest.repositories.includes(splitTarget(image.target).repository))
      throw new BundleError(
        `the bundle's content list: ${image.target}: its manifest is not listed for that repository`,
      );
  }
  return list;
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
