#!/usr/bin/env node
// fleet ships TypeScript sources; tsx compiles them on the fly so `npx fleet` works right after `npm ci`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
