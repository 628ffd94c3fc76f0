import { readFileSync, unwatchFile, watchFile } from "node:fs";
import { constants } from "node:crypto";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import type { Server } from "node:https";
import type { Config } from "../config/schema.js";
import type { Logger } from "../log.js";

type Tls = NonNullable<Config["http"]["tls"]>;

/**
 * The order of TLS 1.3's suites (all modern): AES-128-GCM first, as Go's and most servers choose
 * for clients with AES instructions. OpenSSL's own order puts AES-256-GCM first, and with the
 * server's preference honoured every client got it: 14 AES rounds instead of 10 per block on
 * both ends of a large pull, where the client (skopeo, containerd) is the one short of CPU.
 * A client that asks for ChaCha20 first (no AES instructions) gets it: SSL_OP_PRIORITIZE_CHACHA.
 */
export const TLS13_SUITES = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
].join(":");

/** ECDHE key exchange and AEAD ciphers only, for TLS 1.2 (TLS 1.3's suites are all modern). */
export const MODERN_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** The TLS settings of `http.tls`, read from disk now; throws with the file named when unusable. */
export function secureContextOptions(tls: Tls): SecureContextOptions {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new Error(`http.tls.${what}: cannot read ${path}: ${(error as Error).message}`);
    }
  };
  const options: SecureContextOptions = {
    cert: read(tls.certificate, "certificate"),
    key: read(tls.key, "key"),
    ca: tls.clientcas?.map((path) => read(path, "clientcas")),
    minVersion: tls.minimumtls === "tls1.3" ? "TLSv1.3" : "TLSv1.2",
    ciphers: cipherList(tls.ciphersuites),
    honorCipherOrder: true,
    secureOptions: constants.SSL_OP_PRIORITIZE_CHACHA,
  };
  try {
    createSecureContext(options); // a certificate that does not match its key fails here, not at the first client
  } catch (error) {
    throw new Error(`http.tls: ${(error as Error).message}`);
  }
  return options;
}

/**
 * OpenSSL's cipher list: `ciphersuites` as written when set (TLS 1.2 names, and TLS 1.3 ones if
 * it names any; like the reference's, a list of TLS 1.2 suites leaves TLS 1.3 to its defaults,
 * which are ours here), else the modern TLS 1.2 suites. Node takes the `TLS_` names of the list
 * for TLS 1.3.
 */
export function cipherList(configured: readonly string[] | undefined): string {
  if (configured === undefined) return `${TLS13_SUITES}:${MODERN_CIPHERS}`;
  return configured.some((name) => name.startsWith("TLS_"))
    ? configured.join(":")
    : [TLS13_SUITES, ...configured].join(":");
}

/**
 * Reloads the certificate, key and client CAs when their files change (cert-manager renewing a
 * Secret), for new connections; the listener and open connections carry on. A broken pair (a
 * certificate written before its key) keeps the previous one until the files agree again.
 */
export function watchCertificates(server: Server, tls: Tls, logger: Logger, intervalMs = 2_000): () => void {
  const paths = [tls.certificate, tls.key, ...(tls.clientcas ?? [])];
  const reload = () => {
    try {
      server.setSecureContext(secureContextOptions(tls));
      logger.info({ certificate: tls.certificate }, "TLS certificate reloaded");
    } catch (error) {
      logger.warn(
        { err: (error as Error).message },
        "TLS certificate not reloaded; keeping the previous one",
      );
    }
  };
  for (const path of paths) watchFile(path, { interval: intervalMs, persistent: false }, reload);
  return () => {
    for (const path of paths) unwatchFile(path, reload);
  };
}
