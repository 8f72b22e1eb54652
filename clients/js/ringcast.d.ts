// Type declarations of ringcast.js, the client of ringcast's pub/sub protocol.

export declare const State: Readonly<{
  IDLE: 'idle';
  CONNECTING: 'connecting';
  OPEN: 'open';
  RECONNECTING: 'reconnecting';
  CLOSED: 'closed';
}>;
export type StateName = (typeof State)[keyof typeof State];
export type TransportName = 'websocket' | 'sse';

export interface Options {
  /** A token, or a function returning one (called before every connection attempt). */
  token?: string | null | (() => string | Promise<string>);
  /** 'auto' (WebSocket, SSE after sseAfterFailures failed upgrades), 'websocket' or 'sse'. */
  transport?: 'auto' | TransportName;
  /** A WebSocket class; default: the global one, else the `ws` package. */
  WebSocket?: unknown;
  /** A fetch function for SSE and POST /publish; default: the global one. */
  fetch?: typeof fetch;
  backoffBaseMs?: number;
  backoffFactor?: number;
  backoffCapMs?: number;
  /** Full jitter (default true): each delay is uniform below its ceiling. */
  jitter?: boolean;
  /** Least wait after close 1012/1013. */
  retryLaterMs?: number;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  connectTimeoutMs?: number;
  tokenRefreshMarginMs?: number;
  offlineQueueMax?: number;
  publishTimeoutMs?: number;
  sseAfterFailures?: number;
  wsRetryMs?: number;
  iteratorBufferMax?: number;
}

export interface Message<T = unknown> {
  topic: string;
  seq: number;
  epoch: string | null;
  data: T;
}

export interface GapEvent {
  topic: string;
  from: number;
  to: number;
  epoch: string | null;
  /** 'history': gone from the server's history; 'skipped': dropped as a slow consumer. */
  cause: 'history' | 'skipped';
}

export interface ResetEvent {
  topic: string;
  epoch: string;
  seq: number;
  previous: { seq: number | null; epoch: string | null };
}

export interface StateEvent {
  state: StateName;
  previous: StateName;
  transport: TransportName | null;
}

export interface OverflowEvent {
  kind: 'publish' | 'iterator';
  topic: string;
  id?: string;
  queued?: number;
  dropped?: number;
}

export interface PublishResult {
  /** null when the server acked a duplicate id. */
  seq: number | null;
  epoch: string | null;
  duplicate: boolean;
}

export interface EventMap {
  state: StateEvent;
  message: Message;
  ack: { topic: string; seq: number; epoch: string | null };
  gap: GapEvent;
  reset: ResetEvent;
  error: RingcastError;
  overflow: OverflowEvent;
  attempt: { attempt: number; transport: TransportName; at: number };
  /** A transport failed or closed: the next attempt comes after delayMs. */
  retry: { attempt: number; delayMs: number; code: number | null };
  transport: { transport: TransportName | null; reason?: string };
}

export declare class RingcastError extends Error {
  code: string;
  detail: unknown;
  constructor(code: string, message: string, detail?: unknown);
}

export declare class Subscription<T = unknown> implements AsyncIterable<Message<T>> {
  readonly topic: string;
  seq: number | null;
  epoch: string | null;
  on(fn: (m: Message<T>) => void): () => void;
  unsubscribe(): void;
  [Symbol.asyncIterator](): AsyncIterator<Message<T>>;
}

export declare class Client {
  constructor(url: string, options?: Options);
  readonly state: StateName;
  readonly transport: TransportName | null;
  readonly stats: { attempts: number; opens: number; duplicates: number; gaps: number; resets: number };
  connect(): Promise<void>;
  close(): void;
  subscribe<T = unknown>(topic: string, onMessage?: (m: Message<T>) => void): Subscription<T>;
  unsubscribe(topic: string): void;
  position(topic: string): { seq: number | null; epoch: string | null };
  publish(topic: string, data: unknown, options?: { id?: string }): Promise<PublishResult>;
  on<K extends keyof EventMap>(event: K, fn: (e: EventMap[K]) => void): this;
  off<K extends keyof EventMap>(event: K, fn: (e: EventMap[K]) => void): this;
}

export declare function connect(url: string, options?: Options): Client;
export declare function backoffDelay(
  attempt: number,
  options?: Pick<Options, 'backoffBaseMs' | 'backoffFactor' | 'backoffCapMs' | 'jitter'>,
  random?: () => number,
): number;
export declare function tokenExpiry(token: string): number | null;

declare const _default: {
  Client: typeof Client;
  connect: typeof connect;
  State: typeof State;
  RingcastError: typeof RingcastError;
  backoffDelay: typeof backoffDelay;
  tokenExpiry: typeof tokenExpiry;
};
export default _default;
