/**
 * Typed Node.js publisher for sse-bridge, the same shape as the Python one.
 *
 * ```ts
 * import { Publisher, events, create } from "@sse-bridge/publisher";
 * const pub = new Publisher("http://127.0.0.1:50051", token);
 * const { id } = await pub.publish(
 *   `scans:${tenant}:scan-1`,
 *   create(events.ScanProgressSchema, { scanId, checked: 3, total: 10 }),
 * );
 * pub.close();
 * ```
 *
 * The messages are generated from proto/ by protobuf-es (`npm run
 * generate`); calls go over gRPC (HTTP/2) with connect-node.
 */
import { create, getOption, type Message } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { EventSchema, type Event } from "./gen/events/v1/events_pb.js";
import { prefix as prefixOption } from "./gen/ssebridge/v1/options_pb.js";
import {
  ChannelSchema,
  DisconnectRequestSchema,
  PublishRequestSchema,
  Publisher as PublisherService,
  type Channel,
  type PublishRequest,
} from "./gen/ssebridge/v1/publisher_pb.js";

export * as events from "./gen/events/v1/events_pb.js";
export { create } from "@bufbuild/protobuf";
export { Code } from "@connectrpc/connect";

/** `"prefix:tenant:resource"`, its three parts, or a `Channel` message. */
export type ChannelLike = string | [string, string, string] | Channel;

/** One broken rule: the field's path and what is wrong. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** An accepted publish. */
export interface PublishResult {
  /** The event's stream id: its SSE `id:` on a one-channel stream. */
  id: string;
  /** True when the idempotency key had been seen and nothing was published again. */
  duplicate: boolean;
}

/** A rejected publish, with the gRPC status and the offending fields. */
export class PublishError extends Error {
  constructor(
    /** The gRPC status, e.g. `Code.InvalidArgument`. */
    readonly code: Code,
    readonly detail: string,
    readonly violations: FieldViolation[] = [],
  ) {
    const lines = [`${Code[code]}: ${detail}`];
    // The bridge's message names each violation; list only those it left out.
    for (const v of violations) {
      const line = `${v.field}: ${v.description}`;
      if (!detail.includes(line)) lines.push(`  ${line}`);
    }
    super(lines.join("\n"));
    this.name = "PublishError";
  }

  /** True when publishing again (with the same idempotency key) may work. */
  get retryable(): boolean {
    return this.code === Code.Unavailable;
  }

  static from(error: unknown): PublishError {
    const e = ConnectError.from(error);
    const violations: FieldViolation[] = [];
    for (const d of e.details) {
      // Details tonic sent arrive undecoded: a type name and the bytes.
      if ("type" in d && d.type === "google.rpc.BadRequest" && d.value instanceof Uint8Array) {
        violations.push(...badRequest(d.value));
      }
    }
    return new PublishError(e.code, e.rawMessage, violations);
  }
}

/** google.rpc.BadRequest's field violations, read from its wire form. */
function badRequest(bytes: Uint8Array): FieldViolation[] {
  const out: FieldViolation[] = [];
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field !== 1) {
      r.skip(wire);
      continue;
    }
    const v = new BinaryReader(r.bytes());
    const one = { field: "", description: "" };
    while (v.pos < v.len) {
      const [f, w] = v.tag();
      if (f === 1) one.field = v.string();
      else if (f === 2) one.description = v.string();
      else v.skip(w);
    }
    out.push(one);
  }
  return out;
}

export function toChannel(channel: ChannelLike): Channel {
  if (typeof channel === "string") {
    const parts = channel.split(":");
    if (parts.length !== 3) {
      throw new TypeError(`channel must be '<prefix>:<tenant_id>:<resource_id>', got ${JSON.stringify(channel)}`);
    }
    channel = [parts[0], parts[1], parts[2]];
  }
  if (Array.isArray(channel)) {
    const [prefix, tenantId, resourceId] = channel;
    return create(ChannelSchema, { prefix, tenantId, resourceId });
  }
  return channel;
}

/** Wraps a payload message (e.g. a `ScanProgress`) in the `Event` envelope. */
export function toEvent(event: Message): Event {
  if (event.$typeName === EventSchema.typeName) return event as Event;
  for (const f of EventSchema.fields) {
    if (f.message?.typeName === event.$typeName) {
      return create(EventSchema, { payload: { case: f.localName, value: event } as Event["payload"] });
    }
  }
  throw new TypeError(`${event.$typeName} is not an event of the catalogue`);
}

/** The channel prefixes the catalogue declares for `event`'s payload. */
export function prefixesOf(event: Event): string[] {
  const member = EventSchema.fields.find((f) => f.localName === event.payload.case);
  return member?.message ? getOption(member.message, prefixOption) : [];
}

