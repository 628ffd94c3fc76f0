/**
 * `bundle create`: every image of a sync manifest (same `platform` filter, same upstream settings
 * as `sync`), with its referrers, into one bundle. Manifests are fetched first (kilobytes) so the
 * content list can lead the archive; blobs then stream from the upstream into the tar, each
 * verified against its digest on the way — nothing is held in memory whole.
 */
import { createHash } from "node:crypto";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pack as tarPack } from "tar-stream";
import { parseDigest, type Digest } from "../registry/digest.js";
import { parseManifest } from "../registry/manifest.js";
import { formatReference, parseImageReference } from "../sync/image-reference.js";
import type { SyncManifest } from "../sync/manifest.js";
import type { FetchedManifest, UpstreamClient } from "../sync/upstream.js";
import { fetchManifest, platformManifest } from "../sync/upstream-manifests.js";
import {
  blobPath,
  BUNDLE_VERSION,
  BundleError,
  CONTENT_LIST,
  type BundleContent,
  type BundleImage,
  type ContentList,
} from "./format.js";
import type { BundleWriter } from "./parts.js";

export interface CreateOptions {
  readonly manifest: SyncManifest;
  readonly upstreams: (registry: string) => UpstreamClient;
  /** Digests the site holds: their blobs are left out. */
  readonly have?: ReadonlySet<string>;
  readonly out: BundleWriter;
  readonly onPlanned?: (list: ContentList) => void;
  readonly onBytes?: (n: number) => void;
}

export interface CreateReport {
  readonly images: number;
  readonly blobs: number;
  readonly manifests: number;
  readonly omitted: number;
  readonly omittedBytes: number;
  readonly bytes: number;
  readonly parts: { name: string; sha256: string }[];
}

interface Node {
  readonly content: BundleContent;
  readonly bytes?: Buffer;
  readonly client: UpstreamClient;
  readonly upstreamRepository: string;
}

