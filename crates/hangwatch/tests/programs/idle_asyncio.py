"""An asyncio program whose loop waits for an event nothing will ever set."""
import asyncio


async def main():
    never = asyncio.Event()
    print("ready", flush=True)
    await never.wait()


asyncio.run(main())
