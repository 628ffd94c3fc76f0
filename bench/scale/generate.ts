/**
 * Writes a registry:2 filesystem store directly (no HTTP): the shape of a site that has pushed
 * for years. Per 1× (`scale` multiplies every count):
 *   1,000 repositories, 20,000 manifests, 140,000 blobs (each with its correct sha256 name).
 * Each repository holds 18 image manifests (a config and 2 shared base layers + 5–6 layers of
 * its own each) and 2 multi-arch indexes of 2 of them each. 8 tags (one index, 7 images) reach
 * 10 manifests; the other 10 (an index, its 2 platforms and 7 images) are untagged, for
 * `garbage-collect --delete-untagged`. The base layers are a pool of 1,000 blobs shared by all.
 *
 *   node dist/bench/scale/generate.js [--scale=0.1] DIR
 */
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";

export const PER_SCALE = { repositories: 1000, manifests: 20_000, blobs: 140_000 };
const IMAGES_PER_REPOSITORY = 18;
const OWN_LAYERS_PER_REPOSITORY = 101;
const BASE_LAYERS_PER_REPOSITORY = 1;
/** Filesystem calls in flight at once: enough to keep the disk busy, few enough to share the machine. */
const CONCURRENCY = 32;

export interface GeneratedStore {
  readonly root: string;
  readonly repositories: number;
  readonly manifests: number;
  readonly blobs: number;
  /** Manifests no tag reaches (directly or through an index): what `--delete-untagged` removes. */
  readonly untaggedManifests: number;
  readonly seconds: number;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string };
}

/** Writes the store under `root` (`root/docker/registry/v2/...`). */
export async function generateStore(root: string, scale = 1): Promise<GeneratedStore> {
  const started = performance.now();
  const v2 = join(root, "docker/registry/v2");
  const repositories = Math.max(1, Math.round(PER_SCALE.repositories * scale));
  const writer = new BoundedWriter(CONCURRENCY);
  const createdPrefixes = new Set<string>();
  await mkdir(join(v2, "blobs/sha256"), { recursive: true });
  for (let i = 0; i < 256; i++) {
    const prefix = i.toString(16).padStart(2, "0");
    await mkdir(join(v2, "blobs/sha256", prefix), { recursive: true });
    createdPrefixes.add(prefix);
  }
  let blobs = 0;
  let manifests = 0;
  let untagged = 0;
  const blob = (content: Buffer | string, mediaType: string): Descriptor => {
    const bytes = typeof content === "string" ? Buffer.from(content) : content;
    const hex = createHash("sha256").update(bytes).digest("hex");
    const dir = join(v2, "blobs/sha256", hex.slice(0, 2), hex);
    writer.add(async () => {
      await mkdir(dir);
      await writeFile(join(dir, "data"), bytes);
    });
    blobs++;
    return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
  };
  const link = (path: string, digest: string) =>
    writer.add(async () => {
      await mkdir(path, { recursive: true });
      await writeFile(join(path, "link"), digest);
    });

  // Base layers, shared by every repository: each repository links the ones its images use.
  const base: Descriptor[] = [];
  for (let i = 0; i < repositories * BASE_LAYERS_PER_REPOSITORY; i++)
    base.push(blob(layerBytes(`base ${i}`, 512 + (i % 7) * 128), OCI_LAYER));

  for (let r = 0; r < repositories; r++) {
    const name = `team${r % 50}/service-${r}`;
    const repo = join(v2, "repositories", name);
    const linkLayer = (d: Descriptor) => link(join(repo, "_layers/sha256", d.digest.slice(7)), d.digest);
    const revision = (d: Descriptor) => {
      manifests++;
      link(join(repo, "_manifests/revisions/sha256", d.digest.slice(7)), d.digest);
    };
    const tag = (t: string, d: Descriptor) => {
      link(join(repo, "_manifests/tags", t, "current"), d.digest);
      link(join(repo, "_manifests/tags", t, "index/sha256", d.digest.slice(7)), d.digest);
    };
    const images: Descriptor[] = [];
    let own = 0;
    for (let i = 0; i < IMAGES_PER_REPOSITORY; i++) {
      const config = blob(
        JSON.stringify({
          architecture: i % 2 === 0 ? "amd64" : "arm64",
          os: "linux",
          config: { Env: [`IMAGE=${name}:${i}`] },
          rootfs: { type: "layers", diff_ids: [] },
        }),
        OCI_CONFIG,
      );
      linkLayer(config);
      const layers: Descriptor[] = [
        base[(r * 7 + i) % base.length]!,
        base[(r * 13 + i * 3 + 1) % base.length]!,
      ];
      const ownCount =
        Math.floor(OWN_LAYERS_PER_REPOSITORY / IMAGES_PER_REPOSITORY) +
        (i < OWN_LAYERS_PER_REPOSITORY % IMAGES_PER_REPOSITORY ? 1 : 0);
      for (let l = 0; l < ownCount; l++)
        layers.push(blob(layerBytes(`${name} layer ${own++}`, 256 + ((r + l) % 9) * 256), OCI_LAYER));
      for (const layer of layers) linkLayer(layer);
      const manifest = blob(
        JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers }),
        OCI_MANIFEST,
      );
      revision(manifest);
      images.push(manifest);
    }
    // Images 0–3 are the platforms of the two indexes; the tagged index is the first.
    const index = (platforms: Descriptor[]) => {
      const d = blob(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: platforms.map((p, i) => ({
            ...p,
            platform: { os: "linux", architecture: i % 2 === 0 ? "amd64" : "arm64" },
          })),
        }),
        OCI_INDEX,
      );
      revision(d);
      return d;
    };
    tag("multi-arch", index(images.slice(0, 2)));
    index(images.slice(2, 4));
    untagged += 3;
    for (let i = 4; i < IMAGES_PER_REPOSITORY; i++) {
      if (i % 2 === 0) tag(`v${i}`, images[i]!);
      else untagged++;
    }
    await writer.drainTo(CONCURRENCY * 64);
  }
  await writer.drainTo(0);
  return {
    root,
    repositories,
    manifests,
    blobs,
    untaggedManifests: untagged,
    seconds: (performance.now() - started) / 1000,
  };
}

