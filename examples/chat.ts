/**
 * A chat with rooms, built on topics: each room is the topic `room/<name>`,
 * so a message said in a room is one `server.publish` that reaches everyone
 * in it. People pick a name and a room; the room hears when someone joins
 * or leaves, and every page shows each room's member count
 * (`server.subscriberCount`): the whole list once, on connecting, then each
 * change on the topic `rooms`. A change is one short message whatever the
 * number of rooms, so a burst of joins costs each page a few bytes per join,
 * not the whole list every time.
 *
 * Run it with:
 *
 * ```sh
 * deno task chat
 * # which is
 * deno run --allow-net --allow-env examples/chat.ts
 * # on another port or address (flags win over the environment)
 * deno run --allow-net --allow-env examples/chat.ts --port 9000 --hostname 0.0.0.0
 * PORT=9000 deno task chat
 * ```
 *
 * It listens on `127.0.0.1:8081` by default and prints the address to open;
 * open it in two browser tabs and talk. Ctrl+C shuts it down.
 *
 * The protocol is JSON text messages. A page sends
 * `{"type":"join","name":"Ada","room":"lobby"}` (joining another room leaves
 * the current one), `{"type":"say","text":"Hello"}` and `{"type":"leave"}`.
 * The server sends `rooms` (every room with its member count, once, to a
 * page that connects), `room` (a room's new member count, 0 once it is empty,
 * to every page), `joined` and `left` (to the one who joined or left),
 * `presence` (to the others in the room: someone joined or left, with the new
 * count), `message` (to everyone in the room, the sender too) and `error`.
 *
 * A name is 1-24 characters with no control, format or line separator
 * characters (no U+202E to turn text around, no zero-width characters, no
 * U+2028), and unique in its room: compared after NFKC normalization and
 * lower-casing, so "Ada", "ADA" and "Ａｄａ" are one name.
 *
 * @module
 */

import {
  serve,
  type WebSocketConnection,
  type WebSocketServer,
} from "../mod.ts";
import {
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
}

/** What a page may send. */
type Command =
  | { type: "join"; name: string; room: string }
  | { type: "say"; text: string }
  | { type: "leave" };

/** What the server sends. */
export type ChatEvent =
  | { type: "rooms"; rooms: { room: string; members: number }[] }
  | { type: "room"; room: string; members: number }
  | { type: "joined"; room: string; name: string; members: number }
  | { type: "left"; room: string }
  | {
    type: "presence";
    event: "join" | "leave";
    room: string;
    name: string;
    members: number;
  }
  | { type: "message"; room: string; name: string; text: string; time: number }
  | { type: "error"; message: string };

const DEFAULT_PORT = 8081;
/** Every page subscribes to it: the list of rooms and their counts. */
const ROOMS_TOPIC = "rooms";
const ROOM_PREFIX = "room/";
const MAX_NAME = 24;
const MAX_ROOM = 24;
const MAX_TEXT = 500;
/** Letters, digits, `-` and `_`: room names are part of topic names. */
const ROOM_PATTERN = /^[\p{L}\p{N}_-]+$/u;
/**
 * What has no place in a name: control and format characters (U+202E, the
 * zero-width ones), lone surrogates, private-use and unassigned code points
 * (all of `\p{C}`), and the line and paragraph separators.
 */
const INVISIBLE = /[\p{C}\p{Zl}\p{Zp}]/u;

/** Who a connection is in the chat: empty until it joins. */
interface Member {
  name: string;
  room: string;
}

/** The names in use in each room, as `nameKey` gives them. */
type RoomNames = Map<string, Set<string>>;

/** What two names that look the same have in common. */
function nameKey(name: string): string {
  return name.normalize("NFKC").toLowerCase();
}

/**
 * Starts the chat server and returns it; `shutdown()` (or `await using`,
 * or the signal) stops it.
 *
 * @example Starting it on a free port and joining a room
 * ```ts ignore
 * import { startChatServer } from "./examples/chat.ts";
 *
 * await using server = startChatServer({ port: 0, onListen() {} });
 * const ws = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
 * ws.onopen = () =>
 *   ws.send(JSON.stringify({ type: "join", name: "Ada", room: "lobby" }));
 * ```
 */
