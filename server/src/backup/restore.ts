import { createHash, randomBytes } from "node:crypto";
import { createReadStream, promises as fs } from "node:fs";
import { join } from "node:path";
import { list, extract } from "tar";
import { ARCHIVE_ROOT } from "./backup.js";

export interface RestoreReport {
  readonly files: number;
  readonly blobs: number;
  readonly bytes: number;
}

export class RestoreError extends Error {
  override name = "RestoreError";
}

/**
 * Restores a backup into a stopped registry's storage root: ours (`neam-registry backup`, paths
 * from `docker/registry/v2`) or the operations guide's (`tar -czf … /var/lib/registry`, any
 * prefix before it). Only regular files and directories of the layout are taken (no links, no
 * upload sessions, nothing that would land outside the root). Every blob is checked against its
 * digest before the restored tree replaces the old one in one rename, so a bad archive leaves the
 * storage as it was.
 */
export async function restoreArchive(
  root: string,
  archive: string,
  options: { force: boolean },
): Promise<RestoreReport> {
  const current = join(root, "docker");
  const occupied = await fs.readdir(current).then(
    (e) => e.length > 0,
    () => false,
  );
  if (occupied && !options.force)
    throw new RestoreError(`${root} already holds a registry; stop it and pass --force to replace it`);

  const prefix = await layoutPrefix(archive);
  const strip = prefix === "" ? 0 : prefix.split("/").length;
  const staging = join(root, `.neam-restore-${randomBytes(6).toString("hex")}`);
  await fs.mkdir(staging, { recursive: true });
  try {
    let files = 0;
    const extracting = extract({
      file: archive,
      cwd: staging,
      strip,
      strict: true,
      preservePaths: false,
      filter: (path, entry) => {
        const type = (entry as { type?: string }).type;
        const relative = path.replace(/^\.\//, "").slice(prefix === "" ? 0 : prefix.length + 1);
        const wanted =
          (type === "File" || type === "Directory") &&
          relative.startsWith(`${ARCHIVE_ROOT}/`) &&
          !relative.split("/").includes("_uploads");
        if (wanted && type === "File") files++;
        return wanted;
      },
    });
    // Strict: an entry that would land outside the root (`..`, absolute) stops the restore.
    await extracting.catch((error: unknown) => {
      throw new RestoreError(`${archive} cannot be restored: ${(error as Error).message}`);
    });
    const { blobs, bytes } = await verifyBlobs(join(staging, ARCHIVE_ROOT, "blobs"));
    if (files === 0)
      throw new RestoreError(`${archive} holds no registry data (nothing under ${ARCHIVE_ROOT}/)`);
    const old = join(staging, "previous");
    if (occupied) await fs.rename(current, old);
    else await fs.rm(current, { recursive: true, force: true });
    await fs.rename(join(staging, "docker"), current);
    return { files, blobs, bytes };
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}

/** What stands before `docker/registry/v2/` in the archive's paths ("" for ours). */
async function layoutPrefix(archive: string): Promise<string> {
  let prefix: string | undefined;
  try {
    await list({
      file: archive,
      onReadEntry: (entry) => {
        const path = entry.path.replace(/^\.\//, "");
        const at = path.indexOf(`${ARCHIVE_ROOT}/`);
        if (prefix === undefined && at >= 0) prefix = path.slice(0, at).replace(/\/$/, "");
      },
    });
  } catch (error) {
    throw new RestoreError(`${archive} is not a readable tar archive: ${(error as Error).message}`);
  }
  if (prefix === undefined)
    throw new RestoreError(`${archive} holds no registry data (nothing under ${ARCHIVE_ROOT}/)`);
  return prefix;
}

/** Hashes every `blobs/<alg>/<2>/<hex>/data` and compares it with its path. */
async function verifyBlobs(dir: string): Promise<{ blobs: number; bytes: number }> {
  let blobs = 0;
  let bytes = 0;
  const entries = async (path: string) => fs.readdir(path).catch(() => [] as string[]);
  for (const algorithm of await entries(dir)) {
    if (algorithm !== "sha256" && algorithm !== "sha512")
      throw new RestoreError(`blobs/${algorithm}: not a digest algorithm`);
    for (const prefix of await entries(join(dir, algorithm))) {
      for (const hex of await entries(join(dir, algorithm, prefix))) {
        const data = join(dir, algorithm, prefix, hex, "data");
        const stat = await fs.stat(data).catch(() => undefined);
        if (stat === undefined) continue; // a blob directory without data is not a blob
        const hash = createHash(algorithm);
        for await (const chunk of createReadStream(data)) hash.update(chunk as Buffer);
        if (hash.digest("hex") !== hex || !hex.startsWith(prefix))
          throw new RestoreError(`blob ${algorithm}:${hex} in the archive does not match its digest`);
        blobs++;
        bytes += stat.size;
      }
    }
  }
  return { blobs, bytes };
}