export async function createBundle(options: CreateOptions): Promise<CreateReport> {
  const nodes = new Map<string, Node>();
  const order: string[] = [];
  const images: BundleImage[] = [];
  const add = (node: Node) => {
    const existing = nodes.get(node.content.digest);
    if (existing !== undefined) {
      for (const repository of node.content.repositories)
        if (!existing.content.repositories.includes(repository))
          existing.content.repositories.push(repository);
      return false;
    }
    nodes.set(node.content.digest, node);
    order.push(node.content.digest);
    return true;
  };

  for (const image of options.manifest.sync.images) {
    const source = parseImageReference(image.source);
    const target = parseImageReference(image.target);
    if (target.tag === undefined) throw new BundleError(`${image.target}: the target needs a tag`);
    const client = options.upstreams(source.registry);
    let top = await fetchManifest(client, source.repository, source.digest?.value ?? source.tag ?? "latest");
    if (image.platform !== undefined)
      top = await platformManifest(client, source.repository, top, image.platform);
    const visit = async (manifest: FetchedManifest) => {
      const parsed = parseManifest(manifest.bytes, manifest.mediaType || undefined);
      const descriptors = sizesOf(manifest.bytes);
      for (const child of parsed.children)
        await visit(await fetchManifest(client, source.repository, child.value));
      for (const blob of parsed.blobs) {
        const size = descriptors.get(blob.value);
        if (size === undefined)
          throw new BundleError(`${formatReference(source)}: ${blob.value} has no size`);
        add({
          content: {
            digest: blob.value,
            size,
            mediaType: "application/octet-stream",
            manifest: false,
            repositories: [target.repository],
            source: formatReference(source),
            ...(options.have?.has(blob.value) ? { omitted: true } : {}),
          },
          client,
          upstreamRepository: source.repository,
        });
      }
      add({
        content: {
          digest: manifest.digest.value,
          size: manifest.bytes.length,
          mediaType: parsed.mediaType,
          manifest: true,
          repositories: [target.repository],
          source: formatReference(source),
        },
        bytes: manifest.bytes,
        client,
        upstreamRepository: source.repository,
      });
      // Signatures, SBOMs and attestations of this manifest come along (and theirs).
      for (const referrer of await client.referrers(source.repository, manifest.digest))
        if (!nodes.has(referrer.digest))
          await visit(await fetchManifest(client, source.repository, referrer.digest));
    };
    await visit(top);
    images.push({
      source: image.source,
      target: `${target.repository}:${target.tag}`,
      digest: top.digest.value,
      mediaType: parseManifest(top.bytes, top.mediaType || undefined).mediaType,
    });
  }

  // Blobs first, then manifests in the order visited (children before parents).
  const content = [
    ...order.map((d) => nodes.get(d)!.content).filter((c) => !c.manifest),
    ...order.map((d) => nodes.get(d)!.content).filter((c) => c.manifest),
  ];
  const list: ContentList = { version: BUNDLE_VERSION, created: new Date().toISOString(), images, content };
  options.onPlanned?.(list);

  const tar = tarPack();
  const written = pipeline(tar, counting(options.onBytes), options.out);
  const entry = (name: string, data: Buffer) =>
    new Promise<void>((resolve, reject) =>
      tar.entry({ name, mtime: new Date(0) }, data, (e) => (e ? reject(e) : resolve())),
    );
  await entry(CONTENT_LIST, Buffer.from(`${JSON.stringify(list, null, 1)}\n`));
  await entry("oci-layout", Buffer.from(`${JSON.stringify({ imageLayoutVersion: "1.0.0" })}\n`));
  let omittedBytes = 0;
  for (const item of content) {
    if (item.omitted) {
      omittedBytes += item.size;
      continue;
    }
    const node = nodes.get(item.digest)!;
    if (node.bytes !== undefined) {
      await entry(blobPath(item.digest), node.bytes);
      continue;
    }
    const stream = await node.client.blob(node.upstreamRepository, parseDigest(item.digest));
    await streamEntry(tar, blobPath(item.digest), item.size, stream, parseDigest(item.digest));
  }
  const index = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: images.map((image) => ({
      mediaType: image.mediaType,
      digest: image.digest,
      size: nodes.get(image.digest)!.content.size,
      annotations: {
        "org.opencontainers.image.ref.name": image.target,
        "io.neam.bundle.source": image.source,
      },
    })),
  };
  await entry("index.json", Buffer.from(`${JSON.stringify(index)}\n`));
  tar.finalize();
  await written;
  return {
    images: images.length,
    blobs: content.filter((c) => !c.manifest && !c.omitted).length,
    manifests: content.filter((c) => c.manifest).length,
    omitted: content.filter((c) => c.omitted).length,
    omittedBytes,
    bytes: options.out.total,
    parts: options.out.parts,
  };
}

/** Streams a blob into the tar, failing (and so spoiling the bundle) if its bytes do not match. */
function streamEntry(
  tar: ReturnType<typeof tarPack>,
  name: string,
  size: number,
  body: Readable,
  digest: Digest,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const hash = createHash(digest.algorithm);
    let seen = 0;
    const sink = tar.entry({ name, size, mtime: new Date(0) }, (error) => {
      if (error) return reject(error);
      const actual = hash.digest("hex");
      if (seen !== size || actual !== digest.hex)
        return reject(
          new BundleError(`${digest.value}: the upstream sent ${seen} bytes hashing to ${actual}`),
        );
      resolve();
    });
    body.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      seen += chunk.length;
    });
    pipeline(body, sink).catch(reject);
  });
}

function counting(onBytes?: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
}

/** Digest → size of every descriptor a manifest names (config, layers, manifests, subject). */
function sizesOf(bytes: Buffer): Map<string, number> {
  const body = JSON.parse(bytes.toString("utf8")) as {
    config?: { digest: string; size: number };
    layers?: { digest: string; size: number }[];
    blobs?: { digest: string; size: number }[];
    manifests?: { digest: string; size: number }[];
  };
  const sizes = new Map<string, number>();
  for (const d of [body.config, ...(body.layers ?? []), ...(body.blobs ?? []), ...(body.manifests ?? [])])
    if (d !== undefined && typeof d.digest === "string" && Number.isSafeInteger(d.size))
      sizes.set(d.digest, d.size);
  return sizes;
}
