/** What a fresh walk of a filesystem storage root counts, for comparing with the storage gauges. */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export interface Figures {
  repositories: number;
  manifests: number;
  blobs: number;
  bytes: number;
}

/** The figures, counted from the files (what a fresh walk finds). */
export function walkFigures(root: string): Figures {
  const v2 = join(root, "docker/registry/v2");
  const list = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);
  let blobs = 0;
  let bytes = 0;
  for (const algorithm of list(join(v2, "blobs")))
    for (const prefix of list(join(v2, "blobs", algorithm)))
      for (const hex of list(join(v2, "blobs", algorithm, prefix))) {
        const data = join(v2, "blobs", algorithm, prefix, hex, "data");
        if (!existsSync(data)) continue;
        blobs++;
        bytes += statSync(data).size;
      }
  let repositories = 0;
  let manifests = 0;
  const visit = (dir: string) => {
    const children = list(dir);
    if (children.includes("_manifests")) {
      repositories++;
      const revisions = join(dir, "_manifests/revisions");
      for (const algorithm of list(revisions)) manifests += list(join(revisions, algorithm)).length;
    }
    for (const child of children) if (!child.startsWith("_")) visit(join(dir, child));
  };
  visit(join(v2, "repositories"));
  return { repositories, manifests, blobs, bytes };
}
