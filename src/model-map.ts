import { AGENTS, MODEL_PATTERN, type Agent } from './protocol.ts';

/**
 * FLEET_MODEL_MAP: which model an agent's worker really uses for a requested one, so operators can move
 * off a retired model (or onto a gateway's name for it) without changing the orchestrator. JSON, because
 * model names may hold `:` and `/`:
 *
 *     {"*": {"claude-sonnet-4-5-20250929": "claude-sonnet-4-6"}, "codex": {"claude-sonnet-4-5-20250929": "gpt-5-codex"}}
 *
 * Keys are agents or `*` (every agent); an agent's own entry wins over `*`.
 */
export type ModelMap = Partial<Record<Agent | '*', Record<string, string>>>;

const KEYS: readonly string[] = [...AGENTS, '*'];

/** Parses and checks FLEET_MODEL_MAP; the error names the bad entry. */
export function parseModelMap(text: string): ModelMap {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error('must be JSON like {"*": {"old-model": "new-model"}, "codex": {"…": "…"}}');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new Error('must be a JSON object keyed by agent or "*"');
  const map: ModelMap = {};
  for (const [agent, entries] of Object.entries(parsed)) {
    if (!KEYS.includes(agent)) throw new Error(`"${agent}" is not an agent (${KEYS.join(', ')})`);
    if (entries === null || typeof entries !== 'object' || Array.isArray(entries))
      throw new Error(`"${agent}" must map model names to model names`);
    const checked: Record<string, string> = {};
    for (const [from, to] of Object.entries(entries as Record<string, unknown>)) {
      // The target reaches the agent CLI's --model like a requested model does: the same rule applies.
      if (typeof to !== 'string' || !MODEL_PATTERN.test(to))
        throw new Error(`"${agent}"."${from}": the target must be a model name (letters, digits and "._:/-")`);
      checked[from] = to;
    }
    map[agent as Agent | '*'] = checked;
  }
  return map;
}

/** The model an agent's worker uses for the requested one. */
export function mapModel(map: ModelMap, agent: Agent, requested: string): string {
  return map[agent]?.[requested] ?? map['*']?.[requested] ?? requested;
}
