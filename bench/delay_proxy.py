"""A loopback TCP proxy that adds a fixed latency to every request: S3 far away, simulated in front of moto.

``python bench/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS``. The delay is added once per request turn (when
the client starts sending after the server last spoke, or on a new connection), not once per chunk, so a large
upload is not slowed by its size: that is what a round trip to a distant region costs.
"""

from __future__ import annotations

import asyncio
import sys


async def pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str, delay: float, turn: list[str]
) -> None:
    """Copy one direction; ``turn`` holds who spoke last ("client" or "server"), shared by both directions."""
    try:
        while data := await reader.read(256 * 1024):
            if direction == "client" and turn[0] != "client" and delay > 0:
                await asyncio.sleep(delay)
            turn[0] = direction
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(listen_port: int, target_port: int, delay: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        turn = ["server"]  # the first bytes from the client start a request turn
        await asyncio.gather(
            pump(client_reader, server_writer, "client", delay, turn),
            pump(server_reader, client_writer, "server", 0.0, turn),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, backlog=256)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    port, target, milliseconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    asyncio.run(serve(port, target, milliseconds / 1000))
