import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sha256 } from "./oci.js";

/**
 * Writes an OCI image layout with a two-platform index tagged `tag` and the amd64 image tagged
 * `tag-amd64` (like shared/tools/mkoci.sh, without jq). Layers are real gzipped tars, so
 * containerd can unpack them. Returns the digests written.
 */
export function writeOciLayout(
  dir: string,
  tag = "v1",
  salt = "",
): { index: string; manifests: Record<string, string> } {
  mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const put = (data: Buffer, mediaType: string) => {
    const digest = sha256(data);
    writeFileSync(join(dir, "blobs/sha256", digest.slice(7)), data);
    return { mediaType, digest, size: data.length };
  };
  const manifests: Record<string, string> = {};
  const descriptors = [];
  for (const arch of ["amd64", "arm64"]) {
    const work = join(dir, `.work-${arch}`);
    mkdirSync(join(work, "root"), { recursive: true });
    writeFileSync(join(work, "root/hello.txt"), `hello from ${arch}${salt}\n`);
    const tarred = spawnSync("tar", [
      "--sort=name",
      "--mtime=@0",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "-C",
      join(work, "root"),
      "-cf",
      "-",
      ".",
    ]);
    if (tarred.status !== 0) throw new Error(`tar failed: ${tarred.stderr}`);
    const gzipped = spawnSync("gzip", ["-n", "-c"], { input: tarred.stdout });
    const layer = put(gzipped.stdout, "application/vnd.oci.image.layer.v1.tar+gzip");
    const config = put(
      Buffer.from(
        JSON.stringify({
          architecture: arch,
          os: "linux",
          config: { Cmd: ["/hello.txt"] },
          rootfs: { type: "layers", diff_ids: [sha256(tarred.stdout)] },
          history: [{ created: "1970-01-01T00:00:00Z", created_by: "test" }],
        }),
      ),
      "application/vnd.oci.image.config.v1+json",
    );
    const manifest = put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config,
          layers: [layer],
        }),
      ),
      "application/vnd.oci.image.manifest.v1+json",
    );
    manifests[arch] = manifest.digest;
    descriptors.push({ ...manifest, platform: { architecture: arch, os: "linux" } });
  }
  const index = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: descriptors,
      }),
    ),
    "application/vnd.oci.image.index.v1+json",
  );
  const amd64 = descriptors[0]!;
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        { ...index, annotations: { "org.opencontainers.image.ref.name": tag } },
        {
          mediaType: amd64.mediaType,
          digest: amd64.digest,
          size: amd64.size,
          annotations: { "org.opencontainers.image.ref.name": `${tag}-amd64` },
        },
      ],
    }),
  );
  return { index: index.digest, manifests };
}

export function readLayoutIndex(dir: string): {
  manifests: { digest: string; annotations?: Record<string, string> }[];
} {
  return JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
}
