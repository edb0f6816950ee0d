/**
 * examples/cluster.ts as a person runs it: the supervisor starts its own
 * redis-server and two server processes on one port (reusePort), a chat
 * message sent through one process reaches a socket of the other, and
 * SIGINT (Ctrl+C) stops every process.
 */
import assert from "node:assert/strict";
import { DEADLINE } from "./_pubsub_helpers.ts";
import { deadline, freePort, stopChild, waitFor } from "./_util.ts";

interface Chat {
  name: string;
  socket: WebSocket;
  node: number;
  messages: { from: string; text: string; node: number }[];
  closed: Promise<CloseEvent>;
}

/**
 * Opens a chat socket and waits for its hello (which names its process);
 * closes the socket if that fails.
 */
async function join(port: number, name: string): Promise<Chat> {
  const socket = new WebSocket(
    `ws://127.0.0.1:${port}/chat?room=test&name=${name}`,
  );
  const closed = new Promise<CloseEvent>((resolve) =>
    socket.addEventListener("close", resolve, { once: true })
  );
  const messages: Chat["messages"] = [];
  const hello = new Promise<number>((resolve, reject) => {
    socket.onmessage = (event) => {
      const data = JSON.parse(event.data);
      if (data.type === "hello") resolve(data.node);
      else messages.push(data);
    };
    socket.onerror = () => reject(new Error("The chat socket failed"));
    closed.then(() => reject(new Error("The chat socket closed ungreeted")));
  });
  try {
    const node = await deadline(hello, `${name}'s hello`, DEADLINE);
    return { name, socket, node, messages, closed };
  } catch (error) {
    socket.close();
    await deadline(closed, `${name}'s close`, DEADLINE);
    throw error;
  }
}

Deno.test("cluster example: two processes on one port share a chat room through Redis, and SIGINT stops them all", async () => {
  const port = freePort();
  const supervisor = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-run",
      "--allow-read",
      "--allow-sys",
      new URL("../examples/cluster.ts", import.meta.url).pathname,
      "--nodes",
      "2",
      "--port",
      String(port),
    ],
    env: { REDIS_URL: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const chats: Chat[] = [];
  let status: Deno.CommandStatus;
  let codes: (number | undefined)[];
  let output = "";
  const reading = (async () => {
    for await (
      const chunk of supervisor.stdout.pipeThrough(new TextDecoderStream())
    ) {
      output += chunk;
    }
  })();
  try {
    await waitFor(
      () => (output.match(/^process \d+ serves$/gm) ?? []).length === 2,
      "both processes to serve",
      DEADLINE,
    );
    // Linux spreads connections over the processes by their addresses:
    // open sockets until two processes serve one each.
    for (let i = 0; i < 64 && new Set(chats.map((c) => c.node)).size < 2; i++) {
      const chat = await join(port, `user${i}`);
      if (chats.some((c) => c.node === chat.node)) {
        chat.socket.close();
        await deadline(chat.closed, `${chat.name}'s close`, DEADLINE);
      } else {
        chats.push(chat);
      }
    }
    assert.equal(chats.length, 2, "no two processes got a connection");
    const [first, second] = chats;
    // A process subscribes a room on Redis when its first socket joins, and
    // what is published before that SUBSCRIBE is answered does not reach it
    // (at most once): send until the other process has one.
    const sending = setInterval(
      () => first.socket.send("hello from the first process"),
      200,
    );
    try {
      first.socket.send("hello from the first process");
      await waitFor(
        () => second.messages.length >= 1 && first.messages.length >= 1,
        "the message in both processes",
        DEADLINE,
      );
    } finally {
      clearInterval(sending);
    }
    // The sender's socket gets it too, through its own process.
    assert.deepEqual(first.messages[0], second.messages[0]);
    assert.deepEqual(second.messages[0], {
      type: "message",
      from: first.name,
      text: "hello from the first process",
      node: first.node,
    });
  } finally {
    // Ctrl+C (killed if that does not stop it).
    try {
      supervisor.kill("SIGINT");
    } catch {
      // It exited already: its status says how.
    }
    status = await stopChild(supervisor, DEADLINE);
    // The servers close the sockets as they stop; a socket they leave open
    // is closed here, and fails the test below.
    codes = await Promise.all(chats.map((chat) =>
      deadline(
        chat.closed,
        `${chat.name}'s close`,
        DEADLINE,
        () => chat.socket.close(),
      ).then((event) => event.code, () => undefined)
    ));
    await deadline(reading, "the end of its output", DEADLINE);
  }
  // Every process was stopped: the sockets were closed by their servers.
  for (const code of codes) assert.equal(code, 1001);
  assert.equal(status.code, 0);
});
