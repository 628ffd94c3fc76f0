import { randomUUID } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type { Config } from "../config/schema.js";
import type { Logger } from "../log.js";

/** One event, in the reference registry's notification format (`events.v1`). */
export interface RegistryEvent {
  readonly id: string;
  readonly timestamp: string;
  readonly action: "push" | "pull" | "delete" | "mount";
  readonly target: {
    readonly mediaType?: string;
    readonly size?: number;
    readonly length?: number;
    readonly digest?: string;
    readonly repository: string;
    readonly url?: string;
    readonly tag?: string;
    readonly fromRepository?: string;
  };
  readonly request: {
    readonly id: string;
    readonly addr: string;
    readonly host: string;
    readonly method: string;
    readonly useragent: string;
  };
  readonly actor: { readonly name?: string };
  readonly source: { readonly addr: string; readonly instanceID: string };
}

export interface EndpointConfig {
  readonly name: string;
  readonly url: string;
  readonly headers: Record<string, string[]>;
  readonly timeoutMs: number;
  readonly threshold: number;
  readonly backoffMs: number;
  readonly ignoredMediaTypes: readonly string[];
  readonly ignoredActions: readonly string[];
}

export const EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json";
/** Events waiting for an endpoint, at most; past it the oldest are dropped (and counted). */
const MAX_PENDING = 10_000;
/** Events sent in one request, at most. */
const MAX_BATCH = 100;

export interface DeliveryCounts {
  sent: number;
  failed: number;
  dropped: number;
  pending: number;
}

/**
 * Where several replicas keep the endpoints' queues (Redis, coordination/notify-queue.ts): events
 * survive a restart, and whichever replica holds an endpoint's turn delivers them, in order.
 */
export interface SharedEventQueue {
  push(endpoint: string, event: string, max: number): Promise<void>;
  /** The endpoint's delivery turn (one replica at a time), or undefined when another has it. */
  turn(endpoint: string): Promise<{ readonly lost: boolean; release(): Promise<void> } | undefined>;
  /** The oldest `n` events, left queued until `drop`. */
  peek(endpoint: string, n: number): Promise<string[]>;
  drop(endpoint: string, n: number): Promise<void>;
}

/** How often a replica looks for events queued in Redis that nobody delivers (a replica died). */
const SHARED_POLL_MS = 1000;

/**
 * Delivers events to one webhook endpoint, in order, in batches (`{"events": [...]}`), from a
 * bounded in-memory queue. A failed request (no 2xx in `timeout`) is retried; after `threshold`
 * failures in a row, the endpoint is left alone for `backoff` before the next try, as the
 * reference registry does. Events still queued when the process stops are lost, as there, unless
 * a shared queue keeps them (`redis`): then they are delivered at least once, after a restart or
 * by another replica; while Redis is unreachable, events wait in memory as without it.
 */
export class EndpointSink {
  private readonly queue: RegistryEvent[] = [];
  private sending = false;
  private sendingShared = false;
  private failures = 0;
  readonly counts: DeliveryCounts = { sent: 0, failed: 0, dropped: 0, pending: 0 };

  constructor(
    readonly config: EndpointConfig,
    private readonly logger: Logger,
    private readonly shared?: SharedEventQueue,
  ) {
    if (shared !== undefined) setInterval(() => void this.drainShared(shared), SHARED_POLL_MS).unref();
  }

  accepts(event: RegistryEvent): boolean {
    const mediaType = event.target.mediaType;
    if (mediaType !== undefined && this.config.ignoredMediaTypes.includes(mediaType)) return false;
    return !this.config.ignoredActions.includes(event.action);
  }

  enqueue(event: RegistryEvent): void {
    if (this.shared !== undefined) {
      const shared = this.shared;
      shared
        .push(this.config.name, JSON.stringify(event), MAX_PENDING)
        .then(() => this.drainShared(shared))
        .catch(() => this.enqueueLocal(event));
      return;
    }
    this.enqueueLocal(event);
  }

  private enqueueLocal(event: RegistryEvent): void {
    this.queue.push(event);
    if (this.queue.length > MAX_PENDING) {
      this.queue.shift();
      this.counts.dropped++;
    }
    this.counts.pending = this.queue.length;
    if (!this.sending) void this.drain();
  }

