#!/usr/bin/env -S node --max-semi-space-size=4
// V8's young generation grows to 2 x 16 MiB under request load; requests leave little garbage
// that survives, so 2 x 4 MiB serves as fast with 20 MiB less RSS (the image's ENTRYPOINT and
// `npm start` pass the same flags; a test checks they agree).
// Storage work runs on libuv's thread pool; its default of 4 threads serialises the syncs of
// concurrent pushes. Must be set before the pool starts, i.e. before any file I/O.
process.env.UV_THREADPOOL_SIZE ??= "16";
import cluster from "node:cluster";
import { ConfigError, loadConfig } from "./config/load.js";
import { checkStorageRoot } from "./config/storage-root.js";
import { createLogger } from "./log.js";
import { exitWhenFlushed } from "./cli/exit.js";

// Each command's code is imported when that command runs: `serve` keeps resident only what
// serving needs (a module graph costs RSS for as long as the process lives, and the backup,
// bundle and sync commands bring tar, tar-stream, cli-progress and their own parsers).
const serveModule = () => import("./serve.js");

async function usage(): Promise<string> {
  const [{ GC_USAGE }, { SYNC_USAGE }, { BACKUP_USAGE }, { BUNDLE_USAGE }, { MIRROR_CONFIG_USAGE }] =
    await Promise.all([
      import("./cli/gc.js"),
      import("./cli/sync.js"),
      import("./cli/backup.js"),
      import("./cli/bundle.js"),
      import("./cli/mirror-config.js"),
    ]);
  return `usage: neam-registry <command> [options]

commands:
  serve [--config FILE | FILE]   run the registry (without a config: ./data, :5000, metrics on :5001)
  config check --config FILE     validate a config file and exit
  user add|update --file HTPASSWD [--cost N] USER [PASSWORD]
                                 add a user or change a password (bcrypt; PASSWORD from stdin if absent)
  user remove --file HTPASSWD USER
  user list --file HTPASSWD
${GC_USAGE}${SYNC_USAGE}${BACKUP_USAGE}${BUNDLE_USAGE}${MIRROR_CONFIG_USAGE}`;
}

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
        await (await serveModule()).serve(undefined as never);
        return -1;
      }
      // `serve FILE` is how the reference registry's image runs; `--config FILE` is ours.
      const path = option(rest, "--config") ?? rest.find((a) => !a.startsWith("-"));
      const warnings: string[] = [];
      const config = loadConfig(path, process.env, (line) => warnings.push(line));
      // Refused here in one line naming the key, before the storage driver meets it (an S3
      // bucket is checked when the driver opens).
      if (config.storage.s3 === undefined) checkStorageRoot(config.storage.filesystem.rootdirectory);
      if (warnings.length > 0) {
        const logger = createLogger(config.log);
        for (const line of warnings) logger.warn(line);
      }
      await (await serveModule()).serve(config);
      return -1;
    }
    case "config": {
      if (rest[0] !== "check") break;
      const path = option(rest, "--config") ?? rest.slice(1).find((a) => !a.startsWith("-"));
      const config = loadConfig(path);
      if (config.storage.s3 === undefined) checkStorageRoot(config.storage.filesystem.rootdirectory);
      process.stdout.write(`config ok${path ? `: ${path}` : " (embedded default)"}\n`);
      return 0;
    }
    case "user":
      return userCommand(rest);
    case "gc":
      return (await import("./cli/gc.js")).gcCommand(rest, false);
    case "garbage-collect":
      return (await import("./cli/gc.js")).gcCommand(rest, true);
    case "sync":
      return (await import("./cli/sync.js")).syncCommand(rest);
    case "backup":
      return (await import("./cli/backup.js")).backupCommand(rest);
    case "restore":
      return (await import("./cli/backup.js")).restoreCommand(rest);
    case "bundle":
      return (await import("./cli/bundle.js")).bundleCommand(rest);
    case "mirror-config":
      return (await import("./cli/mirror-config.js")).mirrorConfigCommand(rest);
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(await usage());
      return 0;
  }
  process.stderr.write(`neam-registry: unknown command ${JSON.stringify(argv.join(" "))}\n${await usage()}`);
  return 2;
}

async function userCommand(args: string[]): Promise<number> {
  const { HtpasswdFile, UserAdminError } = await import("./auth/user-admin.js");
  const [verb, ...rest] = args;
  const path = option(rest, "--file");
  if (path === undefined) throw new UserAdminError("user commands need --file HTPASSWD");
  const costValue = option(rest, "--cost");
  const cost = costValue === undefined ? 10 : Number(costValue);
  const positional = rest.filter(
    (a, i) => !a.startsWith("--") && !["--file", "--cost"].includes(rest[i - 1] ?? ""),
  );
  const file = new HtpasswdFile(path);
  const [user, password] = positional;
  const needUser = () => {
    if (user === undefined) throw new UserAdminError(`user ${verb} needs a user name`);
    return user;
  };
  switch (verb) {
    case "list":
      for (const name of file.list()) process.stdout.write(`${name}\n`);
      return 0;
    case "add":
    case "update": {
      const name = needUser();
      const secret = password ?? (await readStdinLine());
      if (verb === "add") file.add(name, secret, cost);
      else file.update(name, secret, cost);
      process.stdout.write(`${verb === "add" ? "added" : "updated"} ${name}\n`);
      return 0;
    }
    case "remove":
      file.remove(needUser());
      process.stdout.write(`removed ${user}\n`);
      return 0;
  }
  throw new UserAdminError(`unknown user command ${JSON.stringify(verb ?? "")}: add, update, remove or list`);
}

async function readStdinLine(): Promise<string> {
  let text = "";
  for await (const chunk of process.stdin) text += String(chunk);
  return text.split(/\r?\n/)[0] ?? "";
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) exitWhenFlushed(code);
  },
  (error: unknown) => {
    process.stderr.write(`neam-registry: ${error instanceof Error ? error.message : String(error)}\n`);
    exitWhenFlushed(1);
  },
);
