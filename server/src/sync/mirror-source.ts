/**
 * The mirror map of the sync manifest file named by `sync.manifest` (the mounted
 * `registry-sync-manifest` ConfigMap), re-read when the file changes. A change that does not
 * parse keeps the map in force and is logged; a missing file is an empty map (names resolve to
 * themselves) until it appears.
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from "node:fs";
import type { Logger } from "../log.js";
import { MirrorMap } from "./mirror-map.js";
import { parseSyncManifest } from "./manifest.js";

/** How often the file is looked at: a ConfigMap update reaches the pod within a minute or so anyway. */
const POLL_MS = 2_000;

export class WatchedMirrorMap {
  private map = new MirrorMap();

  constructor(
    private readonly file: string,
    private readonly logger: Logger,
  ) {
    this.load();
    // Kubernetes swaps a ConfigMap's files by renaming a symlinked directory: stat polling of
    // the path sees that, inotify on the old inode would not.
    watchFile(this.file, { interval: POLL_MS, persistent: false }, (current: Stats, previous: Stats) => {
      if (
        current.mtimeMs !== previous.mtimeMs ||
        current.ino !== previous.ino ||
        current.size !== previous.size
      )
        this.load();
    });
  }

  get current(): MirrorMap {
    return this.map;
  }

  private load(): void {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch (error) {
      this.logger.warn(
        { file: this.file, err: (error as Error).message },
        "sync manifest not readable; upstream names resolve to themselves",
      );
      this.map = new MirrorMap();
      return;
    }
    try {
      this.map = new MirrorMap(parseSyncManifest(text));
      this.logger.info(
        { file: this.file, repositories: this.map.size },
        "mirror map loaded from the sync manifest",
      );
    } catch (error) {
      this.logger.error(
        { file: this.file, err: (error as Error).message },
        "sync manifest rejected; the previous mirror map stays",
      );
    }
  }

  close(): void {
    unwatchFile(this.file);
  }
}
