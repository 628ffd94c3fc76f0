import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Gauge, type Registry as PromRegistry } from "prom-client";
import { METRICS } from "./names.js";

/**
 * When the served TLS certificate expires, read from its file at each scrape: the registry reloads
 * renewed certificates, so this follows cert-manager's renewals, and an alert can tell a renewal
 * that did not happen (or was not picked up) weeks before clients fail.
 */
export function registerCertificateMetrics(
  certificatePath: string | undefined,
  register: PromRegistry,
): void {
  new Gauge({
    name: METRICS.tlsCertificateExpiryTimestampSeconds,
    help: "When the registry's TLS certificate (the first of its chain) stops being valid (Unix time).",
    registers: [register],
    async collect() {
      if (certificatePath === undefined) return; // plain HTTP: the metric has no sample
      try {
        const certificate = new X509Certificate(await readFile(certificatePath));
        this.set(Date.parse(certificate.validTo) / 1000);
      } catch {
        this.reset(); // unreadable: no sample rather than a wrong one (the reload logs say why)
      }
    },
  });
}
