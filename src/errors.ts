import type { ErrorType } from './protocol.ts';

/**
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
  constructor(message: string, readonly field?: string) {
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

/** The job's token was encrypted with another FLEET_SECRET_KEY: no host with this key can ever read it. */
export class SecretMismatchError extends FleetError {
  override name = 'SecretMismatchError';
  constructor(message: string) {
    super(message, 'secret_mismatch', false);
  }
}

/** Why a running job was told to stop, carried on its AbortSignal. */
export type StopReason = 'cancelled' | 'drain';
