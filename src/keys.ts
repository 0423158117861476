/**
 * fleet's own Redis keys and channels (the protocol's live in protocol.ts). All start with the
 * BullMQ prefix, so `{fleet}` keeps them in one Redis Cluster slot with the queues.
 */
export function fleetKeys(prefix: string) {
  return {
    /** Set when a cancel arrives, so a job that starts later (or on a host that missed the broadcast) stops. */
    cancelled: (requestId: string) => `${prefix}:cancelled:${requestId}`,
    /** Bounded list of messages the bridge could not accept. */
    rejected: `${prefix}:rejected`,
    /** Hash: host id → JSON heartbeat record. */
    hosts: `${prefix}:hosts`,
    /** Hash: host id → when an operator drained it. A drained host takes no jobs, across restarts too. */
    drained: `${prefix}:drained`,
    /** Claimed once per flow request: a flow has no single job id BullMQ could deduplicate on. */
    flowClaim: (requestId: string) => `${prefix}:flow:${requestId}`,
    /** Hash: bridge id → JSON record of its subscriber (subscribed, drops, inbox), for `fleet status`. */
    bridges: `${prefix}:bridges`,
    /** Stream: the durable intake (README "Bursts"); bridges consume it with the group INTAKE_GROUP. */
    intake: `${prefix}:intake`,
    /** Broadcasts between fleet processes: cancel a running job, drain a host. */
    control: `${prefix}:control`,
    /** Held while one merge of a repository runs: merges of one repository go one at a time, fleet-wide. */
    mergeLock: (repo: string) => `${prefix}:merge-lock:${repo.toLowerCase()}`,
    /** Bottleneck's clustered limiter of one token's calls of one kind (its own keys start here). */
    githubLimiter: (kind: string, tokenId: string) => `${prefix}:gh:${kind}:${tokenId}`,
    /** One token's last seen GitHub budget of one resource. */
    githubBudget: (tokenId: string, resource: string) => `${prefix}:gh:budget:${tokenId}:${resource}`,
    /** Alive while a warm pool instance (src/warm-pool.ts) runs; its containers are orphans once it expires. */
    warmPool: (instance: string) => `${prefix}:warm:${instance}`,
    /** BullMQ's own hash of a job: fleet reads it (a child's end, a job's lock), never writes it. */
    bullJob: (queue: string, jobId: string) => `${prefix}:${queue}:${jobId}`,
    bullJobLock: (queue: string, jobId: string) => `${prefix}:${queue}:${jobId}:lock`,
    /** Set NX with a TTL per GitHub delivery id: a redelivered delivery finds it and is ignored. */
    webhookDelivery: (deliveryId: string) => `${prefix}:webhook:delivery:${deliveryId}`,
    /** Hash: request id → JSON {repo, number} of the issue or pull request its outcome is posted on. */
    webhookPending: `${prefix}:webhook:pending`,
    /** Claimed once per request: of several webhook hosts, one posts the outcome comment. */
    webhookAnswered: (requestId: string) => `${prefix}:webhook:answered:${requestId}`,
  };
}
export type FleetKeys = ReturnType<typeof fleetKeys>;

export const REJECTED_KEEP = 1000;
/** The consumer group of the durable intake stream: every bridge joins it, so each entry goes to one. */
export const INTAKE_GROUP = 'bridge';
export const CANCEL_TTL_SECONDS = 24 * 60 * 60;
