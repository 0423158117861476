/**
 * The GitHub identity a review or merge step acts with. A request that acts as the GitHub App (jobUsesApp)
 * gets an installation token for its repository alone, minted for this run of the step (on its first GitHub
 * call) and revoked when the run ends: before its outcome goes to the flow, and before it parks for children
 * or a delay (the next run, or the next pass when it did not have to wait, mints a new one). The token lives
 * in this process's memory only; the step's saved state and its children never carry it (a fix worker's
 * spawn job mints its own). Any other request acts with its own sealed token or the host's, as before.
 */
import type { ScopeContext } from '../../queues/review.ts';
import { ForgeError, InvalidRequestError } from '../errors.ts';
import type { Forge } from '../forge.ts';
import { GitHubAppError, STEP_TOKEN_PERMISSIONS } from '../github/app-auth.ts';
import { jobUsesApp, type InstallationLease } from '../github/index.ts';
import { redactor } from '../redact.ts';
import { repoAllowed, repoRefusal } from '../repo-allow.ts';
import { scopeToken, type FlowStepDeps } from './steps.ts';

export interface StepGitHub {
  /** The forge this run of the step acts with; with the App, the first call after a release mints a token. */
  forge(): Promise<Forge>;
  /** Revokes the App token the run holds, if any; a forge got before must not be used after. */
  release(): Promise<void>;
}

/** Opens the step's GitHub identity; `release()` goes before every park and in the step's `finally`. */
export function stepGitHub(ctx: ScopeContext, deps: FlowStepDeps, step: 'review' | 'merge'): StepGitHub {
  const app = deps.forges.app;
  const usesApp = jobUsesApp({ requestHasToken: ctx.sealedToken !== null, auth: deps.githubAuth ?? 'auto', app });
  if (!usesApp) {
    let forge: Forge | undefined;
    return {
      forge: async () => (forge ??= deps.forges.forToken(scopeToken(ctx, deps))),
      release: async () => {},
    };
  }
  let held: Promise<{ lease: InstallationLease; forgetToken: () => void }> | undefined;
  const mint = async () => {
    if (!repoAllowed(ctx.repo, deps.repoAllow)) throw new InvalidRequestError(repoRefusal(ctx.repo), 'repo');
    try {
      const lease = await app!.mint(ctx.repo, STEP_TOKEN_PERMISSIONS[step]);
      return { lease, forgetToken: redactor.add(lease.token) };
    } catch (error) {
      const e = error as Error;
      // Not installed there, or scoped otherwise: no retry helps. GitHub or the network failing: one may.
      throw new ForgeError(`the GitHub App gave no token for ${ctx.repo} (${step} step): ${e.message}`, {
        retryable: !(e instanceof GitHubAppError),
        cause: error,
      });
    }
  };
  return {
    async forge() {
      held ??= mint();
      return deps.forges.forToken((await held).lease.token);
    },
    async release() {
      const releasing = held;
      held = undefined;
      const minted = await releasing?.catch(() => undefined);
      if (!minted) return;
      // A failed revocation does not change the step's outcome (as for spawn jobs): it is logged, and GitHub
      // ends the token within the hour anyway.
      await minted.lease
        .revoke()
        .catch((error: Error) =>
          deps.logger.error(
            { request_id: ctx.requestId, scope: ctx.scope, err: error },
            `could not revoke the ${step} step's GitHub App token`,
          ),
        )
        .finally(minted.forgetToken);
    },
  };
}
