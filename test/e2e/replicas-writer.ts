/**
 * A stand-in for a replica in the middle of a guarded write (the move and link that commit an
 * upload): registers a write of the digest in argv[3] with the Redis collection guard at argv[2]
 * and never finishes it, renewing its hold as a live replica does, until it is killed. Prints
 * "writing" once the write is registered.
 */
import { RedisCollectionGuard } from "../../server/src/coordination/guard.js";
import { SharedState } from "../../server/src/coordination/shared-state.js";
import { ConfigSchema } from "../../server/src/config/schema.js";
import type { Logger } from "../../server/src/log.js";
import { parseDigest } from "../../server/src/registry/digest.js";

const quiet = { error() {}, warn() {}, info() {}, debug() {} } as unknown as Logger;
const shared = new SharedState(ConfigSchema.shape.redis.parse({ addr: process.argv[2] })!, quiet);
if (!(await shared.connected(10_000))) throw new Error("redis not reachable");
void new RedisCollectionGuard(shared, quiet).write([parseDigest(process.argv[3]!)], async () => {
  process.stdout.write("writing\n");
  await new Promise(() => {});
});
