/**
 * A chat with rooms that survives dropped connections and server restarts,
 * built on live topics (`LiveTopics` on the server, `LiveClient` in the
 * page): each room is the topic `room/<name>` and keeps its last 100 lines
 * for an hour, so a page that comes back gets what was said while it was
 * away, exactly once, or is told that it could not be recovered and shown
 * the lines the room still has.
 *
 * Run it with:
 *
 * ```sh
 * deno task chat
 * # which is
 * deno run --allow-net --allow-env --allow-read examples/chat.ts
 * # on another port or address (flags win over the environment)
 * deno run --allow-net --allow-env --allow-read examples/chat.ts --port 9000 --hostname 0.0.0.0
 * PORT=9000 deno task chat
 * ```
 *
 * It listens on `127.0.0.1:8081` by default and prints the address to open;
 * open it in two browser tabs and talk. Ctrl+C shuts it down. (It reads one
 * file: the live client module it serves to its pages, `/live-client.js`.)
 *
 * **The page** picks a name and a room. It shows the rooms in use with their
 * member counts, the room's members (from presence, so every process of a
 * cluster counts), and the room's lines: the last 50 on joining, then each
 * line as it is said. When its connection drops it says so (the close code,
 * and when it tries again), reconnects on its own, then says it is back and
 * whether the room's lines said meanwhile were recovered (they follow,
 * once each) or not (a restart lost the room's history: it shows the last
 * lines the room has). A line typed while offline goes out once the page is
 * back in its room.
 *
 * **The protocol** is the live protocol (JSON, readable in the browser's
 * network tab) on `/live`. Who a connection is goes in its URL and is
 * checked once, at the handshake: `/live?session=S` watches the rooms,
 * `/live?session=S&name=Ada&room=lobby` is Ada in the lobby (joining another
 * room or taking another name is a new connection). `S` is a secret the page
 * draws at random (16-64 letters, digits, `-` or `_`): a connection that
 * comes back with it is the same person, who keeps the name. A bad name or
 * room closes the connection with 4400 and the reason; a name taken in the
 * room by someone else with 4409. Then a connection may subscribe to
 * `rooms` and to its own room, and publish text (1-500 characters) to its
 * own room only; the server publishes it as
 * `{"type":"message","name":"Ada","text":"…","time":…}` with the name it
 * checked, never one the page sent. The server also publishes
 * `{"type":"join"|"leave","name":"Ada","time":…}` to the room, and each
 * change of a room's member count as `{"room":"lobby","members":2}` to
 * `rooms`; a page gets the counts in full from the presence of `rooms`, in
 * which each connection in a room lists `{ id, name, room }` (`id` names
 * the person: a digest of its secret).
 *
 * A name is 1-24 characters with no control, format or line separator
 * characters (no U+202E to turn text around, no zero-width characters, no
 * U+2028), and unique in its room: compared after NFKC normalization and
 * lower-casing, so "Ada", "ADA" and "Ａｄａ" are one name. A room is 1-24
 * letters, digits, `-` or `_`, lower-cased.
 *
 * A member whose connection drops is announced as leaving only when it has
 * not come back within `leaveGrace` (2 s); one that leaves on purpose (its
 * page closes the connection with 1000) at once.
 *
 * @module
 */

import {
  LiveTopics,
  type PresenceMember,
  type PubSubAdapter,
  serve,
  type WebSocketConnection,
  type WebSocketServer,
} from "../mod.ts";
import {
  CONNECTION_STYLE,
  DEFAULT_HOSTNAME,
  printAddress,
  runMain,
  sameOriginOnly,
  servePage,
} from "./_app.ts";

/** Options for {@linkcode startChatServer}. */
export interface ChatServerOptions {
  /** The port to listen on. Default `8081`; `0` picks a free one. */
  port?: number;
  /** The address to listen on. Default `"127.0.0.1"`. */
  hostname?: string;
  /** Called once listening; default: prints the address to open. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** Aborting it shuts the server down. */
  signal?: AbortSignal;
  /**
   * Shares the rooms, their history and their presence with other
   * processes (examples/cluster.ts gives a `RedisPubSub`). Default: none,
   * everything in this process's memory.
   */
  pubsub?: PubSubAdapter;
  /** Listen with `reusePort`, beside other processes (`--unstable-net`). */
  reusePort?: boolean;
  /** This process's name, listed with its connections in presence. */
  node?: string;
  /**
   * How long after a member's connection drops, in ms, it is announced as
   * leaving unless it came back. Default 2000.
   */
  leaveGrace?: number;
}

