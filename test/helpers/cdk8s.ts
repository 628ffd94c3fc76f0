import { Testing, type App } from "cdk8s";

/**
 * An app for synthesizing charts in memory. `Testing.app()` makes a temporary directory per call
 * and never removes it (thousands per run); `Testing.synth` writes nothing, so none is needed.
 */
export function testApp(): App {
  return Testing.app({ outdir: "/nonexistent-not-written" });
}
