/**
 * What a tool call means, in a few words for a progress event: "editing src/app.ts", "running npm test".
 * The tool names are those of the three CLIs (claude: Write/Edit/Bash…, droid: Create/Edit/Execute/
 * ApplyPatch…, codex: its item types); an unknown tool is "using <name>".
 */
import { isObject, oneLine, shortPath, str } from './text.ts';

const PATCH_FILE = /^\*\*\* (?:Update|Add|Delete) File: (.+)$/m;

function pathOf(input: Record<string, unknown>): string | undefined {
  const path = str(input.file_path) ?? str(input.path) ?? str(input.notebook_path) ?? str(input.filePath);
  if (path) return shortPath(path);
  const patch = str(input.patch) ?? str(input.input);
  const match = patch ? PATCH_FILE.exec(patch) : null;
  return match ? shortPath(match[1]!) : undefined;
}

const commandText = (command: unknown): string | undefined =>
  typeof command === 'string' ? command : Array.isArray(command) ? command.filter((c) => typeof c === 'string').join(' ') : undefined;

/** A few words on a tool call; `input` is the call's arguments as the stream gave them. */
export function describeTool(name: string, input: unknown): string {
  const args = isObject(input) ? input : {};
  const path = pathOf(args);
  const on = (verb: string, what: string | undefined) => (what ? `${verb} ${what}` : verb);
  switch (name) {
    case 'Write':
    case 'Create':
      return on('writing', path);
    case 'Edit':
    case 'MultiEdit':
    case 'NotebookEdit':
    case 'ApplyPatch':
    case 'apply_patch':
      return on('editing', path);
    case 'Read':
    case 'View':
      return on('reading', path);
    case 'Bash':
    case 'Execute':
    case 'exec_command':
    case 'shell':
      return on('running', oneLine(commandText(args.command) ?? commandText(args.cmd) ?? '', 100) || undefined);
    case 'Grep':
    case 'Glob':
      return on('searching', oneLine(str(args.pattern) ?? '', 80) || undefined);
    case 'LS':
      return on('listing', path ?? (str(args.directory_path) ? shortPath(str(args.directory_path)!) : undefined));
    case 'WebFetch':
    case 'FetchUrl':
      return on('fetching', oneLine(str(args.url) ?? '', 100) || undefined);
    case 'WebSearch':
      return on('searching the web for', oneLine(str(args.query) ?? '', 80) || undefined);
    case 'TodoWrite':
      return 'updating its plan';
    case 'Task':
    case 'Agent':
      return on('delegating:', oneLine(str(args.description) ?? '', 80) || undefined);
    default:
      return `using ${oneLine(name, 60)}`;
  }
}
