import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { native } from "./native.js";

/** Bytes moved through JavaScript buffers after which freed memory is handed back. */
const RELEASE_AFTER_BYTES = 64 * 1024 * 1024;
/** Quiet time after the last such transfer before releasing (a burst releases once). */
const RELEASE_DELAY_MS = 1000;

/**
 * A full garbage collection. The buffers of a request body that waited (for the disk, or for a
 * stalled client) long enough to reach V8's old generation are only freed by one, and V8 runs
 * none while the process is idle: without it, memory held by clients that went away stays
 * allocated. `--expose-gc` set at run time gives new contexts a `gc` function.
 */
const fullGc: (() => void) | undefined = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === "function") return exposed;
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as unknown;
    return typeof gc === "function" ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
})();

/**
 * Gives freed memory back to the system after large transfers. Streaming a big blob through
 * JavaScript buffers fragments the C heap: without this, a 2 GiB push (or a pull over TLS)
 * leaves 25-30 MiB of freed buffers in the process's RSS for good; a connection cut off mid-body
 * leaves its buffers allocated. Collects garbage first, then trims the C heap (with the native
 * addon; without it, the collection alone).
 */
export class MemoryReleaser {
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly release: (() => void) | undefined = native?.trimMemory,
    private readonly collect: (() => void) | undefined = fullGc,
  ) {}

  /** Notes a transfer of `bytes` that went through JavaScript buffers (or was abandoned). */
  transferred(bytes: number): void {
    if (this.release === undefined && this.collect === undefined) return;
    this.pending += bytes;
    if (this.pending < RELEASE_AFTER_BYTES) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pending = 0;
      this.collect?.();
      this.release?.();
    }, RELEASE_DELAY_MS).unref();
  }
}
