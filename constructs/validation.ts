import { isIPv4, isIPv6 } from "node:net";

/**
 * The API server's own rules for what the constructs put into objects, checked at synth time so a
 * prop the cluster would reject fails `cdk8s synth` with one line naming the prop.
 */

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function fail(prop: string, value: unknown, why: string): never {
  throw new Error(`LocalRegistry: ${prop} ${JSON.stringify(value)} ${why}`);
}

/** Namespaces, label-like names: RFC 1123 label, at most 63 characters. */
export function checkDnsLabel(prop: string, value: string): string {
  if (!DNS1123_LABEL.test(value) || value.length > 63)
    fail(prop, value, "is not a DNS-1123 label (lowercase letters, digits and '-', at most 63)");
  return value;
}

/** Service names: RFC 1035 label (starts with a letter), at most 63 characters. */
export function checkDns1035Label(prop: string, value: string): string {
  if (!DNS1035_LABEL.test(value) || value.length > 63)
    fail(
      prop,
      value,
      "is not a DNS-1035 label (a lowercase letter, then lowercase letters, digits and '-', at most 63)",
    );
  return value;
}

/** Names of Secrets, ConfigMaps, StorageClasses, PriorityClasses, ServiceAccounts: RFC 1123 subdomain. */
export function checkDnsSubdomain(prop: string, value: string): string {
  if (!DNS1123_SUBDOMAIN.test(value) || value.length > 253)
    fail(prop, value, "is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253)");
  return value;
}

export function checkPort(prop: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) fail(prop, value, "is not a port (1-65535)");
  return value;
}

/** An IPv4 or IPv6 CIDR, as NetworkPolicy's ipBlock takes it. */
export function checkCidr(prop: string, value: string): string {
  const [address, prefix, ...rest] = value.split("/");
  const bits = isIPv4(address ?? "") ? 32 : isIPv6(address ?? "") ? 128 : 0;
  if (
    bits === 0 ||
    rest.length > 0 ||
    prefix === undefined ||
    !/^\d{1,3}$/.test(prefix) ||
    Number(prefix) > bits
  )
    fail(prop, value, "is not a CIDR such as 10.0.0.0/16");
  return value;
}

/** An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. */
export function checkImageTag(prop: string, value: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(value))
    fail(prop, value, "is not an image tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})");
  return value;
}

/** `[host[:port]/]path`, as a container runtime parses an image name. */
export function checkImageRepository(prop: string, value: string): string {
  const component = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
  const host =
    "(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::\\d+)?/)";
  if (!new RegExp(`^${host}?${component}(?:/${component})*$`).test(value) || value.length > 255)
    fail(prop, value, "is not an image repository such as registry.example:5000/neam-registry");
  return value;
}

export function checkImageDigest(prop: string, value: string): string {
  if (!/^sha256:[a-f0-9]{64}$/.test(value)) fail(prop, value, "is not a digest (sha256:<64 hex>)");
  return value;
}

/** Label values: at most 63 characters, alphanumerics at both ends. */
export function checkLabelValue(prop: string, value: string): string {
  if (value.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(value))
    fail(prop, value, "is not a valid label value (at most 63 characters)");
  return value;
}
