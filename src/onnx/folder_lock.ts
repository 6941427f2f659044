/**
 * An exclusive lock on a folder, held while a model and its data file are put in place, so that
 * runs writing the same output one after the other never interleave their renames. The lock is
 * the operating system's (flock on the folder): a killed run holds it no longer.
 *
 * @module
 */

/** Runs `fn` holding the lock on `dir`; without folder locks (some systems), runs it as is. */
export async function withFolderLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  let handle: Deno.FsFile | undefined;
  try {
    handle = await Deno.open(dir, { read: true });
    await handle.lock(true);
  } catch {
    handle?.close();
    handle = undefined;
  }
  try {
    return await fn();
  } finally {
    if (handle) {
      try {
        await handle.unlock();
      } catch { /* closing releases it too */ }
      handle.close();
    }
  }
}
