/**
 * A set of digests kept as 16-byte prefixes in one typed array (open addressing), not as strings:
 * a mark phase over a store of a million blobs holds about 32 bytes per digest instead of ~150,
 * and allocates nothing per lookup. Two digests sharing a 128-bit prefix would be taken for one;
 * for a mark set that errs on the safe side (a blob kept, never one deleted), and sha256 makes it
 * as likely as a collision of the digest itself. Digests of other algorithms (rare) go to a Set.
 */
export class DigestSet {
  private slots = new Uint32Array(4 * 1024);
  private mask = 1023;
  private count = 0;
  private zero = false;
  private readonly other = new Set<string>();

  get size(): number {
    return this.count + (this.zero ? 1 : 0) + this.other.size;
  }

  add(algorithm: string, hex: string): void {
    if (algorithm !== "sha256") {
      this.other.add(`${algorithm}:${hex}`);
      return;
    }
    const a = word(hex, 0);
    const b = word(hex, 8);
    const c = word(hex, 16);
    const d = word(hex, 24);
    if ((a | b | c | d) === 0) {
      this.zero = true;
      return;
    }
    if (this.insert(a, b, c, d) && ++this.count * 2 > this.mask) this.grow();
  }

  has(algorithm: string, hex: string): boolean {
    if (algorithm !== "sha256") return this.other.has(`${algorithm}:${hex}`);
    const a = word(hex, 0);
    const b = word(hex, 8);
    const c = word(hex, 16);
    const d = word(hex, 24);
    if ((a | b | c | d) === 0) return this.zero;
    const slots = this.slots;
    for (let i = (b ^ d) & this.mask; ; i = (i + 1) & this.mask) {
      const at = i * 4;
      if ((slots[at]! | slots[at + 1]! | slots[at + 2]! | slots[at + 3]!) === 0) return false;
      if (slots[at] === a && slots[at + 1] === b && slots[at + 2] === c && slots[at + 3] === d) return true;
    }
  }

  /** True when the prefix was not there yet. */
  private insert(a: number, b: number, c: number, d: number): boolean {
    const slots = this.slots;
    for (let i = (b ^ d) & this.mask; ; i = (i + 1) & this.mask) {
      const at = i * 4;
      if ((slots[at]! | slots[at + 1]! | slots[at + 2]! | slots[at + 3]!) === 0) {
        slots[at] = a;
        slots[at + 1] = b;
        slots[at + 2] = c;
        slots[at + 3] = d;
        return true;
      }
      if (slots[at] === a && slots[at + 1] === b && slots[at + 2] === c && slots[at + 3] === d) return false;
    }
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Uint32Array(old.length * 2);
    this.mask = this.slots.length / 4 - 1;
    for (let at = 0; at < old.length; at += 4) {
      if ((old[at]! | old[at + 1]! | old[at + 2]! | old[at + 3]!) !== 0)
        this.insert(old[at]!, old[at + 1]!, old[at + 2]!, old[at + 3]!);
    }
  }
}

/** 32 bits of a hex string at `offset` (8 hex digits), unsigned as a Uint32Array holds them. */
function word(hex: string, offset: number): number {
  return parseInt(hex.slice(offset, offset + 8), 16);
}