  private async drain(): Promise<void> {
    this.sending = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.slice(0, MAX_BATCH);
        try {
          await this.post(batch);
          this.queue.splice(0, batch.length);
          this.counts.sent += batch.length;
          this.counts.pending = this.queue.length;
          this.failures = 0;
        } catch (error) {
          await this.failed(error);
        }
      }
    } finally {
      this.sending = false;
    }
  }

  /** Delivers what the shared queue holds, when this replica gets the endpoint's turn. */
  private async drainShared(shared: SharedEventQueue): Promise<void> {
    if (this.sendingShared) return;
    this.sendingShared = true;
    try {
      const turn = await shared.turn(this.config.name);
      if (turn === undefined) return;
      try {
        while (!turn.lost) {
          const batch = await shared.peek(this.config.name, MAX_BATCH);
          if (batch.length === 0) break;
          try {
            await this.post(batch.map((e) => JSON.parse(e) as RegistryEvent));
          } catch (error) {
            await this.failed(error);
            continue;
          }
          // A crash before this line delivers the batch again: at least once.
          await shared.drop(this.config.name, batch.length);
          this.counts.sent += batch.length;
          this.failures = 0;
        }
      } finally {
        await turn.release();
      }
    } catch {
      /* Redis unreachable: the next poll tries again. */
    } finally {
      this.sendingShared = false;
    }
  }

  private async failed(error: unknown): Promise<void> {
    this.counts.failed++;
    this.failures++;
    if (this.failures === 1 || this.failures % this.config.threshold === 0)
      this.logger.warn(
        { endpoint: this.config.name, err: (error as Error).message, pending: this.queue.length },
        "notification delivery failed; retrying",
      );
    const wait =
      this.failures >= this.config.threshold
        ? this.config.backoffMs
        : Math.min(this.config.backoffMs, 100 * this.failures);
    await new Promise((resolve) => setTimeout(resolve, wait).unref());
  }

  private post(events: readonly RegistryEvent[]): Promise<void> {
    const url = new URL(this.config.url);
    const body = JSON.stringify({ events });
    const headers: Record<string, string | string[]> = {
      ...this.config.headers,
      "Content-Type": EVENTS_MEDIA_TYPE,
      "Content-Length": String(Buffer.byteLength(body)),
    };
    return new Promise((resolve, reject) => {
      const client = url.protocol === "https:" ? https : http;
      const request = client.request(
        url,
        { method: "POST", headers, timeout: this.config.timeoutMs },
        (response) => {
          response.resume();
          const status = response.statusCode ?? 0;
          if (status >= 200 && status < 300) resolve();
          else reject(new Error(`answered ${status}`));
        },
      );
      request.on("timeout", () => request.destroy(new Error(`no answer within ${this.config.timeoutMs} ms`)));
      request.on("error", reject);
      request.end(body);
    });
  }
}

/** All configured endpoints; an event goes to each that does not ignore it. */
export class Notifier {
  readonly instanceId = randomUUID();

  constructor(readonly sinks: readonly EndpointSink[]) {}

  publish(event: RegistryEvent): void {
    for (const sink of this.sinks) if (sink.accepts(event)) sink.enqueue(event);
  }
}

/** The notifier of `notifications.endpoints` (enabled ones); undefined when there are none. */
export function notifierFor(
  config: Config["notifications"],
  parseDuration: (text: string) => number,
  logger: Logger,
  shared?: SharedEventQueue,
): Notifier | undefined {
  const endpoints = (config?.endpoints ?? []).filter((e) => !e.disabled);
  if (endpoints.length === 0) return undefined;
  return new Notifier(
    endpoints.map(
      (e) =>
        new EndpointSink(
          {
            name: e.name,
            url: e.url,
            headers: e.headers,
            timeoutMs: parseDuration(e.timeout),
            threshold: e.threshold,
            backoffMs: parseDuration(e.backoff),
            ignoredMediaTypes: [...e.ignoredmediatypes, ...e.ignore.mediatypes],
            ignoredActions: e.ignore.actions,
          },
          logger,
          shared,
        ),
    ),
  );
}
