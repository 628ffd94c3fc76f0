import { isNotFound, type StorageDriver } from "../storage/driver.js";
import { parseDigest, type Digest } from "./digest.js";

/** Reads a `link` file (a digest string); undefined when absent or unreadable as a digest. */
export async function readLink(driver: StorageDriver, path: string): Promise<Digest | undefined> {
  let content: Buffer;
  try {
    content = await driver.getContent(path);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
  try {
    return parseDigest(content.toString("utf8").trim());
  } catch {
    // An empty or torn link (the reference registry can leave one after a crash) counts as absent.
    return undefined;
  }
}

export async function writeLink(driver: StorageDriver, path: string, digest: Digest): Promise<void> {
  await driver.putContent(path, digest.value);
}

export async function exists(driver: StorageDriver, path: string): Promise<boolean> {
  try {
    await driver.stat(path);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/** Children of a directory, or none when it does not exist. */
export async function listOrEmpty(driver: StorageDriver, path: string): Promise<string[]> {
  try {
    return await driver.list(path);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}
