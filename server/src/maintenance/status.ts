import { isNotFound, type StorageDriver } from "../storage/driver.js";

/** The maintenance tasks the registry runs on request (CronJobs, the CLI, the admin API). */
export type TaskName = "gc" | "sync" | "backup";
export const TASKS: readonly TaskName[] = ["gc", "sync", "backup"];

/** The outcome of a task's last run, kept in storage so it outlives restarts and is seen by every process. */
export interface TaskStatus {
  readonly task: TaskName;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly success: boolean;
  /** When the task last succeeded (this run or an earlier one). */
  readonly lastSuccessAt?: string;
  /** Counts that describe the run (blobs deleted, bytes freed, images synced…). */
  readonly counts: Readonly<Record<string, number>>;
  readonly error?: string;
}

/** Beside the reference layout, under a name it ignores. */
const statusPath = (task: TaskName) => `/neam/status/${task}.json`;

export class TaskStatusStore {
  constructor(private readonly driver: StorageDriver) {}

  async read(task: TaskName): Promise<TaskStatus | undefined> {
    try {
      return JSON.parse((await this.driver.getContent(statusPath(task))).toString("utf8")) as TaskStatus;
    } catch (error) {
      if (isNotFound(error) || error instanceof SyntaxError) return undefined;
      throw error;
    }
  }

  /** Records a finished run, carrying the last success time forward from the previous status. */
  async record(status: Omit<TaskStatus, "lastSuccessAt">): Promise<TaskStatus> {
    const previous = await this.read(status.task);
    const full: TaskStatus = {
      ...status,
      lastSuccessAt: status.success ? status.finishedAt : previous?.lastSuccessAt,
    };
    await this.driver.putContent(statusPath(status.task), JSON.stringify(full, null, 2));
    return full;
  }
}