/**
 * Who a connection is, as the server checked it at the handshake: the
 * hooks get it, and presence lists it.
 */
export interface ChatInfo {
  /** The person: a digest of the page's secret, the same when it comes back. */
  id: string;
  /** Its name, for a connection in a room. */
  name?: string;
  /** Its room, for a connection in a room. */
  room?: string;
  /** The process that serves it (`node` option). */
  node?: string;
}

/** What the server publishes to a room's topic. */
export type RoomEvent =
  | { type: "message"; name: string; text: string; time: number }
  | { type: "join" | "leave"; name: string; time: number };

/** What the server publishes to `rooms`: a room's new member count. */
export interface RoomCount {
  room: string;
  members: number;
}

/** The close code of a connection whose URL names a bad name or room. */
export const INVALID = 4400;
/** The close code of a connection whose name is taken in its room. */
export const TAKEN = 4409;

const DEFAULT_PORT = 8081;
/** Every page subscribes to it: the rooms' member counts as they change. */
export const ROOMS_TOPIC = "rooms";
export const ROOM_PREFIX = "room/";
/** What a room keeps for pages that come back (and show on joining). */
const ROOM_HISTORY = { size: 100, ttl: 60 * 60_000 };
const DEFAULT_LEAVE_GRACE = 2000;
const MAX_NAME = 24;
const MAX_ROOM = 24;
const MAX_TEXT = 500;
/** Letters, digits, `-` and `_`: room names are part of topic names. */
const ROOM_PATTERN = /^[\p{L}\p{N}_-]+$/u;
const SESSION_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;
/**
 * What has no place in a name: control and format characters (U+202E, the
 * zero-width ones), lone surrogates, private-use and unassigned code points
 * (all of `\p{C}`), and the line and paragraph separators.
 */
const INVISIBLE = /[\p{C}\p{Zl}\p{Zp}]/u;

/** What two names that look the same have in common. */
function nameKey(name: string): string {
  return name.normalize("NFKC").toLowerCase();
}

/** One person under one name: what a room's members are counted by. */
function personKey(info: unknown): string {
  const { id, name } = info as ChatInfo;
  return `${id} ${nameKey(name ?? "")}`;
}

/**
 * Starts the chat server and returns it; `shutdown()` (or `await using`,
 * or the signal) stops it.
 *
 * @example Starting it on a free port; a page joins the lobby
 * ```ts ignore
 * import { startChatServer } from "./examples/chat.ts";
 * import { LiveClient } from "./src/live/client.js";
 *
 * await using server = startChatServer({ port: 0, onListen() {} });
 * const live = new LiveClient(
 *   `ws://127.0.0.1:${server.addr.port}/live?session=0123456789abcdef&name=Ada&room=lobby`,
 * );
 * live.subscribe("room/lobby", { last: 50, recover: true });
 * await live.publish("room/lobby", "Hello");
 * ```
 */
export function startChatServer(
  options: ChatServerOptions = {},
): WebSocketServer {
  const chat = new Chat(
    options.node,
    options.leaveGrace ?? DEFAULT_LEAVE_GRACE,
  );
  const server = chat.server = serve({
    port: options.port ?? DEFAULT_PORT,
    hostname: options.hostname ?? DEFAULT_HOSTNAME,
    reusePort: options.reusePort,
    signal: options.signal,
    onListen: options.onListen ?? printAddress("Chat"),
    fetch: servePage(CHAT_PAGE, { "/live-client.js": LiveTopics.clientScript }),
    onUpgrade: sameOriginOnly,
    pubsub: options.pubsub,
    history: (topic) =>
      topic.startsWith(ROOM_PREFIX) ? ROOM_HISTORY : undefined,
    // Every topic's members, over every process of `pubsub`.
    presence: true,
    // Chat lines are short: a big message is a mistake or an attack (1009).
    maxMessageSize: 8 * 1024,
    // A page that stops reading is closed (1013) when 1 MiB waits for it,
    // rather than silently missing lines; it comes back and recovers them.
    backpressure: "close",
  }, (socket) => chat.connection(socket));
  server.finished.then(() => chat.stop(), () => chat.stop());
  return server;
}

