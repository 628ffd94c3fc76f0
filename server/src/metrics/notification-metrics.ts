import { Gauge, type Registry as PromRegistry } from "prom-client";
import type { Notifier } from "../notifications/notifier.js";
import { METRICS } from "./names.js";

/** Per endpoint: events waiting, and deliveries so far by outcome (sent, failed attempts, dropped). */
export function registerNotificationMetrics(notifier: Notifier, register: PromRegistry): void {
  new Gauge({
    name: METRICS.notificationPendingEvents,
    help: "Notification events waiting to be delivered to the endpoint.",
    labelNames: ["endpoint"],
    registers: [register],
    collect() {
      for (const sink of notifier.sinks) this.set({ endpoint: sink.config.name }, sink.counts.pending);
    },
  });
  new Gauge({
    name: METRICS.notificationDeliveries,
    help: "Notification events sent, delivery attempts failed, and events dropped (queue full), since start.",
    labelNames: ["endpoint", "outcome"],
    registers: [register],
    collect() {
      for (const sink of notifier.sinks) {
        for (const outcome of ["sent", "failed", "dropped"] as const)
          this.set({ endpoint: sink.config.name, outcome }, sink.counts[outcome]);
      }
    },
  });
}
