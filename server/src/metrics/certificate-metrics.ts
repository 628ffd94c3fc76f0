import { X509Certificate } from "node:crypto";
import { Gauge, type Registry as PromRegistry } from "prom-client";
import type { Config } from "../config/schema.js";
import { secureContextOptions } from "../http/tls.js";
import { METRICS } from "./names.js";

/**
 * When the served TLS certificate expires, read from its files at each scrape: the registry reloads
 * renewed certificates, so this follows cert-manager's renewals, and an alert can tell a renewal
 * that did not happen (or was not picked up) weeks before clients fail. A certificate the listener
 * would not load (one that does not match its key yet) is not the one served: the last loadable
 * one is reported, as the listener keeps serving it.
 */
export function registerCertificateMetrics(
  tls: NonNullable<Config["http"]["tls"]> | undefined,
  register: PromRegistry,
): void {
  /** The expiry of the pair the listener loaded (at start, then at each reload that worked). */
  let served: number | undefined;
  const read = () => {
    if (tls === undefined) return;
    try {
      const certificate = new X509Certificate(secureContextOptions(tls).cert as Buffer);
      served = Date.parse(certificate.validTo) / 1000;
    } catch {
      // Unreadable or not a pair: the listener keeps the previous certificate (the reload logs say why).
    }
  };
  read();
  new Gauge({
    name: METRICS.tlsCertificateExpiryTimestampSeconds,
    help: "When the registry's TLS certificate (the first of its chain) stops being valid (Unix time).",
    registers: [register],
    collect() {
      if (tls === undefined) return; // plain HTTP: the metric has no sample
      read();
      if (served === undefined) this.reset();
      else this.set(served);
    },
  });
}
