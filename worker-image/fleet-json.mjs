// fleet-json: the JSON work of fleet-worker, which keeps the stage plumbing in bash. Reads stdin, writes
// one compact JSON value to stdout. No dependencies: it runs on the image's node as root.
//
//   verdict AGENT MAX_BYTES     stdin: the agent's output. The agent's final answer (see finalAnswer),
//                               and the last JSON object in it with a boolean "approved", cut to
//                               MAX_BYTES: comments dropped from the end, then the feedback shortened.
//                               Exit 3 when there is none.
//   failed TYPE MESSAGE MAX_BYTES
//                               stdin: the log tail. The body of a `failed` event whose line
//                               (`::fleet-event:: ` + JSON) stays within MAX_BYTES: the tail is cut
//                               from the front until it fits.
//
// Exit 2: bad usage.
import { readFileSync } from 'node:fs';

const EVENT_PREFIX = '::fleet-event:: ';
const MAX_MESSAGE_CHARS = 2000;
const MAX_TRIES = 5000;

const bytes = (value) => Buffer.byteLength(JSON.stringify(value), 'utf8');
const isVerdict = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && typeof v.approved === 'boolean';

function usage(message) {
  process.stderr.write(`fleet-json: ${message}\n`);
  process.exit(2);
}

function positiveInt(text, name) {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) usage(`${name} must be a positive integer, not '${text}'`);
  return n;
}

/** From the last "{" backwards: the first balanced object (strings respected) that parses as a verdict. */
function findVerdict(text) {
  let tries = 0;
  for (let start = text.lastIndexOf('{'); start >= 0 && tries < MAX_TRIES; start = text.lastIndexOf('{', start - 1), tries++) {
    let depth = 0;
    let inString = false;
    let escaped = false;
    let end = -1;
    for (let i = start; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (c === '\\') escaped = true;
        else if (c === '"') inString = false;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === '{') depth++;
      else if (c === '}' && --depth === 0) {
        end = i;
        break;
      }
    }
    if (end < 0) continue;
    try {
      const value = JSON.parse(text.slice(start, end + 1));
      if (isVerdict(value)) return value;
    } catch {
      // not JSON: an earlier "{" may start the object
    }
  }
  return undefined;
}

/** The JSON objects of the lines of a stream; a line that is not one (stderr, a line cut by `tail`) is skipped. */
function* streamObjects(text) {
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const value = JSON.parse(line);
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) yield value;
    } catch {
      // not one JSON object: skipped
    }
  }
}

/**
 * The agent's own final message, as its CLI's JSON stream reports it: claude's last `result` line,
 * codex's last completed `agent_message` item, droid's last `completion`. Text a tool printed, a file
 * the agent read or an earlier message never counts. A custom agent prints plain text: all of it.
 * undefined when the stream holds no final message.
 */
function finalAnswer(agent, text) {
  const pick = {
    claude: (o) => (o.type === 'result' && typeof o.result === 'string' ? o.result : undefined),
    codex: (o) =>
      o.type === 'item.completed' && o.item?.type === 'agent_message' && typeof o.item.text === 'string' ? o.item.text : undefined,
    droid: (o) => (o.type === 'completion' && typeof o.finalText === 'string' ? o.finalText : undefined),
  }[agent];
  if (agent === 'custom') return text;
  if (!pick) usage(`unknown agent '${agent}' (droid, claude, codex, custom)`);
  let last;
  for (const o of streamObjects(text)) last = pick(o) ?? last;
  return last;
}

/** The verdict within maxBytes: comments dropped from the end first, then the feedback cut. */
function fitVerdict(verdict, maxBytes) {
  let v = { ...verdict };
  if (Array.isArray(v.comments)) {
    v.comments = [...v.comments];
    while (bytes(v) > maxBytes && v.comments.length > 0) v.comments.pop();
  }
  if (bytes(v) > maxBytes) v.feedback = `${String(v.feedback ?? '').slice(0, MAX_MESSAGE_CHARS)} … (cut to fit)`;
  if (bytes(v) > maxBytes) v = { approved: v.approved, feedback: v.feedback };
  if (bytes(v) > maxBytes) v = { approved: v.approved, feedback: '(cut to fit)' };
  return v;
}

/** A failed event body whose event line fits maxBytes; the log tail loses its oldest part first. */
function failedEvent(type, message, tail, maxBytes) {
  const event = (logs) => ({ event_type: 'failed', error_type: type, error_message: message.slice(0, MAX_MESSAGE_CHARS), logs_tail: logs });
  const fits = (start) => Buffer.byteLength(EVENT_PREFIX, 'utf8') + bytes(event(tail.slice(start))) <= maxBytes;
  // The line shrinks as the start moves right: the smallest start that fits, by bisection.
  let lo = 0;
  let hi = tail.length;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) hi = mid;
    else lo = mid + 1;
  }
  return event(tail.slice(lo));
}

function main(argv) {
  const [command, ...args] = argv;
  const input = () => readFileSync(0);
  switch (command) {
    case 'verdict': {
      if (args.length !== 2) usage('usage: verdict AGENT MAX_BYTES');
      const max = positiveInt(args[1], 'MAX_BYTES');
      const answer = finalAnswer(args[0], input().toString('utf8'));
      const verdict = answer === undefined ? undefined : findVerdict(answer);
      if (!verdict) process.exit(3);
      return fitVerdict(verdict, max);
    }
    case 'failed': {
      if (args.length !== 3) usage('usage: failed TYPE MESSAGE MAX_BYTES');
      return failedEvent(args[0], args[1], input().toString('utf8'), positiveInt(args[2], 'MAX_BYTES'));
    }
    default:
      return usage(`unknown command '${command ?? ''}' (verdict, failed)`);
  }
}

process.stdout.write(`${JSON.stringify(main(process.argv.slice(2)))}\n`);
