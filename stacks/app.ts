import { pathToFileURL } from "node:url";
import { App } from "cdk8s";
import { ENVIRONMENTS } from "./environments.js";
import { registryChart } from "./manifests.js";

/** Where `npm run synth` writes when the cdk8s CLI names no directory. */
export const DEFAULT_OUTDIR = "dist/manifests";

/**
 * `npm run synth` and `cdk8s synth [--output DIR]` (cdk8s.yaml runs `npm run synth`): one
 * plain-manifest file per environment. The CLI passes its output directory as CDK8S_OUTDIR.
 */
export function synthesize(outdir = process.env.CDK8S_OUTDIR || DEFAULT_OUTDIR): App {
  const app = new App({ outdir });
  for (const environment of Object.keys(ENVIRONMENTS)) registryChart(app, environment);
  return app;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href)
  synthesize().synth();
