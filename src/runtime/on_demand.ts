/**
 * npm packages loaded only when a feature needs them (onnxruntime: calibration, evaluation,
 * latency profiling, the run check). Deno fetches every dynamic import whose specifier is a
 * string literal together with the module graph, before the program starts; these specifiers
 * are built at run time, so a magnitude prune never downloads them. The versions are those of
 * `deno.json` (a test holds them equal).
 *
 * @module
 */

/** The packages, by the name the code uses, with the versions `deno.json` pins. */
export const ON_DEMAND = {
  "onnxruntime-node": ["onnxruntime-node", "1.30.0", ""],
  "onnxruntime-web": ["onnxruntime-web", "1.30.0", ""],
  "onnxruntime-web/webgpu": ["onnxruntime-web", "1.30.0", "/webgpu"],
} as const;

/** A package known to {@link importOnDemand}. */
export type OnDemand = keyof typeof ON_DEMAND;

/** The full `npm:` specifier of a package (a JSR package carries no import map). */
export function onDemandSpecifier(name: OnDemand): string {
  const [pkg, version, path] = ON_DEMAND[name];
  return `npm:${pkg}@${version}${path}`;
}

/**
 * Imports a package on first use (fetching it then, if it is not cached).
 *
 * @example const ort = await importOnDemand("onnxruntime-web");
 */
export function importOnDemand(name: OnDemand): Promise<unknown> {
  const specifier = onDemandSpecifier(name);
  return import(specifier);
}
