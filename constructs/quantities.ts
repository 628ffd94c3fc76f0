/** A Kubernetes resource quantity (`100Gi`, `512Mi`, `200m`, `1.5`, `1e3`), as the API server parses it. */
const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$/;

const SUFFIX: Record<string, number> = {
  "": 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

export function checkQuantity(prop: string, value: string): string {
  if (!QUANTITY.test(value))
    throw new Error(`LocalRegistry: ${prop} ${JSON.stringify(value)} is not a Kubernetes quantity`);
  return value;
}

/**
 * The value of a quantity in base units (bytes, cores), for comparing two of them: `0.5Gi` and
 * `512Mi` are equal, `1500m` is more than `1`. A double is exact enough to order the quantities a
 * pod spec holds.
 */
export function quantityValue(prop: string, value: string): number {
  checkQuantity(prop, value);
  const match = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(.*)$/.exec(value)!;
  const number = Number(match[1]);
  const suffix = match[2]!;
  if (/^[eE]/.test(suffix)) return number * 10 ** Number(suffix.slice(1));
  return number * SUFFIX[suffix]!;
}
