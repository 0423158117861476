import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, ROLES, type Role } from '../config.ts';
import { AVAILABLE_ROLES, startFleet } from '../fleet.ts';
import { createDockerRuntime } from '../docker-runtime.ts';
import { createLogger } from '../logger.ts';
import { ensureWorkerImage } from '../worker-image-setup.ts';
import { UsageError, type Command } from './command.ts';
import { registerOperationsCommands } from './commands.ts';
import { SETTINGS_HELP } from './settings-help.ts';

const commands: Record<string, Command> = {
  start: {
    summary: 'run fleet roles in this process until SIGTERM/SIGINT',
    usage: 'fleet start [--roles bridge,spawn,...]',
    help: `Runs the chosen roles in one process (default: every available role: ${AVAILABLE_ROLES.join(', ')}).
Each role also runs alone: add capacity by starting \`fleet start --roles spawn\` on more hosts.

Options:
  --roles LIST   comma-separated roles out of: ${ROLES.join(', ')}

With REDIS_URL unset, fleet runs its own redis-server (AOF under FLEET_DATA_DIR) and stops it on exit.
SIGTERM or SIGINT drains: no new jobs; running workers get FLEET_DRAIN_TIMEOUT, then their jobs
go back to the queue for another host. A second signal stops at once.

Settings (environment variables):
${SETTINGS_HELP}`,
    async run(args) {
      const { values } = parseArgs({ args, options: { roles: { type: 'string' } }, strict: true });
      const roles = parseRoles(values.roles);
      const config = loadConfig();
      const logger = createLogger({ level: config.logLevel });
      // First start: a spawn host without its worker image builds it here, or says which command to run.
      if (roles.includes('spawn')) {
        const runtime = createDockerRuntime({ dockerHost: config.dockerHost });
        await ensureWorkerImage({ runtime, image: config.worker.image, logger });
      }
      const fleet = await startFleet({ config, roles, logger });
      await new Promise<void>((resolve) => {
        let stopping = false;
        const onSignal = (signal: string) => {
          if (stopping) {
            logger.warn({ signal }, 'second signal: exiting now');
            process.exit(130);
          }
          stopping = true;
          logger.info({ signal }, 'stopping: draining');
          fleet.stop().then(resolve, (error) => {
            logger.error({ err: error }, 'stop failed');
            resolve();
          });
        };
        process.on('SIGTERM', () => onSignal('SIGTERM'));
        process.on('SIGINT', () => onSignal('SIGINT'));
      });
      logger.info('fleet stopped');
      return 0;
    },
  },
};

/** Lets other modules (the ops commands) add theirs without this file knowing them. */
export function registerCommand(name: string, command: Command) {
  commands[name] = command;
}

function parseRoles(text: string | undefined): Role[] {
  if (text === undefined) return [...AVAILABLE_ROLES];
  const roles = text
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  const bad = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
  if (bad.length || roles.length === 0) {
    throw new UsageError(`--roles: ${bad.length ? `unknown role ${bad.join(', ')}` : 'no role given'}; choose from ${ROLES.join(', ')}`);
  }
  return [...new Set(roles)] as Role[];
}

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return `fleet: a BullMQ worker fleet that runs AI coding agents in Docker containers

Usage: fleet <command> [options]     fleet <command> --help for details

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}
`;
}

export async function main(argv: string[]): Promise<number> {
  registerOperationsCommands(registerCommand);
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`fleet: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`Usage: ${command.usage}\n\n${command.help}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    const e = error as Error & { code?: string };
    if (e instanceof UsageError || e instanceof ConfigError || e.code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`fleet ${name}: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`fleet ${name}: ${e.message}\n`);
    return 1;
  }
}
