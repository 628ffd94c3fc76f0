import { Gauge, type Registry as PromRegistry } from "prom-client";
import { TASKS, type TaskStatus, type TaskStatusStore } from "../maintenance/status.js";
import { METRICS } from "./names.js";

const seconds = (iso: string) => Date.parse(iso) / 1000;

/**
 * Gauges of the last garbage collection and sync runs, read from their stored status on scrape,
 * so they survive restarts and do not depend on which process ran the task. Absent until a task
 * has run once, so "never ran" does not look like "failed".
 */
export function registerMaintenanceMetrics(store: TaskStatusStore, register: PromRegistry): void {
  // prom-client collects the gauges of a scrape concurrently: they share one read of the statuses.
  let reading: Promise<TaskStatus[]> | undefined;
  const statuses = () =>
    (reading ??= Promise.all(TASKS.map((task) => store.read(task)))
      .then((all) => all.filter((s): s is TaskStatus => s !== undefined))
      .finally(() => setTimeout(() => (reading = undefined), 100).unref()));

  const family = (
    name: string,
    help: string,
    fill: (gauge: Gauge, status: TaskStatus) => void,
    labelNames: string[] = ["task"],
  ) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [register],
      async collect() {
        const all = await statuses();
        this.reset();
        for (const status of all) fill(this, status);
      },
    });

  family(
    METRICS.taskLastRunTimestampSeconds,
    "When the maintenance task last finished (Unix time).",
    (g, s) => g.set({ task: s.task }, seconds(s.finishedAt)),
  );
  family(
    METRICS.taskLastSuccessTimestampSeconds,
    "When the maintenance task last succeeded (Unix time).",
    (g, s) => {
      if (s.lastSuccessAt !== undefined) g.set({ task: s.task }, seconds(s.lastSuccessAt));
    },
  );
  family(
    METRICS.taskLastRunSuccess,
    "1 when the maintenance task's last run succeeded, 0 when it failed.",
    (g, s) => g.set({ task: s.task }, s.success ? 1 : 0),
  );
  family(METRICS.taskLastRunDurationSeconds, "How long the maintenance task's last run took.", (g, s) =>
    g.set({ task: s.task }, seconds(s.finishedAt) - seconds(s.startedAt)),
  );
  family(
    METRICS.taskLastRunItems,
    "What the maintenance task's last run did, by kind (blobs_deleted, bytes_freed, images_failed…).",
    (g, s) => {
      for (const [kind, value] of Object.entries(s.counts)) g.set({ task: s.task, kind }, value);
    },
    ["task", "kind"],
  );
}
