/**
 * The fan-out floor: the least a WebSocket fan-out server in JavaScript on
 * `Deno.Conn` does, to show what `Deno.Conn` itself costs in (g) and (i).
 * One async loop per connection reads the upgrade head into a 1 KiB buffer
 * and answers `101` with the accept value. A `/sub` or `/idle` connection
 * then joins the subscribers and is read only to notice its end. The `/pub`
 * connection's loop unmasks the frames of each read in place and frames
 * their messages, back to back, into one buffer, shared by every
 * subscriber: one `conn.write` per subscriber per read of the publisher
 * (what a server that coalesces writes does). While a subscriber's write is
 * in flight, what comes next waits in a list and goes out in one write
 * after it (subscribers waiting for the same frames share one copy). At
 * most 64 writes start per turn of the event loop, the others wait for the
 * next, in order (see `TURN_WRITES`; `--unsliced` starts all at once). No
 * limits, validation, streams or timers: not a server anyone should run,
 * only a measure (`deno task bench --servers ours,floor`).
 *
 * @module
 */
import { frameHead, readFrameHead, serveFloor, upgrade } from "./_floor.ts";

/** A subscriber: its connection and what waits for its next write. */
interface Sub {
  conn: Deno.Conn;
  /** A write is in flight. */
  writing: boolean;
  /** Waiting in `due` for a turn with writes to spare. */
  due: boolean;
  waiting: Uint8Array[];
  gone: boolean;
}

const subscribers: Sub[] = [];

/**
 * Writes started per turn of the event loop. Deno completes an I/O
 * operation at once only while a turn has budget left (Tokio's: 128);
 * the writes past it wait in a slower queue that fresh writes overtake,
 * and at 10,000 subscribers some got nothing for seconds. With
 * `--unsliced`, every write starts at once (to show that).
 */
const TURN_WRITES = Deno.args.includes("--unsliced") ? Infinity : 64;
let budget = TURN_WRITES;
let ticking = false;
/** Subscribers waiting for a turn with writes to spare, in order. */
let due: Sub[] = [];
let dueHead = 0;

function tick(): void {
  budget = TURN_WRITES;
  while (budget > 0 && dueHead < due.length) {
    const sub = due[dueHead++];
    sub.due = false;
    if (!sub.gone) start(sub);
  }
  if (dueHead === due.length) {
    due = [];
    dueHead = 0;
  }
  ticking = dueHead < due.length;
  if (ticking) setImmediate(tick);
}

async function handshake(conn: Deno.Conn): Promise<void> {
  const upgraded = await upgrade(conn);
  if (upgraded === undefined) return;
  if (upgraded.path === "/pub") return publisher(conn, upgraded.leftover);
  return subscriber(conn);
}

async function subscriber(conn: Deno.Conn): Promise<void> {
  const sub: Sub = {
    conn,
    writing: false,
    due: false,
    waiting: [],
    gone: false,
  };
  subscribers.push(sub);
  const sink = new Uint8Array(128);
  try {
    while (await conn.read(sink) !== null) {
      // A subscriber's pongs and close are not looked at.
    }
  } catch {
    // Reset: gone too.
  }
  leave(sub);
}

function leave(sub: Sub): void {
  if (sub.gone) return;
  sub.gone = true;
  const at = subscribers.indexOf(sub);
  if (at !== -1) {
    subscribers[at] = subscribers[subscribers.length - 1];
    subscribers.pop();
  }
  try {
    sub.conn.close();
  } catch {
    // Closed already.
  }
}

/** Sends `bytes` (shared, never changed) to one subscriber. */
function send(sub: Sub, bytes: Uint8Array): void {
  sub.waiting.push(bytes);
  if (!sub.writing && !sub.due) start(sub);
}

/** Writes what waits for `sub`, or waits for a turn with writes to spare. */
function start(sub: Sub): void {
  if (!ticking && TURN_WRITES !== Infinity) {
    ticking = true;
    setImmediate(tick);
  }
  if (budget === 0) {
    sub.due = true;
    due.push(sub);
    return;
  }
  budget--;
  sub.writing = true;
  const waiting = sub.waiting;
  sub.waiting = [];
  write(sub, waiting.length === 1 ? waiting[0] : join(waiting));
}

async function write(sub: Sub, bytes: Uint8Array): Promise<void> {
  try {
    do {
      bytes = bytes.subarray(await sub.conn.write(bytes));
    } while (bytes.length > 0);
    sub.writing = false;
    if (sub.waiting.length > 0 && !sub.due) start(sub);
  } catch {
    leave(sub);
  }
}

/**
 * The parts of the last join and their copy: subscribers written one after
 * another wait for the same shared frames, and share one copy of them.
 */
let joinedParts: Uint8Array[] = [];
let joined = new Uint8Array(0);

function join(parts: Uint8Array[]): Uint8Array {
  if (
    parts.length === joinedParts.length &&
    parts.every((part, i) => part === joinedParts[i])
  ) {
    return joined;
  }
  let size = 0;
  for (const part of parts) size += part.length;
  joined = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  joinedParts = parts;
  return joined;
}

async function publisher(conn: Deno.Conn, leftover: Uint8Array) {
  let buffer = new Uint8Array(Math.max(64 * 1024, leftover.length));
  buffer.set(leftover);
  let length = leftover.length;
  for (;;) {
    // Every whole frame held: its message framed for the subscribers.
    let at = 0;
    let need = 2;
    let outSize = 0;
    const messages: [number, number, number][] = [];
    while (length - at >= 2) {
      if (!readFrameHead(buffer, at, length)) break;
      const { header, size } = frameHead;
      need = header + 4 + size;
      if (length - at < need) break;
      const start = at + header + 4;
      for (let i = 0; i < size; i++) {
        buffer[start + i] ^= buffer[at + header + (i & 3)];
      }
      const opcode = buffer[at] & 0x0f;
      if (opcode === 8) return conn.close();
      if (opcode === 1 || opcode === 2) {
        messages.push([buffer[at], start, size]);
        outSize += (size < 126 ? 2 : size < 65536 ? 4 : 10) + size;
      }
      at += need;
      need = 2;
    }
    if (messages.length > 0) {
      const out = new Uint8Array(outSize);
      let o = 0;
      for (const [first, start, size] of messages) {
        out[o++] = first;
        if (size < 126) {
          out[o++] = size;
        } else if (size < 65536) {
          out[o++] = 126;
          out[o++] = size >> 8;
          out[o++] = size & 0xff;
        } else {
          out[o++] = 127;
          new DataView(out.buffer, o, 8).setBigUint64(0, BigInt(size));
          o += 8;
        }
        out.set(buffer.subarray(start, start + size), o);
        o += size;
      }
      for (let i = 0; i < subscribers.length; i++) send(subscribers[i], out);
    }
    buffer.copyWithin(0, at, length);
    length -= at;
    if (need > buffer.length) {
      const grown = new Uint8Array(need);
      grown.set(buffer.subarray(0, length));
      buffer = grown;
    }
    const read = await conn.read(buffer.subarray(length));
    if (read === null) return conn.close();
    length += read;
  }
}

await serveFloor(handshake);
