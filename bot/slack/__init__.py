"""Slack adapter: Bolt app (Socket Mode or HTTP), the Slack ChatPlatform, the app manifest."""
