/**
 * Typed browser client for sse-bridge.
 *
 * ```ts
 * import { subscribe, channel } from "@sse-bridge/client";
 * const stream = subscribe({
 *   url: "https://push.example.com",
 *   channels: [channel("scans", tenantId, scanId)],
 *   token: () => fetch("/api/push-token").then((r) => r.text()),
 * });
 * stream.on("scan.progress", (p) => bar.update(p.checked / p.total)); // p: ScanProgress
 * stream.onReset((channels) => refetch(channels));
 * ```
 */
import { PREFIXES } from "./events.js";
import type { EventMap, EventName, Prefix, PrefixEvents } from "./events.js";

export * from "./events.js";

const PREFIX = /^[a-z][a-z0-9-]{0,62}$/;
const TENANT = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const RESOURCE = /^[A-Za-z0-9._~-]{1,128}$/;

/** A channel's three parts. */
export interface ChannelParts {
  prefix: string;
  tenantId: string;
  resourceId: string;
}

/**
 * A channel name that carries its prefix in its type, so a stream over it
 * offers only the events declared for that prefix. Still a string.
 */
export type Channel<P extends Prefix = Prefix> = string & { readonly __prefix?: P };

/**
 * Builds `<prefix>:<tenant_id>:<resource_id>`, rejecting what the bridge
 * would reject, a prefix that no event declares included.
 */
export function channel<P extends Prefix>(prefix: P, tenantId: string, resourceId: string): Channel<P> {
  if (!PREFIX.test(prefix)) throw new Error(`bad channel prefix ${JSON.stringify(prefix)}`);
  if (!(PREFIXES as readonly string[]).includes(prefix)) {
    throw new Error(`no event is declared for channel prefix ${JSON.stringify(prefix)}; the declared prefixes are ${PREFIXES.join(", ")}`);
  }
  if (!TENANT.test(tenantId)) throw new Error(`bad channel tenant ${JSON.stringify(tenantId)}`);
  if (!RESOURCE.test(resourceId)) throw new Error(`bad channel resource ${JSON.stringify(resourceId)}`);
  return `${prefix}:${tenantId.toLowerCase()}:${resourceId}`;
}

/** Splits a channel name into its parts; throws on a malformed one. */
export function parseChannel(name: string): ChannelParts {
  const parts = name.split(":");
  if (parts.length !== 3) throw new Error(`channel must have three parts: ${JSON.stringify(name)}`);
  const [prefix, tenantId, resourceId] = parts;
  channel(prefix as Prefix, tenantId, resourceId);
  return { prefix, tenantId: tenantId.toLowerCase(), resourceId };
}

/** Where and how a stream connects. */
export interface StreamOptions<P extends Prefix = Prefix> {
  /** Base URL of the bridge's HTTP listener, e.g. `https://push.example.com`. */
  url: string;
  /** Made with `channel()`, the stream's `on()` offers only their prefixes' events. */
  channels: Channel<P>[];
  /** Returns a fresh subscriber JWT; called at open, on `bridge.expired` and when a reconnect is refused. */
  token: () => string | Promise<string>;
  /** Resume after this cursor instead of starting live. */
  lastEventId?: string;
  /** Delay before reopening after a refused connection, in ms (doubles up to 30 s). */
  retryDelayMs?: number;
  /** An `EventSource` implementation, for environments without a global one. */
  EventSource?: typeof EventSource;
}

/** Metadata of a delivered event. */
export interface EventMeta<K extends EventName = EventName> {
  event: K;
  /** The stream cursor after this event. */
  id: string;
}

type Handler = (payload: unknown, meta: EventMeta) => void;

/** Builds the stream URL. The token goes in the query because `EventSource` cannot set headers. */
export function streamUrl(base: string, channels: string[], token: string, lastEventId?: string): string {
  const url = new URL("/v1/events", base);
  for (const c of channels) url.searchParams.append("channel", c);
  url.searchParams.set("access_token", token);
  if (lastEventId) url.searchParams.set("last_event_id", lastEventId);
  return url.toString();
}

/** A live, resumable, typed stream of events. */
export class BridgeStream<P extends Prefix = Prefix> {
  private source: EventSource | null = null;
  private handlers = new Map<string, Set<Handler>>();
  private resetHandlers = new Set<(channels: string[], reason: string) => void>();
  private errorHandlers = new Set<(error: unknown) => void>();
  private revokedHandlers = new Set<(reason: string) => void>();
  private cursor: string | undefined;
  private closed = false;
  private failures = 0;
  private readonly ES: typeof EventSource;

