/**
 * A worker running the compute core's ridge refits (see refit_pool.ts): one problem per message,
 * answered with the result's buffers transferred.
 *
 * @module
 */
import { type RefitProblem, ridgeRefitNow } from "./mod.ts";

interface Job {
  id: number;
  problem: RefitProblem;
}

const scope = self as unknown as {
  onmessage: ((event: MessageEvent<Job>) => void) | null;
  postMessage(message: unknown, transfer?: Transferable[]): void;
};

scope.onmessage = (event) => {
  const { id, problem } = event.data;
  try {
    const { weight, bias } = ridgeRefitNow(problem);
    // Copies of the views into the core's result: compact buffers to hand over.
    const w = weight.slice(), b = bias?.slice();
    scope.postMessage({ id, weight: w, bias: b }, b ? [w.buffer, b.buffer] : [w.buffer]);
  } catch (error) {
    scope.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
};

scope.postMessage({ ready: true });
