/**
 * Deno permissions by feature: the library prunes with none; the command line reads the model
 * (`--allow-read`) and writes the output (`--allow-write`); onnxruntime (calibration,
 * evaluation, latency, the run check) needs `--allow-ffi` or `--allow-read`. A missing one is
 * refused before the work with the feature and the flag named, not as a file that "does not
 * exist".
 *
 * @module
 */
import { PruneError } from "./errors.ts";

const FLAGS: Record<string, string> = {
  read: "--allow-read",
  write: "--allow-write",
  ffi: "--allow-ffi",
  env: "--allow-env",
  net: "--allow-net",
};

/** The flag that grants a permission, e.g. `--allow-read`. */
export function permissionFlag(name: string): string {
  return FLAGS[name] ?? `--allow-${name}`;
}

/** Whether Deno grants the permission now, without asking. */
export function permitted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Makes sure `feature` may use a permission: granted already, or granted when Deno asks (on a
 * terminal, without --no-prompt); else a PruneError naming the feature and the flag.
 *
 * @example requirePermission({ name: "read", path: "vit.onnx" }, "reading the model vit.onnx");
 */
export function requirePermission(descriptor: Deno.PermissionDescriptor, feature: string): void {
  let state: Deno.PermissionState;
  try {
    state = Deno.permissions.querySync(descriptor).state;
    if (state === "prompt") state = Deno.permissions.requestSync(descriptor).state;
  } catch {
    state = "denied";
  }
  if (state !== "granted") {
    throw new PruneError(
      "permission",
      `${feature} needs ${permissionFlag(descriptor.name)} (run Deno with it, or with -A)`,
    );
  }
}

/** A Deno permission error as the user should read it: the operation and the flag, no stack. */
export function permissionMessage(e: unknown): string | undefined {
  if (!(e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied)) {
    return undefined;
  }
  return e.message;
}