export function startChatServer(
  options: ChatServerOptions = {},
): WebSocketServer {
  const names: RoomNames = new Map();
  const server: WebSocketServer = serve({
    port: options.port ?? DEFAULT_PORT,
    hostname: options.hostname ?? DEFAULT_HOSTNAME,
    signal: options.signal,
    onListen: options.onListen ?? printAddress("Chat"),
    fetch: servePage(CHAT_PAGE),
    onUpgrade: sameOriginOnly,
    // Chat lines are short: a big message is a mistake or an attack (1009).
    maxMessageSize: 8 * 1024,
    // A page that stops reading is closed (1013) when 1 MiB waits for it,
    // rather than silently missing messages.
    backpressure: "close",
  }, async (socket) => {
    const member: Member = { name: "", room: "" };
    socket.subscribe(ROOMS_TOPIC);
    socket.send(JSON.stringify(roomsEvent(server)));
    try {
      for await (const data of socket.readable) {
        handle(server, names, socket, member, data);
      }
    } catch {
      // The connection ended without a closing handshake: it left all the
      // same.
    }
    // A socket that closes has left its topics: tell the room and everyone
    // the new count.
    if (member.room !== "") announceLeave(server, names, member);
  });
  return server;
}

/** Runs one command from a page. */
function handle(
  server: WebSocketServer,
  names: RoomNames,
  socket: WebSocketConnection,
  member: Member,
  data: string | Uint8Array,
): void {
  const command = parseCommand(data);
  if (typeof command === "string") {
    reply(socket, { type: "error", message: command });
    return;
  }
  switch (command.type) {
    case "join": {
      if (member.room === command.room && member.name === command.name) return;
      const key = nameKey(command.name);
      // Taken by someone else (not by this member renaming itself).
      if (
        names.get(command.room)?.has(key) &&
        !(member.room === command.room && nameKey(member.name) === key)
      ) {
        reply(socket, {
          type: "error",
          message: `The name ${command.name} is taken in ${command.room}`,
        });
        return;
      }
      if (member.room !== "") leave(server, names, socket, member);
      const topic = ROOM_PREFIX + command.room;
      member.name = command.name;
      member.room = command.room;
      const inRoom = names.get(command.room);
      if (inRoom === undefined) names.set(command.room, new Set([key]));
      else inRoom.add(key);
      socket.subscribe(topic);
      const members = server.subscriberCount(topic);
      reply(socket, {
        type: "joined",
        room: member.room,
        name: member.name,
        members,
      });
      // Everyone in the room but the one who joined.
      socket.publish(
        topic,
        JSON.stringify(
          {
            type: "presence",
            event: "join",
            room: member.room,
            name: member.name,
            members,
          } satisfies ChatEvent,
        ),
      );
      publishRoom(server, member.room);
      return;
    }
    case "say": {
      if (member.room === "") {
        reply(socket, { type: "error", message: "Join a room first" });
        return;
      }
      // Everyone in the room, the sender too: its page shows the message
      // when the room has it.
      server.publish(
        ROOM_PREFIX + member.room,
        JSON.stringify(
          {
            type: "message",
            room: member.room,
            name: member.name,
            text: command.text,
            time: Date.now(),
          } satisfies ChatEvent,
        ),
      );
      return;
    }
    case "leave":
      if (member.room !== "") leave(server, names, socket, member);
      return;
  }
}

/** Leaves the member's room, telling it and the one who left. */
function leave(
  server: WebSocketServer,
  names: RoomNames,
  socket: WebSocketConnection,
  member: Member,
): void {
  socket.unsubscribe(ROOM_PREFIX + member.room);
  reply(socket, { type: "left", room: member.room });
  announceLeave(server, names, member);
}

/**
 * Tells a room that the member left, and everyone its new count; frees the
 * member's name in it.
 */
function announceLeave(
  server: WebSocketServer,
  names: RoomNames,
  member: Member,
): void {
  const room = member.room;
  const inRoom = names.get(room);
  inRoom?.delete(nameKey(member.name));
  if (inRoom?.size === 0) names.delete(room);
  const topic = ROOM_PREFIX + room;
  server.publish(
    topic,
    JSON.stringify(
      {
        type: "presence",
        event: "leave",
        room: member.room,
        name: member.name,
        members: server.subscriberCount(topic),
      } satisfies ChatEvent,
    ),
  );
  member.room = "";
  publishRoom(server, room);
}

