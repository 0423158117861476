import { failureResult, type SpawnResult } from './protocol.ts';
import type { RunOutcome } from './run-worker.ts';

/** Pure: the §3 result of one finished container run. */
export function resultFromOutcome(
  requestId: string,
  outcome: Omit<RunOutcome, 'stoppedBy'> & { stoppedBy: 'timeout' | 'cancelled' | null },
  context: { timeoutSeconds: number; branch: string | null },
): SpawnResult {
  const logsTail = outcome.tail.length ? outcome.tail.join('\n') : null;
  const branch = outcome.completed?.branch ?? (context.branch || null);
  if (outcome.stoppedBy === 'timeout') {
    return failureResult(requestId, 'timeout', `the worker ran longer than timeout_seconds=${context.timeoutSeconds} and was killed`, {
      logsTail,
      branch,
    });
  }
  if (outcome.stoppedBy === 'cancelled') {
    return failureResult(requestId, 'cancelled', 'the request was cancelled while its worker ran; the worker was killed', { logsTail, branch });
  }
  const exitCode = outcome.exitCode ?? -1;
  if (exitCode === 0) {
    const done = outcome.completed;
    const summary = done?.summary ?? null;
    return {
      request_id: requestId,
      success: true,
      exit_code: 0,
      output: summary ?? (done ? 'completed' : 'the worker exited 0 without a completed event'),
      commit_sha: done?.commit_sha ?? null,
      branch,
      files_changed: done?.files_changed ?? [],
      summary,
      error_type: null,
      error_message: null,
      logs_tail: logsTail,
    };
  }
  if (outcome.failed) {
    const failedTail = outcome.failed.logs_tail ?? logsTail;
    return failureResult(requestId, outcome.failed.error_type, outcome.failed.error_message, { exitCode, logsTail: failedTail, branch });
  }
  return failureResult(requestId, 'crash', `the worker exited with code ${exitCode} without reporting a failure`, {
    exitCode,
    logsTail,
    branch,
  });
}
