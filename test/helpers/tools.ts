import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";

/** Runs a real client (skopeo, ctr, docker-registry) and returns its output; throws with stderr on failure. */
export function run(
  command: string,
  args: string[],
  options: { allowFailure?: boolean; timeout?: number } = {},
) {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: options.timeout ?? 120_000 });
  if (result.error) throw result.error;
  if (result.status !== 0 && !options.allowFailure) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.status}: ${result.stderr}`);
  }
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

export function skopeo(...args: string[]) {
  return run("skopeo", ["--insecure-policy", ...args]);
}

/** The digest of the manifest bytes a registry serves for `ref`, exactly as skopeo received them. */
export function servedDigest(ref: string): string {
  const raw = spawnSync("skopeo", ["inspect", "--tls-verify=false", "--raw", ref]);
  if (raw.status !== 0) throw new Error(`skopeo inspect ${ref}: ${raw.stderr}`);
  return `sha256:${createHash("sha256").update(raw.stdout).digest("hex")}`;
}

export function inspectRaw(ref: string): {
  mediaType?: string;
  manifests?: { digest: string; platform?: { architecture: string } }[];
} {
  return JSON.parse(skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout);
}
