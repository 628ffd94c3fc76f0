import { createHash, type Hash } from "node:crypto";
import { native } from "../native.js";
import type { Digest } from "./digest.js";

/**
 * The sha256 of an upload's bytes so far. With the native addon its state can be saved to storage
 * and loaded again, so the commit of a chunked upload hashes nothing, even after a restart or on
 * another replica sharing the storage; without it the state lives in this process only.
 */
export interface RunningHash {
  update(chunk: Buffer): void;
  /** The digest of everything seen so far. */
  digest(): Digest;
  /**
   * The state as Go's crypto/sha256 MarshalBinary writes it (108 bytes), which is what the
   * reference registry keeps in `_uploads/<id>/hashstates/sha256/<offset>`; undefined when this
   * process cannot save hash states.
   */
  save(): Buffer | undefined;
}

const addon = native !== undefined && typeof native.sha256Init === "function" ? native : undefined;

/** Whether running hashes can be saved to storage and loaded back (the addon is built). */
export const hashStatesSupported = addon !== undefined;

class SavableSha256 implements RunningHash {
  constructor(private readonly context: Buffer) {}

  update(chunk: Buffer): void {
    addon!.sha256Update(this.context, chunk);
  }

  digest(): Digest {
    const hex = addon!.sha256Digest(this.context).toString("hex");
    return { algorithm: "sha256", hex, value: `sha256:${hex}` };
  }

  save(): Buffer {
    return addon!.sha256Save(this.context);
  }
}

class ProcessSha256 implements RunningHash {
  private readonly hash: Hash = createHash("sha256");

  update(chunk: Buffer): void {
    this.hash.update(chunk);
  }

  digest(): Digest {
    // Hash.digest() finalises: a copy keeps this one usable, as the addon's is.
    const hex = this.hash.copy().digest("hex");
    return { algorithm: "sha256", hex, value: `sha256:${hex}` };
  }

  save(): undefined {
    return undefined;
  }
}

export function newRunningHash(): RunningHash {
  if (addon === undefined) return new ProcessSha256();
  const context = Buffer.alloc(addon.sha256ContextBytes);
  addon.sha256Init(context);
  return new SavableSha256(context);
}

/**
 * A running hash restored from a saved state that claims to cover `bytes` bytes; undefined when
 * the state is malformed, covers another length, or cannot be loaded here. A well-formed state
 * can still be wrong (written by something else): callers never fail an upload on its word alone.
 */
export function loadRunningHash(saved: Buffer, bytes: number): RunningHash | undefined {
  if (addon === undefined) return undefined;
  const context = Buffer.alloc(addon.sha256ContextBytes);
  if (addon.sha256Load(context, saved) !== bytes) return undefined;
  return new SavableSha256(context);
}
