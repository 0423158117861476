/**
 * Egress allowlists (pure): presets and host entries, the policy one job runs under, and the check of one
 * connection against it. FLEET_EGRESS_ALLOW sets a host's list; a v2 request's `egress` may narrow it, and
 * widen it only by entries the host lists in FLEET_EGRESS_REQUEST_ALLOW.
 */
import { EGRESS_ENTRY_PATTERN } from '../protocol.ts';

/** Hosts behind each preset name. A bare host means ports 80 and 443; `*.x` matches every subdomain of x. */
export const EGRESS_PRESETS: Record<string, string[]> = {
  github: [
    'github.com',
    'api.github.com',
    'codeload.github.com',
    'uploads.github.com',
    '*.githubusercontent.com',
    'ghcr.io',
    'pkg-containers.githubusercontent.com',
  ],
  npm: ['registry.npmjs.org', 'registry.yarnpkg.com'],
  pypi: ['pypi.org', 'files.pythonhosted.org'],
  debian: ['deb.debian.org', 'security.debian.org', 'ftp.debian.org'],
  anthropic: ['api.anthropic.com'],
  openai: ['api.openai.com'],
  factory: ['api.factory.ai', 'app.factory.ai'],
  docker: ['registry-1.docker.io', 'auth.docker.io', 'production.cloudflare.docker.com'],
};

/** The host default: every preset (default-deny for everything else). */
export const DEFAULT_EGRESS_ALLOW = 'github,npm,pypi,debian,anthropic,openai,factory';

/** One allowed destination: a host (or `*.suffix`) and a port (null: 80 and 443). */
export interface EgressRule {
  host: string;
  port: number | null;
}

export type EgressMethods = 'all' | 'read';

/** The agents' model APIs: under `methods: "read"` they stay usable (an agent's every call is a POST). */
export const MODEL_API_PRESETS = ['anthropic', 'openai', 'factory'] as const;

/** What one job may reach (the forge is always reachable: the broker guards it); `refused` lists request entries the host did not allow. */
export interface EgressPolicy {
  rules: EgressRule[];
  methods: EgressMethods;
  /** Destinations `methods: "read"` does not restrict: the model APIs and the host's configured endpoints (still subject to `rules`). */
  methodExempt: EgressRule[];
  refused: string[];
}

/** Why `entry` is not an allowlist entry, or null. */
export function egressEntryProblem(entry: string): string | null {
  if (entry in EGRESS_PRESETS) return null;
  if (!EGRESS_ENTRY_PATTERN.test(entry)) {
    return `"${entry}" is neither a preset (${Object.keys(EGRESS_PRESETS).join(', ')}) nor a host, *.domain or host:port`;
  }
  const port = entry.includes(':') ? Number(entry.slice(entry.lastIndexOf(':') + 1)) : null;
  if (port !== null && (port < 1 || port > 65535)) return `"${entry}" has a port outside 1-65535`;
  return null;
}

/** Parses a comma-separated list of presets and hosts; throws naming the bad entry. */
export function parseEgressList(text: string): string[] {
  const entries = text
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter(Boolean);
  for (const entry of entries) {
    const problem = egressEntryProblem(entry);
    if (problem) throw new Error(problem);
  }
  return entries;
}

/** The rules of one entry (a preset expands to its hosts). */
export function rulesOf(entry: string): EgressRule[] {
  const preset = EGRESS_PRESETS[entry];
  if (preset) return preset.map((host) => ({ host, port: null }));
  const colon = entry.lastIndexOf(':');
  return colon < 0 ? [{ host: entry, port: null }] : [{ host: entry.slice(0, colon), port: Number(entry.slice(colon + 1)) }];
}

function hostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return pattern === host;
}

function portMatches(rule: EgressRule, port: number): boolean {
  return rule.port === null ? port === 80 || port === 443 : rule.port === port;
}

/** Whether `host:port` is in the rules (host names compare case-insensitively). */
export function allows(rules: EgressRule[], host: string, port: number): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return rules.some((r) => hostMatches(r.host, h) && portMatches(r, port));
}

/** Whether every destination of `rule` is also allowed by `rules`. */
function covered(rule: EgressRule, rules: EgressRule[]): boolean {
  return rules.some((r) => {
    const hostOk = rule.host.startsWith('*.')
      ? r.host.startsWith('*.') && hostMatches(r.host, rule.host.slice(2))
      : hostMatches(r.host, rule.host);
    const portOk = rule.port === null ? r.port === null : portMatches(r, rule.port);
    return hostOk && portOk;
  });
}

/**
 * The policy of one job. Without a request list the host's list applies; with one, each requested entry is
 * kept when the host's list or its widening list covers it, and refused (reported, never silently allowed)
 * otherwise. Methods only narrow: `read` on either side wins.
 */
export function resolveEgressPolicy(input: {
  hostAllow: string[];
  requestAllowable: string[];
  /** Hosts the host's own settings need (its model endpoints); always kept. */
  extraHosts: EgressRule[];
  hostMethods: EgressMethods;
  request?: { allow?: string[]; methods?: EgressMethods };
}): EgressPolicy {
  const hostRules = input.hostAllow.flatMap(rulesOf);
  const widenRules = input.requestAllowable.flatMap(rulesOf);
  const refused: string[] = [];
  let rules = hostRules;
  if (input.request?.allow) {
    rules = [];
    for (const entry of input.request.allow.map((e) => e.toLowerCase())) {
      const wanted = rulesOf(entry);
      if (wanted.every((r) => covered(r, hostRules) || covered(r, widenRules))) rules.push(...wanted);
      else refused.push(entry);
    }
  }
  const methods: EgressMethods = input.hostMethods === 'read' || input.request?.methods === 'read' ? 'read' : 'all';
  const methodExempt = [...input.extraHosts, ...MODEL_API_PRESETS.flatMap(rulesOf)];
  return { rules: [...rules, ...input.extraHosts], methods, methodExempt, refused };
}

/** The host and port of an http(s) URL as a rule, for endpoints the host configures. */
export function ruleOfUrl(url: string): EgressRule {
  const u = new URL(url);
  return { host: u.hostname.toLowerCase(), port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)) };
}
