/**
 * Image layers that are the same bytes for the same files: GNU tar with entries sorted by name,
 * one fixed mtime (SOURCE_DATE_EPOCH), numeric owners and no atime/ctime, then gzip without a
 * name or time in its header. Both digests are computed while the layer is written.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, readdirSync, statSync } from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createGzip } from "node:zlib";

export interface Layer {
  /** sha256 of the gzip stream: the blob's digest. */
  digest: string;
  /** sha256 of the tar: the config's diff_id. */
  diffId: string;
  size: number;
  file: string;
}

export interface TarPart {
  /** Directory whose entries (relative paths) go into the layer. */
  dir: string;
  /** Entries relative to `dir`; every top-level entry when absent. */
  paths?: string[];
  owner: number;
  group: number;
  /** Take directories given in `paths` without their contents. */
  noRecursion?: boolean;
}

function run(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("tar", args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", (error) => reject(new Error(`image: tar: ${error.message}`)));
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`image: tar exited ${code}: ${stderr.trim()}`)),
    );
  });
}

/** Writes `parts` into one tar (in order, each sorted by name), then the gzip layer beside it. */
export async function writeLayer(parts: TarPart[], tarFile: string, epoch: number): Promise<Layer> {
  for (const [index, part] of parts.entries()) {
    const paths = part.paths ?? readdirSync(part.dir).sort();
    await run([
      index === 0 ? "--create" : "--append",
      `--file=${tarFile}`,
      `--directory=${part.dir}`,
      "--format=gnu",
      "--sort=name",
      `--mtime=@${epoch}`,
      `--owner=${part.owner}`,
      `--group=${part.group}`,
      "--numeric-owner",
      ...(part.noRecursion ? ["--no-recursion"] : []),
      "--",
      ...paths,
    ]);
  }
  const diffHash = createHash("sha256");
  const blobHash = createHash("sha256");
  const file = `${tarFile}.gz`;
  await pipeline(
    createReadStream(tarFile),
    tap(diffHash),
    createGzip({ level: constants.Z_BEST_COMPRESSION }),
    tap(blobHash),
    createWriteStream(file),
  );
  return {
    digest: `sha256:${blobHash.digest("hex")}`,
    diffId: `sha256:${diffHash.digest("hex")}`,
    size: statSync(file).size,
    file,
  };
}

function tap(hash: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

/** A tar of a whole directory, sorted and timeless (the oci-archive of a layout). */
export async function writeTar(dir: string, file: string, epoch: number): Promise<void> {
  await run([
    "--create",
    `--file=${file}`,
    `--directory=${dir}`,
    "--format=gnu",
    "--sort=name",
    `--mtime=@${epoch}`,
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--",
    ...readdirSync(dir).sort(),
  ]);
}
