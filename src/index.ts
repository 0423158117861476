/** The package's public API: the durable client, the wire types, config and the fleet runner. */
export { FleetClient, ResultTimeoutError, type FleetClientOptions } from './client.ts';
export {
  channels,
  LEGACY_RESULT_KEYS,
  spawnRequestSchema,
  type SpawnRequest,
  type SpawnRequestInput,
  type SpawnResult,
  type FleetEvent,
  type ContainerEvent,
} from './protocol.ts';
export { loadConfig, ConfigError, type FleetConfig, type Role } from './config.ts';
export { startFleet, type RunningFleet } from './fleet.ts';
export { FleetError, InvalidRequestError, SpawnError, SecretMismatchError } from './errors.ts';
export { QUEUE_NAMES } from '../queues/common.ts';
export type { SpawnJobData, SpawnJobResult } from '../queues/spawn.ts';
