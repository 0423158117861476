/**
 * One agent run's stream, read line by line on the host: the readable transcript that replaces the raw
 * JSON in the job log, what the agent does now (for progress events), the usage ledger, and the budget.
 * Pure and synchronous: run-worker owns the container, the events and the clock.
 */
import type { Agent, AgentUsage } from '../protocol.ts';
import { redactor } from '../redact.ts';
import { priceFor, type PriceTable } from './prices.ts';
import type { AgentStreamParser } from './types.ts';
import { usageOf } from './usage.ts';

export interface Budget {
  maxTurns?: number;
  maxCostUsd?: number;
}

/** Why the run passed its budget, in words for the result's error_message. */
export interface BudgetBreach {
  limit: 'turns' | 'cost';
  message: string;
}

export interface MonitoredLine {
  /** Lines for the job log in place of the raw one; null: keep the raw line (not part of the stream). */
  log: string[] | null;
  activity: string | null;
  /** Set once, on the line that passed the budget. */
  breach: BudgetBreach | null;
}

export class AgentStreamMonitor {
  /** Lines of the stream recognised so far; without any, the run has no usage to report. */
  private recognised = 0;
  private breached: BudgetBreach | null = null;
  /** Set when the cost cap cannot be enforced as the run goes: said once in the job log. */
  readonly costWarning: string | null;

  constructor(
    private readonly parser: AgentStreamParser,
    private readonly run: { agent: Agent; model: string; prices: PriceTable; budget: Budget },
  ) {
    // Without a price the running cost is unknown: only a CLI that reports its own cost (claude, in its
    // final line) can still be held to the cap, and only at its end.
    const unpriced = run.budget.maxCostUsd !== undefined && !priceFor(run.model, run.prices);
    this.costWarning = !unpriced
      ? null
      : parser.format === 'claude'
        ? `[fleet] model ${run.model} has no price in the price table (FLEET_MODEL_PRICES): max_cost_usd is checked only against the cost claude reports when it finishes`
        : `[fleet] model ${run.model} has no price in the price table (FLEET_MODEL_PRICES) and ${parser.format} reports no cost: max_cost_usd cannot be enforced`;
  }

  get format() {
    return this.parser.format;
  }

  read(line: string): MonitoredLine {
    const step = this.parser.read(line);
    if (!step) return { log: null, activity: null, breach: null };
    this.recognised++;
    // JSON may spell a secret with escapes the raw-line redactor never saw; the decoded text passes it again.
    const log = step.transcript.map((text) => redactor.redact(text));
    const activity = step.activity ? redactor.redact(step.activity) : null;
    return { log, activity, breach: this.check() };
  }

  /** The run's usage so far; null when no line of the agent's stream was seen. */
  usage(): AgentUsage | null {
    return this.recognised === 0 ? null : usageOf(this.parser.totals(), this.run);
  }

  private check(): BudgetBreach | null {
    if (this.breached) return null;
    const { maxTurns, maxCostUsd } = this.run.budget;
    const totals = this.parser.totals();
    const usage = usageOf(totals, this.run);
    const spent = usage.cost_usd === null ? 'an unknown cost' : `$${usage.cost_usd.toFixed(4)}`;
    if ((maxTurns !== undefined && usage.turns > maxTurns) || totals.limit_hit === 'turns') {
      this.breached = {
        limit: 'turns',
        message: `the agent passed max_turns=${maxTurns ?? '(its own limit)'} (${usage.turns} turns, ${spent}); the worker was killed before it committed`,
      };
    } else if (maxCostUsd !== undefined && ((usage.cost_usd !== null && usage.cost_usd > maxCostUsd) || totals.limit_hit === 'cost')) {
      this.breached = {
        limit: 'cost',
        message: `the agent's cost passed max_cost_usd=${maxCostUsd} (${spent} after ${usage.turns} turns); the worker was killed before it committed`,
      };
    }
    return this.breached;
  }
}