/** A connection: whether its person joined its room, whether it is over. */
interface Connection {
  /** Its room let it in (announced, unless the person came back). */
  joined: boolean;
  over: boolean;
}

/**
 * The chat in this process: the live topics handler and its hooks, the
 * names held here, the leaves that wait out the grace.
 */
class Chat {
  /** Set once `serve()` returns, before any connection. */
  server!: WebSocketServer;
  #live: LiveTopics<ChatInfo>;
  #node: string | undefined;
  #grace: number;
  /**
   * The names this process's connections hold, by room and name key, with
   * their person: checked before presence, so that two pages that ask for
   * one name at once here cannot both have it.
   */
  #names = new Map<string, Map<string, { id: string; count: number }>>();
  /** Leaves that wait out the grace, by room and person. */
  #leaving = new Map<string, ReturnType<typeof setTimeout>>();
  #connections = new WeakMap<WebSocketConnection, Connection>();
  #stopped = false;

  constructor(node: string | undefined, grace: number) {
    this.#node = node;
    this.#grace = grace;
    this.#live = new LiveTopics<ChatInfo>({
      canSubscribe: (socket, topic, info) =>
        this.#canSubscribe(socket, topic, info),
      // Text to its own room, published with the name checked at the
      // handshake: a page cannot speak for someone else.
      canPublish: (socket, topic, message, info) =>
        info?.name !== undefined && topic === ROOM_PREFIX + info.room &&
        this.#live.isSubscribed(socket, topic) && lineOf(info.name, message),
      // The rooms' counts and the connection's own room.
      maxTopicsPerSocket: 2,
    });
  }

  /** Checks who the connection is, then speaks the live protocol on it. */
  async connection(socket: WebSocketConnection): Promise<void> {
    const url = new URL(socket.request.url);
    const who = url.pathname === "/live"
      ? parseWho(url.searchParams)
      : "Connect to /live";
    if (typeof who === "string") return refuse(socket, INVALID, who);
    const info: ChatInfo = { id: await personId(who.session) };
    if (who.name !== undefined) {
      info.name = who.name;
      info.room = who.room;
    }
    if (this.#node !== undefined) info.node = this.#node;
    if (info.name !== undefined && !(await this.#hold(info))) {
      return refuse(
        socket,
        TAKEN,
        `The name ${info.name} is taken in ${info.room}`,
      );
    }
    const connection: Connection = { joined: false, over: false };
    this.#connections.set(socket, connection);
    try {
      await this.#live.handle(socket, { info });
    } finally {
      connection.over = true;
      if (info.name !== undefined) {
        this.#release(info);
        if (connection.joined) {
          const { closeCode } = await socket.closed.catch(() => ({
            closeCode: 1006,
          }));
          // 1000: the page left (another room, another name); anything
          // else may be a network blip that the page comes back from.
          this.#leave(info, closeCode === 1000 ? 0 : this.#grace);
        }
      }
    }
  }

  /** `rooms` for everyone; a room for the connections made for it. */
  async #canSubscribe(
    socket: WebSocketConnection,
    topic: string,
    info: ChatInfo | undefined,
  ): Promise<boolean> {
    if (topic === ROOMS_TOPIC) return true;
    const connection = this.#connections.get(socket);
    if (
      connection === undefined || info?.name === undefined ||
      topic !== ROOM_PREFIX + info.room
    ) {
      return false;
    }
    // Once per connection: a page that lost lines subscribes again.
    if (connection.joined) return true;
    const members = await this.#members(info.room!);
    if (connection.over) return false;
    connection.joined = true;
    // Back within the grace, or still there on another connection (a
    // process that died keeps its connections in presence a while): not a
    // join, for the others.
    const people = new Set(members.map(({ info }) => personKey(info)));
    if (this.#cancelLeave(info) || people.has(personKey(info))) return true;
    // Announced before the subscription is made, so that the room hears of
    // the member before any line of it (one typed offline comes right
    // after); the count includes it already.
    people.add(personKey(info));
    void this.#announce(info, "join", people.size);
    return true;
  }

  stop(): void {
    this.#stopped = true;
    for (const timer of this.#leaving.values()) clearTimeout(timer);
    this.#leaving.clear();
  }

  /**
   * Holds the name in its room for this person, unless another person
   * holds it here or (with `pubsub`) in another process.
   */
  async #hold(info: ChatInfo): Promise<boolean> {
    const room = info.room!;
    const key = nameKey(info.name!);
    let names = this.#names.get(room);
    const held = names?.get(key);
    if (held !== undefined && held.id !== info.id) return false;
    if (names === undefined) this.#names.set(room, names = new Map());
    if (held === undefined) names.set(key, { id: info.id, count: 1 });
    else held.count++;
    const members = await this.#members(room);
    const taken = members.some((member) => {
      const other = member.info as ChatInfo | undefined;
      return other?.name !== undefined && nameKey(other.name) === key &&
        other.id !== info.id;
    });
    if (taken) this.#release(info);
    return !taken;
  }

  #release(info: ChatInfo): void {
    const names = this.#names.get(info.room!);
    const key = nameKey(info.name!);
    const held = names?.get(key);
    if (held === undefined || --held.count > 0) return;
    names!.delete(key);
    if (names!.size === 0) this.#names.delete(info.room!);
  }

  /** The room's members over every process (none if that cannot be read). */
  async #members(room: string): Promise<PresenceMember[]> {
    try {
      return (await this.server.hub.presence(ROOM_PREFIX + room)).members;
    } catch (error) {
      console.error(`Chat: the presence of ${room} is unknown:`, error);
      return [];
    }
  }

  /** Whether the person is in the room under its name. */
  async #present(info: ChatInfo): Promise<boolean> {
    const key = personKey(info);
    return (await this.#members(info.room!)).some((member) =>
      personKey(member.info) === key
    );
  }

  /** Announces the leave after `delay` ms, unless the person is back. */
  #leave(info: ChatInfo, delay: number): void {
    if (this.#stopped) return;
    const key = `${info.room} ${personKey(info)}`;
    clearTimeout(this.#leaving.get(key));
    this.#leaving.set(
      key,
      setTimeout(async () => {
        this.#leaving.delete(key);
        if (!(await this.#present(info))) await this.#announce(info, "leave");
      }, delay),
    );
  }

  #cancelLeave(info: ChatInfo): boolean {
    const key = `${info.room} ${personKey(info)}`;
    const timer = this.#leaving.get(key);
    if (timer === undefined) return false;
    clearTimeout(timer);
    this.#leaving.delete(key);
    return true;
  }

  /**
   * Tells the room, then every page the room's new count of people (read
   * from presence unless given).
   */
  async #announce(
    info: ChatInfo,
    type: "join" | "leave",
    people?: number,
  ): Promise<void> {
    if (this.#stopped) return;
    const room = info.room!;
    const event: RoomEvent = { type, name: info.name!, time: Date.now() };
    this.server.publish(ROOM_PREFIX + room, JSON.stringify(event));
    const members = people ?? countPeople(await this.#members(room));
    if (this.#stopped) return;
    this.server.publish(
      ROOMS_TOPIC,
      JSON.stringify({ room, members } satisfies RoomCount),
    );
  }
}

/** How many people the members are (a person may have two connections). */
function countPeople(members: PresenceMember[]): number {
  return new Set(members.map((member) => personKey(member.info))).size;
}

/** The line a member said, with its name, or false if it is no line. */
function lineOf(name: string, message: string | Uint8Array): string | false {
  if (typeof message !== "string") return false;
  const text = message.trim();
  if (text === "" || text.length > MAX_TEXT) return false;
  const event: RoomEvent = { type: "message", name, text, time: Date.now() };
  return JSON.stringify(event);
}

/** Who a connection says it is, or why that is no one. */
function parseWho(
  params: URLSearchParams,
): { session: string; name?: string; room?: string } | string {
  const session = params.get("session") ?? "";
  if (!SESSION_PATTERN.test(session)) {
    return "A session is 16-64 letters, digits, - or _";
  }
  if (!params.has("name") && !params.has("room")) return { session };
  const name = params.get("name")?.trim() ?? "";
  const room = params.get("room")?.trim() ?? "";
  if (name === "" || name.length > MAX_NAME) {
    return `A name is 1-${MAX_NAME} characters`;
  }
  if (INVISIBLE.test(name)) {
    return "A name cannot hold control, format or line separator characters";
  }
  if (room.length > MAX_ROOM || !ROOM_PATTERN.test(room)) {
    return `A room is 1-${MAX_ROOM} letters, digits, - or _`;
  }
  return { session, name, room: room.toLowerCase() };
}

/** Names the person behind a secret, without telling the secret. */
async function personId(session: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(session),
  );
  return new Uint8Array(digest, 0, 12).toBase64({ alphabet: "base64url" });
}

/** Closes a connection the chat does not take, saying why. */
function refuse(
  socket: WebSocketConnection,
  closeCode: number,
  reason: string,
): void {
  // A close reason is at most 123 bytes (RFC 6455 §5.5).
  while (new TextEncoder().encode(reason).length > 123) {
    reason = [...reason].slice(0, -2).join("") + "…";
  }
  socket.close({ closeCode, reason });
}

/**
 * The page served at `/`. Its module connects back to the origin it came
 * from with the live client served at `/live-client.js`. Everything people
 * typed is shown with `textContent`, never parsed as HTML.
 */
const CHAT_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
  h1 { margin: 0 0 0.25rem; }
  h2 { font-size: 1.1rem; margin: 0.75rem 0 0.4rem; }
  form { display: flex; gap: 0.5rem; flex-wrap: wrap; margin: 0.5rem 0; }
  input { padding: 0.3rem; }
  #text { flex: 1; min-width: 12rem; }
  main { display: grid; grid-template-columns: 13rem 1fr; gap: 1.5rem; }
  #connection { margin: 0; padding: 0.35rem 0.6rem; border-radius: 0.25rem; background: #eee; }
${CONNECTION_STYLE}
  aside ul { list-style: none; padding: 0; margin: 0; }
  /* What the rooms and members were when the connection dropped. */
  [data-connection=offline] aside ul, [data-connection=closed] aside ul { opacity: 0.5; }
  #rooms li { display: flex; justify-content: space-between; padding: 0.2rem 0.4rem; cursor: pointer; border-radius: 0.25rem; }
  #rooms li:hover, #rooms li.current { background: #eef; }
  #member-list li { padding: 0.1rem 0.4rem; }
  #member-list .you { font-weight: 600; }
  #log { list-style: none; padding: 0; margin: 0; height: 24rem; overflow-y: auto; border: 1px solid #ddd; border-radius: 0.25rem; }
  #log li { padding: 0.2rem 0.5rem; border-bottom: 1px solid #f0f0f0; overflow-wrap: anywhere; }
  #log .notice { color: #666; font-style: italic; }
  #log .warn { color: #8a4b00; background: #fff8ee; }
  #log .error { color: #b00; }
  #log .pending { color: #888; }
  #log .name { font-weight: 600; margin-right: 0.4rem; }
  #log time { color: #999; font-size: 0.8em; margin-left: 0.4rem; }
  .muted { color: #777; }
  [hidden] { display: none !important; }
</style>
</head>
<body data-connection="connecting">
<h1>Chat</h1>
<p id="connection" role="status"><output id="status">Connecting…</output></p>
<form id="join-form">
  <input id="name" autocomplete="nickname" placeholder="Your name" maxlength="24" required>
  <input id="room" placeholder="Room" value="lobby" maxlength="24" required>
  <button id="join" type="submit">Join</button>
  <button id="leave" type="button" disabled>Leave</button>
</form>
<main>
  <aside>
    <h2>Rooms</h2>
    <ul id="rooms"></ul>
    <p id="no-rooms" class="muted">No one is here yet.</p>
    <section id="people" hidden>
      <h2>In this room</h2>
      <ul id="member-list"></ul>
    </section>
  </aside>
  <section>
    <h2>Room: <span id="room-name">none</span> <span id="count" class="muted" hidden>(<span id="members"></span>)</span></h2>
    <ul id="log"></ul>
    <form id="say-form">
      <input id="text" autocomplete="off" placeholder="Say something" maxlength="500" disabled>
      <button id="send" type="submit" disabled>Send</button>
    </form>
  </section>
</main>
<script type="module">
  import { LiveClient } from "/live-client.js";

  const ROOMS = "rooms";
  /** Lines shown on joining a room, or when what was missed is lost. */
  const SNAPSHOT = 50;
  const byId = (id) => document.getElementById(id);
  const log = byId("log");
  const plural = (n, one, many) => n + " " + (n === 1 ? one : many);
  const clock = (time) => new Date(time).toLocaleTimeString();
  const nameKey = (name) => name.normalize("NFKC").toLowerCase();
  const personKey = (info) => info.id + " " + nameKey(info.name ?? "");
  const closeText = ({ code, reason }) => code + (reason ? " " + reason : "");

  /** This page's secret: a connection that comes back with it keeps its name. */
  const session = (() => {
    let token = null;
    try { token = sessionStorage.getItem("chat-session"); } catch {}
    if (!token) {
      const bytes = crypto.getRandomValues(new Uint8Array(18));
      token = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
      try { sessionStorage.setItem("chat-session", token); } catch {}
    }
    return token;
  })();

  /** The connection in use, and who it is: { name, room }, or null. */
  let live = null;
  let me = null;
  /** A connection for someone else (another room or name) until it is taken. */
  let pending = null;
  /** Each room's member count. */
  const rooms = new Map();
  /** The room's position: the last publication shown, or where it started. */
  let lastOffset = 0;
  let lastEpoch = "";
  /** Waiting for the room's last lines after its missed ones were lost. */
  let resyncing = false;
  /** While offline: since when, why, and when the next attempt is. */
  let offline = null;
  let node = "";

  const topic = () => "room/" + me.room;

  function open(who) {
    const url = new URL("/live", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("session", session);
    if (who) {
      url.searchParams.set("name", who.name);
      url.searchParams.set("room", who.room);
    }
    // 4400 and 4409: the server will not take this name here; retrying
    // cannot help.
    const client = new LiveClient(url, { stopCodes: [4400, 4409], maxDelay: 10000 });
    client.subscribe(ROOMS);
    if (who) client.subscribe("room/" + who.room, { last: SNAPSHOT, recover: true });
    client.addEventListener("connected", () => onConnected(client, who));
    client.addEventListener("disconnected", ({ detail }) => onDisconnected(client, detail));
    client.addEventListener("subscribed", ({ detail }) => client === live && onSubscribed(detail));
    client.addEventListener("publication", ({ detail }) => client === live && onPublication(detail));
    // Lost for good (history does not have them either): said, not resynced.
    client.addEventListener("gap", ({ detail }) => client === live && me && detail.topic === topic() &&
      add("notice warn", "Some lines of " + me.room + " were lost on their way and could not be recovered."));
    client.addEventListener("error", ({ detail }) => client === live && add("error", "Error: " + detail.message));
    return client;
  }

  function add(className, parts) {
    const item = document.createElement("li");
    item.className = className;
    for (const [tag, cls, text] of typeof parts === "string" ? [["span", "", parts]] : parts) {
      const part = document.createElement(tag);
      if (cls) part.className = cls;
      part.textContent = text;
      item.append(part);
    }
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(item);
    if (atBottom) log.scrollTop = log.scrollHeight;
    return item;
  }

  function setConnection(state) {
    document.body.dataset.connection = state;
    showStatus();
  }

  function showStatus() {
    const status = byId("status");
    switch (document.body.dataset.connection) {
      case "online":
        status.value = "Online" + (node ? " · served by node " + node : "");
        break;
      case "offline": {
        const wait = Math.ceil((offline.retryAt - Date.now()) / 1000);
        status.value = "Offline since " + clock(offline.since) + ": connection lost (" + offline.close + "). " +
          (wait > 0 ? "Retrying in " + plural(wait, "second", "seconds") : "Reconnecting") +
          (offline.attempt > 1 ? " (attempt " + offline.attempt + ")." : ".");
        break;
      }
    }
  }
  setInterval(() => { if (offline) showStatus(); }, 250);

  function onConnected(client, who) {
    if (client === pending) {
      // The server took the new name or room: leave the old one.
      const old = live;
      live = client;
      pending = null;
      old.close();
      enter(who);
    }
    if (client !== live) return;
    if (offline) {
      const away = Math.round((Date.now() - offline.since) / 1000);
      add("notice", "Back online at " + clock(Date.now()) + ", after " +
        (away === 0 ? "less than a second" : plural(away, "second", "seconds")) + " offline.");
      offline = null;
    }
    setConnection("online");
  }

  function onDisconnected(client, detail) {
    if (client === pending) {
      if (detail.willRetry) return;
      pending = null;
      add("error", "Could not join: " + (detail.reason || "closed (" + detail.code + ")"));
      // Still who it was, where it was.
      if (me) {
        byId("name").value = me.name;
        byId("room").value = me.room;
      }
      return;
    }
    if (client !== live) return;
    if (!detail.willRetry) {
      offline = null;
      setConnection("closed");
      byId("status").value = "Disconnected (" + closeText(detail) + "). Reload the page to connect again.";
      return;
    }
    if (!offline) {
      // What cut the connection; the attempts that fail after it say less
      // (1006).
      offline = { since: Date.now(), attempt: 0, close: closeText(detail) };
      add("notice warn", "Connection lost at " + clock(offline.since) + " (" + closeText(detail) + "). Reconnecting…");
    }
    offline.attempt++;
    offline.retryAt = Date.now() + detail.delay;
    setConnection("offline");
  }

  /** Shows the room (or none) of a connection the server took. */
  function enter(who) {
    const was = me;
    me = who;
    lastOffset = 0;
    lastEpoch = "";
    resyncing = false;
    node = "";
    if (who) log.replaceChildren();
    else if (was) add("notice", "You left " + was.room + ".");
    byId("room-name").textContent = who?.room ?? "none";
    byId("count").hidden = !who;
    byId("people").hidden = !who;
    byId("member-list").replaceChildren();
    for (const id of ["text", "send", "leave"]) byId(id).disabled = !who;
    showRooms();
  }

  function onSubscribed(detail) {
    if (detail.topic === ROOMS) return refreshRooms();
    if (!me || detail.topic !== topic()) return;
    refreshMembers();
    if (!detail.recovering) {
      // The room's last lines follow.
      resyncing = false;
      lastEpoch = detail.position?.epoch ?? "";
      return;
    }
    if (!detail.recovered) {
      resync("Could not recover what was said in " + me.room + " while you were away: the room's history " +
        (detail.position?.epoch !== lastEpoch ? "was lost (the server restarted)." : "no longer reaches back that far."));
      return;
    }
    const missed = detail.position.offset - lastOffset;
    add("notice", missed === 0
      ? "Back in " + me.room + ": nothing was said while you were away."
      : "Back in " + me.room + ": " + (missed === 1
        ? "1 message from while you were away follows."
        : missed + " messages from while you were away follow."));
  }

  /** Shows the room's last lines, after what was missed was lost. */
  function resync(why) {
    add("notice warn", why + " The last lines it has follow.");
    resyncing = true;
    live.unsubscribe(topic());
    live.subscribe(topic(), { last: SNAPSHOT, recover: true });
  }

  function onPublication(detail) {
    if (detail.topic === ROOMS) {
      const { room, members } = JSON.parse(detail.data);
      if (members > 0) rooms.set(room, members);
      else rooms.delete(room);
      return showRooms();
    }
    if (!me || detail.topic !== topic() || resyncing) return;
    lastOffset = detail.offset;
    lastEpoch = detail.epoch;
    const event = JSON.parse(detail.data);
    const time = clock(event.time);
    if (event.type === "message") {
      add("message", [["span", "name", event.name], ["span", "text", event.text], ["time", "", time]]);
    } else {
      add("notice", [["span", "", event.name + (event.type === "join" ? " joined" : " left")], ["time", "", time]]);
      clearTimeout(membersTimer);
      // Presence catches up with a join a moment after it is announced.
      membersTimer = setTimeout(refreshMembers, 100);
    }
  }

  /** Every room's count, from the presence of \`rooms\`: each person once. */
  async function refreshRooms() {
    const client = live;
    let members;
    try {
      ({ members } = await client.presence(ROOMS));
    } catch {
      return; // offline: asked again on the next subscription
    }
    if (client !== live) return;
    const people = new Map();
    for (const { info } of members) {
      if (!info?.room) continue;
      if (!people.has(info.room)) people.set(info.room, new Set());
      people.get(info.room).add(personKey(info));
    }
    rooms.clear();
    for (const [room, set] of people) rooms.set(room, set.size);
    showRooms();
  }

  function showRooms() {
    const list = byId("rooms");
    list.replaceChildren();
    const sorted = [...rooms].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
    for (const [room, members] of sorted) {
      const item = document.createElement("li");
      item.dataset.room = room;
      item.classList.toggle("current", room === me?.room);
      const name = document.createElement("span");
      name.className = "room";
      name.textContent = room;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = String(members);
      item.append(name, count);
      item.title = plural(members, "member", "members") + ": click to join";
      item.onclick = () => {
        byId("room").value = room;
        byId("join-form").requestSubmit();
      };
      list.append(item);
    }
    byId("no-rooms").hidden = rooms.size > 0;
  }

  /** The room's members, from its presence: each person once. */
  let membersTimer;
  async function refreshMembers() {
    const client = live;
    const who = me;
    if (!who) return;
    let members;
    try {
      ({ members } = await client.presence("room/" + who.room));
    } catch {
      return; // offline: asked again on the next subscription
    }
    if (client !== live || who !== me) return;
    const people = new Map();
    let own;
    for (const member of members) {
      if (!member.info?.name) continue;
      people.set(personKey(member.info), member.info.name);
      if (member.client === client.client) {
        own = personKey(member.info);
        node = member.info.node ?? "";
      }
    }
    const list = byId("member-list");
    list.replaceChildren();
    for (const [key, name] of [...people].sort(([, a], [, b]) => a.localeCompare(b))) {
      const item = document.createElement("li");
      item.textContent = name + (key === own ? " (you)" : "");
      item.classList.toggle("you", key === own);
      list.append(item);
    }
    byId("members").textContent = plural(people.size, "member", "members");
    showStatus();
  }
  // A process that dies leaves its connections in presence for a while:
  // look again now and then.
  setInterval(() => { if (me && live.state === "connected") refreshMembers(); }, 15000);

  byId("join-form").onsubmit = (event) => {
    event.preventDefault();
    const who = { name: byId("name").value.trim(), room: byId("room").value.trim().toLowerCase() };
    if (me && me.name === who.name && me.room === who.room) return;
    pending?.close();
    pending = open(who);
  };
  byId("leave").onclick = () => {
    pending?.close();
    pending = open(null);
  };
  byId("say-form").onsubmit = (event) => {
    event.preventDefault();
    const input = byId("text");
    const text = input.value.trim();
    if (text === "" || !me) return;
    input.value = "";
    input.focus();
    // Offline, it waits in the client's queue, and goes out once the page
    // is back in its room.
    const waiting = live.state === "connected"
      ? null
      : add("pending", [["span", "name", me.name], ["span", "text", text], ["time", "", "waiting for the connection"]]);
    live.publish(topic(), text).then(() => waiting?.remove(), (error) => {
      const item = waiting ?? add("error", "");
      item.className = "error";
      item.textContent = (error.code === "disconnected"
        ? "Maybe not sent (the connection dropped before the server answered): "
        : "Not sent (" + error.message + "): ") + text;
    });
  };

  live = open(null);
  enter(null);
</script>
</body>
</html>
`;

if (import.meta.main) {
  await runMain("chat.ts", DEFAULT_PORT, startChatServer);
}
