import { ApiObject } from "cdk8s";
import { Construct } from "constructs";
import type { ICertificate } from "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate";

export interface RegistryCertificateProps {
  readonly namespace: string;
  /** @default "registry-tls" (the guide's) */
  readonly name?: string;
  /** The Secret cert-manager writes and the registry mounts. */
  readonly secretName: string;
  /** @default ["local-registry.neam.internal"] (the guide's DNS name) */
  readonly dnsNames?: readonly string[];
  /** The cert-manager issuer to ask. */
  readonly issuer: { readonly name: string; readonly kind?: "Issuer" | "ClusterIssuer" };
  /** @default "2160h" (90 days) */
  readonly duration?: string;
  /** @default "720h" (30 days before expiry) */
  readonly renewBefore?: string;
  /** @default "ECDSA" (P-256) */
  readonly keyAlgorithm?: "ECDSA" | "RSA";
}

/** The cert-manager Certificate behind the registry's TLS Secret (renewals are picked up live). */
export class RegistryCertificate extends Construct {
  readonly certificate: ApiObject;

  constructor(scope: Construct, id: string, props: RegistryCertificateProps) {
    super(scope, id);
    const dnsNames = props.dnsNames ?? ["local-registry.neam.internal"];
    if (dnsNames.length === 0) throw new Error("LocalRegistry: tls.dnsNames needs at least one name");
    for (const value of [props.duration, props.renewBefore]) {
      if (value !== undefined && !/^(\d+(\.\d+)?(h|m|s))+$/.test(value)) {
        throw new Error(
          `LocalRegistry: tls certificate duration ${JSON.stringify(value)} is not a Go duration`,
        );
      }
    }
    const algorithm = props.keyAlgorithm ?? "ECDSA";
    const certificate: ICertificate = {
      apiVersion: "cert-manager.io/v1",
      kind: "Certificate",
      metadata: { name: props.name ?? "registry-tls", namespace: props.namespace },
      spec: {
        secretName: props.secretName,
        dnsNames: [...new Set(dnsNames)],
        duration: props.duration ?? "2160h",
        renewBefore: props.renewBefore ?? "720h",
        privateKey: { algorithm, size: algorithm === "ECDSA" ? 256 : 3072, rotationPolicy: "Always" },
        // An ECDSA key signs (ECDHE key exchange); only RSA key transport needs keyEncipherment,
        // and strict verifiers refuse an EC certificate that claims it.
        usages:
          algorithm === "ECDSA"
            ? ["server auth", "digital signature"]
            : ["server auth", "digital signature", "key encipherment"],
        issuerRef: {
          name: props.issuer.name,
          kind: props.issuer.kind ?? "ClusterIssuer",
          group: "cert-manager.io",
        },
      },
    };
    this.certificate = new ApiObject(this, "certificate", certificate);
  }
}
