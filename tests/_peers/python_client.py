"""A Python `websockets` client for tests/peers_test.ts (asyncio API, 10.4+).

Usage: python3 python_client.py URL < plan.json

The plan on stdin is {"messages": [{"type": "text" | "binary", "data": str}],
"close": {"code": int, "reason": str}}, binary data in base64. The client sends
each message, waits for its echo, then closes with the plan's code and prints
{"echoes": [...same shape...], "close_code": int, "close_reason": str,
"version": str} as JSON on stdout, so that the test asserts what arrived.
"""

import asyncio
import base64
import json
import sys

import websockets


async def main(url, plan):
    echoes = []
    # max_size=None: the 1 MiB message is at websockets' default limit.
    async with websockets.connect(url, max_size=None) as ws:
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
            "close_code": ws.close_code,
            "close_reason": ws.close_reason,
            "version": websockets.__version__,
        }


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], json.load(sys.stdin)))
    json.dump(result, sys.stdout)
