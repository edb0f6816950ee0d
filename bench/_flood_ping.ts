/**
 * Scenario (j)'s generator: an innocent client's ping round trips while
 * another client floods an echo server with tiny frames. The flooder writes
 * 256 KiB of masked 1-byte text frames at a time and reads the echoes (so
 * that the flood goes on); the innocent client sends one ping at a time and
 * waits for its pong. A server that serves each read's frames to the end
 * before anything else makes the innocent client wait for the flooder.
 *
 * @module
 */

import { encodeMaskedFrame, openSocket, writeAll } from "./load.ts";

const OPCODE_TEXT = 1;
const OPCODE_PING = 9;
const OPCODE_PONG = 10;
const KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
/** What the flooder writes at once: 256 KiB of 1-byte text frames. */
const BURST_SIZE = 256 * 1024;
/** An echoed 1-byte text frame: 2 header bytes and the byte. */
const ECHO_SIZE = 3;

/** What one run does. */
export interface FloodPingOptions {
  /** The server's address. Default `"127.0.0.1"`. */
  hostname?: string;
  /** The echo server's port. */
  port: number;
  /** Milliseconds of flood before the pings are counted. Default 500. */
  warmup?: number;
  /** Milliseconds of pings counted after the warm-up. Default 3000. */
  duration?: number;
  /** A ping not answered within this many ms ends the run. Default 5000. */
  pingTimeout?: number;
}

/** What one run measured. */
export interface FloodPingResult {
  /**
   * Round-trip times of the pings in the window, in ms; a ping left
   * unanswered counts for `pingTimeout`.
   */
  latencies: number[];
  /** 1 if a ping went unanswered (and ended the run), else 0. */
  unanswered: number;
  /** Tiny messages echoed to the flooder in the window. */
  floodMessages: number;
  /** The length of the window, in seconds. */
  seconds: number;
}

/**
 * Measures the innocent client's pings under the flood.
 *
 * @example
 * ```ts ignore
 * const { latencies } = await runFloodPing({ port: 8080, duration: 1000 });
 * ```
 */
export async function runFloodPing(
  options: FloodPingOptions,
): Promise<FloodPingResult> {
  const hostname = options.hostname ?? "127.0.0.1";
  const flooder = await openSocket(hostname, options.port);
  const innocent = await openSocket(hostname, options.port);
  const frame = encodeMaskedFrame(OPCODE_TEXT, new Uint8Array([120]), KEY);
  const burst = new Uint8Array(
    Math.floor(BURST_SIZE / frame.length) * frame.length,
  );
  for (let at = 0; at < burst.length; at += frame.length) burst.set(frame, at);
  let flooding = true;
  let echoed = flooder.leftover.length;
  const drain = (async () => {
    const sink = new Uint8Array(256 * 1024);
    try {
      let n;
      while ((n = await flooder.conn.read(sink)) !== null) echoed += n;
    } catch {
      // Closed at the end of the run.
    }
  })();
  const flood = (async () => {
    try {
      while (flooding) await writeAll(flooder.conn, burst);
    } catch {
      // Closed at the end of the run.
    }
  })();
  const pongs = new PongReader(innocent.conn, innocent.leftover);
  const latencies: number[] = [];
  let unanswered = 0;
  let floodMessages = 0;
  let seconds = 0;
  try {
    await new Promise((resolve) => setTimeout(resolve, options.warmup ?? 500));
    const started = performance.now();
    const echoedBefore = echoed;
    const end = started + (options.duration ?? 3000);
    const timeout = options.pingTimeout ?? 5000;
    for (let i = 0; performance.now() < end; i++) {
      const payload = new TextEncoder().encode(`ping ${i}`);
      const sent = performance.now();
      await writeAll(
        innocent.conn,
        encodeMaskedFrame(OPCODE_PING, payload, KEY),
      );
      if (!(await pongs.next(timeout))) {
        // It waited at least this long: the run's worst case.
        latencies.push(timeout);
        unanswered = 1;
        break;
      }
      latencies.push(performance.now() - sent);
    }
    seconds = (performance.now() - started) / 1000;
    floodMessages = (echoed - echoedBefore) / ECHO_SIZE;
  } finally {
    flooding = false;
    flooder.conn.close();
    innocent.conn.close();
    await Promise.all([flood, drain]);
  }
  return { latencies, unanswered, floodMessages, seconds };
}

/** Reads the innocent client's frames and waits for pongs. */
class PongReader {
  #conn: Deno.TcpConn;
  #buffer: Uint8Array;
  #length: number;

  constructor(conn: Deno.TcpConn, leftover: Uint8Array) {
    this.#conn = conn;
    this.#buffer = new Uint8Array(4096);
    this.#buffer.set(leftover);
    this.#length = leftover.length;
  }

  /** Waits for the next pong; false when none came within `timeout` ms. */
  async next(timeout: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeout);
    });
    try {
      return await Promise.race([this.#read(), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #read(): Promise<boolean> {
    while (true) {
      // A server's control frame: unmasked, at most 125 bytes of payload.
      if (this.#length >= 2 && this.#length >= 2 + (this.#buffer[1] & 127)) {
        const opcode = this.#buffer[0] & 15;
        const size = 2 + (this.#buffer[1] & 127);
        this.#buffer.copyWithin(0, size, this.#length);
        this.#length -= size;
        if (opcode === OPCODE_PONG) return true;
        continue;
      }
      const n = await this.#conn.read(this.#buffer.subarray(this.#length));
      if (n === null) return false;
      this.#length += n;
    }
  }
}
