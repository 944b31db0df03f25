"""A python-socketio signalling relay: the original framework's stack, as a baseline for
`loadgen compare` (issue 4 §2). Not part of pairlab.

Deployment: python-socketio's AsyncServer on aiohttp (asyncio, one process). Of the common
deployments (eventlet/gevent behind Flask-SocketIO, or asyncio with aiohttp) this is the
maintained one: eventlet's own docs advise new projects against it.

Protocol: Engine.IO v4 / Socket.IO v5 at /socket.io/. A client emits `signal` with
`{"target": <sid>, "data": <any>}`; the server emits `signal` `{"from": <sid>, "data": <any>}`
to the target's sid, unchanged, and nothing to anyone else.

Run: target/bench-venv/bin/python bench/socketio_relay.py --port 5000 (127.0.0.1 only).
"""

import argparse

import socketio
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
app = web.Application()
sio.attach(app)


@sio.on("signal")
async def signal(sid, msg):
    target = msg.get("target") if isinstance(msg, dict) else None
    if isinstance(target, str):
        await sio.emit("signal", {"from": sid, "data": msg.get("data")}, to=target)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)
