import { parseDigest, type Digest } from "../registry/digest.js";
import { isValidTag, validateName } from "../registry/names.js";

/** An image reference as the sync manifest writes it: `host[:port]/path[:tag][@digest]`. */
export interface ImageReference {
  /** The host part as written (`docker.io`, `mirror.example:5000`). */
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: Digest;
}

export class ImageReferenceError extends Error {
  override name = "ImageReferenceError";
}

/**
 * Splits a reference into its parts. Docker Hub's short names get their implied `library/`
 * (`docker.io/nginx` is `docker.io/library/nginx`), as docker and skopeo read them.
 */
export function parseImageReference(text: string): ImageReference {
  const slash = text.indexOf("/");
  if (slash <= 0) throw new ImageReferenceError(`${text}: needs a registry host, such as docker.io/nginx`);
  const registry = text.slice(0, slash);
  let rest = text.slice(slash + 1);
  let digest: Digest | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    try {
      digest = parseDigest(rest.slice(at + 1));
    } catch {
      throw new ImageReferenceError(`${text}: invalid digest`);
    }
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) throw new ImageReferenceError(`${text}: invalid tag`);
  }
  let repository = rest;
  if (registry === "docker.io" && !repository.includes("/")) repository = `library/${repository}`;
  try {
    validateName(repository);
  } catch {
    throw new ImageReferenceError(`${text}: invalid repository name`);
  }
  return { registry, repository, ...(tag !== undefined ? { tag } : {}), ...(digest ? { digest } : {}) };
}

export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest.value}` : ""}`;
}
