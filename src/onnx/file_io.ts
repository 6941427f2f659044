/**
 * Whole-file reads and writes tuned for model-sized files.
 *
 * @module
 */

/** Reads from the file's position until `bytes` is full or the file ends; the count read. */
export async function readInto(file: Deno.FsFile, bytes: Uint8Array): Promise<number> {
  let at = 0;
  while (at < bytes.length) {
    const n = await file.read(bytes.subarray(at));
    if (n === null) break;
    at += n;
  }
  return at;
}

/** A file's bytes, read into one buffer of its size (Deno.readFile grows its buffer as it goes:
 * twice the time on big models). */
export async function readWhole(path: string): Promise<Uint8Array> {
  const file = await Deno.open(path);
  try {
    const bytes = new Uint8Array((await file.stat()).size);
    if ((await readInto(file, bytes)) !== bytes.length) {
      throw new Error(`${path}: changed while being read`);
    }
    return bytes;
  } finally {
    file.close();
  }
}

/** Writes out a file's content, piece by piece. */
export type WriteTo = (file: Deno.FsFile) => Promise<void>;

/** Writes all of `bytes` in pieces of 16 MiB (one write of a whole model is slower). */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    at += await file.write(bytes.subarray(at, at + (16 << 20)));
  }
}

/** Writes a new file (never an existing one) from bytes or a writer. (Files here are closed in
 * `finally`, not by `using`: the page's bundle keeps that syntax, which not every browser parses.) */
export async function writeWhole(path: string, content: Uint8Array | WriteTo): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true });
  try {
    if (content instanceof Uint8Array) await writeAll(file, content);
    else await content(file);
  } finally {
    file.close();
  }
}
