"""Notifications: alert transitions delivered to webhooks, chat and commands."""
