/** A Kubernetes resource quantity (`100Gi`, `512Mi`, `200m`, `1.5`). */
const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$/;

export function checkQuantity(prop: string, value: string): string {
  if (!QUANTITY.test(value))
    throw new Error(`LocalRegistry: ${prop} ${JSON.stringify(value)} is not a Kubernetes quantity`);
  return value;
}
