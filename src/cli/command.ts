/** What every `fleet` subcommand is, and the error a user can fix. */

/** A failure the user can fix; printed without a stack trace. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface Command {
  summary: string;
  usage: string;
  help: string;
  run(args: string[]): Promise<number>;
}
