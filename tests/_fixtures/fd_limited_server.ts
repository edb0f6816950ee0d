/**
 * An echo server for the fd-exhaustion test: run under a low `ulimit -n`, it
 * prints its port, then one line per error reported to `onError`.
 */
import { serve } from "../../mod.ts";

const server = serve({
  port: 0,
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log(port),
  onError: (error) => console.log(`error: ${(error as Error).name}`),
}, (socket) => socket.readable.pipeTo(socket.writable));
// Ends when the test closes our stdin.
for await (const _ of Deno.stdin.readable) { /* wait */ }
await server.shutdown();
