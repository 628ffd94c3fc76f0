import { open } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { native } from "../native.js";

export const sendfileAvailable = native !== undefined;

/** The socket's descriptor when the kernel can copy a file straight into it (plain TCP). */
function socketFd(res: ServerResponse): number | undefined {
  const socket = res.socket as (Socket & { _handle?: { fd?: number } }) | null;
  if (native === undefined || socket === null || socket instanceof TLSSocket || socket.destroyed)
    return undefined;
  const fd = socket._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

export function canSendfile(res: ServerResponse): boolean {
  return socketFd(res) !== undefined;
}

/**
 * Answers with the response's status and headers, then `length` bytes of the file at `path` from
 * `offset`, copied by the kernel (sendfile(2)) without passing through this process. The caller
 * has checked `canSendfile` and set Content-Length. Rejects when the client goes away or stalls;
 * the connection is then closed.
 */
export async function sendFile(
  res: ServerResponse,
  path: string,
  offset: number,
  length: number,
): Promise<void> {
  const file = await open(path, "r");
  try {
    const socket = res.socket!;
    res.flushHeaders();
    // The headers must be on the wire before the kernel appends the body behind Node's back.
    await new Promise<void>((resolve, reject) =>
      socket.write(Buffer.alloc(0), (error) => (error ? reject(error) : resolve())),
    );
    const fd = socketFd(res);
    if (fd === undefined) throw new Error("the connection closed before the body was sent");
    await new Promise<void>((resolve, reject) =>
      native!.sendfile(fd, file.fd, offset, length, (error, sent) =>
        error === null && sent === length
          ? resolve()
          : reject(new Error(error ?? `sent ${sent} of ${length} bytes`)),
      ),
    );
    res.end();
  } catch (error) {
    res.destroy();
    throw error;
  } finally {
    await file.close();
  }
}
