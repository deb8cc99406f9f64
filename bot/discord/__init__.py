"""Discord adapter: discord.py client and app commands, the Discord ChatPlatform, the invite."""
