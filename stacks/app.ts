import { App } from "cdk8s";
import { ENVIRONMENTS } from "./environments.js";
import { registryChart } from "./manifests.js";

/** `npm run synth`: one plain-manifest file per environment under dist/manifests/. */
export function synthesize(outdir = "dist/manifests"): App {
  const app = new App({ outdir });
  for (const environment of Object.keys(ENVIRONMENTS)) registryChart(app, environment);
  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) synthesize().synth();