/** `http://host:port` (the CLI's `--target`), `https://…`, or `host:port`. */
function baseUrl(target: string): string {
  const bad = () =>
    new TypeError(
      `bad target ${JSON.stringify(target)}: expected the bridge's gRPC address, e.g. http://127.0.0.1:50051, https://bridge.example.com:443 or 127.0.0.1:50051`,
    );
  const withScheme = /^[a-z]+:\/\//.test(target) ? target : `http://${target}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw bad();
  }
  if (!["http:", "https:"].includes(url.protocol) || !url.host || (url.pathname !== "/" && url.pathname !== "")) throw bad();
  return `${url.protocol}//${url.host}`;
}

export interface PublisherOptions {
  /** Per-call deadline in milliseconds (default 10 s). */
  timeoutMs?: number;
}

/** Publishes typed events to a bridge over gRPC. */
export class Publisher {
  private readonly client: Client<typeof PublisherService>;
  private readonly timeoutMs: number;

  constructor(target: string, token: string, options: PublisherOptions = {}) {
    const bearer: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    const transport = createGrpcTransport({
      baseUrl: baseUrl(target),
      interceptors: [bearer],
      // Idle connections close by themselves, so a script's process ends.
      idleConnectionTimeoutMs: 2000,
    });
    this.client = createClient(PublisherService, transport);
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /**
   * The request for one publish. Throws a `TypeError` when the event may not
   * go to the channel's prefix: the bridge would refuse it the same way
   * (`INVALID_ARGUMENT` on `channel.prefix`).
   */
  static request(channel: ChannelLike, event: Message, idempotencyKey = ""): PublishRequest {
    const ch = toChannel(channel);
    const ev = toEvent(event);
    const allowed = prefixesOf(ev);
    if (allowed.length && !allowed.includes(ch.prefix)) {
      throw new TypeError(
        `${ev.payload.case}: may be published to channels with prefix ${allowed.map((p) => `\`${p}\``).join(", ")}; got \`${ch.prefix}\``,
      );
    }
    return create(PublishRequestSchema, { channel: ch, event: ev, idempotencyKey });
  }

  /** Publishes one event; throws `PublishError` when it is rejected. */
  async publish(channel: ChannelLike, event: Message, options: { idempotencyKey?: string } = {}): Promise<PublishResult> {
    const request = Publisher.request(channel, event, options.idempotencyKey);
    try {
      const r = await this.client.publish(request, { timeoutMs: this.timeoutMs });
      return { id: r.id, duplicate: r.duplicate };
    } catch (e) {
      throw PublishError.from(e);
    }
  }

  /**
   * Publishes `[channel, event, idempotencyKey?]` items over one stream.
   * Yields one outcome per item, in order: a `PublishResult`, or a
   * `PublishError` for an item that was rejected (the stream goes on).
   * Throws `PublishError` if the stream itself fails (e.g. a bad token).
   */
  async *publishStream(
    items: Iterable<[ChannelLike, Message, string?]> | AsyncIterable<[ChannelLike, Message, string?]>,
  ): AsyncGenerator<PublishResult | PublishError> {
    async function* requests() {
      for await (const [channel, event, key] of items) yield Publisher.request(channel, event, key);
    }
    try {
      for await (const r of this.client.publishStream(requests())) {
        if (r.error) {
          yield new PublishError(
            r.error.code as Code,
            r.error.message,
            r.error.violations.map((v) => ({ field: v.field, description: v.description })),
          );
        } else {
          yield { id: r.id, duplicate: r.duplicate };
        }
      }
    } catch (e) {
      throw PublishError.from(e);
    }
  }

  /**
   * Closes streams on every node; returns how many nodes the order reached.
   * Give exactly one target. The token needs scope `streams:admin`.
   */
  async disconnect(
    target: { tenant: string } | { subject: string; subjectTenant?: string } | { channel: ChannelLike },
    reason = "",
  ): Promise<number> {
    const request = create(DisconnectRequestSchema, { reason });
    if ("tenant" in target) request.target = { case: "tenantId", value: target.tenant };
    else if ("subject" in target) {
      request.target = { case: "subject", value: { $typeName: "ssebridge.v1.SubjectTarget", subject: target.subject, tenantId: target.subjectTenant ?? "" } };
    } else request.target = { case: "channel", value: toChannel(target.channel) };
    try {
      const r = await this.client.disconnect(request, { timeoutMs: this.timeoutMs });
      return Number(r.nodes);
    } catch (e) {
      throw PublishError.from(e);
    }
  }
}
