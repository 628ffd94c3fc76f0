/**
 * The registry image the constructs run unless told otherwise: the contract's, which reads the
 * package's own name and version — the reference `npm run image` builds and names its archive by.
 */
export { DEFAULT_IMAGE } from "../server/src/contract/defaults.js";
