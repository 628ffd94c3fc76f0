import { App, Chart } from "cdk8s";
import { LocalRegistry } from "../constructs/index.js";
import { ENVIRONMENTS } from "./environments.js";

/** `npm run synth`: one plain-manifest file per environment under dist/manifests/. */
export function synthesize(outdir = "dist/manifests"): App {
  const app = new App({ outdir });
  for (const [environment, props] of Object.entries(ENVIRONMENTS)) {
    const chart = new Chart(app, `local-registry-${environment}`, { disableResourceNameHashes: true });
    new LocalRegistry(chart, "registry", props);
  }
  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) synthesize().synth();
