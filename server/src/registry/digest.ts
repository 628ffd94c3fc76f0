import { createHash, type Hash } from "node:crypto";
import { RegistryError } from "./errors.js";

/** Digest algorithms this registry can compute and store, with the length of their hex encoding. */
const ALGORITHMS = { sha256: 64, sha512: 128 } as const;
export type DigestAlgorithm = keyof typeof ALGORITHMS;

/** A validated content digest, `algorithm:hex`. */
export interface Digest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  /** The canonical string form, `sha256:…`. */
  readonly value: string;
}

const GRAMMAR = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
/** The common case in one pass: an index may list tens of thousands of digests. */
const SHA256 = /^sha256:[a-f0-9]{64}$/;

/** Parses a digest string; anything malformed or of an unsupported algorithm is DIGEST_INVALID. */
export function parseDigest(input: string): Digest {
  if (SHA256.test(input)) return { algorithm: "sha256", hex: input.slice(7), value: input };
  if (input.length > 200 || !GRAMMAR.test(input)) {
    throw new RegistryError("DIGEST_INVALID", "invalid digest format", { digest: input.slice(0, 200) });
  }
  const colon = input.indexOf(":");
  const algorithm = input.slice(0, colon);
  const hex = input.slice(colon + 1);
  const length = (ALGORITHMS as Record<string, number>)[algorithm];
  if (length === undefined) {
    throw new RegistryError("DIGEST_INVALID", `unsupported digest algorithm ${algorithm}`, { digest: input });
  }
  if (hex.length !== length || !/^[a-f0-9]+$/.test(hex)) {
    throw new RegistryError("DIGEST_INVALID", `invalid ${algorithm} digest`, { digest: input });
  }
  return { algorithm: algorithm as DigestAlgorithm, hex, value: input };
}

export function isDigest(input: string): boolean {
  return input.includes(":");
}

export function newHash(algorithm: DigestAlgorithm = "sha256"): Hash {
  return createHash(algorithm);
}

export function digestOf(data: Uint8Array, algorithm: DigestAlgorithm = "sha256"): Digest {
  const hex = createHash(algorithm).update(data).digest("hex");
  return { algorithm, hex, value: `${algorithm}:${hex}` };
}

export function digestFromHash(hash: Hash, algorithm: DigestAlgorithm): Digest {
  const hex = hash.digest("hex");
  return { algorithm, hex, value: `${algorithm}:${hex}` };
}
