#!/usr/bin/env node
// Storage work runs on libuv's thread pool; its default of 4 threads serialises the syncs of
// concurrent pushes. Must be set before the pool starts, i.e. before any file I/O.
process.env.UV_THREADPOOL_SIZE ??= "16";
import cluster from "node:cluster";
import { ConfigError, loadConfig } from "./config/load.js";
import { serve } from "./serve.js";

const USAGE = `usage: neam-registry <command> [options]

commands:
  serve [--config FILE | FILE]   run the registry (without a config: ./data, :5000, metrics on :5001)
  config check --config FILE     validate a config file and exit
`;

function option(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  if (index < 0) return undefined;
  const value = args[index + 1];
  if (value === undefined || value.startsWith("--")) throw new ConfigError(`${name} needs a value`);
  return value;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve": {
      if (cluster.isWorker) {
        await serve(undefined as never);
        return -1;
      }
      // `serve FILE` is how the reference registry's image runs; `--config FILE` is ours.
      const path = option(rest, "--config") ?? rest.find((a) => !a.startsWith("-"));
      await serve(loadConfig(path));
      return -1;
    }
    case "config": {
      if (rest[0] !== "check") break;
      const path = option(rest, "--config") ?? rest.slice(1).find((a) => !a.startsWith("-"));
      loadConfig(path);
      process.stdout.write(`config ok${path ? `: ${path}` : " (embedded default)"}\n`);
      return 0;
    }
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return 0;
  }
  process.stderr.write(`neam-registry: unknown command ${JSON.stringify(argv.join(" "))}\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`neam-registry: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
