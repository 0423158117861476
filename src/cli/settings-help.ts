import { SETTINGS } from '../config.ts';

/** One line per setting; a test checks this covers the schema exactly, so --help cannot drift. */
export const SETTING_DESCRIPTIONS: Record<string, string> = {
  REDIS_URL: 'Redis to use (redis://host:port); unset: run an embedded redis-server',
  FLEET_PREFIX: 'BullMQ key prefix (default fleet; {fleet} for Redis Cluster)',
  REDIS_SENTINELS: 'Sentinel-managed Redis: the sentinels, host:port,host:port (instead of REDIS_URL)',
  REDIS_SENTINEL_NAME: 'the primary the sentinels monitor (sentinel monitor <name>); required with REDIS_SENTINELS',
  REDIS_SENTINEL_PASSWORD: "the sentinels' own password (requirepass in sentinel.conf), when they have one",
  REDIS_CLUSTER_NODES: 'Redis Cluster: some of its nodes, host:port,host:port (instead of REDIS_URL); FLEET_PREFIX needs a {hash tag}',
  REDIS_USERNAME: 'ACL user for Redis (Sentinel or Cluster; with REDIS_URL put it in the URL)',
  REDIS_PASSWORD: "Redis's password (Sentinel, Cluster, or a REDIS_URL without one)",
  REDIS_TLS: 'TLS to Redis and its sentinels with REDIS_SENTINELS or REDIS_CLUSTER_NODES (REDIS_URL: use rediss://) (default off)',
  REDIS_TLS_CA_FILE: "PEM file of the CA that signed Redis's certificate (default: the system's CAs)",
  FLEET_DATA_DIR: 'embedded Redis data and the generated secret key (default ./.fleet)',
  FLEET_REDIS_PORT: 'port of the embedded redis-server, loopback only (default 6379)',
  FLEET_HOST_ID: "this host's name in labels, logs and the registry (default: hostname)",
  FLEET_HOST_CONCURRENCY: 'worker containers this host runs at once (default: (memory - 2 GiB) / FLEET_WORKER_MEMORY, at least 1)',
  FLEET_GLOBAL_CONCURRENCY: 'containers the whole fleet runs at once; 0 removes the limit (default: leave as set)',
  FLEET_WORKER_IMAGE: 'worker image (default coding-worker:latest)',
  FLEET_RUNTIME: 'Docker runtime of workers (default sysbox-runc; runc where there is no sysbox)',
  FLEET_WORKER_MEMORY: 'memory limit per worker (default 4g)',
  FLEET_WORKER_CPUS: 'CPU limit per worker, e.g. 2 (default: none)',
  FLEET_WORKER_PIDS: 'process limit per worker (default 4096)',
  FLEET_WORKER_LOG_MAX:
    "disk for Docker's own log of one worker container, in two rotated files (default 64m); fleet reads output as it comes",
  FLEET_DOCKER_NETWORK: "Docker network of workers (default: Docker's default)",
  FLEET_DOCKER_HOST: 'Docker daemon (unix:///path or tcp://host:port; default: DOCKER_HOST or the local socket)',
  FLEET_DIND: 'Docker-in-Docker: runtime (from sysbox, default), off, or caps (TEST MACHINES ONLY: extra capabilities, unconfined)',
  FLEET_DIND_CACHE: 'on: each slot keeps a named volume at the inner /var/lib/docker, so images stay for the next job (default off)',
  FLEET_DIND_CACHE_MAX: "a slot's cache volume is emptied when it grows past this (default 20g)",
  FLEET_WARM_POOL:
    'started workers kept waiting for a job, beyond the cap; 0: off (default: what memory holds beyond the cap, 1 to the cap)',
  FLEET_WARM_MAX_IDLE: 'seconds an idle pool worker waits before it is replaced by a fresh one (default 1800)',
  FLEET_WARM_REPOS:
    "owner/name[:count],...: pool workers that wait with that repository already cloned from the host's git mirror and serve only its jobs, beyond FLEET_WARM_POOL (needs FLEET_GIT_CACHE; default none)",
  FLEET_GIT_BASE_URL: 'where repositories are cloned from (default https://github.com)',
  FLEET_GIT_CACHE:
    'off: no host git mirror; on (default): one bare mirror per repository, updated before each clone and mounted read-only into workers',
  FLEET_GIT_CACHE_DIR: 'where the git mirrors live (default FLEET_DATA_DIR/git-mirrors)',
  FLEET_GIT_CACHE_MAX: 'disk all git mirrors may use; the least recently used are removed past it; 0 turns the cache off (default 20g)',
  FLEET_DRAIN_TIMEOUT: 'seconds running workers get on SIGTERM before their jobs go back to the queue (default 300)',
  FLEET_LOCK_DURATION: "seconds a job lock lasts without renewal; a dead host's job is retried after about this (default 30)",
  FLEET_STALLED_INTERVAL: 'seconds between checks for jobs of dead hosts (default 30)',
  FLEET_SPAWN_ATTEMPTS: 'tries of a spawn job when Docker fails transiently (default 3)',
  FLEET_SECRET_KEY: 'key (32+ characters) sealing tokens in Redis; the same on every host (default: generated in FLEET_DATA_DIR)',
  FLEET_GITHUB_TOKEN: 'token used when a request carries none',
  FLEET_REPO_ALLOW: 'repositories this fleet works on: comma-separated owner/name globs (acme/*,tools/cli); unset: any',
  FLEET_GITHUB_API_URL: 'GitHub REST API (default https://api.github.com; GitHub Enterprise: https://HOST/api/v3)',
  FLEET_REVIEWER: 'llm (an OpenAI-compatible model reads the diff, default) or agent (a worker container reviews the branch)',
  FLEET_REVIEWER_GITHUB_TOKEN: "a second account's token for posting reviews (GitHub refuses approving one's own PR)",
  FLEET_GITHUB_APP_ID:
    'numeric ID of the GitHub App whose per-job installation tokens (one repository, contents and pull requests write) jobs use',
  FLEET_GITHUB_APP_PRIVATE_KEY: "the App's private key (PEM; \\n escapes allowed)",
  FLEET_GITHUB_APP_PRIVATE_KEY_FILE: "path of the App's private key (PEM), instead of FLEET_GITHUB_APP_PRIVATE_KEY",
  FLEET_GITHUB_APP_INSTALLATION_ID: "the App's installation id (default: looked up per repository, GET /repos/{owner}/{repo}/installation)",
  FLEET_GITHUB_AUTH:
    "auto (a request's github_token, else the App, else FLEET_GITHUB_TOKEN; default) or app (the App for every job, a request's token unused)",
  FLEET_LLM_BASE_URL: 'OpenAI-compatible API of the llm reviewer (default https://api.openai.com/v1)',
  FLEET_LLM_API_KEY: 'API key of the llm reviewer',
  FLEET_LLM_MODEL: 'model of the llm reviewer (default gpt-4o-mini)',
  FLEET_LLM_MAX_DIFF_CHARS: 'diff characters one review request may carry; larger diffs are split across requests (default 120000)',
  FLEET_LLM_MAX_CHUNKS: 'review requests one pull request may take; a diff that needs more fails with review_incomplete (default 8)',
  FLEET_MERGE_CONFLICT_ROUNDS: 'follow-up workers a conflicting pull request gets before its merge gives up (default 2)',
  FLEET_CI_REQUIRED:
    'checks a merge waits for when branch protection names none: auto (every check on the head), all (those too when protected), none, or a comma list of names (default auto)',
  FLEET_CI_TIMEOUT: 'minutes a merge waits for pending required checks before ci_timeout (default 60)',
  FLEET_CI_POLL_MS: 'first gap between two looks at CI while a merge waits; it doubles up to 2 minutes (default 10000)',
  FLEET_AGENT_CMD: 'command of agent "custom" workers, run with sh -c in the workspace (host setting, never from a request)',
  FLEET_AGENT_CMD_STREAM: 'stream format the custom agent prints: claude, codex, droid, or none (default: no usage, no budgets)',
  FLEET_MAX_COST_USD: 'cost cap in USD of each worker of a request that sets no max_cost_usd (default: none)',
  FLEET_MODEL_PRICES:
    'JSON price table {"model": {"input": 3, "output": 15, "cached": 0.3, "cache_write": 3.75}} in USD per million tokens, over the defaults',
  FACTORY_API_KEY: 'API key given to droid workers',
  ANTHROPIC_API_KEY: 'API key given to claude workers',
  OPENAI_API_KEY: 'API key given to codex workers',
  FLEET_ANTHROPIC_BASE_URL: "Messages API of claude workers (their ANTHROPIC_BASE_URL; a gateway or proxy); default Anthropic's",
  FLEET_OPENAI_BASE_URL:
    "Responses API of codex workers, with /v1 (codex's model provider; a gateway or proxy); default https://api.openai.com/v1",
  FLEET_DROID_MODEL_PROVIDER:
    "droid's custom model API: anthropic, openai (Responses) or generic-chat-completion-api; with the two below, droid runs without FACTORY_API_KEY",
  FLEET_DROID_MODEL_BASE_URL: "base URL of droid's custom model",
  FLEET_DROID_MODEL_API_KEY: "API key of droid's custom model (given to droid workers only)",
  FLEET_DROID_MODEL_MAX_OUTPUT_TOKENS: "maxOutputTokens of droid's custom model (default 16384)",
  FLEET_MODEL_MAP:
    'JSON {"agent or *": {"requested model": "model used"}}: e.g. a retired model to its successor; logged, and model_used in v2 results',
  FLEET_AGENT_MAX_RETRIES: "retries an agent CLI makes on a failed model call (claude, codex; default: the CLI's own)",
  FLEET_BOARD_PORT: 'port of /metrics, /healthz, /readyz and the board (default 3000; 0 picks a free port)',
  FLEET_BOARD_HOST: 'address to listen on (default 127.0.0.1 without board credentials, else 0.0.0.0)',
  FLEET_BOARD_USER: 'board admin user (basic auth)',
  FLEET_BOARD_PASSWORD: 'board admin password',
  FLEET_BOARD_READONLY_USER: 'board read-only user',
  FLEET_BOARD_READONLY_PASSWORD: 'board read-only password',
  FLEET_LOG_LEVEL: 'fatal, error, warn, info (default), debug, trace or silent',
  FLEET_JOB_LOG_LINES: 'job log entries kept per job for the board (default 2000)',
  FLEET_LOG_FORMAT: 'log lines: auto (pretty and coloured on a terminal, JSON otherwise), json, or pretty (default auto)',
  FLEET_WEBHOOK_SECRET: 'secret of the GitHub webhook, 16+ characters; required by the webhook role',
  FLEET_TRIGGER_LABEL: 'label that turns an issue into a pull request request, for the webhook role (default fleet)',
  FLEET_TRIGGER_WORD: 'word that starts an instruction in an issue or pull request comment, for the webhook role (default @fleet)',
  FLEET_EGRESS:
    "proxy (default): workers run on network none and reach out only through this host's allowlisting proxy and credential broker; open: Docker's network, the token inside",
  FLEET_EGRESS_ALLOW:
    'what workers may reach (proxy mode): comma-separated presets (github, npm, pypi, debian, anthropic, openai, factory, docker) and hosts, *.domain, host:port (default: the seven named presets)',
  FLEET_EGRESS_REQUEST_ALLOW: "presets and hosts a request's egress.allow may add beyond FLEET_EGRESS_ALLOW (default: none)",
  FLEET_EGRESS_METHODS:
    "all (default) or read: GET and HEAD only (plain HTTP; tunnels refused; the model APIs and the fleet's own git traffic exempt)",
  OTEL_EXPORTER_OTLP_ENDPOINT:
    'OTLP/HTTP collector (e.g. http://127.0.0.1:4318): one trace per request to <endpoint>/v1/traces (default: unset, tracing off)',
  OTEL_SERVICE_NAME: 'service.name of the spans (default fleet)',
  OTEL_BSP_SCHEDULE_DELAY: 'milliseconds between two span exports (default 5000)',
};

const width = Math.max(...SETTINGS.map((s) => s.length));
export const SETTINGS_HELP = SETTINGS.map((s) => `  ${s.padEnd(width)}  ${SETTING_DESCRIPTIONS[s] ?? ''}`).join('\n');
