import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics } from "prom-client";
import { METRICS } from "./names.js";

/** Request metrics of one serving process; the primary aggregates them across workers. */
export class HttpMetrics {
  readonly registry = new PromRegistry();
  readonly requests: Counter<"method" | "route" | "status">;
  readonly duration: Histogram<"method" | "route">;
  readonly responseSize: Histogram<"method" | "route">;
  readonly inFlight: Gauge;
  readonly uploadBytes: Counter;

  /** Label children by `method route status`: resolving labels on every request costs more than serving some. */
  private readonly children = new Map<
    string,
    { requests: { inc(): void }; duration: { observe(v: number): void }; size: { observe(v: number): void } }
  >();

  /** Records one served request. */
  record(
    method: string,
    route: string,
    status: number,
    seconds: number,
    responseBytes: number | undefined,
  ): void {
    const key = `${method} ${route} ${status}`;
    let child = this.children.get(key);
    if (child === undefined) {
      child = {
        requests: this.requests.labels(method, route, String(status)),
        duration: this.duration.labels(method, route),
        size: this.responseSize.labels(method, route),
      };
      this.children.set(key, child);
    }
    child.requests.inc();
    child.duration.observe(seconds);
    if (responseBytes !== undefined) child.size.observe(responseBytes);
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: METRICS.httpRequestsTotal,
      help: "HTTP requests served, by method, route and status code.",
      labelNames: ["method", "route", "status"],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: METRICS.httpRequestDurationSeconds,
      help: "Time to serve a request (until the response is handed to the socket), by method and route.",
      labelNames: ["method", "route"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [this.registry],
    });
    this.responseSize = new Histogram({
      name: METRICS.httpResponseSizeBytes,
      help: "Size of response bodies in bytes, by method and route.",
      labelNames: ["method", "route"],
      buckets: [0, 128, 1024, 16384, 262144, 1048576, 16777216, 268435456, 1073741824],
      registers: [this.registry],
    });
    this.inFlight = new Gauge({
      name: METRICS.httpRequestsInFlight,
      help: "Requests being served now.",
      registers: [this.registry],
    });
    this.uploadBytes = new Counter({
      name: METRICS.uploadBytesTotal,
      help: "Blob bytes received in uploads.",
      registers: [this.registry],
    });
  }
}
