import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./registry.js";

export interface TestCertificates {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly cert: string;
  readonly key: string;
}

const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
const P256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/**
 * A certificate for `commonName` signed by the CA, written to `dir` as `<file>.crt` and `<file>.key`;
 * `extensions` are openssl x509v3 lines (subjectAltName, extendedKeyUsage). `days` sets its
 * validity: certificates issued in the same second with the same `days` expire at the same time.
 */
export function issueCertificate(
  ca: { caCert: string; caKey: string },
  dir: string,
  file: string,
  commonName: string,
  extensions: string[] = [],
  days = 2,
): { cert: string; key: string } {
  const p = (suffix: string) => join(dir, `${file}.${suffix}`);
  openssl("req", ...P256, "-subj", `/CN=${commonName}`, "-keyout", p("key"), "-out", p("csr"));
  writeFileSync(p("ext"), `${extensions.join("\n")}\n`);
  openssl(
    "x509",
    "-req",
    "-in",
    p("csr"),
    "-CA",
    ca.caCert,
    "-CAkey",
    ca.caKey,
    "-CAcreateserial",
    "-days",
    String(days),
    "-extfile",
    p("ext"),
    "-out",
    p("crt"),
  );
  return { cert: p("crt"), key: p("key") };
}

/**
 * A private CA and a server certificate for 127.0.0.1 and localhost it signed, made with openssl;
 * the server certificate is valid for `days`.
 */
export function makeCertificates(name = "neam", { days = 2 }: { days?: number } = {}): TestCertificates {
  const dir = tempDir("neam-certs-");
  const ca = { caCert: join(dir, "ca.crt"), caKey: join(dir, "ca.key") };
  openssl(
    "req",
    "-x509",
    ...P256,
    "-days",
    String(Math.max(days, 2)),
    "-subj",
    `/CN=${name} test CA`,
    "-keyout",
    ca.caKey,
    "-out",
    ca.caCert,
  );
  const server = issueCertificate(
    ca,
    dir,
    "tls",
    "127.0.0.1",
    ["subjectAltName=IP:127.0.0.1,DNS:localhost", "extendedKeyUsage=serverAuth"],
    days,
  );
  return { dir, ...ca, ...server };
}
