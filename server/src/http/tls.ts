import { readFileSync, unwatchFile, watchFile } from "node:fs";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import type { Server } from "node:https";
import type { Config } from "../config/schema.js";
import type { Logger } from "../log.js";

type Tls = NonNullable<Config["http"]["tls"]>;

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
    ciphers: tls.ciphersuites?.join(":") ?? MODERN_CIPHERS,
    honorCipherOrder: true,
  };
  try {
    createSecureContext(options); // a certificate that does not match its key fails here, not at the first client
  } catch (error) {
    throw new Error(`http.tls: ${(error as Error).message}`);
  }
  return options;
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
