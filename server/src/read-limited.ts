/**
 * Bytes of request bodies held in memory at once, across all requests (`http.maxbufferedbytes`).
 * A per-request cap alone lets many slow clients together hold gigabytes: each byte a handler
 * buffers is taken from here first, and given back when the read ends (done, failed, or the
 * client gone).
 */
export class BufferBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Takes `bytes` if that many are left. */
  tryTake(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

/** The budget ran out: the server holds as many request bodies as it may; the client retries later. */
export class BufferBudgetExhausted extends Error {
  override name = "BufferBudgetExhausted";
  constructor() {
    super("the registry is receiving too many request bodies at once; retry later");
  }
}

/**
 * Reads a stream whole, up to `limit` bytes; past it, stops reading (the stream is destroyed)
 * and throws what `tooLarge` makes. With a `budget`, every byte held is taken from it while the
 * read lasts (BufferBudgetExhausted when it runs out). For small bodies only: manifests, tokens,
 * charts, manifests of a sync — never blobs.
 */
export async function readLimited(
  stream: AsyncIterable<unknown>,
  limit: number,
  tooLarge: (limit: number) => Error = (n) => new Error(`more than ${n} bytes`),
  budget?: BufferBudget,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  let taken = 0;
  try {
    for await (const chunk of stream) {
      const bytes = (chunk as Buffer).length;
      total += bytes;
      if (total > limit) throw tooLarge(limit);
      if (budget !== undefined) {
        if (!budget.tryTake(bytes)) throw new BufferBudgetExhausted();
        taken += bytes;
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks, total);
  } finally {
    budget?.give(taken);
  }
}