/** Tells every page a room's member count, which just changed. */
function publishRoom(server: WebSocketServer, room: string): void {
  const members = server.subscriberCount(ROOM_PREFIX + room);
  server.publish(
    ROOMS_TOPIC,
    JSON.stringify({ type: "room", room, members } satisfies ChatEvent),
  );
}

/** Every room with members, by name, with its member count. */
function roomsEvent(server: WebSocketServer): ChatEvent {
  const rooms = server.topics()
    .filter((topic) => topic.startsWith(ROOM_PREFIX))
    .map((topic) => ({
      room: topic.slice(ROOM_PREFIX.length),
      members: server.subscriberCount(topic),
    }))
    .sort((a, b) => a.room < b.room ? -1 : a.room > b.room ? 1 : 0);
  return { type: "rooms", rooms };
}

function reply(socket: WebSocketConnection, event: ChatEvent): void {
  socket.send(JSON.stringify(event));
}

/** The command a page sent, or why it is not one. */
function parseCommand(data: string | Uint8Array): Command | string {
  if (typeof data !== "string") return "Commands are JSON text";
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return "Commands are JSON text";
  }
  if (typeof value !== "object" || value === null) return "Unknown command";
  const command = value as Record<string, unknown>;
  switch (command.type) {
    case "join": {
      const name = typeof command.name === "string" ? command.name.trim() : "";
      const room = typeof command.room === "string" ? command.room.trim() : "";
      if (name === "" || name.length > MAX_NAME) {
        return `A name is 1-${MAX_NAME} characters`;
      }
      if (INVISIBLE.test(name)) {
        return "A name cannot hold control, format or line separator characters";
      }
      if (room.length > MAX_ROOM || !ROOM_PATTERN.test(room)) {
        return `A room is 1-${MAX_ROOM} letters, digits, - or _`;
      }
      return { type: "join", name, room: room.toLowerCase() };
    }
    case "say": {
      const text = typeof command.text === "string" ? command.text.trim() : "";
      if (text === "" || text.length > MAX_TEXT) {
        return `A message is 1-${MAX_TEXT} characters`;
      }
      return { type: "say", text };
    }
    case "leave":
      return { type: "leave" };
    default:
      return "Unknown command";
  }
}

/**
 * The page served at `/`. Its script connects back to the origin it came
 * from. Everything people typed is shown with `textContent`, never parsed
 * as HTML.
 */
