import cluster, { type Worker } from "node:cluster";
import type { InvalidationBus } from "./registry/metadata-cache.js";

const INVALIDATE = "neam:invalidate";
const DONE = "neam:invalidated";
/** A worker that does not answer in this time is not waited for (it is likely dying). */
const RELAY_TIMEOUT_MS = 2_000;

interface Message {
  type: string;
  id: number;
  keys?: string[];
}

/** The worker side: publish through the primary and wait for its word that every worker dropped the keys. */
export function workerBus(): InvalidationBus {
  let next = 0;
  const pending = new Map<number, () => void>();
  let handler: (keys: string[]) => void = () => {};
  process.on("message", (message: Message) => {
    if (message?.type === INVALIDATE) {
      handler(message.keys ?? []);
      process.send?.({ type: DONE, id: message.id });
    } else if (message?.type === DONE) {
      pending.get(message.id)?.();
      pending.delete(message.id);
    }
  });
  return {
    publish(keys) {
      if (!process.send) return Promise.resolve();
      const id = ++next;
      return new Promise<void>((resolve) => {
        pending.set(id, resolve);
        process.send!({ type: INVALIDATE, id, keys });
      });
    },
    subscribe(h) {
      handler = h;
    },
  };
}

/** The primary side: relays each worker's invalidation to all the others and answers once they have. */
export function relayInvalidations(): void {
  let next = 0;
  const waiting = new Map<number, { left: Set<number>; done: () => void }>();
  const finish = (id: number) => {
    const entry = waiting.get(id);
    if (entry === undefined) return;
    waiting.delete(id);
    entry.done();
  };
  cluster.on("message", (from: Worker, message: Message) => {
    if (message?.type === DONE) {
      const entry = waiting.get(message.id);
      if (entry !== undefined && entry.left.delete(from.id) && entry.left.size === 0) finish(message.id);
      return;
    }
    if (message?.type !== INVALIDATE) return;
    const others = Object.values(cluster.workers ?? {}).filter(
      (w): w is Worker => w !== undefined && w.id !== from.id && w.isConnected(),
    );
    const reply = () => {
      if (from.isConnected()) from.send({ type: DONE, id: message.id });
    };
    if (others.length === 0) return reply();
    const id = ++next;
    waiting.set(id, { left: new Set(others.map((w) => w.id)), done: reply });
    setTimeout(() => finish(id), RELAY_TIMEOUT_MS).unref();
    for (const worker of others) worker.send({ type: INVALIDATE, id, keys: message.keys });
  });
  cluster.on("exit", (worker) => {
    for (const [id, entry] of waiting) {
      if (entry.left.delete(worker.id) && entry.left.size === 0) finish(id);
    }
  });
}
