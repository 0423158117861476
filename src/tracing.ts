/**
 * OpenTelemetry: one trace per request, from the bridge's receive through BullMQ's own spans (its `telemetry`
 * option: add, process, complete), the container's create, start and run, the review and merge steps, to the
 * published result. Exported over OTLP/HTTP (JSON) when OTEL_EXPORTER_OTLP_ENDPOINT is set. Unset, no SDK is
 * started and BullMQ gets no telemetry option: the OpenTelemetry API calls below are its no-ops.
 */
import { context, INVALID_SPAN_CONTEXT, propagation, SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api';
import type { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { BullMQOtel } from 'bullmq-otel';
import { FLEET_VERSION } from './host-registry.ts';

const TRACER_NAME = 'fleet';

/** The process's tracing, once started; one provider per process, however many fleets a test starts in it. */
let started: { provider: NodeTracerProvider; telemetry: BullMQOtel; endpoint: string } | undefined;

export interface Tracing {
  /** Sends every span ended so far (fleet's stop calls it, so a stopping host loses no spans). */
  flush(): Promise<void>;
}

/**
 * Starts the OpenTelemetry SDK when `config.tracing.endpoint` is set and registers it as the global provider
 * (with the W3C trace-context propagator and an AsyncLocalStorage context manager); null when tracing is off.
 */
export interface TracingSettings {
  /** OTEL_EXPORTER_OTLP_ENDPOINT; null: tracing off. */
  endpoint: string | null;
  serviceName: string;
  scheduleDelayMs: number;
}

/** `config.tracing` of FleetConfig (src/config.ts reads src/flow, which traces: no import back to it). */
export async function startTracing(config: { tracing: TracingSettings }): Promise<Tracing | null> {
  const { endpoint, serviceName, scheduleDelayMs } = config.tracing;
  if (!endpoint) return null;
  if (started && started.endpoint !== endpoint)
    throw new Error(`tracing already exports to ${started.endpoint}; one process exports to one OTEL_EXPORTER_OTLP_ENDPOINT`);
  if (!started) {
    // Loaded only here: a fleet (or a CLI command) without tracing does not even load the SDK.
    const [{ OTLPTraceExporter }, { resourceFromAttributes }, { BatchSpanProcessor }, { NodeTracerProvider }, { BullMQOtel }] =
      await Promise.all([
        import('@opentelemetry/exporter-trace-otlp-http'),
        import('@opentelemetry/resources'),
        import('@opentelemetry/sdk-trace-base'),
        import('@opentelemetry/sdk-trace-node'),
        import('bullmq-otel'),
      ]);
    // Two fleets started at once in one process (tests) share the provider the first of them made.
    if (started) return { flush: () => started!.provider.forceFlush() };
    const exporter = new OTLPTraceExporter({ url: `${endpoint.replace(/\/+$/, '')}/v1/traces` });
    const provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ 'service.name': serviceName, 'service.version': FLEET_VERSION }),
      spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: scheduleDelayMs })],
    });
    provider.register();
    started = { provider, telemetry: new BullMQOtel({ tracerName: 'bullmq', version: FLEET_VERSION }), endpoint };
  }
  const { provider } = started!;
  return { flush: () => provider.forceFlush() };
}

/** BullMQ's option for a Queue, Worker or FlowProducer: `{telemetry}` while tracing runs, else nothing. */
export function bullTelemetry(): { telemetry?: BullMQOtel } {
  return started ? { telemetry: started.telemetry } : {};
}

/** The trace the code runs in, or undefined (tracing off, or outside any span). */
export function currentTraceId(): string | undefined {
  const span = trace.getActiveSpan();
  return span?.spanContext().traceId;
}

/** The W3C `traceparent` of the active span, for a worker container's agent CLI to join the trace; undefined when off. */
export function currentTraceparent(): string | undefined {
  if (!trace.getActiveSpan()) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/**
 * Runs `body` in a span named `name` (a child of the active span), ending it when `body` settles and recording a
 * thrown error. Tracing off: `body` runs as it is, with OpenTelemetry's no-op span.
 */
export function inSpan<T>(
  name: string,
  attributes: Attributes,
  body: (span: Span) => Promise<T>,
  options: { /** Starts a new trace (a request's first span), whatever is active. */ root?: boolean } = {},
): Promise<T> {
  if (!started) return body(trace.wrapSpanContext(INVALID_SPAN_CONTEXT));
  return trace.getTracer(TRACER_NAME).startActiveSpan(name, { attributes, root: options.root }, async (span) => {
    try {
      return await body(span);
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** Times the container's start in a span of its own (the run's child), mutating `container`; tracing off: unchanged. */
export function traceStart<T extends { start(): Promise<void> }>(container: T): T {
  if (!started) return container;
  const start = container.start.bind(container);
  container.start = () => inSpan('container start', {}, start);
  return container;
}
