import type { Command } from './main.ts';

/** The operator commands beside `start` (spawn, cancel, status, drain, reap). */
export function registerOperationsCommands(register: (name: string, command: Command) => void): void {
  void register;
}
