"""A Python `websockets` peer for tests/peers_test.ts and
tests/deflate_peers_test.ts (asyncio API, 10.4+; permessage-deflate is on by
default on both sides, and used where the other end accepts it).

Usage:
  python3 python_peer.py client URL < plan.json
  python3 python_peer.py server

client: the plan on stdin is {"messages": [{"type": "text" | "binary",
"data": str}], "close": {"code": int, "reason": str}}, binary data in base64.
The client sends each message, waits for its echo, then closes with the plan's
code and prints {"echoes": [...same shape...], "extensions": str,
"close_code": int, "close_reason": str, "version": str} as JSON on stdout, so
that the test asserts what arrived; "extensions" is the server's
Sec-WebSocket-Extensions answer.

server: an echo server on 127.0.0.1 and a free port, which it prints as the
first line of stdout; it stops when stdin reaches its end.
"""

import asyncio
import base64
import json
import sys

import websockets


async def client(url, plan):
    echoes = []
    # max_size=None: the 1 MiB message is at websockets' default limit.
    async with websockets.connect(url, max_size=None) as ws:
        extensions = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        for message in plan["messages"]:
            if message["type"] == "text":
                await ws.send(message["data"])
            else:
                await ws.send(base64.b64decode(message["data"]))
            echo = await asyncio.wait_for(ws.recv(), timeout=10)
            if isinstance(echo, str):
                echoes.append({"type": "text", "data": echo})
            else:
                echoes.append(
                    {"type": "binary", "data": base64.b64encode(echo).decode()}
                )
        close = plan["close"]
        await ws.close(code=close["code"], reason=close["reason"])
        # After close(), these hold the close frame the server echoed.
        return {
            "echoes": echoes,
            "extensions": extensions,
            "close_code": ws.close_code,
            "close_reason": ws.close_reason,
            "version": websockets.__version__,
        }


async def echo(ws, _path=None):
    async for message in ws:
        await ws.send(message)


async def server():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as running:
        port = running.sockets[0].getsockname()[1]
        print(port, flush=True)
        # Serve until the test closes stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    if sys.argv[1] == "client":
        result = asyncio.run(client(sys.argv[2], json.load(sys.stdin)))
        json.dump(result, sys.stdout)
    else:
        asyncio.run(server())
