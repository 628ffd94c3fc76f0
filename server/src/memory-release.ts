import { native } from "./native.js";

/** Bytes moved through JavaScript buffers after which freed memory is handed back. */
const RELEASE_AFTER_BYTES = 64 * 1024 * 1024;
/** Quiet time after the last such transfer before releasing (a burst releases once). */
const RELEASE_DELAY_MS = 1000;

/**
 * Gives freed memory back to the system after large transfers. Streaming a big blob through
 * JavaScript buffers fragments the C heap: without this, a 2 GiB push (or a pull over TLS)
 * leaves 25-30 MiB of freed buffers in the process's RSS for good. Needs the native addon;
 * without it, does nothing.
 */
export class MemoryReleaser {
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly release: (() => void) | undefined = native?.trimMemory) {}

  /** Notes a transfer of `bytes` that went through JavaScript buffers. */
  transferred(bytes: number): void {
    if (this.release === undefined) return;
    this.pending += bytes;
    if (this.pending < RELEASE_AFTER_BYTES) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pending = 0;
      this.release?.();
    }, RELEASE_DELAY_MS).unref();
  }
}
