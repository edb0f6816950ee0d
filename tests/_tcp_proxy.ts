/**
 * A TCP proxy for the tests of pages that must survive a dropped
 * connection: it forwards 127.0.0.1:`port` to a server, and on `cut()`
 * closes every connection through it and refuses new ones (accepts and
 * closes them at once) until `restore()`.
 */

/** A client's connection and the proxy's own to the server. */
interface Pair {
  client: Deno.Conn;
  server: Deno.Conn | undefined;
  closed: boolean;
}

export class CutProxy implements AsyncDisposable {
  readonly port: number;
  #target: number;
  #listener: Deno.Listener;
  #refusing = false;
  #refused = 0;
  #pairs = new Set<Pair>();
  #accepting: Promise<void>;
  #piping = new Set<Promise<void>>();

  /** Listens on a free port of 127.0.0.1, forwarding to `target` there. */
  constructor(target: number) {
    this.#target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#accepting = this.#accept();
  }

  /** `http://127.0.0.1:<port>`: the server's origin, through the proxy. */
  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** How many connections were refused since the last `cut()`. */
  get refused(): number {
    return this.#refused;
  }

  /** Closes every connection through the proxy and refuses new ones. */
  cut(): void {
    this.#refusing = true;
    this.#refused = 0;
    for (const pair of this.#pairs) closePair(pair);
  }

  /** Forwards new connections again. */
  restore(): void {
    this.#refusing = false;
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        if (this.#refusing) {
          this.#refused++;
          conn.close();
          continue;
        }
        const piping = this.#pipe(conn);
        this.#piping.add(piping);
        piping.finally(() => this.#piping.delete(piping));
      }
    } catch {
      // The listener was closed.
    }
  }

  async #pipe(client: Deno.Conn): Promise<void> {
    const pair: Pair = { client, server: undefined, closed: false };
    this.#pairs.add(pair);
    try {
      pair.server = await Deno.connect({
        hostname: "127.0.0.1",
        port: this.#target,
      });
      if (pair.closed) return; // cut while connecting
      await Promise.allSettled([
        client.readable.pipeTo(pair.server.writable),
        pair.server.readable.pipeTo(client.writable),
      ]);
    } catch {
      // The server is not there: the client is closed below.
    } finally {
      closePair(pair);
      this.#pairs.delete(pair);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const pair of this.#pairs) closePair(pair);
    await Promise.all(this.#piping);
  }
}

function closePair(pair: Pair): void {
  pair.closed = true;
  for (const conn of [pair.client, pair.server]) {
    try {
      conn?.close();
    } catch {
      // Closed already (by the other direction's end).
    }
  }
}