/** `size` bytes of content unique to `seed` (cheap to make, distinct digests). */
function layerBytes(seed: string, size: number): Buffer {
  const bytes = Buffer.alloc(size);
  const head = createHash("sha256").update(seed).digest();
  for (let i = 0; i < size; i += head.length) head.copy(bytes, i);
  return bytes;
}

/** Runs queued async jobs with at most `limit` in flight; the first failure is rethrown on drain. */
class BoundedWriter {
  private readonly queue: (() => Promise<void>)[] = [];
  private running = 0;
  private failure: unknown;
  private waiters: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  add(job: () => Promise<void>): void {
    this.queue.push(job);
    this.pump();
  }

  /** Resolves once at most `pending` jobs are queued or running. */
  async drainTo(pending: number): Promise<void> {
    while (this.queue.length + this.running > pending) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure !== undefined) throw this.failure;
  }

  private pump(): void {
    while (this.running < this.limit && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.running++;
      job()
        .catch((error: unknown) => (this.failure ??= error))
        .finally(() => {
          this.running--;
          const waiters = this.waiters;
          this.waiters = [];
          for (const w of waiters) w();
          this.pump();
        });
    }
  }
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const scaleArg = process.argv.find((a) => a.startsWith("--scale="));
  const dir = process.argv.slice(2).find((a) => !a.startsWith("--"));
  if (dir === undefined) {
    console.error("usage: generate.js [--scale=N] DIR");
    process.exit(2);
  }
  const store = await generateStore(dir, scaleArg === undefined ? 1 : Number(scaleArg.slice(8)));
  console.log(JSON.stringify(store));
}
