/**
 * The pruning page is one self-contained HTML file: the page's script inline, and the worker that
 * prunes carried inside it as a JSON string, started from a Blob. The service serves the same
 * page; `web/index.html` is it as a file (no server needed).
 *
 * @module
 */

/** Where the worker's source goes in the page's shell. */
export const WORKER_SLOT = "<!-- worker-source -->";

/** The id of the element that carries the worker's source. */
export const WORKER_ELEMENT_ID = "worker-source";

/**
 * The page: the shell with the worker's source in its slot, as a JSON string in which `<` is
 * escaped, so nothing in the code can end the element early.
 *
 * @example composePage('<body><!-- worker-source --></body>', "self.onmessage = () => {};")
 */
export function composePage(shell: string, worker: string): string {
  const at = shell.indexOf(WORKER_SLOT);
  if (at < 0 || shell.indexOf(WORKER_SLOT, at + 1) >= 0) {
    throw new Error(`the page's shell must hold ${WORKER_SLOT} once`);
  }
  const json = JSON.stringify(worker).replace(/</g, "\\u003c");
  return shell.slice(0, at) +
    `<script type="application/json" id="${WORKER_ELEMENT_ID}">${json}</script>` +
    shell.slice(at + WORKER_SLOT.length);
}
