/**
 * Reads a stream whole, up to `limit` bytes; past it, stops reading (the stream is destroyed)
 * and throws what `tooLarge` makes. For small bodies only: manifests, tokens, charts, manifests
 * of a sync — never blobs.
 */
export async function readLimited(
  stream: AsyncIterable<unknown>,
  limit: number,
  tooLarge: (limit: number) => Error = (n) => new Error(`more than ${n} bytes`),
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    if (total > limit) throw tooLarge(limit);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}
