/**
 * Ends a CLI command with `code` once everything it wrote to stdout and stderr has been handed to
 * the kernel. When stdout is a pipe (`gc --json | jq`, a CronJob's log shim) Node writes it
 * asynchronously: what does not fit the pipe's buffer (64 KiB) waits in the process, and a bare
 * `process.exit` drops it. The exit itself stays explicit, so a handle left open (a keep-alive
 * socket, a timer) cannot keep a finished command running.
 */
export function exitWhenFlushed(code: number): void {
  process.exitCode = code;
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.writableLength === 0 || stream.destroyed) {
      done();
      continue;
    }
    let called = false;
    const once = () => {
      if (called) return;
      called = true;
      done();
    };
    // A reader that went away (`gc --json | head`) fails the write with EPIPE: nothing more can
    // be delivered, so that is not a reason to hang or to print a stack trace.
    stream.once("error", once);
    // Writes complete in order: this one's callback runs once the data before it is out.
    stream.write("", once);
  }
}
