import type { ErrorType } from './protocol.ts';

/**
 * fleet's one error hierarchy. Every error carries `errorType` (one of ERROR_TYPES: what the
 * orchestrator sees) and `retryable` (whether running the same job again can help).
 *
 * The base of fleet's errors. `retryable` says whether running the same job again can help;
 * `errorType` is what the orchestrator sees in the result. Errors cross process boundaries
 * (BullMQ stores only name and message), so callers test `name`, not `instanceof`.
 */
export class FleetError extends Error {
  override name = 'FleetError';
  constructor(
    message: string,
    readonly errorType: ErrorType,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The request itself is wrong: no retry, no container. */
export class InvalidRequestError extends FleetError {
  override name = 'InvalidRequestError';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message, 'invalid_request', false);
  }
}

/** Docker refused or failed to launch the worker; `retryable` when the daemon may come back. */
export class SpawnError extends FleetError {
  override name = 'SpawnError';
  constructor(message: string, retryable: boolean, options?: { cause?: unknown }) {
    super(message, 'spawn_error', retryable, options);
  }
}

/**
 * This host failed, not the task: a retry on a healthy host (or here, once the fault clears) can only help.
 * The attempt goes back to the queue without spending one of the job's attempts, and the host stops taking
 * jobs until a probe finds it healthy again (see src/host-health.ts).
 */
export class HostFaultError extends SpawnError {
  override name = 'HostFaultError';
}

/** The Docker daemon cannot be reached (stopped, restarting, or its socket gone) before or during a run. */
export class DockerUnavailableError extends HostFaultError {
  override name = 'DockerUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, true, options);
  }
}

/** Docker's data root is out of space: creating the container or copying its input in failed. */
export class DiskFullError extends HostFaultError {
  override name = 'DiskFullError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, true, options);
  }
}

/** Whether an error is this host's fault rather than the task's (checked by name: it may come from another process). */
export function isHostFault(error: unknown): error is HostFaultError {
  return isErrorNamed(error, 'HostFaultError') || isErrorNamed(error, 'DockerUnavailableError') || isErrorNamed(error, 'DiskFullError');
}

/** The job's token was encrypted with another FLEET_SECRET_KEY: no host with this key can ever read it. */
export class SecretMismatchError extends FleetError {
  override name = 'SecretMismatchError';
  constructor(message: string) {
    super(message, 'secret_mismatch', false);
  }
}

/** Base of the code host's errors (`github_error` unless a subclass says more). */
export class ForgeError extends FleetError {
  override name = 'ForgeError';
  /** HTTP status from the code host, when there was one. */
  readonly status: number | undefined;
  constructor(message: string, opts: { retryable: boolean; status?: number; cause?: unknown; errorType?: ErrorType }) {
    super(message, opts.errorType ?? 'github_error', opts.retryable, { cause: opts.cause });
    this.status = opts.status;
  }
}

/** 409 on merge: the head moved after the review; the new head must be reviewed first. Not retryable. */
export class HeadChangedError extends ForgeError {
  override name = 'HeadChangedError';
  constructor(message: string, status = 409, cause?: unknown) {
    super(message, { retryable: false, status, cause, errorType: 'head_changed' });
  }
}

/**
 * 405 on merge: conflict with the base, closed, or blocked by branch protection. Retrying the same merge does
 * not help; a rebase (fix worker) does.
 */
export class NotMergeableError extends ForgeError {
  override name = 'NotMergeableError';
  constructor(message: string, status = 405, cause?: unknown) {
    super(message, { retryable: false, status, cause, errorType: 'merge_conflict' });
  }
}

/** 404: unknown repository or pull request, or a token that cannot see it. Not retryable. */
export class NotFoundError extends ForgeError {
  override name = 'NotFoundError';
  constructor(message: string, status = 404, cause?: unknown) {
    super(message, { retryable: false, status, cause });
  }
}

/** 401, or 403 that is not a rate limit: bad or under-privileged token. Not retryable. */
export class ForgeAuthError extends ForgeError {
  override name = 'ForgeAuthError';
  constructor(message: string, status: number, cause?: unknown) {
    super(message, { retryable: false, status, cause });
  }
}

/**
 * 422 other than self-approval: the request is invalid (missing branch, bad body). Not retryable.
 * Without a status it was refused before any call (a malformed repository name).
 */
export class ForgeValidationError extends ForgeError {
  override name = 'ForgeValidationError';
  constructor(message: string, status?: number, cause?: unknown) {
    super(message, { retryable: false, ...(status === undefined ? {} : { status }), cause });
  }
}

/** A rate limit the client gave up waiting for (retries exhausted). Retryable later. */
export class RateLimitedError extends ForgeError {
  override name = 'RateLimitedError';
  constructor(message: string, status: number, cause?: unknown) {
    super(message, { retryable: true, status, cause });
  }
}

/** 5xx, a network failure or a limiter (Redis) failure. Retryable. */
export class ForgeUnavailableError extends ForgeError {
  override name = 'ForgeUnavailableError';
  constructor(message: string, status?: number, cause?: unknown) {
    super(message, { retryable: true, ...(status === undefined ? {} : { status }), cause });
  }
}

/**
 * The reviewer could not produce a verdict: `review_error`, or `review_incomplete` when it could
 * not read the whole diff and so gives no verdict at all.
 */
export class ReviewError extends FleetError {
  override name = 'ReviewError';
  constructor(message: string, opts: { retryable: boolean; cause?: unknown; errorType?: 'review_error' | 'review_incomplete' }) {
    super(message, opts.errorType ?? 'review_error', opts.retryable, { cause: opts.cause });
  }
}

export type FleetErrorName =
  | 'FleetError'
  | 'InvalidRequestError'
  | 'SpawnError'
  | 'HostFaultError'
  | 'DockerUnavailableError'
  | 'DiskFullError'
  | 'SecretMismatchError'
  | 'ReviewError'
  | 'ForgeError'
  | 'HeadChangedError'
  | 'NotMergeableError'
  | 'NotFoundError'
  | 'ForgeAuthError'
  | 'ForgeValidationError'
  | 'RateLimitedError'
  | 'ForgeUnavailableError';

/** Recognises an error by `name`, so it works on errors rebuilt from another process (a failed job's reason). */
export function isErrorNamed(error: unknown, name: FleetErrorName): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === name;
}

/** Why a running job was told to stop, carried on its AbortSignal. */
export type StopReason = 'cancelled' | 'drain';
