/**
 * Manifests fetched from an upstream the way sync and bundles both need them: a manifest asked for
 * by digest must hash to it, and an image of a multi-arch index is picked by platform.
 */
import type { Digest } from "../registry/digest.js";
import { parseManifest } from "../registry/manifest.js";
import { MANIFEST_MEDIA_TYPES } from "../registry/media-types.js";
import { UpstreamError, type FetchedManifest, type UpstreamClient } from "./upstream.js";

/** The manifest `reference` names upstream; by digest, only if its bytes are that digest. */
export async function fetchManifest(
  upstream: UpstreamClient,
  repository: string,
  reference: string | Digest,
): Promise<FetchedManifest> {
  const fetched = await upstream.manifest(
    repository,
    typeof reference === "string" ? reference : reference.value,
  );
  const wanted =
    typeof reference === "string" ? (reference.includes(":") ? reference : undefined) : reference.value;
  if (wanted !== undefined && fetched.digest.value !== wanted)
    throw new UpstreamError(
      `${repository}@${wanted}: the upstream served content of ${fetched.digest.value}`,
    );
  // Old registries answer application/json; the manifest's own mediaType then decides.
  return MANIFEST_MEDIA_TYPES.includes(fetched.mediaType) ? fetched : { ...fetched, mediaType: "" };
}

/** The entry of an index for `platform` (`os/arch[/variant]`); a single manifest is itself. */
export async function platformManifest(
  upstream: UpstreamClient,
  repository: string,
  manifest: FetchedManifest,
  platform: string,
): Promise<FetchedManifest> {
  const parsed = parseManifest(manifest.bytes, manifest.mediaType || undefined);
  if (!parsed.isIndex) return manifest;
  const [os, architecture, variant] = platform.split("/");
  const entry = parsed.entries?.find(
    (e) =>
      e.platform?.os === os &&
      e.platform?.architecture === architecture &&
      (variant === undefined || e.platform?.variant === variant),
  );
  if (entry === undefined)
    throw new UpstreamError(`the upstream index ${manifest.digest.value} has no ${platform} image`);
  return fetchManifest(upstream, repository, entry.digest);
}
