/**
 * The worker that prunes, for the page and the service alike: one job at a time, each answered
 * with the pruned bytes (transferred, not copied) and the report, or with its error.
 *
 * @module
 */
import { type JobRequest, type JobState, runJob } from "../../src/job.ts";

interface WorkerScope {
  onmessage: ((event: MessageEvent<JobRequest>) => void) | null;
  postMessage(message: unknown, transfer: Transferable[]): void;
}

const scope = globalThis as unknown as WorkerScope;
const state: JobState = {};
let queue = Promise.resolve();

scope.onmessage = (event) => {
  // One job after the other: a kept model is never pruned by two jobs at once.
  queue = queue.then(async () => {
    const { reply, transfer } = await runJob(state, event.data);
    scope.postMessage(reply, transfer);
  });
};