  constructor(private readonly options: StreamOptions<P>) {
    this.cursor = options.lastEventId;
    const ES = options.EventSource ?? (globalThis as { EventSource?: typeof EventSource }).EventSource;
    if (!ES) throw new Error("no EventSource: pass one in the options");
    this.ES = ES;
    void this.open();
  }

  /** The cursor of the last event received: pass it as `lastEventId` to resume later. */
  get lastEventId(): string | undefined {
    return this.cursor;
  }

  /** Calls `handler` with each `name` event's typed payload; returns an unsubscribe function. */
  on<K extends PrefixEvents[P] & EventName>(name: K, handler: (payload: EventMap[K], meta: EventMeta<K>) => void): () => void {
    let set = this.handlers.get(name);
    if (!set) {
      set = new Set();
      this.handlers.set(name, set);
      this.source?.addEventListener(name, this.listener);
    }
    set.add(handler as Handler);
    return () => set!.delete(handler as Handler);
  }

  /** Called when history could not cover a gap: refetch these channels' state. */
  onReset(handler: (channels: string[], reason: string) => void): () => void {
    this.resetHandlers.add(handler);
    return () => this.resetHandlers.delete(handler);
  }

  /**
   * Called when the bridge revoked this stream (`Disconnect`: logout or a
   * permission change). The stream is closed and does not reconnect; the
   * token it used is refused from now on. To go on, subscribe again with a
   * fresh token and `lastEventId`.
   */
  onRevoked(handler: (reason: string) => void): () => void {
    this.revokedHandlers.add(handler);
    return () => this.revokedHandlers.delete(handler);
  }

  /** Called on errors the stream recovers from by itself (for logging). */
  onError(handler: (error: unknown) => void): () => void {
    this.errorHandlers.add(handler);
    return () => this.errorHandlers.delete(handler);
  }

  close(): void {
    this.closed = true;
    this.source?.close();
    this.source = null;
  }

  private listener = (e: Event): void => {
    const m = e as MessageEvent<string>;
    if (m.lastEventId) this.cursor = m.lastEventId;
    const set = this.handlers.get(m.type);
    if (!set) return;
    const payload = JSON.parse(m.data);
    for (const h of set) h(payload, { event: m.type as EventName, id: m.lastEventId });
  };

  private async open(): Promise<void> {
    if (this.closed) return;
    let token: string;
    try {
      token = await this.options.token();
    } catch (error) {
      this.report(error);
      return this.retryLater();
    }
    if (this.closed) return;
    const es = new this.ES(streamUrl(this.options.url, this.options.channels, token, this.cursor));
    this.source = es;
    for (const name of this.handlers.keys()) es.addEventListener(name, this.listener);
    es.addEventListener("open", () => {
      this.failures = 0;
    });
    es.addEventListener("bridge.reset", (e) => {
      const m = e as MessageEvent<string>;
      if (m.lastEventId) this.cursor = m.lastEventId;
      const { channels, reason } = JSON.parse(m.data) as { channels: string[]; reason: string };
      for (const h of this.resetHandlers) h(channels, reason);
    });
    es.addEventListener("bridge.revoked", (e) => {
      const { reason } = JSON.parse((e as MessageEvent<string>).data) as { reason: string };
      this.close();
      for (const h of this.revokedHandlers) h(reason);
    });
    es.addEventListener("bridge.expired", () => {
      // Reopen with a fresh token where this stream left off.
      es.close();
      void this.open();
    });
    es.addEventListener("error", () => {
      if (es.readyState !== this.ES.CLOSED || this.source !== es || this.closed) return;
      // The browser gave up (e.g. 401 on reconnect): new token, same cursor.
      this.report(new Error("stream refused; reopening with a fresh token"));
      this.retryLater();
    });
  }

  private retryLater(): void {
    const base = this.options.retryDelayMs ?? 1000;
    const delay = Math.min(30_000, base * 2 ** Math.min(this.failures, 5));
    this.failures += 1;
    setTimeout(() => void this.open(), delay);
  }

  private report(error: unknown): void {
    for (const h of this.errorHandlers) h(error);
  }
}

/** Opens a typed stream. */
export function subscribe<P extends Prefix = Prefix>(options: StreamOptions<P>): BridgeStream<P> {
  return new BridgeStream(options);
}
