/** A percent-decoded path component; malformed escapes are kept as they are (validation rejects them). */
export function decodeComponent(component: string): string {
  try {
    return decodeURIComponent(component);
  } catch {
    return component;
  }
}
