/**
 * The benchmark's echo server on this module: `deno run -A
 * bench/servers/ours.ts --port 0` prints the port it listens on, then echoes
 * every message back until SIGTERM.
 *
 * @module
 */
import { serve } from "../../mod.ts";
import { handleSignals, portFlag } from "./_common.ts";

serve({
  port: portFlag(),
  hostname: "127.0.0.1",
  onListen: (addr) => console.log(addr.port),
}, (socket) => socket.readable.pipeTo(socket.writable));

handleSignals();
