import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "node:net";
import { freePort, tempDir, track, waitUntil } from "./registry.js";

/** A real `redis-server` on a free loopback port, without persistence, for one test file. */
export interface RedisServer {
  readonly port: number;
  readonly addr: string;
  /** Stops it (SIGTERM, then waits). */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: nothing was saved). */
  start(): Promise<void>;
  log(): string;
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = tempDir("neam-redis-");
  const logPath = join(dir, "redis.log");
  writeFileSync(logPath, "");
  let child: ChildProcess | undefined;
  const start = async () => {
    const out = openSync(logPath, "a");
    const started = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
      { stdio: ["ignore", out, out] },
    );
    closeSync(out);
    track(started);
    child = started;
    await waitUntil(async () => {
      if (started.exitCode !== null) throw new Error(`redis-server exited: ${readFileSync(logPath, "utf8")}`);
      return (await ping(port)) === "+PONG";
    }, 20_000);
  };
  await start();
  return {
    port,
    addr: `127.0.0.1:${port}`,
    async stop() {
      const running = child;
      if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
      const exited = new Promise((resolve) => running.once("exit", resolve));
      running.kill("SIGTERM");
      await exited;
    },
    start,
    log: () => readFileSync(logPath, "utf8"),
  };
}

/** One PING over a fresh connection: the first reply line, or undefined when nothing answers. */
export function ping(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let reply = "";
    socket.setTimeout(1000, () => socket.destroy());
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) {
        socket.end();
        resolve(reply.split("\r\n")[0]);
      }
    });
    socket.on("error", () => resolve(undefined));
    socket.on("close", () => resolve(reply === "" ? undefined : reply.split("\r\n")[0]));
  });
}
