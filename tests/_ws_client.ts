/**
 * Deno's own `WebSocket` as a test client (a peer we did not write): what
 * it receives is kept in order, every wait has a deadline, and disposing of
 * it closes it and waits for the close. The one such client of the tests.
 */

import { within } from "./_peer_helpers.ts";

/** A received message: text as `string`, binary as `Uint8Array`. */
export type Received = string | Uint8Array;

/**
 * Text messages starting with this are readiness probes (of the scale-out
 * tests), kept apart from the others.
 */
export const PROBE = "probe:";

export class TestClient implements AsyncDisposable {
  readonly ws: WebSocket;
  /** Every message received but the probes, in arrival order. */
  readonly received: Received[] = [];
  /** The probes received (text starting with {@linkcode PROBE}), in order. */
  readonly probes: string[] = [];
  /** Resolves with the close event. */
  readonly closed: Promise<CloseEvent>;
  #taken = 0;
  #isClosed = false;
  #checks = new Set<() => void>();

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.addEventListener("message", (event) => {
      const data = event.data;
      if (typeof data === "string" && data.startsWith(PROBE)) {
        this.probes.push(data);
        return;
      }
      this.received.push(
        typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer),
      );
      this.#check();
    });
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", (event) => {
        this.#isClosed = true;
        resolve(event);
        this.#check();
      });
    });
  }

  /** Opens a client on `url`; fails if it does not open within the limit. */
  static async open(url: string): Promise<TestClient> {
    const ws = new WebSocket(url);
    const client = new TestClient(ws);
    const opened = new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve());
      ws.addEventListener(
        "close",
        () => reject(new Error(`The connection to ${url} did not open`)),
      );
    });
    try {
      await within(opened, `the connection to ${url}`);
    } catch (error) {
      await client[Symbol.asyncDispose]();
      throw error;
    }
    return client;
  }

  /** Whether the connection has closed. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  send(message: string | Uint8Array): void {
    this.ws.send(message);
  }

  /** Waits until `received` holds `count` messages. */
  receive(count: number, what: string): Promise<void> {
    return this.until(() => this.received.length >= count, what);
  }

  /** The next message not yet taken. */
  async next(what = "the next message"): Promise<Received> {
    await this.until(() => this.received.length > this.#taken, what);
    return this.received[this.#taken++];
  }

  /**
   * The next JSON text message that `accept` takes, skipping the others
   * (they are taken too).
   */
  async nextJson<T = Record<string, unknown>>(
    accept: (message: T) => boolean = () => true,
    what = "the next JSON message",
  ): Promise<T> {
    while (true) {
      const message = await this.next(what);
      if (typeof message !== "string") continue;
      const parsed = JSON.parse(message) as T;
      if (accept(parsed)) return parsed;
    }
  }

  /**
   * Waits until `condition` holds, checked now and at each message; fails
   * when the socket closes first or the time limit passes.
   */
  until(condition: () => boolean, what: string): Promise<void> {
    if (condition()) return Promise.resolve();
    let check!: () => void;
    const met = new Promise<void>((resolve, reject) => {
      check = () => {
        if (condition()) resolve();
        else if (this.#isClosed) {
          reject(new Error(`The socket closed while waiting for ${what}`));
        }
      };
    });
    this.#checks.add(check);
    return within(met, what).finally(() => this.#checks.delete(check));
  }

  /** Closes it, and waits for the close. */
  async close(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    await within(this.closed, "the client's close");
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #check(): void {
    for (const check of this.#checks) check();
  }
}

/** Opens `count` clients on `url`, one after the other. */
export async function openClients(
  url: string,
  count: number,
): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  for (let i = 0; i < count; i++) clients.push(await TestClient.open(url));
  return clients;
}

/** Closes every client and waits for each close. */
export async function closeAll(clients: readonly TestClient[]): Promise<void> {
  await Promise.all(clients.map((client) => client[Symbol.asyncDispose]()));
}
