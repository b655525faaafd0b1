"""The ceiling of this machine for the platform's kind of work: a gRPC server (grpc.aio,
like the services) with a no-op method and a method doing one Redis round trip.

    python bench/ceiling_server.py PORT REDIS_URL"""
from __future__ import annotations

import asyncio
import sys

import grpc
import redis.asyncio


async def serve(port: int, redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, protocol=3)

    async def noop(request: bytes, context) -> bytes:
        return b""

    async def redis_get(request: bytes, context) -> bytes:
        return await client.get("bench:ceiling") or b""

    handlers = {"Noop": grpc.unary_unary_rpc_method_handler(noop),
                "RedisGet": grpc.unary_unary_rpc_method_handler(redis_get)}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Ceiling", handlers)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