const CHAT_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 56rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
  h1 { margin: 0 0 0.5rem; }
  form { display: flex; gap: 0.5rem; flex-wrap: wrap; margin: 0.5rem 0; }
  input { padding: 0.3rem; }
  #text { flex: 1; min-width: 12rem; }
  main { display: grid; grid-template-columns: 12rem 1fr; gap: 1rem; }
  #rooms { list-style: none; padding: 0; margin: 0; }
  #rooms li { display: flex; justify-content: space-between; padding: 0.2rem 0.4rem; cursor: pointer; border-radius: 0.25rem; }
  #rooms li:hover, #rooms li.current { background: #eef; }
  #log { list-style: none; padding: 0; margin: 0; height: 24rem; overflow-y: auto; border: 1px solid #ddd; border-radius: 0.25rem; }
  #log li { padding: 0.2rem 0.5rem; border-bottom: 1px solid #f0f0f0; overflow-wrap: anywhere; }
  #log .notice { color: #777; font-style: italic; }
  #log .error { color: #b00; }
  #log .name { font-weight: 600; margin-right: 0.4rem; }
  #log time { color: #999; font-size: 0.8em; margin-left: 0.4rem; }
  .muted { color: #777; }
</style>
</head>
<body>
<h1>Chat</h1>
<p class="muted">Status: <output id="status">connecting</output></p>
<form id="join-form">
  <input id="name" autocomplete="nickname" placeholder="Your name" maxlength="24" required>
  <input id="room" placeholder="Room" value="lobby" maxlength="24" required>
  <button id="join" type="submit" disabled>Join</button>
  <button id="leave" type="button" disabled>Leave</button>
</form>
<main>
  <section>
    <h2>Rooms</h2>
    <ul id="rooms"></ul>
    <p id="no-rooms" class="muted">No one is here yet.</p>
  </section>
  <section>
    <h2>Room: <span id="room-name">none</span> <span class="muted">(<output id="members">0</output> members)</span></h2>
    <ul id="log"></ul>
    <form id="say-form">
      <input id="text" autocomplete="off" placeholder="Say something" maxlength="500" disabled>
      <button id="send" type="submit" disabled>Send</button>
    </form>
  </section>
</main>
<script>
  "use strict";
  const byId = (id) => document.getElementById(id);
  const status = byId("status");
  const log = byId("log");
  let joined = null;
  /** Each room's member count: the list on connecting, then its changes. */
  const rooms = new Map();

  const socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/");

  function send(command) {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(command));
  }

  function add(className, parts) {
    const item = document.createElement("li");
    item.className = className;
    for (const [tag, cls, text] of parts) {
      const part = document.createElement(tag);
      if (cls) part.className = cls;
      part.textContent = text;
      item.append(part);
    }
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(item);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  const notice = (text) => add("notice", [["span", "", text]]);

  function setJoined(room, members) {
    joined = room;
    byId("room-name").textContent = room ?? "none";
    byId("members").value = String(members);
    const open = socket.readyState === WebSocket.OPEN;
    byId("text").disabled = !open || room === null;
    byId("send").disabled = !open || room === null;
    byId("leave").disabled = !open || room === null;
    for (const item of byId("rooms").children) {
      item.classList.toggle("current", item.dataset.room === room);
    }
  }

  function showRooms() {
    const list = byId("rooms");
    list.replaceChildren();
    const sorted = [...rooms].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
    for (const [room, members] of sorted) {
      const item = document.createElement("li");
      item.dataset.room = room;
      item.classList.toggle("current", room === joined);
      const name = document.createElement("span");
      name.className = "room";
      name.textContent = room;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = String(members);
      item.append(name, count);
      item.title = "Join " + room;
      item.onclick = () => {
        byId("room").value = room;
        byId("join-form").requestSubmit();
      };
      list.append(item);
      if (room === joined) byId("members").value = String(members);
    }
    byId("no-rooms").hidden = rooms.size > 0;
  }

  socket.onopen = () => {
    status.value = "open";
    byId("join").disabled = false;
  };

  socket.onmessage = (event) => {
    const data = JSON.parse(event.data);
    switch (data.type) {
      case "rooms":
        rooms.clear();
        for (const { room, members } of data.rooms) rooms.set(room, members);
        showRooms();
        break;
      case "room":
        if (data.members > 0) rooms.set(data.room, data.members);
        else rooms.delete(data.room);
        showRooms();
        break;
      case "joined":
        log.replaceChildren();
        setJoined(data.room, data.members);
        notice("You joined " + data.room + " as " + data.name);
        break;
      case "left":
        setJoined(null, 0);
        notice("You left " + data.room);
        break;
      case "presence":
        if (data.room !== joined) break;
        byId("members").value = String(data.members);
        notice(data.name + (data.event === "join" ? " joined" : " left"));
        break;
      case "message": {
        if (data.room !== joined) break;
        const time = new Date(data.time).toLocaleTimeString();
        add("message", [["span", "name", data.name], ["span", "text", data.text], ["time", "", time]]);
        break;
      }
      case "error":
        add("error", [["span", "", "Error: " + data.message]]);
        break;
    }
  };

  socket.onclose = (event) => {
    status.value = "closed (" + event.code + (event.reason ? " " + event.reason : "") + "): reload to reconnect";
    byId("join").disabled = true;
    setJoined(null, 0);
  };

  byId("join-form").onsubmit = (event) => {
    event.preventDefault();
    send({ type: "join", name: byId("name").value, room: byId("room").value });
  };
  byId("leave").onclick = () => send({ type: "leave" });
  byId("say-form").onsubmit = (event) => {
    event.preventDefault();
    const input = byId("text");
    if (input.value.trim() === "") return;
    send({ type: "say", text: input.value });
    input.value = "";
    input.focus();
  };
</script>
</body>
</html>
`;

if (import.meta.main) {
  await runMain("chat.ts", DEFAULT_PORT, startChatServer);
}
