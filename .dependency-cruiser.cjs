/**
 * The layers fleet's imports follow, one way only (README "Architecture"):
 *   src/protocol.ts  <-  queues/  <-  processors/  <-  src/roles/  <-  src/fleet.ts  <-  src/cli/, bin/
 * with the rest of src/ (flow, results, runtime, GitHub, reviewer, ...) as the library processors use.
 * `npm run lint` fails on any cycle and on any import against these arrows.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'modules that import each other cannot be read or tested alone',
      from: {},
      to: { circular: true },
    },
    {
      name: 'queues-depend-on-protocol-only',
      severity: 'error',
      comment: 'a queue owns its payload types; it may use the wire contract and its sibling queues, nothing of fleet above them',
      from: { path: '^queues/' },
      to: { path: '^(src|processors|board|bin|test)/', pathNot: '^src/protocol\\.ts$' },
    },
    {
      name: 'processors-below-roles',
      severity: 'error',
      comment: 'a processor is a function of (job, deps); roles wire it to a Worker, never the other way',
      from: { path: '^processors/' },
      to: { path: '^(src/roles/|src/fleet\\.ts|src/cli/|src/index\\.ts|board/|bin/)' },
    },
    {
      name: 'library-below-processors',
      severity: 'error',
      comment: 'the library under src/ serves processors and roles; it never reaches up into them',
      from: { path: '^src/', pathNot: '^src/(roles/|fleet\\.ts|cli/|index\\.ts)' },
      to: { path: '^(processors/|src/roles/|src/fleet\\.ts|src/cli/|src/index\\.ts|board/|bin/)' },
    },
    {
      name: 'roles-below-fleet',
      severity: 'error',
      from: { path: '^src/roles/' },
      to: { path: '^(src/fleet\\.ts|src/cli/|src/index\\.ts|bin/)' },
    },
    {
      name: 'fleet-below-cli',
      severity: 'error',
      from: { path: '^(src/fleet\\.ts|board/)' },
      to: { path: '^(src/cli/|src/index\\.ts|bin/)' },
    },
    {
      name: 'no-tests-in-product',
      severity: 'error',
      from: { path: '^(src|processors|queues|board|bin)/' },
      to: { path: '^test/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^node_modules' },
  },
};
