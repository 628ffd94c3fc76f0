import { pino, type Logger } from "pino";
import type { Config } from "./config/schema.js";

export type { Logger };

/** One JSON-lines logger for the process; `log.level` and `log.fields` come from the config. */
export function createLogger(config: Config["log"], destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level: config.level,
      base: { service: "neam-registry", ...config.fields },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
